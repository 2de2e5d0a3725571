//! The request pipeline, in the order a request meets it: route (path normalisation, host,
//! CORS preflight, route match), admit (the route's policies on the head, then the body's size
//! and schema), forward (with `client`'s X-Forwarded-* headers and without hop-by-hop
//! headers); then response headers, metrics and the access log. Every refusal on the way is
//! rendered by `refuse`, which records it for the log and escalation. Compiling the config into
//! a [`Proxy`] is `compile`'s.

use std::{net::IpAddr, sync::Arc};

use bytes::Bytes;
use http::{header, request::Parts, HeaderMap, HeaderValue, Method, Request, Response};
use http_body_util::BodyExt;
use hyper::{
    body::{Body as _, Incoming},
    upgrade::OnUpgrade,
};
// tokio's clock, so that deadlines and the clock reads they count from agree (also when a test
// pauses time).
use tokio::time::Instant;

use crate::proxy::{
    request::client::{
        client_address, forwarded_headers, fresh_request_id, request_id, Client, RequestId,
        REQUEST_ID, X_FORWARDED_FOR,
    },
    request::client_body::{BodyWatch, ClientBody},
    request::cors::{CorsPolicy, Preflight},
    request::deadline::ExchangeTimer,
    request::headers::{strip_hop_by_hop, strip_nominated, ResponseHeaders},
    request::normalize::normalize,
    request::problem::{self, full, Body},
    request::route_metrics::RouteMetrics,
    request::routing::{Route, RouteMatch, RouteTable},
    request::upgrade,
    upstream::{origin_form, Upstream},
};
use crate::{
    policy::{auth::without_query_param, validate::Validation, RoutePolicies, SharedPolicies},
    refusal::{Advice, Denial, Refusal},
    telemetry::{access_line::AccessLine, access_log},
};

mod compile;
mod exchange;
mod outcome;

use exchange::{ask, read_body};
use outcome::{Outcome, Unanswered};

/// What a route leads to.
#[derive(Debug)]
pub(crate) struct Target {
    upstream: Arc<Upstream>,
    metrics: RouteMetrics,
    cors: Option<CorsPolicy>,
    policies: RoutePolicies,
}

/// The connection a request came on.
#[derive(Debug)]
pub(crate) struct Connection {
    /// Whether the connection is TLS.
    pub https: bool,
    /// The peer as the client ([`Client::direct`]).
    pub client: Client,
    /// Its place under the per-address connection limit, held as long as the connection or
    /// an upgraded tunnel made from it lives.
    pub permit: Option<Arc<crate::proxy::connection::conn_limit::ConnectionPermit>>,
    /// The deadline of its exchanges (`proxy.request_timeout`).
    pub request_timer: ExchangeTimer,
    /// The deadline of the upstream's answers to them (an upstream's `response_timeout`).
    pub response_timer: ExchangeTimer,
}

/// The compiled proxy: routes, upstreams and response policies.
#[derive(Debug)]
pub(crate) struct Proxy {
    routes: RouteTable<Target>,
    default_upstream: Option<Arc<Upstream>>,
    /// Metrics of requests sent to the default upstream, and of those no route took.
    default_metrics: RouteMetrics,
    unrouted_metrics: RouteMetrics,
    request_timeout: std::time::Duration,
    body_timeout: std::time::Duration,
    trusted_proxies: Vec<ipnet::IpNet>,
    headers: ResponseHeaders,
    max_body: u64,
    policies: SharedPolicies,
    escalator: Option<Arc<crate::escalate::Escalator>>,
}

impl Proxy {
    /// The answer to a request hyper could not parse (see `parse_errors`): counted, logged and
    /// fed to escalation like any other refusal.
    pub(crate) fn parse_error_answer(
        &self,
        denial: Denial,
        client: IpAddr,
        https: bool,
    ) -> Vec<u8> {
        let request_id = fresh_request_id();
        let metrics = crate::telemetry::metrics();
        let code = denial.status();
        metrics
            .requests
            .with_label_values(&["none", "OTHER", &code.to_string()])
            .inc();
        metrics
            .denials
            .with_label_values(&["none", denial.slug()])
            .inc();
        if let Some(escalator) = &self.escalator {
            escalator.record(client, denial);
        }
        access_log().record(&AccessLine {
            request_id: request_id.as_str(),
            client_ip: client,
            route: None,
            method: None,
            status: code,
            bytes: None,
            duration: None,
            denial: Some(denial.slug()),
        });
        crate::proxy::connection::parse_errors::render(
            denial,
            request_id.as_str(),
            &self.headers,
            https,
        )
    }

