//! One test connection: its Test Activation (taken only from the address that set it
//! up, within 3 s), the parameters policed as OB-UDPST polices them (out-of-range
//! values replaced by the defaults, the duration capped by the server), the answer,
//! then the test itself.

use super::session::{opens, seal, Accepted, Config, Signer};
use super::{downstream, upstream};
use sonde_method::rate_search::{Algorithm, RateSearch, RateTable, SearchParams};
use sonde_proto::udpst::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

/// How long the client may take to activate its test.
const ACTIVATION_WAIT: Duration = Duration::from_secs(3);

/// Runs one test to its end; `true` when it ran to its stop.
pub async fn run(
    socket: UdpSocket,
    setup: Setup,
    peer: SocketAddr,
    config: Config,
    signer: Option<Signer>,
) -> bool {
    let Some((request, from)) = activation(&socket, peer, signer.as_ref()).await else {
        tracing::info!(%peer, "UDPST: no test activation in time");
        return false;
    };
    if socket.connect(from).await.is_err() {
        return false;
    }
    let mut answer = police(&request, config.max_test_s);
    let table = RateTable::new(
        setup.modifiers & SETUP_JUMBO != 0,
        setup.modifiers & SETUP_TRADITIONAL_MTU != 0,
    );
    let search = RateSearch::new(&table, search_params(&answer));
    if answer.request == ACTIVATE_UPSTREAM {
        // The row the client starts sending.
        answer.rate = table.row(search.index());
    }
    // In the layout of the client's version (the activation's own).
    let sealed = seal(signer.as_ref(), answer.encode_for(answer.version));
    let _ = socket.send(&sealed).await;
    let accepted = Accepted {
        activation: answer,
        table,
        search,
        peer: from,
        answer: sealed,
    };
    tracing::info!(
        peer = %from,
        direction = if answer.request == ACTIVATE_UPSTREAM { "up" } else { "down" },
        test_s = answer.test_s,
        connection = format!("{}/{}", setup.mc_index + 1, setup.mc_count),
        "UDPST test starts"
    );
    if answer.request == ACTIVATE_UPSTREAM {
        upstream::run(socket, accepted).await
    } else {
        downstream::run(socket, accepted).await
    }
}

/// Waits for the Test Activation Request from `peer`'s address (any port: a NAT may
/// have mapped the test socket to another), authenticated when the test is.
async fn activation(
    socket: &UdpSocket,
    peer: SocketAddr,
    signer: Option<&Signer>,
) -> Option<(Activation, SocketAddr)> {
    let deadline = tokio::time::Instant::now() + ACTIVATION_WAIT;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, from) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        if from.ip() != peer.ip() || !opens(signer, &buf[..n]) {
            continue;
        }
        if let Ok(Pdu::Activation(a)) = Pdu::decode(&buf[..n]) {
            if a.request == ACTIVATE_UPSTREAM || a.request == ACTIVATE_DOWNSTREAM {
                return Some((a, from));
            }
        }
    }
}

