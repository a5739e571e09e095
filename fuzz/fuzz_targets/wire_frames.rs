//! The agent⇄collector frame decoder, fed in arbitrary chunks: it must never panic,
//! never buffer beyond its bound, and stay failed after an error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sonde_proto::wire::{FrameDecoder, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let (max, chunk, bytes) = match data {
        [a, b, rest @ ..] => (usize::from(*a) * 64, usize::from(*b).max(1), rest),
        _ => return,
    };
    let mut d = FrameDecoder::new(max);
    let mut failed = false;
    for part in bytes.chunks(chunk) {
        d.push(part);
        loop {
            match d.poll() {
                Ok(Some(m)) => {
                    assert!(!failed, "a frame after an error: {m:?}");
                    // What decodes re-encodes to a frame that decodes the same.
                    let again = sonde_proto::wire::encode(&m);
                    let mut d2 = FrameDecoder::new(again.len());
                    d2.push(&again);
                    assert_eq!(d2.poll().ok().flatten(), Some(m));
                }
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(d.buffered() <= HEADER_LEN + max + chunk);
    }
});
