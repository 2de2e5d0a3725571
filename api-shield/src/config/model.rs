//! The typed configuration and its defaults (the only place defaults are written).

use std::{path::PathBuf, time::Duration};

use ipnet::IpNet;

use crate::telemetry::LogFormat;
use serde::{Deserialize, Deserializer};

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The XDP fast path.
    #[serde(default)]
    pub fastpath: FastpathConfig,
    /// HTTPS listeners.
    #[serde(default)]
    pub listeners: Vec<super::ListenerConfig>,
    /// Upstreams routes forward to.
    #[serde(default)]
    pub upstreams: Vec<super::UpstreamConfig>,
    /// Routes, tried in order.
    #[serde(default)]
    pub routes: Vec<super::RouteConfig>,
    /// Settings for every listener and route.
    #[serde(default)]
    pub proxy: super::ProxyConfig,
    /// Bearer token issuers.
    #[serde(default)]
    pub issuers: Vec<super::IssuerConfig>,
    /// API keys.
    #[serde(default)]
    pub api_keys: super::ApiKeysConfig,
    /// API versions and their deprecation.
    #[serde(default)]
    pub versioning: super::VersioningConfig,
    /// Routes imported from OpenAPI documents.
    #[serde(default)]
    pub openapi: Vec<super::OpenApiConfig>,
    /// L7 abuse to kernel bans.
    #[serde(default)]
    pub escalation: super::EscalationConfig,
    /// The admin listener (`/metrics`, `/healthz`, `/readyz`).
    #[serde(default)]
    pub admin: AdminConfig,
    /// The control socket the CLI talks to.
    #[serde(default)]
    pub control: ControlConfig,
    /// The access log: where, in which format, how buffered.
    #[serde(default)]
    pub access_log: AccessLogConfig,
    /// Several shields sharing bans through Redis (off without the table).
    #[serde(default)]
    pub fleet: Option<super::FleetConfig>,
    /// This daemon as a bouncer of a CrowdSec Local API (off without the table).
    #[serde(default)]
    pub crowdsec: Option<super::CrowdsecConfig>,
    /// Lists of networks dropped at the NIC, from files or URLs.
    #[serde(default)]
    pub blocklists: Vec<super::BlocklistConfig>,
    /// The file and text this config was read from.
    #[serde(skip)]
    pub source: super::Source,
}

/// How the program is attached to an interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeSetting {
    /// Driver (native) mode, falling back to generic mode with a log line.
    #[default]
    Auto,
    /// Driver mode or fail.
    Driver,
    /// Generic (skb) mode.
    Generic,
}

/// The `[fastpath]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FastpathConfig {
    /// Load and attach the program at all.
    pub enabled: bool,
    /// Interfaces to attach to.
    pub interfaces: Vec<String>,
    /// Attach mode.
    pub mode: XdpModeSetting,
    /// Count what would be dropped, drop nothing.
    pub dry_run: bool,
    /// Leave the program attached (through its pinned link) when the daemon stops.
    pub keep_attached: bool,
    /// bpffs directory for pinned maps and links (a layout version is appended).
    pub pin_dir: PathBuf,
    /// Directory for the runtime status file.
    pub runtime_dir: PathBuf,
    /// Sources that always pass (CIDR or address).
    pub allow: Vec<IpNet>,
    /// Sources that are always dropped.
    pub deny: Vec<IpNet>,
    /// How broad bans and deny rules may be.
    pub guard: super::GuardRails,
    /// Bans the kernel map holds at most (fixed when the map is first created).
    pub max_bans: u32,
    /// Entries the kernel's allow table holds at most (fixed when the map is first created).
    pub max_allow: u32,
    /// Entries the kernel's deny table holds at most (fixed when the map is first created).
    pub max_deny: u32,
    /// The per-source limiter.
    pub limiter: LimiterConfig,
    /// Drop events.
    pub events: EventsConfig,
}

impl Default for FastpathConfig {
    fn default() -> Self {
        FastpathConfig {
            enabled: true,
            interfaces: vec!["lo".to_owned()],
            mode: XdpModeSetting::Auto,
            dry_run: false,
            keep_attached: false,
            pin_dir: PathBuf::from("/sys/fs/bpf/api-shield"),
            runtime_dir: PathBuf::from("/run/api-shield"),
            allow: Vec::new(),
            deny: Vec::new(),
            guard: super::GuardRails::default(),
            max_bans: api_shield_common::maps::BAN_ENTRIES,
            max_allow: api_shield_common::maps::RULE_ENTRIES,
            max_deny: api_shield_common::maps::RULE_ENTRIES,
            limiter: LimiterConfig::default(),
            events: EventsConfig::default(),
        }
    }
}

