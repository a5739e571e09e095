//! iperf3's control protocol, sans-IO: the states the server drives the test with,
//! the documents both sides exchange (parameters, results) framed by a 4-byte
//! big-endian length, the cookie that opens every connection, and [`ServerReader`],
//! which turns the server's bytes into states and documents however they arrive. The
//! engine feeds it what the socket gives; tests feed it recorded transcripts.

use crate::net::target::ClientError;
use serde::{Deserialize, Serialize};
use sonde_proto::FailureReason;

/// Length of the cookie that opens every connection of a test (36 characters + NUL).
pub const COOKIE_SIZE: usize = 37;
/// Largest JSON document accepted from the server.
pub const MAX_JSON: usize = 1024 * 1024;

/// The control states this client meets (iperf3's `iperf_api.h`).
#[allow(missing_docs)]
pub mod state {
    pub const TEST_START: i8 = 1;
    pub const TEST_RUNNING: i8 = 2;
    pub const TEST_END: i8 = 4;
    pub const PARAM_EXCHANGE: i8 = 9;
    pub const CREATE_STREAMS: i8 = 10;
    pub const SERVER_TERMINATE: i8 = 11;
    pub const EXCHANGE_RESULTS: i8 = 13;
    pub const DISPLAY_RESULTS: i8 = 14;
    pub const IPERF_DONE: i8 = 16;
    pub const ACCESS_DENIED: i8 = -1;
    pub const SERVER_ERROR: i8 = -2;
}

/// The test parameters sent to the server. A key's presence is what counts for the
/// flags (`reverse`), so absent ones are left out.
#[derive(Debug, Serialize)]
pub struct Params {
    pub tcp: bool,
    pub omit: u32,
    pub time: u64,
    pub num: u64,
    pub blockcount: u64,
    pub parallel: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reverse: Option<bool>,
    pub len: usize,
    pub pacing_timer: u32,
    pub client_version: String,
}

/// One stream in a results document. Numbers stay as written: a server writes -1
/// as an unsigned 64-bit integer.
#[derive(Debug, Serialize, Deserialize)]
pub struct StreamResult {
    pub id: i64,
    pub bytes: serde_json::Number,
    pub retransmits: serde_json::Number,
    pub jitter: f64,
    pub errors: serde_json::Number,
    pub packets: serde_json::Number,
    #[serde(default)]
    pub start_time: f64,
    #[serde(default)]
    pub end_time: f64,
}

/// A results document (the server requires the CPU and retransmit keys).
#[derive(Debug, Serialize, Deserialize)]
pub struct Results {
    pub cpu_util_total: f64,
    pub cpu_util_user: f64,
    pub cpu_util_system: f64,
    pub sender_has_retransmits: serde_json::Number,
    #[serde(default)]
    pub streams: Vec<StreamResult>,
}

/// Payload bytes a results document counts, over its streams.
pub fn received(r: &Results) -> u64 {
    r.streams
        .iter()
        .map(|s| {
            s.bytes
                .as_u64()
                .unwrap_or_else(|| s.bytes.as_f64().unwrap_or(0.0) as u64)
        })
        .sum()
}

/// A cookie as iperf3 makes them: 36 characters of `[a-z2-7]`, then NUL.
pub fn make_cookie() -> [u8; COOKIE_SIZE] {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut rng = rand::rng();
    let mut cookie = [0u8; COOKIE_SIZE];
    for c in cookie.iter_mut().take(COOKIE_SIZE - 1) {
        *c = ALPHABET[rng.random_range(0..ALPHABET.len())];
    }
    cookie
}

