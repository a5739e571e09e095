//! Who may hold one of the collector's HTTP connections, and for how long. The API is
//! public to whoever reaches the port (dashboards, Prometheus, readers), so a stranger
//! can open connections and send nothing, or trickle a header a byte at a time. Three
//! bounds keep the port answering the rest:
//!
//! - a header must arrive whole within [`HEADER_TIMEOUT`] of the connection opening or
//!   of the previous response (hyper's header read timeout: idle keep-alive and
//!   trickled headers alike);
//! - one address holds at most `per_address` connections; more are closed at once;
//! - all addresses together hold at most `total`; when full, the connection that has
//!   gone longest without a byte and has no request in flight is cut to make room, so a
//!   newcomer with a real request is always served;
//! - a connection that moves no byte for [`IDLE`] outside a request's handling (a
//!   client that stops reading its response) is cut.
//!
//! Every refusal and cut is counted by reason (`sonde_collector_http_refused_total`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A request's header must arrive whole within this long.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that moves nothing for this long is cut, even mid-response.
pub const IDLE: Duration = Duration::from_secs(30);
/// Descriptors kept for the store, QUIC and logs when the connection cap is fitted to
/// the process's descriptor limit.
const RESERVED_FDS: u64 = 128;

/// Why a connection was refused or cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cut {
    /// Its address already held its share.
    Address,
    /// Cut to make room for a newcomer: the longest silent while the port was full.
    Evicted,
    /// Nothing moved for [`IDLE`].
    Idle,
}

impl Cut {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Cut::Address => "address",
            Cut::Evicted => "evicted",
            Cut::Idle => "idle",
        }
    }
}

/// The bounds of a [`Gate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections held at once, all addresses together.
    pub total: usize,
    /// Connections held at once by one address.
    pub per_address: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            total: 1024,
            per_address: 64,
        }
    }
}

impl Limits {
    /// These limits, with `total` lowered to fit `nofile` open descriptors (a
    /// connection is one descriptor); `None` when they fit already.
    pub fn fitted(self, nofile: u64) -> Option<Limits> {
        let room = nofile.saturating_sub(RESERVED_FDS).max(16) as usize;
        (self.total > room).then_some(Limits {
            total: room,
            per_address: self.per_address.min(room),
        })
    }
}

/// Activity of one connection, shared with its I/O and its service.
#[derive(Debug, Default)]
pub struct Activity {
    /// Milliseconds since the gate's epoch of the last byte read or written.
    last: AtomicU64,
    /// Requests being answered.
    in_flight: AtomicUsize,
}

impl Activity {
    fn touch(&self, epoch: Instant) {
        self.last
            .store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// A request starts; the guard ends it.
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// A request being answered (see [`Activity::request`]).
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Slot {
    address: IpAddr,
    activity: Arc<Activity>,
    cut: Arc<tokio::sync::Notify>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    slots: HashMap<u64, Slot>,
    by_address: HashMap<IpAddr, usize>,
    cuts: HashMap<Cut, u64>,
}

/// The collector's HTTP connections.
#[derive(Debug)]
pub struct Gate {
    limits: Limits,
    epoch: Instant,
    inner: Mutex<Inner>,
}

/// An admitted connection: its activity, the signal that cuts it, and its slot (freed
/// on drop).
#[derive(Debug)]
pub struct Ticket {
    gate: Arc<Gate>,
    id: u64,
    /// Shared with the connection's I/O and service.
    pub activity: Arc<Activity>,
    /// Notified when the gate evicts the connection.
    pub cut: Arc<tokio::sync::Notify>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut inner = self.gate.lock();
        if let Some(slot) = inner.slots.remove(&self.id) {
            if let Some(n) = inner.by_address.get_mut(&slot.address) {
                *n -= 1;
                if *n == 0 {
                    inner.by_address.remove(&slot.address);
                }
            }
        }
    }
}

impl Ticket {
    /// How long since the last byte moved, while no request is being answered (zero
    /// while one is: a slow report is not idleness).
    pub fn idle_for(&self) -> Duration {
        if self.activity.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.activity.last.load(Ordering::Relaxed));
        self.gate.epoch.elapsed().saturating_sub(last)
    }

    /// Wraps the connection's I/O so every byte moved counts as activity.
    pub fn track<T>(&self, io: T) -> Tracked<T> {
        Tracked {
            io,
            activity: self.activity.clone(),
            epoch: self.gate.epoch,
        }
    }

    /// Counts a cut of this connection (the caller closes it).
    pub fn count(&self, cut: Cut) {
        self.gate.count(cut);
    }
}

