//! The gRPC health service (`grpc.health.v1.Health`), kept up to date with the
//! groups' statuses.

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
    /// and `startup` each group. A background task keeps it up to date from
    /// every evaluation until this health stops.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn grpc_service(&self) -> HealthServer<impl GrpcHealth> {
        let (reporter, server) = tonic_health::server::health_reporter();
        let mut reports = self.watch();
        let ctx = self.context().clone();
        let set = |report: &crate::HealthReport| {
            GRPC_SERVICES.map(|(name, group)| {
                let status = if report.status(group).is_up() {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                (name, status)
            })
        };
        let first = set(&self.report());
        let spawn_ctx = ctx.clone();
        let _detached = palisade_context::spawn(&spawn_ctx, async move {
            let mut last = None;
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
                tokio::select! {
                    biased;
                    () = ctx.cancelled() => return,
                    changed = reports.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        next = Some(set(&reports.borrow_and_update()));
                    }
                }
            }
        });
        server
    }
}
