//! bench-flood: what an operator buys from the fast path, measured as legitimate service during
//! floods rather than as the cost of a drop. Two network namespaces joined by a veth (native
//! XDP), the release daemon in the receiver in front of an nginx upstream, with the shipped
//! limiter defaults (`rate = 1000`, `burst = 2000`; tcp/443 and udp/443 protected).
//!
//! Four states side by side: api-shield's fast path; a control with an XDP program attached
//! that passes everything (what the veth's XDP receive path costs before any program); a tuned
//! nftables ruleset (per-source SYN and UDP meters, the kernel's SYN cookies on) with the fast
//! path off; and no filter. Under each attack (none; SYN, ACK and UDP floods from random
//! sources; a SYN flood from one source; a botnet of 10 000 sources each under the per-source
//! rate), generated in the kernel (`BPF_PROG_TEST_RUN` live frames on CPU0; a packet socket in
//! user space where the kernel refuses live frames) at full speed and at fractions of it, it measures three legitimate loads at once: a keep-alive client (wrk, 10
//! connections), a NAT-like address (wrk, 200 connections from one source) and a stream of new
//! clients (a fresh TLS connection each, from addresses never seen before). It reports the flood
//! rate at which each state's keep-alive goodput halves.
//!
//! Run it with `cargo xtask bench-flood` (as root: installs nginx, wrk, curl and nftables if
//! missing).

#[path = "bench-flood/attack.rs"]
mod attack;
#[path = "../child_guard.rs"]
mod child_guard;
#[path = "bench-flood/cpu.rs"]
mod cpu;
#[allow(dead_code)]
#[path = "../generator.rs"]
mod generator;
#[path = "bench-flood/legit.rs"]
mod legit;
#[allow(dead_code)]
#[path = "../process_cpu.rs"]
mod process_cpu;
#[path = "bench-flood/receiver.rs"]
mod receiver;
#[path = "bench-flood/report.rs"]
mod report;
#[allow(dead_code)]
#[path = "../shield_cli.rs"]
mod shield_cli;
#[allow(dead_code)]
#[path = "../topology.rs"]
mod topology;

