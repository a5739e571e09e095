//! Any datagram given to the UDPST decoder: an error or a PDU, never a panic; a PDU
//! that decodes encodes back to the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sonde_proto::udpst::Pdu;

fuzz_target!(|data: &[u8]| {
    if let Ok(pdu) = Pdu::decode(data) {
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
