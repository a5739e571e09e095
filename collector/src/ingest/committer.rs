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
    let result = store.insert_batches(&batches, Utc::now());
    let took = started.elapsed();
    stats
        .commit_us
        .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    stats.commit_seconds.observe(took.as_secs_f64());
    match result {
        Ok(done) => {
            stats.commits.fetch_add(1, Ordering::Relaxed);
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
            for waiter in waiters {
                let _ = waiter.send(Err(message.clone()));
            }
        }
    }
}
