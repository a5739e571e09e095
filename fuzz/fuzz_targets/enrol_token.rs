//! The enrolment token parser (`sonde-agent enroll --token`, collector ingest).
#![no_main]
use libfuzzer_sys::fuzz_target;
use sonde_proto::wire::EnrolToken;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(t) = text.parse::<EnrolToken>() {
            assert_eq!(t.to_string().parse::<EnrolToken>().ok(), Some(t));
        }
    }
});
