//! Server-side accounting of uploads: bytes received by each test, in 100 ms bins from
//! the first byte of its first stream, summed over its streams. In memory only, bounded
//! in entries and bins, forgotten after a minute.

use crate::tcpinfo;
use sonde_proto::responder::{UploadReport, BIN_MS};
use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Tests remembered at once; the stalest is forgotten first beyond this.
const MAX_TESTS: usize = 4096;
/// A test's report is kept this long after its last stream ended.
const KEEP: Duration = Duration::from_secs(60);

/// One upload test.
#[derive(Debug)]
pub struct UploadTest {
    inner: Mutex<TestState>,
    ended: Notify,
    max_bins: usize,
}

/// A connection whose TCP segment count the test samples.
#[derive(Debug, Clone, Copy)]
struct Socket {
    fd: RawFd,
    /// Segment count at the last sample.
    last: Option<u64>,
}

#[derive(Debug, Default)]
struct TestState {
    sockets: Vec<Option<Socket>>,
    sampler_running: bool,
    first_byte: Option<Instant>,
    last_byte: Option<Instant>,
    bins: Vec<u64>,
    segment_bins: Vec<u64>,
    mss: u32,
    bytes: u64,
    streams: u32,
    active: u32,
    failed: u32,
    touched: Option<Instant>,
}

impl UploadTest {
    /// Records `len` bytes received at `now`.
    pub fn add(&self, len: usize, now: Instant) {
        let mut s = self.lock();
        let t0 = *s.first_byte.get_or_insert(now);
        let bin = (now.duration_since(t0).as_millis() / u128::from(BIN_MS)) as usize;
        let bin = bin.min(self.max_bins - 1);
        if s.bins.len() <= bin {
            s.bins.resize(bin + 1, 0);
        }
        s.bins[bin] += len as u64;
        s.bytes += len as u64;
        s.last_byte = Some(now);
    }

    /// Registers an upload connection's socket for segment sampling; the caller must
    /// call [`UploadTest::unregister_socket`] before the connection can close. Starts
    /// the test's sampler when it is not running.
    pub fn register_socket(self: &Arc<Self>, fd: RawFd) -> usize {
        let mut s = self.lock();
        let last = tcpinfo::segments_in(fd).map(|(segs, _)| segs);
        s.sockets.push(Some(Socket { fd, last }));
        let slot = s.sockets.len() - 1;
        if !s.sampler_running {
            s.sampler_running = true;
            let test = self.clone();
            tokio::spawn(async move { test.sample_segments().await });
        }
        slot
    }

    /// Samples the socket a last time and forgets it.
    pub fn unregister_socket(&self, slot: usize) {
        let mut s = self.lock();
        let now = Instant::now();
        if let Some(Some(sock)) = s.sockets.get(slot).copied() {
            Self::sample_one(&mut s, slot, sock, now, self.max_bins);
        }
        if let Some(entry) = s.sockets.get_mut(slot) {
            *entry = None;
        }
    }

    /// Every [`BIN_MS`], adds each registered socket's new segments to the current bin;
    /// ends when no socket is registered.
    async fn sample_segments(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(BIN_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let mut s = self.lock();
            let now = Instant::now();
            let live: Vec<(usize, Socket)> = s
                .sockets
                .iter()
                .enumerate()
                .filter_map(|(i, x)| x.map(|sock| (i, sock)))
                .collect();
            if live.is_empty() {
                s.sampler_running = false;
                return;
            }
            for (slot, sock) in live {
                Self::sample_one(&mut s, slot, sock, now, self.max_bins);
            }
        }
    }

    /// Reads one socket (it is registered, hence open) under the test's lock.
    fn sample_one(s: &mut TestState, slot: usize, sock: Socket, now: Instant, max_bins: usize) {
        let Some((segs, mss)) = tcpinfo::segments_in(sock.fd) else {
            return;
        };
        if let Some(Some(entry)) = s.sockets.get_mut(slot) {
            entry.last = Some(segs);
        }
        // The first reading is the baseline (the request head); only growth counts,
        // and only once the body has started arriving.
        let (Some(prev), Some(t0)) = (sock.last, s.first_byte) else {
            return;
        };
        let bin = (now.duration_since(t0).as_millis() / u128::from(BIN_MS)) as usize;
        let bin = bin.min(max_bins - 1);
        if s.segment_bins.len() <= bin {
            s.segment_bins.resize(bin + 1, 0);
        }
        s.segment_bins[bin] += segs.saturating_sub(prev);
        s.mss = s.mss.max(mss);
    }

    /// Marks a stream as started.
    pub fn stream_started(&self) {
        let mut s = self.lock();
        s.streams += 1;
        s.active += 1;
        s.touched = Some(Instant::now());
    }

