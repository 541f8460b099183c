//! telegen's sans-IO core.
//!
//! Turns wire records from the kernel programs into aggregated telemetry: decoding
//! ([`record`]), tracepoint layouts ([`tracefs`]), the TCP connection tracker ([`tcp`]), HTTP/1.x exchanges ([`http`]), HTTP/2 and gRPC exchanges ([`http2`]) with HPACK ([`hpack`]), Redis exchanges ([`redis`]), MQTT exchanges ([`mqtt`]), PostgreSQL and MySQL exchanges ([`postgres`], [`mysql`]), DNS lookups ([`dns`]), AMQP and Kafka exchanges ([`amqp`], [`kafka`]) with their framing ([`frames`]) and statement text ([`sql`]), what those share ([`l7`]),
//! fixed-capacity tables ([`fixed_map`]), time order across per-CPU buffers ([`reorder`]), recordings for replay ([`recording`]), the per-record step ([`pipeline`]), writes awaiting their socket ([`unjoined`]), the agent's own export connections ([`own`]), metric series with a cardinality cap ([`metrics`]),
//! the messages to the privileged helper ([`helper`]), the agent's own counters ([`selfmetrics`]) and the memory budget ([`budget`]), containers from cgroup paths ([`cgroup`]).
//!
//! Invariants: no syscalls and no clock reads (time is an argument); every table is sized
//! once at construction and never grows; nothing here panics on input, and nothing on the
//! per-event path allocates. What this crate does not do: encode, send, or read files.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod amqp;
pub mod budget;
pub mod cgroup;
pub mod dns;
pub mod fixed_map;
pub mod frames;
pub mod helper;
pub mod hpack;
pub mod http;
pub mod http2;
pub mod kafka;
pub mod l7;
pub mod metrics;
pub mod mqtt;
pub mod mysql;
pub mod own;
pub mod pipeline;
pub mod postgres;
pub mod record;
pub mod recording;
pub mod redis;
pub mod reorder;
pub mod runtime;
pub mod selfmetrics;
pub mod sql;
pub mod tcp;
pub mod tracefs;
pub mod unjoined;
