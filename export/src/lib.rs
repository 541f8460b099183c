//! telegen's sans-IO OTLP/HTTP client.
//!
//! Bytes in, bytes out: [`otlp`] turns the core's metric view into OTLP protobuf requests,
//! [`traces`] turns finished exchanges into spans ([`spanpb`] writes them as protobuf directly),
//! [`payload`] encodes and gzips them into reused buffers, [`http`] writes HTTP/1.1 requests
//! and reads responses with `httparse`, [`client`] is the exporter's state machine (queue,
//! one request in flight, outcome accounting), and [`console`] renders signals as text.
//! The socket, TLS and the clock belong to `io`; this crate never names a file descriptor.

pub mod client;
pub mod cloud;
pub mod codec;
pub mod console;
pub mod containers;
pub mod http;
pub mod k8s;
pub mod otlp;
pub mod payload;
pub mod retry;
pub mod spanpb;
pub mod spool;
pub mod traces;
