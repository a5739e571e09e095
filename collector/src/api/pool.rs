//! The threads `/api/v1/*` reads run on: one core fewer than the machine has (one at
//! least), each at a lower scheduling priority (nice 10). Reads take no lock the
//! writer needs (their own SQLite connections), but readers building pages on a small
//! box took the CPU from the commit thread and the QUIC workers (ack p99 ×6 with eight
//! readers on two cores); at nice 10 they get what the ingest leaves. Requests wait
//! their turn in a queue.

use std::sync::mpsc;
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// Niceness of the read threads.
pub const NICE: i32 = 10;

/// A fixed set of low-priority threads.
#[derive(Debug)]
pub struct ReadPool {
    jobs: std::sync::Mutex<mpsc::Sender<Job>>,
}

impl ReadPool {
    /// [`threads`] threads, named `api-read`.
    pub fn new() -> ReadPool {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for _ in 0..threads() {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name("api-read".into())
                .spawn(move || {
                    // This thread only (Linux: a thread's own nice value).
                    let me = rustix::thread::gettid();
                    if let Err(e) = rustix::process::setpriority_process(Some(me), NICE) {
                        tracing::debug!(error = %e, "API reads keep the normal priority");
                    }
                    loop {
                        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start an API read thread");
            }
        }
        ReadPool {
            jobs: std::sync::Mutex::new(tx),
        }
    }

    /// Runs `f` on a read thread; `None` if the pool is gone.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job)
            .ok()?;
        rx.await.ok()
    }
}

impl Default for ReadPool {
    fn default() -> Self {
        ReadPool::new()
    }
}

/// Read threads: one core fewer than the machine has, one at least.
pub fn threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().saturating_sub(1))
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_run_on_their_own_low_priority_threads() {
        let pool = ReadPool::new();
        let (name, nice) = pool
            .run(|| {
                let name = std::thread::current().name().map(str::to_string);
                (
                    name,
                    rustix::process::getpriority_process(Some(rustix::thread::gettid())),
                )
            })
            .await
            .expect("ran");
        assert_eq!(name.as_deref(), Some("api-read"));
        assert_eq!(nice.ok(), Some(NICE));
    }
}
