//! The per-source GCRA limiter and its defence against LRU churn.
//!
//! Each source (IPv6 grouped by the configured prefix) keeps one theoretical arrival time,
//! updated with compare-and-swap so all CPUs share one budget. New sources are admitted into the
//! LRU map at a bounded rate per CPU (as Katran does for flows): past it, a flood of spoofed
//! sources cannot evict the state of real clients; the untracked ones share a budget instead,
//! one per class of packet: bare TCP SYNs share one, everything else another, so a flood of
//! datagrams (or of odd TCP segments) from spoofed sources does not spend the budget
//! never-seen clients connect on.
//!
//! A bare SYN from a source that has not completed a handshake, passed by its budget or over
//! the untracked one, is answered with a SYN cookie from the NIC when the kernel would answer it
//! with one (`syncookie.rs`); a source that has completed one gets the kernel's full handshake.

use core::intrinsics::{atomic_cxchg, AtomicOrdering};

use api_shield_common::{
    config::FLAG_SYN_COOKIES,
    event::NO_LIST,
    maps::{UNTRACKED_OTHER, UNTRACKED_TCP},
    LimiterState, Reason, ShieldConfig,
};
use aya_ebpf::{bindings::BPF_NOEXIST, programs::XdpContext};
use aya_log_ebpf::warn;

use crate::{
    dropping,
    maps::{INSERT_BUDGET, LIMITER, UNTRACKED},
    parse::Packet,
    syncookie, verdicts,
};

const CAS_RETRIES: usize = 4;
const NS_PER_SEC: u64 = 1_000_000_000;
/// At most one log line per CPU per minute about the insertion budget.
const LOG_INTERVAL_NS: u64 = 60 * NS_PER_SEC;

/// Charges one packet to its source (`key`, see [`key`]); returns the verdict. An over-budget
/// verdict is remembered in the verdict cache until the source can next conform.
#[inline(always)]
pub fn check(
    ctx: &XdpContext,
    cfg: &ShieldConfig,
    pkt: &Packet,
    key: &[u64; 2],
    generation: u64,
    now: u64,
) -> Reason {
    if let Some(state) = LIMITER.get_ptr_mut(key) {
        // SAFETY: pointer from a successful lookup; LRU values stay valid during this run.
        let (tat, last, verified) = unsafe {
            (
                core::ptr::addr_of_mut!((*state).tat_ns),
                core::ptr::addr_of_mut!((*state).last_event_ns),
                core::ptr::read_volatile(core::ptr::addr_of!((*state).verified)) != 0,
            )
        };
        return match conforms(tat, now, cfg.emission_ns, cfg.tolerance_ns) {
            Ok(()) if !verified && answered(ctx, cfg, pkt) => Reason::AnswerSynCookie,
            Ok(()) => Reason::PassWithinLimit,
            Err(until) => {
                verdicts::remember(&pkt.src, generation, until);
                dropping(cfg, Reason::DropRateLimited, last, NO_LIST, pkt, now)
            }
        };
    }
    if take_insert_budget(ctx, cfg, now) {
        let state = LimiterState {
            tat_ns: now + cfg.emission_ns,
            last_event_ns: 0,
            verified: 0,
        };
        // Losing a race with another CPU inserting the same source costs one extra pass.
        let _ = LIMITER.insert(key, state, u64::from(BPF_NOEXIST));
        if answered(ctx, cfg, pkt) {
            return Reason::AnswerSynCookie;
        }
        return Reason::PassWithinLimit;
    }
    // A bare SYN starts a connection; anything else here (TCP without flags, SYN with FIN or
    // RST, a cut TCP header, UDP, other protocols, fragments) shares the other budget, so no
    // flood of it spends the budget never-seen clients connect on.
    let class = if syncookie::is_bare_syn(pkt) {
        UNTRACKED_TCP
    } else {
        UNTRACKED_OTHER
    };
    let Some(shared) = UNTRACKED.get_ptr_mut(class) else {
        return Reason::PassWithinLimit;
    };
    // SAFETY: a pointer from a successful lookup; array slots stay valid.
    let (tat, last) = unsafe {
        (
            core::ptr::addr_of_mut!((*shared).tat_ns),
            core::ptr::addr_of_mut!((*shared).last_event_ns),
        )
    };
    match conforms(
        tat,
        now,
        cfg.untracked_emission_ns,
        cfg.untracked_tolerance_ns,
    ) {
        Ok(()) if answered(ctx, cfg, pkt) => Reason::AnswerSynCookie,
        Ok(()) => Reason::PassWithinLimit,
        // A spoofed flood spends this budget: a SYN is answered with the kernel's cookie rather
        // than dropped with the flood, when the kernel would answer it so itself.
        Err(_) if answered(ctx, cfg, pkt) => Reason::AnswerSynCookie,
        Err(_) => dropping(cfg, Reason::DropUntracked, last, NO_LIST, pkt, now),
    }
}

