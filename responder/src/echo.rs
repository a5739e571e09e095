//! UDP echo: answers each valid request datagram with its reply, stamped with the
//! receive time. Anything else is dropped and counted, never answered, so the port
//! cannot be used to reflect traffic.
//!
//! A reply is never larger than its request (no amplification), but UDP sources can
//! be forged, so a stranger could still aim the echo at a victim. Each source address
//! is therefore answered at most [`Rate::per_second`] times a second (a token bucket
//! with a burst of twice that; default 2,000/s: twice an agent's densest train, one
//! probe a millisecond with `--idle-interval 1`, so the limit never costs an agent a
//! probe and never shows as loss), and all addresses together at most
//! [`Rate::total_per_second`]: a reflector that returns no more than the forger spends,
//! and never more than ~128 kB/s towards one victim.
//! Why a rate and not a token from the HTTP side: it needs no change to the echo
//! format, older agents keep working, and the bound is what matters for a victim.
//! Over-rate datagrams are dropped and counted.

use sonde_proto::echo::{reply_in_place, MAX_LEN};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::net::UdpSocket;

/// How fast the echo answers.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// Replies a second to one source address (burst: twice this).
    pub per_second: u32,
    /// Replies a second to all addresses together (burst: twice this).
    pub total_per_second: u32,
}

/// The responder's default rates (`--echo-rate`, `--echo-rate-total`).
pub const DEFAULT: Rate = Rate {
    per_second: 2_000,
    total_per_second: 20_000,
};

/// Source addresses tracked at most; beyond, buckets full again are forgotten.
const MAX_TRACKED: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: 2.0 * f64::from(rate),
            at: now,
        }
    }

    /// Refills for the time since the last take, then takes one if there is one.
    fn take(&mut self, rate: u32, now: Instant) -> bool {
        let burst = 2.0 * f64::from(rate);
        let refill = now.duration_since(self.at).as_secs_f64() * f64::from(rate);
        self.tokens = (self.tokens + refill).min(burst);
        self.at = now;
        let ok = self.tokens >= 1.0;
        if ok {
            self.tokens -= 1.0;
        }
        ok
    }
}

/// Token buckets per source address and for all of them.
#[derive(Debug)]
pub struct Limiter {
    rate: Rate,
    total: Bucket,
    by_address: HashMap<IpAddr, Bucket>,
}

impl Limiter {
    /// Every bucket full.
    pub fn new(rate: Rate, now: Instant) -> Limiter {
        Limiter {
            rate,
            total: Bucket::full(rate.total_per_second, now),
            by_address: HashMap::new(),
        }
    }

    /// Whether a datagram from `address` is answered now.
    pub fn allow(&mut self, address: IpAddr, now: Instant) -> bool {
        if self.by_address.len() >= MAX_TRACKED && !self.by_address.contains_key(&address) {
            let (rate, burst) = (self.rate.per_second, 2.0 * f64::from(self.rate.per_second));
            self.by_address.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * f64::from(rate) < burst
            });
        }
        let per = self.rate.per_second;
        let mine = self
            .by_address
            .entry(address)
            .or_insert_with(|| Bucket::full(per, now));
        mine.take(per, now) && self.total.take(self.rate.total_per_second, now)
    }
}

/// Serves echo requests until `stop` turns true.
pub async fn serve(sock: UdpSocket, rate: Rate, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut buf = vec![0u8; MAX_LEN + 1];
    let (mut echoed, mut dropped, mut over_rate) = (0u64, 0u64, 0u64);
    let mut limiter = Limiter::new(rate, Instant::now());
    loop {
        let (len, peer) = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "udp receive failed");
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        match reply_in_place(&mut buf[..len], now_ns) {
            Ok(n) if limiter.allow(peer.ip(), Instant::now()) => {
                if sock.send_to(&buf[..n], peer).await.is_ok() {
                    echoed += 1;
                }
            }
            Ok(_) => {
                over_rate += 1;
                if over_rate.is_power_of_two() {
                    tracing::info!(%peer, over_rate, "udp echo over its rate: dropped");
                }
            }
            Err(e) => {
                dropped += 1;
                tracing::debug!(%peer, error = %e, "udp datagram dropped");
            }
        }
    }
    tracing::info!(echoed, dropped, over_rate, "udp echo stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn one_address_gets_its_burst_then_its_rate_and_another_is_not_affected() {
        let t0 = Instant::now();
        let mut l = Limiter::new(
            Rate {
                per_second: 100,
                total_per_second: 1000,
            },
            t0,
        );
        let burst = (0..1000).filter(|_| l.allow(A, t0)).count();
        assert_eq!(burst, 200);
        // One second later: a second's worth more.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..1000).filter(|_| l.allow(A, t1)).count(), 100);
        // An agent probing every 20 ms from another address loses nothing.
        let lost = (0..50)
            .filter(|i| !l.allow(B, t1 + Duration::from_millis(20 * i)))
            .count();
        assert_eq!(lost, 0);
    }

    #[test]
    fn an_agent_at_its_densest_loses_nothing_at_the_default_rate() {
        // --idle-interval 1 (1,000 probes a second) with loaded-latency probes beside.
        let t0 = Instant::now();
        let mut l = Limiter::new(DEFAULT, t0);
        let lost = (0..10_000u64)
            .filter(|i| !l.allow(A, t0 + Duration::from_micros(900 * i)))
            .count();
        assert_eq!(lost, 0);
    }

    #[test]
    fn all_addresses_together_are_bounded_too() {
        let t0 = Instant::now();
        let mut l = Limiter::new(
            Rate {
                per_second: 100,
                total_per_second: 300,
            },
            t0,
        );
        let answered = (0..50u8)
            .flat_map(|a| std::iter::repeat_n(a, 100))
            .filter(|a| l.allow(IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 0, *a)), t0))
            .count();
        assert_eq!(answered, 600, "the total burst");
    }
}
