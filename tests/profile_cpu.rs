//! CPU profiles in process: the library API and the admin endpoint on 127.0.0.1:0.
//!
//! The profiler is process-wide, so these tests take turns (one static lock).

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use pinchpoint::admin::{router, AdminOptions};
use pinchpoint::profile::{cpu, Format};

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[inline(never)]
fn mix(x: u64, i: u64) -> u64 {
    std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i).rotate_left(17))
}

/// Burns CPU until `stop`. The frame-pointer walker attributes the interrupted function to its
/// caller, so the work is in an out-of-line callee and this function shows as its parent.
#[inline(never)]
fn burn_cpu_for_test(stop: &AtomicBool) -> u64 {
    let mut x = 1u64;
    while !stop.load(Relaxed) {
        for i in 0..10_000 {
            x = mix(x, i);
        }
    }
    x
}

/// A thread burning CPU while the guard lives.
struct Burner {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Burner {
    fn start() -> Burner {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new().name("burner".into()).spawn(move || burn_cpu_for_test(&s)).unwrap();
        Burner { stop, thread: Some(thread) }
    }
}

impl Drop for Burner {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn admin() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(AdminOptions::default())).await.unwrap() });
    format!("http://{addr}")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(90)).build().unwrap()
}

/// Decodes a gzipped profile against the published `proto/profile.proto` (not our structs).
fn decode_published(gz: &[u8]) -> prost_reflect::DynamicMessage {
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "pb output is gzipped");
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut raw).unwrap();
    let fds = protox::compile(["profile.proto"], [concat!(env!("CARGO_MANIFEST_DIR"), "/proto")]).unwrap();
    let pool = prost_reflect::DescriptorPool::from_file_descriptor_set(fds).unwrap();
    let desc = pool.get_message_by_name("perftools.profiles.Profile").unwrap();
    prost_reflect::DynamicMessage::decode(desc, &raw[..]).expect("decodes as perftools.profiles.Profile")
}

