//! Opening a UDPST test: the Setup Request to the server's control port, its answer
//! naming the test port, then the Test Activation on that port (RFC 9946). Each wait is
//! bounded; a refusal is named in the server's terms.

use crate::net::netif;
use crate::net::target::ClientError;
use sonde_proto::udpst::*;
use sonde_proto::{Direction, FailureReason};
use sonde_udpst::auth;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

/// How long each control answer may take: OB-UDPST's own client gives up after 3 s
/// without traffic.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// Requests are sent again this often while no answer came (UDP may lose them).
const RESEND: Duration = Duration::from_millis(500);

/// How long a busy server (it could not allocate a connection) is asked again: the
/// connections of this agent's previous test may still be ending there, or a setup
/// never activated holds one until the server's 3 s activation wait ends.
pub const BUSY_WAIT: Duration = Duration::from_secs(5);

/// The pause between two setups while the server is busy.
const BUSY_RETRY: Duration = Duration::from_millis(250);

/// A shared key of authentication mode 1: its id and its bytes.
pub type SharedKey = (u8, Vec<u8>);

/// The test parameters the client asks for (OB-UDPST's defaults, TR-471's values).
#[derive(Debug, Clone)]
pub struct Params {
    /// Test duration, s.
    pub test_s: u16,
    /// Sub-interval, ms.
    pub sub_interval_ms: u16,
    /// Status feedback interval, ms.
    pub trial_ms: u16,
    /// Jumbo datagram sizes allowed above 1 Gb/s.
    pub jumbo: bool,
    /// Authentication (mode 1): the shared key's id and the key.
    pub key: Option<SharedKey>,
    /// Connections of the test (1 to 24), each a test of its own at the server.
    pub connections: u8,
    /// Protocol version asked first: 20, or 11 to 19 for the older layouts. A server
    /// that answers with an older version of its own is asked again in it.
    pub version: u16,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            test_s: 10,
            sub_interval_ms: 1000,
            trial_ms: 50,
            jumbo: false,
            key: None,
            connections: 1,
            version: PROTOCOL_VERSION,
        }
    }
}

/// An activated test: the socket connected to the server's test port, and the
/// activation as the server accepted it (possibly with its own values).
#[derive(Debug)]
pub struct Opened {
    /// Connected to the test port.
    pub socket: UdpSocket,
    /// The server's activation response.
    pub accepted: Activation,
}

/// Opens connection `index` of test `ident` in `direction`.
pub async fn open(
    control: SocketAddr,
    interface: Option<&str>,
    direction: Direction,
    params: &Params,
    (index, ident): (u8, u16),
) -> Result<Opened, ClientError> {
    let socket = netif::connect_udp(control, interface)
        .await
        .map_err(|e| ClientError::io(&format!("UDPST: opening a socket to {control}"), &e))?;
    sonde_udpst::size_buffers(&socket);
    let mut version = params.version;
    let busy_until = tokio::time::Instant::now() + BUSY_WAIT;
    let (answer, keys, now_s) = loop {
        let (answer, keys, now_s) =
            setup(&socket, control, params, version, (index, ident)).await?;
        if answer.response == SETUP_BUSY {
            if tokio::time::Instant::now() + BUSY_RETRY > busy_until {
                return Err(refused(control, &answer, params.jumbo));
            }
            tracing::debug!(%control, index, "UDPST: the server is busy; asking again");
            tokio::time::sleep(BUSY_RETRY).await;
            continue;
        }
        match older(&answer, version) {
            Some(theirs) if params.key.is_none() => {
                tracing::info!(%control, theirs, "UDPST: the server speaks an older protocol version; asking again in it");
                version = theirs;
            }
            Some(theirs) => {
                return Err(ClientError::new(
                    FailureReason::ResponderError,
                    format!("UDPST server {control} speaks protocol version {theirs}, which authenticates otherwise: sonde authenticates with version {PROTOCOL_VERSION} only; drop key_file from the URL or update the server"),
                ))
            }
            None => break (answer, keys, now_s),
        }
    };
    let test = SocketAddr::new(control.ip(), answer.test_port);
    socket
        .connect(test)
        .await
        .map_err(|e| ClientError::io(&format!("UDPST: connecting to test port {test}"), &e))?;
    let request = activation(direction, params, version);
    let accepted = activate(&socket, test, request, &keys, now_s).await?;
    Ok(Opened { socket, accepted })
}

