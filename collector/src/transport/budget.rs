//! A bound on the bytes every stream's frames in progress may hold together: a stream
//! whose frame grows takes its bytes from the budget, and gives them back as frames
//! complete. When the budget is spent a stream waits (its peer is held back by QUIC's
//! flow control), and is refused as busy after a while. Whatever strangers send,
//! memory stays bounded.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Bytes all streams may buffer together.
pub const BUFFER_BUDGET: usize = 256 * 1024 * 1024;
/// Time a stream waits for room before it is refused.
pub const BUFFER_WAIT: Duration = Duration::from_secs(12);

/// The shared budget.
#[derive(Debug, Clone)]
pub struct Budget(Arc<Semaphore>);

impl Budget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Budget {
        Budget(Arc::new(Semaphore::new(bytes)))
    }

    /// Bytes left.
    pub fn available(&self) -> usize {
        self.0.available_permits()
    }

    /// A stream's share, empty.
    pub fn share(&self) -> Share {
        Share {
            budget: self.clone(),
            held: 0,
        }
    }
}

/// What one stream holds of the budget; given back when dropped.
#[derive(Debug)]
pub struct Share {
    budget: Budget,
    held: usize,
}

impl Share {
    /// Holds exactly `bytes`: takes more (waiting up to [`BUFFER_WAIT`]) or gives back.
    /// `false` when the room did not come in time.
    pub async fn hold(&mut self, bytes: usize) -> bool {
        if bytes <= self.held {
            self.budget.0.add_permits(self.held - bytes);
            self.held = bytes;
            return true;
        }
        let more = u32::try_from(bytes - self.held).unwrap_or(u32::MAX);
        match tokio::time::timeout(BUFFER_WAIT, self.budget.0.acquire_many(more)).await {
            Ok(Ok(permit)) => {
                permit.forget();
                self.held += more as usize;
                true
            }
            _ => false,
        }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.budget.0.add_permits(self.held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shares_take_and_give_back_and_a_spent_budget_refuses_in_time() {
        let b = Budget::new(1000);
        let mut s = b.share();
        assert!(s.hold(600).await);
        assert_eq!(b.available(), 400);
        assert!(s.hold(100).await);
        assert_eq!(b.available(), 900);
        let mut t = b.share();
        assert!(t.hold(900).await);
        tokio::time::pause();
        assert!(!s.hold(200).await, "no room: refused after the wait");
        drop(t);
        drop(s);
        assert_eq!(b.available(), 1000);
    }
}
