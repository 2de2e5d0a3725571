//! Route matching on host, normalised path and method, compiled once from config (the
//! patterns, parsed with it, are `crate::pattern`'s). Routes are tried in config order; the
//! first whose host, path and method match wins. When host and path match but no route takes
//! the method, the answer is 405 with the methods that would.

use crate::pattern::{HostPattern, PathPattern};

/// The host of a `Host` header or `:authority`, without its port.
pub fn host_without_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        // An IPv6 literal: `[::1]:8443`.
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// One compiled route.
#[derive(Debug, Clone)]
pub struct Route<T> {
    /// Its name (used in logs and metrics).
    pub name: String,
    /// Host to match, or any.
    pub host: Option<HostPattern>,
    /// Path to match.
    pub path: PathPattern,
    /// Methods accepted (upper case), or any. `GET` implies `HEAD`.
    pub methods: Option<Vec<String>>,
    /// What the route leads to (upstream, policies).
    pub target: T,
}

impl<T> Route<T> {
    fn takes(&self, method: &str) -> bool {
        match &self.methods {
            None => true,
            Some(methods) => methods
                .iter()
                .any(|m| m == method || (method == "HEAD" && m == "GET")),
        }
    }
}

/// The outcome of routing one request.
#[derive(Debug)]
pub enum RouteMatch<'a, T> {
    /// A route takes it.
    Found {
        /// The route.
        route: &'a Route<T>,
        /// Template parameters.
        params: Vec<(String, String)>,
    },
    /// Routes match host and path but none takes the method.
    MethodNotAllowed {
        /// Methods that would be taken, for the `Allow` header.
        allow: Vec<String>,
    },
    /// No route matches host and path.
    NotFound,
}

/// Routes in config order.
#[derive(Debug, Clone)]
pub struct RouteTable<T> {
    routes: Vec<Route<T>>,
}

impl<T> RouteTable<T> {
    /// A table of routes, tried in this order.
    pub fn new(routes: Vec<Route<T>>) -> RouteTable<T> {
        RouteTable { routes }
    }

    /// The routes.
    pub fn routes(&self) -> &[Route<T>] {
        &self.routes
    }

    /// The first route matching host and path, whatever the method (for CORS preflights, whose
    /// answer the route's CORS policy gives).
    pub fn find_any_method(&self, host: Option<&str>, path: &str) -> Option<&Route<T>> {
        let host = host.map(host_without_port);
        self.routes.iter().find(|route| {
            route
                .host
                .as_ref()
                .is_none_or(|p| host.is_some_and(|h| p.matches(h)))
                && route.path.captures(path).is_some()
        })
    }

    /// Whether a route names `host` (without port) in its host pattern.
    pub fn names_host(&self, host: &str) -> bool {
        self.routes
            .iter()
            .any(|route| route.host.as_ref().is_some_and(|p| p.matches(host)))
    }

    /// Routes a request: `host` from `Host`/`:authority` (port allowed), `path` normalised,
    /// `method` upper case.
    pub fn find(&self, host: Option<&str>, path: &str, method: &str) -> RouteMatch<'_, T> {
        let host = host.map(host_without_port);
        let mut allow: Vec<String> = Vec::new();
        let mut path_matched = false;
        for route in &self.routes {
            if let Some(pattern) = &route.host {
                if !host.is_some_and(|h| pattern.matches(h)) {
                    continue;
                }
            }
            let Some(params) = route.path.captures(path) else {
                continue;
            };
            if route.takes(method) {
                return RouteMatch::Found { route, params };
            }
            path_matched = true;
            for m in route.methods.iter().flatten() {
                allow.push(m.clone());
                if m == "GET" {
                    allow.push("HEAD".to_owned());
                }
            }
        }
        if path_matched {
            allow.sort();
            allow.dedup();
            RouteMatch::MethodNotAllowed { allow }
        } else {
            RouteMatch::NotFound
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, host: Option<&str>, path: &str, methods: Option<&[&str]>) -> Route<()> {
        Route {
            name: name.to_owned(),
            host: host.map(|h| HostPattern::parse(h).unwrap()),
            path: PathPattern::parse(path).unwrap(),
            methods: methods.map(|m| m.iter().map(|s| (*s).to_owned()).collect()),
            target: (),
        }
    }

