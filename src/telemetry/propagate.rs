//! Trace context on outgoing calls, as a tower layer over the client's channel.

use std::task::{Context, Poll};

/// Adds the W3C trace context of the span the calling task works under ([`Span::run`]) to
/// each HTTP request: its sampled context, or the request's unsampled decision so the next
/// process drops it too. Outside any request it takes the entered `tracing` span's context.
/// With OTLP export off it adds nothing.
///
/// Wrap a tonic channel in it: `CounterServiceClient::new(Propagate::new(channel))`. It
/// works below tonic, on the `http::Request`, because a header put in a `tonic::Request`'s
/// metadata costs more: tonic then scans the metadata for its reserved names on every call.
///
/// [`Span::run`]: super::Span::run
#[derive(Clone, Debug)]
pub struct Propagate<S> {
    inner: S,
}

impl<S> Propagate<S> {
    pub fn new(inner: S) -> Self {
        Propagate { inner }
    }
}

/// The [`tower::Layer`] of [`Propagate`].
#[derive(Clone, Copy, Debug, Default)]
pub struct PropagateLayer;

impl<S> tower::Layer<S> for PropagateLayer {
    type Service = Propagate<S>;

    fn layer(&self, inner: S) -> Propagate<S> {
        Propagate::new(inner)
    }
}

impl<S, B> tower::Service<http::Request<B>> for Propagate<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> S::Future {
        // `call` runs in the calling task (a buffered channel hands the request to its
        // worker only afterwards), so the task's trace is the caller's.
        super::span::inject_current(request.headers_mut());
        self.inner.call(request)
    }
}
