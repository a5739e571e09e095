//! Enrolment: a one-time token and a certificate request become an agent's identity.
//! The request is checked before the token is used (a bad request uses nothing up),
//! the token is used in the same transaction that records the enrolment (two agents
//! can never enrol with one token), then the certificate is signed.

use crate::ca::{CertificateAuthority, PkiError};
use chrono::{DateTime, Utc};
use sonde_proto::wire::{self, EnrolToken, Enroll, Enrolled, RejectReason};
use sonde_store::{EnrolError, Enrolments, Site};
use std::time::Duration;

/// How long an enrolment token lives by default.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// SHA-256 (hex) of a token's secret: what the store keeps.
pub fn token_hash(token: &EnrolToken) -> String {
    wire::hex(ring::digest::digest(&ring::digest::SHA256, &token.secret).as_ref())
}

/// A fresh token for the CA `ca`.
pub fn new_token(ca: &dyn CertificateAuthority) -> EnrolToken {
    EnrolToken {
        secret: rand::random(),
        ca_fingerprint: crate::ca::fingerprint(ca.cert()),
    }
}

/// An agent id for an agent of `building`: the building, cleaned to `[a-z0-9-]`, and
/// a random suffix.
pub fn new_agent_id(building: &str) -> String {
    let mut slug: String = building
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    slug = slug.trim_matches('-').to_string();
    if slug.is_empty() {
        slug = "agent".into();
    }
    format!("{slug}-{}", wire::hex(&rand::random::<[u8; 3]>()))
}

/// Enrols the sender of `enroll` at `now`: the identity it was given, and the site, or
/// why not (the reason to send and count, and one line).
pub fn enrol(
    ca: &dyn CertificateAuthority,
    store: &dyn Enrolments,
    enroll: &Enroll,
    now: DateTime<Utc>,
) -> Result<(Enrolled, Site), (RejectReason, String)> {
    let token: EnrolToken = enroll
        .token
        .parse()
        .map_err(|e| (RejectReason::TokenUnknown, e))?;
    // Check the request first (a bad one uses nothing up), then use the token.
    let request = ca
        .check_request(&enroll.csr_pem)
        .map_err(|e| (RejectReason::BadCsr, e.to_string()))?;
    let name = |site: &Site| new_agent_id(&site.building);
    let (agent_id, site) = store
        .enrol(&token_hash(&token), now, &name)
        .map_err(|e| match e {
            EnrolError::Unknown => (RejectReason::TokenUnknown, "unknown token".into()),
            e @ EnrolError::Expired(_) => (RejectReason::TokenExpired, e.to_string()),
            e @ EnrolError::Used(_) => (RejectReason::TokenUsed, e.to_string()),
            EnrolError::Store(e) => (RejectReason::Unavailable, format!("store: {e}")),
        })?;
    let cert_pem = ca
        .sign_agent_request(request, &agent_id)
        .map_err(|e| match e {
            e @ PkiError::Csr(_) => (RejectReason::BadCsr, e.to_string()),
            e => (RejectReason::Unavailable, e.to_string()),
        })?;
    let enrolled = Enrolled {
        agent_id,
        cert_pem,
        ca_pem: crate::ca::cert_pem(ca.cert()),
        quartier: site.quartier.clone(),
        building: site.building.clone(),
    };
    Ok((enrolled, site))
}
