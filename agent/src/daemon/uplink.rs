//! The uplink loop: the oldest spooled results go up in batches through the [`Link`],
//! and leave the spool only once the collector acknowledged their ids. An idle link
//! sends the health every [`HEARTBEAT`]; failures wait with backoff and jitter.

use super::shared::{stopped, with_spool, Shared};
use crate::uplink::{fitting, Backoff, Link, Outgoing, UplinkError, MAX_BATCH_BYTES};
use sonde_proto::wire::{Envelope, RawRecord, Signatures};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

/// An idle uplink sends its health this often.
pub const HEARTBEAT: Duration = Duration::from_secs(60);
/// First reconnection wait.
pub const RETRY_BASE: Duration = Duration::from_secs(1);
/// How often an agent not enrolled yet looks for its identity.
pub const ENROL_POLL: Duration = Duration::from_secs(5);

/// Runs until `stop` turns true, then closes the link.
pub async fn run(shared: Arc<Shared>, mut link: Box<dyn Link>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Backoff::new(RETRY_BASE, shared.config.retry_max);
    let mut last_contact: Option<Instant> = None;
    while !*stop.borrow() {
        let out = next_batch(&shared).await;
        let since = last_contact.map(|t| t.elapsed());
        let asked = shared.health_now.swap(false, Ordering::Relaxed);
        if out.results.is_empty() && !asked && since.is_some_and(|e| e < HEARTBEAT) {
            let until_heartbeat = HEARTBEAT.saturating_sub(since.unwrap_or_default());
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep(until_heartbeat) => {}
                _ = stopped(&mut stop) => break,
            }
            continue;
        }
        shared.write_status().await;
        let sent = out.results.len();
        let rotated = out
            .signatures
            .as_ref()
            .and_then(|s| s.rotations.last().map(|r| r.seq));
        let outcome = tokio::select! {
            r = async {
                // Never while a test runs on the box (its own cross-traffic).
                let _line = shared.line.lock().await;
                link.send(out, health(&shared)).await
            } => r,
            _ = stopped(&mut stop) => break,
        };
        let (skipped, agent) = (link.unknown_frames(), link.agent_id());
        shared.board.update(|s| {
            s.unknown_frames_total = skipped;
            if agent.is_some() {
                s.agent_id = agent;
            }
        });
        let wait = match outcome {
            Ok(committed) => {
                if let Some(seq) = rotated {
                    if let Err(e) = with_spool(&shared.spool, move |s| s.rotations_sent(seq)).await
                    {
                        tracing::warn!(error = %e, "a key rotation acknowledged stays pending; it will be sent again");
                    }
                }
                let freed = acknowledged(&shared, committed, sent).await;
                last_contact = Some(Instant::now());
                if sent == 0 || freed > 0 {
                    backoff.reset();
                    continue;
                }
                // Acknowledged, yet nothing left the spool (a collector that committed
                // nothing, or a spool that cannot delete): sending the same batch again
                // at once would be a storm. Wait as after a failure.
                let e = UplinkError::NothingAcknowledged;
                let delay = backoff.next_delay(&mut rand::rng());
                failed(&shared, &e, delay).await
            }
            Err(UplinkError::NotEnrolled) => {
                let e = UplinkError::NotEnrolled.to_string();
                shared.board.update(|s| s.last_error = Some(e));
                ENROL_POLL
            }
            Err(e) => {
                let delay = backoff.next_delay(&mut rand::rng());
                failed(&shared, &e, delay).await
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped(&mut stop) => break,
        }
    }
    link.disconnect();
}

