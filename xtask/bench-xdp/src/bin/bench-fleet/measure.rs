//! The three measures: how long a ban made on host 0 takes to be in host 1's kernel ban map
//! (where its XDP program reads it for the next packet), requests/s of a fleet-scoped route
//! against the same route scoped to the host, and how many requests a fleet-scoped limit admits
//! across three hosts against the configured rate.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use api_shield::fastpath::{layout_dir, PinnedMaps, SystemClock};

use crate::fleet::{host_addr, Fleet, PORT};

/// The routes every host serves: the limits are high enough that the throughput runs see no
/// 429, except `acc`, whose limit the accuracy run measures.
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
name = "accuracy"
path = "/api/v1/users/acc"
upstream = "demo"
rate_limit = { rate = "100 per second", burst = 100, key = "header:x-tenant", scope = "fleet" }
"#;

/// The accuracy route's rate and burst.
pub const ACC_RATE: f64 = 100.0;
pub const ACC_BURST: f64 = 100.0;

/// Bans `count` addresses through host 0's control socket, one at a time, each timed until
/// host 1's kernel map holds it.
pub fn propagation(fleet: &Fleet, count: usize) -> Result<Vec<Duration>> {
    let b = PinnedMaps::open(&layout_dir(&fleet.hosts[1].pins))?;
    let mut times = Vec::with_capacity(count);
    for i in 0..count {
        let target: ipnet::IpNet = format!("10.214.{}.{}/32", i / 250, i % 250 + 1).parse()?;
        let started = Instant::now();
        let mut socket = UnixStream::connect(&fleet.hosts[0].socket)?;
        writeln!(
            socket,
            r#"{{"version":1,"command":"ban","target":"{target}","ttl_secs":600,"reason":"bench"}}"#
        )?;
        let mut reply = String::new();
        BufReader::new(&socket).read_line(&mut reply)?;
        if !reply.contains("\"banned\"") {
            bail!("the ban was refused: {reply}");
        }
        while b.ban_entry(&target, &SystemClock)?.is_none() {
            if started.elapsed() > Duration::from_secs(5) {
                bail!("{target} never reached host 1");
            }
            std::hint::spin_loop();
        }
        times.push(started.elapsed());
    }
    Ok(times)
}

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

/// Redis's memory for `count` fleet-scoped limit keys (written straight in, as the link
/// writes them); the bytes they add.
pub fn limit_keys_memory(fleet: &Fleet, count: usize) -> Result<u64> {
    const SEED: &str = r"
for i = 0, tonumber(ARGV[1]) - 1 do
  redis.call('SET', 'api-shield:{bench}:rl:bench:ip:10.' .. i, '1765000000000000', 'PX', 600000)
end
return 1
";
    let before = fleet.redis_memory()?;
    fleet.redis_cli(&["EVAL", SEED, "0", &count.to_string()])?;
    Ok(fleet.redis_memory()?.saturating_sub(before))
}
