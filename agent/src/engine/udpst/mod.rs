//! The UDPST engine: IP-layer capacity by RFC 9097 / TR-471 against a UDP Speed Test
//! Protocol server (RFC 9946), such as the Broadband Forum's OB-UDPST
//! (`udpst://HOST[:PORT]`, port 24601 by default). The server drives the rate search
//! in both directions; the agent receives and reports (a download) or sends as told (an
//! upload). The figures go to the record's `capacity` section (docs/METHODOLOGY.md
//! §10).
//!
//! [`session`] opens a test, [`downstream`] and [`upstream`] run it, [`shared`] holds
//! what they share. The PDUs are `sonde_proto::udpst`; the receiver's accounting and
//! the figures are `sonde_method::capacity`.

pub mod downstream;
pub mod session;
pub mod shared;
pub mod upstream;

use crate::engine::options::{Options, ProgressFn};
use crate::net::target::{resolve, ClientError};
use session::Params;
use sonde_method::capacity::figures;
use sonde_proto::udpst::{Activation, IPV4_UDP_OVERHEAD, IPV6_UDP_OVERHEAD, PROTOCOL_VERSION};
use sonde_proto::*;
use std::time::Duration;

/// Time a test may run past its duration: the handshake, the last sub-interval and the
/// stop exchange.
const GRACE: Duration = Duration::from_secs(5);
/// Shortest test an OB-UDPST server accepts, s.
const MIN_TEST_S: u16 = 5;

/// Measures `opts` against the UDPST server its responder URL names, filling
/// `record.capacity`.
pub(crate) async fn measure(
    opts: &Options,
    record: &mut ResultRecord,
    progress: &ProgressFn,
) -> Result<(), ClientError> {
    record.run.engine = Engine::Udpst;
    if let Some(bytes) = opts.max_bytes {
        // The server drives the rate and the duration: no allowance can be kept.
        return Err(ClientError::new(
            FailureReason::Budget,
            format!(
                "a UDPST test cannot keep to a byte allowance ({bytes} bytes): the server sets the rate for the whole test; measure budgeted accesses with http:// or iperf3:// responders"
            ),
        ));
    }
    let (jumbo, key) = url_options(&opts.responder)?;
    let (addr, _) = resolve(&opts.responder).await?;
    record.run.responder.address = Some(addr.to_string());
    let params = Params {
        test_s: (opts
            .max_duration
            .as_secs()
            .clamp(u64::from(MIN_TEST_S), 3600)) as u16,
        jumbo,
        key,
        ..Params::default()
    };
    let overhead = if addr.is_ipv6() {
        IPV6_UDP_OVERHEAD
    } else {
        IPV4_UDP_OVERHEAD
    };
    let mut capacity = Capacity {
        protocol_version: PROTOCOL_VERSION,
        test_s: f64::from(params.test_s),
        sub_interval_s: f64::from(params.sub_interval_ms) / 1e3,
        trial_s: f64::from(params.trial_ms) / 1e3,
        rate_algorithm: "B".into(),
        connections: 1,
        down: None,
        up: None,
    };
    let interface = opts.interface.as_ref().map(|i| i.name.as_str());
    for &direction in &opts.directions {
        let (accepted, figures) = run_direction(
            addr,
            interface,
            direction,
            params.clone(),
            overhead,
            progress,
        )
        .await?;
        capacity.rate_algorithm = if accepted.rate_algo == 1 { "C" } else { "B" }.into();
        match direction {
            Direction::Up => capacity.up = Some(figures),
            _ => capacity.down = Some(figures),
        }
    }
    record.capacity = Some(capacity);
    Ok(())
}

/// What the responder URL's query asks: `jumbo` (or `jumbo=1`, `true`, `on`) lets the
/// server send jumbo datagrams above 1 Gb/s (packets of 1375 to 9000 bytes: a path with
/// a 9000-byte MTU only; OB-UDPST's server wants it unless run with `-j`);
/// `key_file=PATH` (and `key_id=N`, else the file's first) authenticates the test
/// (mode 1) with a key of an OB-UDPST key file (`ID,KEY` lines): the URL names the
/// file, never the key. Anything else is refused by name.
fn url_options(url: &url::Url) -> Result<(bool, Option<session::SharedKey>), ClientError> {
    let bad = |m: String| ClientError::new(FailureReason::ResponderError, m);
    let (mut jumbo, mut file, mut id) = (false, None, None);
    for (k, v) in url.query_pairs() {
        match (k.as_ref(), v.as_ref()) {
            ("jumbo", "" | "1" | "true" | "on") => jumbo = true,
            ("jumbo", "0" | "false" | "off") => jumbo = false,
            ("key_file", path) => file = Some(std::path::PathBuf::from(path)),
            ("key_id", n) => {
                id = Some(
                    n.parse::<u8>()
                        .map_err(|_| bad(format!("key_id={n}: a key id is 0 to 255")))?,
                )
            }
            _ => {
                return Err(bad(format!(
                "udpst:// takes only ?jumbo, key_file=PATH and key_id=N in its query, not {k}={v}"
            )))
            }
        }
    }
    let key = match (file, id) {
        (None, None) => None,
        (None, Some(_)) => return Err(bad("key_id needs key_file=PATH in the URL".into())),
        (Some(path), id) => {
            let keys = sonde_udpst::auth::KeyFile::read(&path).map_err(bad)?;
            let id = id.unwrap_or(keys.first().0);
            let key = keys
                .get(id)
                .ok_or_else(|| bad(format!("key file {}: no key of id {id}", path.display())))?;
            Some((id, key.to_vec()))
        }
    };
    Ok((jumbo, key))
}

/// One test in `direction`: opened, run to the server's stop, and its figures.
async fn run_direction(
    addr: std::net::SocketAddr,
    interface: Option<&str>,
    direction: Direction,
    params: Params,
    overhead: u64,
    progress: &ProgressFn,
) -> Result<(Activation, CapacityFigures), ClientError> {
    let opened = session::open(addr, interface, direction, params).await?;
    let accepted = opened.accepted;
    let bound = Duration::from_secs(u64::from(accepted.test_s)) + GRACE;
    let ended = match direction {
        Direction::Up => upstream::run(opened.socket, &accepted, bound, progress).await?,
        _ => downstream::run(&opened.socket, &accepted, bound, progress).await?,
    };
    if ended.ignored > 0 {
        tracing::warn!(
            ignored = ended.ignored,
            "UDPST: datagrams that were no test PDU were ignored"
        );
    }
    let count =
        (u32::from(accepted.test_s) * 1000 / u32::from(accepted.sub_interval_ms.max(1))) as usize;
    let f = figures(&ended.sub_intervals, overhead, count).ok_or_else(|| {
        ClientError::new(
            FailureReason::StreamError,
            "the UDPST test ended before its first sub-interval",
        )
    })?;
    let figures = CapacityFigures {
        max_ip_capacity_bps: f.max_ip_capacity_bps,
        max_at: f.max_at as u32,
        loss_ratio_at_max: f.loss_ratio_at_max,
        rtt_range_at_max_s: f.rtt_range_at_max_s,
        pdv_range_at_max_s: f.pdv_range_at_max_s,
        rtt_min_s: ended.rtt_min_ms.map(|ms| f64::from(ms) / 1e3),
        loss_ratio: f.loss_ratio,
        sub_interval_rates_bps: f.rates_bps,
    };
    Ok((accepted, figures))
}
