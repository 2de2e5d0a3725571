//! The api-shield XDP program: drops floods per source address at the NIC.
//!
//! Decision order for every IP packet: allow list passes; deny list drops; an unexpired ban
//! drops; on protected protocols/ports, a TCP segment other than a SYN passes when it belongs
//! to a connection the kernel knows and is dropped when it belongs to none (`flow.rs`), and
//! what starts work (a SYN, a packet of another protocol) is charged to the per-source GCRA
//! limiter, which drops what is over budget (a SYN from a source that has not completed a
//! handshake may be answered with a SYN cookie from the NIC instead, `syncookie.rs`);
//! everything else passes.
//! Each verdict is counted per CPU by reason, and the first drop of a source (at most once per
//! `event_interval`) is sent to the daemon through a ring buffer.
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod events;
mod flow;
mod limiter;
mod lpm;
mod maps;
mod parse;
mod syncookie;
mod verdicts;

use api_shield_common::{
    config::{
        FLAG_DRY_RUN, FLAG_ENABLED, FLAG_PRECISE_CLOCK, FLAG_PROTECT_ALL, FLAG_PROTECT_TCP,
        FLAG_PROTECT_UDP,
    },
    event::NO_LIST,
    maps::UDP_PORT_WORD_BASE,
    Reason, ShieldConfig,
};
use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns, bpf_ktime_get_ns},
    macros::xdp,
    programs::XdpContext,
};

use crate::{
    maps::{ALLOW, BANS, CONFIG, DENY, DENY_EXACT, LIST_STATS, PORTS, STATS, TICK_CLOCK},
    parse::{Packet, Parsed, L4},
};

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// Entry point: decide, count, act.
#[xdp]
pub fn api_shield(ctx: XdpContext) -> u32 {
    // Measured before the decision: a SYN answered in place leaves as the reply.
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    let reason = try_api_shield(&ctx);
    count(reason, bytes);
    match reason {
        Reason::DropDenied
        | Reason::DropBanned
        | Reason::DropRateLimited
        | Reason::DropUntracked
        | Reason::DropNoFlow => xdp_action::XDP_DROP,
        Reason::AnswerSynCookie => xdp_action::XDP_TX,
        _ => xdp_action::XDP_PASS,
    }
}

fn try_api_shield(ctx: &XdpContext) -> Reason {
    let Some(cfg) = CONFIG.get(0) else {
        return Reason::PassDisabled;
    };
    if cfg.flags & FLAG_ENABLED == 0 {
        return Reason::PassDisabled;
    }
    let pkt = match parse::parse(ctx) {
        Parsed::NotIp => return Reason::PassNotIp,
        Parsed::Malformed => return Reason::PassMalformed,
        Parsed::Ip(pkt) => pkt,
    };
    // The verdict cache is keyed by the exact source, which only the limiter and the deny
    // lookup put there: an allowed address reaches neither, so it is never cached, even when a
    // flooding neighbour spends the budget of their shared IPv6 prefix; a change of the lists
    // voids all.
    let now = monotonic_ns(cfg);
    let protected = protected(cfg, &pkt);
    // A segment of a connection is never charged to its source's budget, so a source over
    // budget for its SYNs keeps the connections it has.
    let in_flow = pkt.tcp_in_flow();
    let generation = verdicts::generation();
    match verdicts::lookup(&pkt.src, generation, now) {
        verdicts::Cached::Denied(list) => {
            count_list(list, (ctx.data_end() - ctx.data()) as u64);
            return verdict(cfg, Reason::DropDenied);
        }
        verdicts::Cached::OverBudget if protected && !in_flow => {
            return verdict(cfg, Reason::DropRateLimited);
        }
        _ => {}
    }
    let key = lpm::host_key(&pkt.src);
    if ALLOW.get(&key).is_some() {
        return Reason::PassAllowed;
    }
    let limiter_key = limiter::key(cfg, &pkt);
    // Single addresses are one hash lookup; networks walk the trie.
    let rule = match DENY_EXACT.get_ptr_mut(pkt.src) {
        Some(rule) => Some(rule),
        None => lpm::lookup_mut(&DENY, &key),
    };
    if let Some(rule) = rule {
        // SAFETY: the pointer comes from a successful map lookup and stays valid in this run.
        let (last, list) =
            unsafe { (core::ptr::addr_of_mut!((*rule).last_event_ns), (*rule).list) };
        count_list(list, (ctx.data_end() - ctx.data()) as u64);
        // A flood from a listed source skips the lookups from its next packet on.
        verdicts::remember_denied(
            &pkt.src,
            generation,
            now.saturating_add(cfg.event_interval_ns),
            list,
        );
        return dropping(cfg, Reason::DropDenied, last, list, &pkt, now);
    }
    if let Some(last) = active_ban(&key, now) {
        return dropping(cfg, Reason::DropBanned, last, NO_LIST, &pkt, now);
    }
    if !protected {
        return Reason::PassUnprotected;
    }
    if in_flow {
        return match flow::lookup(ctx, &pkt) {
            flow::Flow::Known => Reason::PassFlow,
            flow::Flow::Completing => {
                // A source that completes a handshake is no spoofed address: it is tracked
                // from now on (past the new-source budget), so its next SYNs are charged to a
                // budget of its own and never share the untracked one with a spoofed flood.
                limiter::admit(&limiter_key, now);
                Reason::PassFlow
            }
            flow::Flow::None => verdict(cfg, Reason::DropNoFlow),
        };
    }
    limiter::check(ctx, cfg, &pkt, &limiter_key, generation, now)
}

