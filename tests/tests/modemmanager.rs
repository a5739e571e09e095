//! The agent's 4G context against a ModemManager look-alike on a private D-Bus bus
//! (Debian's dbus-daemon): it serves ModemManager's objects and properties with values
//! recorded from real modems, and also carries subscriber identities (IMEI, phone
//! number) that must never reach a result. Slow and absent services leave the context
//! out with a reason within 2 s.
//!
//! Recorded values:
//! - Quectel RM500Q on a test network (libqmi merge request "nas, qmicli: Added 5G
//!   signal info TLV's", 2020-06-16, qmicli --nas-get-signal-info and AT+QENG):
//!   LTE RSSI -47 dBm, RSRQ -5 dB, RSRP -70 dBm, SNR 30.0 dB; MCC 001, MNC 01, cell
//!   1A2D001, EARFCN 1575 (band 3).
//! - Dell DW5811e (Snapdragon X7), AT!GSTATUS? in 4IceG/luci-app-3ginfo-lite issue #37:
//!   LTE band B3, RSSI -74 dBm, RSRP -112 dBm, RSRQ -20.0 dB, SINR -6.4 dB, cell
//!   023E3E34.

use sonde_agent::context::radio;
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use zbus::zvariant::{OwnedValue, Value};

fn v<'a>(x: impl Into<Value<'a>>) -> OwnedValue {
    OwnedValue::try_from(x.into()).expect("owned value")
}

/// A recorded modem.
#[derive(Clone)]
struct Recorded {
    port: &'static str,
    technologies: u32,
    bands: Vec<u32>,
    operator: &'static str,
    rssi: f64,
    rsrq: f64,
    rsrp: f64,
    snr: f64,
    cell: &'static str,
    polling: u32,
    delay: Duration,
}

struct Modem(Recorded);

#[zbus::interface(name = "org.freedesktop.ModemManager1.Modem")]
impl Modem {
    #[zbus(property)]
    async fn ports(&self) -> Vec<(String, u32)> {
        tokio::time::sleep(self.0.delay).await;
        vec![("cdc-wdm0".to_string(), 6), (self.0.port.to_string(), 2)]
    }
    #[zbus(property)]
    fn access_technologies(&self) -> u32 {
        self.0.technologies
    }
    #[zbus(property)]
    fn current_bands(&self) -> Vec<u32> {
        self.0.bands.clone()
    }
    #[zbus(property)]
    fn own_numbers(&self) -> Vec<String> {
        vec!["+33612345678".to_string()]
    }
    #[zbus(property)]
    fn equipment_identifier(&self) -> String {
        "356938035643809".to_string()
    }
    fn get_cell_info(&self) -> Vec<HashMap<String, OwnedValue>> {
        vec![HashMap::from([
            ("cell-type".to_string(), v(5u32)),
            ("serving".to_string(), v(true)),
            ("ci".to_string(), v(self.0.cell)),
        ])]
    }
}

struct Modem3gpp(Recorded);

#[zbus::interface(name = "org.freedesktop.ModemManager1.Modem.Modem3gpp")]
impl Modem3gpp {
    #[zbus(property)]
    fn operator_code(&self) -> String {
        self.0.operator.to_string()
    }
    #[zbus(property)]
    fn imei(&self) -> String {
        "356938035643809".to_string()
    }
}

struct Signal {
    rec: Recorded,
    rate: u32,
}

#[zbus::interface(name = "org.freedesktop.ModemManager1.Modem.Signal")]
impl Signal {
    #[zbus(property)]
    fn rate(&self) -> u32 {
        self.rate
    }
    #[zbus(property)]
    fn lte(&self) -> HashMap<String, OwnedValue> {
        if self.rate == 0 {
            return HashMap::new();
        }
        HashMap::from([
            ("rssi".to_string(), v(self.rec.rssi)),
            ("rsrq".to_string(), v(self.rec.rsrq)),
            ("rsrp".to_string(), v(self.rec.rsrp)),
            ("snr".to_string(), v(self.rec.snr)),
        ])
    }
    fn setup(&mut self, rate: u32) {
        self.rate = rate;
    }
}

