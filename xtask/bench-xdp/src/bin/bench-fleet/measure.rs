//! The measures: how long a ban made on host 0 takes to drop a packet at host 1, requests/s of
//! a fleet-scoped route against the same route scoped to the host, how many requests a
//! fleet-scoped limit admits across three hosts against the configured rate, a resync of many
//! bans, and the memory many bans and limit keys take in Redis and in the daemon.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{Ipv4Addr, SocketAddr},
    os::unix::net::UnixStream,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use api_shield::fastpath::{layout_dir, PinnedMaps, SystemClock};
use api_shield_common::Reason;

use crate::{
    fleet::{host_addr, Fleet, PORT},
    probe::probe_from,
};

/// The routes every host serves: the limits are high enough that the throughput runs see no
/// 429; `keys` keeps each client key for an hour (every request of the memory run is a new
/// key) and tracks up to 1 100 000 of them; `acc`'s limit is what the accuracy run measures.
pub const ROUTES: &str = r#"
[[routes]]
name = "fleet-scope"
path = "/api/v1/users/fleet"
upstream = "demo"
rate_limit = { rate = "1000000 per second", burst = 1000000, key = "header:x-tenant", scope = "fleet" }

[[routes]]
name = "host-scope"
path = "/api/v1/users/host"
upstream = "demo"
rate_limit = { rate = "1000000 per second", burst = 1000000, key = "header:x-tenant" }

[[routes]]
name = "keys"
path = "/api/v1/users/keys"
upstream = "demo"
rate_limit = { rate = "1 per hour", burst = 1, key = "header:x-tenant", scope = "fleet", max_keys = 1100000 }

[[routes]]
name = "accuracy"
path = "/api/v1/users/acc"
upstream = "demo"
rate_limit = { rate = "100 per second", burst = 100, key = "header:x-tenant", scope = "fleet" }
"#;

/// The accuracy route's rate and burst.
pub const ACC_RATE: f64 = 100.0;
pub const ACC_BURST: f64 = 100.0;

/// Bans `count` addresses through host 0's control socket, one at a time, each timed until
/// host 1's XDP program drops a packet from it: once the ban is answered, a UDP probe from the
/// banned address is sent to host 1 (to a port nothing protects, so only the ban can drop
/// it), then host 1's count of banned drops is read, again and again until it moves. A probe
/// costs about one read of the counters, so the figure is late by at most that much.
pub fn propagation(fleet: &Fleet, count: usize) -> Result<Vec<Duration>> {
    let pins = layout_dir(&fleet.hosts[1].pins);
    let control = fleet.hosts[0].socket.clone();
    let target = SocketAddr::new(host_addr(1).parse()?, PROBE_PORT);
    fleet.in_client(move || {
        let b = PinnedMaps::open(&pins)?;
        let mut times = Vec::with_capacity(count);
        for i in 0..count {
            let source = Ipv4Addr::new(10, 214, (i / 250) as u8, (i % 250 + 1) as u8);
            let probe = probe_from(source)?;
            let before = b.stats()?.packets(Reason::DropBanned);
            let started = Instant::now();
            let mut socket = UnixStream::connect(&control)?;
            writeln!(
                socket,
                r#"{{"version":1,"command":"ban","target":"{source}/32","ttl_secs":600,"reason":"bench"}}"#
            )?;
            let mut reply = String::new();
            BufReader::new(&socket).read_line(&mut reply)?;
            if !reply.contains("\"banned\"") {
                bail!("the ban was refused: {reply}");
            }
            let mut probes = 0u32;
            loop {
                probe.send_to(b"api-shield bench-fleet probe", target)?;
                probes += 1;
                if b.stats()?.packets(Reason::DropBanned) > before {
                    break;
                }
                if started.elapsed() > Duration::from_secs(5) {
                    bail!("no packet from {source} was dropped at host 1 after {probes} probes");
                }
            }
            times.push(started.elapsed());
        }
        Ok(times)
    })
}

/// Where the probes go: a UDP port no host protects.
const PROBE_PORT: u16 = 9;