pub fn state_name(s: i8) -> String {
    match s {
        state::TEST_START => "TEST_START".into(),
        state::TEST_RUNNING => "TEST_RUNNING".into(),
        state::TEST_END => "TEST_END".into(),
        state::PARAM_EXCHANGE => "PARAM_EXCHANGE".into(),
        state::CREATE_STREAMS => "CREATE_STREAMS".into(),
        state::SERVER_TERMINATE => "SERVER_TERMINATE".into(),
        state::EXCHANGE_RESULTS => "EXCHANGE_RESULTS".into(),
        state::DISPLAY_RESULTS => "DISPLAY_RESULTS".into(),
        state::IPERF_DONE => "IPERF_DONE".into(),
        state::ACCESS_DENIED => "ACCESS_DENIED".into(),
        state::SERVER_ERROR => "SERVER_ERROR".into(),
        other => format!("byte {other}"),
    }
}

/// The text of the iperf3 error numbers a server sends most, with the errno.
pub fn server_error(ie: i32, errno: i32) -> String {
    let what = match ie {
        5 => "test duration too long",
        6 => "too many parallel streams",
        7 => "block size too large",
        102 => "unable to listen for data connections",
        114 => "unable to receive the parameters",
        121 => "busy running a test",
        142 => "test authorization failed",
        _ => "iperf3 error",
    };
    if errno != 0 {
        format!(
            "{what} (i_errno {ie}, errno {errno}: {})",
            std::io::Error::from_raw_os_error(errno)
        )
    } else {
        format!("{what} (i_errno {ie})")
    }
}

/// A document as the control connection carries it: its length, then its JSON.
pub fn framed<T: Serialize>(doc: &T) -> Result<Vec<u8>, ClientError> {
    let body = serde_json::to_vec(doc)
        .map_err(|e| ClientError::new(FailureReason::Other, format!("iperf3: {e}")))?;
    let mut framed = (body.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&body);
    Ok(framed)
}

/// Whether `got` is the state wanted; a refusal or a server error becomes its
/// failure reason (`codes`: iperf3's error number and errno, sent after
/// `SERVER_ERROR`).
pub fn check_state(got: i8, want: i8, codes: Option<(i32, i32)>) -> Result<(), ClientError> {
    match got {
        g if g == want => Ok(()),
        state::ACCESS_DENIED => Err(ClientError::new(
            FailureReason::ResponderBusy,
            "iperf3: the server is busy running another test (ACCESS_DENIED)",
        )),
        state::SERVER_ERROR => {
            let detail = codes.map_or("no detail".into(), |(ie, errno)| server_error(ie, errno));
            Err(ClientError::new(
                FailureReason::ResponderError,
                format!("iperf3: the server failed the test (SERVER_ERROR: {detail})"),
            ))
        }
        state::SERVER_TERMINATE => Err(ClientError::new(
            FailureReason::ResponderError,
            "iperf3: the server was stopped during the test (SERVER_TERMINATE)",
        )),
        other => Err(ClientError::new(
            FailureReason::ResponderError,
            format!(
                "iperf3: expected state {}, got {} (is this an iperf3 server?)",
                state_name(want),
                state_name(other)
            ),
        )),
    }
}

/// The server's bytes, as they arrive, read as states and documents.
#[derive(Debug, Default)]
pub struct ServerReader {
    buf: Vec<u8>,
}

impl ServerReader {
    /// Appends bytes the server sent.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes waiting.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next state byte, when one has arrived.
    pub fn state(&mut self) -> Option<i8> {
        (!self.buf.is_empty()).then(|| self.buf.remove(0) as i8)
    }

    /// The two network-order integers that follow `SERVER_ERROR`, when they arrived.
    pub fn error_codes(&mut self) -> Option<(i32, i32)> {
        let b: [u8; 8] = self.buf.get(..8)?.try_into().ok()?;
        self.buf.drain(..8);
        let ie = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let errno = i32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        Some((ie, errno))
    }

