//! bench-lists: what large deny lists cost. Three instances of api-shield's XDP program are
//! loaded side by side (not attached), each with its own pinned maps: a deny table with 0
//! entries, one with 10 000 and one with 1 000 000 random IPv4 /32s (plus, in a second pass,
//! the same counts of random /24s). Then:
//!
//! - **Load, update and memory**: the time `DenyTable::replace` takes to write each table (the
//!   daemon's path for a blocklist, after reading it), the time reading the 1 000 000-line
//!   text takes (`blocklists::parse`), the time a 1 % change takes as a diff, and the kernel's
//!   own account of the table's memory (`memlock` in the fdinfo of `DENY` and `DENY_EXACT`:
//!   single addresses go to the hash, networks to the trie).
//! - **Per-packet cost**: `BPF_PROG_TEST_RUN` with `repeat` on one frame, for a source in no
//!   list (what every legitimate packet pays: the deny lookup misses) and for a listed source
//!   (the deny drop), on each table, in rounds that rotate the order; ratios against the empty
//!   table of the same round, medians over rounds.
//!
//! Run it with `cargo xtask bench-lists` (as root).

#[path = "../generator.rs"]
#[allow(dead_code)]
mod generator;
#[path = "../micro.rs"]
mod micro;
#[path = "../nets.rs"]
mod nets;
// The generator's frame builder needs its addresses.
#[allow(dead_code)]
#[path = "../topology.rs"]
mod topology;

use std::{
    collections::HashSet,
    fmt::Write as _,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{bail, Context as _, Result};
use api_shield::{
    config,
    fastpath::{self, apply_config, layout_dir, DenyTable, PinnedMaps, RuleKey},
};
use aya::{maps::MapData, Ebpf};
use clap::Parser;
use ipnet::{IpNet, Ipv4Net};

/// Options.
#[derive(Parser, Debug)]
#[command(name = "bench-lists")]
struct Args {
    /// Rounds of per-packet measurements per table.
    #[arg(long, default_value_t = 7)]
    rounds: u32,
    /// Markdown report written here too.
    #[arg(long, default_value = "target/bench-lists.md")]
    output: PathBuf,
}

/// Table sizes measured.
const SIZES: [usize; 3] = [0, 10_000, 1_000_000];
/// The source that every table lists (and the one in no table).
const LISTED: [u8; 4] = [198, 18, 0, 1];
const UNLISTED: [u8; 4] = [198, 19, 0, 1];

/// One loaded program with its own pinned maps.
struct Instance {
    ebpf: Ebpf,
    pin_dir: PathBuf,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.pin_dir);
    }
}

fn load(tag: &str, max_deny: usize) -> Result<(Instance, DenyTable)> {
    let pin_dir = PathBuf::from(format!(
        "/sys/fs/bpf/asx-lists-{}-{tag}",
        std::process::id()
    ));
    let text = format!(
        "[fastpath]\ninterfaces = [\"lo\"]\npin_dir = \"{}\"\nmax_deny = {}\n",
        pin_dir.display(),
        max_deny.max(1024)
    );
    let config = config::parse(&text, Path::new("bench.toml"))?;
    let dir = layout_dir(&pin_dir);
    let ebpf = fastpath::load_program(&dir, &config.fastpath)?;
    let mut maps = PinnedMaps::open(&dir)?;
    apply_config(&mut maps, &config.fastpath)?;
    let table = DenyTable::open(&dir, config.fastpath.max_deny)?;
    Ok((Instance { ebpf, pin_dir }, table))
}

/// `count` distinct random networks of prefix `len` away from 198.18.0.0/15 (where `LISTED`
/// and `UNLISTED` are), `LISTED` first.
fn random_networks(count: usize, len: u8, seed: u64) -> Vec<IpNet> {
    let free = Ipv4Net::new(Ipv4Addr::new(198, 18, 0, 0), 15).expect("a valid network");
    let mut nets = vec![IpNet::V4(
        Ipv4Net::new(Ipv4Addr::from(LISTED), 32).expect("a valid network"),
    )];
    nets.extend(nets::random_networks(count, len, seed, free));
    nets
}

/// The kernel's account of a map's memory (`memlock` in its fdinfo).
fn kernel_bytes(pin: &Path) -> Result<u64> {
    use std::os::fd::{AsFd as _, AsRawFd as _};
    let data = MapData::from_pin(pin)?;
    let fd = data.fd().as_fd().as_raw_fd();
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))?;
    info.lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .context("no memlock line")?
        .trim()
        .parse()
        .context("memlock")
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

struct Loaded {
    entries: usize,
    instance: Instance,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !nix::unistd::geteuid().is_root() {
        bail!("bench-lists needs root (BPF)");
    }
    let mut report = String::new();
    writeln!(report, "# bench-lists\n")?;
    writeln!(
        report,
        "`cargo xtask bench-lists -- --rounds {}`\n",
        args.rounds
    )?;
    let src_mac = [2, 0, 0, 0, 0, 1];
    let dst_mac = [2, 0, 0, 0, 0, 2];
    let listed = generator::udp_frame(src_mac, dst_mac, LISTED);
    let unlisted = generator::udp_frame(src_mac, dst_mac, UNLISTED);

    // Reading a 1 000 000-line list.
    let nets = random_networks(1_000_000, 32, 0x5eed);
    let text = nets.iter().fold(String::new(), |mut text, n| {
        let _ = writeln!(text, "{}", n.addr());
        text
    });
    let started = Instant::now();
    let parsed =
        api_shield::blocklists::parse::parse(text.as_bytes(), config::GuardRails::default(), &[]);
    let parse_ms = started.elapsed().as_secs_f64() * 1e3;
    eprintln!(
        "read {} lines into {} entries in {parse_ms:.0} ms",
        nets.len(),
        parsed.entries.len()
    );
    writeln!(
        report,
        "Reading a 1 000 001-line list (`blocklists::parse`, guard rails included): {parse_ms:.0} ms.\n"
    )?;

