//! kelp: a Kafka-protocol sidecar that serves consumer-group coordination itself and forwards
//! everything else to the SeaweedFS Kafka gateway.

pub mod group;
