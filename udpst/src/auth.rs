//! Authentication mode 1 of the UDP Speed Test Protocol (RFC 9946, protocol version
//! 20): a shared key, known to client and server by a key id, never crosses the wire.
//! From it and the client's Setup Request time, both sides derive a client key and a
//! server key (NIST SP 800-108 KDF in counter mode with HMAC-SHA256, label "UDPSTP",
//! context the time in decimal, 64 bytes: OB-UDPST's KBKDF). Each control PDU (Setup,
//! Null, Test Activation) then carries the HMAC-SHA256 of its bytes, digest and checksum
//! zeroed, under the sender's key; a Setup Request's time must be within 5 s of the
//! server's clock. Load and Status PDUs are not authenticated.
//!
//! The integrity fields are the last 41 bytes of those three PDUs: mode (1), time (4),
//! digest (32), key id (1), reserved (1), checksum (2).

use ring::hmac;

/// The integrity fields' length at the end of Setup, Null and Test Activation PDUs.
pub const AUTH_BYTES: usize = 41;
/// How far a Setup Request's time may be from the server's clock, s.
pub const TIME_WINDOW_S: i64 = 5;
/// The authentication mode this module speaks.
pub const MODE: u8 = 1;

/// The two keys of a test, derived from the shared key.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    /// Signs what the client sends.
    pub client: [u8; 32],
    /// Signs what the server sends.
    pub server: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

/// The keys of a test whose Setup Request carried `unix_time`.
pub fn derive(shared: &[u8], unix_time: u32) -> Keys {
    let prf = hmac::Key::new(hmac::HMAC_SHA256, shared);
    let context = unix_time.to_string();
    let mut out = [0u8; 64];
    for (i, block) in out.chunks_mut(32).enumerate() {
        let mut ctx = hmac::Context::with_key(&prf);
        ctx.update(&(i as u32 + 1).to_be_bytes());
        ctx.update(b"UDPSTP");
        ctx.update(&[0]);
        ctx.update(context.as_bytes());
        ctx.update(&512u32.to_be_bytes());
        block.copy_from_slice(ctx.sign().as_ref());
    }
    let (mut client, mut server) = ([0u8; 32], [0u8; 32]);
    client.copy_from_slice(&out[..32]);
    server.copy_from_slice(&out[32..]);
    Keys { client, server }
}

/// The mode byte of a control PDU (0 for a PDU too short to have one).
pub fn mode(pdu: &[u8]) -> u8 {
    pdu.len().checked_sub(AUTH_BYTES).map_or(0, |at| pdu[at])
}

/// The time a control PDU was signed at.
pub fn unix_time(pdu: &[u8]) -> u32 {
    pdu.len().checked_sub(AUTH_BYTES).map_or(0, |at| {
        u32::from_be_bytes([pdu[at + 1], pdu[at + 2], pdu[at + 3], pdu[at + 4]])
    })
}

/// The key id a control PDU names.
pub fn key_id(pdu: &[u8]) -> u8 {
    pdu.len()
        .checked_sub(AUTH_BYTES)
        .map_or(0, |at| pdu[at + 37])
}

/// Signs an encoded control PDU in place with `key`: mode 1, `unix_time`, `key_id`,
/// no checksum, and the digest.
pub fn sign(pdu: &mut [u8], key: &[u8; 32], unix_time: u32, key_id: u8) {
    let Some(at) = pdu.len().checked_sub(AUTH_BYTES) else {
        return;
    };
    pdu[at] = MODE;
    pdu[at + 1..at + 5].copy_from_slice(&unix_time.to_be_bytes());
    pdu[at + 5..at + 37].fill(0);
    pdu[at + 37] = key_id;
    pdu[at + 38] = 0;
    pdu[at + 39..at + 41].fill(0);
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), pdu);
    pdu[at + 5..at + 37].copy_from_slice(tag.as_ref());
}

/// Whether an encoded control PDU carries mode 1 and a digest `key` made (compared in
/// constant time).
pub fn verify(pdu: &[u8], key: &[u8; 32]) -> bool {
    let Some(at) = pdu.len().checked_sub(AUTH_BYTES) else {
        return false;
    };
    if pdu[at] != MODE {
        return false;
    }
    let mut zeroed = pdu.to_vec();
    zeroed[at + 5..at + 37].fill(0);
    zeroed[at + 39..at + 41].fill(0);
    hmac::verify(
        &hmac::Key::new(hmac::HMAC_SHA256, key),
        &zeroed,
        &pdu[at + 5..at + 37],
    )
    .is_ok()
}

/// Shared keys by id, as OB-UDPST's key files hold them: one `ID,KEY` a line (spaces
/// and tabs ignored, `#` starts a comment, keys of 64 characters at most).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KeyFile {
    keys: Vec<(u8, Vec<u8>)>,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<u8> = self.keys.iter().map(|k| k.0).collect();
        write!(f, "KeyFile(ids {ids:?})")
    }
}

