//! The record a probe fills: made empty at the start with what was asked, each
//! direction's outcome settled into it, and the record of a run that could not start.
//! Engine-neutral: every engine's figures land in the same record.

use super::options::Options;
use crate::net::target::ClientError;
use chrono::Utc;
use sonde_method::verdict;
use sonde_proto::*;

/// The record of a run that could not start (e.g. its interface is gone), with why.
pub fn failed(opts: &Options, reason: FailureReason, message: String) -> ResultRecord {
    let mut record = empty_record(opts, Utc::now());
    record.status = Status {
        outcome: Outcome::Failed,
        reason: Some(reason),
        message: Some(message),
    };
    record.verdict = verdict::judge(opts.targets, None, None, None, None, &mut record.flags);
    record
}

pub(crate) fn empty_record(opts: &Options, started_at: chrono::DateTime<Utc>) -> ResultRecord {
    ResultRecord {
        schema_version: SCHEMA_VERSION,
        id: uuid::Uuid::now_v7(),
        agent: AgentInfo {
            id: None,
            version: env!("CARGO_PKG_VERSION").into(),
        },
        site: Site::default(),
        access: Access {
            name: None,
            kind: opts.access,
            interface: opts.interface.as_ref().map(|i| i.name.clone()),
            link_speed_bps: opts.interface.as_ref().and_then(|i| i.link_speed_bps),
            mtu: opts.interface.as_ref().and_then(|i| i.mtu),
        },
        run: Run {
            started_at,
            ended_at: started_at,
            engine: Engine::SondeHttp,
            responder: ResponderRef {
                url: opts.responder.to_string(),
                version: None,
                address: None,
            },
            directions: opts.directions.clone(),
            streams: opts.streams,
            max_duration_s: opts.max_duration.as_secs_f64(),
            interval_s: None,
            cross_traffic_bytes: None,
            cpu_busy_ratio: None,
            clock_synchronised: None,
        },
        download: None,
        upload: None,
        idle_latency: None,
        radio: None,
        capacity: None,
        responsiveness: None,
        flags: Vec::new(),
        verdict: Verdict {
            target_down_bps: None,
            target_up_bps: None,
            tolerance: verdict::TOLERANCE,
            down: VerdictOutcome::Inconclusive,
            up: VerdictOutcome::Inconclusive,
        },
        status: Status {
            outcome: Outcome::Ok,
            reason: None,
            message: None,
        },
        methodology_version: METHODOLOGY_VERSION.into(),
    }
}

/// A direction's figures and its failed streams, or why it has none.
pub(crate) type DirectionOutcome = Result<(Throughput, u32), ClientError>;

/// Writes each direction's outcome into the record: its figures and flags, or its
/// failure; with `problems` met before, the status says what went wrong first.
pub(crate) fn settle(
    record: &mut ResultRecord,
    mut problems: Vec<(FailureReason, String)>,
    outcomes: Vec<(Direction, DirectionOutcome)>,
) {
    let wanted = outcomes.len();
    for (direction, result) in outcomes {
        match result {
            Ok((t, failed_streams)) => {
                if failed_streams > 0 && !record.flags.contains(&Flag::StreamsFailed) {
                    record.flags.push(Flag::StreamsFailed);
                }
                if t.stop_reason != StopReason::Stable && !record.flags.contains(&Flag::Unstable) {
                    record.flags.push(Flag::Unstable);
                }
                match direction {
                    Direction::Up => record.upload = Some(t),
                    _ => record.download = Some(t),
                }
            }
            Err(e) => problems.push((e.reason, format!("{direction:?}: {}", e.message))),
        }
    }
    let got = usize::from(record.download.is_some()) + usize::from(record.upload.is_some());
    if let Some((reason, _)) = problems.first() {
        let message = problems
            .iter()
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        record.status = Status {
            outcome: if got == 0 && wanted > 0 {
                Outcome::Failed
            } else {
                Outcome::Partial
            },
            reason: Some(*reason),
            message: Some(message),
        };
    }
}

/// A part of the test beside the figures failed (responsiveness): the outcome becomes
/// `partial` with the reason, unless something already went wrong, whose reason stays
/// first.
pub(crate) fn degrade(record: &mut ResultRecord, e: ClientError) {
    let message = format!("responsiveness: {}", e.message);
    match record.status.outcome {
        Outcome::Ok => {
            record.status = Status {
                outcome: Outcome::Partial,
                reason: Some(e.reason),
                message: Some(message),
            }
        }
        _ => {
            let joined = match record.status.message.take() {
                Some(m) => format!("{m}; {message}"),
                None => message,
            };
            record.status.message = Some(joined);
        }
    }
}
