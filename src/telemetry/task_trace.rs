//! The trace a task works under, where its child spans and outgoing calls find it.
//!
//! What `tokio::task_local!` does, for this one value, at a fraction of the cost: tokio's
//! scope moves the value into a `RefCell` in a thread-local and back out on every poll of
//! the request's future, which measured 450 instructions per request in the gateway (under
//! callgrind, at 0% sampling). Here a poll sets and restores one pointer.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::ptr;
use std::task::{Context, Poll};

use super::otlp;

/// A request's head-sampling decision, as its task sees it.
#[derive(Clone)]
pub(super) enum Trace {
    /// Not sampled. A `HeaderValue` shares its bytes: passing an incoming header on, and
    /// adding it to each call, copies nothing.
    Dropped(http::HeaderValue),
    /// Sampled: the context of the innermost span in progress.
    Sampled(otlp::Ctx),
}

thread_local! {
    /// The trace of the [`Scoped`] future being polled on this thread, or null.
    static CURRENT: Cell<*const Trace> = const { Cell::new(ptr::null()) };
}

pin_project_lite::pin_project! {
    /// `fut`, polled with `trace` as the current trace.
    pub(super) struct Scoped<F> {
        trace: Trace,
        #[pin]
        fut: F,
    }
}

impl<F> Scoped<F> {
    pub(super) fn new(trace: Trace, fut: F) -> Self {
        Scoped { trace, fut }
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        poll_under(this.trace, this.fut, cx)
    }
}

/// Polls `fut` once with `trace` as the current trace.
pub(super) fn poll_under<F: Future>(trace: &Trace, fut: Pin<&mut F>, cx: &mut Context<'_>) -> Poll<F::Output> {
    /// Puts the outer scope's trace back, also when `fut` panics.
    struct Restore(*const Trace);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.set(self.0);
        }
    }
    let _restore = Restore(CURRENT.replace(trace as *const Trace));
    fut.poll(cx)
}

/// Calls `f` with the trace of the scope this code runs in, if any.
pub(super) fn with<R>(f: impl FnOnce(Option<&Trace>) -> R) -> R {
    let current = CURRENT.get();
    // SAFETY: CURRENT is non-null only while `poll_under` runs on this thread, and then it
    // points at the `trace` that call borrows, which cannot move or change until it returns. `f` cannot keep the reference: its result type does not name its
    // lifetime.
    f(unsafe { current.as_ref() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current_header() -> Option<String> {
        with(|t| match t {
            Some(Trace::Dropped(v)) => Some(v.to_str().unwrap().to_owned()),
            Some(Trace::Sampled(_)) => unreachable!(),
            None => None,
        })
    }

    fn dropped(s: &'static str) -> Trace {
        Trace::Dropped(http::HeaderValue::from_static(s))
    }

    #[tokio::test]
    async fn scopes_nest_and_end_with_their_future() {
        assert_eq!(current_header(), None);
        let outer = Scoped::new(dropped("outer"), async {
            assert_eq!(current_header().as_deref(), Some("outer"));
            // Across a suspension point the scope is set again on the next poll.
            tokio::task::yield_now().await;
            let inner = Scoped::new(dropped("inner"), async {
                tokio::task::yield_now().await;
                current_header()
            })
            .await;
            (inner, current_header())
        });
        let (inner, after_inner) = outer.await;
        assert_eq!(inner.as_deref(), Some("inner"));
        assert_eq!(after_inner.as_deref(), Some("outer"));
        assert_eq!(current_header(), None);
    }

    #[tokio::test]
    async fn a_spawned_task_does_not_inherit_the_scope() {
        let seen =
            Scoped::new(dropped("request"), async { tokio::spawn(async { current_header() }).await.unwrap() }).await;
        assert_eq!(seen, None);
    }

    #[test]
    fn a_panicking_future_leaves_no_scope_behind() {
        let mut fut = Box::pin(Scoped::new(dropped("doomed"), async { panic!("boom") }));
        let waker = futures_util::task::noop_waker();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = fut.as_mut().poll(&mut Context::from_waker(&waker));
        }));
        assert!(caught.is_err());
        assert_eq!(current_header(), None);
    }
}
