//! Blocking work kept off the async workers. [`run`] runs a closure on tokio's blocking
//! pool; [`check`], called at every blocking entry point (files, the spool, the store),
//! panics in debug builds when it runs on an async worker of a multi-threaded runtime
//! (what every sonde daemon uses) instead. The end-to-end tests run the debug binaries,
//! so a blocking call that slips onto a worker fails them, naming the call.

use std::cell::Cell;

thread_local! {
    /// Set while this thread runs a closure given to [`run`].
    static BLOCKING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` on the blocking pool, where [`check`] allows it.
pub async fn run<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    tokio::task::spawn_blocking(move || allowed(f)).await
}

/// Runs `f` with blocking allowed on this thread (a thread of the blocking pool that
/// was not started by [`run`], e.g. a hyper service's `spawn_blocking`).
pub fn allowed<T>(f: impl FnOnce() -> T) -> T {
    let before = BLOCKING.replace(true);
    let out = f();
    BLOCKING.set(before);
    out
}

/// Whether a blocking call is wrong here: on an async worker (or a `block_on` thread)
/// of a multi-threaded runtime, outside [`run`].
pub fn on_async_worker() -> bool {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return false;
    };
    handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread && !BLOCKING.get()
}

/// Panics in debug builds when called on an async worker: `what` blocks.
#[track_caller]
pub fn check(what: &str) {
    if cfg!(debug_assertions) && on_async_worker() {
        panic!("{what} blocks, and was called on an async worker (use sonde_cli::blocking::run)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocking_call_on_a_worker_is_caught_and_one_on_the_pool_is_not() {
        assert!(!on_async_worker(), "no runtime: a command's main thread");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("runtime");
        rt.block_on(async {
            assert!(on_async_worker(), "the block_on thread is async");
            let worker = tokio::spawn(async { on_async_worker() })
                .await
                .expect("task");
            assert!(worker, "a worker is async");
            let pool = run(on_async_worker).await.expect("blocking task");
            assert!(!pool, "the blocking pool may block");
            assert!(!allowed(on_async_worker));
        });
    }
}
