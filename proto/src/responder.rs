//! Documents the responder serves over HTTP to the agent: the info document the agent
//! reads first (from the responder URL alone it learns the UDP port, the limits and the
//! version) and the upload report (bytes received per 100 ms bin, counted server-side).

use serde::{Deserialize, Serialize};

/// Version of the agent⇄responder HTTP protocol.
pub const PROTOCOL_VERSION: u32 = 1;

/// Path of the info document.
pub const INFO_PATH: &str = "/api/v1/info";
/// Path of the download endpoint: `GET /download?bytes=N&duration_ms=M`.
pub const DOWNLOAD_PATH: &str = "/download";
/// Path of the upload endpoint: `POST /upload?test=ID` with the body to sink.
pub const UPLOAD_PATH: &str = "/upload";
/// Path prefix of upload reports: `GET /upload/ID`.
pub const UPLOAD_REPORT_PREFIX: &str = "/upload/";
/// Path prefix of test reports: `GET /api/v1/tests/ID` ([`TestReport`]).
pub const TESTS_PREFIX: &str = "/api/v1/tests/";
/// `GET /api/v1/load?window_ms=N`: the responder's own CPU load over the last N ms.
pub const LOAD_PATH: &str = "/api/v1/load";

/// Share of the responder's CPU at which a test is flagged `server_limited`.
pub const SERVER_LIMITED_CPU: f64 = 0.9;

/// `GET /api/v1/load`: how busy the responder's own process was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Load {
    /// Highest CPU busy share (0 to 1, of the cores it may use) over 100 ms windows.
    pub cpu_busy_max: f64,
    /// The window asked for, milliseconds.
    pub window_ms: u64,
    /// Cores the responder may run on.
    pub cores: u32,
}
/// Width of the responder's upload bins, milliseconds.
pub const BIN_MS: u64 = 100;

/// `GET /api/v1/info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// Always `sonde-responder`.
    pub service: String,
    /// Responder software version.
    pub version: String,
    /// [`PROTOCOL_VERSION`] the responder speaks.
    pub protocol: u32,
    /// UDP echo port on the same host, when echo is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_port: Option<u16>,
    /// Port of the network-quality (RPM) server on the same host, HTTPS, when enabled:
    /// its configuration is at [`NQ_CONFIG_PATH`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nq_port: Option<u16>,
    /// Limits the responder enforces.
    pub limits: Limits,
}

/// Where a network-quality server publishes its configuration (RFC 8615 well-known
/// URI of draft-ietf-ippm-responsiveness): the URLs of its small, large and upload
/// endpoints.
pub const NQ_CONFIG_PATH: &str = "/.well-known/nq";
/// The responder's 1-byte object (probes).
pub const NQ_SMALL_PATH: &str = "/api/v1/nq/small";
/// The responder's endless object (download load).
pub const NQ_LARGE_PATH: &str = "/api/v1/nq/large";
/// The responder's upload sink (upload load).
pub const NQ_UPLOAD_PATH: &str = "/api/v1/nq/upload";

/// A network-quality server's configuration, as `/.well-known/nq` serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NqConfig {
    /// Configuration format version (1).
    pub version: u32,
    /// The host the endpoints are on, when the server names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_endpoint: Option<String>,
    /// The endpoints.
    pub urls: NqUrls,
}

/// The endpoints of a network-quality server, under the draft's names and under the
/// older `*_https_*` names that some clients still read (a reader takes either).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NqUrls {
    /// A small object (1 byte here): the probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub small_download_url: Option<String>,
    /// An object large enough to load the path for the whole test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub large_download_url: Option<String>,
    /// Where uploads are sunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_url: Option<String>,
    /// Older name of `small_download_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub small_https_download_url: Option<String>,
    /// Older name of `large_download_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub large_https_download_url: Option<String>,
    /// Older name of `upload_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_upload_url: Option<String>,
}

impl NqUrls {
    /// The three endpoints at `base` (`https://host:port`), under both names each.
    pub fn at(base: &str) -> NqUrls {
        let url = |path: &str| Some(format!("{base}{path}"));
        NqUrls {
            small_download_url: url(NQ_SMALL_PATH),
            large_download_url: url(NQ_LARGE_PATH),
            upload_url: url(NQ_UPLOAD_PATH),
            small_https_download_url: url(NQ_SMALL_PATH),
            large_https_download_url: url(NQ_LARGE_PATH),
            https_upload_url: url(NQ_UPLOAD_PATH),
        }
    }

