//! A UDP Speed Test Protocol server (RFC 9946, protocol version 20, and 11 to 19 as
//! OB-UDPST 9 still serves them, without authentication), so that an OB-UDPST client,
//! a CPE running TR-471 diagnostics or sonde's own agent (`udpst://`) can measure
//! IP-layer capacity (RFC 9097) against the responder.
//!
//! The control port answers Setup Requests: each accepted one gets a test socket of
//! its own on an ephemeral port ([`test`]), which takes the Test Activation and runs
//! the test, [`downstream`] (the server sends at the rows its rate search picks from
//! the client's Status PDUs) or [`upstream`] (the server receives, reports every trial
//! and tells the client its row). Each connection of a multi-connection test is a test
//! of its own here, as in OB-UDPST.
//!
//! Defences: tests at once are capped (`--udpst-max-tests`; more are refused with
//! "could not allocate a connection"), an address runs at most two tests at once (the
//! next may start while the last ends) and at most half the server's connections, a
//! repeated setup of a running connection gets its first answer again when it comes
//! from the same port (that answer was lost) and is refused otherwise, a test lasts
//! at most `--max-duration`, a test socket takes
//! its activation only from the address that set it up, and a test whose client falls
//! silent for 3 s ends. Datagrams that are no Setup Request are dropped and counted,
//! never answered.

pub mod downstream;
pub mod session;
pub mod test;
pub mod upstream;

pub use session::Config;
use session::{seal, Signer};

use sonde_proto::udpst::*;
use sonde_udpst::auth::{self, KeyFile};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;

/// What the server did, for the responder's closing line and its tests.
#[derive(Debug, Default)]
pub struct Counters {
    /// Setup Requests accepted.
    pub accepted: AtomicU64,
    /// Setup Requests refused (any reason).
    pub refused: AtomicU64,
    /// Datagrams on the control port that were no Setup Request.
    pub ignored: AtomicU64,
    /// Tests that ran to their stop.
    pub completed: AtomicU64,
    /// Tests that ended otherwise (no activation, silence, refused parameters).
    pub failed: AtomicU64,
}

/// Tests a client address may run at once: the next may start while the last ends.
const PER_ADDRESS: usize = 2;

/// Tests running: how many connections, and by client address each test's
/// multi-connection identifier with its connections.
#[derive(Debug, Default)]
struct Running {
    total: u32,
    by_address: HashMap<IpAddr, Vec<(u16, Vec<Connection>)>>,
}

/// A running connection of a test: its index, the client's port that set it up, and
/// the Setup Response it got (sent again when that setup is repeated).
#[derive(Debug)]
struct Connection {
    index: u8,
    port: u16,
    answer: Option<Vec<u8>>,
}

/// A running test connection's slot; freed when dropped.
#[derive(Debug)]
pub struct Slot {
    running: Arc<Mutex<Running>>,
    ip: IpAddr,
    ident: u16,
    index: u8,
}

