//! The client listener: accepts connections and runs one task per connection (see `conn`).

pub mod answer;
pub mod conn;

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::backend::{Backend, Identity};
use crate::config::Config;
use crate::coordinator::GroupService;
use crate::metrics::Metrics;

/// What every connection task shares.
pub struct Shared {
    pub config: Config,
    pub identity: Identity,
    pub backend: Arc<Backend>,
    pub metrics: Arc<Metrics>,
    pub groups: GroupService,
}

/// Accepts client connections forever, one task each. A failed accept is logged and retried.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let active = shared
        .metrics
        .connections_active
        .with_label_values(&["client"]);
    let total = shared
        .metrics
        .connections_total
        .with_label_values(&["client"]);
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                total.inc();
                let shared = shared.clone();
                let active = active.clone();
                tokio::spawn(async move {
                    active.inc();
                    conn::serve(shared, socket, peer).await;
                    active.dec();
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                shared.metrics.connection_error("accept");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
