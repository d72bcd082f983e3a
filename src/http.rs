//! The operator HTTP endpoint (hyper): `GET /metrics`, `/healthz` and `/readyz`; 404 otherwise.
//! It runs on its own listener and tasks, so a slow scrape never blocks the data path.

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

/// Serves the HTTP endpoint forever.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
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
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = route(&shared, &request);
                async move { Ok::<_, Infallible>(response) }
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
