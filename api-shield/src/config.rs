//! The daemon's configuration: TOML, parsed by serde (`deny_unknown_fields`), then validated.
//!
//! `parse` is pure (text in, typed config or an error naming line and key out), `load` reads a
//! file, and `validate` checks what types cannot. Defaults live in `model` only.

mod blocklist_model;
mod crowdsec_model;
mod error;
mod fleet_model;
mod guard_rails;
mod load;
mod locate;
mod model;
mod parse;
mod policy_model;
mod proxy_model;
mod restart;
mod source;
mod typed;
pub(crate) mod validate;
mod validate_policy;
mod validate_proxy;

pub use blocklist_model::{check_list_name, BlocklistConfig, ListSource};
pub use crowdsec_model::{CrowdsecConfig, ReportAs};
pub use error::ConfigError;
pub use fleet_model::{check_host_name, FleetConfig, Secret, MAX_HOST_LEN};
pub use guard_rails::{covers, exact, parse_network, GuardError, GuardRails};
pub use load::{check_host, crowdsec_secrets, fleet_host, load, FleetHost, Password};
pub use model::{
    AccessLogConfig, AccessLogSink, AdminConfig, ClockSetting, Config, ControlConfig, EventsConfig,
    FastpathConfig, LimiterConfig, PortSpec, ProtectConfig, XdpModeSetting,
};
pub use parse::parse;
pub use policy_model::{
    AfterSunset, ApiKeyEntry, ApiKeysConfig, DeprecationConfig, EscalationConfig, EscalationRule,
    EscalationSignal, IssuerConfig, OpenApiConfig, RateLimitConfig, RateScope, RouteAuthConfig,
    ScopesMatch, ValidateConfig, VersionConfig, VersionSource, VersioningConfig,
};
pub use proxy_model::{
    CertificateConfig, CorsConfig, HstsConfig, ListenerConfig, ProxyConfig, RedirectConfig,
    RouteConfig, TlsConfig, UpstreamConfig, MAX_WORKERS,
};
pub use restart::pending_restart;
pub use source::Source;
pub use typed::{CipherSuite, TlsVersion, UpstreamUrl};
pub use validate::{problem, Problem};
