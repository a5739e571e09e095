//! `sonde-ingest-bench`: how fast a real `sonde-collector serve` (its own process,
//! SQLite with durable commits) ingests results pushed over QUIC by many simulated
//! agents on loopback. A benchmark, not a test: it prints figures, asserts nothing
//! about time.
//!
//! Each simulated agent enrols over QUIC with its own one-time token and key, keeps
//! its mutual-TLS connection open, and uploads its results in batches, waiting for
//! each acknowledgement (sent after commit) before the next batch, as the real agent
//! does. Figures: results/s over the upload phase, time to ack per batch (p50, p99),
//! connections held at once, and results found in the store afterwards.
//!
//! With `--readers N`, a second upload phase follows the first, with N API clients
//! paging through `/api/v1/results` meanwhile: both phases' ack latencies are printed
//! side by side (reads must not hold up commits). With `--signed`, a last phase
//! uploads as many results again, each signed and chained by its agent (signed before
//! the clock starts, as the spool signs when it stores): its rate and the collector's
//! CPU a result beside the unsigned phase's, which is what checking costs ingest.
//!
//! With `--store postgres`, the collector's store is a PostgreSQL server started for
//! the run (a throwaway cluster on loopback, durable commits): the same phases, the
//! same figures. `--store both` runs SQLite then PostgreSQL and prints their figures
//! side by side.
//!
//! Last, once the collector stopped, the store alone: 50 group commits of 100 agents'
//! 10 results, built beforehand and written straight into the same store (no QUIC, no
//! collector), as `store_alone_*`: results/s and CPU a result on either side. What the
//! store can take, apart from what the transport and the checks cost.
//!
//! Usage: cargo run --release -p sonde-e2e --bin sonde-ingest-bench --
//!        [--agents N] [--results N] [--batch N] [--readers N] [--signed]
//!        [--store sqlite|postgres|both] [--json]

use sonde_agent::identity::signing::SigningKey;
use sonde_e2e::fleet::{answer, connect_all, enrol_all, print_report, Bench};
use sonde_e2e::pipeline::scratch;
use sonde_proto::wire::{self, FrameDecoder, Health, Message, RejectReason, Upload};
use sonde_proto::ResultRecord;
use sonde_store::ResultQuery;
use sonde_store_sqlite::SqliteStore;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A real collector's ingest under a fleet of simulated agents over real QUIC:
/// results/s and ack latency, then (with --readers) the same while API clients read.
#[derive(Debug, clap::Parser)]
#[command(name = "sonde-ingest-bench", version)]
struct Args {
    /// Simulated agents, each on its own QUIC connection.
    #[arg(long, default_value_t = 1000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=5000))]
    agents: usize,
    /// Results each agent uploads.
    #[arg(long, default_value_t = 100, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    results: usize,
    /// Results per upload.
    #[arg(long, default_value_t = 100, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1000))]
    batch: usize,
    /// API clients reading /api/v1/results during a second upload phase (0: none).
    #[arg(long, default_value_t = 0, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=64))]
    readers: usize,
    /// Then upload the same again with every result signed and chained by its agent,
    /// and print both rates side by side (what checking signatures costs ingest).
    #[arg(long)]
    signed: bool,
    /// The collector's store: the embedded SQLite file, a PostgreSQL server started
    /// for the run (needs Debian's postgresql package), or both in turn, side by side.
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    store: StoreKind,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// `--store`.
#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
enum StoreKind {
    /// One SQLite file (WAL, synchronous=FULL).
    Sqlite,
    /// A PostgreSQL server on loopback (synchronous_commit on).
    Postgres,
    /// SQLite, then PostgreSQL, in one run: their figures side by side.
    Both,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// One upload phase: every connection uploads `results` records in batches; the ack
/// latencies, the busy refusals and the time it took.
struct Phase {
    latencies: Vec<f64>,
    busy: u64,
    seconds: f64,
    peak: usize,
}

/// Uploads `results` fresh records on every connection, all starting together; with
/// `keys` (one per connection), signed and chained as the agent's spool does, before
/// the clock starts.
async fn upload_phase(
    conns: &[quinn::Connection],
    results: usize,
    batch: usize,
    keys: Option<&[Arc<SigningKey>]>,
) -> Phase {
    let open = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(tokio::sync::Barrier::new(conns.len() + 1));
    let mut tasks = Vec::new();
    for (i, conn) in conns.iter().enumerate() {
        let conn = conn.clone();
        let key = keys.map(|k| k[i].clone());
        let (open, peak, start) = (open.clone(), peak.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            // Records made before the clock starts: the agent's spool holds them.
            let pending: Vec<wire::RawRecord> = (0..results)
                .map(|_| {
                    let mut r = ResultRecord::schema_example();
                    r.id = uuid::Uuid::now_v7();
                    wire::RawRecord::of(&r)
                })
                .collect();
            let signed = key.map(|k| {
                let mut prev = wire::Envelope::GENESIS.to_string();
                let envelopes = pending
                    .iter()
                    .enumerate()
                    .map(|(n, r)| {
                        let (e, next) = k.seal(n as u64 + 1, &prev, r.as_str().as_bytes());
                        prev = next;
                        e
                    })
                    .collect::<Vec<_>>();
                (k.public_text(), envelopes)
            });
            let (send, recv) = conn.open_bi().await.expect("stream");
            start.wait().await;
            let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now_open, Ordering::SeqCst);
            let out = upload(send, recv, pending, signed, batch).await;
            open.fetch_sub(1, Ordering::SeqCst);
            out
        }));
    }
    start.wait().await;
    let t = Instant::now();
    let mut phase = Phase {
        latencies: Vec::new(),
        busy: 0,
        seconds: 0.0,
        peak: 0,
    };
    for task in tasks {
        let (l, busy) = task.await.expect("upload task");
        phase.latencies.extend(l);
        phase.busy += busy;
    }
    phase.seconds = t.elapsed().as_secs_f64();
    phase.peak = peak.load(Ordering::SeqCst);
    phase.latencies.sort_by(f64::total_cmp);
    phase
}

