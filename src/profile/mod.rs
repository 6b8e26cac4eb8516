//! Flamegraphs during load: CPU profiles (pprof-rs, [`cpu`]) and contention profiles (stacks
//! weighted by time spent waiting on locks, pools and worker queues, [`contention`]), rendered
//! as gzipped pprof protobuf ([`pprof`]), collapsed stacks or an inferno SVG ([`flame`]), and
//! differential flamegraphs of two captures ([`diff`]).
//!
//! Both kinds produce a [`StackProfile`], the one in-memory shape every output is made from.
//! The admin router serves them at `/debug/pprof/profile` and `/debug/pprof/contention`
//! ([`http`]); `pinchpoint flame` captures them from a running process (`cli`, lab feature).

pub mod contention;
pub mod cpu;
pub mod diff;
pub mod flame;
pub mod http;
pub mod pprof;
pub mod proto;

#[cfg(feature = "lab")]
pub mod cli;

use std::time::{Duration, SystemTime};

/// What a profile measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// On-CPU time, sampled by SIGPROF.
    Cpu,
    /// Time spent waiting for locks, pool slots and worker queues.
    Contention,
}

impl Kind {
    /// `cpu` or `contention`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Cpu => "cpu",
            Kind::Contention => "contention",
        }
    }
}

/// An output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Gzipped `perftools.profiles.Profile` (what `go tool pprof` reads).
    Pb,
    /// An inferno flamegraph.
    Svg,
    /// Collapsed stacks: `root;...;leaf VALUE` per line (inferno/Brendan Gregg format).
    Folded,
}

impl Format {
    /// `pb`, `svg` or `folded`.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "pb" | "proto" | "pprof" => Some(Format::Pb),
            "svg" => Some(Format::Svg),
            "folded" | "collapsed" => Some(Format::Folded),
            _ => None,
        }
    }

    /// From a file name: `.svg`, `.pb.gz`/`.pb`/`.pprof`, `.folded`/`.txt`.
    pub fn from_path(path: &std::path::Path) -> Option<Format> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        if name.ends_with(".svg") {
            Some(Format::Svg)
        } else if name.ends_with(".pb.gz") || name.ends_with(".pb") || name.ends_with(".pprof") {
            Some(Format::Pb)
        } else if name.ends_with(".folded") || name.ends_with(".txt") {
            Some(Format::Folded)
        } else {
            None
        }
    }

    /// `pb`, `svg` or `folded`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Pb => "pb",
            Format::Svg => "svg",
            Format::Folded => "folded",
        }
    }

    /// The HTTP content type of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Pb => "application/octet-stream",
            Format::Svg => "image/svg+xml",
            Format::Folded => "text/plain; charset=utf-8",
        }
    }
}

/// One frame of a stack.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frame {
    /// Function name, demangled and without the `::h0123…` hash; or a synthetic frame such as
    /// `lock:store.global` or `held by: src/counter/store/memory.rs:88`.
    pub function: String,
    /// Source file, when known.
    pub file: Option<String>,
    /// Line, 0 when unknown.
    pub line: u32,
}

impl Frame {
    /// A frame that is only a name (resources, threads, holder sites).
    pub fn synthetic(name: impl Into<String>) -> Frame {
        Frame { function: name.into(), file: None, line: 0 }
    }
}

/// One stack and its values (one per [`StackProfile::sample_types`]).
#[derive(Clone, Debug)]
pub struct Sample {
    /// Root (outermost) first, leaf last.
    pub frames: Vec<Frame>,
    /// One value per sample type.
    pub values: Vec<i64>,
    /// String labels (`thread`, `resource`...): pprof labels in pb.
    pub labels: Vec<(String, String)>,
}

/// A captured profile, independent of the output format.
#[derive(Clone, Debug)]
pub struct StackProfile {
    /// What was captured.
    pub kind: Kind,
    /// `(type, unit)` of each value, e.g. `("cpu", "nanoseconds")`.
    pub sample_types: Vec<(String, String)>,
    /// The value flamegraphs are weighted by (index into `sample_types`).
    pub default_sample_type: usize,
    /// `(type, unit)` of the sampling period, and the period itself.
    pub period_type: (String, String),
    /// The sampling period, in `period_type` units.
    pub period: i64,
    /// When the capture started.
    pub start: SystemTime,
    /// How long it ran.
    pub duration: Duration,
    /// Free-form notes carried into the pb `comment` field (sampling rate, scale).
    pub comments: Vec<String>,
    /// The stacks and their values.
    pub samples: Vec<Sample>,
}

