//! The store used from tokio's threads, as the collector uses it: calls and the final
//! drop (which closes pooled connections through the synchronous client, whose own
//! runtime cannot start inside tokio's) neither panic nor block the runtime.

use sonde_store::prelude::*;
use sonde_store_postgres::{scratch, PostgresStore};

#[test]
#[cfg_attr(
    not(sonde_postgres),
    ignore = "needs PostgreSQL (apt-get install postgresql; .ci/run does)"
)]
fn opened_used_and_dropped_on_tokio_threads_it_does_not_panic() {
    let dir = std::env::temp_dir().join(format!("sonde-pg-tokio-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = scratch::Server::start(&dir).expect("PostgreSQL");
    let url = server.create_database("t").expect("database");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = std::sync::Arc::new(PostgresStore::open(&url).expect("open"));
        let s = store.clone();
        let task = tokio::spawn(async move { s.health().is_ok() && s.log_size().is_ok() });
        assert!(task.await.expect("task"), "answers from a worker thread");
        assert!(
            store.health().is_ok(),
            "answers from the runtime's own thread"
        );
        // The last reference dropped inside the runtime.
        drop(store);
    });
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
