//! The context from the edge to the last hop, through real servers on loopback:
//! a client calls A, A calls B over HTTP (axum), B calls C over gRPC (tonic).
//! Each server makes its request's context with an `InboundLayer`; each call
//! leaves through a pipeline and an `OutboundLayer`, which write the attempt's
//! budget (`x-request-timeout-ms` to B, `grpc-timeout` to C), the trace and the
//! request id. Real time: nothing here waits for a timer to fire.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts
#![cfg(all(feature = "tower", feature = "http", feature = "context"))]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use palisade::context::trace::{RequestId, TraceContext};
use palisade::edge::{DeadlineHeader, Inbound, Outbound, OutboundService};
use palisade::{Context, Pipeline};
use tokio::sync::{mpsc, oneshot};
use tower::{Layer, Service, ServiceExt};

/// What a hop saw of its request's context.
#[derive(Debug)]
struct Seen {
    hop: &'static str,
    remaining: Duration,
    trace: TraceContext,
    request_id: String,
}

type Outgoing = OutboundService<Client<HttpConnector, Empty<Bytes>>>;
type GrpcOutgoing = OutboundService<tonic::transport::Channel>;

/// The next hop and the pipeline of calls to it.
#[derive(Clone)]
enum Next {
    Http(String, Pipeline, Box<Outgoing>),
    Grpc(Pipeline, GrpcOutgoing),
}

#[derive(Clone)]
struct Hop {
    name: &'static str,
    seen: mpsc::UnboundedSender<Seen>,
    next: Next,
}

fn seen(hop: &'static str, ctx: &Context) -> Seen {
    Seen {
        hop,
        remaining: ctx.remaining().expect("every hop has a deadline"),
        trace: TraceContext::from_context(ctx).expect("a trace").clone(),
        request_id: RequestId::from_context(ctx)
            .expect("a request id")
            .as_str()
            .to_string(),
    }
}

async fn handle(State(hop): State<Hop>, request: Request) -> axum::response::Response {
    let ctx = request
        .extensions()
        .get::<Context>()
        .cloned()
        .expect("the inbound layer puts a context in");
    let hold = request.uri().path() == "/hold";
    let _ = hop.seen.send(seen(hop.name, &ctx));
    match &hop.next {
        Next::Grpc(pipeline, channel) => {
            let message = Bytes::from_static(if hold { b"hold" } else { b"call" });
            let answer = pipeline
                .execute(&ctx, |attempt| {
                    let mut grpc = tonic::client::Grpc::new(channel.clone());
                    let mut request = tonic::Request::new(message.clone());
                    // The attempt's context travels in the request's extensions.
                    request.extensions_mut().insert(attempt);
                    async move {
                        grpc.ready()
                            .await
                            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
                        grpc.unary(request, CALL.parse().unwrap(), RawCodec).await
                    }
                })
                .await;
            match answer {
                Ok(reply) => axum::response::Response::new(Body::from(reply.into_inner())),
                Err(e) => {
                    let mut response = axum::response::Response::new(Body::from(e.to_string()));
                    *response.status_mut() = http::StatusCode::BAD_GATEWAY;
                    response
                }
            }
        }
        Next::Http(url, pipeline, client) => {
            let path = if hold { "/hold" } else { "/" };
            let uri: hyper::Uri = format!("{url}{path}").parse().unwrap();
            // The call: the request carries the attempt's context; the outbound
            // layer writes the headers.
            let answer = pipeline
                .execute(&ctx, |attempt| {
                    let mut client = (**client).clone();
                    let mut request = http::Request::get(uri.clone())
                        .body(Empty::<Bytes>::new())
                        .unwrap();
                    request.extensions_mut().insert(attempt);
                    async move { client.ready().await?.call(request).await }
                })
                .await;
            match answer {
                Ok(response) => {
                    let body = response.into_body().collect().await.unwrap().to_bytes();
                    axum::response::Response::new(Body::from(body))
                }
                Err(e) => {
                    let mut response = axum::response::Response::new(Body::from(e.to_string()));
                    *response.status_mut() = http::StatusCode::BAD_GATEWAY;
                    response
                }
            }
        }
    }
}

fn client() -> Outgoing {
    Outbound::new()
        .layer()
        .layer(Client::builder(TokioExecutor::new()).build_http())
}

/// The gRPC method of the last hop.
const CALL: &str = "/palisade.test.Hop/Call";

/// Messages as raw bytes: the test needs no protobuf schema.
#[derive(Clone, Copy, Debug, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Bytes>, tonic::Status> {
        let n = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, n)))
    }
}

/// The last hop: a gRPC service with one unary method, written out as tonic's
/// generated code would be.
#[derive(Clone)]
struct LastHop {
    seen: mpsc::UnboundedSender<Seen>,
    /// Where it reports the end of a held request's context.
    ended: mpsc::UnboundedSender<String>,
}

impl tonic::server::NamedService for LastHop {
    const NAME: &'static str = "palisade.test.Hop";
}

impl tonic::server::UnaryService<Bytes> for LastHop {
    type Response = Bytes;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<tonic::Response<Bytes>, tonic::Status>> + Send>,
    >;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let ctx = request
            .extensions()
            .get::<Context>()
            .cloned()
            .expect("the inbound layer puts a context in");
        let _ = self.seen.send(seen("c", &ctx));
        let hold = &request.get_ref()[..] == b"hold";
        let ended = self.ended.clone();
        Box::pin(async move {
            if hold {
                // Work started under the request's context (a task of its own)
                // says when and why that context ends.
                let watch = ctx.clone();
                tokio::spawn(async move {
                    watch.cancelled().await;
                    let cause = watch.cause().map(|c| c.to_string()).unwrap_or_default();
                    let _ = ended.send(cause);
                });
                std::future::pending::<()>().await;
            }
            Ok(tonic::Response::new(Bytes::from_static(b"c")))
        })
    }
}

