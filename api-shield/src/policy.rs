//! The policy chain: per-route checks compiled from config at load time (so a bad policy fails
//! the load, never a request) and applied in a fixed order: version sunset, rate limits keyed
//! before auth (client IP, header), authentication and scopes, rate limits keyed by the
//! credential, then input validation of the head (the body's is `Validation::check_body`, run
//! by the handler once it has read the body). Each refusal is a typed [`Refusal`] that
//! `proxy::request::problem` alone turns into the answer.

pub mod auth;
pub mod clock;
pub mod json_tape;
pub mod openapi;
pub mod quick_check;
pub mod ratelimit;
pub(crate) mod time;
pub mod validate;
pub(crate) mod version;

use std::{collections::HashMap, net::IpAddr, sync::Arc};

use http::{HeaderMap, HeaderName};

use self::{
    auth::{api_key::ApiKeys, jwt::Issuer, Auth},
    ratelimit::RateLimit,
    validate::Validation,
    version::{Deprecation, Versioning},
};
pub use self::{
    auth::{Principal, TokenPrincipal},
    clock::SharedClock,
};
use crate::{
    config::{Config, Problem, RateLimitConfig, RouteAuthConfig},
    refusal::{Advice, Refusal},
};

/// The header telling the upstream which API key called (never taken from a client).
pub const API_KEY_ID: HeaderName = HeaderName::from_static("x-api-key-id");

/// What every route shares: issuers, API keys, versions, the clock.
#[derive(Debug)]
pub struct SharedPolicies {
    /// Issuers by name.
    pub issuers: HashMap<String, Arc<Issuer>>,
    api_keys: Arc<ApiKeys>,
    versioning: Versioning,
    /// Headers no client may send: the ones forwarded claims are written to.
    strip: Vec<HeaderName>,
    /// Headers a decision is made on, which must come at most once: the credentials, the
    /// origin, the media type, the version.
    single: Vec<HeaderName>,
    /// Headers the shield reads or writes, which a client's `Connection` may not nominate
    /// for removal.
    relied_on: Vec<HeaderName>,
    /// The clock.
    pub clock: SharedClock,
}

impl SharedPolicies {
    /// Compiles `[[issuers]]`, `[api_keys]` and `[versioning]`, reading key files.
    pub fn compile(config: &Config, clock: SharedClock) -> Result<SharedPolicies, Problem> {
        let mut issuers = HashMap::new();
        let mut strip = vec![API_KEY_ID];
        for (i, issuer) in config.issuers.iter().enumerate() {
            let compiled = Issuer::compile(issuer, i, &config.source, Arc::clone(&clock))?;
            strip.extend(compiled.forwarded_headers().cloned());
            issuers.insert(issuer.name.clone(), Arc::new(compiled));
        }
        let api_keys = Arc::new(ApiKeys::compile(&config.api_keys)?);
        let versioning = Versioning::compile(&config.versioning)?;
        let mut single = vec![
            http::header::AUTHORIZATION,
            api_keys.header().clone(),
            http::header::ORIGIN,
            http::header::CONTENT_TYPE,
        ];
        single.extend(versioning.header().cloned());
        let mut relied_on = single.clone();
        relied_on.extend([
            http::header::HOST,
            http::header::COOKIE,
            http::header::CONTENT_LENGTH,
            http::header::FORWARDED,
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("x-forwarded-for"),
            HeaderName::from_static("x-forwarded-proto"),
            HeaderName::from_static("x-forwarded-host"),
        ]);
        relied_on.extend(strip.iter().cloned());
        Ok(SharedPolicies {
            issuers,
            api_keys,
            versioning,
            strip,
            single,
            relied_on,
            clock,
        })
    }

    /// The first header a decision is made on that the request repeats: such a request is
    /// refused, so that the value checked is the one value the upstream gets.
    pub fn repeated(&self, headers: &HeaderMap) -> Option<&HeaderName> {
        self.single
            .iter()
            .find(|name| headers.get_all(*name).iter().nth(1).is_some())
    }

    /// Whether the shield reads or writes `name` (a client may not have it removed as
    /// hop-by-hop).
    pub fn relies_on(&self, name: &HeaderName) -> bool {
        self.relied_on.contains(name)
    }

    /// Removes headers only the shield may set (forwarded claims) from a client request.
    pub fn strip_forged(&self, headers: &mut HeaderMap) {
        for name in &self.strip {
            headers.remove(name);
        }
    }

