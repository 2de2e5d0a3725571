//! Where the CPU went during a cell, on a machine where the attacker, the clients and the host
//! share two CPUs: the receiver veth's NAPI kernel thread is the host's receive path (the veth's
//! copy of each frame, XDP, the stack, the kernel's SYN cookies; the clients' packets too),
//! which a filter can make cheaper; the sender side is the generator thread and the sender
//! veth's NAPI thread (the clients' receive path, and the replies to the flood), which on a
//! real network run on other machines.

use anyhow::Result;

use crate::{process_cpu::own_seconds, topology::Topology};

/// CPU seconds used so far by each side.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// The receiver veth's NAPI kthreads.
    pub receiver: f64,
    /// This process (the generator thread; the others wait on the clients) and the sender
    /// veth's NAPI kthreads.
    pub sender: f64,
}

impl Sample {
    /// Reads both sides now. The veths' NAPI must be threaded (bench-flood makes it so); a
    /// kthread restarted since `before` was taken would make the difference meaningless, so
    /// both samples of a cell are taken after every program was attached.
    pub fn read(topology: &Topology) -> Result<Sample> {
        let napi = |interface: &str| -> Result<f64> {
            crate::topology::napi_threads(interface)?
                .into_iter()
                .map(|pid| own_seconds(u32::try_from(pid)?))
                .sum()
        };
        Ok(Sample {
            receiver: napi(&topology.rx_if)?,
            sender: own_seconds(std::process::id())? + napi(&topology.tx_if)?,
        })
    }

    /// Each side's share of one CPU from `before` to `self`, over `seconds`.
    pub fn shares_since(self, before: Sample, seconds: f64) -> Shares {
        Shares {
            receiver: (self.receiver - before.receiver) / seconds,
            sender: (self.sender - before.sender) / seconds,
        }
    }
}

/// Shares of one CPU (1.0: a whole CPU) used during a cell.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shares {
    pub receiver: f64,
    pub sender: f64,
}