impl StackProfile {
    /// Sum of the default value over all samples.
    pub fn total(&self) -> i64 {
        self.samples.iter().map(|s| s.values.get(self.default_sample_type).copied().unwrap_or(0)).sum()
    }

    /// Encodes in `format`.
    pub fn render(&self, format: Format) -> Result<Vec<u8>, Error> {
        match format {
            Format::Pb => pprof::encode_gzip(self),
            Format::Folded => Ok(flame::folded(self).into_bytes()),
            Format::Svg => flame::svg(self),
        }
    }
}

/// Why a capture failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another CPU profile is running (one at a time per process).
    #[error("a CPU profile is already running in this process; retry when it ends")]
    Busy,
    #[error("cpu profiler: {0}")]
    /// The profiler could not start or stop.
    Profiler(String),
    #[error("encoding the profile: {0}")]
    /// The capture could not be encoded in the format asked for.
    Encode(String),
    #[error("{0}")]
    /// Reading or writing a file failed.
    Io(#[from] std::io::Error),
}

/// Cleans a demangled symbol for display and for stable folded stacks across builds: drops
/// the legacy-mangling hash suffix (`::h0123456789abcdef`) and replaces `;` (the folded
/// format's separator, found in array types like `[u8; 4]`) by `,`.
pub fn clean_name(name: &str) -> String {
    let mut s = name;
    if let Some(i) = s.rfind("::h") {
        let hash = &s[i + 3..];
        if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            s = &s[..i];
        }
    }
    elide_generics(&s.replace(';', ","), MAX_GENERIC_ARGS)
}

/// A frame's display name: [`clean_name`], plus the source file's name when the symbol is a
/// bare name. Release builds keep only line tables, where inlined frames are named without
/// their path (`increment`, `{async_fn#0}`); `increment (memory.rs)` says where it is.
pub fn display_name(name: &str, file: Option<&str>) -> String {
    let clean = clean_name(name);
    match file.and_then(|f| f.rsplit(['/', '\\']).next()).filter(|f| !f.is_empty()) {
        Some(base) if !clean.contains("::") => format!("{clean} ({base})"),
        _ => clean,
    }
}

/// Generic argument lists longer than this are shown as `<…>`.
pub const MAX_GENERIC_ARGS: usize = 60;

/// Shortens `<…>` groups, innermost first, whose text is longer than `max` characters: tokio
/// and std frames carry generic arguments of thousands of characters (a future's whole type),
/// which make flamegraphs unreadable and captures huge. `->` is not a bracket.
pub fn elide_generics(name: &str, max: usize) -> String {
    let mut out = String::with_capacity(name.len());
    // Start offsets in `out` of the open groups.
    let mut open: Vec<usize> = Vec::new();
    let mut prev = '\0';
    for c in name.chars() {
        match c {
            '<' => {
                out.push(c);
                open.push(out.len());
            }
            '>' if prev != '-' && !open.is_empty() => {
                let start = open.pop().unwrap_or_default();
                if out[start..].chars().count() > max {
                    out.truncate(start);
                    out.push('…');
                }
                out.push(c);
            }
            _ => out.push(c),
        }
        prev = c;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_name_drops_hash_and_semicolons() {
        assert_eq!(clean_name("foo::bar::h0123456789abcdef"), "foo::bar");
        assert_eq!(clean_name("foo::hello"), "foo::hello");
        assert_eq!(clean_name("<[u8; 4] as Debug>::fmt"), "<[u8, 4] as Debug>::fmt");
        let long = "<alloc::boxed::Box<dyn core::ops::function::FnOnce<(), Output = ()> + core::marker::Send> as \
                    core::ops::function::FnOnce<()>>::call_once";
        assert_eq!(clean_name(long), "<alloc::boxed::Box<…> as core::ops::function::FnOnce<()>>::call_once");
        assert_eq!(elide_generics("f<fn() -> u8>", 60), "f<fn() -> u8>");
        assert_eq!(display_name("increment", Some("/w/src/counter/store/memory.rs")), "increment (memory.rs)");
        assert_eq!(display_name("a::b", Some("/w/src/x.rs")), "a::b");
        assert_eq!(display_name("main", None), "main");
    }

    #[test]
    fn format_from_path() {
        use std::path::Path;
        assert_eq!(Format::from_path(Path::new("a/cpu.svg")), Some(Format::Svg));
        assert_eq!(Format::from_path(Path::new("cpu.pb.gz")), Some(Format::Pb));
        assert_eq!(Format::from_path(Path::new("cpu.folded")), Some(Format::Folded));
        assert_eq!(Format::from_path(Path::new("cpu.png")), None);
    }
}
