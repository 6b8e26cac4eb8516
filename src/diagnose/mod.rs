//! The doctor: reads the probes' metrics, names the pinch, where it is, and what to change.
//!
//! - [`snapshot`]: a parsed exposition and arithmetic between two of them;
//! - [`findings`]: finding ids, scores and the thresholds shared with the alert rules.

pub mod findings;
pub mod snapshot;
