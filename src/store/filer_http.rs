//! The SeaweedFS filer's HTTP API as kelp uses it: GET/PUT/DELETE of one path and paginated
//! directory listings, over a keep-alive hyper client. Every request has a timeout and counts
//! against a bound on requests in flight; only reads (GET, listings) are retried, a bounded
//! number of times. Paths given here are already URL-encoded. Knows nothing of kelp's layout.
//!
//! Listing (4.48): `GET <dir>/?limit=N&lastFileName=X` with `Accept: application/json` answers
//! `{"Path":"/d","Entries":[{"FullPath":"/d/name","Mode":2147484141,"FileSize":0,...},...] | null,
//! "Limit":N,"LastFileName":"name","ShouldDisplayLoadMore":bool,"EmptyFolder":bool}`, entries
//! sorted by name, `lastFileName` exclusive; a directory's `Mode` has bit 31 (Go's `ModeDir`).
//! A missing directory answers 404.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::Value;
use tokio::sync::Semaphore;

use super::escape::url_encode;
use super::StoreError;

/// Larger answers are refused (`Other`): kelp's files are small and listings are paginated.
const MAX_BODY_BYTES: usize = 64 << 20;
/// Go's `os.ModeDir`, as the filer reports it in `Mode`.
const MODE_DIR: u64 = 1 << 31;

/// One name in a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The last path segment, as stored (the filer's decoded form).
    pub name: String,
    pub is_dir: bool,
    /// The entry's creation and modification times as the filer lists them (`Crtime`, whole
    /// seconds, and `Mtime`): a changed stamp is a changed or recreated entry.
    pub stamp: String,
}

/// Settings of [`FilerHttp`].
#[derive(Clone, Debug)]
pub(crate) struct HttpSettings {
    pub timeout: Duration,
    pub read_attempts: u32,
    pub max_in_flight: usize,
    pub page_size: usize,
    pub max_pages: usize,
}

pub(crate) struct FilerHttp {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    permits: Arc<Semaphore>,
    s: HttpSettings,
}

