//! A small HTTP/1.1 client with a bounded keep-alive pool, whose connections are
//! all accounted for.
//!
//! Every connection it opens runs in a task it tracks; [`HttpClient::shutdown`]
//! closes them all and waits until they have ended, so a run ends with no open
//! connection and no live task.

use http::HeaderMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use palisade_classify::{ClassifyError, Delivery, HttpResponse, Outcome, Transient};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How many idle connections the pool keeps; more are closed. 64 covers the
/// demo's concurrency at 50 requests per second with 800 ms spikes.
const MAX_IDLE: usize = 64;

/// A response: its status, `Retry-After` header and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    status: u16,
    retry_after: Option<Bytes>,
    body: Bytes,
}

impl Reply {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

impl HttpResponse for Reply {
    fn status_code(&self) -> u16 {
        self.status
    }

    fn retry_after_header(&self) -> Option<&[u8]> {
        self.retry_after.as_deref()
    }
}

/// Why a request produced no response.
#[derive(Debug)]
pub struct HttpError {
    kind: HttpErrorKind,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum HttpErrorKind {
    Refused,
    Connect,
    Broken,
    Closed,
    Invalid,
    NotSent,
}

impl HttpError {
    fn new(
        kind: HttpErrorKind,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        HttpError {
            kind,
            source: Some(source.into()),
        }
    }

    fn connect(error: io::Error) -> Self {
        let kind = if error.kind() == io::ErrorKind::ConnectionRefused {
            HttpErrorKind::Refused
        } else {
            HttpErrorKind::Connect
        };
        HttpError::new(kind, error)
    }

    /// Whether the connection was refused: nothing listens at the address.
    pub fn is_refused(&self) -> bool {
        self.kind == HttpErrorKind::Refused
    }

    /// Whether the connection broke (reset, closed) before a whole response came.
    pub fn is_broken(&self) -> bool {
        self.kind == HttpErrorKind::Broken
    }

    /// Whether the request could not be built (a malformed path).
    pub fn is_invalid(&self) -> bool {
        self.kind == HttpErrorKind::Invalid
    }

    /// Whether the client was shut down.
    pub fn is_closed(&self) -> bool {
        self.kind == HttpErrorKind::Closed
    }

    /// A request not sent because too little of its deadline was left.
    pub fn not_sent(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        HttpError::new(HttpErrorKind::NotSent, cause)
    }

    /// Whether the request was not sent: too little of its deadline was left.
    pub fn is_not_sent(&self) -> bool {
        self.kind == HttpErrorKind::NotSent
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            HttpErrorKind::Refused => "connection refused",
            HttpErrorKind::Connect => "connecting failed",
            HttpErrorKind::Broken => "connection broken before a response",
            HttpErrorKind::Closed => "client shut down",
            HttpErrorKind::Invalid => "invalid request",
            HttpErrorKind::NotSent => "not sent: too little of the deadline left",
        })
    }
}

impl std::error::Error for HttpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl ClassifyError for HttpError {
    fn outcome(&self) -> Outcome {
        match self.kind {
            HttpErrorKind::Refused => {
                Outcome::Transient(Transient::new().with_delivery(Delivery::NotDelivered))
            }
            HttpErrorKind::Connect | HttpErrorKind::Broken => Outcome::transient(),
            // Not sent for lack of time: the dependency did not fail.
            HttpErrorKind::Closed | HttpErrorKind::Invalid | HttpErrorKind::NotSent => {
                Outcome::Ignored
            }
        }
    }
}

#[derive(Debug)]
struct Inner {
    addr: SocketAddr,
    idle: Mutex<Vec<SendRequest<Empty<Bytes>>>>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    open: Arc<AtomicUsize>,
    opened: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// An HTTP/1.1 client of one address with a keep-alive pool. Clones share the pool.
///
/// A request whose future is dropped mid-flight takes its connection with it: the
/// connection is never returned to the pool half-used.
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Arc<Inner>,
}