impl Service<http::Request<tonic::body::Body>> for LastHop {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move {
            if request.uri().path() != CALL {
                let mut response = http::Response::new(tonic::body::Body::default());
                response
                    .headers_mut()
                    .insert("grpc-status", http::HeaderValue::from_static("12"));
                return Ok(response);
            }
            let mut grpc = tonic::server::Grpc::new(RawCodec);
            Ok(grpc.unary(service, request).await)
        })
    }
}

/// Starts the gRPC hop; returns its address and the sender that stops it.
async fn serve_grpc(
    hop: LastHop,
) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let incoming = tokio_stream_listener(listener);
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(Inbound::new().grpc().layer())
            .add_service(hop)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (addr, stop, task)
}

/// The accepted connections of `listener`, as tonic's server takes them.
fn tokio_stream_listener(
    listener: tokio::net::TcpListener,
) -> impl futures_core::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    })
}

/// Starts an HTTP hop; returns its address and the sender that stops it.
async fn serve(hop: Hop) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let app = Router::new()
        .route("/", get(handle))
        .route("/hold", get(handle))
        .with_state(hop)
        .layer(Inbound::new().layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (addr, stop, task)
}

struct Chain {
    a: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
    ended: mpsc::UnboundedReceiver<String>,
    stops: Vec<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

async fn chain() -> Chain {
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let (ended_tx, ended) = mpsc::unbounded_channel();
    let hop = |name, next| Hop {
        name,
        seen: seen_tx.clone(),
        next,
    };
    let (c, stop_c, task_c) = serve_grpc(LastHop {
        seen: seen_tx.clone(),
        ended: ended_tx.clone(),
    })
    .await;
    let to_c = Pipeline::builder("c")
        .attempt_timeout(Duration::from_millis(250))
        .build()
        .unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{c}"))
        .unwrap()
        .connect_lazy();
    let grpc = Outbound::new()
        .deadline_header(Some(DeadlineHeader::GrpcTimeout))
        .layer()
        .layer(channel);
    let (b, stop_b, task_b) = serve(hop("b", Next::Grpc(to_c, grpc))).await;
    let to_b = Pipeline::builder("b")
        .attempt_timeout(Duration::from_millis(300))
        .total_timeout(Duration::from_millis(800))
        .build()
        .unwrap();
    let (a, stop_a, task_a) = serve(hop(
        "a",
        Next::Http(format!("http://{b}"), to_b, Box::new(client())),
    ))
    .await;
    Chain {
        a,
        seen,
        ended,
        stops: vec![(stop_a, task_a), (stop_b, task_b), (stop_c, task_c)],
    }
}

impl Chain {
    /// Stops every server and checks that no task is left in the runtime.
    async fn stop(self) {
        for (stop, task) in self.stops {
            let _ = stop.send(());
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("a server stops")
                .unwrap();
        }
        palisade_test::assert_no_live_tasks().await;
    }
}

const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn request(a: SocketAddr, path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(format!("http://{a}{path}"))
        .header("x-request-timeout-ms", "1000")
        .header("traceparent", TRACE)
        .header("x-request-id", "req-42")
        .body(Empty::new())
        .unwrap()
}

#[tokio::test]
async fn the_budget_shrinks_and_the_trace_and_request_id_travel_from_a_to_c() {
    let mut chain = chain().await;
    {
        let client: Client<HttpConnector, Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let response = client.request(request(chain.a, "/")).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"c");
    }
    let mut hops = Vec::new();
    for _ in 0..3 {
        hops.push(chain.seen.recv().await.unwrap());
    }
    let [a, b, c] = [&hops[0], &hops[1], &hops[2]];
    assert_eq!((a.hop, b.hop, c.hop), ("a", "b", "c"));
    // A has the client's second; B what remained of A's 300 ms attempt, less
    // the margin; C less again, under B's 250 ms attempt timeout.
    assert!(a.remaining <= Duration::from_millis(1000), "{a:?}");
    assert!(a.remaining > Duration::from_millis(300), "{a:?}");
    assert!(b.remaining < Duration::from_millis(300), "{b:?}");
    assert!(c.remaining < b.remaining, "{c:?} {b:?}");
    assert!(c.remaining < Duration::from_millis(250), "{c:?}");
    // One trace, a new span at each hop; one request id.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    for hop in &hops {
        assert_eq!(hop.trace.trace_id().to_string(), trace_id, "{hop:?}");
        assert_eq!(hop.request_id, "req-42");
    }
    assert_eq!(a.trace.span_id().to_string(), "00f067aa0ba902b7");
    assert_ne!(b.trace.span_id(), a.trace.span_id());
    assert_ne!(c.trace.span_id(), b.trace.span_id());
    assert!(a.trace.flags().is_sampled() && c.trace.flags().is_sampled());
    chain.stop().await;
}

#[tokio::test]
async fn a_client_that_goes_away_stops_the_work_at_the_last_hop() {
    let mut chain = chain().await;
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let call = tokio::spawn({
        let client = client.clone();
        let request = request(chain.a, "/hold");
        async move { client.request(request).await }
    });
    // Once C holds the request, the client goes away.
    for _ in 0..3 {
        chain.seen.recv().await.unwrap();
    }
    call.abort();
    drop(client);
    let cause = tokio::time::timeout(Duration::from_secs(5), chain.ended.recv())
        .await
        .expect("C's context ends when the client goes away")
        .unwrap();
    // Cancelled because the caller went away, long before its 245 ms deadline.
    assert!(cause.contains("the client went away"), "{cause}");
    chain.stop().await;
}
