//! The single writer: uploads waiting at the same moment are committed together in
//! one transaction (group commit), so one fsync serves many agents; each upload is
//! answered once the transaction is durable. The queue is bounded: an upload beyond
//! it waits for room without its stream being read, so QUIC flow control slows the
//! agents down instead of the collector buffering a fleet's backfill. On shutdown the
//! writer finishes the group in hand and its thread is joined.

use chrono::Utc;
use sonde_store::{Batch, Inserted, ResultWriter};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Results gathered into one transaction at most.
pub const MAX_GROUP_RESULTS: usize = 20_000;
/// Results waiting for the writer at most. An upload beyond this waits for room
/// without reading more from its stream, so QUIC flow control slows the agents down
/// instead of the collector buffering (or parsing) a whole fleet's backfill at once.
pub const MAX_QUEUED_RESULTS: usize = 50_000;
/// An upload that found no room for this long is refused with `unavailable`
/// (counted); the agent retries after its backoff. Below the agents' answer timeout.
pub const MAX_QUEUE_WAIT: Duration = Duration::from_secs(12);

/// What the writer thread is sent.
enum Job {
    /// An upload to commit, and where to answer.
    Commit(Box<Pending>),
    /// Finish the group in hand and stop.
    Stop,
}

/// Counters of the commit path, read by `/metrics`.
#[derive(Debug)]
pub struct CommitStats {
    /// Results newly stored.
    pub results_new: AtomicU64,
    /// Results re-sent and already stored.
    pub results_duplicate: AtomicU64,
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Uploads committed.
    pub batches: AtomicU64,
    /// Total time spent committing, microseconds.
    pub commit_us: AtomicU64,
    /// Transactions that failed.
    pub failures: AtomicU64,
    /// Time of each transaction, from its start to its durable commit.
    pub commit_seconds: prometheus::Histogram,
    /// Transactions failed since the last that succeeded, and the last error.
    pub failing: std::sync::Mutex<(u64, String)>,
    /// When the transaction running now began (Unix milliseconds; 0: none runs).
    pub running_since_ms: AtomicU64,
}

impl Default for CommitStats {
    fn default() -> Self {
        let m = sonde_proto::metrics::COLLECTOR_COMMIT_SECONDS;
        let opts = prometheus::HistogramOpts::new(m.name, m.help).buckets(vec![
            0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
        ]);
        CommitStats {
            results_new: AtomicU64::new(0),
            results_duplicate: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            commit_us: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            failing: std::sync::Mutex::new((0, String::new())),
            running_since_ms: AtomicU64::new(0),
            commit_seconds: prometheus::Histogram::with_opts(opts)
                .unwrap_or_else(|_| unreachable!("static histogram options are valid")),
        }
    }
}

/// The single writer: commits uploads in groups, then answers each.
#[derive(Debug, Clone)]
pub struct Committer {
    jobs: mpsc::Sender<Job>,
    stats: Arc<CommitStats>,
    room: Arc<tokio::sync::Semaphore>,
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").finish_non_exhaustive()
    }
}

/// A commit waiting in the writer's group.
struct Pending {
    batch: Batch,
    done: oneshot::Sender<Result<Inserted, String>>,
    permits: usize,
}

/// A commit running longer than this means the writer is stuck.
pub const STUCK: std::time::Duration = std::time::Duration::from_secs(30);

impl CommitStats {
    /// Why commits are not going through now, if they are not: the last transaction
    /// failed, or one has run for longer than [`STUCK`].
    pub fn trouble(&self, now: chrono::DateTime<Utc>) -> Option<String> {
        let failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        if failing.0 > 0 {
            return Some(format!(
                "commits failing ({} in a row): {}",
                failing.0, failing.1
            ));
        }
        let since = self.running_since_ms.load(Ordering::Relaxed);
        let running = (now.timestamp_millis() as u64).saturating_sub(since);
        (since > 0 && running > STUCK.as_millis() as u64)
            .then(|| format!("a commit has been running for {} s", running / 1000))
    }
}