/// The `[fastpath.limiter]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimiterConfig {
    /// Packets per second one source may send to protected ports.
    pub rate: u32,
    /// Packets a source may send at once above its rate.
    pub burst: u32,
    /// IPv6 sources are grouped by this prefix length.
    pub ipv6_prefix: u8,
    /// What the limiter applies to.
    pub protect: ProtectConfig,
    /// Sources tracked at once (size of the LRU map, fixed when the map is first created).
    pub max_sources: u32,
    /// New sources each CPU may start tracking per second.
    pub new_sources_per_cpu: u32,
    /// Packets per second shared by all sources that could not be tracked, per class of packet
    /// (bare TCP SYNs; everything else).
    pub untracked_rate: u32,
    /// Burst of each shared untracked budget.
    pub untracked_burst: u32,
    /// A SYN from a source that has never completed a handshake is answered with a SYN cookie
    /// from the NIC when the kernel would answer it with one (its SYN queue for the port is
    /// full), instead of passed to the stack or, over the untracked budget, dropped.
    pub syn_cookies: bool,
    /// Which clock the program reads per packet.
    pub clock: ClockSetting,
}

/// The clock the XDP program reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockSetting {
    /// Monotonic time as of a recent kernel tick (`bpf_ktime_get_coarse_ns`, read once per tick
    /// per CPU; a load of jiffies per packet). Its error, at most two ticks (8 ms at HZ=250), is
    /// added to the limiter's tolerance, so a source may get up to `rate x 2 ticks` packets more
    /// at once; its long-run rate is unchanged.
    #[default]
    Coarse,
    /// Monotonic time to the nanosecond (`bpf_ktime_get_ns`): a TSC read per packet.
    Precise,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        LimiterConfig {
            rate: 1000,
            burst: 2000,
            ipv6_prefix: 64,
            protect: ProtectConfig::default(),
            max_sources: api_shield_common::maps::LIMITER_ENTRIES,
            new_sources_per_cpu: 20_000,
            untracked_rate: 20_000,
            untracked_burst: 40_000,
            syn_cookies: true,
            clock: ClockSetting::Coarse,
        }
    }
}

/// The `[fastpath.limiter.protect]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtectConfig {
    /// Every IP packet, whatever its protocol and port.
    pub all: bool,
    /// Protected TCP destination ports (numbers or `"8000-8100"`).
    pub tcp: Vec<PortSpec>,
    /// Protected UDP destination ports.
    pub udp: Vec<PortSpec>,
}

impl Default for ProtectConfig {
    fn default() -> Self {
        ProtectConfig {
            all: false,
            tcp: vec![PortSpec::single(443), PortSpec::single(8443)],
            udp: Vec::new(),
        }
    }
}

/// A port or an inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    /// First port.
    pub first: u16,
    /// Last port (equal to `first` for a single port).
    pub last: u16,
}

impl PortSpec {
    /// One port.
    pub const fn single(port: u16) -> PortSpec {
        PortSpec {
            first: port,
            last: port,
        }
    }
}

impl<'de> Deserialize<'de> for PortSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u16),
            Text(String),
        }
        let bad = |text: &str| {
            serde::de::Error::custom(format!(
                "`{text}` is not a port (1-65535) or a range like \"8000-8100\""
            ))
        };
        match Raw::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom("expected a port number or a \"first-last\" range")
        })? {
            Raw::Number(port) => Ok(PortSpec::single(port)),
            Raw::Text(text) => {
                let (first, last) = text.split_once('-').unwrap_or((&text, &text));
                let first = first.trim().parse().map_err(|_| bad(&text))?;
                let last = last.trim().parse().map_err(|_| bad(&text))?;
                Ok(PortSpec { first, last })
            }
        }
    }
}

/// The `[admin]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Serve it at all.
    pub enabled: bool,
    /// Address and port; loopback unless you mean to expose metrics.
    #[serde(deserialize_with = "super::typed::socket_addr")]
    pub bind: std::net::SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            bind: std::net::SocketAddr::from(([127, 0, 0, 1], 9901)),
        }
    }
}

/// The `[control]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Serve it at all (default true).
    pub disabled: bool,
    /// Its path (default `<fastpath.runtime_dir>/control.sock`); mode 0600, root only.
    pub socket: Option<PathBuf>,
}

