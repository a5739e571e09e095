//! A virtual day of the agent's daemon in a few seconds: its real scheduler, spool,
//! status, budget ledger and uplink loop under a paused tokio clock, joined to a real
//! collector ingest (group commit, SQLite store) by an in-memory link that loses
//! requests and answers at random (seeded, replayable) and goes down for two outages.
//! Probes are made up (no network); everything else is the production code.

use chrono::{DateTime, TimeZone, Utc};
use futures_util::future::BoxFuture;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use sonde_agent::daemon::clock::{Clock, TokioClock};
use sonde_agent::daemon::prober::Prober;
use sonde_agent::daemon::{self, Deps};
use sonde_agent::engine::Options;
use sonde_agent::uplink::{Link, Outgoing, UplinkError};
use sonde_collector::ingest::{Ingest, Session};
use sonde_proto::wire::{self, FrameDecoder, Health, Message, Upload};
use sonde_proto::ResultRecord;
use sonde_store::prelude::*;
use sonde_store::{Delivery, ResultQuery};
use sonde_store_sqlite::SqliteStore;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// An empty scratch directory for test `name` of this process.
fn fresh_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sonde-virtual-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

/// Where every virtual day starts.
fn june_first() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
        .single()
        .expect("time")
}

/// Results made up at the clock's time.
#[derive(Debug)]
struct MadeUp {
    clock: TokioClock,
}

impl Prober for MadeUp {
    fn probe<'a>(&'a self, opts: &'a Options) -> BoxFuture<'a, ResultRecord> {
        Box::pin(async move {
            let mut r = ResultRecord::schema_example();
            r.id = uuid::Uuid::now_v7();
            r.access.kind = opts.access;
            r.run.responder.url = opts.responder.to_string();
            r.run.started_at = self.clock.now();
            // A test takes a few virtual seconds.
            tokio::time::sleep(Duration::from_secs(7)).await;
            r.run.ended_at = self.clock.now();
            r
        })
    }
}

/// What the link did, for the assertions.
#[derive(Debug, Default)]
struct Counts {
    refused_by_outage: AtomicU64,
    requests_lost: AtomicU64,
    answers_lost: AtomicU64,
}

/// An agent's link straight into a collector's ingest: the same frames, no sockets.
struct MemoryLink {
    ingest: Arc<Ingest>,
    delivery: Delivery,
    session: Option<Session>,
    clock: TokioClock,
    outages: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    rng: SmallRng,
    batch: u64,
    counts: Arc<Counts>,
}

impl MemoryLink {
    async fn exchange(&mut self, frame: Vec<u8>) -> Result<Vec<uuid::Uuid>, UplinkError> {
        let now = self.clock.now();
        if self.outages.iter().any(|(a, b)| *a <= now && now < *b) {
            self.counts
                .refused_by_outage
                .fetch_add(1, Ordering::Relaxed);
            return Err(UplinkError::Connect("outage".into()));
        }
        if self.rng.random_bool(0.05) {
            self.counts.requests_lost.fetch_add(1, Ordering::Relaxed);
            return Err(UplinkError::Lost("request lost".into()));
        }
        let (ingest, delivery) = (self.ingest.clone(), self.delivery.clone());
        let session = self
            .session
            .get_or_insert_with(|| ingest.session(Some(delivery), "memory".into()));
        // The commit runs on the collector's own thread, which paused time does not
        // see: a blocking task held meanwhile keeps time from jumping ahead (to the
        // end of the day, when the measure loop waits for the line this upload holds).
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let hold_time = tokio::task::spawn_blocking(move || {
            let _ = wait.recv();
        });
        let reply = ingest.receive(session, &frame, now).await;
        drop(done);
        let _ = hold_time.await;
        if self.rng.random_bool(0.05) {
            // Committed, but the agent never hears it: it must send again.
            self.counts.answers_lost.fetch_add(1, Ordering::Relaxed);
            return Err(UplinkError::Lost("answer lost".into()));
        }
        let mut d = FrameDecoder::new(wire::DEFAULT_MAX_PAYLOAD);
        d.push(&reply.send);
        match d.poll() {
            Ok(Some(Message::Ack(a))) => Ok(a.committed),
            Ok(Some(Message::Reject(r))) => Err(UplinkError::Refused {
                reason: r.reason,
                message: r.message,
            }),
            other => Err(UplinkError::BadAnswer(format!("{other:?}"))),
        }
    }
}

impl Link for MemoryLink {
    fn send(
        &mut self,
        out: Outgoing,
        health: Health,
    ) -> BoxFuture<'_, Result<Vec<uuid::Uuid>, UplinkError>> {
        self.batch += 1;
        let frame = wire::encode(&Message::Upload(Upload {
            batch: self.batch,
            health,
            results: out.results,
            signatures: out.signatures,
        }));
        Box::pin(async move {
            let r = self.exchange(frame).await;
            if r.is_err() {
                self.session = None;
            }
            r
        })
    }

    fn agent_id(&self) -> Option<String> {
        Some(self.delivery.agent_id.clone())
    }

    fn unknown_frames(&self) -> u64 {
        0
    }

    fn disconnect(&mut self) {
        self.session = None;
    }
}

