use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::{ClassifyError, Outcome};

/// A panic caught inside protected work: a permanent failure carrying the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Panicked {
    message: String,
}

impl Panicked {
    /// Builds the error from a panic payload (`&str` and `String` payloads keep their
    /// text; others say they were not a string).
    pub fn from_payload(payload: &(dyn Any + Send)) -> Self {
        let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "a panic whose payload is not a string".to_owned()
        };
        Panicked { message }
    }

    /// The panic's message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "panicked: {}", self.message)
    }
}

impl std::error::Error for Panicked {}

impl ClassifyError for Panicked {
    /// A panic is a bug in the call or the dependency's client: permanent.
    fn outcome(&self) -> Outcome {
        Outcome::Permanent
    }
}

pin_project_lite::pin_project! {
    /// A future that turns a panic in the wrapped future into `Err(Panicked)`; made
    /// by [`catch_panic`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct CatchPanic<F> {
        #[pin]
        inner: F,
        done: bool,
    }
}

/// Runs `future`, turning a panic inside it into `Err(Panicked)` so that the worker
/// polling it keeps running.
///
/// After a panic the inner future is never polled again; it is dropped with the
/// `CatchPanic`.
///
/// ```
/// use palisade_classify::catch_panic;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let result = catch_panic(async {
///     if true { panic!("index out of range") }
///     7
/// })
/// .await;
/// assert_eq!(result.unwrap_err().message(), "index out of range");
/// # }
/// ```
pub fn catch_panic<F: Future>(future: F) -> CatchPanic<F> {
    CatchPanic {
        inner: future,
        done: false,
    }
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, Panicked>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        assert!(!*this.done, "CatchPanic polled after completion");
        let inner = this.inner;
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => {
                *this.done = true;
                Poll::Ready(Ok(v))
            }
            Err(payload) => {
                *this.done = true;
                Poll::Ready(Err(Panicked::from_payload(&*payload)))
            }
        }
    }
}

/// Runs `f`, turning a panic inside it into `Err(Panicked)`: the synchronous
/// counterpart of [`catch_panic`].
///
/// ```
/// use palisade_classify::catch_panic_sync;
///
/// let r = catch_panic_sync(|| -> u32 { panic!("bad {}", 1) });
/// assert_eq!(r.unwrap_err().to_string(), "panicked: bad 1");
/// ```
pub fn catch_panic_sync<T>(f: impl FnOnce() -> T) -> Result<T, Panicked> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| Panicked::from_payload(&*p))
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts
mod tests {
    use super::*;

    #[tokio::test]
    async fn panic_in_a_spawned_task_becomes_an_error_and_the_runtime_lives_on() {
        let handle = tokio::spawn(catch_panic(async {
            tokio::task::yield_now().await;
            let v: Vec<u8> = Vec::new();
            v[3]
        }));
        let err = handle
            .await
            .expect("the task itself completed")
            .unwrap_err();
        assert!(err.message().contains("index out of bounds"), "{err}");
        assert_eq!(err.outcome(), Outcome::Permanent);
        // The worker keeps serving.
        assert_eq!(tokio::spawn(async { 5 }).await.unwrap(), 5);
    }

    #[tokio::test]
    async fn values_pass_through() {
        assert_eq!(catch_panic(async { 3 }).await, Ok(3));
    }

    #[test]
    fn payload_kinds() {
        assert_eq!(
            catch_panic_sync(|| std::panic::panic_any(5u8))
                .unwrap_err()
                .message(),
            "a panic whose payload is not a string"
        );
        assert_eq!(
            catch_panic_sync(|| panic!("{}", String::from("owned")))
                .unwrap_err()
                .message(),
            "owned"
        );
        assert_eq!(catch_panic_sync(|| 9), Ok(9));
    }
}
