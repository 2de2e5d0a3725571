//! The metrics registry: every metric the daemon exports, with labels only from config (route,
//! upstream, listener, issuer and version names) and fixed enums, never from clients. One
//! process-wide instance, so metrics outlive reloads of the proxy they describe.

use std::sync::OnceLock;

use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Latency buckets (seconds), from 100 µs to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];

/// Every metric of the daemon.
#[derive(Debug)]
pub struct Metrics {
    /// The registry `/metrics` renders.
    pub registry: Registry,
    /// `api_shield_requests_total{route,method,code}`.
    pub requests: IntCounterVec,
    /// `api_shield_request_duration_seconds{route}`.
    pub request_duration: HistogramVec,
    /// `api_shield_denials_total{route,reason}`.
    pub denials: IntCounterVec,
    /// `api_shield_upstream_errors_total{upstream,kind}`.
    pub upstream_errors: IntCounterVec,
    /// `api_shield_client_errors_total{kind}`: exchanges that failed on the client's side
    /// (`body_timeout`, `aborted`), never counted against an upstream.
    pub client_errors: IntCounterVec,
    /// `api_shield_upstream_response_seconds{upstream}`.
    pub upstream_latency: HistogramVec,
    /// `api_shield_tls_handshake_failures_total{listener}`.
    pub tls_failures: IntCounterVec,
    /// Client connections.
    pub connections: ConnectionMetrics,
    /// `api_shield_xdp_attached{interface}`.
    pub xdp_attached: IntGaugeVec,
    /// Log lines written and lost.
    pub logs: LogMetrics,
    /// The fleet's link to Redis.
    pub fleet: super::fleet_metrics::FleetMetrics,
    /// The CrowdSec bouncer.
    pub crowdsec: super::crowdsec_metrics::CrowdsecMetrics,
    /// The blocklists.
    pub blocklists: super::blocklist_metrics::BlocklistMetrics,
    /// `api_shield_config_reloads_total{result}`.
    pub reloads: IntCounterVec,
    /// `api_shield_jwks_fetches_total{issuer,result}`.
    pub jwks_fetches: IntCounterVec,
    /// `api_shield_deprecated_requests_total{deprecation}`.
    pub deprecated: IntCounterVec,
    /// `api_shield_escalation_bans_total{rule}`.
    pub escalation_bans: IntCounterVec,
    /// `api_shield_xdp_drop_events_total`.
    pub drop_events: IntCounter,
    /// `api_shield_build_info{version}`.
    pub build_info: IntGaugeVec,
    /// `api_shield_config_last_reload_success_timestamp_seconds`.
    pub last_reload: IntGauge,
}

pub(super) fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