/// One agent's uploads on one stream, as the agent does: a batch, its ack, the next;
/// backing off with jitter when the collector says it is busy.
async fn upload(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    mut pending: Vec<wire::RawRecord>,
    mut signed: Option<(String, Vec<wire::Envelope>)>,
    batch: usize,
) -> (Vec<f64>, u64) {
    let mut decoder = FrameDecoder::new(1 << 20);
    let (mut latencies, mut busy, mut n) = (Vec::new(), 0u64, 0u64);
    while !pending.is_empty() {
        let take = pending.len().min(batch);
        n += 1;
        let frame = wire::encode(&Message::Upload(Upload {
            batch: n,
            health: Health::default(),
            results: pending[..take].to_vec(),
            signatures: signed.as_ref().map(|(key, e)| wire::Signatures {
                key: key.clone(),
                envelopes: e[..take].to_vec(),
                rotations: Vec::new(),
            }),
        }));
        let t = Instant::now();
        send.write_all(&frame).await.expect("send");
        match answer(&mut recv, &mut decoder).await {
            Message::Ack(a) if a.committed.len() == take => {
                pending.drain(..take);
                if let Some((_, e)) = signed.as_mut() {
                    e.drain(..take);
                }
                latencies.push(t.elapsed().as_secs_f64());
            }
            Message::Reject(r) if r.reason == RejectReason::Unavailable => {
                busy += 1;
                let wait = 500 + (n * 7919 + busy * 104_729) % 1500;
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            other => panic!("expected an ack of {take}: {other:?}"),
        }
    }
    (latencies, busy)
}

/// `readers` API clients paging through `/api/v1/results` (1000 a page, from the
/// oldest) until `stop`; pages read.
async fn read_results(
    http: String,
    readers: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> u64 {
    let mut tasks = Vec::new();
    for _ in 0..readers {
        let (http, stop) = (http.clone(), stop.clone());
        tasks.push(tokio::task::spawn_blocking(move || {
            let mut pages = 0u64;
            let mut cursor: Option<String> = None;
            while !*stop.borrow() {
                let path = match &cursor {
                    Some(c) => format!("/api/v1/results?limit=1000&cursor={c}"),
                    None => "/api/v1/results?limit=1000".to_string(),
                };
                let Some((200, body)) = sonde_e2e::http_get(&http, &path) else {
                    continue;
                };
                pages += 1;
                // The cursor only (the page is the collector's work, not ours).
                cursor = body
                    .rsplit_once("\"next_cursor\":\"")
                    .and_then(|(_, rest)| rest.split('"').next())
                    .map(str::to_string);
            }
            pages
        }));
    }
    let mut pages = 0;
    for t in tasks {
        pages += t.await.unwrap_or(0);
    }
    pages
}

/// The store the collector used: its SQLite file, or the database at `url`.
fn open_store(data_dir: &std::path::Path, url: Option<&str>) -> Box<dyn sonde_store::Store> {
    match url {
        Some(u) => Box::new(sonde_store_postgres::PostgresStore::open(u).expect("store")),
        None => Box::new(SqliteStore::open(&data_dir.join("collector.sqlite")).expect("store")),
    }
}

/// Group commits written by the store-alone phase, each of
/// [`ALONE_AGENTS`] agents' batches of [`ALONE_BATCH`] results.
const ALONE_COMMITS: usize = 50;
const ALONE_AGENTS: usize = 100;
const ALONE_BATCH: usize = 10;

/// The store alone, no QUIC and no collector: [`ALONE_COMMITS`] group commits built
/// beforehand, written straight into `store` one after the other (after the
/// collector stopped). Results/s, and this process's CPU a result (the store's client
/// side: building rows, hashing the log, the driver).
fn store_alone(store: &dyn sonde_store::Store) -> (f64, f64) {
    let commits: Vec<Vec<sonde_store::Batch>> = (0..ALONE_COMMITS)
        .map(|c| {
            (0..ALONE_AGENTS)
                .map(|a| {
                    let records: Vec<ResultRecord> = (0..ALONE_BATCH)
                        .map(|k| {
                            let mut r = ResultRecord::schema_example();
                            r.id = uuid::Uuid::now_v7();
                            r.run.started_at = chrono::Utc::now()
                                - chrono::Duration::seconds(((c * ALONE_BATCH + k) * 60) as i64);
                            r
                        })
                        .collect();
                    sonde_store::Batch {
                        delivery: sonde_store::Delivery {
                            agent_id: format!("store-alone-{a:03}"),
                            quartier: Some("q".into()),
                            building: Some(format!("b{a:03}")),
                        },
                        raw: records.iter().map(wire::RawRecord::of).collect(),
                        records,
                        health: None,
                        signed: None,
                    }
                })
                .collect()
        })
        .collect();
    let cpu = sonde_e2e::cpu_seconds(std::process::id());
    let started = Instant::now();
    for batches in &commits {
        store
            .insert_batches(batches, chrono::Utc::now())
            .expect("a store-alone commit");
    }
    let seconds = started.elapsed().as_secs_f64();
    let n = (ALONE_COMMITS * ALONE_AGENTS * ALONE_BATCH) as f64;
    let cpu = cpu_since(cpu, Some(std::process::id()));
    (n / seconds, cpu * 1e6 / n)
}

/// Results in the store (read after the collector stopped).
fn stored(store: &dyn sonde_store::Store) -> usize {
    let mut stored = 0usize;
    let mut q = ResultQuery {
        limit: 1000,
        ..Default::default()
    };
    loop {
        let page = store.results(&q).expect("page");
        stored += page.results.len();
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => return stored,
        }
    }
}

/// CPU seconds used so far by a PostgreSQL server whose data directory is `data`: its
/// postmaster's and its backends' (live children), from /proc.
fn postgres_cpu_seconds(data: &std::path::Path) -> Option<f64> {
    let pm: u32 = std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()?;
    let parent_of = |pid: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = stat.get(stat.rfind(')')? + 2..)?;
        rest.split_whitespace().nth(1)?.parse().ok()
    };
    let children: f64 = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| parent_of(pid) == Some(pm))
        .filter_map(sonde_e2e::cpu_seconds)
        .sum();
    Some(sonde_e2e::cpu_seconds(pm)? + children)
}