    /// The next document, once all of it arrived; an error when it is too long or not
    /// the document expected.
    pub fn document<T: serde::de::DeserializeOwned>(&mut self) -> Option<Result<T, ClientError>> {
        let len: [u8; 4] = self.buf.get(..4)?.try_into().ok()?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_JSON {
            return Some(Err(ClientError::new(
                FailureReason::ResponderError,
                format!("iperf3: the server's results are {len} bytes, more than {MAX_JSON}"),
            )));
        }
        let body = self.buf.get(4..4 + len)?;
        let doc = serde_json::from_slice(body).map_err(|e| {
            ClientError::new(
                FailureReason::ResponderError,
                format!("iperf3: the server's results are not the expected document: {e}"),
            )
        });
        self.buf.drain(..4 + len);
        Some(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_36_base32_characters_and_a_nul() {
        let a = make_cookie();
        let b = make_cookie();
        assert_eq!(a[36], 0);
        assert!(a[..36]
            .iter()
            .all(|c| c.is_ascii_lowercase() || (b'2'..=b'7').contains(c)));
        assert_ne!(a, b);
    }

    #[test]
    fn parameters_name_reverse_only_for_a_download() {
        let mut p = Params {
            tcp: true,
            omit: 0,
            time: 10,
            num: 0,
            blockcount: 0,
            parallel: 4,
            reverse: Some(true),
            len: 128 * 1024,
            pacing_timer: 1000,
            client_version: "x".into(),
        };
        let down = serde_json::to_value(&p).expect("json");
        assert_eq!(down["reverse"], true);
        assert_eq!(down["parallel"], 4);
        p.reverse = None;
        let up = serde_json::to_value(&p).expect("json");
        assert!(up.get("reverse").is_none(), "{up}");
    }

    #[test]
    fn server_results_as_iperf3_3_12_writes_them_parse() {
        // Recorded from Debian's iperf3 3.12 (`iperf3 -c … -P 2 --debug`, the server's
        // results after an upload): -1 as an unsigned integer, printed as a float.
        let printed = "{\n\t\"cpu_util_total\":\t41.6475949670701,\n\t\"cpu_util_user\":\t1.3582714544128083,\n\t\"cpu_util_system\":\t40.289323512657276,\n\t\"sender_has_retransmits\":\t1.8446744073709552e+19,\n\t\"congestion_used\":\t\"bbr\",\n\t\"streams\":\t[{\n\t\t\t\"id\":\t1,\n\t\t\t\"bytes\":\t1149501440,\n\t\t\t\"retransmits\":\t1.8446744073709552e+19,\n\t\t\t\"jitter\":\t0,\n\t\t\t\"errors\":\t0,\n\t\t\t\"packets\":\t0,\n\t\t\t\"start_time\":\t0,\n\t\t\t\"end_time\":\t1.000602\n\t\t}, {\n\t\t\t\"id\":\t3,\n\t\t\t\"bytes\":\t1145569280,\n\t\t\t\"retransmits\":\t1.8446744073709552e+19,\n\t\t\t\"jitter\":\t0,\n\t\t\t\"errors\":\t0,\n\t\t\t\"packets\":\t0,\n\t\t\t\"start_time\":\t0,\n\t\t\t\"end_time\":\t1.000603\n\t\t}]\n}";
        let r: Results = serde_json::from_str(printed).expect("parses");
        assert_eq!(received(&r), 1_149_501_440 + 1_145_569_280);
        // On the wire the same -1 travels as an integer.
        let wire = r#"{"cpu_util_total":2.1,"cpu_util_user":0.1,"cpu_util_system":2.0,"sender_has_retransmits":18446744073709551615,"streams":[{"id":1,"bytes":5000,"retransmits":18446744073709551615,"jitter":0,"errors":0,"packets":0}]}"#;
        let r: Results = serde_json::from_str(wire).expect("parses");
        assert_eq!(received(&r), 5000);
    }

    #[test]
    fn server_errors_read_as_text() {
        assert_eq!(server_error(6, 0), "too many parallel streams (i_errno 6)");
        assert!(
            server_error(102, 98).contains("errno 98"),
            "{}",
            server_error(102, 98)
        );
        assert_eq!(state_name(-1), "ACCESS_DENIED");
        assert_eq!(state_name(42), "byte 42");
    }

    fn transcript(name: &str) -> Vec<u8> {
        let hex = match name {
            "server" => include_str!("../../../testdata/iperf3/download-server.hex"),
            _ => include_str!("../../../testdata/iperf3/download-client.hex"),
        };
        let hex = hex.trim();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn a_recorded_iperf3_3_12_server_reads_as_the_states_and_results_of_one_test() {
        let bytes = transcript("server");
        // However the bytes arrive, the same protocol comes out.
        for chunk in [1, 2, 3, 7, 64, bytes.len()] {
            let mut r = ServerReader::default();
            let mut parts = bytes.chunks(chunk);
            let next_state = |r: &mut ServerReader, parts: &mut std::slice::Chunks<'_, u8>| loop {
                if let Some(s) = r.state() {
                    return s;
                }
                r.push(parts.next().expect("more bytes"));
            };
            for want in [
                state::PARAM_EXCHANGE,
                state::CREATE_STREAMS,
                state::TEST_START,
                state::TEST_RUNNING,
                state::EXCHANGE_RESULTS,
            ] {
                let got = next_state(&mut r, &mut parts);
                check_state(got, want, None).expect("the state expected");
            }
            let results: Results = loop {
                if let Some(doc) = r.document() {
                    break doc.expect("a results document");
                }
                r.push(parts.next().expect("more bytes"));
            };
            assert_eq!(received(&results), 1_072_168_960 + 948_961_280);
            assert_eq!(results.streams.len(), 2);
            let last = next_state(&mut r, &mut parts);
            assert!(check_state(last, state::DISPLAY_RESULTS, None).is_ok());
            assert_eq!(r.buffered(), 0, "nothing left over");
        }
    }

    #[test]
    fn our_parameters_frame_byte_for_byte_as_iperf3_3_12_frames_them() {
        let client = transcript("client");
        assert_eq!(client.len(), 37 + 4 + 0x8a + 1 + 4 + 0x1c4 + 1);
        assert_eq!(client[36], 0, "the cookie ends with NUL");
        let p = Params {
            tcp: true,
            omit: 0,
            time: 1,
            num: 0,
            blockcount: 0,
            parallel: 2,
            reverse: Some(true),
            len: 131_072,
            pacing_timer: 1000,
            client_version: "3.12".into(),
        };
        assert_eq!(framed(&p).expect("frames"), client[37..37 + 4 + 0x8a]);
        // TEST_END, then the client's results, then IPERF_DONE.
        assert_eq!(client[37 + 4 + 0x8a] as i8, state::TEST_END);
        assert_eq!(*client.last().expect("bytes") as i8, state::IPERF_DONE);
    }

    #[test]
    fn refusals_errors_and_strangers_are_clear_failures() {
        let busy = check_state(state::ACCESS_DENIED, state::PARAM_EXCHANGE, None);
        assert_eq!(busy.expect_err("busy").reason, FailureReason::ResponderBusy);
        let mut r = ServerReader::default();
        r.push(&[state::SERVER_ERROR as u8, 0, 0, 0, 6, 0, 0, 0, 0]);
        let got = r.state().expect("a state");
        let e = check_state(got, state::CREATE_STREAMS, r.error_codes()).expect_err("error");
        assert!(
            e.message.contains("too many parallel streams"),
            "{}",
            e.message
        );
        // An HTTP server on the port answers "HTTP/1.1 ...": byte 72 is no state.
        let e = check_state(b'H' as i8, state::PARAM_EXCHANGE, None).expect_err("stranger");
        assert!(
            e.message.contains("is this an iperf3 server?"),
            "{}",
            e.message
        );
        let mut r = ServerReader::default();
        r.push(&(MAX_JSON as u32 + 1).to_be_bytes());
        assert!(r.document::<Results>().expect("decided").is_err());
    }
}