    /// Reports refusals to `escalator`, which may ban repeat offenders at the NIC.
    #[must_use]
    pub(crate) fn with_escalator(
        mut self,
        escalator: Option<Arc<crate::escalate::Escalator>>,
    ) -> Proxy {
        self.escalator = escalator;
        self
    }

    /// Whether a route's host pattern names `host` (for the redirect listener).
    pub(crate) fn routes_host(&self, host: &str) -> bool {
        self.routes.names_host(host)
    }

    /// The response headers the shield adds (security headers; HSTS on HTTPS only).
    pub(crate) fn response_headers(&self) -> &ResponseHeaders {
        &self.headers
    }

    /// The policies every route shares (issuers, for their background key refresh).
    pub(crate) fn policies(&self) -> &SharedPolicies {
        &self.policies
    }

    /// Handles one request end to end and logs it.
    pub(crate) async fn handle(
        &self,
        request: Request<Incoming>,
        connection: &Connection,
    ) -> Response<Body> {
        let started = Instant::now();
        // The head travels boxed from here to the upstream: by value (224 bytes) it was copied
        // at each step of the way, a dozen times per request (seen in the proxy benchmark).
        let (head, body) = request.into_parts();
        let head = Box::new(head);
        let request_id = request_id(&head.headers);
        let client = client_address(
            &connection.client,
            head.headers
                .get_all(X_FORWARDED_FOR)
                .iter()
                .filter_map(|v| v.to_str().ok()),
            &self.trusted_proxies,
        );
        let method = head.method.clone();
        // Every request parsed gets one access-log line: this one is written if the exchange
        // is dropped unanswered (the client went away while the upstream answered, or its
        // connection closed with the request still in the pipeline).
        let mut unanswered = Unanswered {
            proxy: self,
            request_id: request_id.clone(),
            client_ip: client.ip,
            method: method.clone(),
            started,
            outcome: Outcome::default(),
            answered: false,
        };
        // The exchange is pinned where it lies and the timer holds a pointer to it: given the
        // exchange's future (3.5 KB) by value, it would copy it on every request. The deadline
        // counts from the clock read above (each read shows in the proxy benchmark).
        let routed = {
            let exchange = self.route(
                head,
                body,
                connection,
                &client,
                &request_id,
                &mut unanswered.outcome,
            );
            tokio::pin!(exchange);
            connection
                .request_timer
                .run(
                    deadline_after(started, self.request_timeout),
                    exchange.as_mut(),
                )
                .await
        };
        unanswered.answered = true;
        let outcome = &mut unanswered.outcome;
        let mut response = routed.unwrap_or_else(|_| {
            refuse(outcome, &Refusal::new(Denial::RequestTimeout), &request_id)
        });
        response
            .headers_mut()
            .insert(REQUEST_ID, request_id.header_value());
        self.headers.apply(response.headers_mut(), connection.https);
        let bytes = response.body().size_hint().exact();
        let route = outcome.route.unwrap_or(&self.unrouted_metrics);
        let elapsed = started.elapsed();
        route.record(
            crate::telemetry::method_label(&method),
            response.status(),
            elapsed,
        );
        let route = route.name();
        if let Some(denial) = outcome.denial {
            crate::telemetry::metrics()
                .denials
                .with_label_values(&[route, denial.slug()])
                .inc();
            if let Some(escalator) = &self.escalator {
                escalator.record(client.ip, denial);
            }
        }
        access_log().record(&AccessLine {
            request_id: request_id.as_str(),
            client_ip: client.ip,
            route: outcome.route.map(RouteMetrics::name),
            method: Some(method.as_str()),
            status: response.status().as_u16(),
            bytes,
            duration: Some(elapsed),
            denial: outcome.denial.map(Denial::slug),
        });
        response
    }

