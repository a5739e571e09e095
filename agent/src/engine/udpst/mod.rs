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
use sonde_proto::udpst::{
    Activation, CURRENT_LAYOUT, IPV4_UDP_OVERHEAD, IPV6_UDP_OVERHEAD, PROTOCOL_MIN,
    PROTOCOL_VERSION,
};
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
    let asked = url_options(&opts.responder)?;
    let (addr, _) = resolve(&opts.responder).await?;
    record.run.responder.address = Some(addr.to_string());
    let params = Params {
        test_s: (opts
            .max_duration
            .as_secs()
            .clamp(u64::from(MIN_TEST_S), 3600)) as u16,
        jumbo: asked.jumbo,
        key: asked.key,
        connections: asked.connections,
        version: asked.version,
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
        connections: u32::from(params.connections),
        down: None,
        up: None,
    };
    let interface = opts.interface.as_ref().map(|i| i.name.as_str());
    for &direction in &opts.directions {
        let (accepted, figures) =
            run_direction(addr, interface, direction, &params, overhead, progress).await?;
        capacity.rate_algorithm = if accepted.rate_algo == 1 { "C" } else { "B" }.into();
        capacity.protocol_version = accepted.version;
        match direction {
            Direction::Up => capacity.up = Some(figures),
            _ => capacity.down = Some(figures),
        }
    }
    record.capacity = Some(capacity);
    Ok(())
}

/// What a `udpst://` URL's query asks.
#[derive(Debug, Default)]
struct Asked {
    jumbo: bool,
    key: Option<session::SharedKey>,
    connections: u8,
    version: u16,
}

