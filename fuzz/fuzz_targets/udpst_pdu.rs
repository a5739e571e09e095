//! Any datagram given to the UDPST decoder: an error or a PDU, never a panic; a PDU
//! that decodes encodes back to the bytes it came from (in the layout of its length:
//! the legacy ones of versions 11 to 19 keep every field, not their padding).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sonde_proto::udpst::{Pdu, LEGACY_ACTIVATION_LEN, LEGACY_STATUS_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(pdu) = Pdu::decode(data) {
        match pdu {
            Pdu::Activation(p) if data.len() == LEGACY_ACTIVATION_LEN => {
                assert_eq!(p.encode_for(11)[..56], data[..56]);
                return;
            }
            Pdu::Status(p) if data.len() == LEGACY_STATUS_LEN => {
                let again = p.encode_for(11);
                let padding = [44..48, 100..104];
                for (i, (a, b)) in again.iter().zip(data).enumerate() {
                    assert!(a == b || padding.iter().any(|r| r.contains(&i)));
                }
                return;
            }
            _ => {}
        }
        let again = match pdu {
            Pdu::Setup(p) => p.encode(),
            Pdu::Null(p) => p.encode(),
            Pdu::Activation(p) => p.encode(),
            Pdu::Status(p) => p.encode(),
            Pdu::Load(p) => {
                let mut b = vec![0u8; sonde_proto::udpst::LOAD_HEADER_LEN];
                p.encode_into(&mut b).expect("room");
                b.truncate(sonde_proto::udpst::LOAD_HEADER_LEN);
                assert_eq!(b, data[..b.len()]);
                return;
            }
        };
        assert_eq!(again, data);
    }
});
