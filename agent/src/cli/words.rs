//! The record's names in words a person reads, for the summaries the commands print
//! (the JSON keeps the stable names).

use sonde_proto::{FailureReason, Flag, Outcome, StopReason, VerdictOutcome};

/// Why a direction stopped.
pub fn stop(s: StopReason) -> String {
    match s {
        StopReason::Stable => "stable".into(),
        StopReason::MaxDuration => "not stable by the time cap".into(),
        StopReason::ByteBudget => "stopped at its data allowance".into(),
        StopReason::Error => "every stream failed".into(),
        other => other.to_string(),
    }
}

/// A validity flag.
pub fn flag(f: Flag) -> String {
    match f {
        Flag::NicLimited => "the interface is slower than the target".into(),
        Flag::ServerLimited => "the responder was the limit".into(),
        Flag::CpuLimited => "this machine's CPU was the limit".into(),
        Flag::CrossTraffic => "other traffic crossed the interface".into(),
        Flag::Unstable => "a direction never became stable".into(),
        Flag::StreamsFailed => "some streams failed".into(),
        Flag::LatencyLoss => "latency probes were lost".into(),
        Flag::ServerContended => "another test shared the responder".into(),
        other => other.to_string(),
    }
}

/// A verdict.
pub fn verdict(v: VerdictOutcome) -> String {
    match v {
        VerdictOutcome::Met => "target met".into(),
        VerdictOutcome::NotMet => "target not met".into(),
        VerdictOutcome::PortLimited => "not met, but the port cannot carry the target".into(),
        VerdictOutcome::NoTarget => "no target".into(),
        VerdictOutcome::Inconclusive => "inconclusive (no valid figure)".into(),
        other => other.to_string(),
    }
}

/// The overall outcome.
pub fn outcome(o: Outcome) -> String {
    match o {
        Outcome::Ok => "ok".into(),
        Outcome::Partial => "partial: some figures are missing".into(),
        Outcome::Failed => "failed: no usable figure".into(),
        other => other.to_string(),
    }
}

/// A failure reason.
pub fn reason(r: FailureReason) -> String {
    match r {
        FailureReason::Dns => "the responder's name did not resolve".into(),
        FailureReason::Refused => "the responder refused the connection".into(),
        FailureReason::Timeout => "the responder did not answer in time".into(),
        FailureReason::ResponderError => "the responder answered with an error".into(),
        FailureReason::ResponderBusy => "the responder was busy with other tests".into(),
        FailureReason::Interface => "the interface could not be used".into(),
        FailureReason::StreamError => "a stream failed during the test".into(),
        FailureReason::EchoUnreachable => "the UDP echo did not answer".into(),
        FailureReason::Busy => "the line was busy with other traffic".into(),
        FailureReason::Budget => "the data budget did not allow the test".into(),
        FailureReason::Other => "an error".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name has words that are not its wire name in Rust's debug spelling.
    #[test]
    fn every_name_has_words() {
        let all: Vec<(String, String)> = StopReason::ALL
            .iter()
            .map(|&s| (format!("{s:?}"), stop(s)))
            .chain(Flag::ALL.iter().map(|&f| (format!("{f:?}"), flag(f))))
            .chain(
                VerdictOutcome::ALL
                    .iter()
                    .map(|&v| (format!("{v:?}"), verdict(v))),
            )
            .chain(Outcome::ALL.iter().map(|&o| (format!("{o:?}"), outcome(o))))
            .chain(
                FailureReason::ALL
                    .iter()
                    .map(|&r| (format!("{r:?}"), reason(r))),
            )
            .collect();
        for (debug, words) in all {
            assert!(!words.contains('_'), "{debug}: {words}");
            assert!(debug == "Ok" || !words.contains(&debug), "{debug}: {words}");
        }
    }
}
