//! The result record reader (collector import, spool, uploads): never panics; what it
//! accepts round-trips through its own encoding.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sonde_proto::ResultRecord;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = ResultRecord::from_json(data) {
        let again = ResultRecord::from_json(r.to_json().as_bytes()).expect("own encoding");
        assert_eq!(again.id, r.id);
    }
});