fn config(dir: &std::path::Path) -> sonde_agent::config::Config {
    let text = format!(
        r#"
[site]
quartier = "q-virtual"
building = "b-virtual"
latitude = 48.8
longitude = 2.3

[collector]
address = "127.0.0.1:1"
state_dir = "{}"
retry_max = "5m"
batch = 50

[busy]
threshold = "off"
cpu_percent = 100

[[access]]
name = "fibre"
kind = "ftth"
interface = "lo"
responders = ["http://127.0.0.1:1"]
every = "10m"
jitter = "1m"

[[access]]
name = "mobile"
kind = "4g"
interface = "lo"
responders = ["http://127.0.0.1:2"]
every = "15m"
jitter = "2m"
budget_month = "20GB"
"#,
        dir.join("state").display()
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).expect("config");
    sonde_agent::config::load(&path, sonde_agent::config::Interfaces::Ignore)
        .unwrap_or_else(|p| panic!("config: {p:?}"))
}

#[tokio::test(start_paused = true)]
async fn a_virtual_day_of_schedule_uploads_and_outages_loses_and_duplicates_nothing() {
    let dir = fresh_dir("day");
    let start = june_first();
    let clock = TokioClock::starting_at(start);
    let store = Arc::new(SqliteStore::in_memory().expect("store"));
    let ingest = Arc::new(Ingest::new(store.clone(), None, None, 1 << 22));
    let counts = Arc::new(Counts::default());
    let hours = |h: i64| start + chrono::Duration::hours(h);
    let link = MemoryLink {
        ingest: ingest.clone(),
        delivery: Delivery {
            agent_id: "b-virtual-1".into(),
            quartier: Some("q-virtual".into()),
            building: Some("b-virtual".into()),
        },
        session: None,
        clock,
        // The collector is away from 03:00 to 06:30, and for a minute at noon.
        outages: vec![
            (hours(3), hours(6) + chrono::Duration::minutes(30)),
            (hours(12), hours(12) + chrono::Duration::minutes(1)),
        ],
        rng: SmallRng::seed_from_u64(20261202),
        batch: 0,
        counts: counts.clone(),
    };
    let deps = Deps {
        clock: Arc::new(clock),
        prober: Arc::new(MadeUp { clock }),
        link: Box::new(link),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(daemon::run(config(&dir), deps, stop_rx));
    let real = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(24 * 3600 + 600)).await;
    let _ = stop_tx.send(true);
    agent.await.expect("task").expect("daemon");
    let took = real.elapsed();

    let status = daemon::read_status(&dir.join("state")).expect("status");
    let stored = store
        .results(&ResultQuery {
            limit: 1000,
            ..Default::default()
        })
        .expect("results");
    let mut per_access: HashMap<String, usize> = HashMap::new();
    for r in &stored.results {
        let v = r.to_json();
        *per_access
            .entry(v["access"]["name"].as_str().unwrap_or("").into())
            .or_default() += 1;
        assert_eq!(r.agent_id, "b-virtual-1");
    }
    let stats = ingest.commit_stats();
    let new = stats.results_new.load(Ordering::Relaxed);
    let duplicates = stats.results_duplicate.load(Ordering::Relaxed);
    eprintln!(
        "virtual day in {took:?}: {} results ({per_access:?}), {duplicates} re-sent, \
         link: {counts:?}, status: {} uploaded, errors {:?}",
        status.results_total, status.uploaded_total, status.uplink_errors_total
    );
    // The schedule: every 10 and 15 minutes for 24 h 10 min, none missed.
    let fibre = per_access.get("fibre").copied().unwrap_or(0);
    let mobile = per_access.get("mobile").copied().unwrap_or(0);
    assert!((144..=146).contains(&fibre), "fibre ran {fibre} times");
    assert!((96..=98).contains(&mobile), "mobile ran {mobile} times");
    assert_eq!(status.missed_runs_total, 0);
    // Nothing lost, nothing stored twice: every result measured is stored once, or
    // still in the spool (measured in the last moments, or stored while the answer was
    // lost just before the stop).
    assert_eq!(
        new as usize,
        stored.results.len(),
        "each result stored once"
    );
    let mut ids: std::collections::HashSet<String> = stored
        .results
        .iter()
        .map(|r| r.to_json()["id"].as_str().unwrap_or("").to_string())
        .collect();
    let spool = sonde_agent::state::spool::Spool::open_read_only(&dir.join("state/spool.sqlite"))
        .expect("spool");
    ids.extend(
        spool
            .peek(100)
            .expect("peek")
            .iter()
            .map(|s| s.id.to_string()),
    );
    assert_eq!(
        status.results_total as usize,
        ids.len(),
        "every result kept"
    );
    assert!(
        status.spool_depth <= 2,
        "the spool drained: {}",
        status.spool_depth
    );
    assert!(stored.next_cursor.is_none());
    // The link failed in every way it can, and the agent went through each.
    assert!(counts.refused_by_outage.load(Ordering::Relaxed) > 3);
    assert!(counts.requests_lost.load(Ordering::Relaxed) > 0);
    assert!(counts.answers_lost.load(Ordering::Relaxed) > 0);
    assert!(duplicates > 0, "answers lost after commit are re-sent");
    assert!(
        status
            .uplink_errors_total
            .get("connect")
            .copied()
            .unwrap_or(0)
            > 3
    );
    // Backoff, not a storm: at most one try per second of outage, far fewer in fact.
    let outage_s = 3.5 * 3600.0 + 60.0;
    assert!((counts.refused_by_outage.load(Ordering::Relaxed) as f64) < outage_s / 30.0);
    // The budgeted access's use is in the status.
    assert!(status.budgets["mobile"].used_bytes > 0);
    assert!(
        took < Duration::from_secs(60),
        "a virtual day took {took:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Virtual time spans, shared between a fake part and the test.
type Spans = Arc<std::sync::Mutex<Vec<(DateTime<Utc>, DateTime<Utc>)>>>;

/// A responder busy with other tests on every first attempt; each probe's virtual
/// time span is recorded.
#[derive(Debug)]
struct BusyOnce {
    clock: TokioClock,
    calls: AtomicU64,
    spans: Spans,
}

impl Prober for BusyOnce {
    fn probe<'a>(&'a self, opts: &'a Options) -> BoxFuture<'a, ResultRecord> {
        Box::pin(async move {
            let started = self.clock.now();
            let call = self.calls.fetch_add(1, Ordering::Relaxed);
            let r = if call.is_multiple_of(2) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                sonde_agent::engine::failed(
                    opts,
                    sonde_proto::FailureReason::ResponderBusy,
                    "responder busy: 1 download test(s) running".into(),
                )
            } else {
                let mut r = ResultRecord::schema_example();
                r.id = uuid::Uuid::now_v7();
                r.run.started_at = started;
                tokio::time::sleep(Duration::from_secs(7)).await;
                r.run.ended_at = self.clock.now();
                r
            };
            self.spans
                .lock()
                .expect("spans")
                .push((started, self.clock.now()));
            r
        })
    }
}

/// A link whose every upload takes 3 virtual seconds and is acknowledged; each
/// upload's span is recorded.
struct SlowLink {
    clock: TokioClock,
    spans: Spans,
}

impl Link for SlowLink {
    fn send(
        &mut self,
        out: Outgoing,
        _health: Health,
    ) -> BoxFuture<'_, Result<Vec<uuid::Uuid>, UplinkError>> {
        Box::pin(async move {
            let started = self.clock.now();
            tokio::time::sleep(Duration::from_secs(3)).await;
            self.spans
                .lock()
                .expect("spans")
                .push((started, self.clock.now()));
            Ok(out
                .results
                .iter()
                .filter_map(|r| r.parse().ok().map(|r: ResultRecord| r.id))
                .collect())
        })
    }

    fn agent_id(&self) -> Option<String> {
        Some("b-virtual-2".into())
    }

    fn unknown_frames(&self) -> u64 {
        0
    }

    fn disconnect(&mut self) {}
}

