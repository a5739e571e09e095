//! Responsiveness under working conditions (draft-ietf-ippm-responsiveness-09)
//! against a network-quality server: the configuration read from its
//! `/.well-known/nq`, then for each direction load-generating HTTP/2 connections
//! added one per interval until goodput is stable, with a foreign probe (a new
//! connection: TCP, TLS, GET) and a self probe (a GET on a load connection) every
//! 100 ms. The rule, the trimmed means, the formula and the stability are
//! `sonde_method::rpm`; this module moves the bytes and times the probes.

mod conn;
mod load;

use crate::engine::options::{Options, Progress, ProgressFn};
use crate::net::target::{resolve, ClientError};
use conn::Connector;
use sonde_method::rpm::{self as method, ForeignProbe, Rule, SelfProbe, Step, WorkingConditions};
use sonde_proto::responder::{Info, NqConfig, INFO_PATH, NQ_CONFIG_PATH};
use sonde_proto::*;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

/// Gap between probes of each kind.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// Probes in flight at most; beyond, a tick sends none.
const MAX_IN_FLIGHT: usize = 32;

/// The three endpoints, each with its connector and path.
struct Endpoints {
    small: (Connector, String),
    large: (Connector, String),
    upload: (Connector, String),
}

/// Checks that `path` holds PEM certificates a TLS client can trust (an access's
/// `rpm_ca`, read when the configuration is).
pub fn read_ca(path: &std::path::Path) -> Result<(), String> {
    conn::tls_config(Some(path))
        .map(|_| ())
        .map_err(|e| e.message)
}

/// Measures responsiveness in `directions` against the configuration at `config`.
pub(crate) async fn measure(
    opts: &Options,
    config: &url::Url,
    progress: &ProgressFn,
) -> Result<Responsiveness, ClientError> {
    let ca = opts.rpm.as_ref().and_then(|r| r.ca.as_deref());
    let tls = tokio_rustls::TlsConnector::from(Arc::new(conn::tls_config(ca)?));
    let interface = opts.interface.as_ref().map(|i| i.name.clone());
    let home = connector(config, &tls, interface.clone()).await?;
    let mut sender = home.open().await?.sender;
    let path = path_of(config);
    let (_, body) = conn::get(&home, &mut sender, &path, 64 * 1024).await?;
    let doc: NqConfig = serde_json::from_slice(&body).map_err(|e| {
        ClientError::new(
            FailureReason::ResponderError,
            format!("{config} is not a network-quality configuration: {e}"),
        )
    })?;
    let (small, large, upload) = doc.urls.resolved().map_err(|missing| {
        ClientError::new(
            FailureReason::ResponderError,
            format!("{config} names no {missing}"),
        )
    })?;
    let mut endpoints = Vec::new();
    for u in [small, large, upload] {
        let url = url::Url::parse(&u)
            .ok()
            .filter(|u| u.scheme() == "https")
            .ok_or_else(|| {
                ClientError::new(
                    FailureReason::ResponderError,
                    format!("{config} names {u:?}, not an https URL"),
                )
            })?;
        endpoints.push((
            connector(&url, &tls, interface.clone()).await?,
            path_of(&url),
        ));
    }
    let mut it = endpoints.into_iter();
    let (Some(small), Some(large), Some(upload)) = (it.next(), it.next(), it.next()) else {
        unreachable!("three endpoints were pushed")
    };
    let endpoints = Endpoints {
        small,
        large,
        upload,
    };
    let mut out = Responsiveness {
        method: method::METHOD.to_string(),
        config_url: config.to_string(),
        down: None,
        up: None,
    };
    let rule = Rule {
        max_duration: opts
            .max_duration
            .max(Duration::from_secs(5))
            .min(Rule::draft().max_duration),
        ..Rule::draft()
    };
    for &d in &opts.directions {
        let figures = direction(&endpoints, d, rule, progress).await?;
        match d {
            Direction::Up => out.up = Some(figures),
            _ => out.down = Some(figures),
        }
    }
    Ok(out)
}

/// The configuration URL of a sonde responder's network-quality server, from its info.
pub(crate) async fn sonde_config(
    target: &crate::net::target::Target,
    responder: &url::Url,
) -> Result<url::Url, ClientError> {
    let info: Info = target.get_json(INFO_PATH, Duration::from_secs(8)).await?;
    let port = info.nq_port.ok_or_else(|| {
        ClientError::new(
            FailureReason::ResponderError,
            format!("{responder} serves no network-quality endpoints (start it with --nq)"),
        )
    })?;
    let host = responder.host_str().unwrap_or_default();
    url::Url::parse(&format!("https://{host}:{port}{NQ_CONFIG_PATH}"))
        .map_err(|e| ClientError::new(FailureReason::Other, e.to_string()))
}