/// A private bus: `dbus-daemon --session` on a socket of its own.
struct Bus {
    child: Child,
    address: String,
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bus() -> Bus {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = sonde_e2e::pipeline::scratch(&format!("dbus-{n}"));
    let address = format!("unix:path={}", dir.join("bus").display());
    let child = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--nopidfile"])
        .arg(format!("--address={address}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dbus-daemon");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dir.join("bus").exists() {
        assert!(Instant::now() < deadline, "dbus-daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Bus { child, address }
}

async fn serve(address: &str, rec: Recorded) -> zbus::Connection {
    let path = "/org/freedesktop/ModemManager1/Modem/0";
    zbus::connection::Builder::address(address)
        .expect("address")
        .name("org.freedesktop.ModemManager1")
        .expect("name")
        .serve_at("/org/freedesktop/ModemManager1", zbus::fdo::ObjectManager)
        .expect("object manager")
        .serve_at(path, Modem(rec.clone()))
        .expect("modem")
        .serve_at(path, Modem3gpp(rec.clone()))
        .expect("3gpp")
        .serve_at(
            path,
            Signal {
                rate: rec.polling,
                rec,
            },
        )
        .expect("signal")
        .build()
        .await
        .expect("serve")
}

fn quectel() -> Recorded {
    Recorded {
        port: "wwan0",
        technologies: 1 << 14,
        bands: vec![33],
        operator: "00101",
        rssi: -47.0,
        rsrq: -5.0,
        rsrp: -70.0,
        snr: 30.0,
        cell: "1A2D001",
        polling: 5,
        delay: Duration::ZERO,
    }
}

#[cfg_attr(
    not(sonde_dbus),
    ignore = "needs dbus-daemon (apt-get install dbus-daemon; .ci/run does)"
)]
#[tokio::test]
async fn recorded_modems_give_their_lte_context_and_no_identity() {
    let bus = bus();
    let _mm = serve(&bus.address, quectel()).await;
    let r = radio::lte(Some(&bus.address), "wwan0").await;
    let lte = r.lte.clone().expect("lte context");
    assert_eq!(r.unavailable, None);
    assert_eq!(lte.technology.as_deref(), Some("lte"));
    assert_eq!(lte.operator.as_deref(), Some("001-01"));
    assert_eq!(lte.band.as_deref(), Some("B3"));
    assert_eq!(
        (lte.rsrp_dbm, lte.rsrq_db, lte.sinr_db, lte.rssi_dbm),
        (Some(-70.0), Some(-5.0), Some(30.0), Some(-47.0))
    );
    assert_eq!(lte.cell_id.as_deref(), Some("1A2D001"));
    // Served, never read: no identity in what a result would carry.
    let json = serde_json::to_string(&r).expect("json");
    for identity in ["356938035643809", "+33612345678"] {
        assert!(!json.contains(identity), "{json}");
    }
    // Another port is another modem: none here.
    let other = radio::lte(Some(&bus.address), "wwan1").await;
    assert!(other.lte.is_none());
    assert!(
        other
            .unavailable
            .as_deref()
            .is_some_and(|u| u.contains("wwan1")),
        "{other:?}"
    );
}

#[cfg_attr(
    not(sonde_dbus),
    ignore = "needs dbus-daemon (apt-get install dbus-daemon; .ci/run does)"
)]
#[tokio::test]
async fn polling_off_is_turned_on_and_said() {
    let bus = bus();
    let dell = Recorded {
        bands: vec![33],
        operator: "26003",
        rssi: -74.0,
        rsrq: -20.0,
        rsrp: -112.0,
        snr: -6.4,
        cell: "023E3E34",
        polling: 0,
        ..quectel()
    };
    let _mm = serve(&bus.address, dell).await;
    let first = radio::lte(Some(&bus.address), "wwan0").await;
    assert!(
        first
            .unavailable
            .as_deref()
            .is_some_and(|u| u.contains("enabled every 5 s")),
        "{first:?}"
    );
    assert_eq!(first.lte.as_ref().and_then(|l| l.rsrp_dbm), None);
    let next = radio::lte(Some(&bus.address), "wwan0").await;
    let lte = next.lte.expect("lte");
    assert_eq!((lte.rsrp_dbm, lte.sinr_db), (Some(-112.0), Some(-6.4)));
    assert_eq!(next.unavailable, None);
}

