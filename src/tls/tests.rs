//! TLS tests with certificates made on the spot (rcgen): a deployment CA, a server certificate,
//! client certificates that are good, expired, or signed by another CA. Handshakes run over
//! loopback with the configurations kelp builds.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    Ca {
        cert: params.self_signed(&key).unwrap(),
        key,
    }
}

/// A leaf certificate for `names`, signed by `ca`; `expired` puts its validity in 2001.
fn leaf(ca: &Ca, names: &[&str], expired: bool) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    if expired {
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    }
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (cert.pem(), key.serialize_pem())
}

struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("kelp-tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A deployment: CA, server cert/key, and the server config requiring client certs.
struct Deployment {
    dir: Dir,
    ca: Ca,
    ca_pem: PathBuf,
    server: Arc<ServerConfig>,
}

fn deployment() -> Deployment {
    let dir = Dir::new();
    let ca = ca("kelp deployment CA");
    let ca_pem = dir.write("ca.pem", &ca.cert.pem());
    let (cert, key) = leaf(&ca, &["localhost", "127.0.0.1"], false);
    let (cert, key) = (
        dir.write("server.pem", &cert),
        dir.write("server.key", &key),
    );
    let server = server_config(&cert, &key, Some(&ca_pem)).unwrap();
    Deployment {
        dir,
        ca,
        ca_pem,
        server,
    }
}

/// One handshake and one byte each way: Ok on both sides, or the server's error.
async fn handshake(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = TlsAcceptor::from(server)
            .accept(tcp)
            .await
            .map_err(|e| e.to_string())?;
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await.map_err(|e| e.to_string())?;
        tls.write_all(&b).await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let client_side = async {
        let mut tls = TlsConnector::from(client).connect(name, tcp).await?;
        tls.write_all(b"k").await?;
        tls.flush().await?;
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await?;
        Ok::<_, std::io::Error>(())
    };
    let client_result = tokio::time::timeout(Duration::from_secs(30), client_side).await;
    let server_result = tokio::time::timeout(Duration::from_secs(30), serve)
        .await
        .map_err(|_| "server timed out".to_string())?
        .map_err(|e| e.to_string())?;
    server_result?;
    match client_result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("client: {e}")),
        Err(_) => Err("client timed out".into()),
    }
}

fn client_with(d: &Deployment, signer: &Ca, expired: bool) -> Arc<ClientConfig> {
    let (cert, key) = leaf(signer, &["sidecar-a"], expired);
    let cert = d.dir.write(&format!("client-{expired}.pem"), &cert);
    let key = d.dir.write(&format!("client-{expired}.key"), &key);
    client_config(&d.ca_pem, Some((&cert, &key))).unwrap()
}

#[tokio::test]
async fn a_client_certificate_from_the_deployment_ca_gets_in() {
    let d = deployment();
    let client = client_with(&d, &d.ca, false);
    handshake(d.server.clone(), client).await.unwrap();
}

#[tokio::test]
async fn no_client_certificate_is_refused() {
    let d = deployment();
    let client = client_config(&d.ca_pem, None).unwrap();
    let e = handshake(d.server.clone(), client).await.unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let d = deployment();
    let stranger = ca("someone else's CA");
    let client = client_with(&d, &stranger, false);
    let e = handshake(d.server.clone(), client).await.unwrap_err();
    assert!(
        e.contains("UnknownIssuer") || e.to_lowercase().contains("issuer"),
        "{e}"
    );
}

#[tokio::test]
async fn an_expired_client_certificate_is_refused() {
    let d = deployment();
    let client = client_with(&d, &d.ca, true);
    let e = handshake(d.server.clone(), client).await.unwrap_err();
    assert!(
        e.contains("Expired") || e.to_lowercase().contains("expired"),
        "{e}"
    );
}

#[tokio::test]
async fn without_a_client_ca_no_client_certificate_is_needed() {
    let d = deployment();
    let (cert, key) = (d.dir.0.join("server.pem"), d.dir.0.join("server.key"));
    let server = server_config(&cert, &key, None).unwrap();
    let client = client_config(&d.ca_pem, None).unwrap();
    handshake(server, client).await.unwrap();
}

#[test]
fn bad_files_name_the_file() {
    let d = deployment();
    let garbage = d.dir.write("garbage.pem", "not a certificate\n");
    let key = d.dir.0.join("server.key");
    let e = server_config(&garbage, &key, None).unwrap_err().to_string();
    assert!(e.contains("garbage.pem"), "{e}");
    let missing = d.dir.0.join("missing.pem");
    let e = client_config(&missing, None).unwrap_err().to_string();
    assert!(e.contains("missing.pem"), "{e}");
}

#[tokio::test]
async fn certificates_are_reloaded_when_the_files_change_and_a_bad_change_keeps_the_old_ones() {
    let d = deployment();
    let (cert, key) = (d.dir.0.join("server.pem"), d.dir.0.join("server.key"));
    let ca_pem = d.ca_pem.clone();
    let paths = vec![cert.clone(), key.clone(), ca_pem.clone()];
    let (c, k, ca) = (cert.clone(), key.clone(), ca_pem.clone());
    let reloading =
        Reloading::new("client", paths, move || server_config(&c, &k, Some(&ca))).unwrap();
    assert_eq!(reloading.check(), Reload::Unchanged);
    let first = reloading.current();

    // Rotation: a new server certificate from the same CA.
    let (new_cert, new_key) = leaf(&d.ca, &["localhost"], false);
    std::fs::write(&cert, new_cert).unwrap();
    std::fs::write(&key, new_key).unwrap();
    assert_eq!(reloading.check(), Reload::Reloaded);
    let second = reloading.current();
    assert!(!Arc::ptr_eq(&first, &second));
    handshake(second.clone(), client_with(&d, &d.ca, false))
        .await
        .unwrap();

    // A broken write: the last good configuration stays.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnope\n").unwrap();
    assert!(matches!(reloading.check(), Reload::Failed(_)));
    assert!(Arc::ptr_eq(&second, &reloading.current()));
    assert_eq!(reloading.check(), Reload::Unchanged);
}
