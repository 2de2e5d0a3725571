//! The flood: the generator XDP program run through `BPF_PROG_TEST_RUN` in live-frames mode on
//! CPU0, with the sender veth as ingress device, so every frame is transmitted to the receiver
//! as a NIC would deliver it; or, where the kernel refuses live frames, the same frames from a
//! packet socket ([`Generator::PacketSocket`], bench-flood only). Bounded by the stop flag and a
//! hard time limit.

use std::{
    fs::File,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use aya::{
    programs::{ProgramError, TestRun, TestRunAttrs, TestRunOptions, Xdp},
    sys::SyscallError,
    Ebpf,
};
use nix::sched::{sched_setaffinity, setns, CloneFlags, CpuSet};

use crate::topology::{Topology, PORT, RX_ADDR};

#[path = "socket_flood.rs"]
mod socket_flood;

/// The generator's object (it also holds the yardstick program).
pub static FLOOD_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flood.o"));

/// Frames per `BPF_PROG_TEST_RUN` call (each call is a few milliseconds).
const REPEAT: u32 = 1 << 20;
/// Live-frames batch size.
const BATCH: u32 = 64;

/// A flood for [`start_flood`]: which generator program, the frame it rewrites, and its
/// `FLOOD_SPEC` (bench-flood's program only: sources, transport, share transmitted).
pub struct Flood {
    pub program: &'static str,
    pub frame: Vec<u8>,
    pub spec: Option<[u32; 3]>,
    /// The sender interface the packet-socket generator sends on, when not the sender veth
    /// (bench-flood's ceiling: a sink that discards the flood). The live-frames
    /// generator sends on the sender veth only.
    pub interface: Option<u32>,
}

/// What makes the frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Generator {
    /// The XDP generator through `BPF_PROG_TEST_RUN` live frames: XDP frames, in the kernel.
    LiveFrames,
    /// A packet socket in user space (`socket_flood.rs`), for kernels that refuse live frames:
    /// socket buffers, slower. A share of full speed is paced as that share of `full_pps`.
    PacketSocket { full_pps: f64 },
}

impl Generator {
    pub fn name(self) -> &'static str {
        match self {
            Generator::LiveFrames => "in-kernel (BPF_PROG_TEST_RUN live frames)",
            Generator::PacketSocket { .. } => "user-space packet socket (sendmmsg)",
        }
    }
}

/// Whether this kernel lets the sender run the XDP generator in live-frames mode: one short
/// run of `flood`. EPERM says no (seen on sandboxed VMs, as root); any other failure is an
/// error.
pub fn live_frames_allowed(topology: &Topology, flood: Flood) -> Result<bool> {
    let stop = Arc::new(AtomicBool::new(true));
    let probe = start_flood(
        topology,
        flood,
        Generator::LiveFrames,
        0,
        stop,
        Arc::new(AtomicU64::new(0)),
        Duration::from_secs(1),
    );
    match probe
        .join()
        .map_err(|_| anyhow::anyhow!("the probe panicked"))?
    {
        Ok(_) => Ok(true),
        Err(error)
            if error.chain().any(|cause| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .and_then(std::io::Error::raw_os_error)
                    == Some(nix::libc::EPERM)
            }) =>
        {
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

/// Starts the generator thread with bench-xdp's flood (UDP from 252 sources, full speed); it
/// returns how many frames it generated.
pub fn start(
    topology: &Topology,
    cpu: usize,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    limit: Duration,
) -> JoinHandle<Result<u64>> {
    let flood = Flood {
        program: "api_shield_flood",
        frame: udp_frame(topology.tx_mac, topology.rx_mac, [10, 202, 0, 1]),
        spec: None,
        interface: None,
    };
    start_flood(
        topology,
        flood,
        Generator::LiveFrames,
        cpu,
        stop,
        sent,
        limit,
    )
}

/// Starts the generator thread on `cpu` with `flood`, until `stop` or `limit`; it returns how
/// many frames it generated and keeps `sent` up to date. The live-frames generator makes at
/// least one run even when `stop` is already set.
pub fn start_flood(
    topology: &Topology,
    flood: Flood,
    generator: Generator,
    cpu: usize,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    limit: Duration,
) -> JoinHandle<Result<u64>> {
    let ns_path = format!("/run/netns/{}", topology.tx_ns);
    let tx_index = topology.tx_index;
    std::thread::spawn(move || -> Result<u64> {
        let mut cpus = CpuSet::new();
        cpus.set(cpu)?;
        sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpus)?;
        setns(File::open(&ns_path)?, CloneFlags::CLONE_NEWNET)
            .context("entering the sender namespace")?;
        let deadline = Instant::now() + limit;
        if let Generator::PacketSocket { full_pps } = generator {
            let [sources, l4, share] = flood.spec.unwrap_or([252, 0, 0]);
            // Out of 2^32; 0 transmits every frame.
            let pps = (share != 0).then(|| full_pps * f64::from(share) / f64::from(u32::MAX));
            let rewrite = socket_flood::Rewrite { sources, l4 };
            let interface = flood.interface.unwrap_or(tx_index);
            return socket_flood::run(
                &flood.frame,
                rewrite,
                interface,
                pps,
                &stop,
                &sent,
                deadline,
            );
        }
        if flood.interface.is_some() {
            anyhow::bail!("the live-frames generator sends on the sender veth only");
        }
        let mut ebpf = Ebpf::load(FLOOD_OBJECT).context("loading the flood generator")?;
        if let Some(spec) = flood.spec {
            let mut map: aya::maps::Array<_, u32> =
                aya::maps::Array::try_from(ebpf.map_mut("FLOOD_SPEC").context("FLOOD_SPEC")?)?;
            for (index, value) in spec.into_iter().enumerate() {
                map.set(index as u32, value, 0)?;
            }
        }
        let program: &mut Xdp = ebpf
            .program_mut(flood.program)
            .context("flood program")?
            .try_into()?;
        program.load()?;
        let frame = flood.frame;
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex
        let mut ctx = Vec::with_capacity(24);
        for field in [0, frame.len() as u32, 0, tx_index, 0, 0] {
            ctx.extend_from_slice(&field.to_ne_bytes());
        }
        let mut generated = 0u64;
        loop {
            let run = program.test_run(TestRunOptions {
                data_in: Some(&frame),
                ctx_in: Some(&ctx),
                repeat: REPEAT,
                attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                ..Default::default()
            });
            match run {
                Ok(_) => {
                    generated += u64::from(REPEAT);
                    sent.store(generated, Ordering::Relaxed);
                }
                // A signal cut the run short (the count of frames it sent is lost): go on.
                Err(ProgramError::SyscallError(SyscallError { io_error, .. }))
                    if io_error.raw_os_error() == Some(nix::libc::EINTR) => {}
                Err(error) => return Err(error).context("`BPF_PROG_TEST_RUN` (live frames)"),
            }
            if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                break;
            }
        }
        Ok(generated)
    })
}