    fn table() -> RouteTable<()> {
        RouteTable::new(vec![
            route("health", None, "/health", Some(&["GET"])),
            route(
                "user",
                Some("api.example.com"),
                "/api/v1/users/{id}",
                Some(&["GET", "PUT"]),
            ),
            route(
                "user-delete",
                Some("api.example.com"),
                "/api/v1/users/{id}",
                Some(&["DELETE"]),
            ),
            route("tenant", Some("*.tenants.example.com"), "/api/*", None),
            route("api", None, "/api/*", Some(&["GET", "POST"])),
        ])
    }

    fn name(m: RouteMatch<'_, ()>) -> String {
        match m {
            RouteMatch::Found { route, .. } => route.name.clone(),
            RouteMatch::MethodNotAllowed { allow } => format!("405 {}", allow.join(",")),
            RouteMatch::NotFound => "404".to_owned(),
        }
    }

    #[test]
    fn exact_prefix_and_template_paths() {
        let t = table();
        assert_eq!(name(t.find(None, "/health", "GET")), "health");
        assert_eq!(name(t.find(None, "/health/", "GET")), "404");
        assert_eq!(name(t.find(None, "/healthz", "GET")), "404");
        assert_eq!(name(t.find(None, "/api", "GET")), "api");
        assert_eq!(name(t.find(None, "/api/anything/below", "POST")), "api");
        assert_eq!(name(t.find(None, "/apis", "GET")), "404");
        match t.find(Some("API.example.com:8443"), "/api/v1/users/42", "PUT") {
            RouteMatch::Found { route, params } => {
                assert_eq!(route.name, "user");
                assert_eq!(params, vec![("id".to_owned(), "42".to_owned())]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            name(t.find(Some("api.example.com"), "/api/v1/users/", "GET")),
            "api"
        );
        assert_eq!(
            name(t.find(Some("api.example.com"), "/api/v1/users/1/x", "GET")),
            "api"
        );
    }

    #[test]
    fn method_falls_through_to_later_routes_and_405_lists_them() {
        let t = table();
        assert_eq!(
            name(t.find(Some("api.example.com"), "/api/v1/users/7", "DELETE")),
            "user-delete"
        );
        assert_eq!(name(t.find(None, "/health", "HEAD")), "health");
        assert_eq!(name(t.find(None, "/health", "POST")), "405 GET,HEAD");
        assert_eq!(
            name(t.find(Some("api.example.com"), "/api/v1/users/7", "PATCH")),
            "405 DELETE,GET,HEAD,POST,PUT"
        );
    }

    #[test]
    fn hosts_exact_and_wildcard() {
        let t = table();
        assert_eq!(
            name(t.find(Some("a.tenants.example.com"), "/api/x", "PATCH")),
            "tenant"
        );
        assert_eq!(
            name(t.find(Some("a.b.TENANTS.example.com"), "/api/x", "PATCH")),
            "tenant"
        );
        assert_eq!(
            name(t.find(Some("tenants.example.com"), "/api/x", "PATCH")),
            "405 GET,HEAD,POST"
        );
        assert_eq!(
            name(t.find(Some("eviltenants.example.com"), "/api/x", "GET")),
            "api"
        );
        assert_eq!(
            name(t.find(None, "/api/v1/users/7", "PUT")),
            "405 GET,HEAD,POST"
        );
        assert_eq!(host_without_port("[::1]:8443"), "::1");
        assert_eq!(host_without_port("example.com"), "example.com");
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "api",
            "/api/*/x",
            "/a*",
            "/api/{}",
            "/api/x{id}",
            "/api/{id",
            "/*/x/*",
        ] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
        for bad in ["*", "*.", "a*.example.com", "bad host"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
