//! `sonde-agent discover`: the box's interfaces, the access kind each likely is, its
//! link speed and addresses, and a configuration skeleton that `check-config` accepts.
//!
//! Kinds come from sysfs (`/sys/class/net/IF`): a `wireless` or `phy80211` entry means
//! Wi-Fi; a `wwan*` name or a `qmi_wwan`, `cdc_mbim`, `cdc_ncm` or `option` driver
//! means 4G; Ethernet (type 1) means FTTH or another wired access; loopback and virtual
//! interfaces (bridges, veth, tun) are listed but not proposed.

use sonde_proto::AccessKind;
use std::fmt::Write as _;
use std::path::Path;

/// Drivers of cellular modems' network interfaces.
const CELLULAR_DRIVERS: [&str; 5] = [
    "qmi_wwan",
    "cdc_mbim",
    "cdc_ncm",
    "option",
    "huawei_cdc_ncm",
];

/// One interface as found.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// Name.
    pub name: String,
    /// Likely access kind; `None` for what is not an access (loopback, virtual).
    pub kind: Option<AccessKind>,
    /// Why that kind.
    pub why: String,
    /// Negotiated link speed, bit/s.
    pub speed_bps: Option<u64>,
    /// Addresses, with prefix length.
    pub addresses: Vec<String>,
}

