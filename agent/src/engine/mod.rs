//! One measurement of one access against one responder, by the engine its URL names:
//! each engine (`sonde_http/`, `iperf3/`, one folder each) moves bytes its way and
//! feeds the one [`driver`] (streams, sampling, loaded latency, figures); the record is
//! built and settled by [`record`]. Always ends in a result record; failures are
//! written into its status, never lost. No engine imports another.

pub mod driver;
pub mod iperf3;
pub mod options;
pub mod record;
pub mod sonde_http;
pub mod udpst;

pub use options::{responder_url, EngineKind, Options, Progress, ProgressFn};
pub use record::failed;

use crate::net::target::ClientError;
use chrono::Utc;
use sonde_method::verdict;
use sonde_proto::*;

/// Runs the probe and returns its record.
pub async fn run(opts: &Options, progress: &ProgressFn) -> ResultRecord {
    let started_at = Utc::now();
    let mut record = record::empty_record(opts, started_at);
    let measured = match EngineKind::of(&opts.responder) {
        Some(EngineKind::Iperf3) => iperf3::measure(opts, &mut record, progress).await,
        Some(EngineKind::SondeHttp) => sonde_http::measure(opts, &mut record, progress).await,
        Some(EngineKind::Udpst) => udpst::measure(opts, &mut record, progress).await,
        None => Err(ClientError::new(
            FailureReason::Other,
            format!("{} names no engine", opts.responder),
        )),
    };
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
