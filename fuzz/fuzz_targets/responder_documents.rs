//! The responder's documents as the agent reads them (info, upload report).
#![no_main]
use libfuzzer_sys::fuzz_target;
use sonde_proto::responder::{Info, UploadReport};

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<Info>(data);
    let _ = serde_json::from_slice::<UploadReport>(data);
});