    /// `(small, large, upload)`, each under the draft's name or else the older one;
    /// the first name missing under both, as an error.
    pub fn resolved(&self) -> Result<(String, String, String), &'static str> {
        let pick = |a: &Option<String>, b: &Option<String>, name: &'static str| {
            a.clone().or_else(|| b.clone()).ok_or(name)
        };
        Ok((
            pick(
                &self.small_download_url,
                &self.small_https_download_url,
                "small_download_url",
            )?,
            pick(
                &self.large_download_url,
                &self.large_https_download_url,
                "large_download_url",
            )?,
            pick(&self.upload_url, &self.https_upload_url, "upload_url")?,
        ))
    }
}

/// Limits enforced by a responder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Concurrent data streams (download + upload) served at once; more get 503.
    pub max_streams: u32,
    /// Longest download or upload stream, milliseconds.
    pub max_duration_ms: u64,
    /// Largest download or upload of one stream, bytes.
    pub max_bytes: u64,
    /// Tests served at once in each direction (0: not said, an older responder).
    #[serde(default)]
    pub max_tests_per_direction: u32,
    /// Data streams open at once from one client address (0: not said).
    #[serde(default)]
    pub max_streams_per_address: u32,
}

/// `GET /api/v1/tests/ID`: what the responder knows of one test (all the streams that
/// carried its id, in one direction), kept a minute after it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestReport {
    /// The test id the agent chose.
    pub test: String,
    /// Its direction.
    pub direction: crate::Direction,
    /// Streams it opened.
    pub streams: u32,
    /// Other tests in the same direction that ran while it did (they shared the
    /// responder's bottleneck: the result is flagged `server_contended`).
    pub overlapped_same_direction: u32,
    /// Tests in the other direction that ran while it did.
    pub overlapped_other_direction: u32,
}

/// `GET /upload/ID`: what the responder received for one upload test, all streams
/// together, in bins of [`BIN_MS`] from the first byte of the first stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadReport {
    /// The test id the agent chose.
    pub test: String,
    /// Streams that sent to this test.
    pub streams: u32,
    /// Bytes received in all.
    pub bytes: u64,
    /// Bin width, milliseconds.
    pub bin_ms: u64,
    /// Bytes received in each bin; the last bin may be partial.
    pub bins: Vec<u64>,
    /// Nanoseconds from the first byte to the last byte received.
    pub span_ns: u64,
    /// Streams that ended without a complete body: reset by the agent at the end of
    /// the test (the normal case), or cut by a limit or the network.
    pub failed_streams: u32,
    /// Data segments that arrived at the responder's TCP layer in each bin (TCP_INFO),
    /// free of head-of-line re-timing; empty when unavailable.
    #[serde(default)]
    pub segment_bins: Vec<u64>,
    /// Largest TCP payload per segment seen on the test's connections.
    #[serde(default)]
    pub mss: u32,
}

/// Body of a 4xx/5xx answer from the responder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// One-line reason.
    pub error: String,
}

#[cfg(test)]
mod nq_tests {
    use super::*;

    #[test]
    fn the_nq_configuration_names_each_endpoint_under_both_keys() {
        let doc = NqConfig {
            version: 1,
            test_endpoint: None,
            urls: NqUrls::at("https://192.0.2.1:8443"),
        };
        let v: serde_json::Value = serde_json::to_value(&doc).expect("JSON");
        for (new, old, path) in [
            (
                "small_download_url",
                "small_https_download_url",
                NQ_SMALL_PATH,
            ),
            (
                "large_download_url",
                "large_https_download_url",
                NQ_LARGE_PATH,
            ),
            ("upload_url", "https_upload_url", NQ_UPLOAD_PATH),
        ] {
            let want = format!("https://192.0.2.1:8443{path}");
            assert_eq!(v["urls"][new], want.as_str());
            assert_eq!(v["urls"][old], want.as_str());
        }
        // A reader takes either name, the draft's first.
        let old_only: NqUrls = serde_json::from_str(
            r#"{"small_https_download_url":"s","large_https_download_url":"l","https_upload_url":"u"}"#,
        )
        .expect("old keys");
        assert_eq!(
            old_only.resolved(),
            Ok(("s".into(), "l".into(), "u".into()))
        );
        let missing: NqUrls = serde_json::from_str(r#"{"small_download_url":"s"}"#).expect("JSON");
        assert_eq!(missing.resolved(), Err("large_download_url"));
    }
}
