//! How agents reach ingest: QUIC with mutual TLS ([`quic`]).

pub mod quic;
