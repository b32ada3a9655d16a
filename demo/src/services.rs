//! The two services under load: the same reqwest client of the dependency,
//! bare, and through Palisade's `PipelineMiddleware` ([`crate::protected`]).

use palisade_clock::{Clock, Timestamp, TokioClock};

use crate::load::{CallAttempts, CallFuture, Failure, Served, Service, Transport};

/// The path of the dependency's work endpoint.
pub const WORK_PATH: &str = "/work";

/// The service as most are first written: one attempt, bounded only by the
/// caller's deadline. No retry, no breaker, no bulkhead, no fallback.
#[derive(Clone, Debug)]
pub struct Unprotected {
    transport: Transport,
}

impl Unprotected {
    /// The unprotected service over `transport`.
    pub fn new(transport: Transport) -> Self {
        Unprotected { transport }
    }
}

impl Service for Unprotected {
    fn name(&self) -> &str {
        "unprotected"
    }

    fn call(&self, deadline: Timestamp, attempts: CallAttempts) -> CallFuture {
        let transport = self.transport.clone();
        Box::pin(async move {
            let clock = TokioClock;
            let served = async {
                match transport.get(WORK_PATH, &attempts).await {
                    Ok(response) if response.status().is_success() => {
                        match response.bytes().await {
                            Ok(_) => Served::Dependency,
                            Err(_) => Served::Failed(Failure::Connection),
                        }
                    }
                    Ok(response) => Served::Failed(Failure::Status(response.status().as_u16())),
                    Err(_) => Served::Failed(Failure::Connection),
                }
            };
            tokio::select! {
                served = served => served,
                _ = clock.sleep_until(deadline) => Served::Failed(Failure::Timeout),
            }
        })
    }
}