impl Slot {
    /// Keeps the Setup Response this connection got, for a repeated setup.
    fn answered(&self, answer: &[u8]) {
        let mut r = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let connections = r.by_address.get_mut(&self.ip).into_iter().flatten();
        for (_, c) in connections.filter(|t| t.0 == self.ident) {
            for c in c.iter_mut().filter(|c| c.index == self.index) {
                c.answer = Some(answer.to_vec());
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut r = self.running.lock().unwrap_or_else(|e| e.into_inner());
        r.total = r.total.saturating_sub(1);
        if let Some(tests) = r.by_address.get_mut(&self.ip) {
            for t in tests.iter_mut().filter(|t| t.0 == self.ident) {
                t.1.retain(|c| c.index != self.index);
            }
            tests.retain(|t| !t.1.is_empty());
            if tests.is_empty() {
                r.by_address.remove(&self.ip);
            }
        }
    }
}

/// What a Setup Request gets from [`admit`].
#[derive(Debug)]
enum Admission {
    /// A new connection, with its slot.
    New(Slot),
    /// The same client port set this connection up already and its answer may have
    /// been lost: the same answer again, no second slot.
    Again(Vec<u8>),
    /// No room (code 13).
    Refused,
}

/// Takes a slot for connection `setup.mc_index` of test `setup.mc_ident` from `peer`.
/// Refused when the server runs `max` connections, when that address runs
/// [`PER_ADDRESS`] other tests or half the server's connections, or when that
/// connection of that test already runs from another port (a stranger repeating a
/// setup takes one slot).
fn admit(running: &Arc<Mutex<Running>>, peer: SocketAddr, setup: &Setup, max: u32) -> Admission {
    let mut r = running.lock().unwrap_or_else(|e| e.into_inner());
    let ip = peer.ip();
    let (ident, index) = (setup.mc_ident, setup.mc_index);
    let tests = r.by_address.get(&ip).map_or(&[][..], Vec::as_slice);
    if let Some(c) = tests
        .iter()
        .filter(|t| t.0 == ident)
        .flat_map(|t| &t.1)
        .find(|c| c.index == index)
    {
        return match &c.answer {
            Some(answer) if c.port == peer.port() => Admission::Again(answer.clone()),
            _ => Admission::Refused,
        };
    }
    let held: usize = tests.iter().map(|t| t.1.len()).sum();
    let connection = Connection {
        index,
        port: peer.port(),
        answer: None,
    };
    if r.total >= max || held >= (max as usize / 2).max(1) {
        return Admission::Refused;
    }
    let tests = r.by_address.entry(ip).or_default();
    if let Some(t) = tests.iter_mut().find(|t| t.0 == ident) {
        t.1.push(connection);
    } else if tests.len() < PER_ADDRESS {
        tests.push((ident, vec![connection]));
    } else {
        return Admission::Refused;
    }
    r.total += 1;
    Admission::New(Slot {
        running: running.clone(),
        ip,
        ident,
        index,
    })
}

/// How a Setup Request (`raw`, its bytes) is answered at `now_s` (Unix seconds):
/// accepted, with the test's keys when it authenticated, or the refusal code (0: no
/// request, not answered).
pub fn judge_setup(
    setup: &Setup,
    raw: &[u8],
    keys: Option<&KeyFile>,
    now_s: i64,
) -> Result<Option<Signer>, u8> {
    if setup.request != SETUP_REQUEST {
        return Err(0);
    }
    // Versions before 20 authenticate otherwise: a server with keys takes 20 only.
    let oldest = if keys.is_some() {
        CURRENT_LAYOUT
    } else {
        PROTOCOL_MIN
    };
    if !(oldest..=PROTOCOL_VERSION).contains(&setup.version) {
        return Err(2);
    }
    if setup.mc_count == 0 || setup.mc_count > 24 || setup.mc_index >= setup.mc_count {
        return Err(12);
    }
    match (setup.auth.mode, keys) {
        (0, None) => Ok(None),
        (_, None) => Err(4),
        (0, Some(_)) => Err(5),
        (m, Some(_)) if m != auth::MODE => Err(6),
        (_, Some(file)) => {
            let shared = file.get(setup.auth.key_id).ok_or(7u8)?;
            let keys = auth::derive(shared, setup.auth.unix_time);
            if !auth::verify(raw, &keys.client) {
                return Err(7);
            }
            if (i64::from(setup.auth.unix_time) - now_s).abs() > auth::TIME_WINDOW_S {
                return Err(8);
            }
            Ok(Some(Signer {
                keys,
                key_id: setup.auth.key_id,
            }))
        }
    }
}

/// Binds the control port.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<UdpSocket> {
    use anyhow::Context as _;
    let control = UdpSocket::bind(addr)
        .await
        .with_context(|| format!("cannot bind the UDPST control port {addr}"))?;
    tracing::info!(udpst = %control.local_addr()?, "UDPST server listening");
    Ok(control)
}

/// Serves the control port until `stop`.
pub async fn serve(
    control: UdpSocket,
    config: Config,
    counters: Arc<Counters>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let running = Arc::new(Mutex::new(Running::default()));
    let mut quiet = Quiet::default();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, peer) = tokio::select! {
            r = control.recv_from(&mut buf) => match r {
                Ok(got) => got,
                Err(e) => {
                    // An ICMP error from an earlier answer: nothing to do with the next.
                    tracing::debug!(error = %e, "UDPST control port");
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let setup = match Pdu::decode(&buf[..n]) {
            Ok(Pdu::Setup(s)) => s,
            Ok(_) | Err(_) => {
                counters.ignored.fetch_add(1, Ordering::Relaxed);
                refuse_other_version(&control, &buf[..n], peer).await;
                continue;
            }
        };
        let now_s = sonde_udpst::now_ns() / 1_000_000_000;
        let answer = match judge_setup(&setup, &buf[..n], config.keys.as_deref(), now_s) {
            Err(0) => {
                counters.ignored.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(code) => Err(code),
            Ok(signer) => match admit(&running, peer, &setup, config.max_tests) {
                Admission::New(slot) => Ok((slot, signer)),
                Admission::Again(answer) => {
                    let _ = control.send_to(&answer, peer).await;
                    continue;
                }
                Admission::Refused => Err(SETUP_BUSY),
            },
        };
        match answer {
            Ok((slot, signer)) => {
                let test = Test {
                    setup,
                    peer,
                    slot,
                    signer,
                };
                open(&control, test, config.clone(), &counters, &stop).await
            }
            Err(code) => {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                quiet.refused(peer, code);
                let _ = control
                    .send_to(&response(&setup, code, 0).encode(), peer)
                    .await;
            }
        }
    }
}

/// Refusals are logged at most once a second, with how many the line stands for: a
/// stranger's flood of setups must not flood the log.
#[derive(Debug, Default)]
struct Quiet {
    last: Option<std::time::Instant>,
    since: u64,
}

impl Quiet {
    fn refused(&mut self, peer: SocketAddr, code: u8) {
        self.since += 1;
        if self
            .last
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1))
        {
            return;
        }
        tracing::info!(%peer, code, reason = SetupAnswer::reason(code), refusals = self.since, "UDPST setup refused");
        self.last = Some(std::time::Instant::now());
        self.since = 0;
    }
}

/// A Setup Response to `setup` with `code` and the test port.
fn response(setup: &Setup, code: u8, port: u16) -> Setup {
    Setup {
        version: if code == 2 {
            PROTOCOL_VERSION
        } else {
            setup.version
        },
        request: SETUP_RESPONSE,
        response: code,
        test_port: port,
        // Signed by `seal` when accepted with a key; a refusal carries no signature.
        auth: Auth::default(),
        ..*setup
    }
}

/// A setup of another protocol version (another length) gets a refusal naming ours.
async fn refuse_other_version(control: &UdpSocket, datagram: &[u8], peer: SocketAddr) {
    if datagram.len() < 4 || datagram.len() == SETUP_LEN || datagram[..2] != SETUP_ID.to_be_bytes()
    {
        return;
    }
    let version = u16::from_be_bytes([datagram[2], datagram[3]]);
    tracing::info!(%peer, version, "UDPST setup of another protocol version refused");
    let ours = Setup {
        version: PROTOCOL_VERSION,
        mc_index: 0,
        mc_count: 1,
        mc_ident: 0,
        request: SETUP_RESPONSE,
        response: 2,
        max_bandwidth: 0,
        test_port: 0,
        modifiers: 0,
        auth: Auth::default(),
    };
    let _ = control.send_to(&ours.encode(), peer).await;
}

/// An accepted setup.
#[derive(Debug)]
struct Test {
    setup: Setup,
    peer: SocketAddr,
    slot: Slot,
    signer: Option<Signer>,
}

/// Opens the test socket of an accepted setup, answers with its port, knocks from it
/// (the Null Request, which opens the client's firewall for the test port) and runs
/// the test on a task of its own.
async fn open(
    control: &UdpSocket,
    test: Test,
    config: Config,
    counters: &Arc<Counters>,
    stop: &tokio::sync::watch::Receiver<bool>,
) {
    let Test {
        setup,
        peer,
        slot,
        signer,
    } = test;
    let local = control
        .local_addr()
        .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |a| {
            SocketAddr::new(a.ip(), 0)
        });
    let socket = match UdpSocket::bind(local).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "UDPST: no test socket");
            counters.refused.fetch_add(1, Ordering::Relaxed);
            let _ = control
                .send_to(&response(&setup, SETUP_BUSY, 0).encode(), peer)
                .await;
            return;
        }
    };
    sonde_udpst::size_buffers(&socket);
    let port = socket.local_addr().map_or(0, |a| a.port());
    counters.accepted.fetch_add(1, Ordering::Relaxed);
    let answer = seal(signer.as_ref(), response(&setup, 1, port).encode());
    slot.answered(&answer);
    let _ = control.send_to(&answer, peer).await;
    // The Null Request opens a firewall on the way; clients before 20 do not expect it.
    if setup.version >= CURRENT_LAYOUT {
        let null = Null {
            version: setup.version,
            request: 1,
            response: 0,
            reserved: 0,
            auth: Auth::default(),
        };
        let _ = socket
            .send_to(&seal(signer.as_ref(), null.encode()), peer)
            .await;
    }
    let counters = counters.clone();
    let mut stop = stop.clone();
    tokio::spawn(async move {
        let _slot = slot;
        tokio::select! {
            ok = test::run(socket, setup, peer, config, signer) => {
                let c = if ok { &counters.completed } else { &counters.failed };
                c.fetch_add(1, Ordering::Relaxed);
            }
            _ = stop.changed() => {}
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(ident: u16, index: u8, count: u8) -> Setup {
        Setup::request(ident, index, count)
    }

    /// The slot of an admitted setup (panics otherwise).
    fn slot(a: Admission) -> Slot {
        match a {
            Admission::New(slot) => slot,
            other => panic!("not admitted: {other:?}"),
        }
    }

    #[test]
    fn slots_are_capped_in_total_and_per_address_and_freed_on_drop() {
        let running = Arc::new(Mutex::new(Running::default()));
        let a = SocketAddr::from(([192, 0, 2, 1], 4000));
        let b = SocketAddr::from(([192, 0, 2, 2], 4000));
        let refused = |peer, s| matches!(admit(&running, peer, &s, 10), Admission::Refused);
        // Three connections of one test from a, then a second test: fine.
        let one: Vec<Slot> = (0..3)
            .map(|i| slot(admit(&running, a, &setup(7, i, 3), 10)))
            .collect();
        assert!(refused(a, setup(7, 0, 3)), "a repeated connection");
        let second = slot(admit(&running, a, &setup(8, 0, 1), 10));
        assert!(refused(a, setup(9, 0, 1)), "a third test from a");
        let fifth = slot(admit(&running, a, &setup(8, 1, 3), 10));
        assert!(refused(a, setup(8, 2, 3)), "a holds 5 of 10: half");
        let others: Vec<Slot> = (0..5)
            .map(|i| slot(admit(&running, b, &setup(7, i, 5), 10)))
            .collect();
        let c = SocketAddr::from(([192, 0, 2, 3], 4000));
        assert!(refused(c, setup(1, 0, 1)), "full");
        drop(one);
        drop(second);
        drop(fifth);
        drop(others);
        let r = running.lock().expect("lock");
        assert_eq!(r.total, 0);
        assert!(r.by_address.is_empty());
    }

    #[test]
    fn a_repeated_setup_gets_its_answer_again_from_its_own_port_only() {
        let running = Arc::new(Mutex::new(Running::default()));
        let a = SocketAddr::from(([192, 0, 2, 1], 4000));
        let first = slot(admit(&running, a, &setup(7, 0, 1), 10));
        // Not answered yet: a repeat waits for nothing, it is refused.
        assert!(matches!(
            admit(&running, a, &setup(7, 0, 1), 10),
            Admission::Refused
        ));
        first.answered(b"the answer");
        match admit(&running, a, &setup(7, 0, 1), 10) {
            Admission::Again(answer) => assert_eq!(answer, b"the answer"),
            other => panic!("{other:?}"),
        }
        let other_port = SocketAddr::from(([192, 0, 2, 1], 4001));
        assert!(matches!(
            admit(&running, other_port, &setup(7, 0, 1), 10),
            Admission::Refused
        ));
        assert_eq!(running.lock().expect("lock").total, 1, "one slot for all");
        drop(first);
        let _again = slot(admit(&running, a, &setup(7, 0, 1), 10));
    }

    #[test]
    fn setups_are_judged_as_ob_udpst_judges_them() {
        let ok = setup(1, 0, 1);
        let judge = |s: &Setup| judge_setup(s, &s.encode(), None, 0).map(|_| ());
        assert_eq!(judge(&ok), Ok(()));
        assert_eq!(judge(&Setup { version: 11, ..ok }), Ok(()), "OB-UDPST 8");
        assert_eq!(judge(&Setup { version: 10, ..ok }), Err(2));
        assert_eq!(judge(&Setup { version: 21, ..ok }), Err(2));
        assert_eq!(judge(&Setup { mc_count: 0, ..ok }), Err(12));
        assert_eq!(
            judge(&Setup {
                mc_index: 3,
                mc_count: 3,
                ..ok
            }),
            Err(12)
        );
        let keyed = Setup {
            auth: Auth {
                mode: 1,
                ..Auth::default()
            },
            ..ok
        };
        assert_eq!(judge(&keyed), Err(4), "no key configured here");
        assert_eq!(
            judge(&Setup {
                request: SETUP_RESPONSE,
                ..ok
            }),
            Err(0),
            "a response is no request: ignored"
        );
    }

    #[test]
    fn an_authenticated_setup_needs_the_right_key_and_a_fresh_time() {
        let keys = KeyFile::parse("1,right-key\n").expect("keys");
        let now = 1_764_720_000u32;
        let signed = |shared: &[u8], id: u8, at: u32| {
            let mut raw = setup(1, 0, 1).encode();
            auth::sign(&mut raw, &auth::derive(shared, at).client, at, id);
            raw
        };
        let judge = |raw: &[u8]| {
            let Ok(Pdu::Setup(s)) = Pdu::decode(raw) else {
                panic!("a setup");
            };
            judge_setup(&s, raw, Some(&keys), i64::from(now)).map(|signer| signer.is_some())
        };
        assert_eq!(judge(&signed(b"right-key", 1, now)), Ok(true));
        assert_eq!(judge(&signed(b"wrong-key", 1, now)), Err(7), "wrong key");
        assert_eq!(judge(&signed(b"right-key", 2, now)), Err(7), "unknown id");
        assert_eq!(judge(&signed(b"right-key", 1, now - 6)), Err(8), "stale");
        assert_eq!(judge(&setup(1, 0, 1).encode()), Err(5), "none at all");
        let old = Setup {
            version: 11,
            ..setup(1, 0, 1)
        };
        assert_eq!(
            judge(&old.encode()),
            Err(2),
            "version 11 cannot authenticate"
        );
        let mut mode2 = signed(b"right-key", 1, now);
        mode2[56 - auth::AUTH_BYTES] = 2;
        assert_eq!(judge(&mode2), Err(6));
    }
}
