//! Deadlines and panic isolation around mail-auth's futures.
//!
//! mail-auth parses whatever a client sends; a bug there must cost one
//! message a `permerror`, not the session's task (invariant 6 in
//! DESIGN.md). A future is polled inside `catch_unwind`, which needs no
//! `'static` bound, so the message is not copied to run in its own task.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Why a guarded future produced no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interrupted {
    /// The deadline passed (DNS too slow): a temporary failure.
    Deadline,
    /// The future panicked: a permanent failure for this input.
    Panic,
}

/// Runs `fut` to completion within `deadline`, turning a panic into
/// [`Interrupted::Panic`].
pub(crate) async fn guarded<F: Future>(
    deadline: Duration,
    fut: F,
) -> Result<F::Output, Interrupted> {
    match tokio::time::timeout(deadline, CatchUnwind(Box::pin(fut))).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(())) => Err(Interrupted::Panic),
        Err(_) => Err(Interrupted::Deadline),
    }
}

/// Polls the inner future inside `catch_unwind`. The box keeps this type
/// `Unpin`, so no pin projection (and no `unsafe`) is needed.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, ()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.get_mut().0.as_mut();
        // The inner future is dropped unpolled after a panic, so whatever
        // state it left behind is never observed.
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(panic = %what, "message authentication panicked");
                Poll::Ready(Err(()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_and_a_deadline_become_values() {
        let ok = guarded(Duration::from_secs(1), async { 7 }).await;
        assert_eq!(ok, Ok(7));
        let panicked = guarded(Duration::from_secs(1), async {
            if ok.is_ok() {
                panic!("boom");
            }
            7
        })
        .await;
        assert_eq!(panicked, Err(Interrupted::Panic));
        let slow = guarded(Duration::from_millis(10), std::future::pending::<()>()).await;
        assert_eq!(slow, Err(Interrupted::Deadline));
    }
}
