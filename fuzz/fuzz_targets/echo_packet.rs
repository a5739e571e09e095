//! The UDP echo packet decoder (responder and agent): never panics; what it accepts
//! encodes back to the same fields.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sonde_proto::echo::EchoPacket;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = EchoPacket::decode(data) {
        let mut buf = vec![0u8; data.len()];
        if p.encode(&mut buf).is_some() {
            assert_eq!(EchoPacket::decode(&buf).ok(), Some(p));
        }
    }
});
