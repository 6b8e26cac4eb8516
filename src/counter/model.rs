//! The counter domain: keys, operations, validation rules and the errors they produce.
//!
//! One set of rules serves the HTTP API, the gRPC service and the stores, so a request
//! refused at the gateway would be refused the same way by the service.

use std::fmt;

/// Largest magnitude a single delta may have (DESIGN.md: ±1e9).
pub const MAX_DELTA: i64 = 1_000_000_000;
/// Most operations one batch may carry.
pub const MAX_BATCH: usize = 1000;
/// Largest request body the HTTP API reads.
pub const MAX_BODY_BYTES: usize = 1 << 20;
pub const MAX_RESOURCE_ID: usize = 128;
pub const MAX_COUNTER_TYPE: usize = 64;
pub const MAX_REQUEST_ID: usize = 128;

/// A counter's identity. Both parts are validated before a `Key` exists.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub resource_id: String,
    pub counter_type: String,
}

impl Key {
    pub fn new(resource_id: impl Into<String>, counter_type: impl Into<String>) -> Result<Key, CounterError> {
        let key = Key { resource_id: resource_id.into(), counter_type: counter_type.into() };
        check_ident("resource_id", &key.resource_id, MAX_RESOURCE_ID)?;
        check_ident("counter_type", &key.counter_type, MAX_COUNTER_TYPE)?;
        Ok(key)
    }

    /// A single string naming the counter. `/` is outside the allowed alphabet, so two
    /// different keys never map to the same string.
    pub fn flat(&self) -> String {
        format!("{}/{}", self.resource_id, self.counter_type)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.resource_id, self.counter_type)
    }
}

/// One increment: a validated key and a validated delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub key: Key,
    pub delta: i64,
}

impl Op {
    pub fn new(
        resource_id: impl Into<String>,
        counter_type: impl Into<String>,
        delta: i64,
    ) -> Result<Op, CounterError> {
        let key = Key::new(resource_id, counter_type)?;
        check_delta(delta)?;
        Ok(Op { key, delta })
    }
}

/// Identifies one increment for at-most-once application: the request id, the operation's
/// index inside its request (0 for a single increment), and the counter it touches.
#[derive(Debug, Clone, Copy)]
pub struct ApplyId<'a> {
    pub request_id: &'a str,
    pub index: u32,
}

impl<'a> ApplyId<'a> {
    /// The ids of a batch's operations when they share the batch's request id.
    pub fn for_batch(request_id: &'a str, n: usize) -> Vec<ApplyId<'a>> {
        (0..n).map(|i| ApplyId { request_id, index: i as u32 }).collect()
    }
}

pub fn check_delta(delta: i64) -> Result<(), CounterError> {
    if delta == 0 {
        return Err(CounterError::invalid("delta must be a non-zero integer"));
    }
    if !(-MAX_DELTA..=MAX_DELTA).contains(&delta) {
        return Err(CounterError::invalid(format!("delta {delta} is outside ±{MAX_DELTA}")));
    }
    Ok(())
}

pub fn check_batch_len(n: usize) -> Result<(), CounterError> {
    if n == 0 {
        return Err(CounterError::invalid("operations must not be empty"));
    }
    if n > MAX_BATCH {
        return Err(CounterError::TooManyOperations(n));
    }
    Ok(())
}

pub fn check_request_id(id: &str) -> Result<(), CounterError> {
    check_ident("request id", id, MAX_REQUEST_ID)
}

fn check_ident(what: &str, value: &str, max: usize) -> Result<(), CounterError> {
    if value.is_empty() || value.len() > max {
        return Err(CounterError::invalid(format!("{what} must be 1-{max} characters, got {}", value.len())));
    }
    if let Some(bad) = value.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))) {
        return Err(CounterError::invalid(format!("{what} may only contain A-Z a-z 0-9 _ . : - (found {bad:?})")));
    }
    Ok(())
}

/// Everything that can go wrong applying or reading a counter. Each variant maps to one
/// HTTP status and one gRPC code, so both APIs fail the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CounterError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} operations in one batch; the limit is {MAX_BATCH}")]
    TooManyOperations(usize),
    #[error("counter {0} would overflow; the increment was not applied")]
    Overflow(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl CounterError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        CounterError::Invalid(msg.into())
    }

    /// The stable machine-readable code used in JSON errors and gRPC messages.
    pub fn code(&self) -> &'static str {
        match self {
            CounterError::Invalid(_) => "invalid_argument",
            CounterError::TooManyOperations(_) => "too_many_operations",
            CounterError::Overflow(_) => "overflow",
            CounterError::Unavailable(_) => "unavailable",
            CounterError::Internal(_) => "internal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_follow_the_alphabet_and_length_rules() {
        assert!(Key::new("user:42", "page.views-v2_x").is_ok());
        assert!(Key::new("", "t").is_err());
        assert!(Key::new("a".repeat(129), "t").is_err());
        assert!(Key::new("a".repeat(128), "t".repeat(64)).is_ok());
        assert!(Key::new("a", "t".repeat(65)).is_err());
        assert!(Key::new("a b", "t").is_err());
        assert!(Key::new("a/b", "t").is_err());
        assert!(Key::new("é", "t").is_err());
    }

    #[test]
    fn delta_must_be_nonzero_and_bounded() {
        assert!(check_delta(1).is_ok());
        assert!(check_delta(-MAX_DELTA).is_ok());
        assert!(check_delta(0).is_err());
        assert!(check_delta(MAX_DELTA + 1).is_err());
        assert!(check_delta(i64::MIN).is_err());
    }

    #[test]
    fn flat_keys_do_not_collide() {
        let a = Key::new("a:b", "c").unwrap();
        let b = Key::new("a", "b:c").unwrap();
        assert_ne!(a.flat(), b.flat());
    }
}
