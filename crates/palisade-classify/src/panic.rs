use std::any::Any;
use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Once};
use std::task::{Context, Poll};

use crate::{ClassifyError, Outcome};

/// A panic caught inside protected work: a permanent failure carrying the
/// message, and, with the [hook](install_hook) installed, where it happened and
/// a backtrace when `RUST_BACKTRACE` asks for one.
#[derive(Clone, Debug)]
pub struct Panicked {
    message: String,
    /// Where, and the backtrace: boxed, so that a panic without them (and the
    /// errors that can hold a panic) stay small.
    site: Option<Box<(PanicLocation, Option<Arc<Backtrace>>)>>,
}

impl PartialEq for Panicked {
    /// Two panics are equal when their message and location are: the backtrace
    /// is not compared.
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message && self.location() == other.location()
    }
}

impl Eq for Panicked {}

/// Where a panic happened: the file, line and column of its `panic!` (or of the
/// `unwrap`, the index, ...).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PanicLocation {
    file: String,
    line: u32,
    column: u32,
}

impl PanicLocation {
    /// The source file.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The line, from 1.
    pub fn line(&self) -> u32 {
        self.line
    }

    /// The column, from 1.
    pub fn column(&self) -> u32 {
        self.column
    }
}

impl fmt::Display for PanicLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// What the hook saw of the last panic on this thread.
struct Site {
    message: String,
    location: Option<PanicLocation>,
    backtrace: Option<Arc<Backtrace>>,
}

thread_local! {
    static LAST: RefCell<Option<Site>> = const { RefCell::new(None) };
}

static INSTALLED: Once = Once::new();

/// Installs a panic hook that remembers where each panic happened, so that a
/// [`Panicked`] caught on the same thread (as every catch in palisade is: in
/// the poll that panicked) carries its [`location`](Panicked::location) and,
/// when `RUST_BACKTRACE` asks for it, its [`backtrace`](Panicked::backtrace).
///
/// The hook already installed (the default one, or yours) still runs after it,
/// for every panic: nothing it printed or recorded before is lost. Installing
/// twice installs once. Without it, a `Panicked` has its message alone.
///
/// ```
/// use palisade_classify::{catch_panic_sync, install_hook};
///
/// install_hook();
/// let panic = catch_panic_sync(|| -> u32 { panic!("bad input") }).unwrap_err();
/// let location = panic.location().unwrap();
/// assert!(location.file().ends_with(".rs"));
/// assert!(panic.to_string().starts_with("panicked at "));
/// ```
pub fn install_hook() {
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let location = info.location().map(|l| PanicLocation {
                file: l.file().to_owned(),
                line: l.line(),
                column: l.column(),
            });
            let backtrace = Backtrace::capture();
            let backtrace =
                (backtrace.status() == BacktraceStatus::Captured).then(|| Arc::new(backtrace));
            let site = Site {
                message: message_of(info.payload()),
                location,
                backtrace,
            };
            // A panic while the slot is borrowed (in a panic of this very code)
            // is only not remembered.
            let _ = LAST.try_with(|last| {
                if let Ok(mut last) = last.try_borrow_mut() {
                    *last = Some(site);
                }
            });
            previous(info);
        }));
    });
}

/// The text of a panic payload.
fn message_of(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic whose payload is not a string".to_owned()
    }
}

impl Panicked {
    /// Builds the error from a panic payload (`&str` and `String` payloads keep their
    /// text; others say they were not a string), with the location and backtrace
    /// the [hook](install_hook) remembered for it on this thread, if it did.
    pub fn from_payload(payload: &(dyn Any + Send)) -> Self {
        let message = message_of(payload);
        // The hook's record is taken only if it is this panic's: a hook installed
        // over it, or a panic caught elsewhere, leaves no stale location behind.
        let site = LAST
            .try_with(|last| last.try_borrow_mut().ok().and_then(|mut l| l.take()))
            .ok()
            .flatten()
            .filter(|site| site.message == message);
        let site = site.and_then(|site| Some(Box::new((site.location?, site.backtrace))));
        Panicked { message, site }
    }

    /// The panic's message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Where it happened, if the [hook](install_hook) was installed.
    pub fn location(&self) -> Option<&PanicLocation> {
        self.site.as_ref().map(|site| &site.0)
    }

    /// Its backtrace, if the hook was installed and `RUST_BACKTRACE` (or
    /// `RUST_LIB_BACKTRACE`) asked for one.
    pub fn backtrace(&self) -> Option<&Backtrace> {
        self.site.as_ref()?.1.as_deref()
    }
}

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location() {
            Some(location) => write!(f, "panicked at {location}: {}", self.message),
            None => write!(f, "panicked: {}", self.message),
        }
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
