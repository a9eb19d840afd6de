//! The fleet link's TLS seam: the console's own certificate authority, the server certificate it
//! signs, and the client side that trusts only a *pinned* CA.
//!
//! Every console of a fleet shares one CA, made at the first start ([`ConsoleTls::load_or_create`])
//! and kept in the console's data directory (key 0600, directory 0700). Agents and the operator
//! CLI pin the CA by the SHA-256 of its DER certificate ([`CaPin`], the value `openssl x509
//! -noout -fingerprint -sha256` prints), the pattern of kubeadm's discovery hash and Elastic's
//! `ca_trusted_fingerprint`: a pin is short enough to paste into a one-line install command,
//! and it names one CA, not "any CA the host trusts". Several pins may be given, so a CA can be
//! rotated without cutting agents off. A wrong pin is refused with the pin the console
//! presented, so an operator can tell a rotation from an interception.
//!
//! The server certificate is short-lived compared with the CA (a year) and re-issued at start
//! when it is within 30 days of expiry or lacks a name asked for: agents pin the CA, not the
//! server certificate, so a re-issue needs no agent to change anything.
//!
//! Everything runs on rustls with the *ring* provider; no system trust store is consulted.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

pub use rustls::ServerConfig;
pub use tokio_rustls::TlsAcceptor;

/// Days before a server certificate's expiry at which it is re-issued (and warned about).
pub const RENEW_WITHIN_DAYS: i64 = 30;
/// Lifetime of a server certificate the console issues itself.
const SERVER_CERT_DAYS: i64 = 365;
/// Lifetime of the console CA.
const CA_DAYS: i64 = 20 * 365;
/// Largest PEM file read (a chain of a few certificates, or one key).
const MAX_PEM_BYTES: u64 = 256 * 1024;

