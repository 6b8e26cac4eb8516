//! `pinchpoint flame`: capture a CPU or contention profile from a running process's admin
//! listener, or draw a differential flamegraph of two folded captures.
//!
//! ```text
//! pinchpoint flame --target http://127.0.0.1:9464 --seconds 10 --kind cpu -o cpu.svg
//! pinchpoint flame diff before.folded after.folded -o diff.svg
//! ```
//!
//! The output format follows the file's extension: `.svg`, `.pb.gz` (pprof), `.folded`.
//! Exit 2 with a one-line reason when the target cannot be reached or refuses.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand, ValueEnum};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use super::{diff, Format};

/// `pinchpoint flame ...`
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct FlameArgs {
    #[command(subcommand)]
    /// `diff`, or none to capture.
    pub command: Option<FlameCommand>,
    #[command(flatten)]
    /// What to capture, and from where.
    pub capture: CaptureArgs,
}

#[derive(Subcommand, Debug)]
/// `pinchpoint flame` subcommands.
pub enum FlameCommand {
    /// A differential flamegraph of two folded captures (red grew, blue shrank).
    Diff(DiffArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
/// `--kind`: what to capture.
pub enum KindArg {
    /// Where CPU time goes.
    Cpu,
    /// Where tasks wait on locks and pools.
    Contention,
}

/// Capture from a running process.
#[derive(Args, Debug)]
pub struct CaptureArgs {
    /// Admin listener of the process, e.g. `http://127.0.0.1:9464` (or `:9464`).
    #[arg(long, required = true)]
    pub target: Option<String>,
    /// Capture window in seconds (the server caps it at 60).
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    /// `cpu` (where CPU time goes) or `contention` (where time is lost waiting).
    #[arg(long, value_enum, default_value = "cpu")]
    pub kind: KindArg,
    /// CPU sampling rate (default 99).
    #[arg(long)]
    pub hz: Option<u32>,
    /// Output file; its extension picks the format: .svg, .pb.gz, .folded.
    #[arg(short = 'o', long, required = true)]
    pub output: Option<PathBuf>,
    /// Bearer token of the admin listener.
    #[arg(long, env = "PINCHPOINT_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

/// `pinchpoint flame diff BEFORE AFTER -o FILE.svg`
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// Folded capture before the change.
    pub before: PathBuf,
    /// Folded capture after the change.
    pub after: PathBuf,
    /// Output SVG.
    #[arg(short = 'o', long)]
    pub output: PathBuf,
    /// Scale BEFORE to AFTER's total first, so captures of different length or load compare
    /// by share rather than by absolute count.
    #[arg(long)]
    pub normalize: bool,
    /// Title of the graph.
    #[arg(long, default_value = "Differential flamegraph")]
    pub title: String,
}

/// Runs `pinchpoint flame`.
pub async fn run_cli(args: FlameArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(FlameCommand::Diff(d)) => run_diff(d),
        None => run_capture(args.capture).await,
    }
}

fn run_diff(d: DiffArgs) -> anyhow::Result<ExitCode> {
    let read = |p: &PathBuf| std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()));
    let (before, after) = (read(&d.before)?, read(&d.after)?);
    for (p, text) in [(&d.before, &before), (&d.after, &after)] {
        if text.trim_start().starts_with('<') {
            bail!("{} is not a folded capture (capture with -o FILE.folded)", p.display());
        }
    }
    let svg = diff::diff_svg(&before, &after, d.normalize, &d.title)?;
    std::fs::write(&d.output, &svg).with_context(|| format!("cannot write {}", d.output.display()))?;
    println!("wrote {} ({} bytes)", d.output.display(), svg.len());
    Ok(ExitCode::SUCCESS)
}

