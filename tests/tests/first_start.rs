//! A collector killed (SIGKILL) at a random point of its first start, 60 times, each
//! on a new data directory: every file it leaves is absent or whole, and the next start
//! always comes up. Bounded: about 0.3 s a try.

use rand::Rng;
use sonde_e2e::pipeline::{free_port, scratch};
use sonde_e2e::{bin, start_logged};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// What a key file may be after a kill: absent, or whole.
fn whole_or_absent(data: &Path) -> Result<(), String> {
    let check = |name: &str, ok: &dyn Fn(&[u8]) -> bool| match std::fs::read(data.join(name)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{name}: {e}")),
        Ok(b) if ok(&b) => Ok(()),
        Ok(b) => Err(format!("{name}: {} bytes, not whole", b.len())),
    };
    let pem = |b: &[u8]| {
        let t = String::from_utf8_lossy(b);
        t.starts_with("-----BEGIN ") && t.trim_end().ends_with("-----")
    };
    check("ca.key.pem", &pem)?;
    check("ca.cert.pem", &pem)?;
    check("quic-reset.key", &|b| b.len() == 32)?;
    check("report-key.pk8", &|b| b.len() == 83)?;
    // The CA is one: a key means its certificate is there too.
    if data.join("ca.key.pem").exists() && !data.join("ca.cert.pem").exists() {
        return Err("a CA key without its certificate".into());
    }
    Ok(())
}

#[test]
fn a_first_start_killed_anywhere_leaves_nothing_or_a_whole_state() {
    let root = scratch("first-start");
    let mut rng = rand::rng();
    let tries = 60;
    let mut killed_early = 0;
    for i in 0..tries {
        let dir = root.join(format!("try{i}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let config = dir.join("collector.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = \"collector\"\n[http]\nlisten = \"127.0.0.1:{}\"\n[quic]\nlisten = \"127.0.0.1:{}\"\n",
                free_port(),
                free_port()
            ),
        )
        .expect("config");
        let mut first = Command::new(bin("sonde-collector"))
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        // A first start takes some tens of milliseconds: kill anywhere in it.
        std::thread::sleep(Duration::from_micros(rng.random_range(0..80_000)));
        let _ = first.kill();
        let _ = first.wait();
        let data = dir.join("collector");
        if !data.join("report-key.pk8").exists() {
            killed_early += 1;
        }
        if let Err(e) = whole_or_absent(&data) {
            panic!("try {i}: {e}");
        }
        let config = config.display().to_string();
        let (mut second, _) = start_logged(
            "sonde-collector",
            &["serve", "--config", &config, "--log-format", "json"],
            "collector listening",
        );
        let _ = second.kill();
        let _ = second.wait();
        let _ = std::fs::remove_dir_all(&dir);
    }
    eprintln!("{tries} first starts killed, {killed_early} before the keys were all made");
    assert!(killed_early > 0, "no kill landed during the first start");
    let _ = std::fs::remove_dir_all(&root);
}