/// CPU seconds the PostgreSQL server at `data` used since `before`.
fn postgres_cpu_since(before: Option<f64>, data: Option<&std::path::Path>) -> f64 {
    match (before, data.and_then(postgres_cpu_seconds)) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    }
}

fn cpu_since(before: Option<f64>, pid: Option<u32>) -> f64 {
    match (before, pid.and_then(sonde_e2e::cpu_seconds)) {
        (Some(b), Some(n)) => n - b,
        _ => f64::NAN,
    }
}

/// The same fleet again while `args.readers` API clients page through the results.
async fn readers_phase(
    args: &Args,
    conns: &[quinn::Connection],
    http: String,
    report: &mut serde_json::Value,
) {
    eprintln!("again, with {} API readers…", args.readers);
    let total = (args.agents * args.results) as f64;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let reading = tokio::spawn(read_results(http, args.readers, stop_rx));
    let busy = upload_phase(conns, args.results, args.batch, None).await;
    let _ = stop_tx.send(true);
    let pages = reading.await.unwrap_or(0);
    report["readers"] = args.readers.into();
    report["readers_results_per_s"] = (total / busy.seconds).into();
    report["readers_ack_p50_ms"] = (quantile(&busy.latencies, 0.5) * 1e3).into();
    report["readers_ack_p99_ms"] = (quantile(&busy.latencies, 0.99) * 1e3).into();
    report["readers_pages_per_s"] = (pages as f64 / busy.seconds).into();
    report["readers_busy_refusals"] = busy.busy.into();
}

