//! Radio context of a Wi-Fi access, read through nl80211 (generic netlink, with the
//! `wl-nl80211` crate) just before a test: the access point's BSSID, the SSID, the
//! channel's frequency and number, the signal and the tx/rx bitrates of the link.
//!
//! Three replies make it, as `iw dev IF link` does: the station dump (for a
//! station-mode interface, its one station is the access point: BSSID, signal,
//! bitrates), the interface (SSID and frequency, on kernels that give them there) and
//! the scan dump (the access point's BSS: SSID and frequency otherwise).
//!
//! Never more than [`NL80211_TIMEOUT`]: no nl80211 in the kernel, an interface that is
//! not wireless or not associated leaves the context out with its reason
//! (`radio.unavailable`), and the test runs anyway.

use sonde_proto::{Radio, WifiRadio};
use std::time::Duration;
use wl_nl80211::packet_core::Parseable;
use wl_nl80211::{
    Ieee80211Element, Ieee80211Elements, Nl80211Attr, Nl80211BssInfo, Nl80211Message,
    Nl80211RateInfo, Nl80211StationInfo,
};

/// Longest wait on nl80211 before a test.
pub const NL80211_TIMEOUT: Duration = Duration::from_secs(2);

/// `NL80211_BSS_STATUS_ASSOCIATED`: the BSS the interface is associated with.
const BSS_ASSOCIATED: u32 = 1;

/// The Wi-Fi context of `interface`. Never fails: what cannot be read is said in
/// `unavailable`.
pub async fn context(interface: &str) -> Radio {
    let read = async {
        read(interface).await.map(|wifi| Radio {
            wifi: Some(wifi),
            ..Default::default()
        })
    };
    crate::context::radio::within("nl80211", NL80211_TIMEOUT, read).await
}

async fn read(interface: &str) -> Result<WifiRadio, String> {
    let index = crate::net::netif::index(interface)
        .ok_or_else(|| format!("no interface named {interface}"))?;
    let (connection, handle, _) =
        wl_nl80211::new_connection().map_err(|e| format!("cannot open a netlink socket: {e}"))?;
    let driver = tokio::spawn(connection);
    let work = async {
        let stations = all(handle.clone().station().dump(index).execute().await)
            .await
            .map_err(|e| explain(interface, e))?;
        let interfaces = all(handle
            .clone()
            .interface()
            .get(vec![Nl80211Attr::IfIndex(index)])
            .execute()
            .await)
        .await
        .unwrap_or_default();
        // A scan dump only reads the kernel's cache: it never starts a scan.
        let scan = all(handle.clone().scan().dump(index).execute().await)
            .await
            .unwrap_or_default();
        from_replies(&stations, &interfaces, &scan)
            .ok_or_else(|| format!("{interface} is not associated with an access point"))
    };
    let result = work.await;
    driver.abort();
    result
}

/// Every reply of a request.
async fn all(
    replies: impl futures_util::TryStream<
        Ok = wl_nl80211::packet_generic::GenlMessage<Nl80211Message>,
        Error = wl_nl80211::Nl80211Error,
    >,
) -> Result<Vec<Nl80211Message>, wl_nl80211::Nl80211Error> {
    use futures_util::TryStreamExt;
    replies.map_ok(|m| m.payload).try_collect().await
}

/// One line for a failed station dump.
fn explain(interface: &str, e: wl_nl80211::Nl80211Error) -> String {
    use wl_nl80211::Nl80211Error::*;
    match e {
        // The generic netlink family is resolved first: ENOENT means none is registered.
        RequestFailed(m) if m.contains("os error 2)") => {
            "the kernel has no nl80211 (no Wi-Fi driver is loaded)".into()
        }
        NetlinkError(m) => format!("{interface} is not a Wi-Fi interface here ({m})"),
        RequestFailed(m) | Bug(m) => format!("station dump of {interface}: {m}"),
        other => format!("station dump of {interface}: {other}"),
    }
}