impl HttpClient {
    /// A client of `addr`. It connects lazily.
    pub fn new(addr: SocketAddr) -> Self {
        HttpClient {
            inner: Arc::new(Inner {
                addr,
                idle: Mutex::new(Vec::new()),
                tracker: TaskTracker::new(),
                cancel: CancellationToken::new(),
                open: Arc::new(AtomicUsize::new(0)),
                opened: AtomicU64::new(0),
            }),
        }
    }

    /// The connections open now.
    pub fn open_connections(&self) -> usize {
        self.inner.open.load(Relaxed)
    }

    /// The connections opened since the start.
    pub fn opened_connections(&self) -> u64 {
        self.inner.opened.load(Relaxed)
    }

    /// `GET path`, reading the whole body. A malformed `path` is an error
    /// ([`HttpError::is_invalid`]), never a panic.
    pub async fn get(&self, path: &str) -> Result<Reply, HttpError> {
        self.get_with(path, HeaderMap::new()).await
    }

    /// `GET path` with `headers` added, reading the whole body.
    pub async fn get_with(&self, path: &str, headers: HeaderMap) -> Result<Reply, HttpError> {
        if self.inner.cancel.is_cancelled() {
            return Err(HttpError {
                kind: HttpErrorKind::Closed,
                source: None,
            });
        }
        let mut request = Request::get(path)
            .header(header::HOST, "dependency")
            .body(Empty::new())
            .map_err(|e| HttpError::new(HttpErrorKind::Invalid, e))?;
        request.headers_mut().extend(headers);
        let mut sender = match self.checkout() {
            Some(sender) => sender,
            None => self.connect().await?,
        };
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| HttpError::new(HttpErrorKind::Broken, e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| Bytes::copy_from_slice(v.as_bytes()));
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| HttpError::new(HttpErrorKind::Broken, e))?
            .to_bytes();
        self.checkin(sender);
        Ok(Reply {
            status,
            retry_after,
            body,
        })
    }

    fn checkout(&self) -> Option<SendRequest<Empty<Bytes>>> {
        let mut idle = self.inner.idle.lock().expect("not poisoned");
        while let Some(sender) = idle.pop() {
            if sender.is_ready() {
                return Some(sender);
            }
        }
        None
    }

    fn checkin(&self, sender: SendRequest<Empty<Bytes>>) {
        if sender.is_closed() || self.inner.cancel.is_cancelled() {
            return;
        }
        let mut idle = self.inner.idle.lock().expect("not poisoned");
        if idle.len() < MAX_IDLE {
            idle.push(sender);
        }
    }

    async fn connect(&self) -> Result<SendRequest<Empty<Bytes>>, HttpError> {
        let stream = TcpStream::connect(self.inner.addr)
            .await
            .map_err(HttpError::connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| HttpError::new(HttpErrorKind::Connect, e))?;
        self.inner.opened.fetch_add(1, Relaxed);
        self.inner.open.fetch_add(1, Relaxed);
        let open = self.inner.open.clone();
        let cancel = self.inner.cancel.clone();
        self.inner.tracker.spawn(async move {
            tokio::select! {
                _ = connection => {}
                _ = cancel.cancelled() => {}
            }
            open.fetch_sub(1, Relaxed);
        });
        Ok(sender)
    }

    /// Closes every connection and waits until their tasks have ended. Requests
    /// after this fail with [`HttpError::is_closed`].
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        self.inner.idle.lock().expect("not poisoned").clear();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_malformed_path_is_an_error_not_a_panic() {
        let client = HttpClient::new("127.0.0.1:9".parse().unwrap());
        let error = client.get("not a path").await.unwrap_err();
        assert!(error.is_invalid(), "{error}");
        assert_eq!(error.outcome(), Outcome::Ignored);
        client.shutdown().await;
        let error = client.get("/").await.unwrap_err();
        assert!(error.is_closed(), "{error}");
        assert_eq!(client.opened_connections(), 0);
    }
}