/// Whether the bare SYN `pkt`, from a source that has not completed a handshake, was answered
/// with a SYN cookie from the NIC (`syncookie.rs`): cookies are on (never in a dry run, which
/// the daemon's settings rule out), and the kernel would answer the SYN with a cookie itself
/// (its SYN queue is full), so the answer spares the stack the same work. False leaves the
/// frame untouched.
#[inline(always)]
fn answered(ctx: &XdpContext, cfg: &ShieldConfig, pkt: &Packet) -> bool {
    cfg.flags & FLAG_SYN_COOKIES != 0 && syncookie::is_bare_syn(pkt) && syncookie::answer(ctx, pkt)
}

/// Marks `key` as a source that has completed a TCP handshake (`flow.rs`), tracking it with a
/// full budget if it is not tracked yet, whatever the new-source budget.
#[inline(always)]
pub fn admit(key: &[u64; 2], now: u64) {
    if let Some(state) = LIMITER.get_ptr_mut(key) {
        // SAFETY: pointer from a successful lookup; LRU values stay valid during this run. A
        // plain store: every writer stores the same value.
        unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!((*state).verified), 1) };
        return;
    }
    // A theoretical arrival time of now leaves the whole burst.
    let state = LimiterState {
        tat_ns: now,
        last_event_ns: 0,
        verified: 1,
    };
    let _ = LIMITER.insert(key, state, u64::from(BPF_NOEXIST));
}

/// The limiter key of a packet: its source, IPv6 masked to the configured prefix.
#[inline(always)]
pub fn key(cfg: &ShieldConfig, pkt: &Packet) -> [u64; 2] {
    if !pkt.is_v6 {
        return pkt.src;
    }
    let m = &cfg.v6_mask;
    let hi = u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7]]);
    let lo = u64::from_ne_bytes([m[8], m[9], m[10], m[11], m[12], m[13], m[14], m[15]]);
    [pkt.src[0] & hi, pkt.src[1] & lo]
}

/// GCRA: a packet conforms when, after it, the theoretical arrival time is at most `tolerance`
/// ahead of now. Burst B is tolerance = B x emission: B packets at once, then one per emission.
/// A packet that does not conform gets the instant before which none can (TAT + emission -
/// tolerance, exact while the TAT stands still, and the TAT only moves forward).
#[inline(always)]
fn conforms(tat: *mut u64, now: u64, emission: u64, tolerance: u64) -> Result<(), u64> {
    for _ in 0..CAS_RETRIES {
        // SAFETY: `tat` points into a live map value; a volatile read stands in for an atomic
        // load, which the BPF backend cannot select.
        let old = unsafe { core::ptr::read_volatile(tat) };
        let base = if old > now { old } else { now };
        let next = base + emission;
        if next - now > tolerance {
            return Err(next - tolerance);
        }
        // SAFETY: as above; BPF ISA v3 provides 64-bit compare-and-exchange.
        let (_, swapped) = unsafe {
            atomic_cxchg::<u64, { AtomicOrdering::Relaxed }, { AtomicOrdering::Relaxed }>(
                tat, old, next,
            )
        };
        if swapped {
            return Ok(());
        }
    }
    // Other CPUs kept winning the race for this source: it is sending far over its budget.
    // No instant is promised (`now` caches nothing).
    Err(now)
}

/// Takes one new-entry token from this CPU's budget for the current second.
#[inline(always)]
fn take_insert_budget(ctx: &XdpContext, cfg: &ShieldConfig, now: u64) -> bool {
    let Some(budget) = INSERT_BUDGET.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: per-CPU slot from a successful lookup; only this CPU writes it.
    let budget = unsafe { &mut *budget };
    if now.wrapping_sub(budget.window_start_ns) >= NS_PER_SEC {
        budget.window_start_ns = now;
        budget.inserted = 0;
    }
    if budget.inserted < cfg.new_sources_per_cpu {
        budget.inserted += 1;
        return true;
    }
    if budget.last_log_ns == 0 || now.wrapping_sub(budget.last_log_ns) >= LOG_INTERVAL_NS {
        budget.last_log_ns = now;
        warn!(
            ctx,
            "new-source budget of {} per second spent on this CPU: untracked sources share the untracked budgets",
            cfg.new_sources_per_cpu
        );
    }
    false
}
