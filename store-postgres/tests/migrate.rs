//! `copy_from_sqlite` (what `sonde-collector migrate` runs): a SQLite store holding the
//! worked examples, a token, a plan and a checkpoint, copied into a real PostgreSQL
//! server, gives the same counts, the same results, the same log and the same report;
//! the copy goes on growing; a second copy into a full database is refused.

use chrono::Utc;
use sonde_method::report::Request;
use sonde_store::conformance::{self, example};
use sonde_store::prelude::*;
use sonde_store::{NewToken, Store};
use sonde_store_postgres::{copy_from_sqlite, scratch, PostgresStore};
use sonde_store_sqlite::SqliteStore;

fn report(store: &dyn Store) -> sonde_method::report::Report {
    let request = Request {
        scope: conformance::everything(),
        time_zone: chrono_tz::Europe::Paris,
        generated_at: example::at((2026, 11, 29, 10, 0)),
    };
    example::build(store, &request)
}

#[test]
#[cfg_attr(
    not(sonde_postgres),
    ignore = "needs PostgreSQL (apt-get install postgresql; .ci/run does)"
)]
fn a_sqlite_store_moves_to_postgres_whole_and_checked() {
    let dir = std::env::temp_dir().join(format!("sonde-pg-migrate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("collector.sqlite");
    let sqlite = SqliteStore::open(&file).expect("sqlite");
    example::load(&sqlite);
    conformance::method4::load(&sqlite);
    let now = Utc::now();
    sqlite
        .create_token(&NewToken {
            hash: "ab".repeat(32),
            quartier: "Q".into(),
            building: "B".into(),
            latitude: None,
            longitude: None,
            created_at: now,
            expires_at: now + chrono::Duration::hours(1),
        })
        .expect("token");
    sqlite.apply_plan("{\"groups\":[]}", now).expect("plan");
    let size = sqlite.log_size().expect("size");
    sqlite
        .keep_checkpoint(size, "a signed note", now)
        .expect("checkpoint");
    let before = report(&sqlite);
    drop(sqlite);

    let server = scratch::Server::start(&dir.join("pg")).expect("PostgreSQL");
    let pg = PostgresStore::open(&server.create_database("moved").expect("db")).expect("open");
    let mut seen = Vec::new();
    let copied =
        copy_from_sqlite(&file, &pg, &mut |t, n| seen.push((t.to_string(), n))).expect("copy");
    let count = |t: &str| copied.tables.iter().find(|(n, _)| n == t).expect(t).1;
    assert!(count("results") > 100, "{:?}", copied.tables);
    assert_eq!(count("result_keys"), count("results"));
    assert_eq!(count("log_leaves"), size);
    assert_eq!(count("tokens"), 1);
    assert_eq!(count("plans"), 1);
    assert_eq!(copied.log.0, size);
    assert_eq!(seen.len(), copied.tables.len(), "progress for every table");

    // The same report, worst and typical tests included; the same log and checkpoint.
    assert_eq!(report(&pg), before);
    assert_eq!(
        pg.latest_checkpoint().expect("checkpoint"),
        Some((size, "a signed note".to_string()))
    );
    let sqlite = SqliteStore::open(&file).expect("reopen");
    let root = |s: &dyn Store| sonde_store::log::root(size, &|i| s.log_hashes(i)).expect("root");
    assert_eq!(root(&pg), root(&sqlite));
    assert_eq!(pg.plan(1).expect("plan"), sqlite.plan(1).expect("plan"));

    // It goes on: a new result gets the next row and the next leaf.
    let more = conformance::record(900, "after-move");
    let got = pg
        .insert(
            &conformance::delivery("after-move"),
            std::slice::from_ref(&more),
            Utc::now(),
        )
        .expect("insert");
    assert_eq!(got.new, 1);
    assert_eq!(pg.log_size().expect("size"), size + 1);
    assert_eq!(
        pg.log_leaf(&more.id.to_string())
            .expect("leaf")
            .map(|l| l.0),
        Some(size)
    );

    // A second copy into a database that holds results is refused.
    let again = copy_from_sqlite(&file, &pg, &mut |_, _| {}).expect_err("refused");
    assert!(again.to_string().contains("already holds"), "{again}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
