//! NATS JetStream behind the consumer's [`Source`]: one durable pull consumer per subject,
//! plus the stream chores the lab and tests need (create, purge, count, delete).

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::pull, stream};
use futures_util::StreamExt;

use super::source::{parse_published_at, Acker, BoxFuture, Delivery, Source, PUBLISHED_AT_HEADER};

/// What the stream does with acked messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Kept until purged or aged out (JetStream's default, and the field reports' setting):
    /// a new consumer reading from the start receives them again.
    Limits,
    /// Removed once acked: an empty stream after a run means every message was acked.
    WorkQueue,
}

/// A connected JetStream context and one stream in it.
#[derive(Clone)]
pub struct JetStream {
    pub context: jetstream::Context,
    pub stream: String,
}

impl JetStream {
    /// Connects to `url` (`nats://127.0.0.1:4222`) and finds `stream`.
    pub async fn connect(url: &str, stream: &str) -> anyhow::Result<JetStream> {
        let client = tokio::time::timeout(Duration::from_secs(10), async_nats::connect(url))
            .await
            .map_err(|_| anyhow::anyhow!("no answer from NATS at {url} within 10 s"))?
            .with_context(|| format!("connect to NATS at {url}"))?;
        Ok(JetStream { context: jetstream::new(client), stream: stream.to_string() })
    }

    /// Creates the stream over `subjects` unless it exists.
    pub async fn ensure_stream(&self, subjects: &[String], retention: Retention) -> anyhow::Result<()> {
        let retention = match retention {
            Retention::Limits => stream::RetentionPolicy::Limits,
            Retention::WorkQueue => stream::RetentionPolicy::WorkQueue,
        };
        let config = stream::Config {
            name: self.stream.clone(),
            subjects: subjects.to_vec(),
            retention,
            ..stream::Config::default()
        };
        self.context.get_or_create_stream(config).await.with_context(|| format!("create stream {}", self.stream))?;
        Ok(())
    }

    async fn handle(&self) -> anyhow::Result<stream::Stream> {
        self.context.get_stream(&self.stream).await.with_context(|| format!("find stream {}", self.stream))
    }

    /// The stream's subjects.
    pub async fn subjects(&self) -> anyhow::Result<Vec<String>> {
        let mut s = self.handle().await?;
        Ok(s.info().await.context("stream info")?.config.subjects.clone())
    }

    /// Messages the stream holds.
    pub async fn messages(&self) -> anyhow::Result<u64> {
        let mut s = self.handle().await?;
        Ok(s.info().await.context("stream info")?.state.messages)
    }

    /// Removes every message; returns how many there were.
    pub async fn purge(&self) -> anyhow::Result<u64> {
        let s = self.handle().await?;
        Ok(s.purge().await.with_context(|| format!("purge stream {}", self.stream))?.purged)
    }

    pub async fn delete_stream(&self) -> anyhow::Result<()> {
        self.context.delete_stream(&self.stream).await.with_context(|| format!("delete stream {}", self.stream))?;
        Ok(())
    }

    /// The durable consumer names for `durable` over `subjects` (one per subject).
    pub fn consumer_names(durable: &str, subjects: usize) -> Vec<String> {
        (0..subjects).map(|i| format!("{durable}-{i}")).collect()
    }

    /// One source per subject: a durable pull consumer `DURABLE-i` that acks explicitly and,
    /// when new, starts at the stream's first message (an existing one resumes).
    pub async fn sources(
        &self,
        durable: &str,
        subjects: &[String],
        max_ack_pending: i64,
    ) -> anyhow::Result<Vec<Box<dyn Source>>> {
        let s = self.handle().await?;
        let mut out: Vec<Box<dyn Source>> = Vec::new();
        for (name, subject) in Self::consumer_names(durable, subjects.len()).into_iter().zip(subjects) {
            let config = pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: subject.clone(),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                max_ack_pending,
                ..pull::Config::default()
            };
            let consumer = s
                .get_or_create_consumer::<pull::Config>(&name, config)
                .await
                .with_context(|| format!("create consumer {name} on {subject}"))?;
            let messages = consumer.messages().await.with_context(|| format!("pull from {name}"))?;
            out.push(Box::new(JetStreamSource { name: format!("{}/{name} ({subject})", self.stream), messages }));
        }
        Ok(out)
    }

    /// (delivered but unacked, not yet delivered) summed over `names`.
    pub async fn backlog(&self, names: &[String]) -> anyhow::Result<(u64, u64)> {
        let s = self.handle().await?;
        let (mut ack_pending, mut pending) = (0u64, 0u64);
        for name in names {
            let mut c: jetstream::consumer::Consumer<pull::Config> =
                s.get_consumer(name).await.map_err(|e| anyhow::anyhow!("find consumer {name}: {e}"))?;
            let info = c.info().await.with_context(|| format!("consumer info {name}"))?;
            ack_pending += info.num_ack_pending as u64;
            pending += info.num_pending;
        }
        Ok((ack_pending, pending))
    }

    pub async fn delete_consumers(&self, names: &[String]) -> anyhow::Result<()> {
        let s = self.handle().await?;
        for name in names {
            s.delete_consumer(name).await.with_context(|| format!("delete consumer {name}"))?;
        }
        Ok(())
    }
}

struct JetStreamSource {
    name: String,
    messages: pull::Stream,
}

impl Source for JetStreamSource {
    fn next(&mut self) -> BoxFuture<'_, Option<anyhow::Result<Delivery>>> {
        Box::pin(async move {
            let message = match self.messages.next().await? {
                Ok(m) => m,
                Err(e) => return Some(Err(anyhow::anyhow!("{e}"))),
            };
            let delivery_count = match message.info() {
                Ok(info) => info.delivered.max(1) as u64,
                Err(e) => return Some(Err(anyhow::anyhow!("message without JetStream metadata: {e}"))),
            };
            let published_at = message
                .headers
                .as_ref()
                .and_then(|h| h.get(PUBLISHED_AT_HEADER))
                .and_then(|v| parse_published_at(v.as_str()));
            Some(Ok(Delivery {
                subject: message.subject.to_string(),
                payload: message.payload.clone(),
                published_at,
                delivery_count,
                acker: Box::new(JetStreamAck(message)),
            }))
        })
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

struct JetStreamAck(jetstream::Message);

impl Acker for JetStreamAck {
    fn ack(self: Box<Self>) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async move { self.0.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}")) })
    }
}