/// What one wrk run counted.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub rps: f64,
    pub requests: u64,
    pub refused: u64,
}

/// `wrk -t1 -cN -dNs -H 'x-tenant: bench'` against `url`, from the current namespace.
fn wrk(url: &str, seconds: u32, connections: u32) -> Result<Load> {
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "-H",
            "x-tenant: bench",
            url,
        ])
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("no Requests/sec in wrk output:\n{text}"))?;
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .with_context(|| format!("no request count in wrk output:\n{text}"))?;
    let refused = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .map_or(Ok(0), |v| v.trim().parse())?;
    if text.contains("Socket errors") {
        bail!("wrk saw socket errors against {url}:\n{text}");
    }
    Ok(Load {
        rps,
        requests,
        refused,
    })
}

/// Requests/s on host 0, fleet scope then host scope, per round.
pub fn throughput(fleet: &Fleet, rounds: u32, seconds: u32) -> Result<Vec<(f64, f64)>> {
    let mut results = Vec::new();
    for round in 0..rounds {
        let mut pair = [0.0; 2];
        // Alternate which goes first.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let path = ["fleet", "host"][which];
            let url = format!("https://{}:{PORT}/api/v1/users/{path}", host_addr(0));
            let load = fleet.in_client(move || wrk(&url, seconds, 20))?;
            if load.refused > 0 {
                bail!("the {path} route refused {} requests", load.refused);
            }
            pair[which] = load.rps;
        }
        eprintln!(
            "round {}: fleet scope {:.0} req/s, host scope {:.0} req/s",
            round + 1,
            pair[0],
            pair[1]
        );
        results.push((pair[0], pair[1]));
    }
    Ok(results)
}

/// Requests admitted by the accuracy route across every host in `seconds`, with a wrk on
/// each; (admitted, sent).
pub fn accuracy(fleet: &Fleet, seconds: u32) -> Result<(u64, u64)> {
    let runs: Vec<_> = (0..fleet.hosts.len())
        .map(|k| {
            let client = fleet.client.clone();
            std::thread::spawn(move || -> Result<Load> {
                let file = std::fs::File::open(format!("/run/netns/{client}"))?;
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)?;
                let url = format!("https://{}:{PORT}/api/v1/users/acc", host_addr(k));
                wrk(&url, seconds, 2)
            })
        })
        .collect();
    let (mut admitted, mut sent) = (0, 0);
    for run in runs {
        let load = run.join().expect("a wrk thread")?;
        admitted += load.requests - load.refused;
        sent += load.requests;
    }
    Ok((admitted, sent))
}