/// The server's own version when it refused ours as too new, and speaks one this code
/// also speaks (11 or later).
fn older(answer: &Setup, asked: u16) -> Option<u16> {
    (answer.response == SETUP_BAD_VERSION && (PROTOCOL_MIN..asked).contains(&answer.version))
        .then_some(answer.version)
}

/// The Setup exchange in `version` (signed when the test is authenticated): the
/// server's answer (an acceptance, a refusal for an older version, or busy), the test's keys
/// and the request's time.
async fn setup(
    socket: &UdpSocket,
    control: SocketAddr,
    params: &Params,
    version: u16,
    (index, ident): (u8, u16),
) -> Result<(Setup, Option<(u8, auth::Keys)>, u32), ClientError> {
    let setup = Setup {
        version,
        modifiers: if params.jumbo { SETUP_JUMBO } else { 0 },
        ..Setup::request(ident, index, params.connections.max(1))
    };
    // Authenticated: both keys come from the shared key and this request's time.
    let now_s = (sonde_udpst::now_ns() / 1_000_000_000) as u32;
    let keys = params
        .key
        .as_ref()
        .map(|(id, shared)| (*id, auth::derive(shared, now_s)));
    let mut request = setup.encode();
    if let Some((id, k)) = &keys {
        auth::sign(&mut request, &k.client, now_s, *id);
    }
    let (answer, raw) = exchange(socket, &request, control, |pdu| match pdu {
        Pdu::Setup(s) if s.request == SETUP_RESPONSE && s.mc_ident == ident => Some(s),
        _ => None,
    })
    .await?;
    if older(&answer, version).is_some() || answer.response == SETUP_BUSY {
        return Ok((answer, keys, now_s));
    }
    if answer.response != SetupAnswer::Ack.code() {
        return Err(refused(control, &answer, params.jumbo));
    }
    if let Some((_, k)) = &keys {
        if !auth::verify(&raw, &k.server) {
            return Err(unauthentic(control, "setup"));
        }
    }
    Ok((answer, keys, now_s))
}

/// Sends the Test Activation Request (signed with the client's key when the test is
/// authenticated) and checks the answer.
async fn activate(
    socket: &UdpSocket,
    test: SocketAddr,
    request: Activation,
    keys: &Option<(u8, auth::Keys)>,
    now_s: u32,
) -> Result<Activation, ClientError> {
    let mut bytes = request.encode_for(request.version);
    if let Some((id, k)) = keys {
        auth::sign(&mut bytes, &k.client, now_s, *id);
    }
    let (accepted, raw) = exchange(socket, &bytes, test, |pdu| match pdu {
        Pdu::Activation(a) if a.request == request.request && a.response != 0 => Some(a),
        _ => None,
    })
    .await?;
    if let Some((_, k)) = keys {
        if !auth::verify(&raw, &k.server) {
            return Err(unauthentic(test, "test activation"));
        }
    }
    if accepted.response != ACTIVATION_ACK {
        return Err(ClientError::new(
            FailureReason::ResponderError,
            format!(
                "UDPST server {test} refused the test parameters (activation response {})",
                accepted.response
            ),
        ));
    }
    Ok(accepted)
}