/// Why TLS material could not be made, read or used. Each variant names the file or value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error(
        "CA pin {given:?} is not a SHA-256 fingerprint (64 hex digits, `sha256:` prefix and `:` separators allowed)"
    )]
    BadPin { given: String },
    #[error("making a certificate: {0}")]
    Generate(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn file_error(path: &Path, message: impl fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// The SHA-256 of a CA certificate's DER encoding: what agents and the CLI trust.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CaPin([u8; 32]);

impl CaPin {
    /// The pin of `cert` (DER).
    pub fn of(cert: &[u8]) -> CaPin {
        CaPin(Sha256::digest(cert).into())
    }

    /// Parse `sha256:<hex>`, `<hex>`, or OpenSSL's `AB:CD:…` form; case does not matter.
    pub fn parse(text: &str) -> Result<CaPin, TlsError> {
        let bad = || TlsError::BadPin {
            given: text.chars().take(120).collect(),
        };
        let t = text.trim();
        let t = t
            .strip_prefix("sha256:")
            .or_else(|| t.strip_prefix("SHA256:"))
            .or_else(|| t.strip_prefix("sha256 Fingerprint="))
            .or_else(|| t.strip_prefix("SHA256 Fingerprint="))
            .unwrap_or(t);
        let digits: String = t.chars().filter(|c| *c != ':').collect();
        let bytes = hex::decode(&digits).map_err(|_| bad())?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(CaPin)
            .map_err(|_| bad())
    }

    /// Parse a comma- or space-separated list (an environment variable's value).
    pub fn parse_list(text: &str) -> Result<Vec<CaPin>, TlsError> {
        text.split([',', ' ', '\n'])
            .filter(|s| !s.trim().is_empty())
            .map(CaPin::parse)
            .collect()
    }
}

impl fmt::Display for CaPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for CaPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for CaPin {
    type Err = TlsError;
    fn from_str(s: &str) -> Result<CaPin, TlsError> {
        CaPin::parse(s)
    }
}

impl serde::Serialize for CaPin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for CaPin {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<CaPin, D::Error> {
        let s = String::deserialize(d)?;
        CaPin::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// What a client trusts when it connects to a console.
#[derive(Debug, Clone)]
pub enum Trust {
    /// A console whose chain holds a CA certificate with one of these fingerprints.
    Pinned(Vec<CaPin>),
    /// A console whose certificate chains to one of these CA certificates (a CA file).
    CaCerts(Vec<CertificateDer<'static>>),
    /// Plain `http://` on a loopback address, for tests and drills; nothing is encrypted.
    PlainLoopback,
}

impl Trust {
    /// Trust the CA certificates in a PEM file.
    pub fn from_ca_file(path: &Path) -> Result<Trust, TlsError> {
        let certs = read_certs(path)?;
        if certs.is_empty() {
            return Err(file_error(path, "no certificate in the file"));
        }
        Ok(Trust::CaCerts(certs))
    }

    /// The pins this trust amounts to (a CA file's certificates are pinned by their hash).
    pub fn pins(&self) -> Vec<CaPin> {
        match self {
            Trust::Pinned(p) => p.clone(),
            Trust::CaCerts(c) => c.iter().map(|c| CaPin::of(c)).collect(),
            Trust::PlainLoopback => Vec::new(),
        }
    }
}

/// The *ring* provider. rustls 0.23.48 marks it deprecated for its lack of post-quantum key
/// exchange; aws-lc-rs has it but needs a C and CMake build on every agent host's build. The
/// link trusts only its own pinned CA, so that is the trade taken for now.
#[allow(deprecated, reason = "ring kept on purpose: see the doc comment")]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls client configuration that trusts only what `trust` says (no system roots), and
/// presents `identity` (an agent's key and certificate) when given.
pub fn client_config(
    trust: &Trust,
    identity: Option<&AgentIdentity>,
) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match trust {
        Trust::Pinned(pins) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCa {
                pins: pins.clone(),
                provider,
            })),
        Trust::CaCerts(certs) => {
            let mut roots = RootCertStore::empty();
            for c in certs {
                roots
                    .add(c.clone())
                    .map_err(|e| TlsError::Config(format!("CA certificate: {e}")))?;
            }
            builder.with_root_certificates(roots)
        }
        // Never used to connect (the client refuses https:// then); an empty store trusts
        // nothing should it ever be.
        Trust::PlainLoopback => builder.with_root_certificates(RootCertStore::empty()),
    };
    match identity {
        Some(id) => builder
            .with_client_auth_cert(vec![id.cert.clone()], id.key.clone_key())
            .map_err(|e| TlsError::Config(format!("agent certificate and key: {e}"))),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// Lifetime of an agent's client certificate; it renews when half of it is left.
pub const AGENT_CERT_DAYS: i64 = 30;

/// An agent's own key and the client certificate the console issued for it (mutual TLS).
/// The key is made on the host at enrollment and never leaves it.
pub struct AgentIdentity {
    key: PrivateKeyDer<'static>,
    cert: CertificateDer<'static>,
    /// Unix seconds.
    not_after: i64,
}

impl fmt::Debug for AgentIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentIdentity")
            .field("not_after", &self.not_after)
            .finish()
    }
}

impl AgentIdentity {
    /// A new key, as PEM, and a certificate request for it (PEM) to send to the console.
    pub fn new_key() -> Result<(String, String), TlsError> {
        let key = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
        let csr = csr_for(&key)?;
        Ok((key.serialize_pem(), csr))
    }

    /// A request for another certificate on the same key (renewal).
    pub fn request_for(key_pem: &str) -> Result<String, TlsError> {
        let key = rcgen::KeyPair::from_pem(key_pem)
            .map_err(|e| TlsError::Generate(format!("agent key: {e}")))?;
        csr_for(&key)
    }

    /// The key and the certificate the console issued, both PEM.
    pub fn from_pem(key_pem: &str, cert_pem: &str) -> Result<AgentIdentity, TlsError> {
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| TlsError::Config(format!("agent key: {e}")))?;
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| TlsError::Config(format!("agent certificate: {e}")))?;
        let info = cert_info(&cert).map_err(TlsError::Config)?;
        Ok(AgentIdentity {
            key,
            cert,
            not_after: info.not_after,
        })
    }

    /// Unix seconds at which the certificate expires.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// Whether to renew now: less than half of [`AGENT_CERT_DAYS`] left.
    pub fn wants_renewal(&self, now_unix: i64) -> bool {
        self.not_after.saturating_sub(now_unix) < AGENT_CERT_DAYS * 86_400 / 2
    }
}

