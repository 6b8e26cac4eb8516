//! The lab's child processes: `pinchpoint service|gateway|monolith` (and `redis-server`) on
//! free loopback ports, found through the listener lines they print, stopped with SIGTERM
//! and checked to be gone.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Environment variable set on every child to the lab's own pid.
pub const LAB_MARKER: &str = "PINCHPOINT_LAB";

/// A running child and the listeners it announced (`http`, `grpc`, `admin`).
pub struct ChildProc {
    pub role: String,
    child: Child,
    pub addrs: HashMap<String, SocketAddr>,
}

impl ChildProc {
    /// Starts `pinchpoint ROLE --listen :0 --admin :0 ARGS...` and waits for its listener
    /// lines. `bin` is the pinchpoint binary to run (None: this one).
    pub async fn start(bin: Option<&Path>, role: &str, args: &[String]) -> anyhow::Result<ChildProc> {
        let exe = match bin {
            Some(b) => b.to_path_buf(),
            None => std::env::current_exe().context("locate the pinchpoint binary")?,
        };
        let mut cmd = Command::new(exe);
        cmd.arg(role).args(["--listen", ":0", "--admin", ":0"]).args(args);
        let kinds: &[&str] = if role == "service" { &["grpc", "admin"] } else { &["http", "admin"] };
        Self::spawn(role, cmd, kinds).await
    }

    /// Starts `pinchpoint ROLE ARGS...` and waits for the listener lines of `kinds`.
    pub async fn start_with(role: &str, args: &[String], kinds: &[&str]) -> anyhow::Result<ChildProc> {
        let exe = std::env::current_exe().context("locate the pinchpoint binary")?;
        let mut cmd = Command::new(exe);
        cmd.arg(role).args(args);
        Self::spawn(role, cmd, kinds).await
    }

    async fn spawn(role: &str, mut cmd: Command, kinds: &[&str]) -> anyhow::Result<ChildProc> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::null()).stdin(Stdio::null()).kill_on_drop(true);
        // Marks the child as this lab's, so anyone can check none outlived it.
        cmd.env(LAB_MARKER, std::process::id().to_string());
        let mut child = cmd.spawn().with_context(|| format!("start {role}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut addrs = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while kinds.iter().any(|k| !addrs.contains_key(*k)) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match tokio::time::timeout(left, lines.next_line()).await {
                Ok(Ok(Some(l))) => l,
                Ok(_) => bail!("{role} exited before announcing its listeners (see its flags)"),
                Err(_) => bail!("{role} did not announce its listeners within 30 s"),
            };
            let parts: Vec<&str> = line.split_whitespace().collect();
            if let [_, kind, "listening", "on", addr] = parts.as_slice() {
                addrs.insert(kind.to_string(), addr.parse()?);
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        crate::probe::task::spawn(
            "lab.child_stdout",
            async move { while let Ok(Some(_)) = lines.next_line().await {} },
        );
        Ok(ChildProc { role: role.to_string(), child, addrs })
    }

    pub fn url(&self, kind: &str) -> String {
        format!("http://{}", self.addrs[kind])
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGTERM, then wait up to `deadline` for a clean exit; SIGKILL after that. Returns
    /// whether the child exited cleanly (status 0) in time and is gone.
    pub async fn stop(mut self, deadline: Duration) -> bool {
        let Some(pid) = self.child.id() else { return true };
        let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        let clean = match tokio::time::timeout(deadline, self.child.wait()).await {
            Ok(Ok(status)) => status.success(),
            _ => {
                let _ = self.child.kill().await;
                false
            }
        };
        clean && !PathBuf::from(format!("/proc/{pid}")).exists()
    }
}

/// A throwaway `redis-server` on a free loopback port, without persistence.
pub struct RedisProc {
    child: Child,
    pub port: u16,
}

impl RedisProc {
    /// None when redis-server is not installed.
    pub async fn start() -> anyhow::Result<Option<RedisProc>> {
        let Some(bin) = which("redis-server") else { return Ok(None) };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if Instant::now() > deadline {
                bail!("redis-server did not start listening on {port}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Some(RedisProc { child, port }))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}
