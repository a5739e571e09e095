//! Two collectors on different "machines" (data directories of their own) sharing one
//! real PostgreSQL server, their CA and report key sealed in the database by the seal
//! key the first one made (the only file copied, as docs/OPERATIONS.md says): three
//! agents upload through one (one of them enrolled through the other); that one is
//! killed (`kill -9`) mid-upload and the agents move on to the other with nothing lost
//! and nothing stored twice; a report made from either collector's configuration is
//! the same report and verifies with the one report key. A collector with another
//! seal key, or none, is refused with the reason.

use sonde_e2e::pipeline::{record, scratch, seed_spool, Agent, AgentSetup, Collector};
use sonde_store_postgres::scratch::Server;
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// A collector in `dir` whose store is the database at `url`.
fn on_postgres(dir: &Path, url: &str) -> Collector {
    on_postgres_with(dir, url, "")
}

/// A collector in `dir` whose store is the database at `url`, its keys sealed there
/// by `dir/seal.key`.
fn on_postgres_sealed(dir: &Path, url: &str) -> Collector {
    on_postgres_with(dir, url, "seal_key = \"seal.key\"\n")
}

fn on_postgres_with(dir: &Path, url: &str, store_extra: &str) -> Collector {
    std::fs::create_dir_all(dir).expect("dir");
    Collector::configure_with(
        dir,
        "",
        &format!("[metrics]\nrefresh = \"1s\"\n[store]\nurl = \"{url}\"\n{store_extra}"),
    )
}

/// The lines of a CSV report, without when it was made: the line that says so, and
/// the end of a target's period still open (`TARGET@FROM..END=VERDICT`, END being the
/// report's time).
fn report_lines(path: &Path) -> Vec<String> {
    let open_end = |field: &str| -> String {
        match (field.find(".."), field.rfind('=')) {
            (Some(a), Some(b)) if a < b => format!("{}..{}", &field[..a], &field[b..]),
            _ => field.to_string(),
        }
    };
    std::fs::read_to_string(path)
        .expect("report")
        .lines()
        .filter(|l| !l.contains("generated"))
        .map(|l| l.split(',').map(open_end).collect::<Vec<_>>().join(","))
        .collect()
}

