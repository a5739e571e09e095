//! Results signed by their agent, checked at ingest: a real agent delivers signed,
//! chained results to a real collector; then, holding that agent's TLS identity (a
//! stolen box), uploads a forged result, one signed by another key, a replay, a fork
//! and a gap, over raw QUIC. Each forgery is refused with its reason and stores
//! nothing; the gap is accepted, kept and counted.

use sonde_agent::identity::signing::SigningKey;
use sonde_e2e::attack::identity;
use sonde_e2e::pipeline::raw::{client_config, connect, exchange};
use sonde_e2e::pipeline::{record, scratch, Agent, AgentSetup, Collector};
use sonde_proto::wire::{self, Envelope, Message, RawRecord, Signatures, Upload};
use std::path::Path;
use std::time::{Duration, Instant};

/// One result signed at place `seq` after `prev` by `key`, its bytes then changed by
/// `tamper`: the upload frame and the result's id.
fn signed_upload(
    key: &SigningKey,
    (seq, prev): (u64, &str),
    tamper: impl Fn(String) -> String,
) -> (Vec<u8>, String) {
    let r = record(1);
    let raw = RawRecord::of(&r);
    let (envelope, _) = key.seal(seq, prev, raw.as_str().as_bytes());
    let sent = RawRecord::from_json(tamper(raw.as_str().to_string())).expect("JSON");
    let frame = wire::encode(&Message::Upload(Upload {
        batch: seq,
        health: Default::default(),
        results: vec![sent],
        signatures: Some(Signatures {
            key: key.public_text(),
            envelopes: vec![envelope],
            rotations: Vec::new(),
        }),
    }));
    (frame, r.id.to_string())
}

/// The collector's answer: `Ok` for an ack, the reject's reason and message otherwise.
fn answer(messages: &[Message]) -> Result<(), String> {
    match messages.first() {
        Some(Message::Ack(_)) => Ok(()),
        Some(Message::Reject(r)) => Err(format!("{} {}", r.reason.as_str(), r.message)),
        other => panic!("no answer: {other:?}"),
    }
}

fn stored(db: &Path, id: &str) -> bool {
    let conn = rusqlite::Connection::open(db).expect("db");
    conn.query_row("SELECT count(*) FROM results WHERE id = ?1", [id], |r| {
        r.get::<_, i64>(0)
    })
    .expect("count")
        == 1
}

