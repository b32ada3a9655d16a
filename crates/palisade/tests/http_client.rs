//! `HttpClientLayer` over hyper-util's client, against a real axum server on
//! loopback: a 503 retried with the body intact (whole and streamed), the
//! attempt's deadline arriving, a body over the buffer limit sent once and
//! counted, and the error of such a call saying why it was not retried.
#![allow(clippy::disallowed_methods)] // a test is the root: it spawns servers and starts contexts
#![cfg(all(feature = "http-client", feature = "retry"))]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bytes::Bytes as RawBytes;
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use palisade::backoff::Backoff;
use palisade::classify::HttpStatus;
use palisade::retry::RetryPolicy;
use palisade::tower::{HttpClientLayer, NotRetried, RetryBody};
use palisade::{Context, Pipeline};
use tower::{Layer, ServiceExt};

/// What the server saw: each request's headers and body. It answers 503 to
/// the first `fail` requests, then echoes the body with a 200.
#[derive(Clone, Default)]
struct Server {
    fail: Arc<Mutex<u32>>,
    seen: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

async fn echo(
    State(server): State<Server>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Bytes) {
    server.seen.lock().unwrap().push((headers, body.clone()));
    let mut fail = server.fail.lock().unwrap();
    if *fail > 0 {
        *fail -= 1;
        return (StatusCode::SERVICE_UNAVAILABLE, Bytes::new());
    }
    (StatusCode::OK, body)
}

/// Starts the server, failing the first `fail` requests; its URL.
async fn serve(fail: u32) -> (Server, String) {
    let server = Server::default();
    *server.fail.lock().unwrap() = fail;
    let app = Router::new()
        .route("/echo", post(echo))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/echo", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (server, url)
}

fn pipeline() -> Pipeline<HttpStatus> {
    Pipeline::builder("echo")
        .classifier(HttpStatus::new())
        // Real time on loopback: retries 1 ms apart.
        .retry(
            RetryPolicy::builder()
                .backoff(
                    Backoff::exponential(Duration::from_millis(1))
                        .max_delay(Duration::from_millis(2))
                        .max_attempts(3)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

fn client<B>() -> Client<HttpConnector, RetryBody<B>>
where
    B: http_body::Body<Data = RawBytes> + Unpin + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Unpin + Send,
{
    Client::builder(TokioExecutor::new()).build_http()
}

type Chunks =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<RawBytes>, Infallible>>>>;

/// A body of `chunks` with no size hint: a stream.
fn streamed(chunks: &[&'static [u8]]) -> Chunks {
    let frames: Vec<_> = chunks
        .iter()
        .map(|c| Ok(Frame::data(RawBytes::from_static(c))))
        .collect();
    StreamBody::new(futures_util::stream::iter(frames))
}

#[tokio::test]
async fn a_503_is_retried_with_the_body_intact() {
    let (server, url) = serve(1).await;
    let layer = HttpClientLayer::new(pipeline());
    let service = layer.layer(client());
    let request = http::Request::post(&url)
        .body(Full::new(RawBytes::from_static(b"hello, ada")))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"hello, ada");
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "the 503 and the retry");
    assert!(seen.iter().all(|(_, body)| &body[..] == b"hello, ada"));
    assert_eq!(layer.sent_once(), 0);
}

#[tokio::test]
async fn a_streamed_body_within_the_limit_is_buffered_and_retried() {
    let (server, url) = serve(2).await;
    let layer = HttpClientLayer::new(pipeline()).max_buffer(64);
    let service = layer.layer(client());
    let request = http::Request::post(&url)
        .body(streamed(&[b"one ", b"two ", b"three"]))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|(_, body)| &body[..] == b"one two three"));
    assert_eq!(layer.sent_once(), 0);
}

#[tokio::test]
async fn each_attempt_carries_the_deadline_and_a_request_without_context_none() {
    let (server, url) = serve(1).await;
    let service = HttpClientLayer::new(pipeline()).layer(client());
    let (ctx, _guard) = Context::background().with_timeout(Duration::from_secs(5));
    let mut request = http::Request::post(&url)
        .body(Full::new(RawBytes::from_static(b"x")))
        .unwrap();
    request.extensions_mut().insert(ctx);
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    {
        let seen = server.seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        for (headers, _) in seen.iter() {
            let ms: u64 = headers["x-request-timeout-ms"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=5000).contains(&ms), "{ms}");
        }
    }
    // No context in the extensions: the background's, no deadline to send.
    let request = http::Request::post(&url)
        .body(Full::new(RawBytes::from_static(b"y")))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = server.seen.lock().unwrap();
    assert!(!seen[2].0.contains_key("x-request-timeout-ms"));
}

#[tokio::test]
async fn a_body_over_the_limit_gets_one_attempt_and_is_counted() {
    let (server, url) = serve(1).await;
    let layer = HttpClientLayer::new(pipeline()).max_buffer(8);
    // By its size hint: 16 bytes of a `Full` body.
    let service = layer.layer(client());
    let request = http::Request::post(&url)
        .body(Full::new(RawBytes::from_static(b"sixteen bytes!!!")))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 503, "not retried");
    assert_eq!(server.seen.lock().unwrap().len(), 1);
    assert_eq!(layer.sent_once(), 1);

    // Found while reading a stream: what was read, then the rest, intact.
    let service = layer.layer(client());
    let request = http::Request::post(&url)
        .body(streamed(&[b"1234", b"5678", b"9abc", b"def"]))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"123456789abcdef");
    assert_eq!(server.seen.lock().unwrap().len(), 2);
    assert_eq!(layer.sent_once(), 2);
}

#[tokio::test]
async fn the_error_of_a_call_sent_once_says_why_it_was_not_retried() {
    // Nothing listens: the connection is refused, a failure a retry answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/echo", listener.local_addr().unwrap());
    drop(listener);
    let layer = HttpClientLayer::new(pipeline()).max_buffer(2);
    let service = layer.layer(client());
    let request = http::Request::post(&url)
        .body(Full::new(RawBytes::from_static(b"too long")))
        .unwrap();
    let error = service.oneshot(request).await.unwrap_err();
    assert_eq!(
        error.not_retried(),
        Some(NotRetried::BodyTooLarge { limit: 2 })
    );
    assert!(error.client_error().is_some());
    assert!(error.error().attempts().is_none_or(|n| n == 1));
    let text = error.to_string();
    assert!(text.contains("not retried"), "{text}");
    assert!(text.contains("2-byte retry buffer"), "{text}");

    // The same body within the limit is retried, and its error says nothing of it.
    let service = HttpClientLayer::new(pipeline()).layer(client());
    let request = http::Request::post(&url)
        .body(Full::new(RawBytes::from_static(b"too long")))
        .unwrap();
    let error = service.oneshot(request).await.unwrap_err();
    assert_eq!(error.not_retried(), None);
    assert!(error.error().is_retries_exhausted(), "{}", error);
}
