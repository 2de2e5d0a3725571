//! TLS for the HTTPS listeners (rustls with the ring provider): TLS 1.2 and 1.3 only, AEAD
//! suites only (a configurable subset), ALPN `h2` and `http/1.1`, PEM chains and keys (RSA,
//! ECDSA, Ed25519) chosen by SNI, or an `adhoc` self-signed certificate for development.
//! Certificates are swapped in place ([`Certificates::reload`]): new handshakes get the new ones,
//! open connections keep going.

use std::{path::PathBuf, sync::Arc, time::SystemTime};

use arc_swap::ArcSwap;

use rustls::{
    crypto::{ring as provider, CryptoProvider},
    pki_types::{CertificateDer, PrivateKeyDer, ServerName},
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
    ServerConfig, SupportedCipherSuite,
};

use crate::config::{CipherSuite, TlsConfig, TlsVersion};

/// The rustls suite of each suite a config can name: all AEAD (AES-GCM, ChaCha20-Poly1305),
/// forward secret.
fn suite(suite: CipherSuite) -> SupportedCipherSuite {
    use provider::cipher_suite as rustls_suite;
    match suite {
        CipherSuite::Tls13Aes256GcmSha384 => rustls_suite::TLS13_AES_256_GCM_SHA384,
        CipherSuite::Tls13Aes128GcmSha256 => rustls_suite::TLS13_AES_128_GCM_SHA256,
        CipherSuite::Tls13Chacha20Poly1305Sha256 => rustls_suite::TLS13_CHACHA20_POLY1305_SHA256,
        CipherSuite::EcdheEcdsaAes256GcmSha384 => {
            rustls_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        }
        CipherSuite::EcdheEcdsaAes128GcmSha256 => {
            rustls_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        }
        CipherSuite::EcdheEcdsaChacha20Poly1305Sha256 => {
            rustls_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        CipherSuite::EcdheRsaAes256GcmSha384 => rustls_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        CipherSuite::EcdheRsaAes128GcmSha256 => rustls_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        CipherSuite::EcdheRsaChacha20Poly1305Sha256 => {
            rustls_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
    }
}

/// Why a listener's TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    /// A PEM file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error("{}: {what}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is missing or wrong.
        what: &'static str,
    },
    /// The key does not suit the certificate, or rustls refused it.
    #[error("{}: {source}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// The adhoc certificate could not be made.
    #[error("cannot generate the adhoc certificate: {source}")]
    Adhoc {
        /// Why.
        #[source]
        source: rcgen::Error,
    },
    /// The client CA could not be used to verify client certificates.
    #[error("client certificate verification: {source}")]
    ClientVerifier {
        /// Why.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    /// The system's root certificates could not be read.
    #[error("system root certificates: {source}")]
    SystemRoots {
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// rustls refused the settings.
    #[error("TLS settings: {source}")]
    Settings {
        /// Why.
        #[source]
        source: rustls::Error,
    },
}

/// The rustls configuration of one listener, and the handle that reloads its certificates.
pub(crate) fn server_config(
    tls: &TlsConfig,
) -> Result<(Arc<ServerConfig>, Arc<Certificates>), TlsError> {
    let mut crypto = provider::default_provider();
    if !tls.cipher_suites.is_empty() {
        // In the library's order of preference, whatever order the config lists them in.
        let wanted: Vec<SupportedCipherSuite> =
            tls.cipher_suites.iter().map(|s| suite(*s)).collect();
        crypto
            .cipher_suites
            .retain(|offered| wanted.contains(offered));
    }
    let crypto = Arc::new(crypto);
    let wants_12 = tls.versions.is_empty() || tls.versions.contains(&TlsVersion::Tls12);
    let wants_13 = tls.versions.is_empty() || tls.versions.contains(&TlsVersion::Tls13);
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if wants_13 {
        versions.push(&rustls::version::TLS13);
    }
    if wants_12 {
        versions.push(&rustls::version::TLS12);
    }
    let certificates = Arc::new(Certificates {
        current: ArcSwap::from_pointee(load_all(&crypto, tls)?),
        files_changed: std::sync::Mutex::new(modified(tls)),
        config: tls.clone(),
        crypto: Arc::clone(&crypto),
    });
    let mut config = ServerConfig::builder_with_provider(crypto)
        .with_protocol_versions(&versions)
        .map_err(|source| TlsError::Settings { source })?
        .with_client_cert_verifier(client_verifier(tls, &certificates.crypto)?)
        .with_cert_resolver(Arc::new(SniResolver {
            certificates: Arc::clone(&certificates),
        }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(config), certificates))
}

/// Mutual TLS when the listener names a client CA, else no client authentication.
fn client_verifier(
    tls: &TlsConfig,
    crypto: &Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let Some(path) = &tls.client_ca else {
        return Ok(WebPkiClientVerifier::no_client_auth());
    };
    let roots = load_roots(path)?;
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(crypto));
    let builder = if tls.client_auth_optional {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    builder
        .build()
        .map_err(|source| TlsError::ClientVerifier { source })
}

/// The certificates of a PEM file as trust anchors.
pub(crate) fn load_roots(path: &PathBuf) -> Result<rustls::RootCertStore, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.clone(),
        source,
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|source| TlsError::Read {
            path: path.clone(),
            source,
        })?;
        roots.add(cert).map_err(|source| TlsError::Key {
            path: path.clone(),
            source,
        })?;
    }
    if roots.is_empty() {
        return Err(TlsError::Pem {
            path: path.clone(),
            what: "no certificate in the file",
        });
    }
    Ok(roots)
}

