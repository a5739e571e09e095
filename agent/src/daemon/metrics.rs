//! The agent's own `/metrics`, for the operator on site (`[metrics]` in the config,
//! 127.0.0.1:9101 by default): its health and the latest result of each access, in
//! the Prometheus text format. Built at each scrape from the daemon's state; a few
//! accesses make a small page. Same metric names as the collector's, without the site
//! labels (the page is this box's).

use super::status::Status;
use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use sonde_proto::{ResultRecord, VerdictOutcome};
use std::collections::BTreeMap;

/// What the page is made of.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// The daemon's status (health).
    pub status: Status,
    /// The latest result of each access, by access name.
    pub latest: BTreeMap<String, ResultRecord>,
    /// Results measured since start, by access and outcome.
    pub tests: BTreeMap<(String, String), u64>,
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<GaugeVec> {
    let g = GaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counter(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn build(s: &Snapshot) -> prometheus::Result<Registry> {
    let r = Registry::new();
    let st = &s.status;
    let spool = IntGauge::new(
        "sonde_agent_spool_results",
        "Results waiting in the spool for the collector.",
    )?;
    spool.set(st.spool_depth as i64);
    r.register(Box::new(spool))?;
    for (name, help, v) in [
        (
            "sonde_agent_spool_evictions_total",
            "Results evicted from the full spool, ever.",
            st.evictions_total,
        ),
        (
            "sonde_agent_missed_runs_total",
            "Scheduled runs not made since start.",
            st.missed_runs_total,
        ),
        (
            "sonde_agent_results_total",
            "Results measured since start.",
            st.results_total,
        ),
        (
            "sonde_agent_uploaded_total",
            "Results the collector acknowledged since start.",
            st.uploaded_total,
        ),
    ] {
        let c = prometheus::IntCounter::new(name, help)?;
        c.inc_by(v);
        r.register(Box::new(c))?;
    }
    let failures = counter(
        &r,
        "sonde_agent_failures_total",
        "Failed measurements since start, by reason.",
        &["reason"],
    )?;
    for (reason, n) in &st.failures_total {
        failures.with_label_values(&[reason.as_str()]).inc_by(*n);
    }
    let uplink = counter(
        &r,
        "sonde_agent_uplink_errors_total",
        "Failed uploads since start, by reason.",
        &["reason"],
    )?;
    for (reason, n) in &st.uplink_errors_total {
        uplink.with_label_values(&[reason.as_str()]).inc_by(*n);
    }
    let single = |name: &str, help: &str, v: f64| -> prometheus::Result<()> {
        let g = prometheus::Gauge::new(name, help)?;
        g.set(v);
        r.register(Box::new(g))
    };
    single(
        "sonde_agent_collector_connected",
        "1 while a QUIC connection to the collector is open.",
        if st.connected { 1.0 } else { 0.0 },
    )?;
    if let Some(t) = st.last_success {
        single(
            "sonde_agent_last_success_timestamp_seconds",
            "When the collector last acknowledged an upload (Unix seconds).",
            t.timestamp_millis() as f64 / 1e3,
        )?;
    }
    single(
        "sonde_agent_uptime_seconds",
        "Seconds since the agent started.",
        st.uptime_s as f64,
    )?;
    let served = counter(
        &r,
        "sonde_agent_responder_tests_total",
        "Tests each responder served since start (responder: its position in the access's list).",
        &["access", "responder"],
    )?;
    for (access, by) in &st.responder_tests_total {
        for (position, n) in by {
            served
                .with_label_values(&[access.as_str(), position.as_str()])
                .inc_by(*n);
        }
    }
    let used = gauge(
        &r,
        "sonde_agent_budget_used_bytes",
        "Bytes the access's tests used this month (UTC), against its data budget.",
        &["access"],
    )?;
    let budget = gauge(
        &r,
        "sonde_agent_budget_bytes",
        "The access's monthly data budget, bytes.",
        &["access"],
    )?;
    for (access, b) in &st.budgets {
        used.with_label_values(&[access.as_str()])
            .set(b.used_bytes as f64);
        budget
            .with_label_values(&[access.as_str()])
            .set(b.budget_bytes as f64);
    }
    gauge(
        &r,
        "sonde_agent_info",
        "1, with the agent's version and id.",
        &["version", "agent"],
    )?
    .with_label_values(&[st.version.as_str(), st.agent_id.as_deref().unwrap_or("")])
    .set(1.0);
    let throughput = gauge(
        &r,
        "sonde_throughput_bytes_per_second",
        "Latest IP-layer throughput of the access in this direction, in bytes per second (x8 for bit/s).",
        &["access", "direction"],
    )?;
    let target = gauge(
        &r,
        "sonde_target_bytes_per_second",
        "IP-layer target of the access in this direction, in bytes per second (x8 for bit/s).",
        &["access", "direction"],
    )?;
    let met = gauge(
        &r,
        "sonde_target_met",
        "1 when the latest result met the target, 0 when it did not.",
        &["access", "direction"],
    )?;
    let latency = gauge(
        &r,
        "sonde_latency_seconds",
        "Latest median round-trip time: idle (direction=\"none\") or loaded.",
        &["access", "direction", "state"],
    )?;
    let loss = gauge(
        &r,
        "sonde_packet_loss_ratio",
        "Latest idle UDP probe loss ratio.",
        &["access"],
    )?;
    let ts = gauge(
        &r,
        "sonde_result_timestamp_seconds",
        "Start time of the latest result of the access (Unix seconds).",
        &["access"],
    )?;
    let radio: Vec<_> = [
        (
            "sonde_wifi_signal_dbm",
            "Wi-Fi signal of the latest result, dBm.",
        ),
        ("sonde_lte_rsrp_dbm", "4G RSRP of the latest result, dBm."),
        ("sonde_lte_rsrq_db", "4G RSRQ of the latest result, dB."),
        ("sonde_lte_sinr_db", "4G SINR of the latest result, dB."),
    ]
    .into_iter()
    .map(|(name, help)| gauge(&r, name, help, &["access"]))
    .collect::<Result<_, _>>()?;
    for (access, rec) in &s.latest {
        let a = access.as_str();
        let wifi = rec.radio.as_ref().and_then(|x| x.wifi.as_ref());
        let lte = rec.radio.as_ref().and_then(|x| x.lte.as_ref());
        let figures = [
            wifi.and_then(|w| w.signal_dbm),
            lte.and_then(|l| l.rsrp_dbm),
            lte.and_then(|l| l.rsrq_db),
            lte.and_then(|l| l.sinr_db),
        ];
        for (g, v) in radio.iter().zip(figures) {
            if let Some(v) = v {
                g.with_label_values(&[a]).set(v);
            }
        }
        ts.with_label_values(&[a])
            .set(rec.run.started_at.timestamp_millis() as f64 / 1e3);
        for (dir, fig, tgt, verdict) in [
            (
                "down",
                rec.download.as_ref(),
                rec.verdict.target_down_bps,
                rec.verdict.down,
            ),
            (
                "up",
                rec.upload.as_ref(),
                rec.verdict.target_up_bps,
                rec.verdict.up,
            ),
        ] {
            if let Some(f) = fig {
                throughput
                    .with_label_values(&[a, dir])
                    .set(f.ip_rate_bps / 8.0);
                if let Some(l) = f.loaded_latency.as_ref().and_then(|l| l.median_s) {
                    latency.with_label_values(&[a, dir, "loaded"]).set(l);
                }
            }
            if let Some(t) = tgt {
                target.with_label_values(&[a, dir]).set(t / 8.0);
            }
            match verdict {
                VerdictOutcome::Met => met.with_label_values(&[a, dir]).set(1.0),
                VerdictOutcome::NotMet => met.with_label_values(&[a, dir]).set(0.0),
                _ => {}
            }
        }
        if let Some(l) = &rec.idle_latency {
            if let Some(m) = l.median_s {
                latency.with_label_values(&[a, "none", "idle"]).set(m);
            }
            loss.with_label_values(&[a]).set(l.loss_ratio);
        }
    }
    let tests = counter(
        &r,
        "sonde_tests_total",
        "Results measured since start, by access and outcome.",
        &["access", "outcome"],
    )?;
    for ((access, outcome), n) in &s.tests {
        tests
            .with_label_values(&[access.as_str(), outcome.as_str()])
            .inc_by(*n);
    }
    Ok(r)
}

/// The page for `snapshot`.
pub fn render(snapshot: &Snapshot) -> String {
    let Ok(registry) = build(snapshot) else {
        return String::new();
    };
    let mut out = Vec::new();
    let _ = TextEncoder::new().encode(&registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Serves `/metrics` on `listener` with pages from `snapshot`, until the task is
/// dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    snapshot: std::sync::Arc<dyn Fn() -> Snapshot + Send + Sync>,
) {
    use http_body_util::Full;
    let builder = hyper::server::conn::http1::Builder::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let snapshot = snapshot.clone();
        let service =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let snapshot = snapshot.clone();
                async move {
                    let resp = if req.uri().path() == "/metrics" {
                        let mut r = hyper::Response::new(Full::new(bytes::Bytes::from(render(
                            &snapshot(),
                        ))));
                        r.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static(
                                "text/plain; version=0.0.4; charset=utf-8",
                            ),
                        );
                        r
                    } else {
                        let mut r = hyper::Response::new(Full::new(bytes::Bytes::from_static(
                            b"only /metrics is served here\n",
                        )));
                        *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                        r
                    };
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
        let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
