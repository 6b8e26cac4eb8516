//! A throwaway `nats-server -js` on a free loopback port with its own store directory,
//! killed (and the directory removed) when dropped or stopped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::process::{Child, Command};

pub struct NatsServer {
    child: Child,
    pub port: u16,
    store: PathBuf,
}

/// Path of `nats-server` on PATH, if installed.
pub fn nats_server_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("nats-server")).find(|p| p.is_file())
}

/// Why the broker scenarios and tests cannot run here.
pub const MISSING: &str = "nats-server is not installed (apt-get install nats-server; scripts/test.sh installs it)";

impl NatsServer {
    /// None when nats-server is not installed.
    pub async fn start() -> anyhow::Result<Option<NatsServer>> {
        let Some(bin) = nats_server_binary() else { return Ok(None) };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let store = std::env::temp_dir().join(format!("pinchpoint-nats-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&store).with_context(|| format!("create {}", store.display()))?;
        let child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("start nats-server")?;
        let mut server = NatsServer { child, port, store };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!("nats-server exited at start ({status})");
            }
            if Instant::now() > deadline {
                bail!("nats-server did not listen on {port} within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Some(server))
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