    /// Compiles one route's policies (its table at `key`).
    pub fn route(&self, parts: RouteParts<'_>, key: &str) -> Result<RoutePolicies, Problem> {
        Ok(RoutePolicies {
            auth: parts
                .auth
                .map(|a| {
                    Auth::compile(
                        a,
                        &format!("{key}.auth"),
                        &self.issuers,
                        &self.api_keys,
                        Arc::clone(&self.clock),
                    )
                })
                .transpose()?,
            rate_limit: parts
                .rate_limit
                .map(|r| {
                    RateLimit::compile(
                        r,
                        parts.name,
                        &format!("{key}.rate_limit"),
                        Arc::clone(&self.clock),
                    )
                })
                .transpose()?,
            validation: parts.validation,
            deprecation: parts.deprecation.map(Arc::new),
        })
    }

    /// The deprecation that applies to a request: its route's, else its version's.
    fn deprecation<'a>(
        &'a self,
        route: &'a RoutePolicies,
        path: &str,
        headers: &HeaderMap,
    ) -> Option<&'a Arc<Deprecation>> {
        route
            .deprecation
            .as_ref()
            .or_else(|| self.versioning.of(path, headers))
    }

    /// Runs a route's head checks. On success, what the request may forward and the advice
    /// its answer carries; on refusal, the refusal (with that advice too).
    pub async fn admit(
        &self,
        route: &RoutePolicies,
        request: &mut http::request::Parts,
        path: &str,
        client_ip: IpAddr,
    ) -> Result<Admitted, Refusal> {
        let mut advice = Vec::new();
        // A refusal carries the advice gathered before it (a deprecation, say), its own last.
        let with_advice = |mut refusal: Refusal, advice: &[Advice]| {
            refusal.advice.splice(0..0, advice.iter().cloned());
            refusal
        };
        if let Some(deprecation) = self.deprecation(route, path, &request.headers) {
            advice.push(deprecation.check(&self.clock)?);
        }
        let limit = |principal: Option<&Principal>, advice: &mut Vec<Advice>| {
            if let Some(limit) = &route.rate_limit {
                let spent = limit
                    .check(&request.headers, client_ip, principal)
                    .map_err(|r| with_advice(r, advice))?;
                advice.push(limit.advice(&spent));
            }
            Ok::<(), Refusal>(())
        };
        let early = route
            .rate_limit
            .as_ref()
            .is_some_and(|l| l.source().before_auth());
        if early {
            limit(None, &mut advice)?;
        }
        let principal = match &route.auth {
            Some(auth) => Some(
                auth.check(&request.headers, request.uri.query())
                    .await
                    .map_err(|r| with_advice(r, &advice))?,
            ),
            None => None,
        };
        if !early {
            limit(principal.as_ref(), &mut advice)?;
        }
        if let Some(validation) = &route.validation {
            validation
                .check_head(&request.headers, request.uri.query())
                .map_err(|r| with_advice(r, &advice))?;
        }
        match &principal {
            Some(Principal::Token(token)) => {
                for (name, value) in &token.forwarded {
                    request.headers.insert(name.clone(), value.clone());
                }
            }
            Some(Principal::ApiKey { id, .. }) => {
                if let Ok(value) = http::HeaderValue::from_str(id) {
                    request.headers.insert(API_KEY_ID, value);
                }
            }
            None => {}
        }
        Ok(Admitted { advice, principal })
    }

    /// Starts the background JWK set refreshes; dropping the handles stops them.
    pub fn spawn_refreshes(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.issuers
            .values()
            .filter(|i| i.jwks().is_some())
            .map(|i| tokio::spawn(auth::jwks::refresh_forever(Arc::clone(i))))
            .collect()
    }
}

/// The policy tables of one route (from `[[routes]]` or an OpenAPI import).
#[derive(Debug, Default)]
pub struct RouteParts<'a> {
    /// The route's name.
    pub name: &'a str,
    /// `auth`.
    pub auth: Option<&'a RouteAuthConfig>,
    /// `rate_limit`.
    pub rate_limit: Option<&'a RateLimitConfig>,
    /// Compiled validation.
    pub validation: Option<Validation>,
    /// Compiled deprecation.
    pub deprecation: Option<Deprecation>,
}

/// A route's compiled policies.
#[derive(Debug, Default)]
pub struct RoutePolicies {
    auth: Option<Auth>,
    rate_limit: Option<RateLimit>,
    /// Its validation.
    pub validation: Option<Validation>,
    deprecation: Option<Arc<Deprecation>>,
}

impl RoutePolicies {
    /// A query parameter carrying an API key, removed before forwarding.
    pub fn query_param(&self) -> Option<&str> {
        self.auth.as_ref().and_then(Auth::query_param)
    }
}

/// What passing the head checks gives.
#[derive(Debug, Default)]
pub struct Admitted {
    /// What the answer advises (`RateLimit`, `Deprecation`, `Sunset`, `Link`).
    pub advice: Vec<Advice>,
    /// Who the caller is, if the route authenticates.
    pub principal: Option<Principal>,
}
