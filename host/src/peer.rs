//! The identity of a client that presented a certificate on a listener with `client_ca`
//! (mTLS). The certificate has been verified against the CA by the TLS handshake before any of
//! this is read; plugins see it as the request's principal (when none was set) and as context
//! attributes:
//!
//! - `tls.client.subject`: the subject DN, RFC 4514 style (`CN=alice,O=Example`);
//! - `tls.client.san.dns`, `tls.client.san.uri`: the DNS and URI SANs, comma-separated;
//! - `tls.client.fingerprint`: `sha256:<hex>` of the certificate (DER).
//!
//! The principal is the subject's common name, else the first URI SAN (e.g. a SPIFFE ID), else
//! the first DNS SAN.

use std::collections::HashMap;
use x509_parser::extensions::GeneralName;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub subject: String,
    pub common_name: Option<String>,
    pub dns: Vec<String>,
    pub uris: Vec<String>,
    pub fingerprint: String,
}

impl PeerIdentity {
    /// Reads a verified end-entity certificate. `None` if it cannot be parsed (it was verified,
    /// so this does not happen with certificates from a real CA).
    pub fn from_der(der: &[u8]) -> Option<PeerIdentity> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = cert.subject().to_string();
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        let (mut dns, mut uris) = (Vec::new(), Vec::new());
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => dns.push((*d).to_string()),
                    GeneralName::URI(u) => uris.push((*u).to_string()),
                    _ => {}
                }
            }
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let fingerprint = format!(
            "sha256:{}",
            digest
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        Some(PeerIdentity {
            subject,
            common_name,
            dns,
            uris,
            fingerprint,
        })
    }

    /// The principal this certificate names.
    pub fn principal(&self) -> Option<&str> {
        self.common_name
            .as_deref()
            .or_else(|| self.uris.first().map(String::as_str))
            .or_else(|| self.dns.first().map(String::as_str))
    }

    /// The context attributes plugins read.
    pub fn attributes(&self) -> HashMap<String, String> {
        let mut a = HashMap::new();
        a.insert("tls.client.subject".into(), self.subject.clone());
        a.insert("tls.client.san.dns".into(), self.dns.join(","));
        a.insert("tls.client.san.uri".into(), self.uris.join(","));
        a.insert("tls.client.fingerprint".into(), self.fingerprint.clone());
        a
    }
}
