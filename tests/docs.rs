//! The README and the manual in docs/ against the code they describe: the README stays a
//! front door that opens with the two commands, every finding and every metric family has its
//! place in the manual (with the doctor's own formula text), and no link points nowhere.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use pinchpoint::diagnose::findings::KINDS;
use pinchpoint::metrics::catalog::ALL;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Markdown files of the front door and the manual.
fn documents() -> Vec<String> {
    let mut docs = vec!["README.md".to_string()];
    for entry in std::fs::read_dir(root().join("docs")).expect("docs/ exists") {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".md") {
            docs.push(format!("docs/{name}"));
        }
    }
    docs.sort();
    docs
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.insert(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

/// `a/b/../c` → `a/c`, lexically; a path that climbs out keeps its leading `..`.
fn normalize(path: &Path) -> PathBuf {
    let mut out: Vec<std::path::Component> = Vec::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir if matches!(out.last(), Some(std::path::Component::Normal(_))) => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.iter().collect()
}

/// `](target)` links outside code blocks.
fn links(text: &str) -> Vec<String> {
    let mut in_code = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn the_readme_is_a_front_door_that_opens_with_the_two_commands() {
    let readme = read("README.md");
    let lines = readme.lines().count();
    assert!(lines <= 200, "README.md has {lines} lines; the manual belongs in docs/");
    let opening: String = readme.lines().take(12).collect::<Vec<_>>().join("\n");
    assert!(opening.contains("cargo run --release -- lab"), "the README must open with the lab command");
    assert!(opening.contains("bash scripts/test.sh"), "the README must open with the test command");
    // The test command is what CI runs; it must exist and install what the tests need.
    let script = read("scripts/test.sh");
    for dependency in ["redis-server", "prometheus", "nats-server"] {
        assert!(script.contains(dependency), "scripts/test.sh does not install {dependency}");
    }
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut broken = Vec::new();
    for doc in documents() {
        let text = read(&doc);
        let dir = Path::new(&doc).parent().unwrap_or(Path::new(""));
        for link in links(&text) {
            if link.starts_with("http://") || link.starts_with("https://") || link.starts_with("mailto:") {
                continue;
            }
            let (file, fragment) = match link.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (link.as_str(), None),
            };
            let target = if file.is_empty() { PathBuf::from(&doc) } else { normalize(&dir.join(file)) };
            if target.starts_with("..") {
                continue; // outside the repository (the shared DESIGN.md): not ours to check
            }
            let path = root().join(&target);
            if !path.exists() {
                broken.push(format!("{doc}: {link} (no {})", target.display()));
                continue;
            }
            if let Some(fragment) = fragment {
                if path.extension().is_some_and(|e| e == "md") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    if !anchors(&text).contains(fragment) {
                        broken.push(format!("{doc}: {link} (no heading #{fragment})"));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_finding_has_a_runbook_section_with_the_doctors_own_formula() {
    let doctor = read("docs/doctor.md");
    let headings = anchors(&doctor);
    let text = squash(&doctor);
    for kind in KINDS {
        // The alerts' runbook_url points at docs/doctor.md#<id>.
        assert!(headings.contains(kind.id), "docs/doctor.md has no `## {}` section", kind.id);
        assert!(
            text.contains(&squash(kind.explain)),
            "docs/doctor.md's {} section does not quote `diagnose --explain {}`: {}",
            kind.id,
            kind.id,
            kind.explain
        );
    }
}

#[test]
fn every_metric_family_is_described_in_the_probes_manual() {
    let probes = read("docs/probes.md");
    let missing: Vec<String> =
        ALL.iter().map(|spec| spec.exposed_name()).filter(|name| !probes.contains(&format!("`{name}`"))).collect();
    assert!(missing.is_empty(), "docs/probes.md does not describe: {missing:?}");
}

#[test]
fn the_documents_describe_the_project_as_it_is() {
    // Development history lives in git, not in the README or the manual.
    let history = ["session 1", "session 2", "session 3", "first round", "second round", "third round", "first cut"];
    for doc in documents() {
        let text = read(&doc).to_lowercase();
        for phrase in history {
            assert!(!text.contains(phrase), "{doc} talks about development history: {phrase:?}");
        }
    }
}