fn strings(m: &prost_reflect::DynamicMessage) -> Vec<String> {
    m.get_field_by_name("string_table")
        .unwrap()
        .as_list()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn value_type(m: &prost_reflect::DynamicMessage, table: &[String]) -> (String, String) {
    let t = m.get_field_by_name("type").unwrap().as_i64().unwrap() as usize;
    let u = m.get_field_by_name("unit").unwrap().as_i64().unwrap() as usize;
    (table[t].clone(), table[u].clone())
}

fn assert_well_formed_svg(bytes: &[u8]) {
    let text = std::str::from_utf8(bytes).expect("svg is utf-8");
    assert!(text.starts_with("<?xml"), "svg starts with an XML declaration");
    assert!(text.contains("<svg"), "has an <svg> element");
    let mut reader = quick_xml::Reader::from_str(text);
    let mut depth = 0i64;
    loop {
        match reader.read_event().expect("svg parses as XML") {
            quick_xml::events::Event::Start(_) => depth += 1,
            quick_xml::events::Event::End(_) => depth -= 1,
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(depth, 0, "every element is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_cpu_profile_names_the_burning_function() {
    let _turn = TURN.lock().await;
    let _burner = Burner::start();
    let prof = cpu::capture(Duration::from_secs(2), 99).await.expect("cpu capture");
    let folded = pinchpoint::profile::flame::folded(&prof);
    let burning: i64 = folded
        .lines()
        .filter(|l| l.contains("burn_cpu_for_test"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<i64>().unwrap())
        .sum();
    // 2 s of one busy thread at 99 Hz is up to ~198 ticks (fewer on a busy machine). The
    // frame-pointer walker credits ticks inside the loop itself to the caller (the thread's
    // closure); those in `mix` and other calls land under burn_cpu_for_test.
    let burner: i64 = folded
        .lines()
        .filter(|l| l.starts_with("burner;"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<i64>().unwrap())
        .sum();
    assert!(
        burning >= 10 && burning * 4 >= burner,
        "burn_cpu_for_test has {burning} of {burner} samples in:\n{folded}"
    );
    assert!(folded.lines().any(|l| l.starts_with("burner;")), "thread name is the root frame");
    assert_eq!(prof.period, 1_000_000_000 / 99);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_serves_folded_pb_and_svg() {
    let _turn = TURN.lock().await;
    let _burner = Burner::start();
    let base = admin().await;
    let http = client();

    let r = http.get(format!("{base}/debug/pprof/profile?seconds=1.5&format=folded")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-profile-seconds"], "1.5");
    assert_eq!(r.headers()["x-profile-hz"], "99");
    let folded = r.text().await.unwrap();
    assert!(folded.contains("burn_cpu_for_test"), "folded names the burning function:\n{folded}");

    // Default: gzipped pprof protobuf.
    let r = http.get(format!("{base}/debug/pprof/profile?seconds=1&hz=199")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    let m = decode_published(&r.bytes().await.unwrap());
    let table = strings(&m);
    assert_eq!(table[0], "", "string_table[0] is empty");
    let types: Vec<(String, String)> = m
        .get_field_by_name("sample_type")
        .unwrap()
        .as_list()
        .unwrap()
        .iter()
        .map(|v| value_type(v.as_message().unwrap(), &table))
        .collect();
    assert_eq!(types, vec![("samples".into(), "count".into()), ("cpu".into(), "nanoseconds".into())]);
    let period_type = value_type(m.get_field_by_name("period_type").unwrap().as_message().unwrap(), &table);
    assert_eq!(period_type, ("cpu".into(), "nanoseconds".into()));
    assert_eq!(m.get_field_by_name("period").unwrap().as_i64().unwrap(), 1_000_000_000 / 199);
    let duration = m.get_field_by_name("duration_nanos").unwrap().as_i64().unwrap();
    assert!((900_000_000..5_000_000_000).contains(&duration), "duration_nanos {duration}");
    let samples = m.get_field_by_name("sample").unwrap().as_list().unwrap().len();
    assert!(samples > 0, "has samples");
    let functions = m.get_field_by_name("function").unwrap().as_list().unwrap().len();
    assert!(functions > 0 && table.iter().any(|s| s.contains("burn_cpu_for_test")), "functions are named");

    let r = http.get(format!("{base}/debug/pprof/profile?seconds=1&format=svg")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/svg+xml");
    assert_well_formed_svg(&r.bytes().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_concurrent_profile_gets_429_and_seconds_are_capped() {
    let _turn = TURN.lock().await;
    let base = admin().await;
    let http = client();

    // Headers come back as soon as the capture starts: no waiting out the window.
    let first = http.get(format!("{base}/debug/pprof/profile?seconds=600&format=folded")).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-profile-seconds"], "60", "seconds=600 is capped to 60");
    assert!(cpu::busy());

    let second = http.get(format!("{base}/debug/pprof/profile?seconds=1")).send().await.unwrap();
    assert_eq!(second.status(), 429);
    let err: serde_json::Value = second.json().await.unwrap();
    assert_eq!(err["error"]["code"], "profile_running", "{err}");

    // The library API sees the same slot.
    assert!(matches!(cpu::start(99), Err(pinchpoint::profile::Error::Busy)));

    // Going away ends the capture and frees the slot.
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cpu::busy() {
        assert!(std::time::Instant::now() < deadline, "slot not freed after the client left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = http.get(format!("{base}/debug/pprof/profile?seconds=0.2&format=folded")).send().await.unwrap();
    assert_eq!(again.status(), 200);
    again.text().await.unwrap();
}

#[tokio::test]
async fn bad_parameters_get_400_json() {
    let base = admin().await;
    let http = client();
    for q in ["seconds=0", "seconds=abc", "hz=0", "hz=100000", "format=png"] {
        let r = http.get(format!("{base}/debug/pprof/profile?{q}")).send().await.unwrap();
        assert_eq!(r.status(), 400, "{q}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "bad_param", "{q}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().len() > 5);
    }
    let r = http.get(format!("{base}/debug/pprof/contention?format=jpeg")).send().await.unwrap();
    assert_eq!(r.status(), 400);
}

#[test]
fn format_names() {
    assert_eq!(Format::parse("pb"), Some(Format::Pb));
    assert_eq!(Format::parse("svg"), Some(Format::Svg));
    assert_eq!(Format::parse("folded"), Some(Format::Folded));
}
