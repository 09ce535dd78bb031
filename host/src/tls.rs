//! rustls configuration: server side for listeners (PEM cert + key, ALPN h2 and http/1.1) and
//! client side for `https` upstreams (built-in web roots or a configured CA file). The `ring`
//! provider is used explicitly so no process-wide default is needed.

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Invalid { path: String, what: String },
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Invalid {
            path: path.display().to_string(),
            what: format!("bad PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Invalid {
            path: path.display().to_string(),
            what: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| TlsError::Invalid {
            path: path.display().to_string(),
            what: format!("bad PEM: {e}"),
        })?
        .ok_or_else(|| TlsError::Invalid {
            path: path.display().to_string(),
            what: "no private key found (PKCS#8, PKCS#1 or SEC1 PEM)".into(),
        })
}

/// Client certificates a listener asks for (mTLS).
pub struct ClientAuth<'a> {
    /// PEM file of the CAs whose client certificates are accepted.
    pub ca: &'a Path,
    /// Refuse the handshake without a certificate (otherwise a client may present none).
    pub required: bool,
}

fn roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(path)? {
        roots.add(cert).map_err(|e| TlsError::Invalid {
            path: path.display().to_string(),
            what: format!("unusable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

/// A listener's TLS configuration, offering HTTP/2 and HTTP/1.1 by ALPN, and verifying client
/// certificates against `client.ca` if given (a certificate from another CA fails the handshake).
pub fn server_config(
    cert: &Path,
    key: &Path,
    client: Option<ClientAuth>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = certs(cert)?;
    let key = private_key(key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid {
            path: cert.display().to_string(),
            what: e.to_string(),
        })?;
    let builder = match client {
        None => builder.with_no_client_auth(),
        Some(c) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(c.ca)?),
                provider(),
            );
            let verifier = if c.required {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier.build().map_err(|e| TlsError::Invalid {
                path: c.ca.display().to_string(),
                what: format!("cannot verify clients with these CAs: {e}"),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Invalid {
            path: cert.display().to_string(),
            what: format!("certificate and key do not fit: {e}"),
        })?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Client TLS for upstreams: trust `ca_file` if given, otherwise the built-in web PKI roots;
/// present `client_cert` (PEM chain and key) to upstreams that ask for one.
pub fn client_config(
    ca_file: Option<&Path>,
    client_cert: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, TlsError> {
    let roots = match ca_file {
        Some(path) => roots(path)?,
        None => {
            let mut r = rustls::RootCertStore::empty();
            r.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            r
        }
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid {
            path: "upstream TLS".into(),
            what: e.to_string(),
        })?
        .with_root_certificates(roots);
    match client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => builder
            .with_client_auth_cert(certs(cert)?, private_key(key)?)
            .map_err(|e| TlsError::Invalid {
                path: cert.display().to_string(),
                what: format!("certificate and key do not fit: {e}"),
            }),
    }
}
