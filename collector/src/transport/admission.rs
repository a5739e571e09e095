//! Who may hold a connection. Agents (a client certificate from the collector's CA)
//! have their own slots; connections without a certificate, which may only enrol, have
//! a small budget of their own, per address as well as in total, and a deadline to
//! enrol: strangers can never take the agents' slots. Handshakes in progress are
//! bounded too, and each must finish in time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Handshakes in progress at most.
pub const MAX_HANDSHAKES: usize = 256;
/// Time a handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The limits, from `[quic]` in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Agent connections held at most.
    pub agents: usize,
    /// Connections without a certificate held at most.
    pub strangers: usize,
    /// Of those, from one address at most.
    pub strangers_per_address: usize,
    /// Time a connection without a certificate has to enrol.
    pub enrol_timeout: Duration,
}

/// The slots of each kind of connection.
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    handshakes: Arc<Semaphore>,
    agents: Arc<Semaphore>,
    strangers: Arc<Semaphore>,
    per_address: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// A stranger's slot: given back, with its address's count, when dropped.
#[derive(Debug)]
pub struct StrangerSlot {
    _total: OwnedSemaphorePermit,
    address: IpAddr,
    per_address: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for StrangerSlot {
    fn drop(&mut self) {
        let mut map = self.per_address.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.address);
            }
        }
    }
}

impl Admission {
    /// Slots for `limits`.
    pub fn new(limits: Limits) -> Admission {
        Admission {
            limits,
            handshakes: Arc::new(Semaphore::new(MAX_HANDSHAKES)),
            agents: Arc::new(Semaphore::new(limits.agents)),
            strangers: Arc::new(Semaphore::new(limits.strangers)),
            per_address: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A handshake slot, when one is free.
    pub fn handshake(&self) -> Option<OwnedSemaphorePermit> {
        self.handshakes.clone().try_acquire_owned().ok()
    }

    /// An agent's slot, when one is free.
    pub fn agent(&self) -> Option<OwnedSemaphorePermit> {
        self.agents.clone().try_acquire_owned().ok()
    }

    /// A stranger's slot for a connection from `address`, when its address and the
    /// total leave room.
    pub fn stranger(&self, address: IpAddr) -> Option<StrangerSlot> {
        let mut map = self.per_address.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(address).or_default();
        if *n >= self.limits.strangers_per_address {
            return None;
        }
        let total = self.strangers.clone().try_acquire_owned().ok()?;
        *n += 1;
        Some(StrangerSlot {
            _total: total,
            address,
            per_address: self.per_address.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strangers_have_a_budget_per_address_and_in_total_apart_from_agents() {
        let a = Admission::new(Limits {
            agents: 2,
            strangers: 3,
            strangers_per_address: 2,
            enrol_timeout: Duration::from_secs(1),
        });
        let (x, y): (IpAddr, IpAddr) = (
            "10.0.0.1".parse().expect("ip"),
            "10.0.0.2".parse().expect("ip"),
        );
        let s1 = a.stranger(x).expect("first of x");
        let _s2 = a.stranger(x).expect("second of x");
        assert!(a.stranger(x).is_none(), "x has its two");
        let _s3 = a.stranger(y).expect("y");
        assert!(a.stranger(y).is_none(), "three in total");
        // Agents are not affected.
        let _a1 = a.agent().expect("agent slot");
        let _a2 = a.agent().expect("agent slot");
        assert!(a.agent().is_none());
        drop(s1);
        assert!(a.stranger(x).is_some(), "a slot given back is free again");
    }
}
