//! The operator HTTP endpoint (hyper): `GET /metrics`, `/healthz`, `/readyz` and `/groups` (JSON
//! of every group kelp coordinates with its lag, `lag::json`); 404 otherwise. It runs on its own
//! listener and tasks, so a slow scrape never blocks the data path.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::lag::Lag;
use crate::server::Shared;

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn route(shared: &Shared, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if request.method() != Method::GET {
        return reply(StatusCode::NOT_FOUND, TEXT, "not found\n");
    }
    match request.uri().path() {
        "/metrics" => {
            shared
                .metrics
                .backend_up
                .set(i64::from(shared.backend().is_up()));
            reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                shared.metrics.render(),
            )
        }
        "/healthz" => reply(StatusCode::OK, TEXT, "ok\n"),
        // Draining (SIGTERM): not ready, so no new traffic is routed here while connections close.
        "/readyz" if shared.shutdown.is_draining() => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            "not ready: draining\n",
        ),
        "/readyz" if shared.backend().is_up() => reply(StatusCode::OK, TEXT, "ready\n"),
        "/readyz" => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            format!("not ready: backend {} unreachable\n", shared.backend().addr),
        ),
        _ => reply(StatusCode::NOT_FOUND, TEXT, "not found\n"),
    }
}

/// `GET /groups`: the coordinator's groups now (asked through its channel) with the last lag round.
async fn groups(shared: &Shared, lag: &Lag) -> Response<Full<Bytes>> {
    let Some(snapshot) = shared.groups().snapshot().await else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "the coordinator is stopping\n",
        );
    };
    let peers = shared.peers.as_ref().map(|side| side.peers.as_ref());
    let observed = crate::lag::passthrough_groups(&shared.routing.passthrough, peers, &snapshot);
    let document = crate::lag::json::render(
        &snapshot,
        &observed,
        &lag.report(),
        lag.settings.interval.as_secs(),
    );
    let mut body = serde_json::to_vec_pretty(&document).unwrap_or_default();
    body.push(b'\n');
    reply(StatusCode::OK, "application/json", body)
}

/// Serves the HTTP endpoint forever.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, lag: Arc<Lag>) {
    loop {
        let (socket, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        let lag = lag.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let shared = shared.clone();
                let lag = lag.clone();
                async move {
                    let response =
                        if request.method() == Method::GET && request.uri().path() == "/groups" {
                            groups(&shared, &lag).await
                        } else {
                            route(&shared, &request)
                        };
                    Ok::<_, Infallible>(response)
                }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service)
                .await
            {
                tracing::debug!(error = %e, "metrics connection ended");
            }
        });
    }
}