#[tokio::test(start_paused = true)]
async fn a_busy_responder_is_tried_again_and_no_upload_crosses_a_test() {
    let dir = fresh_dir("busy");
    let start = june_first();
    let clock = TokioClock::starting_at(start);
    let (probes, uploads) = (Arc::default(), Arc::default());
    let deps = Deps {
        clock: Arc::new(clock),
        prober: Arc::new(BusyOnce {
            clock,
            calls: AtomicU64::new(0),
            spans: Arc::clone(&probes),
        }),
        link: Box::new(SlowLink {
            clock,
            spans: Arc::clone(&uploads),
        }),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(daemon::run(config(&dir), deps, stop_rx));
    tokio::time::sleep(Duration::from_secs(4 * 3600)).await;
    let _ = stop_tx.send(true);
    agent.await.expect("task").expect("daemon");

    let status = daemon::read_status(&dir.join("state")).expect("status");
    let probes: Vec<_> = probes.lock().expect("spans").clone();
    let uploads: Vec<_> = uploads.lock().expect("spans").clone();
    // Every run met a busy responder once, waited and got its test: the results are
    // all tests that ran, none failed as busy.
    assert!(probes.len() >= 2 * 40, "{} attempts", probes.len());
    assert_eq!(
        status
            .failures_total
            .get("responder_busy")
            .copied()
            .unwrap_or(0),
        0,
        "{:?}",
        status.failures_total
    );
    assert_eq!(status.results_total as usize * 2, probes.len());
    // Uploads happened (results and heartbeats), and none while a test ran.
    assert!(uploads.len() > 40, "{} uploads", uploads.len());
    let crossing: Vec<_> = uploads
        .iter()
        .filter(|(us, ue)| probes.iter().any(|(ps, pe)| us < pe && ps < ue))
        .collect();
    assert!(crossing.is_empty(), "uploads during tests: {crossing:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A wall clock that follows tokio's and can be stepped, like NTP stepping a box's
/// clock.
#[derive(Debug, Clone)]
struct SteppedClock {
    base: TokioClock,
    offset_ms: Arc<std::sync::atomic::AtomicI64>,
}

impl Clock for SteppedClock {
    fn now(&self) -> DateTime<Utc> {
        self.base.now() + chrono::Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }
}

/// Probes that take a virtual second, each start recorded on the monotonic clock.
#[derive(Debug)]
struct Counted {
    clock: SteppedClock,
    starts: Arc<std::sync::Mutex<Vec<tokio::time::Instant>>>,
}

impl Prober for Counted {
    fn probe<'a>(&'a self, _opts: &'a Options) -> BoxFuture<'a, ResultRecord> {
        Box::pin(async move {
            self.starts
                .lock()
                .expect("starts")
                .push(tokio::time::Instant::now());
            let mut r = ResultRecord::schema_example();
            r.id = uuid::Uuid::now_v7();
            r.run.started_at = self.clock.now();
            tokio::time::sleep(Duration::from_secs(1)).await;
            r.run.ended_at = self.clock.now();
            r
        })
    }
}

#[tokio::test(start_paused = true)]
async fn clock_steps_re_anchor_the_schedule_and_count_no_missed_runs() {
    let dir = fresh_dir("steps");
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            "[site]\nquartier = \"q\"\nbuilding = \"b\"\nlatitude = 48.8\nlongitude = 2.3\n\
             [collector]\naddress = \"127.0.0.1:1\"\nstate_dir = \"{}\"\n\
             [busy]\nthreshold = \"off\"\ncpu_percent = 100\n\
             [[access]]\nname = \"fibre\"\nkind = \"ftth\"\ninterface = \"lo\"\n\
             responders = [\"http://127.0.0.1:1\"]\nevery = \"10s\"\njitter = \"1s\"\n",
            dir.join("state").display()
        ),
    )
    .expect("config");
    let config = sonde_agent::config::load(&path, sonde_agent::config::Interfaces::Ignore)
        .unwrap_or_else(|p| panic!("config: {p:?}"));
    let start = june_first();
    let base = TokioClock::starting_at(start);
    let clock = SteppedClock {
        base,
        offset_ms: Arc::default(),
    };
    let starts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let deps = Deps {
        clock: Arc::new(clock.clone()),
        prober: Arc::new(Counted {
            clock: clock.clone(),
            starts: starts.clone(),
        }),
        link: Box::new(SlowLink {
            clock: base,
            spans: Arc::default(),
        }),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let t0 = tokio::time::Instant::now();
    let agent = tokio::spawn(daemon::run(config, deps, stop_rx));
    // Three minutes each: as set, a day ahead, an hour back from there, and back to
    // the right time (23 h back).
    const DAY: i64 = 86_400_000;
    for offset in [0, DAY, DAY - 3_600_000, 0] {
        clock.offset_ms.store(offset, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(180)).await;
    }
    let _ = stop_tx.send(true);
    agent.await.expect("task").expect("daemon");

    let status = daemon::read_status(&dir.join("state")).expect("status");
    let starts = starts.lock().expect("starts").clone();
    let runs_in = |from: u64| {
        starts
            .iter()
            .filter(|s| {
                let t = s.duration_since(t0).as_secs();
                (from..from + 180).contains(&t)
            })
            .count()
    };
    let per_span: Vec<usize> = [0, 180, 360, 540].into_iter().map(runs_in).collect();
    eprintln!(
        "runs per 3 minutes: {per_span:?}; steps {}, missed {}",
        status.clock_steps_total, status.missed_runs_total
    );
    // Every 10 s is 18 runs in 3 minutes; the first and the re-made schedules start
    // within one interval.
    for (i, n) in per_span.iter().enumerate() {
        assert!(*n >= 15, "span {i}: {n} runs ({per_span:?})");
    }
    assert_eq!(status.clock_steps_total, 3);
    assert_eq!(status.missed_runs_total, 0);
    let _ = std::fs::remove_dir_all(&dir);
}
