//! Test harness: real `pinchpoint` processes and a real `redis-server` on free loopback
//! ports. Everything waits for a condition with a deadline; nothing sleeps and hopes.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_pinchpoint");

/// A running `pinchpoint` child; killed on drop if still running.
pub struct Proc {
    pub child: Child,
    /// Listener addresses by kind (`http`, `grpc`, `admin`) from the start-up lines.
    pub addrs: std::collections::HashMap<String, SocketAddr>,
}

impl Proc {
    /// Starts `pinchpoint ARGS...` and waits until it printed the listener lines `kinds`.
    pub fn start(args: &[&str], kinds: &[&str]) -> Proc {
        Self::start_with_env(args, kinds, &[])
    }

    /// Like [`Proc::start`], with extra environment variables (e.g. `OTEL_*`); `kinds` may
    /// include `console` when `--console` is passed.
    pub fn start_with_env(args: &[&str], kinds: &[&str], env: &[(&str, &str)]) -> Proc {
        Self::spawn(args, kinds, env, None)
    }

    /// Like [`Proc::start_with_env`], and collects what the child writes to stderr.
    pub fn start_capturing_stderr(
        args: &[&str],
        kinds: &[&str],
        env: &[(&str, &str)],
    ) -> (Proc, std::sync::Arc<std::sync::Mutex<String>>) {
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        (Self::spawn(args, kinds, env, Some(stderr.clone())), stderr)
    }

    fn spawn(
        args: &[&str],
        kinds: &[&str],
        env: &[(&str, &str)],
        stderr: Option<std::sync::Arc<std::sync::Mutex<String>>>,
    ) -> Proc {
        let mut cmd = Command::new(BIN);
        let err_to = if stderr.is_some() { Stdio::piped() } else { Stdio::inherit() };
        cmd.args(args).stdout(Stdio::piped()).stderr(err_to).env("RUST_LOG", "warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn pinchpoint");
        if let (Some(into), Some(pipe)) = (stderr, child.stderr.take()) {
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut text = into.lock().unwrap();
                    text.push_str(&line);
                    text.push('\n');
                }
            });
        }
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            // Keeps draining stdout for the child's whole life so it never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut addrs = std::collections::HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while kinds.iter().any(|k| !addrs.contains_key(*k)) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => {
                    let _ = child.kill();
                    panic!("pinchpoint {args:?} did not print listener lines {kinds:?} in time (got {addrs:?})");
                }
            };
            // "<role> <kind> listening on <addr>"
            let parts: Vec<&str> = line.split_whitespace().collect();
            if let [_, kind, "listening", "on", addr] = parts.as_slice() {
                addrs.insert(kind.to_string(), addr.parse().expect("listener line has an address"));
            }
        }
        Proc { child, addrs }
    }

    pub fn addr(&self, kind: &str) -> SocketAddr {
        self.addrs[kind]
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr("http"))
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.addr("grpc"))
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.addr("admin"))
    }

    /// Sends SIGTERM and waits (at most `deadline`) for the exit status.
    pub fn terminate(&mut self, deadline: Duration) -> ExitStatus {
        signal(self.child.id(), "TERM");
        wait_exit(&mut self.child, deadline)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().expect("run kill");
    assert!(ok.success(), "kill -{sig} {pid} failed");
}