/// The context from the replies of nl80211: `None` when no station (the interface is
/// not associated).
pub fn from_replies(
    stations: &[Nl80211Message],
    interfaces: &[Nl80211Message],
    scan: &[Nl80211Message],
) -> Option<WifiRadio> {
    let (bssid, infos) = stations.iter().find_map(|m| {
        let mac = m.attributes.iter().find_map(|a| match a {
            Nl80211Attr::Mac(mac) => Some(*mac),
            _ => None,
        })?;
        let infos = m.attributes.iter().find_map(|a| match a {
            Nl80211Attr::StationInfo(i) => Some(i),
            _ => None,
        })?;
        Some((mac, infos))
    })?;
    let mut wifi = WifiRadio {
        bssid: Some(mac_text(&bssid)),
        ..Default::default()
    };
    let mut average = None;
    for info in infos {
        match info {
            Nl80211StationInfo::Signal(dbm) => wifi.signal_dbm = Some(f64::from(*dbm)),
            Nl80211StationInfo::SignalAvg(dbm) => average = Some(f64::from(*dbm)),
            Nl80211StationInfo::TxBitrate(rate) => wifi.tx_bitrate_bps = bitrate(rate),
            Nl80211StationInfo::RxBitrate(rate) => wifi.rx_bitrate_bps = bitrate(rate),
            _ => {}
        }
    }
    wifi.signal_dbm = wifi.signal_dbm.or(average);
    for a in interfaces.iter().flat_map(|m| &m.attributes) {
        match a {
            Nl80211Attr::Ssid(ssid) if !ssid.is_empty() => wifi.ssid = Some(ssid.clone()),
            Nl80211Attr::WiphyFreq(mhz) => wifi.frequency_mhz = Some(*mhz),
            _ => {}
        }
    }
    if let Some((ssid, mhz)) = bss(scan, &bssid) {
        wifi.ssid = wifi.ssid.or(ssid);
        wifi.frequency_mhz = wifi.frequency_mhz.or(mhz);
    }
    wifi.channel = wifi.frequency_mhz.and_then(channel);
    Some(wifi)
}

/// SSID and frequency of the access point `bssid` in a scan dump: the BSS with that
/// BSSID, or the one marked associated. Never another network's.
pub fn bss(scan: &[Nl80211Message], bssid: &[u8; 6]) -> Option<(Option<String>, Option<u32>)> {
    let entries = scan
        .iter()
        .flat_map(|m| &m.attributes)
        .filter_map(|a| match a {
            Nl80211Attr::Bss(info) => Some(info),
            _ => None,
        });
    for info in entries {
        let ours = info.iter().any(|i| match i {
            Nl80211BssInfo::Bssid(b) => b == bssid,
            Nl80211BssInfo::Status(s) => *s == BSS_ASSOCIATED,
            _ => false,
        });
        if !ours {
            continue;
        }
        let mut ssid = None;
        let mut mhz = None;
        for i in info {
            match i {
                Nl80211BssInfo::Frequency(f) => mhz = Some(*f),
                Nl80211BssInfo::RawInformationElements(ies)
                | Nl80211BssInfo::RawBeaconInformationElements(ies) => {
                    ssid = ssid.or_else(|| ssid_of(ies));
                }
                _ => {}
            }
        }
        return Some((ssid, mhz));
    }
    None
}

/// The SSID element of raw information elements; a hidden network's (empty) is none.
fn ssid_of(ies: &[u8]) -> Option<String> {
    let elements = <Ieee80211Elements as Parseable<[u8]>>::parse(ies).ok()?;
    elements.0.iter().find_map(|e| match e {
        Ieee80211Element::SsidRaw(raw) if !raw.is_empty() => {
            Some(String::from_utf8_lossy(raw).into_owned())
        }
        _ => None,
    })
}

/// A rate attribute in bit/s (nl80211 counts in 100 kbit/s; the 32-bit form first).
fn bitrate(rate: &[Nl80211RateInfo]) -> Option<u64> {
    let wide = rate.iter().find_map(|r| match r {
        Nl80211RateInfo::Bitrate32(v) => Some(u64::from(*v)),
        _ => None,
    });
    let narrow = rate.iter().find_map(|r| match r {
        Nl80211RateInfo::Bitrate(v) => Some(u64::from(*v)),
        _ => None,
    });
    wide.or(narrow).map(|v| v * 100_000)
}

fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The IEEE 802.11 channel number of a centre frequency in MHz (2.4, 5, 6 and 60 GHz
/// bands).
pub fn channel(mhz: u32) -> Option<u32> {
    match mhz {
        2484 => Some(14),
        2412..=2472 => Some((mhz - 2407) / 5),
        5955..=7115 => Some((mhz - 5950) / 5),
        5000..=5900 => Some((mhz - 5000) / 5),
        58320..=70200 => Some((mhz - 56160) / 2160),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wl_nl80211::packet_core::{NetlinkMessage, NetlinkPayload};
    use wl_nl80211::packet_generic::GenlMessage;

    /// The netlink messages of a recording: hex bytes, `#` comments, one message per
    /// paragraph.
    fn recorded(text: &str) -> Vec<Nl80211Message> {
        text.split("\n\n")
            .map(|block| {
                block
                    .lines()
                    .filter(|l| !l.starts_with('#'))
                    .flat_map(|l| l.split(|c: char| c == ':' || c.is_whitespace()))
                    .filter(|h| !h.is_empty())
                    .map(|h| u8::from_str_radix(h, 16).expect("hex"))
                    .collect::<Vec<u8>>()
            })
            .filter(|b| !b.is_empty())
            .map(|bytes| {
                let m = NetlinkMessage::<GenlMessage<Nl80211Message>>::deserialize(&bytes)
                    .expect("a real nl80211 reply parses");
                match m.payload {
                    NetlinkPayload::InnerMessage(genl) => genl.payload,
                    other => panic!("not an nl80211 message: {other:?}"),
                }
            })
            .collect()
    }

    const STATION: &str = include_str!("../../testdata/nl80211/station-dump.hex");
    const INTERFACE: &str = include_str!("../../testdata/nl80211/interface.hex");
    const SCAN: &str = include_str!("../../testdata/nl80211/scan-dump.hex");

    #[test]
    fn a_recorded_station_dump_gives_the_peer_its_signal_and_bitrates() {
        let stations = recorded(STATION);
        assert_eq!(stations.len(), 1);
        let wifi = from_replies(&stations, &[], &[]).expect("one station");
        // Read by hand from the bytes: MAC attribute (6) ee:1d:4f:83:1a:5b; STA_INFO
        // SIGNAL (7) 0xe2 = -30 dBm; TX_BITRATE (8) BITRATE32 0x514 = 1300 × 100
        // kbit/s; RX_BITRATE (14) BITRATE32 0x3c = 60 × 100 kbit/s.
        assert_eq!(wifi.bssid.as_deref(), Some("ee:1d:4f:83:1a:5b"));
        assert_eq!(wifi.signal_dbm, Some(-30.0));
        assert_eq!(wifi.tx_bitrate_bps, Some(130_000_000));
        assert_eq!(wifi.rx_bitrate_bps, Some(6_000_000));
        // This recording has no interface reply and no scan entry for this peer: no
        // SSID, no frequency, none borrowed from another network.
        let scan = recorded(SCAN);
        let wifi = from_replies(&stations, &recorded(INTERFACE), &scan).expect("station");
        assert_eq!(
            (wifi.ssid, wifi.frequency_mhz, wifi.channel),
            (None, None, None)
        );
    }

    #[test]
    fn a_recorded_scan_dump_names_the_access_points_network_and_channel() {
        let scan = recorded(SCAN);
        assert_eq!(scan.len(), 4);
        let horns = [0x14, 0x22, 0xdb, 0x00, 0xda, 0x05];
        assert_eq!(
            bss(&scan, &horns),
            Some((Some("Hook 'em Horns".to_string()), Some(5180)))
        );
        // A hidden network's empty SSID is no SSID.
        let hidden = [0x14, 0x22, 0xdb, 0x00, 0x06, 0xa7];
        assert_eq!(bss(&scan, &hidden), Some((None, Some(5180))));
        assert_eq!(bss(&scan, &[2, 0, 0, 0, 0, 1]), None);
        assert_eq!(channel(5180), Some(36));
    }

    #[test]
    fn a_recorded_interface_reply_parses_and_lends_nothing_it_lacks() {
        let interfaces = recorded(INTERFACE);
        assert_eq!(interfaces.len(), 1);
        assert!(interfaces[0]
            .attributes
            .iter()
            .any(|a| matches!(a, Nl80211Attr::IfName(n) if n == "wlo1")));
        // Not associated (no station): no context, whatever else is known.
        assert_eq!(from_replies(&[], &interfaces, &recorded(SCAN)), None);
    }

    #[test]
    fn channels_follow_the_bands() {
        for (mhz, ch) in [(2412, 1), (2437, 6), (2472, 13), (2484, 14), (5180, 36)] {
            assert_eq!(channel(mhz), Some(ch), "{mhz} MHz");
        }
        assert_eq!(channel(5825), Some(165));
        assert_eq!(channel(5955), Some(1), "6 GHz channel 1");
        assert_eq!(channel(6115), Some(33));
        assert_eq!(channel(60480), Some(2));
        assert_eq!(channel(900), None);
    }

    #[tokio::test]
    async fn an_interface_without_wifi_leaves_the_context_out_with_a_reason_within_2_s() {
        // Real nl80211 (or its absence, here): loopback is never wireless.
        let started = std::time::Instant::now();
        let radio = context("lo").await;
        assert!(radio.wifi.is_none());
        let why = radio.unavailable.expect("a reason");
        println!("lo: {why}");
        assert!(why.starts_with("nl80211"), "{why}");
        assert!(started.elapsed() <= NL80211_TIMEOUT + Duration::from_millis(500));
        let gone = context("nosuchwlan9").await;
        assert!(
            gone.unavailable
                .as_deref()
                .is_some_and(|w| w.contains("no interface named nosuchwlan9")),
            "{gone:?}"
        );
    }
}