#[cfg_attr(
    not(sonde_dbus),
    ignore = "needs dbus-daemon (apt-get install dbus-daemon; .ci/run does)"
)]
#[tokio::test]
async fn a_slow_or_absent_modemmanager_costs_at_most_two_seconds_with_a_reason() {
    let bus = bus();
    // Nothing serves ModemManager on this bus.
    let started = Instant::now();
    let absent = radio::lte(Some(&bus.address), "wwan0").await;
    assert!(absent.lte.is_none());
    assert!(
        absent
            .unavailable
            .as_deref()
            .is_some_and(|u| u.starts_with("ModemManager: ")),
        "{absent:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    // A ModemManager that takes 10 s to answer.
    let _mm = serve(
        &bus.address,
        Recorded {
            delay: Duration::from_secs(10),
            ..quectel()
        },
    )
    .await;
    let started = Instant::now();
    let slow = radio::lte(Some(&bus.address), "wwan0").await;
    let waited = started.elapsed();
    assert!(slow.lte.is_none());
    assert_eq!(
        slow.unavailable.as_deref(),
        Some("ModemManager did not answer within 2 s")
    );
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    // No bus at all.
    let none = radio::lte(Some("unix:path=/nonexistent/bus"), "wwan0").await;
    assert!(
        none.unavailable
            .as_deref()
            .is_some_and(|u| u.contains("D-Bus")),
        "{none:?}"
    );
}

#[cfg_attr(
    not(sonde_dbus),
    ignore = "needs dbus-daemon (apt-get install dbus-daemon; .ci/run does)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_puts_the_modems_context_on_each_4g_result() {
    use sonde_e2e::pipeline::{scratch, Agent, AgentSetup, Collector};
    let bus = bus();
    // The look-alike's modem has the access's interface as its network port.
    let _mm = serve(
        &bus.address,
        Recorded {
            port: "lo",
            ..quectel()
        },
    )
    .await;
    let address = bus.address.clone();
    tokio::task::spawn_blocking(move || {
        let dir = scratch("agent-radio");
        let responder = sonde_e2e::Responder::start(&[]);
        let collector = Collector::start_in(&dir);
        let adir = dir.join("agent");
        collector.enroll("b-4g", &adir.join("state"));
        let agent = Agent::start(
            &adir,
            &collector,
            &AgentSetup {
                kind: "4g",
                extra: format!("[radio]\ndbus_address = \"{address}\"\n"),
                ..AgentSetup::probing(responder.url())
            },
        );
        agent.wait_status("a result uploaded", Duration::from_secs(90), |s| {
            s["uploaded_total"].as_u64().unwrap_or(0) >= 1
        });
        drop(agent);
        let results = collector.all_results();
        let lte = &results[0]["radio"]["lte"];
        assert_eq!(lte["rsrp_dbm"], -70.0, "{}", results[0]);
        assert_eq!(lte["band"], "B3");
        assert_eq!(lte["operator"], "001-01");
        // And the collector exports it for the dashboards.
        let (_, page) = sonde_e2e::http_get(&collector.http, "/metrics").expect("metrics");
        assert!(
            page.lines()
                .any(|l| l.starts_with("sonde_lte_rsrp_dbm{") && l.ends_with(" -70")),
            "{page}"
        );
    })
    .await
    .expect("agent side");
}
