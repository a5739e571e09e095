//! The download payload: one buffer of random bytes filled once at start-up and served
//! as zero-copy slices, so serving costs no per-byte work and no compressor on the path
//! can shrink it.

use bytes::Bytes;
use rand::RngCore;

/// Size of the pre-filled buffer.
const BUFFER_LEN: usize = 8 * 1024 * 1024;
/// Size of each body frame handed to the HTTP layer.
pub const CHUNK_LEN: usize = 256 * 1024;

/// A pre-filled incompressible buffer.
#[derive(Debug, Clone)]
pub struct Payload {
    buf: Bytes,
}

impl Payload {
    /// Fills the buffer from the thread RNG.
    pub fn new() -> Self {
        let mut buf = vec![0u8; BUFFER_LEN];
        rand::rng().fill_bytes(&mut buf);
        Payload { buf: buf.into() }
    }

    /// A slice of at most `len` bytes (≤ [`CHUNK_LEN`]) starting at `offset` in the
    /// endless repetition of the buffer. Zero-copy.
    pub fn chunk(&self, offset: u64, len: usize) -> Bytes {
        let start = (offset % BUFFER_LEN as u64) as usize;
        let len = len.min(CHUNK_LEN).min(BUFFER_LEN - start);
        self.buf.slice(start..start + len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_wrap_around_the_buffer() {
        let p = Payload::new();
        let a = p.chunk(BUFFER_LEN as u64 - 10, CHUNK_LEN);
        assert_eq!(a.len(), 10);
        let b = p.chunk(BUFFER_LEN as u64, CHUNK_LEN);
        assert_eq!(b.len(), CHUNK_LEN);
        assert_eq!(b, p.chunk(0, CHUNK_LEN));
        assert_eq!(p.chunk(5, 3).len(), 3);
    }
}