/// The same fleet again, every result signed and chained (the collector checks each
/// signature and chain before it stores anything), then unsigned once more, so the
/// store's growth between phases shows beside the signed rate.
async fn signed_phases(
    args: &Args,
    conns: &[quinn::Connection],
    keys_dir: &std::path::Path,
    collector_pid: Option<u32>,
    unsigned_s: f64,
    report: &mut serde_json::Value,
) {
    eprintln!("again, every result signed by its agent…");
    let (dir, n) = (keys_dir.to_path_buf(), conns.len());
    let keys: Vec<Arc<SigningKey>> = sonde_cli::blocking::run(move || {
        (0..n)
            .map(|i| {
                let d = dir.join(format!("agent-{i}"));
                std::fs::create_dir_all(&d).expect("key dir");
                Arc::new(SigningKey::load_or_create(&d).expect("signing key"))
            })
            .collect()
    })
    .await
    .expect("keys");
    let total = (args.agents * args.results) as f64;
    let cpu_before = collector_pid.and_then(sonde_e2e::cpu_seconds);
    let signed = upload_phase(conns, args.results, args.batch, Some(&keys)).await;
    let cpu = cpu_since(cpu_before, collector_pid);
    report["signed_results_per_s"] = (total / signed.seconds).into();
    report["signed_vs_unsigned_rate"] = (unsigned_s / signed.seconds).into();
    report["signed_collector_cpu_s"] = cpu.into();
    report["signed_results_per_collector_cpu_s"] = (total / cpu).into();
    report["signed_ack_p50_ms"] = (quantile(&signed.latencies, 0.5) * 1e3).into();
    report["signed_ack_p99_ms"] = (quantile(&signed.latencies, 0.99) * 1e3).into();
    report["signed_busy_refusals"] = signed.busy.into();
    eprintln!("and unsigned once more…");
    let cpu_before = collector_pid.and_then(sonde_e2e::cpu_seconds);
    let again = upload_phase(conns, args.results, args.batch, None).await;
    let cpu = cpu_since(cpu_before, collector_pid);
    report["unsigned_again_results_per_s"] = (total / again.seconds).into();
    report["unsigned_again_results_per_collector_cpu_s"] = (total / cpu).into();
}

