//! The store conformance suite, hand-worked report example included, on SQLite: in
//! memory, and in a file (where reads run on connections of their own).

use sonde_store_sqlite::SqliteStore;

#[test]
fn an_in_memory_store_passes_the_conformance_suite() {
    sonde_store::conformance::run_all(|| SqliteStore::in_memory().expect("store"));
}

#[test]
fn a_file_store_passes_the_conformance_suite() {
    let dir = std::env::temp_dir().join(format!("sonde-conformance-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let n = std::sync::atomic::AtomicUsize::new(0);
    sonde_store::conformance::run_all(|| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        SqliteStore::open(&dir.join(format!("s{i}.sqlite"))).expect("store")
    });
    let _ = std::fs::remove_dir_all(&dir);
}
