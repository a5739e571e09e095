//! `sonde-responder`: the measurement peer placed near the access network. Serves
//! HTTP/1.1 download and upload endpoints, a UDP echo and, when asked, a UDP Speed Test
//! Protocol server (RFC 9946); stateless, no database.

mod admission;
mod echo;
mod http;
mod load;
mod nq;
mod payload;
mod tcpinfo;
mod udpst;
mod upload;

use anyhow::Context as _;
use clap::Parser;
use hyper_util::rt::{TokioIo, TokioTimer};
use sonde_cli::LogFormat;
use sonde_proto::responder::Limits;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// sonde's measurement peer: serves downloads of incompressible bytes, sinks uploads
/// while counting them in 100 ms bins, echoes UDP latency probes and, with --udpst,
/// serves IP-layer capacity tests (RFC 9097) over the UDP Speed Test Protocol.
///
/// Agents need only the HTTP URL: `GET /api/v1/info` tells them the UDP port, the
/// limits and the version. A UDPST server is reached as udpst://HOST:PORT, by sonde's
/// agents or by any RFC 9946 client (OB-UDPST's udpst, TR-471 CPE diagnostics).
///
/// Example: sonde-responder --listen 0.0.0.0:8080 --udp 0.0.0.0:8081 --udpst 0.0.0.0:24601
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// TCP address for HTTP (download, upload, info).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// UDP address for the latency echo; without it, agents measure no latency.
    #[arg(long, value_name = "ADDR:PORT")]
    udp: Option<SocketAddr>,
    /// UDP address of the UDP Speed Test Protocol server's control port (RFC 9946;
    /// 24601 is the protocol's port). Each test gets an ephemeral UDP port of its own, so
    /// a firewall must let the client reach ephemeral ports too. Tests last at most
    /// --max-duration seconds. Without it, no UDPST server.
    #[arg(long, value_name = "ADDR:PORT")]
    udpst: Option<SocketAddr>,
    /// TCP address of the network-quality (responsiveness, RPM) server: HTTPS with
    /// HTTP/2, its configuration at /.well-known/nq (draft-ietf-ippm-responsiveness),
    /// for sonde's agents (`probe --rpm`) and any RPM client (networkQuality, mach).
    /// Its certificate is --nq-cert and --nq-key, or else a self-signed one. Without
    /// it, no RPM server.
    #[arg(long, value_name = "ADDR:PORT")]
    nq: Option<SocketAddr>,
    /// PEM certificate chain of the network-quality server.
    #[arg(long, value_name = "FILE", requires = "nq_key")]
    nq_cert: Option<std::path::PathBuf>,
    /// PEM private key of --nq-cert.
    #[arg(long, value_name = "FILE", requires = "nq_cert")]
    nq_key: Option<std::path::PathBuf>,
    /// Without --nq-cert, write the self-signed certificate here (PEM), for clients to
    /// trust (`sonde-agent probe --rpm-ca FILE`).
    #[arg(long, value_name = "FILE", conflicts_with = "nq_cert")]
    nq_self_signed_out: Option<std::path::PathBuf>,
    /// Connections the network-quality server holds at once; more are closed.
    #[arg(long, default_value_t = 256, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    nq_max_connections: u32,
    /// UDPST test connections running at once, all clients together; more are refused
    /// ("could not allocate a connection"). One address runs at most two tests at once
    /// (a multi-connection test counts once) and at most half of these connections.
    #[arg(long, default_value_t = 8, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    udpst_max_tests: u32,
    /// Shared keys of UDPST authentication (mode 1, HMAC-SHA256), as OB-UDPST's key
    /// files hold them: one `ID,KEY` a line, `#` comments. With it every UDPST test must
    /// authenticate with one of these keys; without it none may.
    #[arg(long, value_name = "FILE")]
    udpst_key_file: Option<std::path::PathBuf>,
    /// Concurrent data streams served at once; more get 503 Busy.
    #[arg(long, default_value_t = 64, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    max_streams: u32,
    /// Tests served at once in each direction; the next gets 503 with Retry-After (two
    /// tests in one direction share the responder's bottleneck and both read low).
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    max_tests: u32,
    /// Data streams open at once from one client address; more get 503.
    #[arg(long, default_value_t = 32, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    max_streams_per_address: u32,
    /// UDP echo replies a second to one source address (burst: twice this); beyond, requests
    /// are dropped and counted. An agent's densest train is 1,000 a second
    /// (--idle-interval 1).
    #[arg(long, default_value_t = echo::DEFAULT.per_second, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    echo_rate: u32,
    /// UDP echo replies a second to all addresses together (burst: twice this).
    #[arg(long, default_value_t = echo::DEFAULT.total_per_second, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    echo_rate_total: u32,
    /// Longest download or upload stream, seconds.
    #[arg(long, default_value_t = 30, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    max_duration: u64,
    /// Largest download or upload of one stream, bytes (default 40 GB: 10 Gb/s × 30 s).
    #[arg(long, default_value_t = 40_000_000_000, value_name = "BYTES")]
    max_bytes: u64,
    /// Seconds to let running tests finish after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 5, value_name = "SECS")]
    shutdown_grace: u64,
    /// Log line format (logs go to stderr; filter with RUST_LOG).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

