//! The two services under load: the same client of the dependency, unprotected and
//! protected by a Palisade pipeline.

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
            tokio::select! {
                r = transport.get(WORK_PATH, &attempts) => match r {
                    Ok(reply) if (200..300).contains(&reply.status()) => Served::Dependency,
                    Ok(reply) => Served::Failed(Failure::Status(reply.status())),
                    Err(_) => Served::Failed(Failure::Connection),
                },
                _ = clock.sleep_until(deadline) => Served::Failed(Failure::Timeout),
            }
        })
    }
}