impl Committer {
    /// Starts the writer thread over `store`. It stops on [`Committer::stop`], or when
    /// every handle is dropped.
    pub fn start(store: Arc<dyn ResultWriter>) -> Committer {
        let (jobs, rx) = mpsc::channel::<Job>(4096);
        let stats = Arc::new(CommitStats::default());
        let room = Arc::new(tokio::sync::Semaphore::new(MAX_QUEUED_RESULTS));
        let (s, r) = (stats.clone(), room.clone());
        let spawned = std::thread::Builder::new()
            .name("sonde-commit".into())
            .spawn(move || write_groups(store.as_ref(), rx, &s, &r));
        let thread = match spawned {
            Ok(t) => Some(t),
            Err(e) => {
                // Without a thread every commit fails with `unavailable`: agents keep
                // their results and retry; nothing is lost.
                tracing::error!(error = %e, "cannot start the commit thread");
                None
            }
        };
        Committer {
            jobs,
            stats,
            room,
            thread: Arc::new(Mutex::new(thread)),
        }
    }

    /// Commits `batch` (with whatever else is waiting) and returns once it is durable.
    /// Waits for room while the writer has [`MAX_QUEUED_RESULTS`] waiting; refuses
    /// after [`MAX_QUEUE_WAIT`].
    pub async fn commit(&self, batch: Batch) -> Result<Inserted, String> {
        let permits = batch.records.len().clamp(1, MAX_QUEUED_RESULTS);
        let room = tokio::time::timeout(MAX_QUEUE_WAIT, self.room.acquire_many(permits as u32))
            .await
            .map_err(|_| "the collector is busy".to_string())?
            .map_err(|_| "the commit thread is gone".to_string())?;
        // Given back by the writer once the group holding this batch is committed.
        room.forget();
        let (done, wait) = oneshot::channel();
        self.jobs
            .send(Job::Commit(Box::new(Pending {
                batch,
                done,
                permits,
            })))
            .await
            .map_err(|_| "the commit thread is gone".to_string())?;
        wait.await
            .map_err(|_| "the commit thread is gone".to_string())?
    }

    /// Lets the writer finish what it was sent, then stops it and joins its thread
    /// (off the async workers). Commits asked for afterwards are refused.
    pub async fn stop(&self) {
        let _ = self.jobs.send(Job::Stop).await;
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            let _ = sonde_cli::blocking::run(move || t.join()).await;
        }
    }

    /// Whether the writer thread is running.
    pub fn running(&self) -> bool {
        self.thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    /// The commit counters.
    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }
}

/// The writer thread: takes the first waiting commit, gathers the others waiting at
/// that moment (up to [`MAX_GROUP_RESULTS`]), commits them in one transaction, until
/// told to stop or every handle is gone.
fn write_groups(
    store: &dyn ResultWriter,
    mut rx: mpsc::Receiver<Job>,
    stats: &CommitStats,
    room: &tokio::sync::Semaphore,
) {
    let mut stopping = false;
    while !stopping {
        let Some(Job::Commit(first)) = rx.blocking_recv() else {
            return;
        };
        let mut n = first.batch.records.len();
        let mut group = vec![*first];
        while n < MAX_GROUP_RESULTS {
            match rx.try_recv() {
                Ok(Job::Commit(next)) => {
                    n += next.batch.records.len();
                    group.push(*next);
                }
                Ok(Job::Stop) => stopping = true,
                Err(_) => break,
            }
        }
        let permits: usize = group.iter().map(|j| j.permits).sum();
        commit_group(store, group, stats);
        room.add_permits(permits);
    }
}