use std::{
    net::Ipv4Addr,
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use clap::{Parser, ValueEnum};

use crate::{
    attack::Attack,
    generator::Generator,
    legit::{new_addresses, new_clients, percentile, wrk},
    receiver::{PassControl, NFT_RULES, RX, RX_NAT},
    report::Cell,
    topology::Topology,
};

/// Options.
#[derive(Parser, Debug)]
#[command(name = "bench-flood")]
struct Args {
    /// Seconds of keep-alive load per cell.
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// New clients per cell (each from an address never seen before).
    #[arg(long, default_value_t = 30)]
    new_clients: u32,
    /// Flood rates, as shares of the generator's frames transmitted (1: all, full speed).
    #[arg(long, value_delimiter = ',', default_value = "1,0.5,0.25")]
    rates: Vec<f64>,
    /// Pin the receiver's NAPI kthread to this CPU in every cell (by default the scheduler
    /// places it; the generator holds CPU0).
    #[arg(long)]
    napi_cpu: Option<usize>,
    /// Leave the veths' NAPI kthreads at normal priority instead of `SCHED_FIFO` (where they
    /// wait behind the processes and their rings overflow at any flood rate).
    #[arg(long)]
    napi_normal_priority: bool,
    /// Leave TCP segmentation offload on at the sender: the states without XDP then get a
    /// receive path of their own for the clients' segments, apart from the flood (a veth's, no
    /// NIC's). Off by default, so every state shares one path as on a NIC.
    #[arg(long)]
    sender_tso: bool,
    /// Measure only the cells whose "attack / state" name contains this.
    #[arg(long)]
    only: Option<String>,
    /// What makes the flood: the XDP generator through live frames, a packet socket in user
    /// space, or live frames where the kernel allows them and the socket elsewhere.
    #[arg(long, value_enum, default_value_t = GeneratorChoice::Auto)]
    generator: GeneratorChoice,
    /// Markdown report written here too.
    #[arg(long, default_value = "target/bench-flood.md")]
    output: std::path::PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum GeneratorChoice {
    Auto,
    Live,
    Socket,
}

/// The generator's CPU (and the sender veth's NAPI, where the replies arrive); the receiver,
/// the daemon and the legitimate clients share the other.
const GENERATOR_CPU: usize = 0;

/// What filters the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Shield,
    XdpPass,
    Nftables,
    NoFilter,
    /// api-shield's state with the flood generated as in the others but sent into a veth pair
    /// of its own in the sender namespace, so none of it reaches the receiver: what the legitimate
    /// clients keep when the attacker's CPU is spent on this shared machine and the host pays
    /// nothing. No filter can do better on this machine (packet-socket generator only).
    Ceiling,
}

/// The veth in the sender namespace that the ceiling's flood is sent into (`attack::sink`).
const SINK: &str = "asx-sink";

impl State {
    const ALL: [State; 5] = [
        State::Shield,
        State::XdpPass,
        State::Nftables,
        State::NoFilter,
        State::Ceiling,
    ];

    fn name(self) -> &'static str {
        match self {
            State::Shield => "api-shield (XDP, default limiter)",
            State::XdpPass => "control: XDP attached, passing all",
            State::Nftables => "nftables (SYN meter), SYN cookies",
            State::NoFilter => "no filter (SYN cookies)",
            State::Ceiling => "ceiling: flood discarded at the sender",
        }
    }

    /// The state whose calm cell this state's figures are divided by: the ceiling has no calm
    /// of its own (with no flood it is api-shield's state).
    fn calm_of(self) -> State {
        match self {
            State::Ceiling => State::Shield,
            other => other,
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !nix::unistd::geteuid().is_root() {
        bail!("bench-flood needs root (network namespaces, XDP, nftables)");
    }
    if nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)?.unwrap_or(1) < 2 {
        bail!("bench-flood needs two CPUs: the generator on CPU0, the receiver on the other");
    }
    let dir = tempfile::tempdir()?;
    let topology = Topology::new()?;
    receiver::prepare(&topology, args.sender_tso)?;
    // Replies a receiver's XDP program sends back out of its veth (api-shield's SYN cookies,
    // XDP_TX) reach the sender only when the sender's veth has an XDP program of its own; a NIC
    // would put them on the wire. A pass-all program there, in every state, for the whole run.
    let _sender_pass = PassControl::attach_to(&topology.tx_ns, &topology.tx_if)?;
    receiver::pin_sender_napi(&topology, GENERATOR_CPU)?;
    let (cert, key) = receiver::certificate(dir.path())?;
    let _upstream = receiver::upstream(&topology.rx_ns, dir.path())?;
    let generator = choose_generator(&topology, args.generator)?;
    let full_pps = calibrate(&topology, generator)?;
    let generator = match generator {
        Generator::PacketSocket { .. } => Generator::PacketSocket { full_pps },
        Generator::LiveFrames => Generator::LiveFrames,
    };
    eprintln!(
        "generator: {}, {:.2} Mpps at full speed",
        generator.name(),
        full_pps / 1e6
    );
    let sink = match generator {
        Generator::PacketSocket { .. } => Some(attack::sink(&topology, SINK)?),
        Generator::LiveFrames => {
            eprintln!("ceiling: not measured (the live-frames generator sends on the veth only)");
            None
        }
    };
    let mut cells = Vec::new();
    let mut block = 100u8;
    for attack in Attack::ALL {
        let fractions = if attack == Attack::None {
            vec![0.0]
        } else {
            args.rates.clone()
        };
        for fraction in fractions {
            for state in State::ALL {
                if state == State::Ceiling && (attack == Attack::None || sink.is_none()) {
                    continue;
                }
                let name = format!("{} / {}", attack.name(), state.name());
                if args
                    .only
                    .as_ref()
                    .is_some_and(|only| !name.contains(only.as_str()) && attack != Attack::None)
                {
                    continue;
                }
                let clients = new_addresses(&topology, block, args.new_clients)?;
                block = block.wrapping_add(1);
                let cell = measure(
                    &topology,
                    dir.path(),
                    &cert,
                    &key,
                    &args,
                    attack,
                    fraction,
                    state,
                    &clients,
                    generator,
                    sink,
                )?;
                eprintln!(
                    "{:<28} {:>5} {:<36} keep-alive {:>6.0} req/s p99 {:>6.1} ms | NAT {:>6.0} req/s p99 {:>6.1} ms | new {}/{} p99 {:>6.1} ms | {:>5.0} kpps arrived, {} lost | CPU receiver {:.0} %, sender side {:.0} % | {}",
                    attack.name(),
                    fraction,
                    state.name(),
                    cell.keepalive.rps,
                    cell.keepalive.p99_ms,
                    cell.nat.rps,
                    cell.nat.p99_ms,
                    cell.new_ok,
                    cell.new_total,
                    cell.connect_p99_ms,
                    cell.arrived_pps / 1e3,
                    cell.lost_before,
                    cell.cpu.receiver * 100.0,
                    cell.cpu.sender * 100.0,
                    cell.xdp_drops,
                );
                cells.push(cell);
            }
        }
    }
    let command = command_line(&args);
    let text = report::render(&command, generator.name(), full_pps, &cells);
    println!("{text}");
    if let Some(parent) = args.output.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.output, text)?;
    Ok(())
}