#[test]
fn forged_replayed_forked_or_foreign_signed_results_are_refused_and_a_gap_is_counted() {
    let dir = scratch("signatures");
    let mut collector = Collector::configure(&dir);
    collector.start();
    let state = dir.join("agent").join("state");
    collector.enroll("b-sign", &state);
    let key = SigningKey::load_or_create(&state).expect("the agent's signing key");
    let db = collector.data_dir().join("collector.sqlite");
    let addr: std::net::SocketAddr = collector
        .quic
        .replace("localhost", "127.0.0.1")
        .parse()
        .expect("addr");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let conn = rt
        .block_on(connect(
            addr,
            client_config(&collector.ca_cert(), Some(identity(&state))),
        ))
        .expect("connected with the agent's identity");
    let send = |frame: &[u8]| answer(&rt.block_on(exchange(&conn, frame)));

    // The agent's first signed results: 1 and 2, chained; the key is recorded.
    let (f1, id1) = signed_upload(&key, (1, Envelope::GENESIS), |s| s);
    assert_eq!(send(&f1), Ok(()));
    let conn_db = rusqlite::Connection::open(&db).expect("db");
    let head = |c: &rusqlite::Connection| -> (i64, String) {
        c.query_row("SELECT seq, hash FROM agent_chains", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("head")
    };
    let (_, h1) = head(&conn_db);
    let (f2, id2) = signed_upload(&key, (2, &h1), |s| s);
    assert_eq!(send(&f2), Ok(()));
    let (seq, h2) = head(&conn_db);
    assert_eq!(seq, 2);
    let recorded: String = conn_db
        .query_row("SELECT public_key FROM agent_keys", [], |r| r.get(0))
        .expect("key");
    assert_eq!(recorded, key.public_text());
    // Sent again (a lost ack): stored once, accepted.
    assert_eq!(send(&f1), Ok(()));

    // A result whose bytes changed after signing.
    let (forged, id) = signed_upload(&key, (3, &h2), |s| s.replacen("\"id\"", "\"id\" ", 1));
    let refused = send(&forged).expect_err("forged");
    assert!(refused.starts_with("bad_signature"), "{refused}");
    assert!(!stored(&db, &id));
    // Signed by a key of the thief's own.
    std::fs::create_dir_all(dir.join("thief")).expect("dir");
    let thief = SigningKey::load_or_create(&dir.join("thief")).expect("another key");
    let (foreign, id) = signed_upload(&thief, (3, &h2), |s| s);
    let refused = send(&foreign).expect_err("another key");
    assert!(refused.starts_with("key_mismatch"), "{refused}");
    assert!(!stored(&db, &id));
    // A new result at a place already taken: a replay, or a fork of the past.
    let (replay, id) = signed_upload(&key, (1, Envelope::GENESIS), |s| s);
    let refused = send(&replay).expect_err("replay");
    assert!(
        refused.starts_with("chain_broken") && refused.contains("claims place 1"),
        "{refused}"
    );
    assert!(!stored(&db, &id));
    // The next place, not after the last result.
    let (fork, id) = signed_upload(&key, (3, &h1), |s| s);
    let refused = send(&fork).expect_err("fork");
    assert!(refused.contains("does not follow"), "{refused}");
    assert!(!stored(&db, &id));
    assert!(stored(&db, &id1));
    // A rotation of the agent's key to the thief's, signed by the thief: the old key
    // did not vouch for the new one.
    let (mut rotation, after) = thief.sign_rotation(3, &h2, &thief.public_text());
    rotation.from = key.public_text();
    let r = record(7);
    let raw = RawRecord::of(&r);
    let (envelope, _) = thief.seal(4, &after, raw.as_str().as_bytes());
    let frame = wire::encode(&Message::Upload(Upload {
        batch: 9,
        health: Default::default(),
        results: vec![raw],
        signatures: Some(Signatures {
            key: thief.public_text(),
            envelopes: vec![envelope],
            rotations: vec![rotation],
        }),
    }));
    let refused = send(&frame).expect_err("a forged rotation");
    assert!(
        refused.starts_with("bad_signature")
            && refused.contains("not signed by the key it retires"),
        "{refused}"
    );
    assert!(!stored(&db, &r.id.to_string()));
    let recorded: String = conn_db
        .query_row("SELECT public_key FROM agent_keys", [], |r| r.get(0))
        .expect("key");
    assert_eq!(recorded, key.public_text(), "the key in force is unchanged");

    // Places 3 to 5 never arrive: accepted, the gap kept and counted.
    let (after_gap, id) = signed_upload(&key, (6, "whatever came before"), |s| s);
    assert_eq!(send(&after_gap), Ok(()));
    assert!(stored(&db, &id));
    let gap: (i64, i64) = conn_db
        .query_row("SELECT from_seq, to_seq FROM chain_gaps", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("gap");
    assert_eq!(gap, (3, 5));
    assert_eq!(
        collector.metric("sonde_collector_results_missing_total"),
        3.0
    );
    for reason in ["bad_signature", "key_mismatch", "chain_broken"] {
        let series = format!("sonde_collector_rejects_total{{reason=\"{reason}\"}}");
        assert!(collector.metric(&series) >= 1.0, "{series} not counted");
    }

    // A report ships the agents' keys and envelopes: report verify checks them.
    let pubkey = dir.join("collector.pub");
    std::fs::write(&pubkey, collector.cli(&["report", "key"]).stdout()).expect("key");
    let report = |name: &str| {
        let out = dir.join(name);
        let now = chrono::Utc::now();
        let (from, to) = (
            (now - chrono::Duration::hours(2)).to_rfc3339(),
            (now + chrono::Duration::hours(1)).to_rfc3339(),
        );
        let out_s = out.to_string_lossy().to_string();
        let run = collector.cli(&[
            "report", "--from", &from, "--to", &to, "--format", "csv", "--out", &out_s,
        ]);
        assert_eq!(run.code(), 0, "{}", run.stderr());
        sonde_e2e::pipeline::verify_report(&out, &pubkey)
    };
    // An unsigned result from the agent that signs (accepted: a box holding results
    // in memory on a full disk sends them unsigned): the report names it.
    let unsigned = record(8);
    let frame = wire::encode(&Message::Upload(Upload {
        batch: 12,
        health: Default::default(),
        results: vec![RawRecord::of(&unsigned)],
        signatures: None,
    }));
    assert_eq!(send(&frame), Ok(()));
    let run = report("signed.csv");
    assert_eq!(run.code(), 0, "{} {}", run.stdout(), run.stderr());
    let named = format!("unsigned: result {} of agent", unsigned.id);
    for line in [
        "ok agents: 3 results signed by 1 agents, each signature and chain checked; 1 stored unsigned",
        "3 results missing from its chain (places 3–5), between result ",
        "warning: 3 results missing from agents' chains in 1 gap:",
        &named,
        "warning: 1 results stored unsigned from agents that sign",
    ] {
        assert!(run.stdout().contains(line), "{line}: {}", run.stdout());
    }
    // An envelope changed in the store: the report names the result.
    conn_db
        .execute(
            "UPDATE results SET envelope = replace(envelope, '\"seq\":2', '\"seq\":7') WHERE id = ?1",
            [&id2],
        )
        .expect("tamper");
    let run = report("tampered.csv");
    assert_eq!(run.code(), 1, "{}", run.stdout());
    assert!(
        run.stdout().contains(&format!("result {id2}: agent"))
            && run.stdout().contains("signature does not match"),
        "{}",
        run.stdout()
    );
    collector.stop();
}

#[test]
fn a_daemons_results_arrive_signed_in_one_chain_across_a_key_rotation() {
    let dir = scratch("signatures-daemon");
    let mut collector = Collector::configure(&dir);
    collector.start();
    let state = dir.join("agent").join("state");
    collector.enroll("b-daemon", &state);
    // Its one access fails at once (nobody listens there), every 10 s: each failure
    // is a result, signed in the spool.
    let agent = Agent::start(
        state.parent().expect("dir"),
        &collector,
        &AgentSetup {
            every: "10s".into(),
            ..AgentSetup::uploader(1000, 20)
        },
    );
    let db = collector.data_dir().join("collector.sqlite");
    let deadline = Instant::now() + Duration::from_secs(90);
    let envelopes = loop {
        let conn = rusqlite::Connection::open(&db).expect("db");
        let got: Vec<String> = conn
            .prepare("SELECT envelope FROM results WHERE envelope IS NOT NULL ORDER BY rowid")
            .expect("query")
            .query_map([], |r| r.get(0))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("envelopes");
        if got.len() >= 2 {
            break got;
        }
        assert!(
            Instant::now() < deadline,
            "no two signed results within 90 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    drop(agent);
    let seqs: Vec<u64> = envelopes
        .iter()
        .map(|e| {
            serde_json::from_str::<Envelope>(e)
                .expect("an envelope")
                .seq
        })
        .collect();
    assert_eq!(seqs[..2], [1, 2], "{seqs:?}");
    let key = SigningKey::load_or_create(&state).expect("the agent's key");
    let conn = rusqlite::Connection::open(&db).expect("db");
    let recorded: String = conn
        .query_row("SELECT public_key FROM agent_keys", [], |r| r.get(0))
        .expect("key");
    assert_eq!(recorded, key.public_text());
    assert_eq!(
        collector.metric("sonde_collector_results_missing_total"),
        0.0
    );
    drop(conn);

    // The operator rotates the key, the agent stopped: the rotation goes up with the
    // next results, the collector switches keys, and a report verifies across it.
    let rotate = sonde_e2e::run_bounded(
        {
            let mut c = std::process::Command::new(sonde_e2e::bin("sonde-agent"));
            c.args(["key", "rotate", "--state-dir"]).arg(&state);
            c
        },
        Duration::from_secs(30),
    );
    assert_eq!(rotate.code(), 0, "{}", rotate.stderr());
    let new_key = rotate.stdout().trim().to_string();
    assert_ne!(new_key, key.public_text());
    assert_eq!(
        SigningKey::load_or_create(&state)
            .expect("key")
            .public_text(),
        new_key
    );
    let before = envelopes.len();
    let agent = Agent::start(
        state.parent().expect("dir"),
        &collector,
        &AgentSetup {
            every: "10s".into(),
            ..AgentSetup::uploader(1000, 20)
        },
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let conn = rusqlite::Connection::open(&db).expect("db");
        let signed: i64 = conn
            .query_row(
                "SELECT count(*) FROM results WHERE envelope IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .expect("count");
        let recorded: String = conn
            .query_row("SELECT public_key FROM agent_keys", [], |r| r.get(0))
            .expect("key");
        if signed as usize > before + 1 && recorded == new_key {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no result signed by the new key within 90 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(agent);
    let conn = rusqlite::Connection::open(&db).expect("db");
    let rotations: i64 = conn
        .query_row("SELECT count(*) FROM key_rotations", [], |r| r.get(0))
        .expect("count");
    assert_eq!(rotations, 1);
    let pubkey = dir.join("collector.pub");
    std::fs::write(&pubkey, collector.cli(&["report", "key"]).stdout()).expect("key");
    let out = dir.join("rotated.csv");
    let now = chrono::Utc::now();
    let (from, to) = (
        (now - chrono::Duration::hours(2)).to_rfc3339(),
        (now + chrono::Duration::hours(1)).to_rfc3339(),
    );
    let out_s = out.to_string_lossy().to_string();
    let run = collector.cli(&[
        "report", "--from", &from, "--to", &to, "--format", "csv", "--out", &out_s,
    ]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let run = sonde_e2e::pipeline::verify_report(&out, &pubkey);
    assert_eq!(run.code(), 0, "{} {}", run.stdout(), run.stderr());
    assert!(run.stdout().contains("ok agents: "), "{}", run.stdout());
    assert!(
        !run.stdout().contains("gap:"),
        "the rotation holds its place: {}",
        run.stdout()
    );
    assert_eq!(
        collector.metric("sonde_collector_results_missing_total"),
        0.0
    );
    collector.stop();
}
