//! kelp: a Kafka-protocol sidecar that serves consumer-group coordination itself and forwards
//! everything else to the SeaweedFS Kafka gateway.

pub mod access;
pub mod backend;
pub mod config;
pub mod coordinator;
pub mod group;
pub mod http;
pub mod lag;
pub mod lease;
pub mod metrics;
pub mod modes;
pub mod passthrough;
pub mod peers;
pub mod protocol;
pub mod route;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod tls;
pub mod topics;
