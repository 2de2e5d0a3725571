//! The L7 rate limit of a route: GCRA per client key (client IP, API key id, token subject or a
//! header), 429 with `Retry-After` past it, and the IETF `RateLimit-Policy` / `RateLimit`
//! headers (draft-ietf-httpapi-ratelimit-headers) on every answer of a limited route.

pub mod fleet_share;
pub mod gcra;
pub mod rate;

use std::sync::Arc;

use http::{HeaderMap, HeaderName};

pub use self::{
    fleet_share::FleetShare,
    gcra::{Decision, KeyedGcra},
    rate::{Rate, RateError},
};
use super::{Principal, SharedClock};
use crate::{
    config::{problem, Problem, RateLimitConfig, RateScope},
    refusal::{Advice, Denial, Refusal},
};

const NS: u64 = 1_000_000_000;

/// Who a budget belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The client address (after trusted proxies).
    ClientIp,
    /// The API key id (client IP for requests without one).
    ApiKey,
    /// The token subject (client IP for requests without one).
    Subject,
    /// A request header's value (client IP when it is absent).
    Header(HeaderName),
}

impl KeySource {
    /// Whether the key is known before authentication (so the limit can run first and also
    /// slow down credential guessing).
    pub fn before_auth(&self) -> bool {
        matches!(self, KeySource::ClientIp | KeySource::Header(_))
    }
}

/// A compiled rate limit.
#[derive(Debug)]
pub struct RateLimit {
    rate: Rate,
    burst: u32,
    source: KeySource,
    gcra: Arc<KeyedGcra>,
    /// The fleet's shared budget, for `scope = "fleet"`.
    fleet: Option<Arc<FleetShare>>,
    clock: SharedClock,
    /// `RateLimit-Policy`, digits and quotes (header text).
    policy: Arc<str>,
}

/// What a request spent, for the response headers.
#[derive(Debug, Clone)]
pub struct Spent {
    remaining: u32,
    reset_secs: u64,
}

impl RateLimit {
    /// Compiles `config` (found at `key` in the file) for the route `route`.
    pub fn compile(
        config: &RateLimitConfig,
        route: &str,
        key: &str,
        clock: SharedClock,
    ) -> Result<RateLimit, Problem> {
        let rate =
            Rate::parse(&config.rate).map_err(|e| problem(format!("{key}.rate"), e.to_string()))?;
        let burst = config.burst.unwrap_or(rate.count);
        if burst == 0 {
            return Err(problem(format!("{key}.burst"), "must be at least 1"));
        }
        if config.max_keys == 0 {
            return Err(problem(format!("{key}.max_keys"), "must be at least 1"));
        }
        let source = match config.key.as_str() {
            "client_ip" => KeySource::ClientIp,
            "api_key" => KeySource::ApiKey,
            "subject" => KeySource::Subject,
            other => match other.strip_prefix("header:").map(HeaderName::try_from) {
                Some(Ok(name)) => KeySource::Header(name),
                _ => {
                    return Err(problem(
                        format!("{key}.key"),
                        format!("`{other}`: use client_ip, api_key, subject or header:<name>"),
                    ))
                }
            },
        };
        let policy = Arc::from(format!(
            "\"default\";q={};w={}",
            rate.count,
            rate.period.as_secs()
        ));
        let gcra = Arc::new(KeyedGcra::new(rate.interval_ns(), burst, config.max_keys));
        let fleet = (config.scope == RateScope::Fleet).then(|| {
            FleetShare::new(
                route,
                rate.interval_ns(),
                rate.interval_ns().saturating_mul(u64::from(burst)),
                Arc::clone(&gcra),
                Arc::clone(&clock),
                config.max_keys,
            )
        });
        Ok(RateLimit {
            rate,
            burst,
            source,
            gcra,
            fleet,
            clock,
            policy,
        })
    }

    /// Where the key comes from.
    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// Counts the request; over the limit it is a 429 with `Retry-After` and the headers.
    pub fn check(
        &self,
        headers: &HeaderMap,
        client_ip: std::net::IpAddr,
        principal: Option<&Principal>,
    ) -> Result<Spent, Refusal> {
        let now = self.clock.monotonic_ns();
        let decision = if let Some(share) = &self.fleet {
            let key = self.fleet_key(headers, client_ip, principal);
            let decision = self.gcra.check(&key, now);
            if matches!(decision, Decision::Allowed { .. }) {
                share.admitted(key);
            }
            decision
        } else {
            self.local_decision(headers, client_ip, principal, now)
        };
        match decision {
            Decision::Allowed {
                remaining,
                reset_ns,
            } => Ok(Spent {
                remaining,
                reset_secs: reset_ns.div_ceil(NS),
            }),
            Decision::Limited { retry_after_ns } => {
                let retry = retry_after_ns.div_ceil(NS).max(1);
                Err(Refusal::new(Denial::RateLimited)
                    .advise(Advice::RetryAfter(retry))
                    .advise(self.advice(&Spent {
                        remaining: 0,
                        reset_secs: retry,
                    })))
            }
        }
    }

    /// The decision of a host-scoped limit: keys hashed as they are, no text built.
    fn local_decision(
        &self,
        headers: &HeaderMap,
        client_ip: std::net::IpAddr,
        principal: Option<&Principal>,
        now: u64,
    ) -> Decision {
        match (&self.source, principal) {
            (KeySource::ApiKey, Some(Principal::ApiKey { id, .. })) => {
                self.gcra.check(&("key", id.as_ref()), now)
            }
            (KeySource::Subject, Some(Principal::Token(token))) => match &token.subject {
                Some(subject) => self
                    .gcra
                    .check(&("sub", token.issuer.as_ref(), subject), now),
                None => self.gcra.check(&client_ip, now),
            },
            (KeySource::Header(name), _) => match headers.get(name) {
                Some(value) => self.gcra.check(&("hdr", value.as_bytes()), now),
                None => self.gcra.check(&client_ip, now),
            },
            _ => self.gcra.check(&client_ip, now),
        }
    }