/// A refused setup, named in the server's terms with what to change.
fn refused(control: SocketAddr, answer: &Setup, jumbo: bool) -> ClientError {
    let code = answer.response;
    let version = format!(
        "; it speaks version {}, sonde {PROTOCOL_MIN} to {PROTOCOL_VERSION}",
        answer.version
    );
    let hint = match code {
        SETUP_BAD_VERSION => version.as_str(),
        SETUP_BUSY => {
            "; it stayed so for 5 s: ask for fewer connections, or run a server that takes more (sonde-responder --udpst-max-tests)"
        }
        3 if !jumbo => {
            "; it wants jumbo datagrams: add ?jumbo to the URL on a path with a 9000-byte MTU, or run OB-UDPST with -j"
        }
        3 => "; it refuses jumbo datagrams: drop ?jumbo from the URL",
        4 => "; drop key_file from the URL",
        5 => "; add key_file=PATH (and key_id=N) to the URL",
        7 => "; the key or its id (key_file, key_id in the URL) is not the server's",
        8 => "; this box's clock or the server's is off by more than 5 s",
        _ => "",
    };
    ClientError::new(
        FailureReason::ResponderError,
        format!(
            "UDPST server {control} refused the setup: {} (code {code}){hint}",
            SetupAnswer::reason(code)
        ),
    )
}

/// An answer that does not authenticate: the server does not hold our key.
fn unauthentic(from: SocketAddr, what: &str) -> ClientError {
    ClientError::new(
        FailureReason::ResponderError,
        format!("the {what} answer of UDPST server {from} does not authenticate: it holds another key (key_file, key_id in the URL)"),
    )
}

/// The activation request of OB-UDPST's client with its default thresholds.
fn activation(direction: Direction, params: &Params, version: u16) -> Activation {
    Activation {
        version,
        request: if direction == Direction::Up {
            ACTIVATE_UPSTREAM
        } else {
            ACTIVATE_DOWNSTREAM
        },
        response: 0,
        low_thresh_ms: 30,
        upper_thresh_ms: 90,
        trial_ms: params.trial_ms,
        test_s: params.test_s,
        reserved1: 0,
        dscp_ecn: 0,
        sr_index: SR_INDEX_AUTO,
        use_one_way_delay: 0,
        high_speed_delta: 10,
        slow_adjust_thresh: 3,
        seq_err_thresh: 10,
        ignore_ooo_dup: 1,
        modifiers: 0,
        rate_algo: 0,
        ecn_ce_thresh: 0,
        rate: SendingRate::default(),
        sub_interval_ms: params.sub_interval_ms,
        reserved3: 0,
        rate_adjust_suppress: 0,
        reserved5: 0,
        auth: Auth::default(),
    }
}

/// Sends `request` (again every [`RESEND`]) until a datagram `pick` accepts arrives,
/// for [`ANSWER_TIMEOUT`] at most. Other UDPST PDUs (the server's Null Request) are
/// skipped; a datagram that is no UDPST PDU at all fails at once.
async fn exchange<T>(
    socket: &UdpSocket,
    request: &[u8],
    to: SocketAddr,
    pick: impl Fn(Pdu) -> Option<T>,
) -> Result<(T, Vec<u8>), ClientError> {
    let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        socket
            .send(request)
            .await
            .map_err(|e| ClientError::io(&format!("UDPST: sending to {to}"), &e))?;
        let resend = (tokio::time::Instant::now() + RESEND).min(deadline);
        loop {
            match tokio::time::timeout_at(resend, socket.recv(&mut buf)).await {
                Err(_) if resend >= deadline => {
                    return Err(ClientError::new(
                        FailureReason::Timeout,
                        format!("no UDPST answer from {to} within {ANSWER_TIMEOUT:?}"),
                    ))
                }
                Err(_) => break,
                Ok(Err(e)) => {
                    return Err(ClientError::io(&format!("UDPST: no server at {to}"), &e))
                }
                Ok(Ok(n)) => match Pdu::decode(&buf[..n]) {
                    Ok(pdu) => {
                        if let Some(t) = pick(pdu) {
                            return Ok((t, buf[..n].to_vec()));
                        }
                    }
                    Err(e) => {
                        return Err(ClientError::new(
                            FailureReason::ResponderError,
                            format!("{to} is not a UDPST server: {e}"),
                        ))
                    }
                },
            }
        }
    }
}