/// A listener's certificates, swappable while it serves.
#[derive(Debug)]
pub(crate) struct Certificates {
    current: ArcSwap<Vec<Loaded>>,
    files_changed: std::sync::Mutex<Vec<Option<SystemTime>>>,
    config: TlsConfig,
    crypto: Arc<CryptoProvider>,
}

impl Certificates {
    /// Reads the PEM files again and swaps them in; on error the old ones stay.
    pub(crate) fn reload(&self) -> Result<(), TlsError> {
        if self.config.adhoc {
            return Ok(());
        }
        let fresh = load_all(&self.crypto, &self.config)?;
        self.current.store(Arc::new(fresh));
        *self
            .files_changed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = modified(&self.config);
        Ok(())
    }

    /// Whether one of the current certificates is valid for `host` (a DNS name or an IP
    /// address): a name this listener serves.
    pub(crate) fn serve_name(&self, host: &str) -> bool {
        let Ok(name) = ServerName::try_from(host) else {
            return false;
        };
        self.current.load().iter().any(|c| {
            webpki::EndEntityCert::try_from(&c.leaf)
                .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
        })
    }

    /// Whether a certificate or key file changed since the last load.
    pub(crate) fn files_changed(&self) -> bool {
        let now = modified(&self.config);
        *self
            .files_changed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            != now
    }
}

fn modified(tls: &TlsConfig) -> Vec<Option<SystemTime>> {
    tls.certificates
        .iter()
        .flat_map(|c| [&c.cert, &c.key])
        .map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
        .collect()
}

fn load_all(crypto: &CryptoProvider, tls: &TlsConfig) -> Result<Vec<Loaded>, TlsError> {
    if tls.adhoc {
        Ok(vec![adhoc(crypto, &tls.adhoc_names)?])
    } else {
        tls.certificates
            .iter()
            .map(|c| load(crypto, &c.cert, &c.key))
            .collect()
    }
}

/// A certificate with the DER of its leaf, to test names against.
#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    leaf: CertificateDer<'static>,
}

/// Picks the first certificate valid for the SNI name, else the first one.
#[derive(Debug)]
struct SniResolver {
    certificates: Arc<Certificates>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let certs = self.certificates.current.load();
        let chosen = hello.server_name().and_then(|name| {
            let name = ServerName::try_from(name).ok()?;
            certs.iter().find(|c| {
                webpki::EndEntityCert::try_from(&c.leaf)
                    .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
            })
        });
        chosen.or_else(|| certs.first()).map(|c| Arc::clone(&c.key))
    }
}

fn load(
    crypto: &CryptoProvider,
    cert_path: &PathBuf,
    key_path: &PathBuf,
) -> Result<Loaded, TlsError> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.clone(),
            source,
        })
    };
    let cert_pem = read(cert_path)?;
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Read {
            path: cert_path.clone(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: cert_path.clone(),
            what: "no certificate in the file",
        });
    }
    let key_pem = read(key_path)?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|source| TlsError::Read {
            path: key_path.clone(),
            source,
        })?
        .ok_or_else(|| TlsError::Pem {
            path: key_path.clone(),
            what: "no private key in the file",
        })?;
    let certified =
        CertifiedKey::from_der(chain.clone(), key, crypto).map_err(|source| TlsError::Key {
            path: key_path.clone(),
            source,
        })?;
    Ok(Loaded {
        key: Arc::new(certified),
        leaf: chain[0].clone(),
    })
}

fn adhoc(crypto: &CryptoProvider, names: &[String]) -> Result<Loaded, TlsError> {
    let names: Vec<String> = if names.is_empty() {
        vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]
    } else {
        names.to_vec()
    };
    let generated = rcgen::generate_simple_self_signed(names.clone())
        .map_err(|source| TlsError::Adhoc { source })?;
    tracing::warn!(
        names = names.join(","),
        "TLS: serving an ADHOC SELF-SIGNED certificate generated at start; for development only"
    );
    let leaf = CertificateDer::from(generated.cert.der().to_vec());
    let key = PrivateKeyDer::try_from(generated.signing_key.serialize_der()).map_err(|what| {
        TlsError::Pem {
            path: PathBuf::from("<adhoc>"),
            what,
        }
    })?;
    let certified = CertifiedKey::from_der(vec![leaf.clone()], key, crypto).map_err(|source| {
        TlsError::Key {
            path: PathBuf::from("<adhoc>"),
            source,
        }
    })?;
    Ok(Loaded {
        key: Arc::new(certified),
        leaf,
    })
}