/// The last-event field of the ban in force for `key`, if any. The trie gives only the longest
/// match, so an expired ban would hide a broader one in force: an expired match is deleted (the
/// daemon's sweep would delete it anyway) and the lookup made again, up to `BAN_LOOKUPS` times.
#[inline(always)]
fn active_ban(
    key: &aya_ebpf::maps::lpm_trie::Key<api_shield_common::Addr>,
    now: u64,
) -> Option<*mut u64> {
    for _ in 0..api_shield_common::maps::BAN_LOOKUPS {
        let ban = lpm::lookup_mut(&BANS, key)?;
        // SAFETY: the pointer comes from a successful map lookup and stays valid in this run.
        let (expires, own_key) = unsafe {
            (
                core::ptr::read_volatile(core::ptr::addr_of!((*ban).expires_ns)),
                aya_ebpf::maps::lpm_trie::Key::new((*ban).prefix_len, (*ban).addr),
            )
        };
        if expires == 0 || now < expires {
            // SAFETY: as above.
            return Some(unsafe { core::ptr::addr_of_mut!((*ban).last_event_ns) });
        }
        let _ = BANS.remove(&own_key);
    }
    None
}

/// `CLOCK_MONOTONIC` now: to the nanosecond, or as of a recent tick (see `FLAG_PRECISE_CLOCK`).
///
/// The tick clock is read once per tick per CPU: `bpf_ktime_get_coarse_ns` is a helper call,
/// a measurable share of a limiter drop (BENCHMARKS.md, bench-xdp), while `bpf_jiffies64` is
/// inlined by the verifier into one load. The value cached with the jiffies it was read under is reused until
/// jiffies move. A read that falls between the tick's jiffies update and its clock update caches
/// the previous tick's time for one tick, so `now` lags by at most two ticks; the daemon widens
/// the tolerances by that much.
#[inline(always)]
fn monotonic_ns(cfg: &ShieldConfig) -> u64 {
    // SAFETY: the helpers take no arguments and cannot fail.
    unsafe {
        if cfg.flags & FLAG_PRECISE_CLOCK != 0 {
            return bpf_ktime_get_ns();
        }
        let jiffies = bpf_jiffies64();
        let Some(cache) = TICK_CLOCK.get_ptr_mut(0) else {
            return bpf_ktime_get_coarse_ns();
        };
        // SAFETY: per-CPU slot from a successful lookup; only this CPU reads and writes it.
        let cache = &mut *cache;
        // A fresh slot holds jiffies 0, which the kernel's count (it starts at
        // `INITIAL_JIFFIES`, near 2^32) does not reach in 2^64 ticks.
        if cache.jiffies != jiffies {
            cache.ns = bpf_ktime_get_coarse_ns();
            cache.jiffies = jiffies;
        }
        cache.ns
    }
}

/// Whether the limiter applies to this packet.
#[inline(always)]
fn protected(cfg: &ShieldConfig, pkt: &Packet) -> bool {
    if cfg.flags & FLAG_PROTECT_ALL != 0 {
        return true;
    }
    // No telling which transport a hidden header hides: limit it whenever any port is
    // protected, so an extension-header chain is no way around the limiter.
    if let L4::Hidden = pkt.l4 {
        return cfg.flags & (FLAG_PROTECT_TCP | FLAG_PROTECT_UDP) != 0;
    }
    let (base, any_flag) = match pkt.proto {
        IPPROTO_TCP => (0, FLAG_PROTECT_TCP),
        IPPROTO_UDP => (UDP_PORT_WORD_BASE, FLAG_PROTECT_UDP),
        _ => return false,
    };
    if cfg.flags & any_flag == 0 {
        return false;
    }
    match pkt.l4 {
        L4::Port(port) => {
            let word = base + u32::from(port >> 6);
            match PORTS.get(word) {
                Some(bits) => bits & (1u64 << (port & 63)) != 0,
                None => false,
            }
        }
        // A non-first fragment or a cut L4 header carries no port: charge it to the source
        // when its protocol has any protected port, so fragments are no way around the limiter.
        L4::Unknown | L4::Hidden => true,
    }
}

/// A drop verdict: sends the drop event (naming the deny list `list`, or `NO_LIST`) if this
/// entry has not sent one lately, and turns the
/// verdict into its dry-run twin when the program only counts.
#[inline(always)]
fn dropping(
    cfg: &ShieldConfig,
    reason: Reason,
    last_event: *mut u64,
    list: u32,
    pkt: &Packet,
    now: u64,
) -> Reason {
    let dry_run = cfg.flags & FLAG_DRY_RUN != 0;
    events::maybe_send(cfg, last_event, &pkt.src, reason, list, dry_run, now);
    verdict(cfg, reason)
}

/// A drop reason as counted: its dry-run twin when the program only counts.
#[inline(always)]
fn verdict(cfg: &ShieldConfig, reason: Reason) -> Reason {
    if cfg.flags & FLAG_DRY_RUN != 0 {
        reason.dry_run()
    } else {
        reason
    }
}

#[inline(always)]
fn count(reason: Reason, bytes: u64) {
    if let Some(counter) = STATS.get_ptr_mut(reason as u32) {
        // SAFETY: per-CPU slot from a successful lookup; no other writer on this CPU.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += bytes;
        }
    }
}

/// Counts a packet against the deny list it matched (out-of-range slots are not counted),
/// whether dropped or, in a dry run, only counted.
#[inline(always)]
fn count_list(list: u32, bytes: u64) {
    if let Some(counter) = LIST_STATS.get_ptr_mut(list) {
        // SAFETY: per-CPU slot from a successful lookup; no other writer on this CPU.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += bytes;
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the program has no reachable panic: every access is bounds-checked by hand and the
    // verifier rejects any path that could reach here.
    unsafe { core::hint::unreachable_unchecked() }
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
