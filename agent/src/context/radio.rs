//! Radio context of a 4G access, read from ModemManager over D-Bus just before a test:
//! access technology, operator (MCC-MNC), band, RSRP, RSRQ, SINR, RSSI and the serving
//! cell. The modem is the one whose network port is the access's interface.
//!
//! Never more than [`DBUS_TIMEOUT`] on D-Bus: an absent or slow ModemManager leaves
//! the context out with its reason (`radio.unavailable`), and the test runs anyway.
//! No subscriber identity (IMEI, IMSI, phone number) is ever read: only the properties
//! named here are looked at.

use sonde_proto::{LteRadio, Radio};
use std::collections::HashMap;
use std::time::Duration;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

/// Longest wait on D-Bus before a test.
pub const DBUS_TIMEOUT: Duration = Duration::from_secs(2);
/// Signal polling interval asked for when ModemManager's is off, seconds.
pub const SIGNAL_RATE_S: u32 = 5;

const SERVICE: &str = "org.freedesktop.ModemManager1";
const ROOT: &str = "/org/freedesktop/ModemManager1";
const MODEM: &str = "org.freedesktop.ModemManager1.Modem";
const MODEM_3GPP: &str = "org.freedesktop.ModemManager1.Modem.Modem3gpp";
const SIGNAL: &str = "org.freedesktop.ModemManager1.Modem.Signal";
/// `MM_MODEM_PORT_TYPE_NET`.
const PORT_NET: u32 = 2;

type Properties = HashMap<String, OwnedValue>;

/// The 4G context of the modem behind `interface`, from the ModemManager on the bus at
/// `address` (the system bus when `None`). Never fails: what cannot be read is said in
/// `unavailable`.
pub async fn lte(address: Option<&str>, interface: &str) -> Radio {
    let read = async {
        read(address, interface)
            .await
            .map(|(lte, note)| Radio {
                lte: Some(lte),
                unavailable: note,
                ..Default::default()
            })
            .map_err(|e| e.to_string())
    };
    within("ModemManager", DBUS_TIMEOUT, read).await
}

/// A radio context read from `source` in `limit` at most; a failure or no answer in
/// time becomes the reason in `unavailable`.
pub(crate) async fn within(
    source: &str,
    limit: Duration,
    read: impl std::future::Future<Output = Result<Radio, String>>,
) -> Radio {
    let unavailable = match tokio::time::timeout(limit, read).await {
        Ok(Ok(radio)) => return radio,
        Ok(Err(e)) => format!("{source}: {e}"),
        Err(_) => format!("{source} did not answer within {} s", limit.as_secs()),
    };
    Radio {
        unavailable: Some(unavailable),
        ..Default::default()
    }
}

fn get<T>(props: &Properties, name: &str) -> Option<T>
where
    T: TryFrom<OwnedValue>,
{
    props
        .get(name)?
        .try_clone()
        .ok()
        .and_then(|v| T::try_from(v).ok())
}

/// Name of the most capable technology in a `MMModemAccessTechnology` bitmask.
pub fn technology(mask: u32) -> Option<&'static str> {
    const NAMES: [(u32, &str); 8] = [
        (1 << 15, "5gnr"),
        (1 << 14, "lte"),
        (1 << 16, "lte-cat-m"),
        (1 << 17, "lte-nb-iot"),
        (1 << 9 | 1 << 8 | 1 << 7 | 1 << 6, "hspa"),
        (1 << 5, "umts"),
        (1 << 4, "edge"),
        (1 << 3 | 1 << 2 | 1 << 1, "gsm"),
    ];
    NAMES
        .iter()
        .find(|(bits, _)| mask & bits != 0)
        .map(|(_, n)| *n)
}

/// `B<n>` for an E-UTRAN `MMModemBand` value (31 is band 1), else `None`.
pub fn band(value: u32) -> Option<String> {
    (31..=115)
        .contains(&value)
        .then(|| format!("B{}", value - 30))
}

/// `MCC-MNC` from ModemManager's operator code (`20801` → `208-01`).
pub fn operator(code: &str) -> Option<String> {
    let ok = (5..=6).contains(&code.len()) && code.chars().all(|c| c.is_ascii_digit());
    ok.then(|| format!("{}-{}", &code[..3], &code[3..]))
}