impl FilerHttp {
    /// `url` is `http://host:port` (a trailing `/` is fine; a bare `host:port` means http).
    pub(crate) fn new(url: &str, s: HttpSettings) -> Result<Self, StoreError> {
        let base = normalize_base(url)?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(s.timeout));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(s.max_in_flight.max(1))
            .build(connector);
        let permits = Arc::new(Semaphore::new(s.max_in_flight.max(1)));
        Ok(FilerHttp {
            client,
            base,
            permits,
            s,
        })
    }

    /// The file's bytes, `None` when it does not exist. Retried.
    pub(crate) async fn get(&self, path: &str) -> Result<Option<Bytes>, StoreError> {
        self.retrying(|| async {
            let (status, body) = self.send(Method::GET, path, None, false).await?;
            match status {
                StatusCode::OK => Ok(Some(body)),
                StatusCode::NOT_FOUND => Ok(None),
                s => Err(unexpected(&Method::GET, path, s, &body)),
            }
        })
        .await
    }

    /// Creates or overwrites the file. Not retried: `Ok` means the filer answered 2xx.
    pub(crate) async fn put(&self, path: &str, body: Bytes) -> Result<(), StoreError> {
        let (status, answer) = self.send(Method::PUT, path, Some(body), false).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(unexpected(&Method::PUT, path, status, &answer))
        }
    }

    /// Deletes a file, or a directory with everything under it. A missing path is fine.
    pub(crate) async fn delete(&self, path: &str, recursive: bool) -> Result<(), StoreError> {
        let target = if recursive {
            format!("{path}?recursive=true")
        } else {
            path.to_string()
        };
        let (status, answer) = self.send(Method::DELETE, &target, None, false).await?;
        if status.is_success() || status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(unexpected(&Method::DELETE, &target, status, &answer))
        }
    }

    /// Every entry of a directory (all pages), `None` when it does not exist. Each page retried.
    pub(crate) async fn list(&self, dir: &str) -> Result<Option<Vec<Entry>>, StoreError> {
        let dir = dir.trim_end_matches('/');
        let mut out: Vec<Entry> = Vec::new();
        let mut last: Option<String> = None;
        for _ in 0..self.s.max_pages {
            let mut target = format!("{dir}/?limit={}", self.s.page_size);
            if let Some(last) = &last {
                target.push_str("&lastFileName=");
                target.push_str(&url_encode(last, false));
            }
            let page = self
                .retrying(|| async {
                    let (status, body) = self.send(Method::GET, &target, None, true).await?;
                    match status {
                        StatusCode::OK => parse_listing(&body).map(Some),
                        StatusCode::NOT_FOUND => Ok(None),
                        s => Err(unexpected(&Method::GET, &target, s, &body)),
                    }
                })
                .await?;
            let Some(page) = page else {
                // Missing at the first page: no such directory. Later: it went away meanwhile.
                return Ok(if last.is_none() { None } else { Some(out) });
            };
            let full = page.len() >= self.s.page_size;
            if let Some(e) = page.last() {
                if last.as_ref().is_some_and(|l| e.name.as_str() <= l.as_str()) {
                    return Err(StoreError::Corrupt(format!(
                        "listing of {dir} does not advance past {last:?}"
                    )));
                }
                last = Some(e.name.clone());
            }
            out.extend(page);
            if !full {
                return Ok(Some(out));
            }
        }
        Err(StoreError::Other(format!(
            "listing of {dir} has more than {} entries",
            self.s.max_pages * self.s.page_size
        )))
    }

    async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let attempts = self.s.read_attempts.max(1);
        let mut backoff = Duration::from_millis(50);
        let mut n = 1;
        loop {
            match attempt().await {
                Err(e @ StoreError::Unavailable(_)) if n < attempts => {
                    tracing::debug!(error = %e, attempt = n, "filer read failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    n += 1;
                }
                other => return other,
            }
        }
    }

    /// One request with the timeout applied to the whole exchange (connect, send, full body).
    async fn send(
        &self,
        method: Method,
        target: &str,
        body: Option<Bytes>,
        json: bool,
    ) -> Result<(StatusCode, Bytes), StoreError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Other("filer client closed".into()))?;
        let uri = format!("{}{}", self.base, target);
        let mut req = Request::builder().method(method.clone()).uri(&uri);
        if json {
            req = req.header(hyper::header::ACCEPT, "application/json");
        }
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/octet-stream");
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| StoreError::Other(format!("{method} {uri}: bad request: {e}")))?;
        let exchange = async {
            let resp =
                self.client.request(req).await.map_err(|e| {
                    StoreError::Unavailable(format!("{method} {uri}: {}", chain(&e)))
                })?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<LengthLimitError>().is_some() {
                        StoreError::Other(format!(
                            "{method} {uri}: answer larger than {MAX_BODY_BYTES} bytes"
                        ))
                    } else {
                        StoreError::Unavailable(format!("{method} {uri}: reading the answer: {e}"))
                    }
                })?
                .to_bytes();
            Ok((status, body))
        };
        match tokio::time::timeout(self.s.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(format!(
                "{method} {uri}: no answer within {:?}",
                self.s.timeout
            ))),
        }
    }
}

fn normalize_base(url: &str) -> Result<String, StoreError> {
    let trimmed = url.trim();
    let (scheme, rest) = trimmed.split_once("://").unwrap_or(("http", trimmed));
    let authority = rest.trim_end_matches('/');
    if scheme != "http" || authority.is_empty() || authority.contains('/') {
        return Err(StoreError::Other(format!(
            "filer URL must be http://host:port, got {url:?}"
        )));
    }
    let base = format!("http://{authority}");
    let uri: Uri = base
        .parse()
        .map_err(|e| StoreError::Other(format!("bad filer URL {url:?}: {e}")))?;
    if uri.authority().is_none() {
        return Err(StoreError::Other(format!(
            "filer URL must be http://host:port, got {url:?}"
        )));
    }
    Ok(base)
}

