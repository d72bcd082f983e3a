//! TLS for kelp's listeners and outgoing links (rustls, ring provider): server and client
//! configurations built from PEM files, and `Reloading`, which re-reads the files when they change
//! (a rotated certificate is used for the next handshake; a bad file keeps the last good
//! configuration, with a log line and `kelp_tls_reloads_total{result="error"}`).
//!
//! Used by the client listener (`--tls-cert`, `--tls-key`, and `--tls-client-ca` to require
//! client certificates) and the backend link (`--backend-tls-*`). The peer listener between
//! sidecars (issue 7) takes the same pieces: `server_config` with a client CA (mutual TLS: only
//! certificates of the deployment's CA get in) and `client_config` with the sidecar's own
//! certificate.

pub mod stream;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus::{IntCounterVec, Opts, Registry};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use stream::{ReadHalf, Stream, WriteHalf};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{0}")]
    Config(String),
}

fn file_error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no certificate in the file"));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(path, e))
}

fn load_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| file_error(path, e))?;
    }
    Ok(Arc::new(roots))
}

/// A server configuration: `cert` (chain) and `key`; with `client_ca`, clients must present a
/// certificate signed by it (mutual TLS), else none is asked for.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(load_roots(ca)?, provider())
                .build()
                .map_err(|e| file_error(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| file_error(key, e))?;
    Ok(Arc::new(config))
}

/// A client configuration that trusts `ca` and, with `identity` (cert, key), presents it.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(load_roots(ca)?);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| file_error(key, e))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

type Loader<T> = Box<dyn Fn() -> Result<Arc<T>, TlsError> + Send + Sync>;

/// A configuration that follows its files. `current()` is the last one that loaded.
pub struct Reloading<T> {
    name: &'static str,
    paths: Vec<PathBuf>,
    load: Loader<T>,
    current: ArcSwap<T>,
    seen: Mutex<u64>,
}

/// What `Reloading::check` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    Unchanged,
    Reloaded,
    /// The files changed but do not load; the previous configuration stays.
    Failed(String),
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// Loads once (an error here is a startup error naming the file).
    pub fn new(
        name: &'static str,
        paths: Vec<PathBuf>,
        load: impl Fn() -> Result<Arc<T>, TlsError> + Send + Sync + 'static,
    ) -> Result<Self, TlsError> {
        let seen = fingerprint(&paths);
        let current = load()?;
        Ok(Reloading {
            name,
            paths,
            load: Box::new(load),
            current: ArcSwap::new(current),
            seen: Mutex::new(seen),
        })
    }

    pub fn current(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Re-reads the files if their contents changed since the last look.
    pub fn check(&self) -> Reload {
        let now = fingerprint(&self.paths);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if *seen == now {
            return Reload::Unchanged;
        }
        *seen = now;
        match (self.load)() {
            Ok(config) => {
                self.current.store(config);
                Reload::Reloaded
            }
            Err(e) => Reload::Failed(e.to_string()),
        }
    }

    /// Checks the files every `every`, forever, logging and counting each reload.
    pub async fn watch(self: Arc<Self>, every: Duration, reloads: IntCounterVec) {
        loop {
            tokio::time::sleep(every).await;
            match self.check() {
                Reload::Unchanged => {}
                Reload::Reloaded => {
                    tracing::info!(tls = self.name, "TLS certificates reloaded");
                    reloads.with_label_values(&[self.name, "ok"]).inc();
                }
                Reload::Failed(e) => {
                    tracing::warn!(tls = self.name, error = %e, "TLS files changed but do not load; keeping the previous ones");
                    reloads.with_label_values(&[self.name, "error"]).inc();
                }
            }
        }
    }
}

/// A hash of the files' contents (a missing file hashes as empty).
fn fingerprint(paths: &[PathBuf]) -> u64 {
    let mut h = DefaultHasher::new();
    for p in paths {
        std::fs::read(p).unwrap_or_default().hash(&mut h);
    }
    h.finish()
}

/// `kelp_tls_reloads_total{tls, result}`, registered once.
pub fn reload_counter(registry: &Registry) -> IntCounterVec {
    let counter = IntCounterVec::new(
        Opts::new(
            "kelp_tls_reloads_total",
            "TLS certificate reloads after a file change, by configuration (client, backend) and result",
        ),
        &["tls", "result"],
    )
    .expect("static metric");
    let _ = registry.register(Box::new(counter.clone()));
    counter
}

#[cfg(test)]
mod tests;
