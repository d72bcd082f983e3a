//! The classic consumer-group coordinator: a pure state machine (no tokio, no sockets, no clock reads).
