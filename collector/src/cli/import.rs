//! `sonde-collector import`: results as `sonde-agent probe --json` prints them.

use sonde_proto::wire::RawRecord;
use sonde_proto::ResultRecord;
use sonde_store::{Batch, Delivery, Inserted, ResultWriter};
use std::io::BufRead;
use std::path::Path;

/// Results committed per transaction while importing.
const IMPORT_BATCH: usize = 1000;

/// Imports a JSON-lines file of results into the store `open` opens (it reports why
/// not).
pub fn import(file: &Path, open: impl FnOnce() -> Option<Box<dyn sonde_store::Store>>) -> i32 {
    let input = match std::fs::File::open(file) {
        Ok(f) => std::io::BufReader::new(f),
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return 66;
        }
    };
    let Some(store) = open() else {
        return 1;
    };
    let store = &*store;
    let mut pending = Pending::default();
    let mut rejected = 0usize;
    for (i, line) in input.split(b'\n').enumerate() {
        let n = i + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: reading {} at line {n}: {e}", file.display());
                return 66;
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match read(line) {
            Ok((delivery, record, raw)) => pending.rows.push((delivery, record, raw)),
            Err(e) => {
                rejected += 1;
                eprintln!("{}:{n}: rejected: {e}", file.display());
            }
        }
        if pending.rows.len() >= IMPORT_BATCH && !pending.flush(store) {
            return 1;
        }
    }
    if !pending.flush(store) {
        return 1;
    }
    println!(
        "imported {} new results, {} already stored, {} lines rejected",
        pending.total.new, pending.total.duplicates, rejected
    );
    if rejected > 0 {
        65
    } else {
        0
    }
}

/// A line's record, kept as its bytes, with the agent and site it carries: import is
/// the operator's path, not an agent's.
fn read(line: Vec<u8>) -> Result<(Delivery, ResultRecord, RawRecord), String> {
    if line.len() > sonde_proto::MAX_RECORD_BYTES {
        return Err(sonde_proto::DecodeError::TooLarge {
            len: line.len(),
            max: sonde_proto::MAX_RECORD_BYTES,
        }
        .to_string());
    }
    let text = String::from_utf8(line).map_err(|e| format!("not UTF-8: {e}"))?;
    let raw = RawRecord::from_json(text).map_err(|e| format!("not a result record: {e}"))?;
    let record = raw.parse().map_err(|e| e.to_string())?;
    let delivery = Delivery {
        agent_id: record
            .agent
            .id
            .clone()
            .unwrap_or_else(|| unenrolled_id(&record)),
        quartier: record.site.quartier.clone(),
        building: record.site.building.clone(),
    };
    Ok((delivery, record, raw))
}

/// The stand-in agent id of a record no enrolled agent made (a one-shot probe): one
/// per site and access kind, `unenrolled:QUARTIER:BUILDING:KIND` (`-` for what the
/// record leaves out), so results from different buildings, quartiers or kinds never
/// share an access, nor take each other's site or kind.
fn unenrolled_id(r: &ResultRecord) -> String {
    let part = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    format!(
        "unenrolled:{}:{}:{}",
        part(&r.site.quartier),
        part(&r.site.building),
        r.access.kind.as_str()
    )
}

/// Lines read and not stored yet, and what was stored so far.
#[derive(Default)]
struct Pending {
    rows: Vec<(Delivery, ResultRecord, RawRecord)>,
    total: Inserted,
}

impl Pending {
    /// Stores the rows, consecutive ones of one agent in one commit; `false` (after
    /// saying why) when the store failed.
    fn flush(&mut self, store: &dyn ResultWriter) -> bool {
        let now = chrono::Utc::now();
        while !self.rows.is_empty() {
            let first = self.rows[0].0.clone();
            let n = self.rows.iter().take_while(|(d, _, _)| *d == first).count();
            let (records, raw) = self.rows.drain(..n).map(|(_, r, raw)| (r, raw)).unzip();
            let batch = Batch {
                delivery: first,
                records,
                raw,
                health: None,
                signed: None,
            };
            match store.insert_batches(std::slice::from_ref(&batch), now) {
                Ok(done) => {
                    for d in done {
                        self.total.new += d.new;
                        self.total.duplicates += d.duplicates;
                    }
                }
                Err(e) => {
                    eprintln!("error: storing results: {e}");
                    return false;
                }
            }
        }
        true
    }
}