    /// Routes a request and answers it: refused, a preflight, or the upstream's answer.
    async fn route<'s>(
        &'s self,
        mut head: Box<Parts>,
        body: Incoming,
        connection: &Connection,
        client: &Client,
        request_id: &RequestId,
        outcome: &mut Outcome<'s>,
    ) -> Response<Body> {
        let refused =
            |outcome: &mut Outcome<'s>, refusal: Refusal| refuse(outcome, &refusal, request_id);
        self.policies.strip_forged(&mut head.headers);
        strip_nominated(&mut head.headers, |name| self.policies.relies_on(name));
        if let Some(name) = self.policies.repeated(&head.headers) {
            let detail = format!("the `{name}` header may appear only once");
            return refused(outcome, Refusal::new(Denial::InvalidRequest).detail(detail));
        }
        let path = match normalize(head.uri.path()) {
            Ok(path) => path,
            Err(error) => {
                return refused(
                    outcome,
                    Refusal::new(Denial::InvalidPath).detail(error.to_string()),
                )
            }
        };
        let host = match request_host(&head) {
            Ok(host) => host,
            Err(problem) => {
                return refused(outcome, Refusal::new(Denial::BadRequest).detail(problem))
            }
        };
        // The host as text for routing (a host is text by the check above).
        let host_name = host.as_ref().and_then(|h| h.to_str().ok());
        let origin = header_str(&head.headers, &header::ORIGIN);
        if head.method == Method::OPTIONS {
            let asked = header_str(&head.headers, &header::ACCESS_CONTROL_REQUEST_METHOD);
            if let (Some(origin), Some(asked)) = (origin.as_deref(), asked.as_deref()) {
                if let Some((route, cors)) = self.preflight_route(host_name, &path, asked) {
                    outcome.route = Some(&route.target.metrics);
                    let requested =
                        header_str(&head.headers, &header::ACCESS_CONTROL_REQUEST_HEADERS);
                    return match cors.preflight(origin, asked, requested.as_deref()) {
                        Preflight::Allowed(headers) => preflight_response(headers),
                        Preflight::Denied(headers) => {
                            let mut response =
                                refused(outcome, Refusal::new(Denial::CorsPreflightDenied));
                            response.headers_mut().extend(headers);
                            response
                        }
                    };
                }
            }
        }
        let route = match self.routes.find(host_name, &path, head.method.as_str()) {
            RouteMatch::Found { route, .. } => route,
            RouteMatch::NotFound => {
                let Some(upstream) = &self.default_upstream else {
                    return refused(outcome, Refusal::new(Denial::NotFound));
                };
                outcome.route = Some(&self.default_metrics);
                let exchange = Exchange {
                    connection,
                    client,
                    upstream,
                    host: host.as_ref(),
                    path: &path,
                    request_id,
                    strip_query: None,
                };
                let answered = match self.admit_body(&head.headers, body, None).await {
                    Ok(admitted) => self.forward(head, admitted, &exchange).await,
                    Err(refusal) => Err(refusal),
                };
                return answered.unwrap_or_else(|refusal| refused(outcome, refusal));
            }
            RouteMatch::MethodNotAllowed { allow } => {
                return refused(
                    outcome,
                    Refusal::new(Denial::MethodNotAllowed).advise(Advice::Allow(allow.join(", "))),
                );
            }
        };
        outcome.route = Some(&route.target.metrics);
        let exchange = Exchange {
            connection,
            client,
            upstream: &route.target.upstream,
            host: host.as_ref(),
            path: &path,
            request_id,
            strip_query: route.target.policies.query_param(),
        };
        let mut response = self
            .admit_and_forward(route, head, body, &exchange)
            .await
            .unwrap_or_else(|refusal| refused(outcome, refusal));
        if let Some(cors) = &route.target.cors {
            cors.apply(origin.as_deref(), response.headers_mut());
        }
        response
    }

    /// A routed request's policy chain: admit (the route's policies on the head, then its
    /// body's size and schema: a 422 is decided here), then forward. The answer carries what
    /// the policies advise (`RateLimit`, `Deprecation`, `Sunset`, `Link`).
    async fn admit_and_forward(
        &self,
        route: &Route<Target>,
        mut head: Box<Parts>,
        body: Incoming,
        exchange: &Exchange<'_>,
    ) -> Result<Response<Body>, Refusal> {
        let policies = &route.target.policies;
        let admitted = self
            .policies
            .admit(policies, &mut head, exchange.path, exchange.client.ip)
            .await?;
        let body = self
            .admit_body(&head.headers, body, policies.validation.as_ref())
            .await?;
        let mut response = self.forward(head, body, exchange).await?;
        problem::apply_advice(&admitted.advice, response.headers_mut());
        Ok(response)
    }

    /// The body to forward, within the route's size limit and, where the route validates it,
    /// read in full and checked against its schema. Refused past the limit when its length is
    /// announced; read up to the limit first when it is not, so an oversized body never reaches
    /// the upstream. A body streamed on comes with the watch on its clock
    /// (`proxy.body_timeout`).
    async fn admit_body(
        &self,
        headers: &HeaderMap,
        body: Incoming,
        validation: Option<&Validation>,
    ) -> Result<AdmittedBody, Refusal> {
        let max_body = validation
            .and_then(|v| v.max_body_bytes)
            .unwrap_or(self.max_body);
        if let Some(validation) = validation.filter(|v| v.reads_body()) {
            let bytes = read_body(body, max_body, self.body_timeout).await?;
            validation.check_body(&bytes)?;
            return Ok((full(bytes), None));
        }
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max_body) {
            return Err(Refusal::new(Denial::PayloadTooLarge));
        }
        if body.is_end_stream() {
            return Ok((body.boxed(), None));
        }
        if declared.is_some() {
            let (body, watch) = ClientBody::new(body, self.body_timeout);
            return Ok((body.boxed(), Some(watch)));
        }
        read_body(body, max_body, self.body_timeout)
            .await
            .map(|bytes| (full(bytes), None))
            .map_err(|refusal| Refusal::new(refusal.denial))
    }

    /// The route whose CORS policy answers a preflight asking for `method`: the first route
    /// matching host and path that has CORS. Without one, the OPTIONS request is routed as such.
    fn preflight_route(
        &self,
        host: Option<&str>,
        path: &str,
        method: &str,
    ) -> Option<(&Route<Target>, &CorsPolicy)> {
        let route = match self.routes.find(host, path, method) {
            RouteMatch::Found { route, .. } => Some(route),
            RouteMatch::MethodNotAllowed { .. } => self.routes.find_any_method(host, path),
            RouteMatch::NotFound => None,
        }?;
        route.target.cors.as_ref().map(|cors| (route, cors))
    }

    /// Sends an admitted request to the upstream and returns its answer's head with the body
    /// streaming on (or splices an upgraded connection).
    async fn forward(
        &self,
        mut head: Box<Parts>,
        (body, watch): AdmittedBody,
        exchange: &Exchange<'_>,
    ) -> Result<Response<Body>, Refusal> {
        let upgrade = upgrade::requested(&head).map(|protocol| {
            let client_side = head.extensions.remove::<OnUpgrade>();
            (
                protocol,
                client_side.unwrap_or_else(|| hyper::upgrade::on(Request::new(()))),
            )
        });
        let upstream = exchange.upstream;
        let rewritten_query = match (head.uri.query(), exchange.strip_query) {
            (Some(query), Some(name)) => Some(without_query_param(query, name)),
            _ => None,
        };
        head.uri = origin_form(&head.uri, exchange.path, rewritten_query.as_deref())
            .map_err(|_| Refusal::new(Denial::BadRequest))?;
        head.version = http::Version::HTTP_11;
        strip_hop_by_hop(&mut head.headers);
        if let Some((protocol, _)) = &upgrade {
            upgrade::restore(&mut head.headers, protocol.clone());
        }
        forwarded_headers(
            &mut head.headers,
            exchange.client,
            exchange.connection.https,
            exchange.host,
            exchange.request_id,
        );
        // Boxed: see `Pool::send`.
        let outgoing = Box::new(Request::from_parts(*head, body));
        let mut response = ask(upstream, outgoing, exchange.connection, watch.as_deref()).await?;
        let switched = match upgrade {
            Some((_, client_side))
                if response.status() == http::StatusCode::SWITCHING_PROTOCOLS =>
            {
                let protocol = response.headers().get(header::UPGRADE).cloned();
                upgrade::splice(
                    client_side,
                    hyper::upgrade::on(&mut response),
                    exchange.connection.permit.clone(),
                );
                protocol
            }
            _ => None,
        };
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        if let Some(protocol) = switched {
            upgrade::restore(&mut parts.headers, protocol);
        }
        Ok(Response::from_parts(parts, body.boxed()))
    }
}

