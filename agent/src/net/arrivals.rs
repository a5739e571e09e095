//! TCP-layer count of a direction's segments, read from each stream's socket at every
//! sample: for a download the data segments received (`tcpi_data_segs_in`), for an
//! upload the segments the responder acknowledged, selectively or not
//! (`tcpi_delivered`). Unlike application bytes, neither is re-timed by head-of-line
//! blocking after a loss, so their 100 ms bins follow the link (docs/METHODOLOGY.md §1.3).

use crate::net::netif;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Mutex;
use tokio::net::TcpStream;

#[derive(Debug, Default, Clone, Copy)]
struct Slot {
    fd: Option<RawFd>,
    segs: u64,
    mss: u32,
}

/// The sockets of one direction's streams.
#[derive(Debug, Default)]
pub struct Arrivals {
    slots: Mutex<Vec<Slot>>,
    sending: bool,
}

impl Arrivals {
    /// An empty set, for a direction in which the agent receives (`sending` false) or
    /// sends.
    pub fn new(sending: bool) -> Self {
        Arrivals {
            slots: Mutex::default(),
            sending,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers an open socket; returns its slot for [`Arrivals::close`].
    pub fn open(&self, fd: RawFd) -> usize {
        let mut slots = self.lock();
        slots.push(Slot {
            fd: Some(fd),
            ..Slot::default()
        });
        slots.len() - 1
    }

    /// Reads the socket a last time and forgets its descriptor. Must be called before
    /// the socket is closed.
    pub fn close(&self, slot: usize) {
        let mut slots = self.lock();
        let sending = self.sending;
        if let Some(s) = slots.get_mut(slot) {
            refresh(s, sending);
            s.fd = None;
        }
    }

    /// Total segments so far, and the largest MSS of the direction seen.
    pub fn total(&self) -> (u64, u32) {
        let mut slots = self.lock();
        let mut segs = 0;
        let mut mss = 0;
        let sending = self.sending;
        for s in slots.iter_mut() {
            refresh(s, sending);
            segs += s.segs;
            mss = mss.max(s.mss);
        }
        (segs, mss)
    }
}

fn refresh(s: &mut Slot, sending: bool) {
    // The descriptor stays open while registered: `close` runs under the same lock
    // before the stream drops its socket.
    if let Some(fd) = s.fd {
        if let Ok(info) = netif::tcp_info_fd(fd) {
            s.segs = u64::from(if sending {
                info.delivered
            } else {
                info.data_segs_in
            });
            s.mss = s.mss.max(info.payload_mss(sending));
        }
    }
}

/// Keeps a socket registered with [`Arrivals`] until dropped.
pub(crate) struct Registered<'a> {
    arrivals: &'a Arrivals,
    slot: usize,
}

impl<'a> Registered<'a> {
    /// Registers `stream`, which must outlive the registration.
    pub(crate) fn new(arrivals: &'a Arrivals, stream: &TcpStream) -> Self {
        Registered {
            arrivals,
            slot: arrivals.open(stream.as_raw_fd()),
        }
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.arrivals.close(self.slot);
    }
}
