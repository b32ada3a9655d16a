//! A small gRPC echo service for palisade's gRPC loopback tests and examples:
//! the client and server generated from `proto/echo.proto` (by protox and
//! tonic-prost-build, no `protoc` needed), and a server that answers with the
//! message and the deadline, trace and request id metadata it received.
//!
//! ```no_run
//! use grpc_echo::{EchoService, pb};
//!
//! # async fn run(listener: tokio::net::TcpListener) {}
//! let server = pb::echo_server::EchoServer::new(EchoService::default());
//! # let _ = server;
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tonic::{Request, Response, Status};

/// The generated messages, client and server.
pub mod pb {
    #![allow(missing_docs, unreachable_pub, missing_debug_implementations)]
    tonic::include_proto!("echo");
}

/// The echo server: answers each call with the message and the metadata it
/// received, after failing the first [`fail_first`](Self::fail_first) calls
/// with a status of the test's choosing.
#[derive(Clone, Debug, Default)]
pub struct EchoService {
    calls: Arc<AtomicU32>,
    fail_first: u32,
    failure: Option<(tonic::Code, Option<String>)>,
    delay: Option<std::time::Duration>,
}

impl EchoService {
    /// Fails the first `n` calls with `code`; with `pushback`, the status
    /// carries that `grpc-retry-pushback-ms` metadata.
    pub fn fail_first(mut self, n: u32, code: tonic::Code, pushback: Option<&str>) -> Self {
        self.fail_first = n;
        self.failure = Some((code, pushback.map(str::to_owned)));
        self
    }

    /// Answers each call after `delay` (of tokio's time, paused or not).
    pub fn delay(mut self, delay: std::time::Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// How many calls reached the server.
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

fn metadata(request: &Request<pb::EchoRequest>, key: &str) -> String {
    request
        .metadata()
        .get(key)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tonic::async_trait]
impl pb::echo_server::Echo for EchoService {
    async fn say(
        &self,
        request: Request<pb::EchoRequest>,
    ) -> Result<Response<pb::EchoReply>, Status> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(delay) = self.delay {
            // A test's server: the handler is slow on purpose, and the
            // layers around it are what is tested.
            #[allow(clippy::disallowed_methods)]
            tokio::time::sleep(delay).await;
        }
        if n < self.fail_first {
            if let Some((code, pushback)) = &self.failure {
                let mut status = Status::new(*code, "failing as told");
                if let Some(p) = pushback {
                    if let Ok(value) = p.parse() {
                        status
                            .metadata_mut()
                            .insert("grpc-retry-pushback-ms", value);
                    }
                }
                return Err(status);
            }
        }
        let reply = pb::EchoReply {
            grpc_timeout: metadata(&request, "grpc-timeout"),
            traceparent: metadata(&request, "traceparent"),
            request_id: metadata(&request, "x-request-id"),
            message: request.into_inner().message,
        };
        Ok(Response::new(reply))
    }
}
