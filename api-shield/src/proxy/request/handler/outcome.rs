//! What a request's access-log line and metrics say of it besides its basics, and the line a
//! request dropped unanswered still gets (status 499, as nginx logs it).

use std::net::IpAddr;

use http::Method;
use tokio::time::Instant;

use super::Proxy;
use crate::{
    proxy::request::{client::RequestId, route_metrics::RouteMetrics},
    refusal::Denial,
    telemetry::{access_line::AccessLine, access_log},
};

/// What the access log says of a request besides its basics.
#[derive(Debug, Default)]
pub(super) struct Outcome<'p> {
    pub(super) route: Option<&'p RouteMetrics>,
    pub(super) denial: Option<Denial>,
}

/// A request being handled; dropped before it is answered, it writes its access-log line and
/// counts the request with status 499 (client closed request, as nginx logs it).
pub(super) struct Unanswered<'p> {
    pub(super) proxy: &'p Proxy,
    pub(super) request_id: RequestId,
    pub(super) client_ip: IpAddr,
    pub(super) method: Method,
    pub(super) started: Instant,
    pub(super) outcome: Outcome<'p>,
    pub(super) answered: bool,
}

/// The status logged for a request whose client went away before its answer (as
/// [`Denial::ClientClosedRequest`] has).
const CLIENT_CLOSED: u16 = 499;

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let status = http::StatusCode::from_u16(CLIENT_CLOSED).expect("a valid status code");
        let route = self.outcome.route.unwrap_or(&self.proxy.unrouted_metrics);
        let elapsed = self.started.elapsed();
        route.record(
            crate::telemetry::method_label(&self.method),
            status,
            elapsed,
        );
        access_log().record(&AccessLine {
            request_id: self.request_id.as_str(),
            client_ip: self.client_ip,
            route: self.outcome.route.map(RouteMetrics::name),
            method: Some(self.method.as_str()),
            status: CLIENT_CLOSED,
            bytes: Some(0),
            duration: Some(elapsed),
            denial: Some(
                self.outcome
                    .denial
                    .unwrap_or(Denial::ClientClosedRequest)
                    .slug(),
            ),
        });
    }
}