impl KeyFile {
    /// Parses a key file; a bad line is named.
    pub fn parse(text: &str) -> Result<KeyFile, String> {
        let mut keys = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line: String = raw
                .split('#')
                .next()
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            if line.is_empty() {
                continue;
            }
            let (id, key) = line
                .split_once(',')
                .ok_or_else(|| format!("line {}: expected ID,KEY", n + 1))?;
            let id: u8 = id
                .parse()
                .map_err(|_| format!("line {}: key id {id:?} is not 0 to 255", n + 1))?;
            if key.is_empty() || key.len() > 64 {
                return Err(format!("line {}: a key has 1 to 64 characters", n + 1));
            }
            keys.push((id, key.as_bytes().to_vec()));
        }
        if keys.is_empty() {
            return Err("no key in the file".into());
        }
        Ok(KeyFile { keys })
    }

    /// Reads and parses `path`.
    pub fn read(path: &std::path::Path) -> Result<KeyFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the key file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("key file {}: {e}", path.display()))
    }

    /// The key of `id`.
    pub fn get(&self, id: u8) -> Option<&[u8]> {
        self.keys.iter().find(|k| k.0 == id).map(|k| k.1.as_slice())
    }

    /// The first key and its id.
    pub fn first(&self) -> (u8, &[u8]) {
        let (id, key) = &self.keys[0];
        (*id, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn keys_derive_as_sp_800_108_counter_mode_with_hmac_sha256() {
        // Vectors from an independent KBKDF (Python's cryptography, KBKDFHMAC: counter
        // of 4 bytes before the label "UDPSTP", a zero byte, the decimal time, L of 4
        // bytes), as OpenSSL's KBKDF derives them for OB-UDPST.
        let k = derive(b"sonde-test-key", 1_764_720_000);
        assert_eq!(
            k.client.to_vec(),
            hex("cbf2d44d0f25e8b7873949a7f5a827fb06868c638cd630846183b59770c0e5ce")
        );
        assert_eq!(
            k.server.to_vec(),
            hex("863c40e762024e69009e8727cb1ffab1a6642ed9967bd687a6efac388927d038")
        );
        let k = derive(
            b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            4_000_000_000,
        );
        assert_eq!(
            k.client.to_vec(),
            hex("a5d61339c68d6126707382af8a653924492ad7fc121d1ff0625813a818f3abe2")
        );
    }

    #[test]
    fn a_signed_setup_carries_the_digest_an_independent_hmac_computes() {
        let mut pdu = vec![0u8; 56];
        pdu[..2].copy_from_slice(&[0xac, 0xe1]);
        pdu[2..4].copy_from_slice(&20u16.to_be_bytes());
        pdu[5] = 1;
        pdu[6..8].copy_from_slice(&0x1234u16.to_be_bytes());
        pdu[8] = 1;
        let keys = derive(b"sonde-test-key", 1_764_720_000);
        sign(&mut pdu, &keys.client, 1_764_720_000, 3);
        assert_eq!(
            pdu[20..52].to_vec(),
            hex("44b083d65551746d3a0e4747052e5be9d711a4d8305c8a6b770091962e91faad")
        );
        assert_eq!(
            (mode(&pdu), unix_time(&pdu), key_id(&pdu)),
            (1, 1_764_720_000, 3)
        );
        assert!(verify(&pdu, &keys.client));
        assert!(!verify(&pdu, &keys.server), "the other side's key");
        let wrong = derive(b"another key", 1_764_720_000);
        assert!(!verify(&pdu, &wrong.client));
        let mut tampered = pdu.clone();
        tampered[6] ^= 1;
        assert!(!verify(&tampered, &keys.client), "an edited field");
        assert!(!verify(&pdu[..10], &keys.client), "too short");
    }

    #[test]
    fn key_files_are_read_as_ob_udpst_writes_them() {
        let f =
            KeyFile::parse("# keys\n 1, first-key # a comment\n\n7,\tseventh\n").expect("parse");
        assert_eq!(f.get(1), Some(&b"first-key"[..]));
        assert_eq!(f.get(7), Some(&b"seventh"[..]));
        assert_eq!(f.first().0, 1);
        assert!(f.get(2).is_none());
        assert!(KeyFile::parse("1 first")
            .expect_err("no comma")
            .contains("line 1"));
        assert!(KeyFile::parse("300,k")
            .expect_err("id too big")
            .contains("0 to 255"));
        assert!(KeyFile::parse("# none\n").is_err());
        assert!(!format!("{f:?}").contains("first-key"), "no key in logs");
    }
}
