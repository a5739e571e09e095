//! One measurement of one access against one responder, by the engine its URL names:
//! each engine (`sonde_http/`, `iperf3/`, one folder each) moves bytes its way and
//! feeds the one [`driver`] (streams, sampling, loaded latency, figures); the record is
//! built and settled by [`record`]. Always ends in a result record; failures are
//! written into its status, never lost. No engine imports another.

pub mod driver;
pub mod iperf3;
pub mod options;
pub mod record;
pub mod rpm;
pub mod sonde_http;
pub mod udpst;

pub use options::{responder_url, EngineKind, Options, Progress, ProgressFn};
pub use record::failed;

use crate::net::target::ClientError;
use chrono::Utc;
use sonde_method::verdict;
use sonde_proto::*;

/// Responsiveness against the configuration at `config`, into the record.
async fn responsiveness(
    opts: &Options,
    config: &url::Url,
    record: &mut ResultRecord,
    progress: &ProgressFn,
) -> Result<(), ClientError> {
    record.run.engine = Engine::Nq;
    record.responsiveness = Some(rpm::measure(opts, config, progress).await?);
    Ok(())
}

/// Responsiveness after a throughput engine: against `--rpm-config`, or the sonde
/// responder's own network-quality server.
async fn rpm_beside(
    opts: &Options,
    rpm: &options::RpmOptions,
    record: &mut ResultRecord,
    progress: &ProgressFn,
) -> Result<(), ClientError> {
    let config = match &rpm.config {
        Some(c) => c.clone(),
        None => {
            let (addr, host) = crate::net::target::resolve(&opts.responder).await?;
            let target = crate::net::target::Target {
                addr,
                host,
                interface: opts.interface.as_ref().map(|i| i.name.clone()),
            };
            rpm::sonde_config(&target, &opts.responder).await?
        }
    };
    record.responsiveness = Some(rpm::measure(opts, &config, progress).await?);
    Ok(())
}

/// Runs the probe and returns its record.
pub async fn run(opts: &Options, progress: &ProgressFn) -> ResultRecord {
    let started_at = Utc::now();
    let mut record = record::empty_record(opts, started_at);
    let measured = match EngineKind::of(&opts.responder) {
        Some(EngineKind::Iperf3) => iperf3::measure(opts, &mut record, progress).await,
        Some(EngineKind::SondeHttp) => sonde_http::measure(opts, &mut record, progress).await,
        Some(EngineKind::Udpst) => udpst::measure(opts, &mut record, progress).await,
        Some(EngineKind::Nq) => responsiveness(opts, &opts.responder, &mut record, progress).await,
        None => Err(ClientError::new(
            FailureReason::Other,
            format!("{} names no engine", opts.responder),
        )),
    };
    // Responsiveness beside the throughput, when asked (a failure is a warning).
    if let (
        Ok(()),
        Some(rpm),
        Some(EngineKind::SondeHttp | EngineKind::Iperf3 | EngineKind::Udpst),
    ) = (&measured, &opts.rpm, EngineKind::of(&opts.responder))
    {
        if let Err(e) = rpm_beside(opts, rpm, &mut record, progress).await {
            record::degrade(&mut record, e);
        }
    }
    match measured {
        Ok(()) => {}
        Err(e) => {
            record.status = Status {
                outcome: Outcome::Failed,
                reason: Some(e.reason),
                message: Some(e.message),
            };
        }
    }
    let (down, up) = verdict::ip_rates(&record);
    record.verdict = verdict::judge(
        opts.targets,
        record.access.link_speed_bps,
        record.access.mtu,
        down,
        up,
        &mut record.flags,
    );
    record.run.ended_at = Utc::now();
    record
}