/// A URL's path and query.
fn path_of(url: &url::Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

/// How to reach `url`'s server.
async fn connector(
    url: &url::Url,
    tls: &tokio_rustls::TlsConnector,
    interface: Option<String>,
) -> Result<Connector, ClientError> {
    let (addr, authority) = resolve(url).await?;
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string();
    let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|_| {
        ClientError::new(FailureReason::Dns, format!("{host:?} is not a server name"))
    })?;
    Ok(Connector {
        addr,
        name,
        authority,
        interface,
        tls: tls.clone(),
    })
}

/// What the probes report.
enum Probe {
    Foreign(ForeignProbe),
    Own(SelfProbe),
    Failed(ClientError),
}

/// One direction: load added by the rule, probes every 100 ms, until stable or the
/// time limit.
async fn direction(
    ep: &Endpoints,
    d: Direction,
    rule: Rule,
    progress: &ProgressFn,
) -> Result<RpmFigures, ClientError> {
    let start = Instant::now();
    let load = load::Load::new(
        d,
        if d == Direction::Up {
            &ep.upload
        } else {
            &ep.large
        },
    );
    load.add();
    let mut wc = WorkingConditions::new(rule);
    let (tx, mut rx) = mpsc::channel::<Probe>(256);
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let (mut foreign, mut own, mut failures) = (Vec::new(), Vec::new(), Vec::new());
    let mut probes = tokio::time::interval(PROBE_EVERY);
    let mut intervals = tokio::time::interval_at(start + rule.interval, rule.interval);
    loop {
        tokio::select! {
            _ = probes.tick() => send_probes(ep, &load, (start, &slots), &tx),
            Some(p) = rx.recv() => match p {
                Probe::Foreign(f) => foreign.push(f),
                Probe::Own(s) => own.push(s),
                Probe::Failed(e) => failures.push(e),
            },
            _ = intervals.tick() => {
                let at = start.elapsed();
                let bytes = load.bytes.load(Ordering::Relaxed);
                progress(Progress { direction: d, elapsed: at, rate_bps: load.rate_bps(at) });
                match wc.interval(bytes, (&foreign, &own), at, load.connections()) {
                    Step::AddConnection => load.add(),
                    Step::Keep => {}
                    Step::Done => break,
                }
                if at >= rule.max_duration {
                    break;
                }
            }
        }
        if let Some(e) = load.failed_everywhere() {
            return Err(e);
        }
    }
    let elapsed = start.elapsed();
    load.stop();
    let outcome = wc.outcome().ok_or_else(|| {
        failures.pop().unwrap_or_else(|| {
            ClientError::new(
                FailureReason::Timeout,
                "no probe came back under load: no responsiveness figure",
            )
        })
    })?;
    Ok(RpmFigures {
        rpm: outcome.window.rpm,
        grade: method::grade(outcome.window.rpm),
        confidence: outcome.confidence,
        goodput_bps: outcome.goodput_bps,
        connections: load.connections() as u32,
        duration_s: elapsed.as_secs_f64(),
        bytes: load.bytes.load(Ordering::Relaxed),
        foreign: outcome.window.foreign,
        self_probes: outcome.window.self_probes,
    })
}

/// Starts a foreign probe, and a self probe on a load connection when one is ready.
fn send_probes(
    ep: &Endpoints,
    load: &load::Load,
    (start, slots): (Instant, &Arc<Semaphore>),
    tx: &mpsc::Sender<Probe>,
) {
    let Ok(slot) = slots.clone().try_acquire_owned() else {
        return;
    };
    let (small, path) = ep.small.clone();
    let report = tx.clone();
    tokio::spawn(async move {
        let _slot = slot;
        let at = start.elapsed();
        let probe = async {
            let opened = small.open().await?;
            let mut sender = opened.sender;
            let (http, _) = conn::get(&small, &mut sender, &path, 4096).await?;
            Ok::<_, ClientError>(ForeignProbe {
                at,
                tcp: opened.tcp,
                tls: opened.tls,
                http,
            })
        };
        let _ = report
            .send(match probe.await {
                Ok(p) => Probe::Foreign(p),
                Err(e) => Probe::Failed(e),
            })
            .await;
    });
    let Ok(slot) = slots.clone().try_acquire_owned() else {
        return;
    };
    if let Some(mut sender) = load.any_sender() {
        let (small, path) = ep.small.clone();
        let report = tx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let at = start.elapsed();
            let _ = report
                .send(match conn::get(&small, &mut sender, &path, 4096).await {
                    Ok((http, _)) => Probe::Own(SelfProbe { at, http }),
                    Err(e) => Probe::Failed(e),
                })
                .await;
        });
    }
}
