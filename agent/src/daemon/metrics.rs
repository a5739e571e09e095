//! The agent's own `/metrics`, for the operator on site (`[metrics]` in the config,
//! 127.0.0.1:9101 by default): its health and the latest result of each access, in
//! the Prometheus text format. Built at each scrape from the daemon's state; a few
//! accesses make a small page. Same metric names as the collector's, without the site
//! labels (the page is this box's).

use super::status::Status;
use prometheus::{Encoder, GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};
use sonde_proto::metrics::{self as m, Metric};
use sonde_proto::{Direction, ResultRecord, VerdictOutcome};
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

fn gauge(r: &Registry, m: &Metric, labels: &[&str]) -> prometheus::Result<GaugeVec> {
    let g = GaugeVec::new(Opts::new(m.name, m.help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counter(r: &Registry, m: &Metric, labels: &[&str]) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(m.name, m.help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn build(s: &Snapshot) -> prometheus::Result<Registry> {
    let r = Registry::new();
    health(&r, &s.status)?;
    budgets(&r, &s.status)?;
    latest(&r, &s.latest)?;
    let tests = counter(&r, &m::TESTS, &["access", "outcome"])?;
    for ((access, outcome), n) in &s.tests {
        tests
            .with_label_values(&[access.as_str(), outcome.as_str()])
            .inc_by(*n);
    }
    Ok(r)
}

/// The agent's own health: spool, counters, connection, version.
fn health(r: &Registry, st: &Status) -> prometheus::Result<()> {
    gauge(r, &m::SPOOL_RESULTS, &[])?
        .with_label_values(&[] as &[&str])
        .set(st.spool_depth as f64);
    for (metric, v) in [
        (m::SPOOL_EVICTIONS, st.evictions_total),
        (m::MISSED_RUNS, st.missed_runs_total),
        (m::CLOCK_STEPS, st.clock_steps_total),
        (m::AGENT_RESULTS, st.results_total),
        (m::AGENT_UPLOADED, st.uploaded_total),
        (
            m::SUPPRESSED_RUNS,
            st.plan.schedules.values().map(|c| c.suppressions).sum(),
        ),
    ] {
        counter(r, &metric, &[])?
            .with_label_values(&[] as &[&str])
            .inc_by(v);
    }
    for (metric, by_reason) in [
        (m::FAILURES, &st.failures_total),
        (m::AGENT_UPLINK_ERRORS, &st.uplink_errors_total),
    ] {
        let c = counter(r, &metric, &["reason"])?;
        for (reason, n) in by_reason {
            c.with_label_values(&[reason.as_str()]).inc_by(*n);
        }
    }
    let mut single = vec![
        (m::SPOOL_FULL, if st.spool_full { 1.0 } else { 0.0 }),
        (m::RESULTS_HELD, st.held_results as f64),
        (m::AGENT_CONNECTED, if st.connected { 1.0 } else { 0.0 }),
        (m::AGENT_UPTIME, st.uptime_s as f64),
        (m::PLAN_VERSION, st.plan.version as f64),
    ];
    if let Some(t) = st.last_success {
        single.push((m::AGENT_LAST_SUCCESS, t.timestamp_millis() as f64 / 1e3));
    }
    for (metric, v) in single {
        gauge(r, &metric, &[])?
            .with_label_values(&[] as &[&str])
            .set(v);
    }
    let served = counter(r, &m::AGENT_RESPONDER_TESTS, &["access", "responder"])?;
    for (access, by) in &st.responder_tests_total {
        for (position, n) in by {
            served
                .with_label_values(&[access.as_str(), position.as_str()])
                .inc_by(*n);
        }
    }
    gauge(r, &m::AGENT_INFO, &["version", "agent"])?
        .with_label_values(&[st.version.as_str(), st.agent_id.as_deref().unwrap_or("")])
        .set(1.0);
    Ok(())
}

/// Each budgeted access's use this month and its budget.
fn budgets(r: &Registry, st: &Status) -> prometheus::Result<()> {
    let used = gauge(r, &m::AGENT_BUDGET_USED, &["access"])?;
    let budget = gauge(r, &m::AGENT_BUDGET, &["access"])?;
    for (access, b) in &st.budgets {
        used.with_label_values(&[access.as_str()])
            .set(b.used_bytes as f64);
        budget
            .with_label_values(&[access.as_str()])
            .set(b.budget_bytes as f64);
    }
    Ok(())
}

/// The figures of each access's latest result.
fn latest(r: &Registry, latest: &BTreeMap<String, ResultRecord>) -> prometheus::Result<()> {
    let loss = gauge(r, &m::LOSS, &["access"])?;
    let ts = gauge(r, &m::RESULT_TIMESTAMP, &["access"])?;
    let radio: Vec<_> = [m::WIFI_SIGNAL, m::LTE_RSRP, m::LTE_RSRQ, m::LTE_SINR]
        .iter()
        .map(|metric| gauge(r, metric, &["access"]))
        .collect::<Result<_, _>>()?;
    let directed = Directed {
        throughput: gauge(r, &m::THROUGHPUT, &["access", "direction"])?,
        capacity: gauge(r, &m::IP_CAPACITY, &["access", "direction"])?,
        rpm: gauge(r, &m::RESPONSIVENESS, &["access", "direction"])?,
        target: gauge(r, &m::TARGET, &["access", "direction"])?,
        met: gauge(r, &m::TARGET_MET, &["access", "direction"])?,
        latency: gauge(r, &m::LATENCY, &["access", "direction", "state"])?,
    };
    for (access, rec) in latest {
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
        directed.set(a, rec);
        if let Some(l) = &rec.idle_latency {
            if let Some(med) = l.median_s {
                directed
                    .latency
                    .with_label_values(&[a, "none", "idle"])
                    .set(med);
            }
            loss.with_label_values(&[a]).set(l.loss_ratio);
        }
    }
    Ok(())
}

/// The per-direction gauges.
struct Directed {
    throughput: GaugeVec,
    capacity: GaugeVec,
    rpm: GaugeVec,
    target: GaugeVec,
    met: GaugeVec,
    latency: GaugeVec,
}

impl Directed {
    /// Sets `access`'s figures of both directions from `rec`.
    fn set(&self, a: &str, rec: &ResultRecord) {
        let cap = rec.capacity.as_ref();
        for (dir, fig, capacity, tgt, verdict) in [
            (
                Direction::Down,
                rec.download.as_ref(),
                cap.and_then(|c| c.down.as_ref()),
                rec.verdict.target_down_bps,
                rec.verdict.down,
            ),
            (
                Direction::Up,
                rec.upload.as_ref(),
                cap.and_then(|c| c.up.as_ref()),
                rec.verdict.target_up_bps,
                rec.verdict.up,
            ),
        ] {
            let rpm = rec.responsiveness.as_ref().and_then(|x| x.of(dir));
            let dir = dir.as_str();
            if let Some(f) = rpm {
                self.rpm.with_label_values(&[a, dir]).set(f.rpm);
            }
            if let Some(c) = capacity {
                self.capacity
                    .with_label_values(&[a, dir])
                    .set(c.max_ip_capacity_bps / 8.0);
            }
            if let Some(f) = fig {
                self.throughput
                    .with_label_values(&[a, dir])
                    .set(f.ip_rate_bps / 8.0);
                if let Some(l) = f.loaded_latency.as_ref().and_then(|l| l.median_s) {
                    self.latency.with_label_values(&[a, dir, "loaded"]).set(l);
                }
            }
            if let Some(t) = tgt {
                self.target.with_label_values(&[a, dir]).set(t / 8.0);
            }
            match verdict {
                VerdictOutcome::Met => self.met.with_label_values(&[a, dir]).set(1.0),
                VerdictOutcome::NotMet => self.met.with_label_values(&[a, dir]).set(0.0),
                _ => {}
            }
        }
    }
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
