//! A message consumer with a worker pool, instrumented like the counter system: the second
//! system of the lab, reproducing the broker field reports (a NATS JetStream consumer whose
//! pool went from 48 to 256 workers, slow shutdowns counted as leaks, stale messages from an
//! earlier run).
//!
//! The consumer ([`dispatch::Consumer`]) sees only [`source::Source`]s of deliveries with
//! acks; NATS JetStream is the one implementation ([`jetstream`]), because `nats-server` is
//! the broker installable here (Debian package; Kafka has none).

pub mod broker;
pub mod dispatch;
pub mod handler;
pub mod jetstream;
pub mod process;
pub mod publisher;
pub mod source;

pub use dispatch::{Consumer, ConsumerOptions};
