//! Contention profiles in process: threads fight over a named probe lock; the profile names
//! the lock, the waiting function and the holder's acquire site, and its totals scale.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pinchpoint::admin::{router, AdminOptions};
use pinchpoint::probe::lock::Mutex;
use pinchpoint::profile::{contention, flame};

/// Holds the lock for ~200 µs of work: other threads wait here.
#[inline(never)]
fn contend_for_test(m: &Mutex<u64>) {
    let mut g = m.lock();
    let until = Instant::now() + Duration::from_micros(200);
    while Instant::now() < until {
        *g = std::hint::black_box(g.wrapping_add(1));
    }
}

struct Fight {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Fight {
    fn start(name: &'static str, threads: usize) -> Fight {
        let m = Arc::new(Mutex::new(name, 0u64));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let (m, stop) = (m.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Relaxed) {
                        contend_for_test(&m);
                    }
                })
            })
            .collect();
        Fight { stop, threads }
    }
}

impl Drop for Fight {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn contention_profile_names_lock_waiter_and_holder() {
    let fight = Fight::start("test.fight", 4);
    let prof = contention::capture_blocking(Duration::from_millis(1500));
    drop(fight);
    let folded = flame::folded(&prof);
    let ours: Vec<&str> = folded.lines().filter(|l| l.contains("lock:test.fight")).collect();
    assert!(!ours.is_empty(), "no stack names lock:test.fight:\n{folded}");
    assert!(
        ours.iter().any(|l| {
            // A frame reads `path::contend_for_test` with full debug info and
            // `contend_for_test (profile_contention.rs)` with line tables only.
            let frames: Vec<&str> = l.split(';').collect();
            let waiter = frames.iter().position(|f| f.contains("contend_for_test"));
            let lock = frames.iter().position(|f| *f == "lock:test.fight");
            matches!((waiter, lock), (Some(w), Some(k)) if w < k)
        }),
        "the waiting function is in the stack, above the lock frame:\n{}",
        ours.join("\n")
    );
    assert!(
        ours.iter().any(|l| l.contains(";lock:test.fight;held by: tests/profile_contention.rs:")),
        "the holder's acquire site is the last frame:\n{}",
        ours.join("\n")
    );
    // Weighted by wait: 4 threads, 3 waiting most of 1.5 s → well over a second of waiting.
    let waited_ns: i64 = ours.iter().map(|l| l.rsplit(' ').next().unwrap().parse::<i64>().unwrap()).sum();
    assert!(waited_ns > 500_000_000, "total wait {waited_ns} ns");
    // Scaled counts: contentions ≥ stacks kept (each sample stands for the unsampled ones).
    let (kept, contentions): (i64, i64) = prof
        .samples
        .iter()
        .filter(|s| s.labels.iter().any(|(k, v)| k == "resource" && v == "lock:test.fight"))
        .fold((0, 0), |(a, b), s| (a + s.values[0], b + s.values[1]));
    assert!(kept > 0 && contentions >= kept, "kept {kept}, contentions {contentions}");
}

fn decode_published(gz: &[u8]) -> prost_reflect::DynamicMessage {
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut raw).unwrap();
    let fds = protox::compile(["profile.proto"], [concat!(env!("CARGO_MANIFEST_DIR"), "/proto")]).unwrap();
    let pool = prost_reflect::DescriptorPool::from_file_descriptor_set(fds).unwrap();
    let desc = pool.get_message_by_name("perftools.profiles.Profile").unwrap();
    prost_reflect::DynamicMessage::decode(desc, &raw[..]).expect("decodes as perftools.profiles.Profile")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contention_endpoint_pb_and_svg() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(AdminOptions::default())).await.unwrap() });
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let _fight = Fight::start("test.endpoint", 3);

    let r = http.get(format!("http://{addr}/debug/pprof/contention?seconds=1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-profile-seconds"], "1");
    let m = decode_published(&r.bytes().await.unwrap());
    let table: Vec<String> = m
        .get_field_by_name("string_table")
        .unwrap()
        .as_list()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let vt = |v: &prost_reflect::Value| {
        let m = v.as_message().unwrap();
        let t = m.get_field_by_name("type").unwrap().as_i64().unwrap() as usize;
        let u = m.get_field_by_name("unit").unwrap().as_i64().unwrap() as usize;
        format!("{}/{}", table[t], table[u])
    };
    let types: Vec<String> = m.get_field_by_name("sample_type").unwrap().as_list().unwrap().iter().map(vt).collect();
    assert_eq!(types, ["samples/count", "contentions/count", "delay/nanoseconds"]);
    assert_eq!(vt(&m.get_field_by_name("period_type").unwrap()), "contentions/count");
    assert_eq!(m.get_field_by_name("period").unwrap().as_i64().unwrap(), 1);
    let default = m.get_field_by_name("default_sample_type").unwrap().as_i64().unwrap() as usize;
    assert_eq!(table[default], "delay");
    assert!(table.iter().any(|s| s == "lock:test.endpoint"), "resource frame is a function name");
    let comments = m.get_field_by_name("comment").unwrap().as_list().unwrap().len();
    assert!(comments >= 1, "the sampling rate is in the comments");
    assert!(table.iter().any(|s| s.starts_with("sampled: at most one stack per resource per")));

    let r = http.get(format!("http://{addr}/debug/pprof/contention?seconds=0.5&format=svg")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let svg = r.text().await.unwrap();
    assert!(svg.starts_with("<?xml") && svg.contains("<svg"));
    let mut reader = quick_xml::Reader::from_str(&svg);
    while !matches!(reader.read_event().expect("svg parses as XML"), quick_xml::events::Event::Eof) {}
}
