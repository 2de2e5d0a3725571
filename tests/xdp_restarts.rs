//! The real daemon binary attached to a veth in a network namespace, across its own
//! lifecycle: restarts that keep bans and counters, the pinned link that keeps the program
//! attached while the daemon is down, an upgrade from the previous map layout that keeps both,
//! one daemon per pin directory, `detach` and `uninstall-maps` without a daemon, and reloads of
//! `keep_attached`. Traffic is real UDP from a second namespace.

use crate::support;

use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use api_shield_common::Reason;
use support::{
    daemon::{cli, cli_json, start_expecting_failure},
    fastpath_setup::{Setup, UNPROTECTED},
};

#[test]
fn restart_keeps_bans_and_counters() {
    let Some((_serial, setup)) = Setup::new("restart_keeps_bans_and_counters", "") else {
        return;
    };
    let banned = IpAddr::V4(Ipv4Addr::new(10, 201, 1, 8));
    setup.topo.add_sources(&[banned]);
    let mut first = setup.daemon();
    let (code, _, err) = cli(&[
        "ban",
        "10.201.1.8",
        "--ttl",
        "10m",
        "--config",
        &setup.config_arg(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(setup.delivered(banned, UNPROTECTED, 10), 0);
    let before = setup.stats();
    assert_eq!(before.packets(Reason::DropBanned), 10);
    first.stop();
    assert!(first
        .log
        .iter()
        .any(|l| l.contains("\"message\":\"detached\"")));

    // Stopped without keep_attached: the program is gone, so the banned source gets through.
    assert_eq!(setup.delivered(banned, UNPROTECTED, 10), 10);
    assert_eq!(setup.stats().packets(Reason::DropBanned), 10);

    let _second = setup.daemon();
    let bans = cli_json(&["bans", "--json", "--config", &setup.config_arg()]);
    assert_eq!(bans[0]["target"], "10.201.1.8/32", "{bans}");
    let after_restart = setup.stats();
    assert_eq!(
        after_restart.packets(Reason::DropBanned),
        10,
        "counters survived"
    );
    assert!(after_restart.packets(Reason::PassAllowed) >= before.packets(Reason::PassAllowed));
    assert_eq!(setup.delivered(banned, UNPROTECTED, 10), 0);
    assert_eq!(setup.stats().packets(Reason::DropBanned), 20);
}

#[test]
fn pinned_link_keeps_dropping_while_the_daemon_is_down() {
    let Some((_serial, setup)) = Setup::new(
        "pinned_link_keeps_dropping_while_the_daemon_is_down",
        "keep_attached = true",
    ) else {
        return;
    };
    let banned = IpAddr::V4(Ipv4Addr::new(10, 201, 1, 9));
    setup.topo.add_sources(&[banned]);
    let mut first = setup.daemon();
    let (code, _, err) = cli(&[
        "ban",
        "10.201.1.9",
        "--ttl",
        "10m",
        "--config",
        &setup.config_arg(),
    ]);
    assert_eq!(code, 0, "{err}");
    first.stop();
    assert!(first
        .log
        .iter()
        .any(|l| l.contains("leaving the XDP program attached")));

    assert_eq!(
        setup.delivered(banned, UNPROTECTED, 10),
        0,
        "dropped with no daemon"
    );
    assert_eq!(setup.stats().packets(Reason::DropBanned), 10);
    let report = cli_json(&["stats", "--json", "--config", &setup.config_arg()]);
    assert_eq!(report["daemon_running"], false);
    assert_eq!(report["interfaces"][0]["mode"], "driver");

    let mut second = setup.daemon();
    second
        .wait_for(
            "swapped the new program into the pinned link",
            Duration::from_secs(1),
        )
        .unwrap();
    assert_eq!(setup.delivered(banned, UNPROTECTED, 10), 0);
    assert_eq!(setup.stats().packets(Reason::DropBanned), 20);
}

/// The config of `setup` with its runtime directory (and so its control socket) moved, for a
/// second daemon on the same pin directory.
fn second_config(setup: &Setup) -> std::path::PathBuf {
    let text = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace("/run\"", "/run2\"");
    let path = setup.dir.path().join("second.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn attached_xdp(setup: &Setup) -> bool {
    let out = support::netns::ip_output(&[
        "-n",
        &setup.topo.rx.name,
        "-d",
        "link",
        "show",
        "dev",
        &setup.topo.rx_if,
    ]);
    out.contains("prog/xdp")
}

#[test]
fn a_second_daemon_on_the_same_pin_dir_refuses_and_changes_nothing() {
    let Some((_serial, setup)) = Setup::new(
        "a_second_daemon_on_the_same_pin_dir_refuses_and_changes_nothing",
        "",
    ) else {
        return;
    };
    let banned = IpAddr::V4(Ipv4Addr::new(10, 201, 1, 10));
    setup.topo.add_sources(&[banned]);
    let mut first = setup.daemon();
    let failure = start_expecting_failure(Some(&setup.topo.rx.name), &second_config(&setup));
    assert_eq!(failure.code, Some(1), "{failure}");
    assert!(
        failure.log.contains(&format!(
            "{} is in use by pid {}",
            setup.pins.path.display(),
            first.pid()
        )),
        "names the running daemon: {failure}"
    );
    assert!(!failure.log.contains("attached"), "{failure}");
    // The first daemon still owns its link and its maps: a ban through it drops.
    let (code, _, err) = cli(&[
        "ban",
        "10.201.1.10",
        "--ttl",
        "10m",
        "--config",
        &setup.config_arg(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(setup.delivered(banned, UNPROTECTED, 10), 0);
    let report = cli_json(&["stats", "--json", "--config", &setup.config_arg()]);
    assert_eq!(report["interfaces"][0]["mode"], "driver", "{report}");
    // And its stop detaches as it should.
    first.stop();
    assert!(first
        .log
        .iter()
        .any(|l| l.contains("\"message\":\"detached\"")));
    assert!(!attached_xdp(&setup));
}

#[test]
fn detach_and_uninstall_maps_take_the_fast_path_off_without_a_daemon() {
    let Some((_serial, setup)) = Setup::new(
        "detach_and_uninstall_maps_take_the_fast_path_off_without_a_daemon",
        "keep_attached = true",
    ) else {
        return;
    };
    let banned = IpAddr::V4(Ipv4Addr::new(10, 201, 1, 11));
    setup.topo.add_sources(&[banned]);
    let config = setup.config_arg();
    let mut daemon = setup.daemon();
    let (code, _, err) = cli(&["ban", "10.201.1.11", "--ttl", "10m", "--config", &config]);
    assert_eq!(code, 0, "{err}");
    // Refused while a daemon owns the pin directory.
    for command in ["detach", "uninstall-maps"] {
        let (code, _, err) = cli(&[command, "--config", &config]);
        assert_eq!(code, 1, "{command}: {err}");
        assert!(
            err.contains(&format!("in use by pid {}", daemon.pid())),
            "{command}: {err}"
        );
    }
    daemon.stop();
    assert!(attached_xdp(&setup), "keep_attached leaves it attached");
    assert_eq!(setup.delivered(banned, UNPROTECTED, 10), 0);

    let (code, out, err) = cli(&["detach", "--config", &config]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("detached from {}", setup.topo.rx_if)),
        "{out}"
    );
    assert!(!attached_xdp(&setup), "the kernel detached it");
    assert_eq!(
        setup.delivered(banned, UNPROTECTED, 10),
        10,
        "nothing filters now"
    );
    let report = cli_json(&["stats", "--json", "--config", &config]);
    assert_eq!(
        report["interfaces"],
        serde_json::json!([]),
        "stats tells the truth: {report}"
    );
    let (_, text, _) = cli(&["stats", "--config", &config]);
    assert!(text.contains("attached: nowhere"), "{text}");
    assert_eq!(report["active_bans"], 1, "bans stay: {report}");
    let (code, out, _) = cli(&["detach", "--config", &config]);
    assert_eq!(code, 0);
    assert!(out.contains("not attached anywhere"), "{out}");

    let (code, out, err) = cli(&["uninstall-maps", "--config", &config]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("removed {}", setup.pins.layout().display())),
        "{out}"
    );
    assert!(!setup.pins.path.exists(), "the pin directory is gone");
    let (code, _, err) = cli(&["stats", "--config", &config]);
    assert_eq!(code, 1);
    assert!(err.contains("no api-shield maps are pinned"), "{err}");
}

#[test]
fn reload_applies_keep_attached_and_refuses_what_a_start_would() {
    let Some((_serial, mut setup)) = Setup::new(
        "reload_applies_keep_attached_and_refuses_what_a_start_would",
        "keep_attached = true",
    ) else {
        return;
    };
    let config = setup.config_arg();
    let mut daemon = setup.daemon();
    let reload = || cli(&["reload", "--config", &config]);

    // A config naming an interface this host lacks: refused by reload and check-config alike.
    let good = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        good.replace(
            &format!("interfaces = [\"{}\"]", setup.topo.rx_if),
            &format!("interfaces = [\"{}\", \"asx-none0\"]", setup.topo.rx_if),
        ),
    )
    .unwrap();
    let (code, _, err) = reload();
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("fastpath.interfaces[1]") && err.contains("`asx-none0` does not exist"),
        "{err}"
    );

    // Settings read at start only: applied at the next restart, and said so.
    let socket = setup.dir.path().join("moved.sock");
    setup.write_config(&format!(
        "keep_attached = false\n[proxy]\nworkers = 3\n[control]\nsocket = \"{}\"\n[fastpath.guard]\nmin_prefix_v4 = 16",
        socket.display()
    ));
    let text = std::fs::read_to_string(&setup.config).unwrap();
    // `write_config` puts `extra` inside [fastpath]; the tables after it are its own.
    assert!(text.contains("workers = 3"), "{text}");
    let (code, out, err) = reload();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pending restart: proxy.workers"), "{out}");
    // The control socket moved with the reload: the CLI, reading the new config, finds it.
    assert!(socket.exists());
    let status = cli_json(&["status", "--json", "--config", &config]);
    assert_eq!(
        status["pending_restart"],
        serde_json::json!(["proxy.workers"]),
        "{status}"
    );
    // check-config looks for the interfaces where the daemon runs: in its namespace.
    let checked = std::process::Command::new("ip")
        .args(["netns", "exec", &setup.topo.rx.name])
        .arg(support::daemon::binary())
        .args(["check-config", &config])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(out.contains("pending restart: proxy.workers"), "{out}");
    // The new guard rails apply at once.
    let (code, _, err) = cli(&["ban", "10.201.0.0/15", "--config", &config]);
    assert_eq!(code, 64, "{err}");

    // keep_attached = false, as reloaded, is what the stop honours.
    daemon.stop();
    assert!(
        daemon
            .log
            .iter()
            .any(|l| l.contains("\"message\":\"detached\"")),
        "{:?}",
        daemon.log
    );
    assert!(!attached_xdp(&setup));
    assert!(!socket.exists(), "the moved socket is removed at stop");
}

#[test]
fn an_upgrade_from_the_previous_map_layout_keeps_bans_and_the_attached_link() {
    let Some((_serial, setup)) = Setup::new(
        "an_upgrade_from_the_previous_map_layout_keeps_bans_and_the_attached_link",
        "keep_attached = true",
    ) else {
        return;
    };
    let banned = IpAddr::V4(Ipv4Addr::new(10, 201, 1, 12));
    setup.topo.add_sources(&[banned]);
    // What a daemon of the previous layout leaves behind with keep_attached: maps pinned under
    // v2/, a ban in them, and its program attached through a link pinned at v2/links/<if>.
    // (This build's program stands in for the old one; the ban entries of both layouts are
    // the same.)
    let old = setup.pins.path.join("v2");
    let (rx_if, old_dir) = (setup.topo.rx_if.clone(), old.clone());
    setup
        .topo
        .rx
        .run(move || {
            use aya::programs::{links::FdLink, Xdp, XdpMode};
            let config =
                api_shield::config::parse("[fastpath]\n", std::path::Path::new("old.toml"))
                    .unwrap();
            let mut sizes = config.fastpath.clone();
            sizes.limiter.max_sources = 4096;
            let mut ebpf = api_shield::fastpath::load_program(&old_dir, &sizes).unwrap();
            let mut maps = api_shield::fastpath::PinnedMaps::open(&old_dir).unwrap();
            api_shield::fastpath::apply_config(&mut maps, &config.fastpath).unwrap();
            maps.ban(
                &api_shield::fastpath::BanRequest {
                    target: IpAddr::V4(Ipv4Addr::new(10, 201, 1, 12)).into(),
                    ttl: Some(Duration::from_secs(600)),
                    reason: "before the upgrade".into(),
                    origin: None,
                },
                &api_shield::fastpath::SystemClock,
            )
            .unwrap();
            let program: &mut Xdp = ebpf
                .program_mut(api_shield_common::maps::PROGRAM)
                .unwrap()
                .try_into()
                .unwrap();
            let link = program.attach(&rx_if, XdpMode::Driver).unwrap();
            let link: FdLink = program.take_link(link).unwrap().try_into().unwrap();
            std::fs::create_dir_all(old_dir.join("links")).unwrap();
            link.pin(old_dir.join("links").join(&rx_if)).unwrap();
        })
        .join()
        .unwrap();
    assert_eq!(
        setup.delivered(banned, UNPROTECTED, 10),
        0,
        "the old program drops the banned source"
    );

    // The new daemon starts (the interface is not refused as held by another program), swaps
    // itself into the moved link, and enforces the ban it carried over.
    let mut daemon = setup.daemon();
    daemon
        .wait_for(
            "carried bans and pinned links over from the previous map layout",
            Duration::from_secs(1),
        )
        .unwrap();
    daemon
        .wait_for(
            "swapped the new program into the pinned link",
            Duration::from_secs(1),
        )
        .unwrap();
    assert!(!old.exists(), "the old layout is removed");
    let bans = cli_json(&["bans", "--json", "--config", &setup.config_arg()]);
    assert_eq!(bans[0]["target"], "10.201.1.12/32", "{bans}");
    assert_eq!(bans[0]["reason"], "before the upgrade", "{bans}");
    assert_eq!(setup.delivered(banned, UNPROTECTED, 10), 0);
    assert_eq!(setup.stats().packets(Reason::DropBanned), 10);
}
