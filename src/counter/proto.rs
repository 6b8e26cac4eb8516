//! Generated gRPC types for `counter.v1` (from proto/counter.proto, compiled by protox in
//! build.rs), plus conversions between them and the domain model.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("counter.v1");

use crate::counter::model::{CounterError, Op};

impl Operation {
    pub fn to_op(&self) -> Result<Op, CounterError> {
        Op::new(self.resource_id.clone(), self.counter_type.clone(), self.delta)
    }
}

impl From<&Op> for Operation {
    fn from(op: &Op) -> Self {
        Operation {
            resource_id: op.key.resource_id.clone(),
            counter_type: op.key.counter_type.clone(),
            delta: op.delta,
            request_id: String::new(),
        }
    }
}

impl OpResult {
    pub fn from_outcome(op: Op, outcome: &Result<i64, CounterError>) -> Self {
        let (value, error, message) = match outcome {
            Ok(v) => (*v, ErrorCode::None, String::new()),
            Err(e) => (0, ErrorCode::from(e), e.to_string()),
        };
        OpResult {
            resource_id: op.key.resource_id,
            counter_type: op.key.counter_type,
            value,
            error: error as i32,
            message,
        }
    }

    pub fn outcome(&self) -> Result<i64, CounterError> {
        match ErrorCode::try_from(self.error).unwrap_or(ErrorCode::Unavailable) {
            ErrorCode::None => Ok(self.value),
            ErrorCode::Invalid => Err(CounterError::Invalid(self.message.clone())),
            ErrorCode::Overflow => Err(CounterError::Overflow(format!("{}/{}", self.resource_id, self.counter_type))),
            ErrorCode::Unavailable => Err(CounterError::Unavailable(self.message.clone())),
        }
    }
}

impl From<&CounterError> for ErrorCode {
    fn from(e: &CounterError) -> Self {
        match e {
            CounterError::Invalid(_) | CounterError::TooManyOperations(_) => ErrorCode::Invalid,
            CounterError::Overflow(_) => ErrorCode::Overflow,
            CounterError::Unavailable(_) | CounterError::Internal(_) => ErrorCode::Unavailable,
        }
    }
}

/// How a domain error travels as a gRPC status.
pub fn to_status(e: &CounterError) -> tonic::Status {
    match e {
        CounterError::Invalid(_) | CounterError::TooManyOperations(_) => tonic::Status::invalid_argument(e.to_string()),
        CounterError::Overflow(_) => tonic::Status::out_of_range(e.to_string()),
        CounterError::Unavailable(_) => tonic::Status::unavailable(e.to_string()),
        CounterError::Internal(_) => tonic::Status::internal(e.to_string()),
    }
}

/// The inverse of [`to_status`], for the gateway.
pub fn from_status(s: &tonic::Status) -> CounterError {
    use tonic::Code;
    match s.code() {
        Code::InvalidArgument => CounterError::Invalid(s.message().to_string()),
        Code::OutOfRange => CounterError::Overflow(s.message().to_string()),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::ResourceExhausted => {
            CounterError::Unavailable(format!("{}: {}", s.code().description(), s.message()))
        }
        _ => CounterError::Internal(format!("{}: {}", s.code().description(), s.message())),
    }
}

/// The bounded label value for `rpc_*{code}` metrics.
pub fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "ok",
        Cancelled => "cancelled",
        InvalidArgument => "invalid_argument",
        DeadlineExceeded => "deadline_exceeded",
        OutOfRange => "out_of_range",
        Unavailable => "unavailable",
        ResourceExhausted => "resource_exhausted",
        Internal => "internal",
        _ => "other",
    }
}