/// Writes `count` fleet bans straight into Redis (one script, ending in ten minutes), makes
/// every host resync (their subscriptions are closed, so each reconnects and reads the
/// stored bans in full), and times how long host 1 takes until its kernel map holds them all.
pub fn resync(fleet: &Fleet, count: usize) -> Result<Duration> {
    const SEED: &str = r#"
local n = tonumber(ARGV[1])
local ends = ARGV[2]
for i = 0, n - 1 do
  local net = string.format('10.%d.%d.%d/32', 100 + math.floor(i / 65536), math.floor(i / 256) % 256, i % 256)
  redis.call('HSET', KEYS[1], net, '{"reason":"bench","host":"seed","created_ms":1,"expires_ms":' .. ends .. '}')
  redis.call('ZADD', KEYS[2], ends, net)
end
return n
"#;
    let ends = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis()
        + 600_000;
    let seeded = fleet.redis_cli(&[
        "EVAL",
        SEED,
        "2",
        "api-shield:{bench}:bans",
        "api-shield:{bench}:bans:expiry",
        &count.to_string(),
        &ends.to_string(),
    ])?;
    if seeded.trim() != count.to_string() {
        bail!("seeding Redis answered {seeded}");
    }
    let b = PinnedMaps::open(&layout_dir(&fleet.hosts[1].pins))?;
    let before = b.ban_entries(&SystemClock)?.len();
    let started = Instant::now();
    fleet.redis_cli(&["CLIENT", "KILL", "TYPE", "pubsub"])?;
    while b.ban_entries(&SystemClock)?.len() < before + count {
        if started.elapsed() > Duration::from_mins(5) {
            bail!("host 1 never held the {count} seeded bans");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(started.elapsed())
}

/// What holding many fleet-scoped limit keys costs.
pub struct KeysMemory {
    /// Requests sent (one new key each).
    pub requests: u64,
    /// Requests admitted: keys made.
    pub admitted: u64,
    /// Keys Redis holds for them.
    pub redis_keys: u64,
    /// Redis's `used_memory` growth, bytes.
    pub redis_bytes: u64,
    /// Host 0's RSS before and after, bytes.
    pub rss_before: u64,
    pub rss_after: u64,
}

/// Sends `count` requests to host 0's `keys` route, each with a client key never seen
/// before (wrk with a script, in runs of ten seconds until `count` are sent), so host 0 tracks
/// and shares that many keys, each kept for an hour by the route's rate; then what Redis and
/// host 0 hold for them.
pub fn limit_keys(fleet: &Fleet, count: u64) -> Result<KeysMemory> {
    const SCRIPT: &str = r#"
local n = 0
function init(args) n = tonumber(args[1]) end
function request()
  n = n + 1
  return wrk.format("GET", "/api/v1/users/keys", { ["x-tenant"] = "key-" .. n })
end
"#;
    let script = std::env::temp_dir().join(format!("bench-fleet-keys-{}.lua", std::process::id()));
    std::fs::write(&script, SCRIPT)?;
    let dbsize = || -> Result<u64> {
        fleet
            .redis_cli(&["DBSIZE"])?
            .trim()
            .parse()
            .context("DBSIZE")
    };
    let (keys_before, redis_before) = (dbsize()?, fleet.redis_memory()?);
    let rss_before = crate::fleet::rss(fleet.hosts[0].pid)?;
    let url = format!("https://{}:{PORT}/api/v1/users/keys", host_addr(0));
    let (mut sent, mut admitted) = (0u64, 0u64);
    // Runs of ten seconds, the last one cut to what is left at the rate seen so far (the route
    // tracks 1 100 000 keys: an overshoot past that would be refused).
    let mut seconds = 10;
    while sent < count {
        let (url, script) = (url.clone(), script.clone());
        let out = fleet.in_client(move || {
            Command::new("wrk")
                .args(["-t1", "-c20", &format!("-d{seconds}s"), "-s"])
                .arg(&script)
                .arg(&url)
                .arg("--")
                .arg(sent.to_string())
                .output()
        })?;
        let text = String::from_utf8_lossy(&out.stdout);
        let requests: u64 = text
            .lines()
            .find_map(|l| l.trim().split_once(" requests in "))
            .and_then(|(n, _)| n.trim().parse().ok())
            .with_context(|| format!("no request count in wrk output:\n{text}"))?;
        // A request wrk resends after a reconnect reuses its key and is refused: a handful.
        let refused: u64 = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
            .map_or(Ok(0), |v| v.trim().parse())?;
        if text.contains("Socket errors") || refused * 1000 > requests {
            bail!("the keys route refused or failed requests:\n{text}");
        }
        let rate = requests / seconds;
        sent += requests;
        admitted += requests - refused;
        seconds = (count.saturating_sub(sent))
            .div_ceil(rate.max(1))
            .clamp(1, 10);
        eprintln!("limit keys: {sent} requests sent");
    }
    std::fs::remove_file(&script)?;
    // The link shares what it admitted every 50 ms: wait until Redis holds every key.
    let deadline = Instant::now() + Duration::from_secs(30);
    while dbsize()? < keys_before + admitted {
        if Instant::now() > deadline {
            bail!("Redis holds {} keys of {admitted}", dbsize()? - keys_before);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(KeysMemory {
        requests: sent,
        admitted,
        redis_keys: dbsize()? - keys_before,
        redis_bytes: fleet.redis_memory()?.saturating_sub(redis_before),
        rss_before,
        rss_after: crate::fleet::rss(fleet.hosts[0].pid)?,
    })
}