fn commit_group(store: &dyn ResultWriter, group: Vec<Pending>, stats: &CommitStats) {
    let (batches, waiters): (Vec<Batch>, Vec<_>) =
        group.into_iter().map(|j| (j.batch, j.done)).unzip();
    let started = Instant::now();
    let now = Utc::now();
    stats
        .running_since_ms
        .store(now.timestamp_millis().max(1) as u64, Ordering::Relaxed);
    let result = store.insert_batches(&batches, now);
    stats.running_since_ms.store(0, Ordering::Relaxed);
    let took = started.elapsed();
    stats
        .commit_us
        .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    stats.commit_seconds.observe(took.as_secs_f64());
    match result {
        Ok(done) => {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.failing.lock().unwrap_or_else(|e| e.into_inner()).0 = 0;
            stats
                .batches
                .fetch_add(batches.len() as u64, Ordering::Relaxed);
            for (inserted, waiter) in done.into_iter().zip(waiters) {
                stats
                    .results_new
                    .fetch_add(inserted.new as u64, Ordering::Relaxed);
                stats
                    .results_duplicate
                    .fetch_add(inserted.duplicates as u64, Ordering::Relaxed);
                let _ = waiter.send(Ok(inserted));
            }
        }
        Err(e) => {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            let message = e.to_string();
            {
                let mut failing = stats.failing.lock().unwrap_or_else(|e| e.into_inner());
                failing.0 += 1;
                failing.1 = message.clone();
            }
            for waiter in waiters {
                let _ = waiter.send(Err(message.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonde_store::{Delivery, StoreError};
    use std::sync::atomic::AtomicBool;

    /// A writer that fails while `failing` is set, and holds each commit for `hold`.
    struct Writer {
        failing: AtomicBool,
        hold: Duration,
    }

    impl ResultWriter for Writer {
        fn insert_batches(
            &self,
            batches: &[Batch],
            _now: chrono::DateTime<Utc>,
        ) -> Result<Vec<Inserted>, StoreError> {
            std::thread::sleep(self.hold);
            if self.failing.load(Ordering::Relaxed) {
                return Err(StoreError::Full("database or disk is full".into()));
            }
            Ok(vec![Inserted::default(); batches.len()])
        }
    }

    fn batch() -> Batch {
        let delivery = Delivery {
            agent_id: "a".into(),
            quartier: None,
            building: None,
        };
        Batch::of(delivery, Vec::new(), None)
    }

    #[tokio::test]
    async fn failing_commits_are_trouble_until_one_goes_through() {
        let writer = Arc::new(Writer {
            failing: AtomicBool::new(true),
            hold: Duration::ZERO,
        });
        let committer = Committer::start(writer.clone());
        assert_eq!(committer.stats().trouble(Utc::now()), None);
        assert!(committer.commit(batch()).await.is_err());
        assert!(committer.commit(batch()).await.is_err());
        let why = committer.stats().trouble(Utc::now()).expect("trouble");
        assert!(why.starts_with("commits failing (2 in a row)"), "{why}");
        assert!(why.contains("disk is full"), "{why}");
        writer.failing.store(false, Ordering::Relaxed);
        assert!(committer.commit(batch()).await.is_ok());
        assert_eq!(committer.stats().trouble(Utc::now()), None);
        committer.stop().await;
    }

    #[tokio::test]
    async fn a_commit_running_too_long_is_trouble() {
        let writer = Arc::new(Writer {
            failing: AtomicBool::new(false),
            hold: Duration::from_millis(300),
        });
        let committer = Committer::start(writer);
        let c = committer.clone();
        let running = tokio::spawn(async move { c.commit(batch()).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Seen from 31 s later, the commit in hand is stuck.
        let later = Utc::now() + chrono::Duration::seconds(31);
        let why = committer.stats().trouble(later).expect("stuck");
        assert!(why.starts_with("a commit has been running for 3"), "{why}");
        assert!(running.await.expect("join").is_ok());
        assert_eq!(committer.stats().trouble(later), None, "none runs now");
        committer.stop().await;
    }
}