    /// A fleet-scoped limit's key as text, the same on every host: the address, the API key's
    /// id, or a digest of a token subject or header value (bounded, and never the value in
    /// Redis).
    fn fleet_key(
        &self,
        headers: &HeaderMap,
        client_ip: std::net::IpAddr,
        principal: Option<&Principal>,
    ) -> String {
        let digest = |parts: &[&[u8]]| {
            let mut context = ring::digest::Context::new(&ring::digest::SHA256);
            for part in parts {
                context.update(part);
                context.update(&[0]);
            }
            hex::encode(&context.finish().as_ref()[..16])
        };
        match (&self.source, principal) {
            (KeySource::ApiKey, Some(Principal::ApiKey { id, .. })) => format!("key:{id}"),
            (KeySource::Subject, Some(Principal::Token(token))) => match &token.subject {
                Some(subject) => format!(
                    "sub:{}",
                    digest(&[token.issuer.as_bytes(), subject.as_bytes()])
                ),
                None => format!("ip:{client_ip}"),
            },
            (KeySource::Header(name), _) => match headers.get(name) {
                Some(value) => format!("hdr:{}", digest(&[value.as_bytes()])),
                None => format!("ip:{client_ip}"),
            },
            _ => format!("ip:{client_ip}"),
        }
    }

    /// `RateLimit-Policy` and `RateLimit` for what the request spent.
    pub fn advice(&self, spent: &Spent) -> Advice {
        Advice::RateLimit {
            policy: Arc::clone(&self.policy),
            remaining: u64::from(spent.remaining),
            reset_secs: spent.reset_secs,
        }
    }

    /// The configured rate and burst, for logs.
    pub fn describe(&self) -> String {
        format!("{} (burst {})", self.rate, self.burst)
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;
    use crate::policy::clock::ManualClock;

    fn limit(text: &str, clock: &Arc<ManualClock>) -> RateLimit {
        let config: RateLimitConfig = toml::from_str::<toml::Table>(&format!("r = {text}"))
            .unwrap()
            .remove("r")
            .unwrap()
            .try_into()
            .unwrap();
        RateLimit::compile(&config, "r", "routes[0].rate_limit", clock.clone()).unwrap()
    }

    #[test]
    fn five_per_minute_counts_exactly_and_answers_with_headers() {
        let clock = Arc::new(ManualClock::new(1_800_000_000));
        let limit = limit("\"5 per minute\"", &clock);
        let ip = "192.0.2.1".parse().unwrap();
        let headers = HeaderMap::new();
        for expected in (0..5).rev() {
            let spent = limit.check(&headers, ip, None).unwrap();
            assert_eq!(spent.remaining, expected);
        }
        let refusal = limit.check(&headers, ip, None).unwrap_err();
        assert_eq!(refusal.denial, Denial::RateLimited);
        let policy: Arc<str> = Arc::from("\"default\";q=5;w=60");
        assert_eq!(
            refusal.advice,
            [
                Advice::RetryAfter(12),
                Advice::RateLimit {
                    policy: Arc::clone(&policy),
                    remaining: 0,
                    reset_secs: 12
                }
            ]
        );
        clock.advance(Duration::from_secs(12));
        let spent = limit.check(&headers, ip, None).unwrap();
        assert_eq!(
            limit.advice(&spent),
            Advice::RateLimit {
                policy,
                remaining: 0,
                reset_secs: 60
            }
        );
        assert!(limit.check(&headers, ip, None).is_err());
        // Another client has its own budget.
        assert!(limit
            .check(&headers, "192.0.2.2".parse().unwrap(), None)
            .is_ok());
    }

    #[test]
    fn header_keys_share_a_budget_across_addresses() {
        let clock = Arc::new(ManualClock::new(0));
        let limit = limit(
            "{ rate = \"2/s\", burst = 2, key = \"header:x-tenant\" }",
            &clock,
        );
        let mut headers = HeaderMap::new();
        headers.insert("x-tenant", http::HeaderValue::from_static("acme"));
        assert!(limit
            .check(&headers, "192.0.2.1".parse().unwrap(), None)
            .is_ok());
        assert!(limit
            .check(&headers, "192.0.2.2".parse().unwrap(), None)
            .is_ok());
        assert!(limit
            .check(&headers, "192.0.2.3".parse().unwrap(), None)
            .is_err());
    }

    #[test]
    fn bad_settings_name_their_key() {
        let clock: SharedClock = Arc::new(ManualClock::new(0));
        let mut config = RateLimitConfig {
            rate: "5 per fortnight".into(),
            burst: None,
            key: "client_ip".into(),
            max_keys: 10,
            scope: crate::config::RateScope::Host,
        };
        let err =
            RateLimit::compile(&config, "r", "routes[1].rate_limit", clock.clone()).unwrap_err();
        assert_eq!(err.key, "routes[1].rate_limit.rate");
        config.rate = "5/s".into();
        config.key = "cookie".into();
        let err = RateLimit::compile(&config, "r", "routes[1].rate_limit", clock).unwrap_err();
        assert_eq!(err.key, "routes[1].rate_limit.key");
    }
}
