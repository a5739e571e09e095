//! Batched UDP I/O for load traffic: many datagrams per system call (`recvmmsg` with
//! UDP GRO, `sendmsg` with UDP GSO), through `quinn-udp`, the batched I/O quinn itself
//! runs on. At 1 Gb/s a UDPST test moves about 100,000 datagrams a second each way; one
//! system call per datagram does not keep up on 2 cores.

use quinn_udp::{RecvMeta, Transmit, UdpSocketState, BATCH_SIZE};
use std::io::{self, IoSliceMut};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Bytes per receive buffer: room for a GRO train of 1500-byte datagrams.
const BUFFER: usize = 64 * 1024;

/// A socket's batched receiver, with its buffers.
pub struct Receiver {
    state: UdpSocketState,
    buffers: Vec<Vec<u8>>,
    metas: Vec<RecvMeta>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

impl Receiver {
    /// Prepares `socket` (non-blocking, GRO on where the kernel has it).
    pub fn new(socket: &UdpSocket) -> io::Result<Self> {
        Ok(Receiver {
            state: UdpSocketState::new(socket.into())?,
            buffers: vec![vec![0u8; BUFFER]; BATCH_SIZE],
            metas: vec![RecvMeta::default(); BATCH_SIZE],
        })
    }

    /// Waits until datagrams are there and calls `each` on every one a batch brought
    /// (up to `BATCH_SIZE` receive buffers, each possibly a GRO train). Returns how many.
    pub async fn recv(
        &mut self,
        socket: &UdpSocket,
        mut each: impl FnMut(&[u8]),
    ) -> io::Result<usize> {
        loop {
            socket.readable().await?;
            let Receiver {
                state,
                buffers,
                metas,
            } = self;
            let mut slices: Vec<IoSliceMut<'_>> =
                buffers.iter_mut().map(|b| IoSliceMut::new(b)).collect();
            match socket.try_io(Interest::READABLE, || {
                state.recv(socket.into(), &mut slices, metas)
            }) {
                Ok(n) => {
                    let mut count = 0;
                    for (meta, buf) in metas.iter().zip(buffers.iter()).take(n) {
                        let stride = meta.stride.max(1);
                        for datagram in buf[..meta.len].chunks(stride) {
                            each(datagram);
                            count += 1;
                        }
                    }
                    return Ok(count);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// A socket's batched sender.
pub struct Sender {
    state: UdpSocketState,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl Sender {
    /// Prepares a connected `socket` (GSO where the kernel has it).
    pub fn new(socket: &std::net::UdpSocket) -> io::Result<Self> {
        Ok(Sender {
            state: UdpSocketState::new(socket.into())?,
        })
    }

    /// Most datagrams one call sends.
    pub fn max_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// Sends `contents`, datagrams of `size` bytes back to back (the last may be
    /// shorter), to the connected peer in one call. `WouldBlock` when the send buffer is
    /// full.
    pub fn send(
        &self,
        socket: &std::net::UdpSocket,
        peer: std::net::SocketAddr,
        contents: &[u8],
        size: usize,
    ) -> io::Result<()> {
        let transmit = Transmit {
            destination: peer,
            ecn: None,
            contents,
            segment_size: (contents.len() > size).then_some(size),
            src_ip: None,
        };
        self.state.try_send(socket.into(), &transmit)
    }
}