/// A non-success status: 5xx is the filer failing (retriable), anything else is ours.
fn unexpected(method: &Method, target: &str, status: StatusCode, body: &[u8]) -> StoreError {
    let snippet = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    let msg = format!("{method} {target}: filer answered {status}: {snippet}");
    if status.is_server_error() {
        StoreError::Unavailable(msg)
    } else {
        StoreError::Other(msg)
    }
}

/// An error with its sources ("client error (Connect): tcp connect error: Connection refused").
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        s.push_str(": ");
        s.push_str(&src.to_string());
        cur = src.source();
    }
    s
}

/// Parses one page of a directory listing (format in the module docs).
pub(crate) fn parse_listing(body: &[u8]) -> Result<Vec<Entry>, StoreError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| StoreError::Corrupt(format!("directory listing is not JSON: {e}")))?;
    let entries = match v.get("Entries") {
        None => {
            return Err(StoreError::Corrupt(
                "directory listing without \"Entries\"".into(),
            ))
        }
        Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(StoreError::Corrupt("\"Entries\" is not an array".into())),
    };
    entries
        .iter()
        .map(|e| {
            let full = e
                .get("FullPath")
                .and_then(Value::as_str)
                .ok_or_else(|| StoreError::Corrupt("listing entry without \"FullPath\"".into()))?;
            let name = full.rsplit('/').next().unwrap_or(full).to_string();
            let mode = e.get("Mode").and_then(Value::as_u64).unwrap_or(0);
            let time = |key| e.get(key).and_then(Value::as_str).unwrap_or("");
            Ok(Entry {
                name,
                is_dir: mode & MODE_DIR != 0,
                stamp: format!("{} {}", time("Crtime"), time("Mtime")),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_real_4_48_listing() {
        let body = br#"{"Version":"8000GB 4.48 pypi","Path":"/kelp/groups","Entries":[{"FullPath":"/kelp/groups/g1","Mtime":"2026-11-25T17:43:38.460118382Z","Crtime":"2026-11-25T17:43:38Z","Mode":2147484153,"FileSize":0,"chunks":null},{"FullPath":"/kelp/groups/t%A.json","Mode":432,"FileSize":2,"chunks":[{"file_id":"5,037df21908","size":2}]}],"Limit":10,"LastFileName":"t%A.json","ShouldDisplayLoadMore":false,"EmptyFolder":false}"#;
        let got = parse_listing(body).expect("parses");
        assert_eq!(
            got,
            vec![
                Entry {
                    name: "g1".into(),
                    is_dir: true,
                    stamp: "2026-11-25T17:43:38Z 2026-11-25T17:43:38.460118382Z".into(),
                },
                Entry {
                    name: "t%A.json".into(),
                    is_dir: false,
                    stamp: " ".into(),
                }
            ]
        );
        let empty = br#"{"Path":"/pg","Entries":null,"Limit":5,"LastFileName":"f25","ShouldDisplayLoadMore":false,"EmptyFolder":true}"#;
        assert_eq!(parse_listing(empty).expect("parses"), vec![]);
    }

    #[test]
    fn garbage_listings_are_errors() {
        for body in [
            &b""[..],
            b"hello",
            b"{}",
            br#"{"Entries":5}"#,
            br#"{"Entries":[{"Mode":1}]}"#,
            b"\xff\xfe",
        ] {
            assert!(
                matches!(parse_listing(body), Err(StoreError::Corrupt(_))),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            normalize_base("http://127.0.0.1:8888/").ok().as_deref(),
            Some("http://127.0.0.1:8888")
        );
        assert_eq!(
            normalize_base("127.0.0.1:8888").ok().as_deref(),
            Some("http://127.0.0.1:8888")
        );
        assert!(normalize_base("https://x:1").is_err());
        assert!(normalize_base("http://").is_err());
        assert!(normalize_base("http://h:1/sub").is_err());
    }
}
