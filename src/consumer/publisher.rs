//! Publishes a run's messages round-robin over the stream's subjects, each stamped with its
//! publish time, optionally paced to a rate, and waits for the broker to store every one.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use bytes::Bytes;

use super::jetstream::JetStream;
use super::source::{format_published_at, PUBLISHED_AT_HEADER};

/// Publish acks awaited at most this many messages behind the newest publish.
const ACK_WINDOW: usize = 256;

#[derive(Debug, Clone)]
pub struct PublishPlan {
    pub subjects: Vec<String>,
    pub messages: u64,
    /// Messages per second; None publishes as fast as the broker stores them.
    pub rate: Option<f64>,
    /// Each payload is the message's number in the run (decimal), padded to this size.
    pub payload_bytes: usize,
}

/// The payload of message `i`: its number, then padding.
pub fn payload(i: u64, bytes: usize) -> Bytes {
    let mut p = i.to_string().into_bytes();
    if p.len() < bytes {
        p.push(b' ');
        p.resize(bytes, b'x');
    }
    Bytes::from(p)
}

#[derive(Debug, Clone, Copy)]
pub struct Published {
    /// Messages the broker acknowledged storing.
    pub sent: u64,
    pub seconds: f64,
}

impl Published {
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.sent as f64 / self.seconds
        } else {
            0.0
        }
    }
}

pub async fn publish(js: &JetStream, plan: &PublishPlan) -> anyhow::Result<Published> {
    anyhow::ensure!(!plan.subjects.is_empty(), "no subjects to publish to");
    let started = Instant::now();
    let mut acks = VecDeque::new();
    let mut sent = 0u64;
    for i in 0..plan.messages {
        if let Some(rate) = plan.rate.filter(|r| *r > 0.0) {
            let due = started + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let subject = plan.subjects[(i % plan.subjects.len() as u64) as usize].clone();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(PUBLISHED_AT_HEADER, format_published_at(SystemTime::now()).as_str());
        let ack = js
            .context
            .publish_with_headers(subject.clone(), headers, payload(i, plan.payload_bytes))
            .await
            .with_context(|| format!("publish to {subject}"))?;
        acks.push_back(ack);
        if acks.len() >= ACK_WINDOW {
            acks.pop_front().expect("window is not empty").await.context("broker did not store a message")?;
            sent += 1;
        }
    }
    for ack in acks {
        ack.await.context("broker did not store a message")?;
        sent += 1;
    }
    Ok(Published { sent, seconds: started.elapsed().as_secs_f64() })
}
