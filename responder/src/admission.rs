//! Which data streams the responder serves: a bounded number of tests at once per
//! direction (a test is every stream carrying one test id), a bounded number of streams
//! per client address, and a record of which tests overlapped, so an agent can flag a
//! result whose test shared the responder with another (`server_contended`).
//!
//! Why one test per direction by default: two tests in one direction share the
//! responder's uplink or downlink (and its CPU), so each would report its share of it,
//! not its access; the two directions of a full-duplex link do not share a bottleneck.

use sonde_proto::responder::TestReport;
use sonde_proto::Direction;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A test stays a test this long after its last stream ended (for another address):
/// a stream the agent reopens does not lose the slot.
pub const LINGER: Duration = Duration::from_secs(2);
/// A finished test's report is kept this long.
const KEEP: Duration = Duration::from_secs(60);
/// Tests remembered at most (running and finished); the oldest finished go first.
const MAX_REMEMBERED: usize = 4096;
/// An address whose stream was cut for stalling or trickling starts no test for this
/// long: one client cannot take the slots back the moment they free up.
pub const PENALTY: Duration = Duration::from_secs(60);
/// Addresses remembered in the penalty box at most.
const MAX_PENALISED: usize = 4096;

/// The limits of [`Admission`].
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Tests running at once in each direction.
    pub tests_per_direction: usize,
    /// Data streams open at once from one client address.
    pub streams_per_address: usize,
    /// A test counts as running for this long at most (the longest stream, and a
    /// margin), however its streams behave.
    pub max_test: Duration,
}

/// Why a stream is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Every test slot of the direction is taken; retry after about this long.
    Tests {
        /// Tests running in the direction.
        running: usize,
        /// Seconds until the earliest of them must end.
        retry_after_s: u64,
        /// When every test in the way has already ended its streams and merely
        /// lingers: how long until the last of them lets go. The stream is worth
        /// holding that long rather than refusing (a box measures its accesses one
        /// after the other, each from its own address).
        lingering: Option<Duration>,
    },
    /// This address has its share of streams open.
    Address {
        /// Streams it has open.
        open: usize,
    },
    /// A stream of this address was cut for stalling or trickling, lately.
    Penalised {
        /// Seconds left.
        retry_after_s: u64,
    },
}

impl Refusal {
    /// The one-line reason sent to the client.
    pub fn reason(&self, direction: Direction) -> String {
        match self {
            Refusal::Tests { running, .. } => format!(
                "responder busy: {running} {} test(s) running, the limit for one direction; retry later or use another responder",
                if direction == Direction::Up { "upload" } else { "download" }
            ),
            Refusal::Address { open } => {
                format!("responder busy: {open} streams already open from your address")
            }
            Refusal::Penalised { retry_after_s } => format!(
                "refused: a stream from your address stalled or trickled; no test from it for {retry_after_s} s"
            ),
        }
    }

    /// The `Retry-After` to send, seconds.
    pub fn retry_after_s(&self) -> u64 {
        match self {
            Refusal::Tests { retry_after_s, .. } | Refusal::Penalised { retry_after_s } => {
                (*retry_after_s).max(1)
            }
            Refusal::Address { .. } => 5,
        }
    }
}

#[derive(Debug)]
struct Test {
    direction: Direction,
    address: IpAddr,
    started: Instant,
    streams_open: usize,
    streams: u32,
    last_end: Option<Instant>,
    same_direction: u32,
    other_direction: u32,
}

impl Test {
    fn running(&self, now: Instant, max_test: Duration) -> bool {
        now.duration_since(self.started) < max_test
            && (self.streams_open > 0
                || self.last_end.is_none_or(|t| now.duration_since(t) < LINGER))
    }

    /// Whether it keeps a test of `address` out: running, and not merely lingering
    /// after its streams from that same address (a box runs its tests one after the
    /// other).
    fn excludes(&self, address: IpAddr, now: Instant, max_test: Duration) -> bool {
        self.running(now, max_test) && (self.streams_open > 0 || self.address != address)
    }
}

#[derive(Debug, Default)]
struct Inner {
    tests: HashMap<String, Test>,
    by_address: HashMap<IpAddr, usize>,
    /// Until when each penalised address is refused.
    penalised: HashMap<IpAddr, Instant>,
}

/// The responder's tests and streams.
#[derive(Debug)]
pub struct Admission {
    rules: Rules,
    inner: Mutex<Inner>,
}

/// An admitted stream; dropping it ends the stream.
#[derive(Debug)]
pub struct Stream {
    admission: Arc<Admission>,
    test: String,
    address: IpAddr,
}