fn main() {
    let args: Args = sonde_cli::parse_or_exit();
    sonde_cli::init_logging(args.log_format);
    let runtime = sonde_cli::runtime_or_exit();
    if let Err(e) = runtime.block_on(run(args)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    // Bound before HTTP, so that whoever waits for the HTTP port finds UDPST ready too.
    let udpst_control = match args.udpst {
        Some(addr) => Some(udpst::bind(addr).await?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let (udp, udp_port) = match args.udp {
        Some(addr) => {
            let sock = tokio::net::UdpSocket::bind(addr)
                .await
                .with_context(|| format!("cannot bind UDP {addr}"))?;
            let port = sock.local_addr()?.port();
            (Some(sock), Some(port))
        }
        None => (None, None),
    };
    let (nq, nq_port) = match args.nq {
        Some(addr) => {
            let (server, listener) = nq_server(&args, addr).await?;
            let port = listener.local_addr()?.port();
            (Some((server, listener)), Some(port))
        }
        None => (None, None),
    };
    let state = Arc::new(http::State::new(limits(&args), (udp_port, nq_port)));
    let local = listener.local_addr()?;
    tracing::info!(http = %local, udp = ?udp_port, nq = ?nq_port, version = env!("CARGO_PKG_VERSION"), "responder listening");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let Some(sock) = udp {
        let rate = echo::Rate {
            per_second: args.echo_rate,
            total_per_second: args.echo_rate_total,
        };
        tokio::spawn(echo::serve(sock, rate, stop_rx.clone()));
    }
    let nq_server = nq.as_ref().map(|(server, _)| server.clone());
    if let Some((server, listener)) = nq {
        tokio::spawn(nq::serve(server, listener, stop_rx.clone()));
    }
    let udpst_counters = Arc::new(udpst::Counters::default());
    if let Some(control) = udpst_control {
        let config = udpst_config(&args)?;
        let counters = udpst_counters.clone();
        tokio::spawn(udpst::serve(control, config, counters, stop_rx.clone()));
    }
    tokio::spawn(async move {
        sonde_cli::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    serve_http(
        listener,
        state.clone(),
        stop_rx,
        Duration::from_secs(args.shutdown_grace),
    )
    .await;
    log_stopped(&state, &udpst_counters, nq_server.as_deref());
    Ok(())
}

/// The HTTP side's limits, from the command line.
fn limits(args: &Args) -> Limits {
    Limits {
        max_streams: args.max_streams,
        max_duration_ms: args.max_duration * 1000,
        max_bytes: args.max_bytes,
        max_tests_per_direction: args.max_tests,
        max_streams_per_address: args.max_streams_per_address,
    }
}

/// The closing line: what was served and refused.
fn log_stopped(state: &http::State, udpst: &udpst::Counters, nq: Option<&nq::Server>) {
    use std::sync::atomic::Ordering::Relaxed;
    let c = &state.counters;
    tracing::info!(
        download_bytes = c.download_bytes.load(Relaxed),
        upload_bytes = c.upload_bytes.load(Relaxed),
        rejected = c.rejected.load(Relaxed),
        udpst_tests = udpst.completed.load(Relaxed),
        udpst_refused = udpst.refused.load(Relaxed),
        nq_bytes = nq.map(|n| n.bytes.load(Relaxed)),
        nq_refused = nq.map(|n| n.refused.load(Relaxed)),
        "responder stopped"
    );
}

/// The network-quality server and its bound listener.
async fn nq_server(
    args: &Args,
    addr: SocketAddr,
) -> anyhow::Result<(Arc<nq::Server>, tokio::net::TcpListener)> {
    let cert = match (&args.nq_cert, &args.nq_key) {
        (Some(cert), Some(key)) => nq::Certificate::Files(cert, key),
        _ => {
            let mut names = vec!["localhost".to_string()];
            if !addr.ip().is_unspecified() {
                names.push(addr.ip().to_string());
            }
            tracing::warn!("nq: no --nq-cert: serving a self-signed certificate (tests only)");
            nq::Certificate::SelfSigned(names, args.nq_self_signed_out.as_deref())
        }
    };
    let tls = nq::tls_config(cert)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (--nq)"))?;
    let server = nq::Server::new(
        tls,
        args.nq_max_connections as usize,
        Duration::from_secs(args.max_duration),
    );
    Ok((Arc::new(server), listener))
}

/// The UDPST server's limits and keys, from the command line.
fn udpst_config(args: &Args) -> anyhow::Result<udpst::Config> {
    let keys = match &args.udpst_key_file {
        Some(path) => Some(Arc::new(
            sonde_udpst::auth::KeyFile::read(path).map_err(anyhow::Error::msg)?,
        )),
        None => None,
    };
    Ok(udpst::Config {
        max_tests: args.udpst_max_tests,
        max_test_s: args.max_duration.min(3600) as u16,
        keys,
    })
}

async fn serve_http(
    listener: tokio::net::TcpListener,
    state: Arc<http::State>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    grace: Duration,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(64 * 1024)
        .keep_alive(true);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        // The descriptor outlives every request of this connection: hyper owns the
        // stream until the connection ends, and requests end before it.
        let conn_info = http::Conn {
            fd: std::os::fd::AsRawFd::as_raw_fd(&stream),
            peer: peer.ip(),
            progress: Arc::new(http::Progress::default()),
        };
        let progress = conn_info.progress.clone();
        let watch_state = state.clone();
        let service = hyper::service::service_fn(move |req| {
            http::handle(state.clone(), conn_info.clone(), req)
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                },
                // A data stream that moves nothing for STALL is cut: a client that
                // stops reading a download (or sending an upload) holds no slot.
                _ = progress.stalled(http::STALL) => {
                    watch_state.counters.stalled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    watch_state.admission.penalise(peer.ip(), std::time::Instant::now());
                    tracing::info!(%peer, "data stream stalled; connection closed");
                }
            }
        });
    }
    drop(listener);
    tracing::info!(
        grace_s = grace.as_secs(),
        "shutting down: no new connections"
    );
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("tests still running at the end of the grace period; closing them");
    }
}
