//! What the consumer needs from a broker, in the broker's absence: a stream of deliveries,
//! each acknowledged once its handler is done. JetStream implements it (`jetstream.rs`);
//! a Kafka partition reader or a Redis stream would fit the same two traits.

use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use bytes::Bytes;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Header carrying the publish time, Unix nanoseconds in decimal, for end-to-end latency.
pub const PUBLISHED_AT_HEADER: &str = "Pinchpoint-Published-At";

/// Tells the broker a delivery is done with.
pub trait Acker: Send + 'static {
    fn ack(self: Box<Self>) -> BoxFuture<'static, anyhow::Result<()>>;
}

/// One message as delivered.
pub struct Delivery {
    pub subject: String,
    pub payload: Bytes,
    /// From [`PUBLISHED_AT_HEADER`], when the publisher set it.
    pub published_at: Option<SystemTime>,
    /// 1 on first delivery; more means the broker gave up waiting for an ack and resent it.
    pub delivery_count: u64,
    pub acker: Box<dyn Acker>,
}

impl Delivery {
    pub async fn ack(self) -> anyhow::Result<()> {
        self.acker.ack().await
    }
}

/// A source of deliveries (one subject, partition or queue). `None`: the source has ended.
pub trait Source: Send + 'static {
    fn next(&mut self) -> BoxFuture<'_, Option<anyhow::Result<Delivery>>>;
    /// What it reads, for logs.
    fn describe(&self) -> String;
}

/// Parses [`PUBLISHED_AT_HEADER`]'s value.
pub fn parse_published_at(value: &str) -> Option<SystemTime> {
    let nanos: u64 = value.trim().parse().ok()?;
    Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(nanos))
}

/// [`PUBLISHED_AT_HEADER`]'s value for `at`.
pub fn format_published_at(at: SystemTime) -> String {
    at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_time_round_trips_and_garbage_is_none() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(1_700_000_000_123_456_789);
        assert_eq!(parse_published_at(&format_published_at(at)), Some(at));
        assert_eq!(parse_published_at("yesterday"), None);
        assert_eq!(parse_published_at(""), None);
    }
}