#[test]
#[cfg_attr(
    not(sonde_postgres),
    ignore = "needs PostgreSQL (apt-get install postgresql; .ci/run does)"
)]
fn two_collectors_share_postgres_and_a_killed_one_loses_nothing() {
    let dir = scratch("postgres-pair");
    let server = Server::start(&dir.join("pg")).expect("PostgreSQL");
    let url = server.create_database("sonde").expect("database");
    let mut a = on_postgres_sealed(&dir.join("a"), &url);
    a.start();
    // B's machine: its own data directory, and only a copy of A's seal key.
    let b = on_postgres_sealed(&dir.join("b"), &url);
    let refused = b.cli(&["report", "key"]);
    assert_eq!(
        refused.code(),
        1,
        "without the seal key: {}",
        refused.stderr()
    );
    assert!(
        refused.stderr().contains("no such seal key") && refused.stderr().contains("copy"),
        "{}",
        refused.stderr()
    );
    std::fs::write(dir.join("b").join("seal.key"), "00".repeat(32) + "\n")
        .expect("another seal key");
    let refused = b.cli(&["token", "create", "--quartier", "q", "--building", "x"]);
    assert_eq!(
        refused.code(),
        1,
        "with another seal key: {}",
        refused.stderr()
    );
    assert!(
        refused.stderr().contains("is sealed by seal key"),
        "{}",
        refused.stderr()
    );
    std::fs::copy(
        dir.join("a").join("seal.key"),
        dir.join("b").join("seal.key"),
    )
    .expect("seal key");
    let mut b = b;
    b.start();
    for f in ["ca.key.pem", "report-key.pk8"] {
        assert!(
            !b.data_dir().join(f).exists(),
            "B keeps the shared {f} in memory only"
        );
    }
    // Three agents uploading through B first, A next. The first was enrolled through A
    // (its token in the shared store), the others through B.
    const N: usize = 300;
    let mut seeded = HashSet::new();
    let mut agents = Vec::new();
    let mut first_id = String::new();
    for i in 0..3 {
        let adir = dir.join(format!("agent{i}"));
        let through = if i == 0 { &a } else { &b };
        let id = through.enroll(&format!("b-postgres-{i}"), &adir.join("state"));
        if i == 0 {
            first_id = id;
        }
        seeded.extend(seed_spool(&adir.join("state"), N, |k| {
            record((i * N + k) as i64)
        }));
        let setup = AgentSetup {
            more_collectors: vec![a.quic.clone()],
            ..AgentSetup::uploader(1000, 10)
        };
        agents.push(Agent::start(&adir, &b, &setup));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while a.stored_ids().1 < 60 {
        assert!(Instant::now() < deadline, "no upload");
        assert!(agents.iter_mut().all(|g| !g.exited()), "an agent exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    b.kill9();
    let killed = Instant::now();
    let before = a.stored_ids().1;
    let mut resumed = None;
    let deadline = killed + Duration::from_secs(90);
    loop {
        let (ids, rows) = a.stored_ids();
        if resumed.is_none() && rows > before {
            resumed = Some(killed.elapsed());
        }
        if ids.len() == seeded.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} stored 90 s after the kill; the first agent's log:\n{}",
            ids.len(),
            seeded.len(),
            std::fs::read_to_string(&agents[0].log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ids, rows) = a.stored_ids();
    assert_eq!(ids, seeded, "every result, and only those");
    assert_eq!(rows, seeded.len(), "none stored twice");
    eprintln!(
        "B killed with {before} of {} stored; uploads resumed through A {:?} later, all stored once",
        seeded.len(),
        resumed.expect("uploads resumed")
    );
    drop(agents);
    let now = chrono::Utc::now();
    let (from, to) = (
        (now - chrono::Duration::days(3))
            .format("%Y-%m-%d")
            .to_string(),
        (now + chrono::Duration::days(1))
            .format("%Y-%m-%d")
            .to_string(),
    );

    // A rotation made through one collector's configuration (B is down) reaches A
    // while it runs: its API signs with the new key within seconds.
    let old_key = a.cli(&["report", "key"]).stdout();
    let rotated = b.cli(&["keys", "rotate", "--report-key"]);
    assert_eq!(rotated.code(), 0, "{}", rotated.stderr());
    let new_key = rotated.stdout();
    assert!(
        new_key.starts_with("ed25519 ") && new_key != old_key,
        "{new_key}"
    );
    let shown = a.cli(&["report", "key"]);
    assert_eq!(shown.stdout(), new_key, "one key for every collector");
    let new_id = shown
        .stderr()
        .trim()
        .trim_start_matches("key id ")
        .to_string();
    let path = format!("/api/v1/reports?from={from}&to={to}&format=json");
    let asked = Instant::now();
    let signed_by = || {
        let (code, body) = sonde_e2e::http_get(&a.http, &path).expect("/api/v1/reports");
        assert_eq!(code, 200, "{body}");
        body
    };
    while !signed_by().contains(&new_id) {
        assert!(
            asked.elapsed() < Duration::from_secs(20),
            "A still signs with the old key"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "A signed with the rotated key {:?} after the rotation",
        asked.elapsed()
    );
    a.stop();

    // The same report from either collector's configuration, signed by the one key.
    let key = dir.join("collector.pub");
    std::fs::write(&key, &new_key).expect("key");
    let (ra, rb) = (dir.join("a.csv"), dir.join("b.csv"));
    a.report(&from, &to, "csv", &ra, &[]);
    b.report(&from, &to, "csv", &rb, &[]);
    assert_eq!(report_lines(&ra), report_lines(&rb));
    assert!(
        report_lines(&ra).iter().any(|l| l.contains(&first_id)),
        "the agent is in the report"
    );
    for r in [&ra, &rb] {
        let v = sonde_e2e::pipeline::verify_report(r, &key);
        assert_eq!(v.code(), 0, "{}: {}", r.display(), v.stderr());
    }
    drop(server);
}

/// `/healthz`: its status and body, and how long it took to answer.
fn healthz(c: &Collector) -> (u16, String, Duration) {
    let asked = Instant::now();
    let (code, body) = sonde_e2e::http_get(&c.http, "/healthz").expect("/healthz answers");
    (code, body, asked.elapsed())
}

#[test]
#[cfg_attr(
    not(sonde_postgres),
    ignore = "needs PostgreSQL (apt-get install postgresql; .ci/run does)"
)]
fn a_database_that_dies_under_a_collector_loses_nothing() {
    let dir = scratch("postgres-dies");
    let server = Server::start(&dir.join("pg")).expect("PostgreSQL");
    let url = server.create_database("sonde").expect("database");
    let mut c = on_postgres(&dir.join("c"), &url);
    c.start();
    const N: usize = 1000;
    let mut seeded = HashSet::new();
    let mut agents = Vec::new();
    for i in 0..3 {
        let adir = dir.join(format!("agent{i}"));
        c.enroll(&format!("b-pg-dies-{i}"), &adir.join("state"));
        seeded.extend(seed_spool(&adir.join("state"), N, |k| {
            record((i * N + k) as i64)
        }));
        agents.push(Agent::start(&adir, &c, &AgentSetup::uploader(N as u64, 5)));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.metric("sonde_collector_results_total{kind=\"new\"}") < 30.0 {
        assert!(Instant::now() < deadline, "no upload");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill();
    let killed = Instant::now();
    // Health says so, with the reason, and answers within its own bound.
    let mut seen = healthz(&c);
    while seen.0 == 200 && killed.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
        seen = healthz(&c);
    }
    let (code, body, took) = seen;
    assert_eq!(code, 503, "{body}");
    assert!(
        body.starts_with("not ok: store unavailable: ") && body.contains("PostgreSQL"),
        "the reason: {body}"
    );
    assert!(took < Duration::from_secs(5), "/healthz took {took:?}");
    eprintln!(
        "database killed; /healthz said {:?} {:?} later, answering in {took:?}",
        body.trim(),
        killed.elapsed()
    );
    // Once the pool has tried to connect again, it says why it cannot (the pool's own
    // error stops at "error connecting to server").
    let mut body = body;
    let asked = Instant::now();
    while !body.contains("Connection refused") && asked.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(200));
        body = healthz(&c).1;
    }
    assert!(body.contains("Connection refused"), "the cause: {body}");
    eprintln!("then: {:?}", body.trim());
    let stored_at_kill = c.metric("sonde_collector_results_total{kind=\"new\"}");
    assert!(
        stored_at_kill < seeded.len() as f64,
        "the agents still had results to send when the database died"
    );
    // Down for 10 s: the collector and the agents keep running, and results wait.
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(healthz(&c).0, 503, "the collector survives its database");
    assert!(agents.iter_mut().all(|g| !g.exited()), "the agents survive");
    // /metrics reads no store at scrape time: Prometheus keeps its series meanwhile.
    let asked = Instant::now();
    assert!(c.metric("sonde_collector_commit_failures_total") >= 1.0);
    let scrape = asked.elapsed();
    assert!(scrape < Duration::from_secs(5), "/metrics took {scrape:?}");
    server.restart().expect("PostgreSQL restarts");
    let restarted = Instant::now();
    let deadline = restarted + Duration::from_secs(90);
    loop {
        if healthz(&c).0 == 200 {
            let (ids, _) = c.stored_ids();
            if ids.len() == seeded.len() {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "not all stored 90 s after the restart; an agent's log:\n{}",
            std::fs::read_to_string(&agents[0].log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let (ids, rows) = c.stored_ids();
    assert_eq!(ids, seeded, "every result, and only those");
    assert_eq!(rows, seeded.len(), "none stored twice");
    // An outage is no reason to tell an enrolled agent to enrol again.
    let told = c.metric("sonde_collector_rejects_total{reason=\"unauthenticated\"}");
    assert_eq!(
        told, 0.0,
        "agents refused as unauthenticated while the database was down"
    );
    eprintln!(
        "{stored_at_kill} of {} stored when the database died; all {} stored once {:?} after its restart",
        seeded.len(),
        rows,
        restarted.elapsed()
    );
    drop(agents);
    c.stop();
    drop(server);
}