/// Classifies interface `name` from the sysfs tree at `root` (`/sys/class/net`).
pub fn classify(root: &Path, name: &str) -> (Option<AccessKind>, String) {
    let dir = root.join(name);
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .ok()
            .map(|s| s.trim().to_string())
    };
    let driver = std::fs::read_link(dir.join("device/driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let ty = read("type").unwrap_or_default();
    if ty == "772" {
        return (None, "loopback".into());
    }
    if dir.join("wireless").exists() || dir.join("phy80211").exists() {
        return (Some(AccessKind::Wifi), "wireless (nl80211)".into());
    }
    if let Some(d) = driver.as_deref().filter(|d| CELLULAR_DRIVERS.contains(d)) {
        return (
            Some(AccessKind::FourG),
            format!("cellular modem (driver {d})"),
        );
    }
    if name.starts_with("wwan") || ty == "519" {
        return (Some(AccessKind::FourG), "cellular (wwan)".into());
    }
    let resolved = std::fs::canonicalize(&dir).unwrap_or_default();
    let virtual_ = resolved.to_string_lossy().contains("/devices/virtual/") || driver.is_none();
    if virtual_ && !dir.join("device").exists() {
        let what = if dir.join("bridge").exists() {
            "bridge"
        } else if dir.join("tun_flags").exists() {
            "tun/tap"
        } else {
            "virtual"
        };
        return (None, format!("{what} interface"));
    }
    if ty == "1" {
        let d = driver.map(|d| format!(", driver {d}")).unwrap_or_default();
        return (
            Some(AccessKind::Ftth),
            format!("Ethernet{d}: FTTH or another wired access"),
        );
    }
    (Some(AccessKind::Other), format!("link type {ty}"))
}

/// Every interface of this box.
pub fn discover() -> Vec<Found> {
    let root = Path::new("/sys/class/net");
    let mut names: Vec<String> = std::fs::read_dir(root)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let addrs = if_addrs::get_if_addrs().unwrap_or_default();
    names
        .into_iter()
        .map(|name| {
            let (kind, why) = classify(root, &name);
            let speed_bps = std::fs::read_to_string(root.join(&name).join("speed"))
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .filter(|s| *s > 0)
                .map(|mbps| mbps as u64 * 1_000_000);
            let addresses = addrs
                .iter()
                .filter(|a| a.name == name)
                .map(|a| match &a.addr {
                    if_addrs::IfAddr::V4(v) => format!("{}/{}", v.ip, v.prefixlen),
                    if_addrs::IfAddr::V6(v) => format!("{}/{}", v.ip, v.prefixlen),
                })
                .collect();
            Found {
                name,
                kind,
                why,
                speed_bps,
                addresses,
            }
        })
        .collect()
}

/// The table (as TOML comments) and a configuration skeleton with one access per
/// likely access (the loopback when there is none, so the file still checks).
pub fn skeleton(found: &[Found]) -> String {
    let mut s = String::from(
        "# sonde-agent configuration skeleton, written by `sonde-agent discover`.\n\
         # Interfaces of this box:\n",
    );
    for f in found {
        let _ = writeln!(
            s,
            "#   {:<12} {:<6} {:>10}  {:<40} {}",
            f.name,
            f.kind.map(|k| k.as_str()).unwrap_or("-"),
            f.speed_bps
                .map(|b| format!("{} Mb/s", b / 1_000_000))
                .unwrap_or_else(|| "-".into()),
            f.addresses.join(" "),
            f.why
        );
    }
    s.push_str(
        "# Set the site, the collector and each access's responders, then check it:\n\
         #   sonde-agent check-config --config FILE\n\n\
         [site]\nquartier = \"CHANGE-ME\"\nbuilding = \"CHANGE-ME\"\n\
         latitude = 48.8566               # WGS84, for the map: set the building's\n\
         longitude = 2.3522\n\n\
         [collector]\naddress = \"collector.example:4433\"\nstate_dir = \"/var/lib/sonde\"\n",
    );
    let mut accesses: Vec<&Found> = found.iter().filter(|f| f.kind.is_some()).collect();
    let lo;
    if accesses.is_empty() {
        lo = Found {
            name: "lo".into(),
            kind: Some(AccessKind::Other),
            why: "no access found: loopback, for a trial".into(),
            speed_bps: None,
            addresses: Vec::new(),
        };
        accesses.push(&lo);
    }
    let mut used = std::collections::BTreeSet::new();
    for f in accesses {
        let kind = f.kind.unwrap_or(AccessKind::Other);
        let base = match kind {
            AccessKind::Ftth => "fibre",
            AccessKind::FourG => "mobile",
            AccessKind::Wifi => "wifi",
            _ => "access",
        };
        let mut name = base.to_string();
        let mut n = 2;
        while !used.insert(name.clone()) {
            name = format!("{base}{n}");
            n += 1;
        }
        let _ = write!(
            s,
            "\n[[access]]\nname = \"{name}\"\nkind = \"{}\"                 # {}\ninterface = \"{}\"\n\
             responders = [\"http://responder.example:8080\"]\nevery = \"{}\"\njitter = \"{}\"\n",
            kind.as_str(),
            f.why,
            f.name,
            if kind == AccessKind::FourG { "1h" } else { "15m" },
            if kind == AccessKind::FourG { "10m" } else { "2m" },
        );
        if kind == AccessKind::FourG {
            s.push_str("budget_month = \"20GB\"          # the SIM's data for tests per month\n");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sysfs-like tree: one directory per interface with the files that matter.
    fn tree() -> std::path::PathBuf {
        let root = std::env::temp_dir().join(format!("sonde-sysfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let iface = |name: &str, ty: &str, driver: Option<&str>, extra: &[&str]| {
            let d = root.join("class/net").join(name);
            std::fs::create_dir_all(&d).expect("dir");
            std::fs::write(d.join("type"), format!("{ty}\n")).expect("type");
            if let Some(drv) = driver {
                let target = root.join("bus/drivers").join(drv);
                std::fs::create_dir_all(&target).expect("driver");
                std::fs::create_dir_all(d.join("device")).expect("device");
                std::os::unix::fs::symlink(&target, d.join("device/driver")).expect("link");
            }
            for e in extra {
                std::fs::create_dir_all(d.join(e)).expect("entry");
            }
        };
        iface("lo", "772", None, &[]);
        iface("eth0", "1", Some("igc"), &[]);
        iface("wlan0", "1", Some("iwlwifi"), &["phy80211"]);
        iface("wwan0", "1", Some("qmi_wwan"), &[]);
        iface("br0", "1", None, &["bridge"]);
        root
    }

    #[test]
    fn kinds_come_from_the_interface_and_its_driver() {
        let root = tree();
        let net = root.join("class/net");
        let kind = |n: &str| classify(&net, n).0;
        assert_eq!(kind("lo"), None);
        assert_eq!(kind("eth0"), Some(AccessKind::Ftth));
        assert_eq!(kind("wlan0"), Some(AccessKind::Wifi));
        assert_eq!(kind("wwan0"), Some(AccessKind::FourG));
        assert_eq!(kind("br0"), None);
        assert!(classify(&net, "wwan0").1.contains("qmi_wwan"));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn the_skeleton_proposes_one_access_per_likely_access_and_checks() {
        let found = vec![
            Found {
                name: "eth1".into(),
                kind: Some(AccessKind::Ftth),
                why: "Ethernet".into(),
                speed_bps: Some(2_500_000_000),
                addresses: vec!["192.0.2.7/24".into()],
            },
            Found {
                name: "wwan0".into(),
                kind: Some(AccessKind::FourG),
                why: "cellular".into(),
                speed_bps: None,
                addresses: vec![],
            },
            Found {
                name: "lo".into(),
                kind: None,
                why: "loopback".into(),
                speed_bps: None,
                addresses: vec!["127.0.0.1/8".into()],
            },
        ];
        let text = skeleton(&found);
        assert!(text.contains("2500 Mb/s"), "{text}");
        let file: crate::config::File = toml::from_str(&text).expect("valid TOML");
        let c = crate::config::check(file, crate::config::Interfaces::Ignore).expect("checks");
        let names: Vec<&str> = c.accesses.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["fibre", "mobile"]);
        assert_eq!(c.accesses[1].budget, Some(20_000_000_000));
    }
}
