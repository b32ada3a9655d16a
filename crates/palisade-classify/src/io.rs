use std::io::{self, ErrorKind};

use crate::{ClassifyError, Delivery, Outcome, Transient};

/// The outcome of an I/O error, by its kind.
///
/// | kinds | outcome |
/// | --- | --- |
/// | `ConnectionRefused` | transient, not delivered (nothing was connected) |
/// | `ConnectionReset`, `ConnectionAborted`, `BrokenPipe`, `NotConnected`, `TimedOut`, `UnexpectedEof`, `Interrupted`, `WouldBlock`, `AddrNotAvailable`, `HostUnreachable`, `NetworkUnreachable`, `NetworkDown`, `ResourceBusy` | transient, may have been delivered |
/// | `InvalidInput`, `InvalidData` | ignored: the caller sent something wrong |
/// | everything else (`NotFound`, `PermissionDenied`, `Unsupported`, `OutOfMemory`, …) | permanent |
///
/// ```
/// use palisade_classify::{Delivery, Outcome, classify_io_error};
/// use std::io::ErrorKind;
///
/// match classify_io_error(&ErrorKind::ConnectionRefused.into()) {
///     Outcome::Transient(t) => assert_eq!(t.delivery(), Delivery::NotDelivered),
///     other => panic!("{other:?}"),
/// }
/// assert_eq!(classify_io_error(&ErrorKind::PermissionDenied.into()), Outcome::Permanent);
/// ```
pub fn classify_io_error(error: &io::Error) -> Outcome {
    classify_io_kind(error.kind())
}

/// The outcome of an I/O error kind; see [`classify_io_error`].
pub fn classify_io_kind(kind: ErrorKind) -> Outcome {
    match kind {
        ErrorKind::ConnectionRefused => {
            Outcome::Transient(Transient::new().with_delivery(Delivery::NotDelivered))
        }
        ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe
        | ErrorKind::NotConnected
        | ErrorKind::TimedOut
        | ErrorKind::UnexpectedEof
        | ErrorKind::Interrupted
        | ErrorKind::WouldBlock
        | ErrorKind::AddrNotAvailable
        | ErrorKind::HostUnreachable
        | ErrorKind::NetworkUnreachable
        | ErrorKind::NetworkDown
        | ErrorKind::ResourceBusy => Outcome::transient(),
        ErrorKind::InvalidInput | ErrorKind::InvalidData => Outcome::Ignored,
        _ => Outcome::Permanent,
    }
}

impl ClassifyError for io::Error {
    fn outcome(&self) -> Outcome {
        classify_io_error(self)
    }
}

impl ClassifyError for ErrorKind {
    fn outcome(&self) -> Outcome {
        classify_io_kind(*self)
    }
}

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
impl ClassifyError for tokio::time::error::Elapsed {
    /// A timeout is transient: the next attempt may be faster. The request may have
    /// reached the server.
    fn outcome(&self) -> Outcome {
        Outcome::transient()
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts
mod tests {
    use super::*;

    #[test]
    fn table() {
        let transient = [
            ErrorKind::ConnectionReset,
            ErrorKind::ConnectionAborted,
            ErrorKind::BrokenPipe,
            ErrorKind::TimedOut,
            ErrorKind::UnexpectedEof,
            ErrorKind::Interrupted,
        ];
        for k in transient {
            match classify_io_kind(k) {
                Outcome::Transient(t) => assert_eq!(t.delivery(), Delivery::MaybeDelivered),
                o => panic!("{k:?} gave {o:?}"),
            }
        }
        assert_eq!(classify_io_kind(ErrorKind::InvalidInput), Outcome::Ignored);
        assert_eq!(classify_io_kind(ErrorKind::NotFound), Outcome::Permanent);
        assert_eq!(classify_io_kind(ErrorKind::Other), Outcome::Permanent);
        let e = io::Error::new(ErrorKind::ConnectionRefused, "nope");
        assert_eq!(e.outcome(), classify_io_error(&e));
    }

    #[cfg(feature = "tokio")]
    #[tokio::test(start_paused = true)]
    async fn elapsed_is_transient() {
        let e = tokio::time::timeout(
            std::time::Duration::from_millis(1),
            std::future::pending::<()>(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.outcome(), Outcome::transient());
    }
}