    /// Marks a stream as ended, with or without error.
    pub fn stream_ended(&self, failed: bool) {
        let mut s = self.lock();
        s.active = s.active.saturating_sub(1);
        if failed {
            s.failed += 1;
        }
        s.touched = Some(Instant::now());
        drop(s);
        self.ended.notify_waiters();
    }

    /// The report, once no stream is active or `patience` has passed.
    pub async fn report(&self, test: &str, patience: Duration) -> UploadReport {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let notified = self.ended.notified();
            if self.lock().active == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        let s = self.lock();
        let span_ns = match (s.first_byte, s.last_byte) {
            (Some(a), Some(b)) => b.duration_since(a).as_nanos() as u64,
            _ => 0,
        };
        UploadReport {
            test: test.to_string(),
            streams: s.streams,
            bytes: s.bytes,
            bin_ms: BIN_MS,
            bins: s.bins.clone(),
            span_ns,
            failed_streams: s.failed,
            segment_bins: s.segment_bins.clone(),
            mss: s.mss,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TestState> {
        // A poisoned lock only means another stream panicked mid-update of plain counters.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// All upload tests known to this responder.
#[derive(Debug)]
pub struct Registry {
    tests: Mutex<HashMap<String, Arc<UploadTest>>>,
    max_bins: usize,
}

impl Registry {
    /// A registry whose tests hold at most `max_duration` worth of bins.
    pub fn new(max_duration: Duration) -> Self {
        let max_bins = (max_duration.as_millis() / u128::from(BIN_MS)) as usize + 20;
        Registry {
            tests: Mutex::new(HashMap::new()),
            max_bins,
        }
    }

    /// The test with this id, created when new.
    pub fn get_or_create(&self, id: &str) -> Arc<UploadTest> {
        let mut tests = self.tests.lock().unwrap_or_else(|e| e.into_inner());
        if !tests.contains_key(id) {
            prune(&mut tests);
        }
        tests
            .entry(id.to_string())
            .or_insert_with(|| {
                Arc::new(UploadTest {
                    inner: Mutex::new(TestState {
                        touched: Some(Instant::now()),
                        ..TestState::default()
                    }),
                    ended: Notify::new(),
                    max_bins: self.max_bins,
                })
            })
            .clone()
    }

    /// The test with this id, if known.
    pub fn get(&self, id: &str) -> Option<Arc<UploadTest>> {
        let tests = self.tests.lock().unwrap_or_else(|e| e.into_inner());
        tests.get(id).cloned()
    }
}

fn prune(tests: &mut HashMap<String, Arc<UploadTest>>) {
    let now = Instant::now();
    tests.retain(|_, t| {
        let s = t.lock();
        s.active > 0 || s.touched.is_some_and(|at| now.duration_since(at) < KEEP)
    });
    while tests.len() >= MAX_TESTS {
        let stalest = tests
            .iter()
            .filter(|(_, t)| t.lock().active == 0)
            .min_by_key(|(_, t)| t.lock().touched)
            .map(|(k, _)| k.clone());
        match stalest {
            Some(k) => tests.remove(&k),
            None => break,
        };
    }
}

/// Whether a client-chosen test id is acceptable: 1–64 of `[A-Za-z0-9_-]`.
pub fn valid_test_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bins_sum_streams_from_first_byte() {
        let reg = Registry::new(Duration::from_secs(10));
        let t = reg.get_or_create("abc");
        t.stream_started();
        t.stream_started();
        let t0 = Instant::now();
        t.add(100, t0);
        t.add(50, t0 + Duration::from_millis(50));
        t.add(10, t0 + Duration::from_millis(250));
        t.add(1, t0 + Duration::from_secs(3600)); // clamped into the last bin
        t.stream_ended(false);
        t.stream_ended(true);
        let r = t.report("abc", Duration::from_millis(10)).await;
        assert_eq!(r.bins[..3], [150, 0, 10]);
        assert_eq!(r.bins.len(), 120);
        assert_eq!((r.bytes, r.streams, r.failed_streams), (161, 2, 1));
    }

    #[tokio::test]
    async fn report_waits_for_active_streams_within_patience() {
        let reg = Registry::new(Duration::from_secs(10));
        let t = reg.get_or_create("x");
        t.stream_started();
        let t2 = t.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            t2.add(7, Instant::now());
            t2.stream_ended(false);
        });
        let r = t.report("x", Duration::from_secs(5)).await;
        assert_eq!(r.bytes, 7);
    }

    #[test]
    fn test_ids_are_bounded() {
        assert!(valid_test_id("0190a3c2-aaaa_b"));
        assert!(!valid_test_id(""));
        assert!(!valid_test_id("a/b"));
        assert!(!valid_test_id(&"a".repeat(65)));
    }
}
