//! Turns `[fastpath]` config into the `CONFIG` record and the `PORTS` bitmaps (pure).

use api_shield_common::{
    config::{
        FLAG_DRY_RUN, FLAG_ENABLED, FLAG_PRECISE_CLOCK, FLAG_PROTECT_ALL, FLAG_PROTECT_TCP,
        FLAG_PROTECT_UDP, FLAG_SYN_COOKIES,
    },
    maps::{PORT_WORDS, UDP_PORT_WORD_BASE},
    ShieldConfig,
};

use crate::config::{ClockSetting, FastpathConfig, PortSpec};

const NS_PER_SEC: u64 = 1_000_000_000;

/// The settings record for a validated config on this machine.
pub fn shield_config(config: &FastpathConfig) -> ShieldConfig {
    shield_config_with_tick(config, coarse_tick_ns())
}

/// Resolution of `CLOCK_MONOTONIC_COARSE`, what `bpf_ktime_get_coarse_ns` reads (one tick).
pub fn coarse_tick_ns() -> u64 {
    nix::time::clock_getres(nix::time::ClockId::CLOCK_MONOTONIC_COARSE).map_or(10_000_000, |res| {
        res.tv_sec() as u64 * NS_PER_SEC + res.tv_nsec() as u64
    })
}

/// The settings record, given the coarse clock's tick.
pub fn shield_config_with_tick(config: &FastpathConfig, tick_ns: u64) -> ShieldConfig {
    let limiter = &config.limiter;
    let mut flags = FLAG_ENABLED;
    // With the tick clock, `now` lags real time by up to two ticks (the program's
    // `monotonic_ns` says why): widen the tolerance by that much so conforming traffic is never
    // dropped for it.
    let clock_slack = match limiter.clock {
        ClockSetting::Coarse => 2 * tick_ns,
        ClockSetting::Precise => {
            flags |= FLAG_PRECISE_CLOCK;
            0
        }
    };
    if config.dry_run {
        flags |= FLAG_DRY_RUN;
    }
    if limiter.protect.all {
        flags |= FLAG_PROTECT_ALL;
    }
    if !limiter.protect.tcp.is_empty() {
        flags |= FLAG_PROTECT_TCP;
    }
    if !limiter.protect.udp.is_empty() {
        flags |= FLAG_PROTECT_UDP;
    }
    // A dry run answers nothing: decided here rather than per packet.
    if limiter.syn_cookies && !config.dry_run {
        flags |= FLAG_SYN_COOKIES;
    }
    let emission_ns = NS_PER_SEC / u64::from(limiter.rate);
    let untracked_emission_ns = NS_PER_SEC / u64::from(limiter.untracked_rate);
    ShieldConfig {
        flags,
        new_sources_per_cpu: limiter.new_sources_per_cpu,
        emission_ns,
        tolerance_ns: emission_ns * u64::from(limiter.burst) + clock_slack,
        untracked_emission_ns,
        untracked_tolerance_ns: untracked_emission_ns * u64::from(limiter.untracked_burst)
            + clock_slack,
        event_interval_ns: config.events.interval.as_nanos() as u64,
        v6_mask: v6_mask(limiter.ipv6_prefix),
    }
}

/// The `PORTS` words: bit `p` of the TCP half (words 0..1024) and of the UDP half.
pub fn port_words(config: &FastpathConfig) -> Vec<u64> {
    let mut words = vec![0u64; PORT_WORDS as usize];
    let protect = &config.limiter.protect;
    for (base, specs) in [
        (0, &protect.tcp),
        (UDP_PORT_WORD_BASE as usize, &protect.udp),
    ] {
        for PortSpec { first, last } in specs {
            for port in *first..=*last {
                words[base + usize::from(port >> 6)] |= 1 << (port & 63);
            }
        }
    }
    words
}

fn v6_mask(prefix: u8) -> [u8; 16] {
    let bits = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    bits.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn fastpath(text: &str) -> FastpathConfig {
        parse(text, std::path::Path::new("t.toml"))
            .unwrap()
            .fastpath
    }

    #[test]
    fn gcra_parameters_follow_rate_and_burst() {
        let text = "[fastpath.limiter]\nrate = 100\nburst = 20\nclock = \"precise\"\n";
        let cfg = shield_config_with_tick(&fastpath(text), 4_000_000);
        assert_eq!(cfg.emission_ns, 10_000_000);
        assert_eq!(cfg.tolerance_ns, 200_000_000);
        assert_ne!(cfg.flags & FLAG_PRECISE_CLOCK, 0);
        let coarse = shield_config_with_tick(
            &fastpath("[fastpath.limiter]\nrate = 100\nburst = 20\n"),
            4_000_000,
        );
        assert_eq!(
            coarse.tolerance_ns, 208_000_000,
            "two ticks of slack for the tick clock"
        );
        assert_eq!(coarse.flags & FLAG_PRECISE_CLOCK, 0);
        assert_ne!(
            coarse.flags & FLAG_SYN_COOKIES,
            0,
            "SYN cookies are on by default"
        );
        let off = shield_config_with_tick(
            &fastpath("[fastpath.limiter]\nsyn_cookies = false\n"),
            4_000_000,
        );
        assert_eq!(off.flags & FLAG_SYN_COOKIES, 0);
        let dry = shield_config_with_tick(&fastpath("[fastpath]\ndry_run = true\n"), 4_000_000);
        assert_eq!(dry.flags & FLAG_SYN_COOKIES, 0, "a dry run answers nothing");
        assert_ne!(cfg.flags & FLAG_PROTECT_TCP, 0);
        assert_eq!(cfg.flags & FLAG_PROTECT_UDP, 0);
        assert_eq!(cfg.flags & FLAG_DRY_RUN, 0);
    }

    #[test]
    fn v6_mask_keeps_the_prefix() {
        let mask = v6_mask(64);
        assert_eq!(&mask[..8], &[0xff; 8]);
        assert_eq!(&mask[8..], &[0; 8]);
        assert_eq!(v6_mask(128), [0xff; 16]);
        assert_eq!(v6_mask(1)[0], 0x80);
    }

    #[test]
    fn port_bits_cover_ranges_per_protocol() {
        let words = port_words(&fastpath(
            "[fastpath.limiter.protect]\ntcp = [443, \"8000-8001\"]\nudp = [53]\n",
        ));
        let bit = |base: usize, port: u16| words[base + usize::from(port >> 6)] >> (port & 63) & 1;
        assert_eq!(bit(0, 443), 1);
        assert_eq!(bit(0, 8000), 1);
        assert_eq!(bit(0, 8001), 1);
        assert_eq!(bit(0, 8002), 0);
        assert_eq!(bit(0, 53), 0);
        assert_eq!(bit(1024, 53), 1);
        assert_eq!(bit(1024, 443), 0);
    }
}
