//! `sonde-agent key show` and `key rotate`.

use super::KeyAction;
use sonde_agent::daemon::{self, SPOOL_FILE};
use sonde_agent::identity::{rotate, signing};
use sonde_agent::state::spool::Spool;
use std::path::Path;

pub fn command(action: KeyAction) {
    std::process::exit(match action {
        KeyAction::Show { state_dir } => show(&state_dir),
        KeyAction::Rotate { state_dir } => rotate(&state_dir),
    })
}

fn show(state_dir: &Path) -> i32 {
    let path = state_dir.join(signing::SIGNING_KEY_FILE);
    if !path.exists() {
        eprintln!(
            "error: no signing key in {} (it is made at enrolment or at the agent's first start)",
            state_dir.display()
        );
        return 1;
    }
    match signing::SigningKey::load(&path) {
        Ok(k) => {
            println!("{}", k.public_text());
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn rotate(state_dir: &Path) -> i32 {
    if daemon::read_status(state_dir).is_ok_and(|s| s.running) {
        eprintln!("error: the agent is running on {}: stop it first (e.g. systemctl stop sonde-agent), rotate, then start it", state_dir.display());
        return 69;
    }
    if !state_dir.join(signing::SIGNING_KEY_FILE).exists() {
        eprintln!(
            "error: no signing key in {} to rotate (it is made at enrolment or at the agent's first start)",
            state_dir.display()
        );
        return 1;
    }
    let mut spool = match Spool::open(&state_dir.join(SPOOL_FILE), u64::MAX) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    match rotate::rotate(state_dir, &mut spool) {
        Ok(r) => {
            println!("{}", r.to);
            eprintln!(
                "rotated at place {} of the chain: {} retired (kept as signing-key.retired-{}.pk8), {} signs from now on; the rotation goes up with the next results",
                r.seq, r.from, r.seq, r.to
            );
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}
