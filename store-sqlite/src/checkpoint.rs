//! WAL checkpoints run on their own thread and connection, so the copy of committed
//! pages into the database file never sits on the commit path (which only appends to
//! the WAL and fsyncs it). Checkpoints are PASSIVE: they never block the writer.

use crate::error::Error;
use rusqlite::Connection;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

/// Time between background checkpoints.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// The checkpoint thread; stopped and joined when dropped.
#[derive(Debug)]
pub struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path`.
    pub fn start(path: &Path) -> Result<Checkpointer, Error> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sonde-checkpoint".into())
            .spawn(move || {
                let (lock, cvar) = &*flag;
                let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                while !*stopped {
                    let (guard, _) = cvar
                        .wait_timeout(stopped, CHECKPOINT_EVERY)
                        .unwrap_or_else(|e| e.into_inner());
                    stopped = guard;
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                    }
                }
            })
            .map_err(|e| {
                Error::Store(sonde_store::StoreError::Backend(format!(
                    "cannot start the checkpoint thread: {e}"
                )))
            })?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cvar.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
