//! Compiling a validated config into a [`Proxy`]: upstreams, the `[[openapi]]` routes and the
//! `[[routes]]` with their policies. Everything a request will need is built here, once.

use std::{collections::HashMap, sync::Arc};

use super::{Proxy, Target};
use crate::{
    config::{problem as config_problem, Config, ConfigError},
    pattern::PathPattern,
    policy::{
        openapi, validate::Validation, version::Deprecation, RouteParts, SharedClock,
        SharedPolicies,
    },
    proxy::{
        request::{
            cors::CorsPolicy,
            headers::ResponseHeaders,
            route_metrics::RouteMetrics,
            routing::{Route, RouteTable},
        },
        upstream::Upstream,
    },
};

impl Proxy {
    /// Compiles a validated config with its policies (reading key, schema and OpenAPI files);
    /// fails naming the key at fault.
    pub(crate) fn new(config: &Config, clock: SharedClock) -> Result<Proxy, ConfigError> {
        let error = |problem| config.source.error(problem);
        let mut upstreams: HashMap<&str, Arc<Upstream>> = HashMap::new();
        for (i, upstream) in config.upstreams.iter().enumerate() {
            let compiled = Upstream::new(upstream)
                .map_err(|e| error(config_problem(format!("upstreams[{i}]"), e.to_string())))?;
            upstreams.insert(upstream.name.as_str(), Arc::new(compiled));
            for kind in ["unavailable", "timeout"] {
                crate::telemetry::metrics()
                    .upstream_errors
                    .with_label_values(&[upstream.name.as_str(), kind]);
            }
        }
        let shared = SharedPolicies::compile(config, clock).map_err(error)?;
        let mut routes = imported_routes(config, &shared, &upstreams).map_err(error)?;
        for (i, r) in config.routes.iter().enumerate() {
            let key = format!("routes[{i}]");
            let parts = RouteParts {
                name: &r.name,
                auth: r.auth.as_ref(),
                rate_limit: r.rate_limit.as_ref(),
                validation: r
                    .validate
                    .as_ref()
                    .map(|v| Validation::compile(v, &format!("{key}.validate"), &config.source))
                    .transpose()
                    .map_err(error)?,
                deprecation: r
                    .deprecation
                    .as_ref()
                    .map(|d| Deprecation::compile(d, &format!("{key}.deprecation"), &r.name))
                    .transpose()
                    .map_err(error)?,
            };
            routes.push(Route {
                name: r.name.clone(),
                host: r.host.clone(),
                path: r.path.clone(),
                methods: r.methods.clone(),
                target: Target {
                    upstream: Arc::clone(&upstreams[r.upstream.as_str()]),
                    metrics: RouteMetrics::new(&r.name),
                    cors: r
                        .cors
                        .as_ref()
                        .map(|c| CorsPolicy::compile(c, r.methods.as_deref())),
                    policies: shared.route(parts, &key).map_err(error)?,
                },
            });
        }
        Ok(Proxy {
            default_upstream: config
                .proxy
                .default_upstream
                .as_deref()
                .map(|name| Arc::clone(&upstreams[name])),
            default_metrics: RouteMetrics::new("default"),
            unrouted_metrics: RouteMetrics::new("none"),
            routes: RouteTable::new(routes),
            headers: ResponseHeaders::new(&config.proxy),
            max_body: config.proxy.max_body_bytes,
            trusted_proxies: config.proxy.trusted_proxies.clone(),
            request_timeout: config.proxy.request_timeout,
            body_timeout: config.proxy.body_timeout,
            policies: shared,
            escalator: None,
        })
    }
}

/// Routes of the `[[openapi]]` documents, one per operation, tried before `[[routes]]`.
fn imported_routes(
    config: &Config,
    shared: &SharedPolicies,
    upstreams: &HashMap<&str, Arc<Upstream>>,
) -> Result<Vec<Route<Target>>, crate::config::Problem> {
    let mut routes = Vec::new();
    for (i, entry) in config.openapi.iter().enumerate() {
        let key = format!("openapi[{i}]");
        let upstream = upstreams.get(entry.upstream.as_str()).ok_or_else(|| {
            config_problem(
                format!("{key}.upstream"),
                format!("no upstream is named `{}`", entry.upstream),
            )
        })?;
        let path = config.source.resolve(&entry.file);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            config_problem(
                format!("{key}.file"),
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let document = openapi::parse(&text, &format!("{key}.file"))?;
        for operation in openapi::operations(&document, &entry.path_prefix, &format!("{key}.file"))?
        {
            let pattern = PathPattern::parse(&operation.path).map_err(|e| {
                config_problem(format!("{key}.file"), format!("{}: {e}", operation.name))
            })?;
            let parts = RouteParts {
                name: &operation.name,
                auth: entry.auth.as_ref(),
                rate_limit: entry.rate_limit.as_ref(),
                validation: Some(operation.validation),
                deprecation: None,
            };
            routes.push(Route {
                name: operation.name.clone(),
                host: None,
                path: pattern,
                methods: Some(vec![operation.method]),
                target: Target {
                    upstream: Arc::clone(upstream),
                    metrics: RouteMetrics::new(&operation.name),
                    cors: None,
                    policies: shared.route(parts, &key)?,
                },
            });
        }
    }
    Ok(routes)
}