/// What the responder URL's query asks: `jumbo` (or `jumbo=1`, `true`, `on`) lets the
/// server send jumbo datagrams above 1 Gb/s (packets of 1375 to 9000 bytes: a path with
/// a 9000-byte MTU only; OB-UDPST's server wants it unless run with `-j`);
/// `key_file=PATH` (and `key_id=N`, else the file's first) authenticates the test
/// (mode 1) with a key of an OB-UDPST key file (`ID,KEY` lines): the URL names the
/// file, never the key; `connections=N` (1 to 24) runs N connections at once;
/// `version=N` (11 to 20) asks that protocol version first (20 by default; a server
/// that answers with an older one is asked again in it). Anything else is refused by
/// name.
fn url_options(url: &url::Url) -> Result<Asked, ClientError> {
    let bad = |m: String| ClientError::new(FailureReason::ResponderError, m);
    let mut asked = Asked {
        connections: 1,
        version: PROTOCOL_VERSION,
        ..Asked::default()
    };
    let (mut file, mut id) = (None, None);
    for (k, v) in url.query_pairs() {
        match (k.as_ref(), v.as_ref()) {
            ("jumbo", "" | "1" | "true" | "on") => asked.jumbo = true,
            ("jumbo", "0" | "false" | "off") => asked.jumbo = false,
            ("key_file", path) => file = Some(std::path::PathBuf::from(path)),
            ("key_id", n) => {
                id = Some(
                    n.parse::<u8>()
                        .map_err(|_| bad(format!("key_id={n}: a key id is 0 to 255")))?,
                )
            }
            ("version", n) => {
                asked.version = n
                    .parse::<u16>()
                    .ok()
                    .filter(|v| (PROTOCOL_MIN..=PROTOCOL_VERSION).contains(v))
                    .ok_or_else(|| {
                        bad(format!(
                            "version={n}: sonde speaks UDPST protocol versions {PROTOCOL_MIN} to {PROTOCOL_VERSION}"
                        ))
                    })?
            }
            ("connections", n) => {
                asked.connections = n
                    .parse::<u8>()
                    .ok()
                    .filter(|c| (1..=24).contains(c))
                    .ok_or_else(|| bad(format!("connections={n}: 1 to 24")))?
            }
            _ => {
                return Err(bad(format!(
                "udpst:// takes only ?jumbo, key_file=PATH, key_id=N, connections=N and version=N in its query, not {k}={v}"
            )))
            }
        }
    }
    asked.key = match (file, id) {
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
    if asked.key.is_some() && asked.version < CURRENT_LAYOUT {
        return Err(bad(format!(
            "key_file with version={}: sonde authenticates with protocol version {PROTOCOL_VERSION} only",
            asked.version
        )));
    }
    Ok(asked)
}

/// One test in `direction` over the asked connections, opened and run together to the
/// server's stop, and its figures (the connections' sub-intervals added up).
async fn run_direction(
    addr: std::net::SocketAddr,
    interface: Option<&str>,
    direction: Direction,
    params: &Params,
    overhead: u64,
    progress: &ProgressFn,
) -> Result<(Activation, CapacityFigures), ClientError> {
    let ident = rand::random::<u16>().max(1);
    let n = params.connections.max(1);
    let opened = futures_util::future::try_join_all(
        (0..n).map(|i| session::open(addr, interface, direction, params, (i, ident))),
    )
    .await?;
    // One connection shows its progress; of several, none does (a part is no figure).
    let quiet = |_| {};
    let shown: &ProgressFn = if n == 1 { progress } else { &quiet };
    let runs = opened.into_iter().map(|o| async move {
        let accepted = o.accepted;
        let bound = Duration::from_secs(u64::from(accepted.test_s)) + GRACE;
        let ended = match direction {
            Direction::Up => upstream::run(o.socket, &accepted, bound, shown).await?,
            _ => downstream::run(&o.socket, &accepted, bound, shown).await?,
        };
        Ok::<_, ClientError>((accepted, ended))
    });
    let ended = futures_util::future::try_join_all(runs).await?;
    let accepted = ended[0].0;
    let ignored: u64 = ended.iter().map(|e| e.1.ignored).sum();
    if ignored > 0 {
        tracing::warn!(
            ignored,
            "UDPST: datagrams that were no test PDU were ignored"
        );
    }
    let rtt_min_ms = ended.iter().filter_map(|e| e.1.rtt_min_ms).min();
    let subs = sonde_method::capacity::aggregate(
        &ended
            .into_iter()
            .map(|e| e.1.sub_intervals)
            .collect::<Vec<_>>(),
    );
    let count =
        (u32::from(accepted.test_s) * 1000 / u32::from(accepted.sub_interval_ms.max(1))) as usize;
    let f = figures(&subs, overhead, count).ok_or_else(|| {
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
        rtt_min_s: rtt_min_ms.map(|ms| f64::from(ms) / 1e3),
        loss_ratio: f.loss_ratio,
        sub_interval_rates_bps: f.rates_bps,
    };
    Ok((accepted, figures))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(query: &str) -> Result<Asked, String> {
        let url = url::Url::parse(&format!("udpst://192.0.2.1{query}")).expect("url");
        url_options(&url).map_err(|e| e.message)
    }

    #[test]
    fn the_query_asks_for_jumbo_sizes_keys_and_connections_and_nothing_else() {
        let a = asked("").expect("none");
        assert!(!a.jumbo && a.key.is_none() && a.connections == 1);
        assert!(asked("?jumbo").expect("jumbo").jumbo);
        assert!(!asked("?jumbo=off").expect("off").jumbo);
        assert_eq!(asked("?connections=24").expect("24").connections, 24);
        for bad in ["?connections=0", "?connections=25", "?connections=x"] {
            assert!(asked(bad).expect_err(bad).contains("1 to 24"), "{bad}");
        }
        assert!(asked("?key_id=3")
            .expect_err("id alone")
            .contains("needs key_file"));
        assert!(asked("?key_file=/nonexistent/udpst.keys")
            .expect_err("no file")
            .contains("cannot read the key file"));
        assert!(asked("?speed=max")
            .expect_err("unknown")
            .contains("takes only"));
        let dir = std::env::temp_dir().join(format!("sonde-udpst-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("k");
        std::fs::write(&file, "4,four\n5,five\n").expect("write");
        let a = asked(&format!("?key_file={}", file.display())).expect("first key");
        assert_eq!(a.key, Some((4, b"four".to_vec())));
        let a = asked(&format!("?key_file={}&key_id=5", file.display())).expect("key 5");
        assert_eq!(a.key, Some((5, b"five".to_vec())));
        assert!(asked(&format!("?key_file={}&key_id=6", file.display()))
            .expect_err("no 6")
            .contains("no key of id 6"));
        assert_eq!(asked("").expect("default").version, 20);
        assert_eq!(asked("?version=11").expect("11").version, 11);
        for bad in ["?version=10", "?version=21", "?version=x"] {
            assert!(asked(bad).expect_err(bad).contains("11 to 20"), "{bad}");
        }
        assert!(asked(&format!("?key_file={}&version=11", file.display()))
            .expect_err("a key in version 11")
            .contains("version 20 only"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