    for len in [32u8, 24] {
        measure_tables(len, args.rounds, [&unlisted, &listed], &mut report)?;
    }
    println!("{report}");
    if let Some(dir) = args.output.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.output, &report)?;
    eprintln!("report written to {}", args.output.display());
    Ok(())
}

/// Loads tables of every size with random /`len` entries, times their load and a 1 % update,
/// reads their kernel memory, and measures the per-packet cost on each, into `report`.
fn measure_tables(len: u8, rounds: u32, frames: [&[u8]; 2], report: &mut String) -> Result<()> {
    let [unlisted, listed] = frames;
    writeln!(report, "## Random /{len} entries\n")?;
    writeln!(
        report,
        "| entries | load (replace) | 1 % update (diff) | kernel memory (memlock) | bytes per entry |\n|---|---|---|---|---|"
    )?;
    let mut loaded = Vec::new();
    for size in SIZES {
        let (instance, mut table) = load(&format!("{len}-{size}"), size + size / 10 + 16)?;
        let nets = random_networks(size, len, 0x5eed ^ size as u64 ^ u64::from(len));
        let keys: HashSet<RuleKey> = nets.iter().map(RuleKey::of).collect();
        let started = Instant::now();
        table.replace(1, &keys)?;
        let load_ms = started.elapsed().as_secs_f64() * 1e3;
        let updated = one_percent_changed(&nets, len, keys.len());
        let started = Instant::now();
        let done = table.replace(1, &updated)?;
        let update_ms = started.elapsed().as_secs_f64() * 1e3;
        let layout = layout_dir(&instance.pin_dir);
        let memory =
            kernel_bytes(&layout.join("DENY"))? + kernel_bytes(&layout.join("DENY_EXACT"))?;
        let per_entry = if table.is_empty() {
            0.0
        } else {
            memory as f64 / table.len() as f64
        };
        eprintln!(
            "/{len} x {size}: load {load_ms:.0} ms, update ({} in, {} out) {update_ms:.0} ms, memlock {memory} B",
            done.inserted, done.deleted
        );
        writeln!(
            report,
            "| {} | {load_ms:.0} ms | {update_ms:.0} ms ({} inserted, {} deleted) | {:.1} MiB | {per_entry:.0} |",
            table.len(),
            done.inserted,
            done.deleted,
            memory as f64 / f64::from(1 << 20)
        )?;
        loaded.push(Loaded {
            entries: table.len(),
            instance,
        });
    }
    writeln!(report)?;
    // Per-packet cost, rounds rotating the order of the tables.
    let mut costs: Vec<[Vec<f64>; 2]> = (0..loaded.len())
        .map(|_| [Vec::new(), Vec::new()])
        .collect();
    let mut raw: Vec<[Vec<f64>; 2]> = (0..loaded.len())
        .map(|_| [Vec::new(), Vec::new()])
        .collect();
    let mut order: Vec<usize> = (0..loaded.len()).collect();
    for round in 0..rounds {
        if round > 0 {
            order.rotate_left(1);
        }
        let mut this_round = vec![[0.0f64; 2]; loaded.len()];
        for &i in &order {
            let ebpf = &loaded[i].instance.ebpf;
            this_round[i] = [
                micro::ns_per_run(ebpf, unlisted)?,
                micro::ns_per_run(ebpf, listed)?,
            ];
        }
        for (i, pair) in this_round.iter().enumerate() {
            for path in 0..2 {
                costs[i][path].push(pair[path] / this_round[0][path].max(0.1));
                raw[i][path].push(pair[path]);
            }
        }
        eprintln!("/{len} round {round}: {this_round:?} ns (unlisted, listed)");
    }
    writeln!(
        report,
        "| entries | source in no list: ns, ÷ 1-entry table (min–max) | listed source (deny drop): ns, ÷ 1-entry table (min–max) |\n|---|---|---|"
    )?;
    for (i, l) in loaded.iter().enumerate() {
        let [miss, hit] = &mut costs[i];
        let (miss_min, miss_max) = min_max(miss);
        let (hit_min, hit_max) = min_max(hit);
        let [miss_ns, hit_ns] = &mut raw[i];
        writeln!(
            report,
            "| {} | {:.1}, {:.2}x ({miss_min:.2}–{miss_max:.2}) | {:.1}, {:.2}x ({hit_min:.2}–{hit_max:.2}) |",
            l.entries,
            median(miss_ns),
            median(miss),
            median(hit_ns),
            median(hit)
        )?;
    }
    writeln!(report)?;
    Ok(())
}

/// `nets` with its first hundredth after `LISTED` (which stays) replaced by as many new
/// networks: `count` entries again.
fn one_percent_changed(nets: &[IpNet], len: u8, count: usize) -> HashSet<RuleKey> {
    let churn = (nets.len() - 1) / 100;
    let mut updated: HashSet<RuleKey> = std::iter::once(&nets[0])
        .chain(&nets[1 + churn..])
        .map(RuleKey::of)
        .collect();
    let fresh = random_networks(nets.len() - 1 + churn, len, 0xf00d ^ nets.len() as u64);
    for net in fresh.iter().skip(1) {
        if updated.len() >= count {
            break;
        }
        updated.insert(RuleKey::of(net));
    }
    updated
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)))
}