/// A body admitted for forwarding, and the watch on its clock when it streams on.
type AdmittedBody = (Body, Option<Arc<BodyWatch>>);

/// Renders a refusal as the answer, and records it for the access log, the metrics and
/// escalation: every refusal of a request passes here.
fn refuse(outcome: &mut Outcome<'_>, refusal: &Refusal, request_id: &RequestId) -> Response<Body> {
    outcome.denial = Some(refusal.denial);
    problem::render(refusal, Some(request_id.as_str()))
}

/// What forwarding one request needs to know.
struct Exchange<'a> {
    connection: &'a Connection,
    client: &'a Client,
    upstream: &'a Upstream,
    /// The host routing used; sent upstream as `Host` and `X-Forwarded-Host`.
    host: Option<&'a HeaderValue>,
    /// The normalised path.
    path: &'a str,
    request_id: &'a RequestId,
    /// A query parameter kept from the upstream.
    strip_query: Option<&'a str>,
}

/// The host of a request: its authority (absolute-form or HTTP/2 `:authority`) or its one
/// `Host` header. Several `Host` headers, or a `Host` differing from the authority, are refused:
/// what routing sees must be what the upstream gets.
fn request_host(head: &Parts) -> Result<Option<HeaderValue>, &'static str> {
    const CONFLICT: &str = "repeated or conflicting Host";
    let mut hosts = head.headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(CONFLICT);
    }
    let host_text = host.map(|h| h.to_str().map_err(|_| CONFLICT)).transpose()?;
    match (head.uri.authority(), host_text) {
        (Some(authority), Some(text)) if !authority.as_str().eq_ignore_ascii_case(text) => {
            Err(CONFLICT)
        }
        (Some(authority), _) => HeaderValue::from_str(authority.as_str())
            .map(Some)
            .map_err(|_| CONFLICT),
        // HTTP/1.1 requires Host (RFC 9112 section 3.2), HTTP/2 `:authority` or Host (RFC 9113
        // section 8.3.1): a request with neither is refused, never sent on with the upstream's
        // own name. HTTP/1.0 predates Host and may omit it.
        (None, None) if head.version >= http::Version::HTTP_11 => {
            Err("a request must name its host (Host header or :authority)")
        }
        // The header itself, sharing the bytes of the request head.
        (None, _) => Ok(host.cloned()),
    }
}

/// `start + timeout` as a timer deadline, from a clock read the caller already made; a timeout
/// too long to add (centuries) is taken as about thirty years, as `tokio::time::sleep` does.
fn deadline_after(start: Instant, timeout: std::time::Duration) -> Instant {
    start
        .checked_add(timeout)
        .unwrap_or_else(|| start + std::time::Duration::from_hours(30 * 365 * 24))
}

/// A header's value as text, when it is text.
fn header_str(headers: &HeaderMap, name: &header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The 204 answering an allowed preflight.
fn preflight_response(headers: HeaderMap) -> Response<Body> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = http::StatusCode::NO_CONTENT;
    response.headers_mut().extend(headers);
    response
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn deadlines_count_from_the_given_start_and_absurd_timeouts_do_not_overflow() {
        let start = Instant::now();
        let deadline = deadline_after(start, Duration::from_secs(30));
        assert_eq!(deadline, start + Duration::from_secs(30));
        let far = deadline_after(start, Duration::MAX);
        assert!(far > start + Duration::from_hours(29 * 365 * 24));
    }
}
