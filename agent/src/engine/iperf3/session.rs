//! The control connection of one iperf3 test, on a socket: bytes go to and come from
//! the sans-IO [`control`](super::control) reader, each wait bounded.

use super::control::{self, check_state, state, ServerReader};
use crate::net::target::{ClientError, Target};
use serde::Serialize;
use sonde_proto::FailureReason;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Patience for each control message.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// Time the client waits for the server to close a finished test.
const CLOSE: Duration = Duration::from_secs(2);

/// A test's control connection.
#[derive(Debug)]
pub struct Control {
    stream: TcpStream,
    reader: ServerReader,
}

impl Control {
    /// Opens the control connection and presents the cookie, until the server asks
    /// for the parameters. Between two tests `iperf3 -s` stops listening, resets what
    /// connected meanwhile, or still denies access while it cleans up: that is tried
    /// again for `patience`.
    pub async fn open(
        target: &Target,
        cookie: &[u8],
        patience: Duration,
    ) -> Result<Control, ClientError> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let attempt = async {
                let mut ctrl = Control {
                    stream: target.connect().await?,
                    reader: ServerReader::default(),
                };
                ctrl.send(cookie, "the cookie").await?;
                ctrl.expect(state::PARAM_EXCHANGE).await?;
                Ok::<_, ClientError>(ctrl)
            };
            match attempt.await {
                Err(e)
                    if matches!(
                        e.reason,
                        FailureReason::Refused
                            | FailureReason::StreamError
                            | FailureReason::ResponderBusy
                    ) && tokio::time::Instant::now() < deadline =>
                {
                    tracing::debug!(error = %e, "iperf3 server not ready yet");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    /// Sends `bytes`.
    pub async fn send(&mut self, bytes: &[u8], what: &str) -> Result<(), ClientError> {
        match tokio::time::timeout(CONTROL_TIMEOUT, self.stream.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ClientError::io(&format!("iperf3: sending {what}"), &e)),
            Err(_) => Err(ClientError::new(
                FailureReason::Timeout,
                format!("iperf3: sending {what}: no progress within {CONTROL_TIMEOUT:?}"),
            )),
        }
    }

    /// Sends a document, framed.
    pub async fn send_json<T: Serialize>(&mut self, doc: &T) -> Result<(), ClientError> {
        let framed = control::framed(doc)?;
        self.send(&framed, "a JSON document").await
    }

    /// Reads more of the server's bytes.
    async fn fill(&mut self, what: &str) -> Result<(), ClientError> {
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(CONTROL_TIMEOUT, self.stream.read(&mut buf)).await {
            Ok(Ok(0)) => Err(ClientError::new(
                FailureReason::ResponderError,
                format!("iperf3: the server closed the control connection before {what}"),
            )),
            Ok(Ok(n)) => {
                self.reader.push(&buf[..n]);
                Ok(())
            }
            Ok(Err(e)) => Err(ClientError::io(&format!("iperf3: reading {what}"), &e)),
            Err(_) => Err(ClientError::new(
                FailureReason::Timeout,
                format!("iperf3: no {what} within {CONTROL_TIMEOUT:?}"),
            )),
        }
    }

    /// Reads the next state and checks it is `want`.
    pub async fn expect(&mut self, want: i8) -> Result<(), ClientError> {
        let what = format!("state {}", control::state_name(want));
        let got = loop {
            if let Some(s) = self.reader.state() {
                break s;
            }
            self.fill(&what).await?;
        };
        let codes = if got == state::SERVER_ERROR {
            // Two network-order integers follow, a second at most.
            let wait = tokio::time::timeout(Duration::from_secs(1), async {
                loop {
                    if let Some(c) = self.reader.error_codes() {
                        return Some(c);
                    }
                    if self.fill("the error codes").await.is_err() {
                        return None;
                    }
                }
            });
            wait.await.ok().flatten()
        } else {
            None
        };
        check_state(got, want, codes)
    }

    /// Reads the next document.
    pub async fn read_json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, ClientError> {
        loop {
            if let Some(doc) = self.reader.document() {
                return doc;
            }
            self.fill("the server's results").await?;
        }
    }

    /// After `TEST_END`: sends our results, reads the server's, says we are done, and
    /// waits for the server to close the test (it is free for the next one then).
    pub async fn close(&mut self, ours: control::Results) -> Result<control::Results, ClientError> {
        self.expect(state::EXCHANGE_RESULTS).await?;
        self.send_json(&ours).await?;
        let theirs: control::Results = self.read_json().await?;
        self.expect(state::DISPLAY_RESULTS).await?;
        self.send(&[state::IPERF_DONE as u8], "IPERF_DONE").await?;
        let mut rest = [0u8; 64];
        let _ = tokio::time::timeout(CLOSE, async {
            while let Ok(n) = self.stream.read(&mut rest).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        Ok(theirs)
    }
}