/// The command that reproduces this run.
fn command_line(args: &Args) -> String {
    let rates: Vec<String> = args.rates.iter().map(f64::to_string).collect();
    let mut napi = args
        .napi_cpu
        .map(|cpu| format!(" --napi-cpu {cpu}"))
        .unwrap_or_default();
    if args.napi_normal_priority {
        napi.push_str(" --napi-normal-priority");
    }
    let chosen = match args.generator {
        GeneratorChoice::Auto => "",
        GeneratorChoice::Live => " --generator live",
        GeneratorChoice::Socket => " --generator socket",
    };
    format!(
        "cargo xtask bench-flood -- --seconds {} --new-clients {} --rates {}{napi}{chosen}",
        args.seconds,
        args.new_clients,
        rates.join(",")
    )
}

/// The generator `choice` names; `auto` takes live frames where the kernel allows them and says
/// loudly when it does not.
fn choose_generator(topology: &Topology, choice: GeneratorChoice) -> Result<Generator> {
    let socket = Generator::PacketSocket { full_pps: 0.0 };
    match choice {
        GeneratorChoice::Live => Ok(Generator::LiveFrames),
        GeneratorChoice::Socket => Ok(socket),
        GeneratorChoice::Auto => {
            let flood = Attack::UdpRandom
                .flood(topology, RX.parse()?, 1.0)
                .expect("an attack has a flood");
            if generator::live_frames_allowed(topology, flood)? {
                Ok(Generator::LiveFrames)
            } else {
                eprintln!(
                    "generator: THIS KERNEL REFUSES BPF_PROG_TEST_RUN LIVE FRAMES (EPERM); the \
                     flood comes from a packet socket in user space instead (slower; the report \
                     says so)"
                );
                Ok(socket)
            }
        }
    }
}

/// The generator's full speed: frames per second over one second of a random-source UDP flood,
/// with nothing but the kernel on the receiver.
fn calibrate(topology: &Topology, chosen: Generator) -> Result<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flood = Attack::UdpRandom
        .flood(topology, RX.parse()?, 1.0)
        .expect("an attack has a flood");
    let started = Instant::now();
    let generator = generator::start_flood(
        topology,
        flood,
        chosen,
        GENERATOR_CPU,
        Arc::clone(&stop),
        sent,
        Duration::from_secs(1),
    );
    let frames = generator
        .join()
        .map_err(|_| anyhow::anyhow!("the generator panicked"))??;
    Ok(frames as f64 / started.elapsed().as_secs_f64())
}

