//! The doctor: reads the probes' metrics, names the pinch, where it is, and what to change.
//!
//! - [`snapshot`]: a parsed exposition and arithmetic between two of them;
//! - [`window`]: one process's snapshots over a window, cut into slices;
//! - [`findings`]: finding ids, scores and the thresholds shared with the alert rules;
//! - [`rules`]: one rule per finding, reading catalog families only;
//! - [`rank`]: cause before symptom, impact first, one verdict;
//! - [`verdict`]: what the doctor says.

#[cfg(feature = "lab")]
pub mod cli;
pub mod findings;
pub mod rank;
pub mod report;
pub mod rules;
pub mod snapshot;
#[cfg(feature = "lab")]
pub mod sources;
pub mod verdict;
pub mod window;

pub use rank::diagnose;
pub use verdict::{Finding, Verdict};
pub use window::ProcessWindow;