fn csr_for(key: &rcgen::KeyPair) -> Result<String, TlsError> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ringfence agent");
    params
        .serialize_request(key)
        .and_then(|csr| csr.pem())
        .map_err(|e| TlsError::Generate(format!("certificate request: {e}")))
}

/// Largest certificate request the console reads.
pub const MAX_CSR_BYTES: usize = 4096;

/// The console's CA as the issuer of agents' client certificates.
pub struct ConsoleCa {
    ca_pem: String,
    ca_key_pem: String,
    ca: CertificateDer<'static>,
}

impl fmt::Debug for ConsoleCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConsoleCa({})", CaPin::of(&self.ca))
    }
}

impl ConsoleCa {
    /// The CA in a console's TLS directory.
    pub fn load(dir: &Path) -> Result<ConsoleCa, TlsError> {
        let cert_path = dir.join(files::CA_CERT);
        let ca_pem = read_text(&cert_path)?;
        let ca = pem_cert(&ca_pem, &cert_path)?;
        Ok(ConsoleCa {
            ca_key_pem: read_text(&dir.join(files::CA_KEY))?,
            ca_pem,
            ca,
        })
    }

    /// The CA certificate (what verifies agents' client certificates).
    pub fn cert(&self) -> CertificateDer<'static> {
        self.ca.clone()
    }

    /// A client certificate for `agent_id` on the key of `csr_pem`, valid [`AGENT_CERT_DAYS`]:
    /// (certificate PEM, expiry in unix seconds). Whatever the request asks for, the
    /// certificate names the agent (its common name) and may only authenticate a client.
    pub fn issue_agent_cert(
        &self,
        csr_pem: &str,
        agent_id: &str,
    ) -> Result<(String, i64), TlsError> {
        if csr_pem.len() > MAX_CSR_BYTES {
            return Err(TlsError::Generate(format!(
                "certificate request over {MAX_CSR_BYTES} bytes"
            )));
        }
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| TlsError::Generate(format!("certificate request: {e}")))?;
        let key = rcgen::KeyPair::from_pem(&self.ca_key_pem)
            .map_err(|e| TlsError::Generate(format!("CA key: {e}")))?;
        let issuer = rcgen::Issuer::from_ca_cert_pem(&self.ca_pem, key)
            .map_err(|e| TlsError::Generate(format!("CA certificate: {e}")))?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, agent_id);
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, AGENT_CERT_DAYS);
        let not_after = params.not_after.unix_timestamp();
        csr.params = params;
        let cert = csr
            .signed_by(&issuer)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        Ok((cert.pem(), not_after))
    }
}

/// The agent a client certificate names (its common name), as the console reads it from a
/// verified connection.
pub fn agent_in_cert(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, c) = X509Certificate::from_der(cert).ok()?;
    let cn = c.subject().iter_common_name().next()?.as_str().ok()?;
    Some(cn.to_owned())
}

