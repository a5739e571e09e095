//! `sonde-collector import`: results as `sonde-agent probe --json` prints them.

use super::common::open_store;
use sonde_proto::ResultRecord;
use sonde_store::{Delivery, Inserted, ResultWriter};
use std::io::BufRead;
use std::path::Path;

/// Results committed per transaction while importing.
const IMPORT_BATCH: usize = 1000;

/// Imports a JSON-lines file of results.
pub fn import(file: &Path, db: &Path) -> i32 {
    let input = match std::fs::File::open(file) {
        Ok(f) => std::io::BufReader::new(f),
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return 66;
        }
    };
    let Some(store) = open_store(db) else {
        return 1;
    };
    let now = chrono::Utc::now();
    let mut total = Inserted::default();
    let mut rejected = 0usize;
    let mut batch: Vec<(Delivery, ResultRecord)> = Vec::new();
    let flush = |batch: &mut Vec<(Delivery, ResultRecord)>, total: &mut Inserted| -> bool {
        // Group consecutive records of one agent into one commit.
        while !batch.is_empty() {
            let first = batch[0].0.clone();
            let n = batch.iter().take_while(|(d, _)| *d == first).count();
            let records: Vec<ResultRecord> = batch.drain(..n).map(|(_, r)| r).collect();
            match store.insert(&first, &records, now) {
                Ok(done) => {
                    total.new += done.new;
                    total.duplicates += done.duplicates;
                }
                Err(e) => {
                    eprintln!("error: storing results: {e}");
                    return false;
                }
            }
        }
        true
    };
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
        match ResultRecord::from_json(&line) {
            Ok(record) => {
                let delivery = Delivery {
                    // Imported results keep the agent and site they carry: import is
                    // the operator's path, not an agent's.
                    agent_id: record
                        .agent
                        .id
                        .clone()
                        .unwrap_or_else(|| "unenrolled".into()),
                    quartier: record.site.quartier.clone(),
                    building: record.site.building.clone(),
                };
                batch.push((delivery, record));
            }
            Err(e) => {
                rejected += 1;
                eprintln!("{}:{n}: rejected: {e}", file.display());
            }
        }
        if batch.len() >= IMPORT_BATCH && !flush(&mut batch, &mut total) {
            return 1;
        }
    }
    if !flush(&mut batch, &mut total) {
        return 1;
    }
    println!(
        "imported {} new results, {} already stored, {} lines rejected",
        total.new, total.duplicates, rejected
    );
    if rejected > 0 {
        65
    } else {
        0
    }
}
