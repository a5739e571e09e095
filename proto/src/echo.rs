//! UDP echo packets for latency and loss: the agent sends a request carrying a session,
//! a sequence number and its own send time; the responder returns the same bytes with
//! the kind flipped and its receive time filled in. Fixed 32-byte header, optional
//! padding, bounded size. Sans-IO: times are plain nanosecond counts passed in.

/// Magic at the start of every echo packet.
pub const MAGIC: [u8; 4] = *b"SNDE";
/// Version of the echo format.
pub const VERSION: u8 = 1;
/// Header length; also the smallest valid packet.
pub const HEADER_LEN: usize = 32;
/// Largest valid packet (fits one 1500-byte IPv4/UDP datagram).
pub const MAX_LEN: usize = 1472;

/// Whether a packet goes to the responder or comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Agent to responder.
    Request = 1,
    /// Responder to agent.
    Reply = 2,
}

/// A decoded echo packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoPacket {
    /// Request or reply.
    pub kind: Kind,
    /// Random id of the probe train, so late replies of another train are ignored.
    pub session: u32,
    /// Sequence number within the train, from 0.
    pub seq: u32,
    /// The agent's send time in its own clock, nanoseconds; opaque to the responder.
    pub client_send_ns: u64,
    /// The responder's receive time (ns since the Unix epoch); 0 in requests.
    pub server_recv_ns: u64,
}

/// Why a datagram is not an echo packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EchoError {
    /// Shorter than the header or longer than [`MAX_LEN`].
    #[error("echo packet of {0} bytes is outside {HEADER_LEN}..={MAX_LEN}")]
    Length(usize),
    /// Wrong magic.
    #[error("not a sonde echo packet (bad magic)")]
    Magic,
    /// A version this code does not speak.
    #[error("echo version {0} is not supported")]
    Version(u8),
    /// Unknown kind byte.
    #[error("unknown echo kind {0}")]
    Kind(u8),
}

impl EchoPacket {
    /// Writes the header into `buf[..HEADER_LEN]`; the rest of `buf` is padding.
    /// Returns `None` when `buf` is shorter than the header.
    pub fn encode(&self, buf: &mut [u8]) -> Option<()> {
        let out = buf.get_mut(..HEADER_LEN)?;
        out[0..4].copy_from_slice(&MAGIC);
        out[4] = VERSION;
        out[5] = self.kind as u8;
        out[6..8].copy_from_slice(&[0, 0]);
        out[8..12].copy_from_slice(&self.session.to_be_bytes());
        out[12..16].copy_from_slice(&self.seq.to_be_bytes());
        out[16..24].copy_from_slice(&self.client_send_ns.to_be_bytes());
        out[24..32].copy_from_slice(&self.server_recv_ns.to_be_bytes());
        Some(())
    }

    /// Parses a datagram.
    pub fn decode(buf: &[u8]) -> Result<Self, EchoError> {
        if buf.len() < HEADER_LEN || buf.len() > MAX_LEN {
            return Err(EchoError::Length(buf.len()));
        }
        if buf[0..4] != MAGIC {
            return Err(EchoError::Magic);
        }
        if buf[4] != VERSION {
            return Err(EchoError::Version(buf[4]));
        }
        let kind = match buf[5] {
            1 => Kind::Request,
            2 => Kind::Reply,
            k => return Err(EchoError::Kind(k)),
        };
        let u32_at = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let u64_at = |i: usize| (u64::from(u32_at(i)) << 32) | u64::from(u32_at(i + 4));
        Ok(EchoPacket {
            kind,
            session: u32_at(8),
            seq: u32_at(12),
            client_send_ns: u64_at(16),
            server_recv_ns: u64_at(24),
        })
    }
}

/// Responder side: turns a request datagram, in place, into its reply. Returns the
/// reply length, or why the datagram is not a request (then nothing must be sent).
pub fn reply_in_place(buf: &mut [u8], server_recv_ns: u64) -> Result<usize, EchoError> {
    let mut packet = EchoPacket::decode(buf)?;
    if packet.kind != Kind::Request {
        return Err(EchoError::Kind(packet.kind as u8));
    }
    packet.kind = Kind::Reply;
    packet.server_recv_ns = server_recv_ns;
    packet.encode(buf).ok_or(EchoError::Length(buf.len()))?;
    Ok(buf.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_becomes_reply() {
        let mut buf = [0u8; 64];
        let req = EchoPacket {
            kind: Kind::Request,
            session: 7,
            seq: 42,
            client_send_ns: 123_456_789,
            server_recv_ns: 0,
        };
        req.encode(&mut buf).expect("room for the header");
        let len = reply_in_place(&mut buf, 99).expect("a request");
        assert_eq!(len, 64);
        let rep = EchoPacket::decode(&buf).expect("a reply");
        assert_eq!(rep.kind, Kind::Reply);
        assert_eq!(
            (rep.session, rep.seq, rep.client_send_ns),
            (7, 42, 123_456_789)
        );
        assert_eq!(rep.server_recv_ns, 99);
        // A reply is never echoed again (no reflection loops).
        assert_eq!(reply_in_place(&mut buf, 1), Err(EchoError::Kind(2)));
    }

    #[test]
    fn rejects_bad_datagrams() {
        assert_eq!(EchoPacket::decode(&[0; 10]), Err(EchoError::Length(10)));
        assert_eq!(EchoPacket::decode(&[0; 2000]), Err(EchoError::Length(2000)));
        assert_eq!(EchoPacket::decode(&[0; 32]), Err(EchoError::Magic));
        let mut buf = [0u8; 32];
        buf[..4].copy_from_slice(&MAGIC);
        buf[4] = 9;
        assert_eq!(EchoPacket::decode(&buf), Err(EchoError::Version(9)));
        buf[4] = VERSION;
        buf[5] = 3;
        assert_eq!(EchoPacket::decode(&buf), Err(EchoError::Kind(3)));
    }
}
