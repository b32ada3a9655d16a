//! The endpoints over HTTP: a tower `Service` that hyper and axum both serve.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context as TaskContext, Poll};

use http::{HeaderValue, Request, Response, StatusCode, header};

use crate::{Group, HEALTH_JSON, Health, Status};

/// The health endpoints as a tower `Service` (clone it freely):
///
/// | path | answers |
/// | --- | --- |
/// | `…/livez`, `…/readyz`, `…/startupz` | `ok` (200) or the failing components (503), as text; with `?verbose`, one line per component |
/// | `…/health` | every component as `application/health+json`, 200 unless readiness or liveness fails (503) |
///
/// A path ending otherwise answers 404. `warn` answers 200: the instance
/// serves.
#[derive(Clone, Debug)]
pub struct HealthService {
    health: Health,
}

impl Health {
    /// The endpoints as a tower `Service`.
    pub fn service(&self) -> HealthService {
        HealthService {
            health: self.clone(),
        }
    }

    /// The answer to a `GET` of `path` (with its `query`), as [`HealthService`]
    /// gives it.
    pub fn respond(&self, path: &str, query: Option<&str>) -> Response<String> {
        let verbose = query.is_some_and(|q| {
            q.split('&')
                .any(|p| p == "verbose" || p.starts_with("verbose="))
        });
        let group = if path.ends_with("/livez") {
            Some(Group::Liveness)
        } else if path.ends_with("/readyz") {
            Some(Group::Readiness)
        } else if path.ends_with("/startupz") {
            Some(Group::Startup)
        } else if path.ends_with("/health") {
            None
        } else {
            return answer(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "not found\n".into(),
            );
        };
        let report = self.report();
        match group {
            Some(group) => {
                let status = report.status(group);
                let code = code(status);
                let body = if verbose || status == Status::Fail {
                    report.to_text(group)
                } else {
                    "ok\n".to_string()
                };
                answer(code, "text/plain; charset=utf-8", body)
            }
            None => {
                let worst = report
                    .status(Group::Readiness)
                    .max(report.status(Group::Liveness));
                let body = report.to_json(None).to_string();
                answer(code(worst), HEALTH_JSON, body)
            }
        }
    }
}

fn code(status: Status) -> StatusCode {
    if status.is_up() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

fn answer(code: StatusCode, content_type: &'static str, body: String) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = code;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl<B> tower_service::Service<Request<B>> for HealthService {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let uri = request.uri();
        ready(Ok(self.health.respond(uri.path(), uri.query())))
    }
}

#[cfg(feature = "axum")]
impl Health {
    /// The endpoints as an axum `Router` at `/livez`, `/readyz`, `/startupz` and
    /// `/health`: merge it into the service's router, or nest it.
    pub fn router(&self) -> axum::Router {
        let service = self.service();
        axum::Router::new()
            .route_service("/livez", service.clone())
            .route_service("/readyz", service.clone())
            .route_service("/startupz", service.clone())
            .route_service("/health", service)
    }
}
