//! The consumer against a real `nats-server -js` (started here on a free loopback port with
//! a temporary store, killed at the end): every message consumed and acked exactly once,
//! stale data named by the lab, and LeakCheck telling a slow shutdown from a leak.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pinchpoint::consumer::broker::{NatsServer, MISSING};
use pinchpoint::consumer::handler::Handler;
use pinchpoint::consumer::jetstream::{JetStream, Retention};
use pinchpoint::consumer::process::close_and_measure;
use pinchpoint::consumer::publisher::{publish, PublishPlan};
use pinchpoint::consumer::source::{Acker, BoxFuture, Delivery, Source};
use pinchpoint::consumer::{Consumer, ConsumerOptions};
use pinchpoint::probe::task::LeakCheck;
use serde_json::Value;

fn subjects(tag: &str) -> Vec<String> {
    (0..5).map(|i| format!("{tag}.topic{i}")).collect()
}

async fn broker_and_stream(tag: &str, retention: Retention) -> (NatsServer, JetStream) {
    let broker = NatsServer::start().await.expect("nats-server starts").expect(MISSING);
    let js = JetStream::connect(&broker.url(), tag).await.expect("connect");
    js.ensure_stream(&subjects(tag), retention).await.expect("stream");
    (broker, js)
}

/// Per payload: (times delivered to the consumer, times acked).
type Seen = Arc<Mutex<HashMap<String, (u32, u32)>>>;

/// Wraps a source to count, per message, deliveries and acks (the consumer sees only the
/// `Source` trait, so this sits between it and JetStream unnoticed).
struct Counting {
    inner: Box<dyn Source>,
    seen: Seen,
}

struct CountingAck {
    inner: Box<dyn Acker>,
    key: String,
    seen: Seen,
}

fn key(d: &Delivery) -> String {
    String::from_utf8_lossy(&d.payload).split(' ').next().unwrap_or_default().to_string()
}

impl Source for Counting {
    fn next(&mut self) -> BoxFuture<'_, Option<anyhow::Result<Delivery>>> {
        Box::pin(async move {
            let mut d = match self.inner.next().await? {
                Ok(d) => d,
                Err(e) => return Some(Err(e)),
            };
            let key = key(&d);
            self.seen.lock().unwrap().entry(key.clone()).or_default().0 += 1;
            let inner = std::mem::replace(&mut d.acker, Box::new(NoAck));
            d.acker = Box::new(CountingAck { inner, key, seen: self.seen.clone() });
            Some(Ok(d))
        })
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

struct NoAck;

impl Acker for NoAck {
    fn ack(self: Box<Self>) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async { anyhow::bail!("placeholder acker") })
    }
}

impl Acker for CountingAck {
    fn ack(self: Box<Self>) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async move {
            self.inner.ack().await?;
            self.seen.lock().unwrap().entry(self.key).or_default().1 += 1;
            Ok(())
        })
    }
}