pub(super) fn plain_counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let metric = IntCounter::new(name, help).expect("a valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

pub(super) fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).expect("a valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

pub(super) fn gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

/// The process metrics (memory, descriptors, CPU) and `api_shield_build_info`.
fn register_process(registry: &Registry) -> IntGaugeVec {
    #[cfg(target_os = "linux")]
    registry
        .register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("registered once");
    let build_info = gauge_vec(
        registry,
        "api_shield_build_info",
        "Always 1; the version that runs.",
        &["version"],
    );
    build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
    build_info
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let metric = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )
    .expect("a valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

impl Metrics {
    fn new() -> Metrics {
        let metrics = Metrics::register();
        // Series of fixed enums exist from the start, at zero, so rate() works from the first
        // scrape.
        for result in ["success", "failure"] {
            metrics.reloads.with_label_values(&[result]);
        }

        metrics
    }

    fn register() -> Metrics {
        let registry = Registry::new();
        let build_info = register_process(&registry);
        let drop_events = plain_counter(
            &registry,
            "api_shield_xdp_drop_events_total",
            "Drop-start events read from the XDP program's ring buffer.",
        );
        let last_reload = gauge(
            &registry,
            "api_shield_config_last_reload_success_timestamp_seconds",
            "When the config in use was loaded (Unix time).",
        );
        Metrics {
            requests: counter(
                &registry,
                "api_shield_requests_total",
                "Requests answered, by route, method and status code.",
                &["route", "method", "code"],
            ),
            request_duration: histogram(
                &registry,
                "api_shield_request_duration_seconds",
                "Time from request to response head, by route.",
                &["route"],
            ),
            denials: counter(
                &registry,
                "api_shield_denials_total",
                "Requests the shield answered itself, by route and reason.",
                &["route", "reason"],
            ),
            upstream_errors: counter(
                &registry,
                "api_shield_upstream_errors_total",
                "Upstream requests that failed, by upstream and kind (unavailable, timeout).",
                &["upstream", "kind"],
            ),
            client_errors: counter(
                &registry,
                "api_shield_client_errors_total",
                "Exchanges that failed on the client's side, by kind (body_timeout, aborted).",
                &["kind"],
            ),
            upstream_latency: histogram(
                &registry,
                "api_shield_upstream_response_seconds",
                "Time for an upstream to answer with a response head.",
                &["upstream"],
            ),
            tls_failures: counter(
                &registry,
                "api_shield_tls_handshake_failures_total",
                "TLS handshakes that failed or timed out, by listener.",
                &["listener"],
            ),
            connections: ConnectionMetrics::register(&registry),
            xdp_attached: gauge_vec(
                &registry,
                "api_shield_xdp_attached",
                "1 while the XDP program is attached to the interface, 0 while the interface is gone.",
                &["interface"],
            ),
            logs: LogMetrics::register(&registry),
            fleet: super::fleet_metrics::FleetMetrics::register(&registry),
            crowdsec: super::crowdsec_metrics::CrowdsecMetrics::register(&registry),
            blocklists: super::blocklist_metrics::BlocklistMetrics::register(&registry),
            reloads: counter(
                &registry,
                "api_shield_config_reloads_total",
                "Config reloads, by result (success, failure).",
                &["result"],
            ),
            jwks_fetches: counter(
                &registry,
                "api_shield_jwks_fetches_total",
                "JWK set fetches, by issuer and result (success, failure).",
                &["issuer", "result"],
            ),
            deprecated: counter(
                &registry,
                "api_shield_deprecated_requests_total",
                "Requests to deprecated versions or routes, by deprecation (version or route name).",
                &["deprecation"],
            ),
            escalation_bans: counter(
                &registry,
                "api_shield_escalation_bans_total",
                "Bans written into the kernel by escalation rules, by rule.",
                &["rule"],
            ),
            drop_events,
            build_info,
            last_reload,
            registry,
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into memory cannot fail");
        out
    }
}

/// Now, in Unix seconds, as the `*_timestamp_seconds` gauges take it.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// A method as a label: the standard ones, else `OTHER` (clients choose methods).
pub fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// The metrics of client connections.
#[derive(Debug)]
pub struct ConnectionMetrics {
    /// `api_shield_connections_open`.
    pub open: IntGauge,
    /// `api_shield_connections_refused_total{reason}`.
    pub refused: IntCounterVec,
    /// `api_shield_connections_idle_closed_total`.
    pub idle_closed: IntCounter,
    /// `api_shield_accept_errors_total{kind}`.
    pub accept_errors: IntCounterVec,
}

impl ConnectionMetrics {
    fn register(registry: &Registry) -> ConnectionMetrics {
        let metrics = ConnectionMetrics {
            open: gauge(
                registry,
                "api_shield_connections_open",
                "Client connections open now (HTTPS and redirect listeners).",
            ),
            refused: counter(
                registry,
                "api_shield_connections_refused_total",
                "Client connections closed at accept, by reason (per_address, total).",
                &["reason"],
            ),
            idle_closed: plain_counter(
                registry,
                "api_shield_connections_idle_closed_total",
                "Client connections closed after proxy.idle_timeout with no byte moving.",
            ),
            accept_errors: counter(
                registry,
                "api_shield_accept_errors_total",
                "Failed accepts, by kind (resources: out of file descriptors or memory; \
             connection: reset before it was taken).",
                &["kind"],
            ),
        };
        for reason in ["per_address", "total"] {
            metrics.refused.with_label_values(&[reason]);
        }
        for kind in ["resources", "connection"] {
            metrics.accept_errors.with_label_values(&[kind]);
        }
        metrics
    }
}

/// The metrics of the daemon's logs and its access log.
#[derive(Debug)]
pub struct LogMetrics {
    /// `api_shield_log_write_errors_total`.
    pub write_errors: IntCounter,
    /// `api_shield_access_log_lines_total`.
    pub access_lines: IntCounter,
    /// `api_shield_access_log_dropped_total`.
    pub access_dropped: IntCounter,
}

impl LogMetrics {
    fn register(registry: &Registry) -> LogMetrics {
        LogMetrics {
            write_errors: plain_counter(
                registry,
                "api_shield_log_write_errors_total",
                "Log lines dropped because stderr could not be written (disk full, closed pipe).",
            ),
            access_lines: plain_counter(
                registry,
                "api_shield_access_log_lines_total",
                "Access-log lines written to the sink.",
            ),
            access_dropped: plain_counter(
                registry,
                "api_shield_access_log_dropped_total",
                "Access-log lines lost: the buffer was full (the sink could not keep up) or the \
                 sink failed.",
            ),
        }
    }
}
