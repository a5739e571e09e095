//! Detects PostgreSQL's programs (Debian package `postgresql`, which `.ci/run`
//! installs), so tests that start a throwaway server are reported as ignored, with the
//! reason, where they are missing.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(sonde_postgres)");
    println!("cargo::rerun-if-changed=/usr/lib/postgresql");
    println!("cargo::rerun-if-env-changed=PATH");
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.path().join("bin/initdb").is_file());
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("initdb").is_file()))
        .unwrap_or(false);
    if debian || on_path {
        println!("cargo::rustc-cfg=sonde_postgres");
    }
}