/// The processes whose CPU the figures count besides this one.
struct Watched {
    /// The collector's pid.
    collector: Option<u32>,
    /// The PostgreSQL server's data directory, when the store is one.
    postgres: Option<std::path::PathBuf>,
}

/// A few client sockets, shared by the simulated agents.
fn client_endpoints() -> Vec<quinn::Endpoint> {
    (0..8)
        .map(|_| quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client"))
        .collect()
}

/// The benchmark's phases against a collector at `addr`.
async fn run(
    args: &Args,
    addr: SocketAddr,
    http: String,
    ca: rustls::pki_types::CertificateDer<'static>,
    tokens: Vec<String>,
    watched: &Watched,
    keys_dir: &std::path::Path,
) -> serde_json::Value {
    let (collector_pid, pg_data) = (watched.collector, watched.postgres.as_deref());
    let endpoints = client_endpoints();
    eprintln!("enrolling {} agents over QUIC…", args.agents);
    let t = Instant::now();
    let agents = enrol_all(&endpoints, addr, &ca, tokens).await;
    let enrol_s = t.elapsed().as_secs_f64();
    eprintln!("connecting {} agents (mutual TLS)…", agents.len());
    let t = Instant::now();
    let conns = connect_all(&endpoints, addr, agents).await;
    let connect_s = t.elapsed().as_secs_f64();
    let held = conns.iter().filter(|c| c.close_reason().is_none()).count();
    eprintln!(
        "{held} connections held; uploading {} results each in batches of {}…",
        args.results, args.batch
    );
    let me = Some(std::process::id());
    let cpu_before = (
        collector_pid.and_then(sonde_e2e::cpu_seconds),
        me.and_then(sonde_e2e::cpu_seconds),
        pg_data.and_then(postgres_cpu_seconds),
    );
    let idle = upload_phase(&conns, args.results, args.batch, None).await;
    let collector_cpu_s = cpu_since(cpu_before.0, collector_pid);
    let agents_cpu_s = cpu_since(cpu_before.1, me);
    let store_cpu_s = postgres_cpu_since(cpu_before.2, pg_data);
    let total = (args.agents * args.results) as f64;
    let mut report = serde_json::json!({
        "agents": args.agents,
        "results_per_agent": args.results,
        "batch": args.batch,
        "enrol_s": enrol_s,
        "connect_s": connect_s,
        "connections_held": held,
        "peak_concurrent_uploaders": idle.peak,
        "upload_s": idle.seconds,
        "results_per_s": total / idle.seconds,
        "collector_cpu_s": collector_cpu_s,
        "simulated_agents_cpu_s": agents_cpu_s,
        "results_per_collector_cpu_s": total / collector_cpu_s,
        "store_server_cpu_s": store_cpu_s,
        "ack_p50_ms": quantile(&idle.latencies, 0.5) * 1e3,
        "ack_p99_ms": quantile(&idle.latencies, 0.99) * 1e3,
        "ack_max_ms": idle.latencies.last().copied().unwrap_or(f64::NAN) * 1e3,
        "busy_refusals": idle.busy,
    });
    if args.readers > 0 {
        readers_phase(args, &conns, http, &mut report).await;
    }
    if args.signed {
        signed_phases(
            args,
            &conns,
            keys_dir,
            collector_pid,
            idle.seconds,
            &mut report,
        )
        .await;
    }
    report["connections_held_at_end"] = conns
        .iter()
        .filter(|c| c.close_reason().is_none())
        .count()
        .into();
    for c in &conns {
        c.close(0u32.into(), b"done");
    }
    report
}

/// One whole benchmark on a fresh collector whose store is `store`: its figures.
fn bench_on(args: &Args, store: StoreKind) -> serde_json::Value {
    let dir = scratch(&format!("ingest-bench-{store:?}"));
    let server = (store == StoreKind::Postgres).then(|| {
        eprintln!("starting PostgreSQL…");
        sonde_store_postgres::scratch::Server::start(&dir.join("pg"))
            .unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"))
    });
    let url = server
        .as_ref()
        .map(|s| s.create_database("sonde").expect("database"));
    let Bench {
        mut collector,
        data_dir,
        ca,
        tokens,
        addr,
    } = Bench::start_on(&dir, args.agents, url.as_deref());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut report = runtime.block_on(run(
        args,
        addr,
        collector.http.clone(),
        ca.cert().clone(),
        tokens,
        &Watched {
            collector: collector.pid(),
            postgres: server.as_ref().map(|_| dir.join("pg").join("pgdata")),
        },
        &dir.join("agent-keys"),
    ));
    collector.stop();
    let mut r = ResultRecord::schema_example();
    r.id = uuid::Uuid::now_v7();
    report["record_bytes"] = r.to_json().len().into();
    let store = open_store(&data_dir, url.as_deref());
    report["stored_after_restart"] = stored(store.as_ref()).into();
    eprintln!("the store alone: {ALONE_COMMITS} group commits written straight in…");
    let pg_cpu = server
        .as_ref()
        .and_then(|_| postgres_cpu_seconds(&dir.join("pg").join("pgdata")));
    let (rate, client_us) = store_alone(store.as_ref());
    report["store_alone_results_per_s"] = rate.into();
    report["store_alone_client_cpu_us_per_result"] = client_us.into();
    report["store_alone_server_cpu_us_per_result"] = server
        .as_ref()
        .map(|_| {
            postgres_cpu_since(pg_cpu, Some(&dir.join("pg").join("pgdata"))) * 1e6
                / (ALONE_COMMITS * ALONE_AGENTS * ALONE_BATCH) as f64
        })
        .into();
    drop(store);
    report["collector_cpu_us_per_result"] =
        (report["collector_cpu_s"].as_f64().unwrap_or(f64::NAN) * 1e6
            / (args.agents * args.results) as f64)
            .into();
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    report
}

/// Both benchmarks' figures side by side, one row a figure.
fn print_side_by_side(reports: &[(StoreKind, serde_json::Value)], json: bool) {
    if json {
        let all: serde_json::Map<String, serde_json::Value> = reports
            .iter()
            .map(|(k, r)| (format!("{k:?}").to_lowercase(), r.clone()))
            .collect();
        println!("{}", serde_json::Value::Object(all));
        return;
    }
    println!(
        "sonde ingest benchmark, one collector on each store in turn (SQLite WAL \
         synchronous=FULL; PostgreSQL on loopback, synchronous_commit on)"
    );
    print!("  {:<36}", "figure");
    for (k, _) in reports {
        print!(" {:>14}", format!("{k:?}").to_lowercase());
    }
    println!();
    let keys: Vec<&String> = reports[0]
        .1
        .as_object()
        .map_or(Vec::new(), |o| o.keys().collect());
    for key in keys {
        print!("  {key:<36}");
        for (_, r) in reports {
            match &r[key.as_str()] {
                v if v.is_f64() => print!(" {:>14.3}", v.as_f64().unwrap_or(f64::NAN)),
                serde_json::Value::Null => print!(" {:>14}", "–"),
                v => print!(" {:>14}", v.to_string()),
            }
        }
        println!();
    }
}

fn main() {
    let args = <Args as clap::Parser>::parse();
    let stores = match args.store {
        StoreKind::Both => vec![StoreKind::Sqlite, StoreKind::Postgres],
        one => vec![one],
    };
    let reports: Vec<(StoreKind, serde_json::Value)> = stores
        .into_iter()
        .map(|k| (k, bench_on(&args, k)))
        .collect();
    if let [(kind, report)] = reports.as_slice() {
        let title = match kind {
            StoreKind::Postgres => {
                "sonde ingest benchmark (collector: PostgreSQL on loopback, synchronous_commit on, group commit)"
            }
            _ => "sonde ingest benchmark (collector: SQLite WAL, synchronous=FULL, group commit)",
        };
        print_report(title, report, args.json);
    } else {
        print_side_by_side(&reports, args.json);
    }
}
