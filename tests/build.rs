//! Detects whether the tests are built as root, so tests that need root (network
//! namespaces, SO_BINDTODEVICE) are reported as ignored, with the reason, elsewhere.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(sonde_root)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=USER");
    println!("cargo::rerun-if-env-changed=SUDO_USER");
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false);
    if root {
        println!("cargo::rustc-cfg=sonde_root");
    }
}