async fn read(
    address: Option<&str>,
    interface: &str,
) -> Result<(LteRadio, Option<String>), String> {
    let conn = match address {
        Some(a) => {
            zbus::connection::Builder::address(a)
                .map_err(|e| e.to_string())?
                .build()
                .await
        }
        None => zbus::Connection::system().await,
    }
    .map_err(|e| format!("D-Bus: {e}"))?;
    let om = zbus::fdo::ObjectManagerProxy::builder(&conn)
        .destination(SERVICE)
        .and_then(|b| b.path(ROOT))
        .map_err(|e| e.to_string())?
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let objects = om.get_managed_objects().await.map_err(|e| e.to_string())?;
    for (path, ifaces) in objects {
        let props = |name: &str| -> Properties {
            ifaces
                .get(name)
                .map(|p| {
                    p.iter()
                        .filter_map(|(k, v)| v.try_clone().ok().map(|v| (k.to_string(), v)))
                        .collect()
                })
                .unwrap_or_default()
        };
        let modem = props(MODEM);
        let ports: Vec<(String, u32)> = get(&modem, "Ports").unwrap_or_default();
        if !ports.iter().any(|(p, t)| p == interface && *t == PORT_NET) {
            continue;
        }
        let signal = props(SIGNAL);
        let lte_signal: Properties = get(&signal, "Lte").unwrap_or_default();
        let mut note = None;
        if get::<u32>(&signal, "Rate") == Some(0) {
            // Extended signal figures need polling: turn it on for the next tests.
            note = Some(match enable_polling(&conn, &path).await {
                Ok(()) => format!("signal polling was off; enabled every {SIGNAL_RATE_S} s"),
                Err(e) => format!("signal polling is off and could not be enabled: {e}"),
            });
        }
        let bands: Vec<u32> = get(&modem, "CurrentBands").unwrap_or_default();
        let code: Option<String> = get(&props(MODEM_3GPP), "OperatorCode");
        let lte = LteRadio {
            technology: get::<u32>(&modem, "AccessTechnologies")
                .and_then(technology)
                .map(str::to_string),
            operator: code.as_deref().and_then(operator),
            band: bands.iter().find_map(|b| band(*b)),
            rsrp_dbm: get(&lte_signal, "rsrp"),
            rsrq_db: get(&lte_signal, "rsrq"),
            sinr_db: get(&lte_signal, "snr"),
            rssi_dbm: get(&lte_signal, "rssi"),
            cell_id: serving_cell(&conn, &path).await,
        };
        return Ok((lte, note));
    }
    Err(format!("no modem has the network port {interface}"))
}

async fn enable_polling(conn: &zbus::Connection, path: &OwnedObjectPath) -> Result<(), String> {
    conn.call_method(
        Some(SERVICE),
        path.as_str(),
        Some(SIGNAL),
        "Setup",
        &(SIGNAL_RATE_S,),
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// The serving cell's id from `Modem.GetCellInfo` (ModemManager 1.20), when offered.
async fn serving_cell(conn: &zbus::Connection, path: &OwnedObjectPath) -> Option<String> {
    let reply = conn
        .call_method(
            Some(SERVICE),
            path.as_str(),
            Some(MODEM),
            "GetCellInfo",
            &(),
        )
        .await
        .ok()?;
    let cells: Vec<Properties> = reply.body().deserialize().ok()?;
    cells
        .iter()
        .find(|c| get::<bool>(c, "serving") == Some(true))
        .and_then(|c| get::<String>(c, "ci"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modemmanager_enums_read_as_names() {
        assert_eq!(technology(1 << 14), Some("lte"));
        assert_eq!(technology(1 << 14 | 1 << 15), Some("5gnr"));
        assert_eq!(technology(1 << 5), Some("umts"));
        assert_eq!(technology(0), None);
        assert_eq!(band(33).as_deref(), Some("B3"));
        assert_eq!(band(50).as_deref(), Some("B20"));
        assert_eq!(band(5), None, "a GSM band is not an E-UTRAN band");
        assert_eq!(operator("20801").as_deref(), Some("208-01"));
        assert_eq!(operator("310410").as_deref(), Some("310-410"));
        assert_eq!(operator("Orange"), None);
    }
}