/// A 64-byte UDP/IPv4 frame from `src` to the receiver's protected port (the generator
/// rewrites the last octet of the source).
pub fn udp_frame(src_mac: [u8; 6], dst_mac: [u8; 6], src: [u8; 4]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(64);
    frame.extend_from_slice(&dst_mac);
    frame.extend_from_slice(&src_mac);
    frame.extend_from_slice(&0x0800u16.to_be_bytes());
    let payload = 18;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + 8 + payload) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&RX_ADDR);
    let checksum = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&40000u16.to_be_bytes());
    frame.extend_from_slice(&PORT.to_be_bytes());
    frame.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend(std::iter::repeat_n(0u8, payload));
    frame
}

/// A TCP/IPv4 segment (flags `flags`, no payload) from `from` to `to`.
pub fn tcp_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    from: std::net::SocketAddrV4,
    to: std::net::SocketAddrV4,
    flags: u8,
) -> Vec<u8> {
    let mut frame = Vec::with_capacity(64);
    frame.extend_from_slice(&dst_mac);
    frame.extend_from_slice(&src_mac);
    frame.extend_from_slice(&0x0800u16.to_be_bytes());
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&from.ip().octets());
    ip[16..20].copy_from_slice(&to.ip().octets());
    let checksum = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    frame.extend_from_slice(&ip);
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&from.port().to_be_bytes());
    tcp[2..4].copy_from_slice(&to.port().to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let checksum = tcp_checksum(from.ip().octets(), to.ip().octets(), &tcp);
    tcp[16..18].copy_from_slice(&checksum.to_be_bytes());
    frame.extend_from_slice(&tcp);
    frame.extend(std::iter::repeat_n(0u8, 6));
    frame
}

fn ipv4_checksum(header: &[u8; 20]) -> u16 {
    ones_complement(header)
}

/// The checksum of a TCP header without payload, over the IPv4 pseudo-header (RFC 9293).
fn tcp_checksum(src: [u8; 4], dst: [u8; 4], header: &[u8; 20]) -> u16 {
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(&src);
    bytes.extend_from_slice(&dst);
    bytes.extend_from_slice(&[0, 6]);
    bytes.extend_from_slice(&20u16.to_be_bytes());
    bytes.extend_from_slice(header);
    ones_complement(&bytes)
}

/// The Internet checksum (RFC 1071) of an even number of bytes.
fn ones_complement(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