/// The oldest spooled results, then the held ones (the spool could not take them), as
/// many as one upload carries, with their signatures: one upload carries signed results
/// only, or unsigned ones only (spooled before the agent signed, or held in memory).
async fn next_batch(shared: &Shared) -> Outgoing {
    let batch_max = shared.config.file.collector.batch;
    let mut results: Vec<(Uuid, RawRecord, Option<Envelope>)> =
        with_spool(&shared.spool, move |s| s.peek(batch_max))
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|s| (s.id, s.record, s.envelope))
            .collect();
    if results.len() < batch_max {
        let held = shared
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .oldest(batch_max);
        for (id, r) in held {
            // Spooled meanwhile: already in the batch.
            if results.len() < batch_max && !results.iter().any(|(i, _, _)| *i == id) {
                results.push((id, r, None));
            }
        }
    }
    let signed = results.first().is_some_and(|r| r.2.is_some());
    let alike = results
        .iter()
        .take_while(|r| r.2.is_some() == signed)
        .count();
    results.truncate(alike);
    let records: Vec<RawRecord> = results.iter().map(|r| r.1.clone()).collect();
    // However large the records, one upload stays within the collector's bound.
    results.truncate(fitting(&records, MAX_BATCH_BYTES));
    let (records, envelopes): (Vec<RawRecord>, Vec<Option<Envelope>>) =
        results.into_iter().map(|(_, r, e)| (r, e)).unzip();
    let envelopes: Vec<Envelope> = envelopes.into_iter().flatten().collect();
    let signatures = match envelopes.last().map(|e| e.seq) {
        Some(last) if signed => {
            // Key rotations go up with the results after them, and the batch names
            // the key that signed its last result.
            let pending = with_spool(&shared.spool, |s| s.pending_rotations())
                .await
                .unwrap_or_default();
            let key = pending
                .iter()
                .find(|r| r.seq > last)
                .map_or_else(|| shared.signing_key.clone(), |r| r.from.clone());
            Some(Signatures {
                key,
                envelopes,
                rotations: pending.into_iter().filter(|r| r.seq < last).collect(),
            })
        }
        _ => None,
    };
    Outgoing {
        results: records,
        signatures,
    }
}

/// The collector committed `committed`: they leave the spool. How many left.
async fn acknowledged(shared: &Shared, committed: Vec<Uuid>, sent: usize) -> usize {
    let (held_freed, still_held) = {
        let mut h = shared.held.lock().unwrap_or_else(|e| e.into_inner());
        (h.remove(&committed), h.len())
    };
    let removed = with_spool(&shared.spool, move |s| s.ack(&committed))
        .await
        .map(|n| n + held_freed);
    let now = shared.clock.now();
    shared.board.update(|s| {
        s.connected = true;
        s.last_success = Some(now);
        s.uploaded_total += removed.as_ref().map(|n| *n as u64).unwrap_or(0);
        s.held_results = still_held as u64;
        if !s.spool_full {
            s.last_error = None;
        }
    });
    if still_held > 0 {
        // The acknowledged rows left room, maybe.
        super::shared::spool_held(shared).await;
    }
    if let Err(e) = &removed {
        tracing::error!(error = %e, "acknowledged results could not leave the spool; they will be sent again");
    }
    if sent > 0 {
        tracing::debug!(sent, "batch acknowledged");
    }
    shared.write_status().await;
    removed.unwrap_or(0)
}

/// An upload failed: counted, shown, and waited for `delay`.
async fn failed(shared: &Shared, e: &UplinkError, delay: Duration) -> Duration {
    tracing::warn!(error = %e, retry_in_s = delay.as_secs_f64(), "upload failed");
    shared.board.update(|s| {
        s.connected = false;
        s.last_error = Some(e.to_string());
        *s.uplink_errors_total.entry(e.reason().into()).or_default() += 1;
    });
    shared.write_status().await;
    delay
}

/// The health sent with an upload: the board's, and the site's configured position.
fn health(shared: &Shared) -> sonde_proto::wire::Health {
    let site = &shared.config.file.site;
    sonde_proto::wire::Health {
        position: sonde_proto::wire::Position {
            latitude: site.latitude,
            longitude: site.longitude,
        }
        .checked(),
        ..shared.board.health()
    }
}