/// `http://HOST:PORT`, `HOST:PORT` or `:PORT` → (host:port authority).
fn authority(target: &str) -> anyhow::Result<String> {
    let t = target.trim().trim_end_matches('/');
    let t = t.strip_prefix("http://").unwrap_or(t);
    if t.starts_with("https://") {
        bail!("{target}: https admin listeners are not supported; use http://HOST:PORT");
    }
    let t = if t.starts_with(':') { format!("127.0.0.1{t}") } else { t.to_string() };
    if t.is_empty() || t.contains('/') {
        bail!("{target}: want http://HOST:PORT of the admin listener");
    }
    Ok(t)
}

async fn run_capture(c: CaptureArgs) -> anyhow::Result<ExitCode> {
    let (Some(target), Some(output)) = (c.target, c.output) else {
        eprintln!("pinchpoint flame: --target and -o are required");
        return Ok(ExitCode::from(2));
    };
    let Some(format) = Format::from_path(&output) else {
        eprintln!("pinchpoint flame: {}: use a .svg, .pb.gz or .folded file name", output.display());
        return Ok(ExitCode::from(2));
    };
    if !(c.seconds > 0.0 && c.seconds.is_finite()) {
        eprintln!("pinchpoint flame: --seconds must be a positive number");
        return Ok(ExitCode::from(2));
    }
    let auth = match authority(&target) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pinchpoint flame: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let path = match c.kind {
        KindArg::Cpu => "/debug/pprof/profile",
        KindArg::Contention => "/debug/pprof/contention",
    };
    let mut query = format!("seconds={}&format={}", c.seconds, format.as_str());
    if let (Some(hz), KindArg::Cpu) = (c.hz, c.kind) {
        query += &format!("&hz={hz}");
    }
    let uri = format!("{path}?{query}");

    let stream = match tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(&auth)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            eprintln!("pinchpoint flame: cannot reach {target}: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(_) => {
            eprintln!("pinchpoint flame: cannot reach {target}: connect timed out after 5s");
            return Ok(ExitCode::from(2));
        }
    };
    let (mut sender, conn) = match http1::handshake(TokioIo::new(stream)).await {
        Ok(x) => x,
        Err(e) => {
            eprintln!("pinchpoint flame: cannot reach {target}: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let conn_task = tokio::spawn(conn);
    let mut req = http::Request::get(&uri).header(http::header::HOST, &auth);
    if let Some(t) = &c.admin_token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req.body(Empty::<bytes::Bytes>::new()).context("building the request")?;
    // The server holds the body for the window (capped at 60 s), then symbolizes.
    let deadline = Duration::from_secs_f64(c.seconds.min(60.0)) + Duration::from_secs(120);
    let result = tokio::time::timeout(deadline, async {
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>((status, body))
    })
    .await;
    conn_task.abort();
    let (status, body) = match result {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            eprintln!("pinchpoint flame: {target}: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(_) => {
            eprintln!("pinchpoint flame: {target}: no profile within {deadline:?}");
            return Ok(ExitCode::from(2));
        }
    };
    if !status.is_success() {
        let reason = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
        let reason = reason.lines().next().unwrap_or_default().to_string();
        eprintln!("pinchpoint flame: {target} answered {status}: {reason}");
        return Ok(ExitCode::from(2));
    }
    std::fs::write(&output, &body).with_context(|| format!("cannot write {}", output.display()))?;
    println!(
        "wrote {} ({} bytes, {} profile, {} s)",
        output.display(),
        body.len(),
        match c.kind {
            KindArg::Cpu => "cpu",
            KindArg::Contention => "contention",
        },
        c.seconds.min(60.0)
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_forms() {
        assert_eq!(authority("http://127.0.0.1:9464/").unwrap(), "127.0.0.1:9464");
        assert_eq!(authority(":9464").unwrap(), "127.0.0.1:9464");
        assert_eq!(authority("localhost:1").unwrap(), "localhost:1");
        assert!(authority("https://x:1").is_err());
        assert!(authority("http://x:1/metrics").is_err());
    }
}
