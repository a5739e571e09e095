//! The store conformance suite, hand-worked report example included, on a real
//! PostgreSQL server started for the test (a fresh database per check).

use sonde_store_postgres::{scratch, PostgresStore};

#[test]
#[cfg_attr(
    not(sonde_postgres),
    ignore = "needs PostgreSQL (apt-get install postgresql; .ci/run does)"
)]
fn a_postgres_store_passes_the_conformance_suite() {
    let dir = std::env::temp_dir().join(format!("sonde-pg-conformance-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = scratch::Server::start(&dir).expect("start PostgreSQL");
    let n = std::sync::atomic::AtomicUsize::new(0);
    sonde_store::conformance::run_all(|| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let url = server.create_database(&format!("c{i}")).expect("database");
        PostgresStore::open(&url).expect("store")
    });
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[cfg_attr(
    not(sonde_postgres),
    ignore = "needs PostgreSQL (apt-get install postgresql; .ci/run does)"
)]
fn sealed_keys_keep_the_first_collectors_and_a_rotation_replaces_it() {
    use sonde_store::SealedKeys;
    let dir = std::env::temp_dir().join(format!("sonde-pg-sealed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = scratch::Server::start(&dir).expect("start PostgreSQL");
    let url = server.create_database("sealed").expect("database");
    let (a, b) = (
        PostgresStore::open(&url).expect("store"),
        PostgresStore::open(&url).expect("store"),
    );
    assert_eq!(a.sealed_key("ca").expect("read"), None);
    assert_eq!(a.keep_sealed_key("ca", b"first").expect("kept"), b"first");
    assert_eq!(
        b.keep_sealed_key("ca", b"second").expect("kept"),
        b"first",
        "the first kept stays"
    );
    b.replace_sealed_key("ca", b"rotated").expect("replaced");
    assert_eq!(
        a.sealed_key("ca").expect("read").as_deref(),
        Some(&b"rotated"[..])
    );
    assert_eq!(a.sealed_key("report-key").expect("read"), None);
    drop((a, b));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
