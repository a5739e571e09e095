//! The collector's certificate authority: it signs the collector's server certificate
//! and the agents' client certificates, whose common name is the agent id.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// PKI errors.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Generating or signing failed.
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// A certificate and its private key.
#[derive(Debug)]
pub struct Issued {
    /// The certificate.
    pub cert: CertificateDer<'static>,
    /// Its key (PKCS#8).
    pub key: PrivateKeyDer<'static>,
}

/// The collector's CA.
#[derive(Debug)]
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
}

fn key_der(key: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
}

impl Ca {
    /// A new CA named `name`.
    pub fn generate(name: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key)?.der().clone();
        Ok(Ca {
            issuer: Issuer::new(params, key),
            cert,
        })
    }

    /// The CA certificate agents pin.
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    fn issue(
        &self,
        cn: &str,
        names: Vec<String>,
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer)?.der().clone();
        Ok(Issued {
            cert,
            key: key_der(&key),
        })
    }

    /// The collector's server certificate for these DNS names or addresses.
    pub fn issue_server(&self, names: Vec<String>) -> Result<Issued, PkiError> {
        let cn = names
            .first()
            .cloned()
            .unwrap_or_else(|| "sonde-collector".into());
        self.issue(&cn, names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// An agent's client certificate; its common name is the agent id.
    pub fn issue_agent(&self, agent_id: &str) -> Result<Issued, PkiError> {
        self.issue(agent_id, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// The agent id (common name) of an agent's certificate.
pub fn agent_id_of(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}
