//! The gRPC health service (`grpc.health.v1.Health`), kept up to date with the
//! groups' statuses.

use futures_util::FutureExt;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health as GrpcHealth, HealthServer};

use crate::{Group, Health};

/// The service names the gRPC health service answers for: `""` (the server as
/// a whole: readiness), and one per group.
pub const GRPC_SERVICES: [(&str, Group); 4] = [
    ("", Group::Readiness),
    ("readiness", Group::Readiness),
    ("liveness", Group::Liveness),
    ("startup", Group::Startup),
];

impl Health {
    /// The gRPC `grpc.health.v1.Health` service, for a tonic server: `Check`
    /// and `Watch` of the service `""` answer readiness (`SERVING` for `pass`
    /// and `warn`, `NOT_SERVING` for `fail`), and of `readiness`, `liveness`
    /// and `startup` each group. It answers the latest report from the start; a
    /// background task keeps it up to date from every evaluation, and when this
    /// health stops (or its last handle is dropped) every service answers
    /// `NOT_SERVING`: nothing vouches for the server any more.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn grpc_service(&self) -> HealthServer<impl GrpcHealth> {
        let (reporter, server) = tonic_health::server::health_reporter();
        let mut reports = self.watch();
        let ctx = self.context().clone();
        let first = statuses(&self.report());
        // The reporter is new and nobody else holds its lock: the first statuses
        // are set before the server is handed out. (Were the lock ever busy,
        // the task below sets them.)
        let set_now = first.iter().all(|(name, status)| {
            reporter
                .set_service_status(name, *status)
                .now_or_never()
                .is_some()
        });
        // Spawned apart from the health's cancellation, which it watches itself:
        // it has the last word when the health stops.
        let spawn_ctx = ctx.without_cancel();
        let _detached = palisade_context::spawn(&spawn_ctx, async move {
            let mut last = set_now.then_some(first);
            let mut next = Some(first);
            loop {
                if let Some(statuses) = next.take() {
                    if last != Some(statuses) {
                        for (name, status) in statuses {
                            reporter.set_service_status(name, status).await;
                        }
                        last = Some(statuses);
                    }
                }
                let ended = tokio::select! {
                    biased;
                    () = ctx.cancelled() => true,
                    changed = reports.changed() => changed.is_err(),
                };
                if ended {
                    for (name, _) in GRPC_SERVICES {
                        reporter
                            .set_service_status(name, ServingStatus::NotServing)
                            .await;
                    }
                    return;
                }
                next = Some(statuses(&reports.borrow_and_update()));
            }
        });
        server
    }
}

/// What each gRPC service name answers for `report`.
fn statuses(report: &crate::HealthReport) -> [(&'static str, ServingStatus); 4] {
    GRPC_SERVICES.map(|(name, group)| {
        let status = if report.status(group).is_up() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        (name, status)
    })
}