impl Gate {
    /// No connection yet.
    pub fn new(limits: Limits) -> Arc<Gate> {
        Arc::new(Gate {
            limits,
            epoch: Instant::now(),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn count(&self, cut: Cut) {
        *self.lock().cuts.entry(cut).or_default() += 1;
    }

    /// Refusals and cuts so far, by reason.
    pub fn cuts(&self) -> Vec<(Cut, u64)> {
        let inner = self.lock();
        [Cut::Address, Cut::Evicted, Cut::Idle]
            .into_iter()
            .map(|c| (c, inner.cuts.get(&c).copied().unwrap_or(0)))
            .collect()
    }

    /// Connections held now.
    pub fn held(&self) -> usize {
        self.lock().slots.len()
    }

    /// Admits a connection from `address`, cutting the longest-silent idle one when
    /// the port is full; `Err` when the address has its share (close it at once).
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Ticket, Cut> {
        let mut inner = self.lock();
        let mine = inner.by_address.get(&address).copied().unwrap_or(0);
        if mine >= self.limits.per_address {
            *inner.cuts.entry(Cut::Address).or_default() += 1;
            return Err(Cut::Address);
        }
        if inner.slots.len() >= self.limits.total {
            let victim = inner
                .slots
                .iter()
                .filter(|(_, s)| s.activity.in_flight.load(Ordering::Relaxed) == 0)
                // Silent as long (activity is kept to the millisecond): the one held
                // longest goes, whatever order the map keeps.
                .min_by_key(|(id, s)| (s.activity.last.load(Ordering::Relaxed), **id))
                .map(|(id, _)| *id);
            // Its slot is freed now, not when its task gets round to closing: a burst
            // of newcomers cuts as many connections, never one twice.
            if let Some(slot) = victim.and_then(|id| inner.slots.remove(&id)) {
                // `notify_one` keeps the permit if the task is not waiting yet.
                slot.cut.notify_one();
                *inner.cuts.entry(Cut::Evicted).or_default() += 1;
                if let Some(n) = inner.by_address.get_mut(&slot.address) {
                    *n -= 1;
                    if *n == 0 {
                        inner.by_address.remove(&slot.address);
                    }
                }
            }
        }
        let activity = Arc::new(Activity::default());
        activity.touch(self.epoch);
        let cut = Arc::new(tokio::sync::Notify::new());
        let id = inner.next;
        inner.next += 1;
        inner.slots.insert(
            id,
            Slot {
                address,
                activity: activity.clone(),
                cut: cut.clone(),
            },
        );
        *inner.by_address.entry(address).or_default() += 1;
        Ok(Ticket {
            gate: self.clone(),
            id,
            activity,
            cut,
        })
    }
}

/// A connection's I/O, recording when each byte moved.
#[derive(Debug)]
pub struct Tracked<T> {
    io: T,
    activity: Arc<Activity>,
    epoch: Instant,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch(self.epoch);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch(self.epoch);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Raises the soft limit of open descriptors to the hard limit; returns the limit in
/// force. A collector started from a shell or a unit without `LimitNOFILE` gets 1024,
/// below the connections it is meant to hold.
pub fn raise_nofile() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn an_address_has_its_share_and_gets_it_back() {
        let gate = Gate::new(Limits {
            total: 10,
            per_address: 2,
        });
        let a1 = gate.admit(A).expect("first");
        let _a2 = gate.admit(A).expect("second");
        assert_eq!(gate.admit(A).expect_err("third"), Cut::Address);
        let _b = gate.admit(B).expect("another address");
        drop(a1);
        assert!(gate.admit(A).is_ok());
        assert_eq!(gate.cuts()[0], (Cut::Address, 1));
    }

    #[test]
    fn among_connections_silent_as_long_the_one_held_longest_is_cut() {
        // Twenty idle connections whose last byte moved in the same millisecond.
        let gate = Gate::new(Limits {
            total: 20,
            per_address: 20,
        });
        let held: Vec<Ticket> = (0..20).map(|_| gate.admit(A).expect("room")).collect();
        for t in &held {
            t.activity.last.store(7, Ordering::Relaxed);
        }
        let _newcomer = gate.admit(B).expect("room is made");
        let cut: Vec<usize> = held
            .iter()
            .enumerate()
            .filter(|(_, t)| futures_util::FutureExt::now_or_never(t.cut.notified()).is_some())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(cut, vec![0], "the first admitted goes");
    }

    #[test]
    fn a_full_port_evicts_the_longest_silent_idle_connection() {
        let gate = Gate::new(Limits {
            total: 3,
            per_address: 3,
        });
        let old = gate.admit(A).expect("old");
        std::thread::sleep(Duration::from_millis(5));
        let busy_and_older = gate.admit(A).expect("busy");
        // The busy one is older still: a request in flight is never evicted.
        busy_and_older.activity.last.store(0, Ordering::Relaxed);
        let _req = busy_and_older.activity.request();
        std::thread::sleep(Duration::from_millis(5));
        let recent = gate.admit(A).expect("recent");
        let _newcomer = gate.admit(B).expect("room is made");
        let notified = |t: &Ticket| {
            let n = t.cut.notified();
            futures_util::FutureExt::now_or_never(n).is_some()
        };
        assert!(notified(&old), "the longest silent idle one is cut");
        assert!(!notified(&busy_and_older));
        assert!(!notified(&recent));
        assert_eq!(gate.cuts()[1], (Cut::Evicted, 1));
        // Its slot went with it: the next newcomer cuts another, not the same one.
        assert_eq!(gate.held(), 3);
        let _second = gate.admit(B).expect("room again");
        assert!(notified(&recent), "the next longest silent");
        assert_eq!((gate.held(), gate.cuts()[1].1), (3, 2));
        drop(old);
        assert_eq!(
            gate.held(),
            3,
            "a cut connection's ticket frees nothing twice"
        );
    }

    #[test]
    fn the_cap_fits_the_descriptor_limit() {
        let l = Limits::default();
        assert_eq!(l.fitted(1_000_000), None);
        let fitted = l.fitted(1024).expect("lowered");
        assert_eq!(fitted.total, 1024 - RESERVED_FDS as usize);
        assert_eq!(fitted.per_address, 64);
    }
}
