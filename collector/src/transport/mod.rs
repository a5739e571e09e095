//! How agents reach ingest: QUIC with mutual TLS ([`quic`]), the connections each kind
//! of peer may hold ([`admission`]), and the bound on what all streams may buffer
//! ([`budget`]); and who may hold the HTTP API's connections ([`http`]).

pub mod admission;
pub mod budget;
pub mod http;
pub mod quic;

pub use admission::Limits;
