//! Results the spool could not take (its disk is full, or it cannot be written): held
//! in memory, oldest first, up to [`MAX_HELD`]. The uplink sends them straight up like
//! spooled ones; the measure loop moves them into the spool as soon as it takes writes
//! again. Past the bound the oldest is dropped, counted (`held_dropped_total`), and
//! logged: memory on a small box is bounded too.

use sonde_proto::wire::RawRecord;
use std::collections::VecDeque;
use uuid::Uuid;

/// Results held in memory at most (a record is a few KiB: a few MiB in all).
pub const MAX_HELD: usize = 2000;

/// The results held in memory.
#[derive(Debug, Default)]
pub struct Held {
    records: VecDeque<(Uuid, RawRecord)>,
    dropped_total: u64,
}

impl Held {
    /// Holds `record`; the oldest goes when the bound is reached (returns whether one
    /// did).
    pub fn push(&mut self, id: Uuid, record: RawRecord) -> bool {
        let dropped = self.records.len() >= MAX_HELD;
        if dropped {
            self.records.pop_front();
            self.dropped_total += 1;
        }
        self.records.push_back((id, record));
        dropped
    }

    /// Results held now.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Results dropped at the bound, since start.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// The oldest `max`, copied (they stay held until acknowledged or spooled).
    pub fn oldest(&self, max: usize) -> Vec<(Uuid, RawRecord)> {
        self.records.iter().take(max).cloned().collect()
    }

    /// Removes `ids` (acknowledged, or now in the spool); how many were held.
    pub fn remove(&mut self, ids: &[Uuid]) -> usize {
        let before = self.records.len();
        self.records.retain(|(id, _)| !ids.contains(id));
        before - self.records.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(n: usize) -> RawRecord {
        RawRecord::from_json(format!("{{\"n\":{n}}}")).expect("json")
    }

    #[test]
    fn the_bound_drops_the_oldest_and_counts_it() {
        let mut held = Held::default();
        let ids: Vec<Uuid> = (0..=MAX_HELD).map(|_| Uuid::now_v7()).collect();
        for (n, id) in ids.iter().enumerate().take(MAX_HELD) {
            assert!(!held.push(*id, raw(n)));
        }
        assert!(held.push(ids[MAX_HELD], raw(MAX_HELD)));
        assert_eq!((held.len(), held.dropped_total()), (MAX_HELD, 1));
        assert_eq!(held.oldest(1)[0].0, ids[1], "the oldest went");
        assert_eq!(held.remove(&ids[..3]), 2, "ids[0] was no longer held");
        assert_eq!(held.len(), MAX_HELD - 2);
    }
}