impl Config {
    /// Where the control socket is.
    pub fn control_socket(&self) -> PathBuf {
        self.control
            .socket
            .clone()
            .unwrap_or_else(|| self.fastpath.runtime_dir.join("control.sock"))
    }
}

/// The `[access_log]` table, typed when parsed: a file sink without a path, a path given to
/// another sink, or a flush interval or buffer out of range is a config error at its key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawAccessLogConfig")]
pub struct AccessLogConfig {
    /// Where lines go.
    pub sink: AccessLogSink,
    /// `text` or `json`; by default the daemon's `--log-format`.
    pub format: Option<LogFormat>,
    /// Pending lines are written at least this often (10 ms to 1 s).
    pub flush_interval: Duration,
    /// At most this many bytes wait to be written; past it lines are dropped and counted.
    pub buffer_bytes: usize,
}

/// Where access-log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogSink {
    /// Standard error: the journal under systemd.
    Stderr,
    /// A file, appended to, reopened on SIGUSR1.
    File(PathBuf),
    /// Not written at all.
    Off,
}

/// Bounds of `access_log.flush_interval`.
const FLUSH_INTERVALS: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(10)..=Duration::from_secs(1);
/// Bounds of `access_log.buffer_bytes`.
const ACCESS_LOG_BUFFERS: std::ops::RangeInclusive<usize> = (64 * 1024)..=(1024 * 1024 * 1024);

impl Default for AccessLogConfig {
    fn default() -> Self {
        AccessLogConfig {
            sink: AccessLogSink::Stderr,
            format: None,
            flush_interval: Duration::from_millis(250),
            buffer_bytes: 4 * 1024 * 1024,
        }
    }
}

/// `[access_log]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccessLogConfig {
    #[serde(default = "default_sink")]
    sink: String,
    path: Option<PathBuf>,
    format: Option<LogFormat>,
    #[serde(default, deserialize_with = "optional_duration")]
    flush_interval: Option<Duration>,
    buffer_bytes: Option<usize>,
}

fn default_sink() -> String {
    "stderr".to_owned()
}

impl TryFrom<RawAccessLogConfig> for AccessLogConfig {
    type Error = String;

    fn try_from(raw: RawAccessLogConfig) -> Result<Self, String> {
        let defaults = AccessLogConfig::default();
        let sink = match (raw.sink.as_str(), raw.path) {
            ("file", Some(path)) if path.is_absolute() => AccessLogSink::File(path),
            ("file", Some(path)) => {
                return Err(format!(
                    "access_log.path: `{}` must be an absolute path",
                    path.display()
                ))
            }
            ("file", None) => {
                return Err("access_log.path: `sink = \"file\"` needs a path".to_owned())
            }
            ("stderr" | "off", Some(_)) => {
                return Err("access_log.path: only `sink = \"file\"` takes a path".to_owned())
            }
            ("stderr", None) => AccessLogSink::Stderr,
            ("off", None) => AccessLogSink::Off,
            (other, _) => {
                return Err(format!(
                    "access_log.sink: `{other}` is not a sink; use \"stderr\", \"file\" or \"off\""
                ))
            }
        };
        let flush_interval = raw.flush_interval.unwrap_or(defaults.flush_interval);
        if !FLUSH_INTERVALS.contains(&flush_interval) {
            return Err("access_log.flush_interval: must be between 10ms and 1s".to_owned());
        }
        let buffer_bytes = raw.buffer_bytes.unwrap_or(defaults.buffer_bytes);
        if !ACCESS_LOG_BUFFERS.contains(&buffer_bytes) {
            return Err(
                "access_log.buffer_bytes: must be between 65536 (64 KiB) and 1073741824 (1 GiB)"
                    .to_owned(),
            );
        }
        Ok(AccessLogConfig {
            sink,
            format: raw.format,
            flush_interval,
            buffer_bytes,
        })
    }
}

/// The `[fastpath.events]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// At most one drop event per source (or ban/deny entry) per interval, e.g. `"10s"`.
    #[serde(deserialize_with = "duration")]
    pub interval: Duration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            interval: Duration::from_secs(10),
        }
    }
}

/// [`duration`] for an optional key.
pub(super) fn optional_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

/// Deserializes a human duration such as `"15m"`, `"1h 30m"` or `"500ms"`.
pub(super) fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{text}` is not a duration ({e}); use e.g. \"15m\""
        ))
    })
}
