//! Read connections of their own: a read never waits for the writer's transaction
//! (WAL gives each reader a snapshot), and the connections are kept for the next read.
//! An in-memory store has one connection only: its reads share the writer's.

use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

/// Idle read connections kept open.
const MAX_IDLE: usize = 8;

/// The pool of read connections of a file store.
#[derive(Debug)]
pub struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    /// Readers of the database at `path`.
    pub fn new(path: PathBuf) -> Readers {
        Readers {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A read-only connection: an idle one, or a new one.
    pub fn take(&self) -> rusqlite::Result<Connection> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        if let Some(conn) = idle {
            return Ok(conn);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(conn)
    }

    /// Gives `conn` back for the next read.
    pub fn give(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}

/// A connection to read on, given back when dropped.
pub enum Reader<'a> {
    /// From the pool of a file store.
    Own(Option<Connection>, &'a Readers),
    /// The writer's, in an in-memory store.
    Shared(MutexGuard<'a, Connection>),
}

impl std::ops::Deref for Reader<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match self {
            Reader::Own(Some(c), _) => c,
            Reader::Own(None, _) => unreachable!("a reader holds its connection until dropped"),
            Reader::Shared(g) => g,
        }
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        if let Reader::Own(conn, readers) = self {
            if let Some(c) = conn.take() {
                readers.give(c);
            }
        }
    }
}