impl Drop for Stream {
    fn drop(&mut self) {
        let now = Instant::now();
        let mut inner = self.admission.lock();
        if let Some(t) = inner.tests.get_mut(&self.test) {
            t.streams_open = t.streams_open.saturating_sub(1);
            t.last_end = Some(now);
        }
        if let Some(n) = inner.by_address.get_mut(&self.address) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.by_address.remove(&self.address);
            }
        }
    }
}

impl Admission {
    /// No test yet.
    pub fn new(rules: Rules) -> Arc<Self> {
        Arc::new(Admission {
            rules,
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a stream of test `id` in `direction` from `address`, or says why not.
    pub fn admit(
        self: &Arc<Self>,
        id: &str,
        direction: Direction,
        address: IpAddr,
        now: Instant,
    ) -> Result<Stream, Refusal> {
        let rules = self.rules;
        let mut inner = self.lock();
        if let Some(until) = inner.penalised.get(&address).copied() {
            if until > now {
                return Err(Refusal::Penalised {
                    retry_after_s: until.duration_since(now).as_secs() + 1,
                });
            }
            inner.penalised.remove(&address);
        }
        let open = inner.by_address.get(&address).copied().unwrap_or(0);
        if open >= rules.streams_per_address {
            return Err(Refusal::Address { open });
        }
        let known = inner
            .tests
            .get(id)
            .is_some_and(|t| t.direction == direction && t.running(now, rules.max_test));
        if !known {
            Self::open_test(&mut inner, (id, direction, address), now, rules)?;
        }
        let t = inner
            .tests
            .get_mut(id)
            .unwrap_or_else(|| unreachable!("inserted above"));
        t.streams_open += 1;
        t.streams += 1;
        *inner.by_address.entry(address).or_default() += 1;
        Ok(Stream {
            admission: self.clone(),
            test: id.to_string(),
            address,
        })
    }

    /// Starts test `id` if the direction has a free slot, counting the tests it
    /// overlaps (and them overlapping it).
    fn open_test(
        inner: &mut Inner,
        (id, direction, address): (&str, Direction, IpAddr),
        now: Instant,
        rules: Rules,
    ) -> Result<(), Refusal> {
        let running: Vec<(&String, &Test)> = inner
            .tests
            .iter()
            .filter(|(k, t)| *k != id && t.excludes(address, now, rules.max_test))
            .collect();
        let same: Vec<&Test> = running
            .iter()
            .filter(|(_, t)| t.direction == direction)
            .map(|(_, t)| *t)
            .collect();
        if same.len() >= rules.tests_per_direction {
            let retry_after_s = same
                .iter()
                .map(|t| rules.max_test.saturating_sub(now.duration_since(t.started)))
                .min()
                .unwrap_or(rules.max_test)
                .as_secs()
                + 1;
            let lingering = same
                .iter()
                .map(|t| match t.last_end {
                    Some(end) if t.streams_open == 0 => {
                        Some(LINGER.saturating_sub(now.duration_since(end)))
                    }
                    _ => None,
                })
                .try_fold(Duration::ZERO, |longest, wait| Some(longest.max(wait?)));
            return Err(Refusal::Tests {
                running: same.len(),
                retry_after_s,
                lingering,
            });
        }
        let (same_n, other_n) = (same.len() as u32, (running.len() - same.len()) as u32);
        let overlapped: Vec<String> = running.iter().map(|(k, _)| (*k).clone()).collect();
        for k in overlapped {
            if let Some(t) = inner.tests.get_mut(&k) {
                if t.direction == direction {
                    t.same_direction += 1;
                } else {
                    t.other_direction += 1;
                }
            }
        }
        Self::forget_old(inner, now, rules.max_test);
        inner.tests.insert(
            id.to_string(),
            Test {
                direction,
                address,
                started: now,
                streams_open: 0,
                streams: 0,
                last_end: None,
                same_direction: same_n,
                other_direction: other_n,
            },
        );
        Ok(())
    }

    /// Drops finished tests older than [`KEEP`], and the oldest finished beyond
    /// [`MAX_REMEMBERED`].
    fn forget_old(inner: &mut Inner, now: Instant, max_test: Duration) {
        inner.tests.retain(|_, t| {
            t.running(now, max_test) || t.last_end.is_none_or(|e| now.duration_since(e) < KEEP)
        });
        while inner.tests.len() >= MAX_REMEMBERED {
            let oldest = inner
                .tests
                .iter()
                .filter(|(_, t)| !t.running(now, max_test))
                .min_by_key(|(_, t)| t.started)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => inner.tests.remove(&k),
                None => break,
            };
        }
    }

    /// Refuses new streams from `address` for [`PENALTY`]: one of its streams was cut
    /// for stalling or trickling.
    pub fn penalise(&self, address: IpAddr, now: Instant) {
        let mut inner = self.lock();
        if inner.penalised.len() >= MAX_PENALISED {
            inner.penalised.retain(|_, until| *until > now);
        }
        if inner.penalised.len() < MAX_PENALISED {
            inner.penalised.insert(address, now + PENALTY);
        }
    }

    /// What the responder knows of test `id`: its streams and the other tests that
    /// ran while it did.
    pub fn report(&self, id: &str) -> Option<TestReport> {
        let inner = self.lock();
        inner.tests.get(id).map(|t| TestReport {
            test: id.to_string(),
            direction: t.direction,
            streams: t.streams,
            overlapped_same_direction: t.same_direction,
            overlapped_other_direction: t.other_direction,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(tests: usize) -> Rules {
        Rules {
            tests_per_direction: tests,
            streams_per_address: 4,
            max_test: Duration::from_secs(30),
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn one_test_per_direction_and_its_streams_all_enter() {
        let a = Admission::new(rules(1));
        let t0 = Instant::now();
        let s1 = a.admit("t1", Direction::Down, A, t0).expect("first");
        let s2 = a.admit("t1", Direction::Down, A, t0).expect("same test");
        let refused = a
            .admit("t2", Direction::Down, B, t0)
            .expect_err("second test");
        assert!(matches!(
            refused,
            Refusal::Tests {
                running: 1,
                lingering: None,
                ..
            }
        ));
        assert!(refused.retry_after_s() >= 30);
        // The other direction is free, and both are told they overlapped.
        let _up = a
            .admit("t3", Direction::Up, B, t0)
            .expect("other direction");
        assert_eq!(
            a.report("t1").map(|r| r.overlapped_other_direction),
            Some(1)
        );
        assert_eq!(
            a.report("t3").map(|r| r.overlapped_other_direction),
            Some(1)
        );
        assert_eq!(a.report("t1").map(|r| r.overlapped_same_direction), Some(0));
        // The test ends with its streams, after the linger (at once for its own
        // address's next test).
        drop((s1, s2));
        match a.admit("t2", Direction::Down, B, Instant::now()) {
            Err(Refusal::Tests {
                lingering: Some(wait),
                ..
            }) => assert!(wait <= LINGER && wait > Duration::ZERO, "{wait:?}"),
            other => panic!("t1 lingers, and says how long: {other:?}"),
        }
        drop(
            a.admit("t4", Direction::Down, A, Instant::now())
                .expect("A's next test"),
        );
        let later = Instant::now() + LINGER + Duration::from_millis(1);
        assert!(a.admit("t2", Direction::Down, B, later).is_ok());
        assert_eq!(a.report("t1").map(|r| r.streams), Some(2));
    }

    #[test]
    fn tests_over_the_limit_are_counted_as_overlapping() {
        let a = Admission::new(rules(2));
        let t0 = Instant::now();
        let _s1 = a.admit("t1", Direction::Up, A, t0).expect("first");
        let _s2 = a.admit("t2", Direction::Up, B, t0).expect("second");
        assert_eq!(a.report("t1").map(|r| r.overlapped_same_direction), Some(1));
        assert_eq!(a.report("t2").map(|r| r.overlapped_same_direction), Some(1));
    }

    #[test]
    fn an_address_has_its_share_of_streams_and_a_stuck_test_ends_at_its_cap() {
        let a = Admission::new(rules(1));
        let t0 = Instant::now();
        let held: Vec<_> = (0..4)
            .map(|_| a.admit("t1", Direction::Down, A, t0).expect("within share"))
            .collect();
        assert_eq!(
            a.admit("t1", Direction::Down, A, t0).expect_err("fifth"),
            Refusal::Address { open: 4 }
        );
        // Another address's test waits for the slot, held however long the streams
        // stay open, until the cap.
        assert!(a.admit("t2", Direction::Down, B, t0).is_err());
        let capped = t0 + Duration::from_secs(30);
        assert!(a.admit("t2", Direction::Down, B, capped).is_ok());
        drop(held);
    }

    #[test]
    fn a_penalised_address_waits_out_its_penalty() {
        let a = Admission::new(rules(1));
        let t0 = Instant::now();
        a.penalise(A, t0);
        let refused = a.admit("t1", Direction::Up, A, t0).expect_err("penalised");
        assert!(matches!(refused, Refusal::Penalised { retry_after_s: 61 }));
        assert!(
            a.admit("t2", Direction::Up, B, t0).is_ok(),
            "others are not"
        );
        let after = t0 + PENALTY;
        assert!(a.admit("t1", Direction::Down, A, after).is_ok());
    }
}