async fn wait_for(what: &str, deadline: Duration, mut done: impl AsyncFnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !done().await {
        assert!(Instant::now() < until, "{what}: not within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_published_message_is_consumed_and_acked_exactly_once_and_the_stream_empties() {
    const N: u64 = 300;
    let (broker, js) = broker_and_stream("once", Retention::WorkQueue).await;
    let subjects = subjects("once");
    let seen: Seen = Arc::default();
    let sources = js.sources("t", &subjects, 1000).await.expect("sources");
    assert_eq!(sources.len(), 5, "one source per subject");
    let sources: Vec<Box<dyn Source>> =
        sources.into_iter().map(|inner| Box::new(Counting { inner, seen: seen.clone() }) as Box<dyn Source>).collect();
    let options = ConsumerOptions {
        workers: 8,
        queue: 64,
        handler: Handler { wait: Duration::from_millis(1), cpu: Duration::ZERO },
        shutdown_delay: Duration::ZERO,
    };
    let mut consumer = Consumer::start(sources, options);
    let plan = PublishPlan { subjects: subjects.clone(), messages: N, rate: None, payload_bytes: 32 };
    let published = publish(&js, &plan).await.expect("publish");
    assert_eq!(published.sent, N);
    let names = JetStream::consumer_names("t", subjects.len());
    wait_for("every message acked", Duration::from_secs(20), async || {
        let acked = seen.lock().unwrap().values().filter(|(_, a)| *a > 0).count() as u64;
        acked == N && js.backlog(&names).await.unwrap() == (0, 0)
    })
    .await;
    consumer.close().await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len() as u64, N, "every message arrived");
    for i in 0..N {
        assert_eq!(seen.get(&i.to_string()), Some(&(1, 1)), "message {i}: (deliveries, acks)");
    }
    // Work-queue retention drops a message once acked: an empty stream means the broker
    // has every ack.
    assert_eq!(js.messages().await.unwrap(), 0, "the stream is empty after the run");
    consumer.join().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leak_check_passes_a_slow_shutdown_that_a_fixed_100ms_wait_flags() {
    let (broker, js) = broker_and_stream("slow", Retention::Limits).await;
    let check = LeakCheck::start();
    let sources = js.sources("slow", &subjects("slow"), 1000).await.expect("sources");
    let options = ConsumerOptions { shutdown_delay: Duration::from_millis(1500), ..ConsumerOptions::default() };
    let consumer = Consumer::start(sources, options);
    let report = close_and_measure(consumer, check, Duration::from_millis(100), Duration::from_secs(5)).await;
    assert_eq!(report.alive_after_fixed_wait.len(), 5, "a fixed 100 ms wait sees the 5 pullers: {report:?}");
    assert!(report.alive_after_fixed_wait.iter().all(|t| t.name.as_deref() == Some("consumer.puller")));
    assert!(report.leaked.is_empty(), "LeakCheck waits them out: {report:?}");
    assert!(report.leak_check_waited_seconds >= 1.4, "they ended after their delay: {report:?}");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leak_check_names_the_spawn_site_of_a_task_that_never_ends() {
    let (broker, js) = broker_and_stream("leak", Retention::Limits).await;
    let check = LeakCheck::start();
    let sources = js.sources("leak", &subjects("leak"), 1000).await.expect("sources");
    let consumer = Consumer::start(sources, ConsumerOptions::default());
    let forgotten = pinchpoint::probe::task::spawn("test.forgotten", std::future::pending::<()>());
    let line = line!() - 1;
    let report = close_and_measure(consumer, check, Duration::from_millis(100), Duration::from_secs(1)).await;
    assert_eq!(report.leaked.len(), 1, "only the forgotten task is leaked: {report:?}");
    let leaked = &report.leaked[0];
    assert_eq!(leaked.name.as_deref(), Some("test.forgotten"));
    assert!(leaked.site.ends_with(&format!("consumer_broker.rs:{line}")), "{leaked:?}");
    forgotten.abort();
    broker.stop().await;
}

/// `pinchpoint lab` with the residue scenario, then tuned: received ≠ sent is named stale
/// data in the first, and the second (purged before every run) is clean.
#[test]
fn lab_names_stale_data_in_residue_and_tuned_after_it_is_clean() {
    let out = std::process::Command::new(common::BIN)
        .args(["lab", "--scenario", "consumer-residue", "--scenario", "consumer-tuned", "--quick"])
        .args(["--repeats", "2", "--max-levels", "1", "--no-flamegraphs", "--json"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run the lab");
    assert!(out.status.success(), "lab exited with {:?}", out.status);
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let scenario = |name: &str| -> Value {
        report["scenarios"].as_array().unwrap().iter().find(|s| s["name"] == name).cloned().expect(name)
    };
    let residue = scenario("consumer-residue");
    assert!(residue["skipped"].is_null() && residue["error"].is_null(), "{residue}");
    let runs = residue["consumer"]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for run in runs {
        let (sent, before) = (run["sent"].as_u64().unwrap(), run["in_stream_before"].as_u64().unwrap());
        assert_eq!(run["received"].as_u64().unwrap(), sent + before, "a run receives what earlier runs left: {run}");
        assert!(run["verdict"].as_str().unwrap().starts_with("stale data from an earlier run"), "{run}");
    }
    // Run 2 finds at least run 1's messages in the stream.
    assert!(runs[1]["in_stream_before"].as_u64().unwrap() >= runs[0]["sent"].as_u64().unwrap());
    assert_eq!(residue["levels"][0]["consistent"], false);
    let tuned = scenario("consumer-tuned");
    assert!(tuned["skipped"].is_null() && tuned["error"].is_null(), "{tuned}");
    for run in tuned["consumer"]["runs"].as_array().unwrap() {
        let n = run["sent"].as_u64().unwrap();
        assert!(n > 0);
        assert_eq!((run["received"].as_u64(), run["acked"].as_u64()), (Some(n), Some(n)), "{run}");
        assert_eq!(run["redelivered"], 0);
        assert!(run["verdict"].is_null(), "{run}");
    }
    assert_eq!(tuned["levels"][0]["consistent"], true);
}

/// `pinchpoint consumer` as a process: its admin listener exposes the consumer's families and
/// its worker pool's, and SIGTERM ends it cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_process_exposes_its_counts_on_the_admin_listener() {
    const N: u64 = 50;
    let (broker, js) = broker_and_stream("proc", Retention::Limits).await;
    let url = broker.url();
    let args = ["consumer", "--nats", &url, "--stream", "proc", "--workers", "4", "--handler-time", "1ms"];
    let mut consumer = common::Proc::start(&[&args[..], &["--admin", ":0"]].concat(), &["admin"]);
    let admin = consumer.admin_url();
    let plan = PublishPlan { subjects: subjects("proc"), messages: N, rate: None, payload_bytes: 16 };
    publish(&js, &plan).await.expect("publish");
    let scrape = || async { pinchpoint::diagnose::snapshot::Snapshot::scrape(&admin).await.expect("scrape") };
    wait_for("all acked", Duration::from_secs(20), async || {
        scrape().await.sum("pinchpoint_consumer_messages_total", &[("outcome", "acked")]) == N as f64
    })
    .await;
    let snap = scrape().await;
    assert_eq!(snap.sum("pinchpoint_consumer_received_total", &[]), N as f64);
    assert_eq!(snap.sum("pinchpoint_consumer_redeliveries_total", &[]), 0.0);
    assert_eq!(snap.sum("pinchpoint_consumer_latency_seconds_count", &[]), N as f64);
    assert_eq!(snap.sum("pinchpoint_worker_jobs_total", &[("pool", "consumer"), ("outcome", "done")]), N as f64);
    assert_eq!(snap.sum("pinchpoint_workers", &[("pool", "consumer")]), 4.0);
    assert!(consumer.terminate(Duration::from_secs(10)).success(), "SIGTERM ends the consumer cleanly");
    broker.stop().await;
}