/// One state under one attack: the daemon (and the state's filter) set up, the flood started,
/// the three legitimate loads measured at once, everything stopped.
#[allow(clippy::too_many_arguments)]
fn measure(
    topology: &Topology,
    dir: &Path,
    cert: &Path,
    key: &Path,
    args: &Args,
    attack: Attack,
    fraction: f64,
    state: State,
    clients: &[String],
    chosen: Generator,
    sink: Option<u32>,
) -> Result<Cell> {
    let shielded = matches!(state, State::Shield | State::Ceiling);
    let shield = receiver::shield(topology, dir, cert, key, shielded)?;
    let control = match state {
        State::XdpPass => Some(PassControl::attach(topology)?),
        _ => None,
    };
    if state == State::Nftables {
        receiver::netns_exec_stdin(&topology.rx_ns, &["nft", "-f", "-"], NFT_RULES)?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let rx: Ipv4Addr = RX.parse()?;
    let mut generator = attack.flood(topology, rx, fraction).map(|mut flood| {
        if state == State::Ceiling {
            flood.interface = sink;
        }
        generator::start_flood(
            topology,
            flood,
            chosen,
            GENERATOR_CPU,
            Arc::clone(&stop),
            Arc::clone(&sent),
            Duration::from_mins(2),
        )
    });
    // Attaching a program restarts the veth's NAPI, and with it the kthread.
    if let Some(cpu) = args.napi_cpu {
        receiver::pin_napi(topology, cpu)?;
    }
    receiver::pin_sender_napi(topology, GENERATOR_CPU)?;
    if !args.napi_normal_priority {
        receiver::prioritise_napi(topology)?;
    }
    // Let the flood reach its rate before measuring.
    std::thread::sleep(Duration::from_secs(1));
    if generator
        .as_ref()
        .is_some_and(std::thread::JoinHandle::is_finished)
    {
        let ended = generator.take().expect("checked").join();
        bail!("the generator ended at once: {ended:?}");
    }
    let socket = matches!(chosen, Generator::PacketSocket { .. });
    let (packets_before, lost_before) = receiver::link_counters(topology, socket)?;
    let cpu_before = cpu::Sample::read(topology)?;
    let sent_before = sent.load(Ordering::Relaxed);
    let started = Instant::now();
    let (keepalive, nat, (new_ok, connects)) = std::thread::scope(|scope| {
        let keepalive = scope.spawn(|| wrk(&topology.tx_ns, RX, 10, args.seconds));
        let nat = scope.spawn(|| wrk(&topology.tx_ns, RX_NAT, 200, args.seconds));
        let fresh = scope.spawn(|| new_clients(&topology.tx_ns, clients, 10));
        let join = |name: &str| anyhow::anyhow!("the {name} thread panicked");
        Ok::<_, anyhow::Error>((
            keepalive.join().map_err(|_| join("keep-alive"))??,
            nat.join().map_err(|_| join("NAT-like"))??,
            fresh.join().map_err(|_| join("new-client"))??,
        ))
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let (packets_after, lost_after) = receiver::link_counters(topology, socket)?;
    let cpu = cpu::Sample::read(topology)?.shares_since(cpu_before, elapsed);
    // The packet socket counts each frame it sends; the live-frames generator counts the frames
    // it made, a share of which it drops itself, in steps of a million.
    let sent_pps = socket.then(|| (sent.load(Ordering::Relaxed) - sent_before) as f64 / elapsed);
    stop.store(true, Ordering::Relaxed);
    if let Some(generator) = generator {
        generator
            .join()
            .map_err(|_| anyhow::anyhow!("the generator panicked"))??;
    }
    let xdp_drops = if shielded {
        receiver::xdp_drops(&shield.config)?
    } else {
        "-".to_owned()
    };
    if state == State::Nftables {
        receiver::netns_exec(
            &topology.rx_ns,
            &["nft", "delete", "table", "inet", "asx_flood"],
        )?;
    }
    drop(control);
    drop(shield);
    Ok(Cell {
        attack,
        fraction,
        state,
        keepalive,
        nat,
        new_ok,
        new_total: u32::try_from(clients.len()).unwrap_or(u32::MAX),
        connect_p50_ms: percentile(&connects, 0.50),
        connect_p99_ms: percentile(&connects, 0.99),
        arrived_pps: (packets_after - packets_before + lost_after - lost_before) as f64 / elapsed,
        received_pps: (packets_after - packets_before) as f64 / elapsed,
        lost_before: lost_after - lost_before,
        xdp_drops,
        cpu,
        sent_pps,
    })
}