/// SIGSTOPs `pid` and waits until every thread of it is stopped: the stop takes effect
/// asynchronously, and a thread still running can answer one more request.
pub fn stop_process(pid: u32) {
    signal(pid, "STOP");
    let until = Instant::now() + Duration::from_secs(5);
    let stopped = || -> Option<bool> {
        let mut all = true;
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
            let stat = std::fs::read_to_string(task.ok()?.path().join("stat")).ok()?;
            // The state follows the parenthesised command name.
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            all &= matches!(state, 'T' | 't');
        }
        Some(all)
    };
    while stopped() != Some(true) {
        assert!(Instant::now() < until, "process {pid} did not stop within 5 s of SIGSTOP");
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn wait_exit(child: &mut Child, deadline: Duration) -> ExitStatus {
    let until = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().expect("wait child") {
            return status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("process {} did not exit within {deadline:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A counter service on free ports with extra flags.
pub fn service(extra: &[&str]) -> Proc {
    let mut args = vec!["service", "--listen", ":0", "--admin", ":0"];
    args.extend_from_slice(extra);
    Proc::start(&args, &["grpc", "admin"])
}

/// A gateway in front of `service_urls` (comma separated) on free ports.
pub fn gateway(service_urls: &str, extra: &[&str]) -> Proc {
    let mut args = vec!["gateway", "--listen", ":0", "--admin", ":0", "--service", service_urls];
    args.extend_from_slice(extra);
    Proc::start(&args, &["http", "admin"])
}

pub fn monolith(extra: &[&str]) -> Proc {
    let mut args = vec!["monolith", "--listen", ":0", "--admin", ":0"];
    args.extend_from_slice(extra);
    Proc::start(&args, &["http", "admin"])
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A throwaway `redis-server` on a free loopback port, without persistence.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Redis {
        let bin = which("redis-server").unwrap_or_else(|| {
            panic!("redis-server is not installed: run the README's test command (scripts/test.sh), which installs it")
        });
        for _attempt in 0..5 {
            let port = free_port();
            let child = Command::new(&bin)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            let mut redis = Redis { child, port };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if redis.ping() {
                    return redis;
                }
                if let Ok(Some(_)) = redis.child.try_wait() {
                    break; // port taken in the meantime: try another
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("redis-server did not come up");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// Runs a raw command (space-separated words) and returns the raw reply.
    pub fn command(&self, words: &[&str]) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut cmd = format!("*{}\r\n", words.len());
        for w in words {
            cmd += &format!("${}\r\n{}\r\n", w.len(), w);
        }
        s.write_all(cmd.as_bytes()).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            if out.ends_with(b"\r\n") {
                break;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// A unique prefix for resource ids, so tests never see each other's data.
pub fn fresh(tag: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{tag}-{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Polls `f` until it returns Some, or panics after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A thin JSON client for the HTTP API.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: String) -> Api {
        Api { base, http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap() }
    }

    pub async fn increment(
        &self,
        resource: &str,
        ctype: &str,
        delta: i64,
        request_id: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut req = self
            .http
            .post(format!("{}/api/v1/counter/increment", self.base))
            .json(&serde_json::json!({"resource_id": resource, "counter_type": ctype, "delta": delta}));
        if let Some(id) = request_id {
            req = req.header("x-request-id", id);
        }
        let resp = req.send().await.expect("increment request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .post(format!("{}{}", self.base, path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("post");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn get_value(&self, resource: &str, ctype: &str) -> i64 {
        let resp = self.http.get(format!("{}/api/v1/counter/{resource}/{ctype}", self.base)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "read {resource}/{ctype}");
        let v: serde_json::Value = resp.json().await.unwrap();
        v["value"].as_i64().expect("value is an integer")
    }

    pub async fn health(&self) -> u16 {
        match self.http.get(format!("{}/health", self.base)).send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }
}

/// The admin listener's `/metrics` text.
pub async fn scrape(admin_url: &str) -> String {
    reqwest::get(format!("{admin_url}/metrics")).await.expect("scrape").text().await.expect("metrics body")
}

/// Sum of the samples of `name` whose labels include every `(label, value)` pair.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| {
            // "name{labels} value [# exemplar]" or "name value"
            let after = match l.find('}') {
                Some(i) => &l[i + 1..],
                None => &l[name.len()..],
            };
            after.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

/// Reads a counter straight from a service over gRPC.
pub async fn service_value(grpc_url: &str, resource: &str, ctype: &str) -> i64 {
    use pinchpoint::counter::proto::{counter_service_client::CounterServiceClient, GetRequest};
    let mut c = CounterServiceClient::connect(grpc_url.to_string()).await.expect("connect to service");
    c.get(GetRequest { resource_id: resource.into(), counter_type: ctype.into() })
        .await
        .expect("Get")
        .into_inner()
        .value
}