/// The Test Activation Response to `request`: each value out of its range replaced by
/// the default, the duration capped at `max_test_s`, and for an upstream test the row
/// the client starts with.
pub fn police(request: &Activation, max_test_s: u16) -> Activation {
    let mut a = *request;
    a.response = ACTIVATION_ACK;
    let within = |v: u16, lo: u16, hi: u16, default: u16| {
        if (lo..=hi).contains(&v) {
            v
        } else {
            default
        }
    };
    a.low_thresh_ms = within(a.low_thresh_ms, 1, 10_000, 30);
    a.upper_thresh_ms = within(a.upper_thresh_ms, 1, 10_000, 90);
    if a.low_thresh_ms > a.upper_thresh_ms {
        (a.low_thresh_ms, a.upper_thresh_ms) = (30, 90);
    }
    a.trial_ms = within(a.trial_ms, 5, 250, 50);
    a.test_s = within(a.test_s, 5, 3600, 10).min(max_test_s.max(5));
    a.sub_interval_ms = within(a.sub_interval_ms, 100, 10_000, 1000);
    if u32::from(a.sub_interval_ms) > u32::from(a.test_s) * 1000 {
        (a.test_s, a.sub_interval_ms) = (10.min(max_test_s.max(5)), 1000);
    }
    if a.sr_index != SR_INDEX_AUTO && usize::from(a.sr_index) >= sonde_method::rate_search::ROWS {
        a.sr_index = SR_INDEX_AUTO;
    }
    if a.use_one_way_delay > 1 {
        a.use_one_way_delay = 0;
    }
    if a.high_speed_delta == 0 {
        a.high_speed_delta = 10;
    }
    if a.slow_adjust_thresh == 0 {
        a.slow_adjust_thresh = 3;
    }
    if a.ignore_ooo_dup > 1 {
        a.ignore_ooo_dup = 1;
    }
    // No payload randomisation, no ECN marking and no DSCP here: the test runs unmarked.
    a.modifiers &= ACTIVATION_SR_INDEX_IS_START;
    a.dscp_ecn = 0;
    a.ecn_ce_thresh = 0;
    if a.rate_algo > 1 {
        a.rate_algo = 0;
    }
    let sub_intervals = u32::from(a.test_s) * 1000 / u32::from(a.sub_interval_ms);
    if u32::from(a.rate_adjust_suppress) >= sub_intervals {
        a.rate_adjust_suppress = 0;
    }
    a.rate = SendingRate::default();
    a.auth = Auth::default();
    a
}

/// The rate search the answered activation asks for.
pub fn search_params(a: &Activation) -> SearchParams {
    let fixed = (a.sr_index != SR_INDEX_AUTO).then_some(usize::from(a.sr_index));
    SearchParams {
        algorithm: if a.rate_algo == 1 {
            Algorithm::C
        } else {
            Algorithm::B
        },
        low_thresh_ms: u32::from(a.low_thresh_ms),
        upper_thresh_ms: u32::from(a.upper_thresh_ms),
        seq_err_thresh: u32::from(a.seq_err_thresh),
        slow_adjust_thresh: u32::from(a.slow_adjust_thresh),
        high_speed_delta: usize::from(a.high_speed_delta),
        ignore_ooo_dup: a.ignore_ooo_dup == 1,
        use_one_way_delay: a.use_one_way_delay == 1,
        fixed,
        fixed_is_start: a.modifiers & ACTIVATION_SR_INDEX_IS_START != 0,
        suppress_sub_intervals: u32::from(a.rate_adjust_suppress),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Activation {
        let t = include_str!("../../../proto/testdata/udpst-obudpst-9.0.0.txt");
        let line = t
            .lines()
            .find(|l| l.starts_with("us c>s activation"))
            .expect("recorded request");
        let hex = line.split(' ').nth(4).expect("bytes");
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        Activation::decode(&bytes).expect("activation")
    }

    #[test]
    fn a_recorded_ob_udpst_request_is_accepted_as_asked() {
        let r = request();
        let a = police(&r, 3600);
        assert_eq!(a.response, ACTIVATION_ACK);
        assert_eq!(
            (a.low_thresh_ms, a.upper_thresh_ms, a.trial_ms, a.test_s),
            (r.low_thresh_ms, r.upper_thresh_ms, r.trial_ms, r.test_s)
        );
        assert_eq!(a.sub_interval_ms, r.sub_interval_ms);
        let p = search_params(&a);
        assert_eq!(p, SearchParams::default(), "OB-UDPST's defaults are ours");
    }

    #[test]
    fn out_of_range_values_take_the_defaults_and_the_server_caps_the_duration() {
        let mut r = request();
        r.trial_ms = 1;
        r.low_thresh_ms = 500;
        r.upper_thresh_ms = 100;
        r.test_s = 600;
        r.sub_interval_ms = 50;
        r.rate_algo = 9;
        r.sr_index = 5000;
        r.dscp_ecn = 0xb8;
        let a = police(&r, 30);
        assert_eq!(a.trial_ms, 50);
        assert_eq!((a.low_thresh_ms, a.upper_thresh_ms), (30, 90));
        assert_eq!(a.test_s, 30, "capped by the server");
        assert_eq!(a.sub_interval_ms, 1000);
        assert_eq!(a.rate_algo, 0);
        assert_eq!(a.sr_index, SR_INDEX_AUTO);
        assert_eq!(a.dscp_ecn, 0);
    }
}
