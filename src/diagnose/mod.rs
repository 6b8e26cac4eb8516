//! The doctor's inputs: metric snapshots scraped from a process's admin listener, and the
//! rates and deltas between two of them.

pub mod snapshot;
