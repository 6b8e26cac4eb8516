//! `pinchpoint lab --baseline-bin`: bad input is refused with a one-line reason and exit 2,
//! and a baseline that is not the uninstrumented twin (here: this instrumented binary itself)
//! is refused after one run, before any ratio is printed.
#![cfg(feature = "lab")]

use std::process::Command;

fn lab(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pinchpoint")).arg("lab").args(args).output().expect("run pinchpoint lab")
}

#[test]
fn a_missing_baseline_or_an_unknown_level_is_bad_usage() {
    let out = lab(&["--baseline-bin", "/nonexistent/pinchpoint", "--scenario", "monolith", "--level", "L1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file"), "{out:?}");

    let out = lab(&["--baseline-bin", env!("CARGO_BIN_EXE_pinchpoint"), "--level", "L9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown level \"L9\""), "{out:?}");
}

#[test]
fn an_instrumented_baseline_is_refused() {
    let me = env!("CARGO_BIN_EXE_pinchpoint");
    let out = lab(&["--baseline-bin", me, "--scenario", "monolith", "--level", "L1", "--repeats", "1", "--quick"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the baseline's monolith is instrumented"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("on/off"), "printed ratios anyway");
}
