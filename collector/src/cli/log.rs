//! `log verify`: a monitor of a collector's transparency log.

use sonde_collector::log::{self, Checked, Seen};
use sonde_store::log::Hash;
use std::path::Path;
use std::time::Duration;

/// Exit status when the collector cannot be reached or answers nonsense.
const EXIT_UNAVAILABLE: i32 = 69;

/// Why a check did not pass.
enum Failure {
    /// The log is not what it claimed: exit 1.
    Invalid(String),
    /// The collector could not be asked: exit 69.
    Unavailable(String),
}

/// Checks `count` checkpoints (0: forever), `every` apart.
pub fn verify(url: &str, key: &Path, state: Option<&Path>, count: u64, every: Duration) -> i32 {
    use sonde_collector::report::sign;
    let public = match std::fs::read_to_string(key)
        .map_err(|e| format!("{}: {e}", key.display()))
        .and_then(|t| sign::parse_public(&t).map_err(|e| format!("{}: {e}", key.display())))
    {
        Ok(p) => p,
        Err(e) => sonde_cli::usage_error(e),
    };
    let mut seen = match state.map(read_state).transpose() {
        Ok(s) => s.flatten(),
        Err(e) => sonde_cli::usage_error(e),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let base = url.trim_end_matches('/').to_string();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default();
    let mut done = 0u64;
    loop {
        match runtime.block_on(check(&client, &base, &public, seen.as_ref())) {
            Ok(new) => {
                match &seen {
                    Some(s) if s.size < new.size => println!(
                        "ok: checkpoint of {} leaves (root {}) extends the one of {} seen before",
                        new.size, new.root, s.size
                    ),
                    Some(_) => println!("ok: checkpoint of {} leaves (root {}), unchanged", new.size, new.root),
                    None => println!(
                        "ok: checkpoint of {} leaves (root {}), signed by the given key; the first seen",
                        new.size, new.root
                    ),
                }
                let now = Seen::of(&new);
                if let Some(path) = state {
                    if let Err(e) = write_state(path, &now) {
                        eprintln!("error: {e}");
                        return 1;
                    }
                }
                seen = Some(now);
            }
            Err(Failure::Invalid(why)) => {
                println!("invalid: {why}");
                return 1;
            }
            Err(Failure::Unavailable(why)) => {
                eprintln!("error: {why}");
                return EXIT_UNAVAILABLE;
            }
        }
        done += 1;
        if count != 0 && done >= count {
            return 0;
        }
        std::thread::sleep(every);
    }
}

/// One check: the latest checkpoint, its signature, and its consistency with `seen`.
async fn check(
    client: &reqwest::Client,
    base: &str,
    public: &[u8],
    seen: Option<&Seen>,
) -> Result<Checked, Failure> {
    let note = get(client, &format!("{base}/api/v1/log/checkpoint")).await?;
    let new = log::open_checkpoint(&note, public).map_err(Failure::Invalid)?;
    let Some(seen) = seen else {
        return Ok(new);
    };
    let proof = if new.size > seen.size {
        let body = get(
            client,
            &format!(
                "{base}/api/v1/log/consistency?from={}&to={}",
                seen.size, new.size
            ),
        )
        .await?;
        Some(parse_proof(&body).map_err(Failure::Unavailable)?)
    } else {
        None
    };
    log::extends(seen, &new, proof.as_deref()).map_err(Failure::Invalid)?;
    Ok(new)
}

/// The body of a successful GET.
async fn get(client: &reqwest::Client, url: &str) -> Result<String, Failure> {
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| Failure::Unavailable(format!("{url}: {e}")))?;
    let status = resp.status();
    let body = resp
        .text()
        .await
        .map_err(|e| Failure::Unavailable(format!("{url}: {e}")))?;
    if !status.is_success() {
        return Err(Failure::Unavailable(format!(
            "{url}: {status}: {}",
            body.chars().take(200).collect::<String>()
        )));
    }
    Ok(body)
}

/// The hashes of a consistency proof document.
fn parse_proof(body: &str) -> Result<Vec<Hash>, String> {
    let doc: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| format!("the consistency proof is not JSON: {e}"))?;
    doc["proof"]
        .as_array()
        .ok_or("the consistency proof has no proof list")?
        .iter()
        .map(|h| {
            h.as_str()
                .and_then(|s| Hash::parse_hash(s).ok())
                .ok_or_else(|| format!("{h} is not a base64 hash"))
        })
        .collect()
}

/// The last checkpoint seen (none when the file does not exist yet).
fn read_state(path: &Path) -> Result<Option<Seen>, String> {
    match std::fs::read_to_string(path) {
        Ok(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| format!("{}: not a log verify state: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Keeps what was seen, atomically.
fn write_state(path: &Path, seen: &Seen) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_string_pretty(seen).unwrap_or_default();
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("{}: {e}", path.display()))
}
