//! A route's handles on the request metrics, resolved when the route is compiled, so that a
//! request does not look its labels up in the metric families: that lookup hashed every label
//! value with `SipHash` and took a read lock and an `Arc` per metric, about 1.5 % of the proxy's
//! CPU under bench-proxy.

use std::{
    sync::{PoisonError, RwLock},
    time::Duration,
};

use prometheus::{Histogram, IntCounter};

use crate::telemetry::metrics;

/// Counters kept per route for (method, status) pairs; rarer pairs are looked up each time.
const CACHED_COUNTERS: usize = 32;

/// The request metrics of one route (or of the default upstream, or of unrouted requests).
#[derive(Debug)]
pub(crate) struct RouteMetrics {
    name: String,
    /// `api_shield_request_duration_seconds{route}`.
    duration: Histogram,
    /// `api_shield_requests_total{route,method,code}` for the pairs seen so far.
    /// Read-locked on the usual path, so workers serving one route do not queue on it.
    requests: RwLock<Vec<(&'static str, u16, IntCounter)>>,
}

impl RouteMetrics {
    /// The handles of the route named `name`.
    pub(crate) fn new(name: &str) -> RouteMetrics {
        RouteMetrics {
            name: name.to_owned(),
            duration: metrics().request_duration.with_label_values(&[name]),
            requests: RwLock::new(Vec::new()),
        }
    }

    /// The route's name, its `route` label.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Counts one request answered with `status` after `elapsed`.
    pub(crate) fn record(&self, method: &'static str, status: http::StatusCode, elapsed: Duration) {
        self.duration.observe(elapsed.as_secs_f64());
        let code = status.as_u16();
        let count_cached = |requests: &[(&'static str, u16, IntCounter)]| {
            requests
                .iter()
                .find(|(m, c, _)| *c == code && *m == method)
                .map(|(_, _, counter)| counter.inc())
                .is_some()
        };
        if count_cached(&self.requests.read().unwrap_or_else(PoisonError::into_inner)) {
            return;
        }
        let mut requests = self
            .requests
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if count_cached(&requests) {
            return;
        }
        let counter =
            metrics()
                .requests
                .with_label_values(&[self.name.as_str(), method, status.as_str()]);
        counter.inc();
        if requests.len() < CACHED_COUNTERS {
            requests.push((method, code, counter));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(route: &str, method: &str, code: &str) -> u64 {
        metrics()
            .requests
            .with_label_values(&[route, method, code])
            .get()
    }

    #[test]
    fn counts_land_in_the_labelled_series_cached_or_not() {
        let route = RouteMetrics::new("route-metrics-test");
        // More pairs than are cached: the last ones are looked up each time.
        for round in 0..2 {
            for code in 200..(200 + CACHED_COUNTERS as u16 + 4) {
                let status = http::StatusCode::from_u16(code).unwrap();
                route.record("GET", status, Duration::from_millis(2));
                assert_eq!(
                    count("route-metrics-test", "GET", status.as_str()),
                    round + 1
                );
            }
        }
        route.record("POST", http::StatusCode::OK, Duration::from_millis(2));
        assert_eq!(count("route-metrics-test", "POST", "200"), 1);
        assert_eq!(count("route-metrics-test", "GET", "200"), 2);
        let histogram = metrics()
            .request_duration
            .with_label_values(&["route-metrics-test"]);
        assert_eq!(
            histogram.get_sample_count(),
            2 * (CACHED_COUNTERS as u64 + 4) + 1
        );
    }
}