/// Verifies a server chain against the CA certificate in it whose fingerprint is pinned:
/// the pinned certificate becomes the only trust anchor, and the usual WebPKI checks (chain,
/// validity period, the host name or address dialled) run against it.
#[derive(Debug)]
struct PinnedCa {
    pins: Vec<CaPin>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let anchor = intermediates
            .iter()
            .position(|c| self.pins.contains(&CaPin::of(c)));
        let Some(anchor) = anchor else {
            let seen = intermediates
                .last()
                .map_or_else(|| CaPin::of(end_entity), |c| CaPin::of(c));
            return Err(rustls::Error::General(format!(
                "the console presented CA {seen}, which is not pinned (pinned: {})",
                self.pins
                    .iter()
                    .map(CaPin::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let mut roots = RootCertStore::empty();
        roots.add(intermediates[anchor].clone().into_owned())?;
        let rest: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != anchor)
            .map(|(_, c)| c.clone())
            .collect();
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier.verify_server_cert(end_entity, &rest, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The console's TLS material: its CA and the server certificate chain it presents.
pub struct ConsoleTls {
    /// The server's chain: its certificate, then the CA.
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// The CA agents pin (the last certificate of the chain).
    pin: CaPin,
    /// Days until the server certificate expires (negative: expired).
    days_left: i64,
}

impl fmt::Debug for ConsoleTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleTls")
            .field("pin", &self.pin)
            .field("days_left", &self.days_left)
            .finish()
    }
}

/// File names inside the console's TLS directory.
pub mod files {
    pub const CA_CERT: &str = "ca.pem";
    pub const CA_KEY: &str = "ca.key";
    pub const SERVER_CERT: &str = "server.pem";
    pub const SERVER_KEY: &str = "server.key";
}

/// What [`ConsoleTls::load_or_create`] did, for the console's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsNotice {
    CreatedCa,
    IssuedServerCert { reason: String },
    ExpiresSoon { days_left: i64 },
}

impl ConsoleTls {
    /// Load the CA and server certificate from `dir`, creating the CA at first use and
    /// (re-)issuing the server certificate when it is missing, within [`RENEW_WITHIN_DAYS`] of
    /// expiry, or lacks one of `names` (DNS names or IP addresses).
    pub fn load_or_create(
        dir: &Path,
        names: &[String],
    ) -> Result<(ConsoleTls, Vec<TlsNotice>), TlsError> {
        create_private_dir(dir)?;
        let mut notices = Vec::new();
        let ca_cert_path = dir.join(files::CA_CERT);
        let ca_key_path = dir.join(files::CA_KEY);
        if !ca_cert_path.exists() || !ca_key_path.exists() {
            let (cert, key) = make_ca()?;
            write_private(&ca_key_path, key.as_bytes())?;
            write_private(&ca_cert_path, cert.as_bytes())?;
            notices.push(TlsNotice::CreatedCa);
        }
        let ca_pem = read_text(&ca_cert_path)?;
        let ca_key_pem = read_text(&ca_key_path)?;
        let server_path = dir.join(files::SERVER_CERT);
        let server_key_path = dir.join(files::SERVER_KEY);
        let reissue = match read_certs(&server_path) {
            Ok(chain) if server_key_path.exists() => match chain.first() {
                Some(leaf) => {
                    let info = cert_info(leaf).map_err(|e| file_error(&server_path, e))?;
                    let missing: Vec<&String> = names
                        .iter()
                        .filter(|n| !info.names.iter().any(|have| have == *n))
                        .collect();
                    if info.days_left() <= RENEW_WITHIN_DAYS {
                        Some(format!("it expires in {} days", info.days_left()))
                    } else if !missing.is_empty() {
                        Some(format!("it does not name {missing:?}"))
                    } else if chain.last().map(|c| CaPin::of(c))
                        != Some(CaPin::of(&pem_cert(&ca_pem, &ca_cert_path)?))
                    {
                        Some("it was not issued by this CA".into())
                    } else {
                        None
                    }
                }
                None => Some("the file holds no certificate".into()),
            },
            _ => Some("there is none".into()),
        };
        if let Some(reason) = reissue {
            let (cert, key) = issue_server_cert(&ca_pem, &ca_key_pem, names)?;
            write_private(&server_key_path, key.as_bytes())?;
            write_private(&server_path, format!("{cert}{ca_pem}").as_bytes())?;
            notices.push(TlsNotice::IssuedServerCert { reason });
        }
        let tls = ConsoleTls::from_files(&server_path, &server_key_path)?;
        if tls.days_left <= RENEW_WITHIN_DAYS {
            notices.push(TlsNotice::ExpiresSoon {
                days_left: tls.days_left,
            });
        }
        Ok((tls, notices))
    }

    /// An operator's own certificate chain (leaf first, its CA last) and key, PEM files.
    pub fn from_files(chain_path: &Path, key_path: &Path) -> Result<ConsoleTls, TlsError> {
        let chain = read_certs(chain_path)?;
        let leaf = chain
            .first()
            .ok_or_else(|| file_error(chain_path, "no certificate in the file"))?;
        let info = cert_info(leaf).map_err(|e| file_error(chain_path, e))?;
        let pin = CaPin::of(chain.last().unwrap_or(leaf));
        let key = PrivateKeyDer::from_pem_slice(read_text(key_path)?.as_bytes())
            .map_err(|e| file_error(key_path, format!("no private key: {e}")))?;
        Ok(ConsoleTls {
            days_left: info.days_left(),
            chain,
            key,
            pin,
        })
    }

    /// The CA agents and the CLI pin.
    pub fn pin(&self) -> CaPin {
        self.pin
    }

    /// Days until the server certificate expires.
    pub fn days_left(&self) -> i64 {
        self.days_left
    }

    /// The rustls server configuration (TLS 1.2 and 1.3, session tickets for resumption).
    /// With `client_ca`, clients may present a certificate it issued (agents' mutual TLS);
    /// clients without one (enrollment, the dashboard, the CLI) are still served, and the
    /// console decides per request what a certificate is needed for.
    pub fn server_config(
        &self,
        client_ca: Option<CertificateDer<'static>>,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                roots
                    .add(ca)
                    .map_err(|e| TlsError::Config(format!("client CA: {e}")))?;
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider(),
                )
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Config(format!("client verifier: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::Config(format!("server certificate and key: {e}")))?;
        config.ticketer = rustls::crypto::ring::Ticketer::new()
            .map_err(|e| TlsError::Config(format!("session tickets: {e}")))?;
        config.session_storage = rustls::server::ServerSessionMemoryCache::new(16 * 1024);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The names a console's server certificate should carry for `listen`: loopback names, the
/// host's name, the address itself when it is not a wildcard, and `extra`.
pub fn server_names(listen: std::net::SocketAddr, extra: &[String]) -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if !listen.ip().is_unspecified() {
        names.push(listen.ip().to_string());
    }
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            names.push(host.to_owned());
        }
    }
    names.extend(extra.iter().cloned());
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

struct CertInfo {
    not_after: i64,
    names: Vec<String>,
}

impl CertInfo {
    fn days_left(&self) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.not_after.saturating_sub(now).div_euclid(86_400)
    }
}

fn cert_info(der: &CertificateDer<'_>) -> Result<CertInfo, String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("not a certificate: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => names.push((*d).to_owned()),
                GeneralName::IPAddress(ip) => match ip.len() {
                    4 => {
                        let b: [u8; 4] = (*ip).try_into().unwrap_or_default();
                        names.push(std::net::Ipv4Addr::from(b).to_string());
                    }
                    16 => {
                        let b: [u8; 16] = (*ip).try_into().unwrap_or_default();
                        names.push(std::net::Ipv6Addr::from(b).to_string());
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Ok(CertInfo {
        not_after: cert.validity().not_after.timestamp(),
        names,
    })
}

fn ca_params() -> Result<rcgen::CertificateParams, TlsError> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Ringfence console CA");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Ringfence fleet");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn validity(params: &mut rcgen::CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    // An hour of slack for clocks a little behind.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

/// A new CA: (certificate PEM, key PEM).
fn make_ca() -> Result<(String, String), TlsError> {
    let key = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
    let mut params = ca_params()?;
    validity(&mut params, CA_DAYS);
    let cert = params
        .self_signed(&key)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A server certificate for `names`, signed by the CA: (certificate PEM, key PEM).
fn issue_server_cert(
    ca_pem: &str,
    ca_key_pem: &str,
    names: &[String],
) -> Result<(String, String), TlsError> {
    let ca_key = rcgen::KeyPair::from_pem(ca_key_pem)
        .map_err(|e| TlsError::Generate(format!("CA key: {e}")))?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(ca_pem, ca_key)
        .map_err(|e| TlsError::Generate(format!("CA certificate: {e}")))?;
    let key = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(|e| TlsError::Generate(format!("server names {names:?}: {e}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Ringfence console");
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, SERVER_CERT_DAYS);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A small text file (a PEM or a key), read through [`MAX_PEM_BYTES`].
pub(crate) fn read_text(path: &Path) -> Result<String, TlsError> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| file_error(path, e))?;
    let mut text = String::new();
    f.take(MAX_PEM_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| file_error(path, e))?;
    Ok(text)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = read_text(path)?;
    CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, format!("not a PEM certificate: {e}")))
}

fn pem_cert(pem: &str, path: &Path) -> Result<CertificateDer<'static>, TlsError> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| file_error(path, format!("not a PEM certificate: {e}")))
}

/// The CA certificate in `dir` (a console's TLS directory), to print or hand to agents.
pub fn ca_pin_in(dir: &Path) -> Result<CaPin, TlsError> {
    let path = dir.join(files::CA_CERT);
    Ok(CaPin::of(&pem_cert(&read_text(&path)?, &path)?))
}

/// Create `dir` (and parents) and make it 0700.
pub fn create_private_dir(dir: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| file_error(dir, e))
}

/// Replace `path` with `bytes`, mode 0600, through a temporary file and a rename.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| file_error(&tmp, e))?;
    f.write_all(bytes).map_err(|e| file_error(&tmp, e))?;
    f.sync_all().map_err(|e| file_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| file_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_in_every_common_spelling() {
        let hex = "ab".repeat(32);
        let pin = CaPin::parse(&hex).unwrap();
        assert_eq!(CaPin::parse(&format!("sha256:{hex}")).unwrap(), pin);
        let openssl: Vec<String> = (0..32).map(|_| "AB".to_owned()).collect();
        assert_eq!(
            CaPin::parse(&format!("sha256 Fingerprint={}", openssl.join(":"))).unwrap(),
            pin
        );
        assert_eq!(pin.to_string(), format!("sha256:{hex}"));
        assert!(CaPin::parse("sha256:abcd").is_err());
        assert!(CaPin::parse(&"zz".repeat(32)).is_err());
        assert_eq!(
            CaPin::parse_list(&format!("{hex}, sha256:{}", "cd".repeat(32)))
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn console_tls_is_made_once_private_and_reissued_for_new_names() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let tls_dir = dir.path().join("tls");
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let (first, notices) = ConsoleTls::load_or_create(&tls_dir, &names).unwrap();
        assert!(notices.contains(&TlsNotice::CreatedCa), "{notices:?}");
        assert!(first.days_left() > 300);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&tls_dir), 0o700);
        assert_eq!(mode(&tls_dir.join(files::CA_KEY)), 0o600);
        assert_eq!(mode(&tls_dir.join(files::SERVER_KEY)), 0o600);
        assert_eq!(ca_pin_in(&tls_dir).unwrap(), first.pin());

        let (again, notices) = ConsoleTls::load_or_create(&tls_dir, &names).unwrap();
        assert!(notices.is_empty(), "{notices:?}");
        assert_eq!(again.pin(), first.pin());

        let more = vec!["console.example".to_owned()];
        let (third, notices) = ConsoleTls::load_or_create(&tls_dir, &more).unwrap();
        assert!(
            matches!(&notices[..], [TlsNotice::IssuedServerCert { .. }]),
            "{notices:?}"
        );
        assert_eq!(
            third.pin(),
            first.pin(),
            "the CA stays, agents keep their pin"
        );
        assert!(third.server_config(None).is_ok());

        // Agents' certificates: issued by the same CA for the agent named, whatever the
        // request asked for; renewal wanted in the second half of its life.
        let ca = ConsoleCa::load(&tls_dir).unwrap();
        assert!(third.server_config(Some(ca.cert())).is_ok());
        let (key, csr) = AgentIdentity::new_key().unwrap();
        let (cert, not_after) = ca.issue_agent_cert(&csr, "agent-7").unwrap();
        let id = AgentIdentity::from_pem(&key, &cert).unwrap();
        assert_eq!(id.not_after(), not_after);
        let now = not_after - AGENT_CERT_DAYS * 86_400;
        assert!(!id.wants_renewal(now));
        assert!(id.wants_renewal(not_after - 86_400));
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        assert_eq!(agent_in_cert(&der).as_deref(), Some("agent-7"));
        assert!(client_config(&Trust::Pinned(vec![first.pin()]), Some(&id)).is_ok());
        assert!(ca.issue_agent_cert("not a request", "agent-7").is_err());
        let again = AgentIdentity::request_for(&key).unwrap();
        assert!(ca.issue_agent_cert(&again, "agent-7").is_ok());
    }
}
