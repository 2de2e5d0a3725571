//! Blocklist feeds end to end: the daemon with XDP in driver mode on a veth in a namespace,
//! its lists in files and behind a real HTTP server in the receiving namespace.
//!
//! A file of 1 000 000 generated networks loads; a change of 1 % of it is applied as a diff
//! (exactly the entries added and removed are written) while a listed source sends throughout
//! and not one of its datagrams gets through; the list's drops are counted under its name. A
//! malformed line is reported with its number and the rest of the list applies, and the drop
//! log names the list (`list:NAME`). A URL list is
//! fetched conditionally (an unchanged list is a 304), a changed one applied, and a failing or
//! oversized one keeps the last good copy; a list removed from the config lets go of its
//! entries at the reload, and a restarted daemon keeps the lists it had until it reads them
//! again.

use crate::support;

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{IpAddr, Ipv4Addr, TcpListener},
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use support::{
    daemon::{cli, cli_json, Daemon},
    fastpath_setup::{Setup, UNPROTECTED},
    netns::Netns,
    traffic::Counting,
};

/// Listed in the big list before and after its update.
const LISTED: Ipv4Addr = Ipv4Addr::new(10, 201, 6, 10);
/// Listed in the URL list.
const FROM_URL: Ipv4Addr = Ipv4Addr::new(10, 201, 6, 20);
/// Listed in the list with bad lines.
const IN_BAD_LIST: Ipv4Addr = Ipv4Addr::new(10, 201, 6, 30);
/// Never listed.
const CLEAN: Ipv4Addr = Ipv4Addr::new(10, 201, 6, 40);
/// Entries of the big list besides `LISTED`.
const MILLION: u32 = 1_000_000;
/// 1 % of them.
const CHURN: u32 = 10_000;
/// How long loading a million entries may take on a loaded CI machine.
const LOADED: Duration = Duration::from_secs(300);
/// How long an update may take to be noticed and applied (refresh 1 s).
const UPDATED: Duration = Duration::from_secs(60);

/// The big list: `LISTED` and /32s counted up from 100.64.0.0 (`first..first + MILLION`).
fn write_big_list(path: &Path, first: u32) {
    let mut text = String::with_capacity(20 * MILLION as usize);
    text.push_str("# generated: one address per line\n");
    text.push_str(&format!("{LISTED}\n"));
    let base = u32::from(Ipv4Addr::new(100, 64, 0, 0));
    for i in first..first + MILLION {
        text.push_str(&Ipv4Addr::from(base + i).to_string());
        text.push('\n');
    }
    write_atomically(path, text.as_bytes());
}

/// Replaces `path` at once (a rename), as a list updater should.
fn write_atomically(path: &Path, bytes: &[u8]) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, bytes).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// The JSON log lines with `message`.
fn logged(daemon: &Daemon, message: &str) -> Vec<serde_json::Value> {
    daemon
        .log
        .iter()
        .filter(|l| l.contains(message))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The fields of the `n`th (0-based) "blocklist applied" line of `list`.
fn applied(daemon: &Daemon, list: &str, n: usize) -> serde_json::Value {
    let lines: Vec<serde_json::Value> = logged(daemon, "blocklist applied at the NIC")
        .into_iter()
        .filter(|l| l["fields"]["list"] == list || l["list"] == list)
        .collect();
    let line = lines
        .get(n)
        .unwrap_or_else(|| panic!("no applied line {n} for {list}: {lines:?}"));
    if line["fields"].is_object() {
        line["fields"].clone()
    } else {
        line.clone()
    }
}

fn applied_count(daemon: &Daemon, list: &str) -> usize {
    logged(daemon, "blocklist applied at the NIC")
        .iter()
        .filter(|l| l["fields"]["list"] == list || l["list"] == list)
        .count()
}

/// Packets the kernel counted against `list`.
fn list_drops(setup: &Setup, list: &str) -> u64 {
    let stats = cli_json(&["stats", "--json", "--config", &setup.config_arg()]);
    stats["lists"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["list"] == list)
        .map_or(0, |l| l["packets"].as_u64().unwrap())
}

fn dropped(setup: &Setup, src: Ipv4Addr) -> bool {
    setup.delivered(IpAddr::V4(src), UNPROTECTED, 10) == 0
}

#[test]
fn a_million_entry_list_loads_and_a_one_percent_update_leaves_no_gap() {
    let test = "a_million_entry_list_loads_and_a_one_percent_update_leaves_no_gap";
    let Some((_serial, mut setup)) = Setup::new(test, "") else {
        return;
    };
    setup
        .topo
        .add_sources(&[IpAddr::V4(LISTED), IpAddr::V4(CLEAN)]);
    let list = setup.dir.path().join("big.netset");
    write_big_list(&list, 0);
    // Cached deny verdicts last one event interval: kept short, most of the sender's
    // datagrams are looked up in the table while it is being updated.
    setup.write_config(&format!(
        "mode = \"driver\"\nmax_deny = 1100000\n\n[fastpath.events]\ninterval = \"20ms\"\n\n[[blocklists]]\nname = \"big\"\nfile = \"{}\"\nrefresh = \"1s\"\n",
        list.display()
    ));
    let mut daemon = setup.daemon();
    daemon
        .wait_for("blocklist applied at the NIC", LOADED)
        .unwrap();
    let first = applied(&daemon, "big", 0);
    assert_eq!(first["entries"], MILLION + 1, "{first}");
    assert_eq!(first["inserted"], MILLION + 1, "{first}");
    assert_eq!(first["refused"], 0, "{first}");
    assert!(dropped(&setup, LISTED), "{LISTED} passes");
    assert!(!dropped(&setup, CLEAN), "{CLEAN} is dropped");
    let counted = list_drops(&setup, "big");
    assert!(counted >= 10, "the list's drops: {counted}");

    // 1 % changes: the first CHURN addresses leave, CHURN new ones come; LISTED stays. A
    // sender from LISTED runs throughout, until the update is applied and a while after.
    let counting = Counting::start(&setup.topo.rx, UNPROTECTED);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        setup.topo.tx.run(move || {
            let socket = std::net::UdpSocket::bind((LISTED, 0)).unwrap();
            // Paced at about 10 000 datagrams/s and bounded: at most 2 minutes' worth,
            // whatever happens to the flag.
            for _ in 0..1_200_000u32 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                socket
                    .send_to(&[0u8; 32], (support::netns::RX_V4, UNPROTECTED))
                    .unwrap();
                sent.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(100));
            }
        })
    };
    let before_update = sent.load(Ordering::Relaxed);
    write_big_list(&list, CHURN);
    daemon
        .wait_for_count("blocklist applied at the NIC", 2, UPDATED)
        .unwrap();
    let at_update = sent.load(Ordering::Relaxed);
    // A thousand more after the update was applied, then stop.
    while sent.load(Ordering::Relaxed) < at_update + 1000 && !sender.is_finished() {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    let total = sent.load(Ordering::Relaxed);
    let received = counting.finish(&setup.topo.tx, UNPROTECTED);
    assert!(
        at_update > before_update,
        "the sender ran while the update was applied"
    );
    assert_eq!(
        received.get(&IpAddr::V4(LISTED)).copied().unwrap_or(0),
        0,
        "datagrams from {LISTED} got through during the update ({total} sent)"
    );
    let second = applied(&daemon, "big", 1);
    assert_eq!(second["inserted"], CHURN, "applied as a diff: {second}");
    assert_eq!(second["deleted"], CHURN, "applied as a diff: {second}");
    assert_eq!(second["entries"], MILLION + 1, "{second}");
    assert!(
        list_drops(&setup, "big") >= counted + total,
        "every datagram sent from {LISTED} is counted against the list"
    );
    let (_, table, _) = cli(&["stats", "--config", &setup.config_arg()]);
    assert!(
        table.contains("DENY LIST") && table.contains("big"),
        "{table}"
    );
    daemon.stop();
}

/// One HTTP/1.1 server thread in a namespace serving one list, with its ETag.
struct ListServer {
    state: Arc<Mutex<Served>>,
    stop: Arc<AtomicBool>,
    port: u16,
    thread: Option<std::thread::JoinHandle<()>>,
    netns: String,
}

#[derive(Default)]
struct Served {
    body: String,
    /// Answer this status instead of the list.
    failing: Option<u16>,
    /// Requests seen, and how many were answered 304.
    requests: u64,
    not_modified: u64,
}

impl ListServer {
    fn start(ns: &Netns, body: &str) -> ListServer {
        let state = Arc::new(Mutex::new(Served {
            body: body.to_owned(),
            ..Served::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let thread = {
            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
            ns.run(move || {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                port_tx.send(listener.local_addr().unwrap().port()).unwrap();
                for stream in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(mut stream) = stream else { continue };
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut if_none_match = None;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            if name.eq_ignore_ascii_case("if-none-match") {
                                if_none_match = Some(value.trim().to_owned());
                            }
                        }
                    }
                    let mut served = state.lock().unwrap();
                    served.requests += 1;
                    let etag = format!("\"{:x}\"", fnv(&served.body));
                    let answer = if let Some(status) = served.failing {
                        format!("HTTP/1.1 {status} Failing\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    } else if if_none_match.as_deref() == Some(etag.as_str()) {
                        served.not_modified += 1;
                        format!("HTTP/1.1 304 Not Modified\r\netag: {etag}\r\nconnection: close\r\n\r\n")
                    } else {
                        format!(
                            "HTTP/1.1 200 OK\r\netag: {etag}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                            served.body.len(),
                            served.body
                        )
                    };
                    drop(served);
                    let _ = stream.write_all(answer.as_bytes());
                }
            })
        };
        ListServer {
            state,
            stop,
            port: port_rx.recv().unwrap(),
            thread: Some(thread),
            netns: ns.name.clone(),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/list.txt", self.port)
    }

    fn served(&self) -> std::sync::MutexGuard<'_, Served> {
        self.state.lock().unwrap()
    }
}

impl Drop for ListServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let (port, path) = (self.port, format!("/run/netns/{}", self.netns));
        // One connection wakes the accept loop, which then sees the flag.
        let _ = std::thread::spawn(move || {
            let file = std::fs::File::open(path).ok()?;
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .join();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[test]
fn lists_from_urls_and_files_refuse_bad_lines_keep_the_last_good_copy_and_go_when_removed() {
    let test =
        "lists_from_urls_and_files_refuse_bad_lines_keep_the_last_good_copy_and_go_when_removed";
    let Some((_serial, mut setup)) = Setup::new(test, "") else {
        return;
    };
    setup.topo.add_sources(&[
        IpAddr::V4(FROM_URL),
        IpAddr::V4(IN_BAD_LIST),
        IpAddr::V4(CLEAN),
    ]);
    let server = ListServer::start(&setup.topo.rx, &format!("; feed\n{FROM_URL} ; SBL1\n"));
    let bad = setup.dir.path().join("bad.txt");
    std::fs::write(
        &bad,
        format!("# three bad lines\n198.51.100.0/24\nnot-an-address\n10.201.6.7/24\n0.0.0.0/0\n{IN_BAD_LIST}\n"),
    )
    .unwrap();
    let cache = setup.dir.path().join("cache").join("feed.list");
    let tables = |with_bad: bool| {
        let mut text = format!(
            "mode = \"driver\"\n\n[[blocklists]]\nname = \"feed\"\nurl = \"{}\"\nrefresh = \"1s\"\nmax_bytes = 2048\ncache_file = \"{}\"\n",
            server.url(),
            cache.display()
        );
        if with_bad {
            text.push_str(&format!(
                "\n[[blocklists]]\nname = \"bad\"\nfile = \"{}\"\nrefresh = \"1s\"\n",
                bad.display()
            ));
        }
        text
    };
    setup.write_config(&tables(true));
    let mut daemon = setup.daemon();
    daemon
        .wait_for_count("blocklist applied at the NIC", 2, UPDATED)
        .unwrap();

    // The bad lines are refused by number; the rest of that list applies.
    let refusals = logged(&daemon, "blocklist: line refused");
    let lines: Vec<u64> = refusals
        .iter()
        .map(|l| l["fields"]["line"].as_u64().or(l["line"].as_u64()).unwrap())
        .collect();
    assert_eq!(lines, [3, 4, 5], "{refusals:?}");
    let bad_applied = applied(&daemon, "bad", 0);
    assert_eq!(bad_applied["entries"], 2, "{bad_applied}");
    assert_eq!(bad_applied["refused"], 3, "{bad_applied}");
    assert!(dropped(&setup, IN_BAD_LIST), "{IN_BAD_LIST} passes");
    assert!(dropped(&setup, FROM_URL), "{FROM_URL} passes");
    assert!(!dropped(&setup, CLEAN), "{CLEAN} is dropped");
    assert!(list_drops(&setup, "feed") >= 10);
    assert!(list_drops(&setup, "bad") >= 10);
    // The drop log names the list as the reason.
    daemon
        .wait_for("\"reason\":\"list:feed\"", UPDATED)
        .unwrap();
    daemon.wait_for("\"reason\":\"list:bad\"", UPDATED).unwrap();

    // Unchanged: the next fetches are answered 304 and apply nothing.
    let wait_for = |what: &str, check: &dyn Fn(&Served) -> bool| {
        let deadline = std::time::Instant::now() + UPDATED;
        while !check(&server.served()) {
            assert!(std::time::Instant::now() < deadline, "never: {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for("a 304", &|s| s.not_modified >= 2);
    assert_eq!(applied_count(&daemon, "feed"), 1);
    assert!(cache.exists(), "the last good copy is kept");

    // Changed: applied as a diff.
    server.served().body = format!("{FROM_URL}\n203.0.113.0/24\n");
    daemon
        .wait_for_count("blocklist applied at the NIC", 3, UPDATED)
        .unwrap();
    let changed = applied(&daemon, "feed", 1);
    assert_eq!(changed["inserted"], 1, "{changed}");
    assert_eq!(changed["deleted"], 0, "{changed}");

    // Failing, then too large: the last good copy stays applied.
    server.served().failing = Some(503);
    daemon
        .wait_for(
            "blocklist: cannot update; the last good copy stays applied",
            UPDATED,
        )
        .unwrap();
    assert!(
        dropped(&setup, FROM_URL),
        "a failing feed lifted {FROM_URL}"
    );
    {
        let mut served = server.served();
        served.failing = None;
        served.body = format!("{FROM_URL}\n{}", "# padding\n".repeat(400));
    }
    let seen = server.served().requests;
    wait_for("two more fetches", &|s| s.requests >= seen + 2);
    assert_eq!(
        applied_count(&daemon, "feed"),
        2,
        "an oversized list was applied"
    );
    assert!(
        dropped(&setup, FROM_URL),
        "an oversized feed lifted {FROM_URL}"
    );

    // A restart keeps what was applied (the kernel table and its names are pinned); with the
    // URL failing, the cached copy is applied at start.
    server.served().failing = Some(500);
    daemon.stop();
    let mut daemon = setup.daemon();
    daemon
        .wait_for_count("blocklist applied at the NIC", 2, UPDATED)
        .unwrap();
    let from_cache = applied(&daemon, "feed", 0);
    assert_eq!(from_cache["from"], "the last good copy", "{from_cache}");
    assert_eq!(from_cache["inserted"], 0, "{from_cache}");
    assert!(
        dropped(&setup, FROM_URL),
        "{FROM_URL} passes after a restart"
    );

    // Removed from the config: its entries go at the reload; the other list stays.
    setup.write_config(&tables(false));
    let (code, _, stderr) = cli(&["reload", "--config", &setup.config_arg()]);
    assert_eq!(code, 0, "{stderr}");
    daemon
        .wait_for("blocklist removed from the config", UPDATED)
        .unwrap();
    assert!(
        !dropped(&setup, IN_BAD_LIST),
        "{IN_BAD_LIST} is still dropped"
    );
    assert!(dropped(&setup, FROM_URL), "{FROM_URL} passes");
    daemon.stop();
}

#[test]
fn a_full_table_takes_an_update_once_the_dropped_entries_make_room() {
    let test = "a_full_table_takes_an_update_once_the_dropped_entries_make_room";
    let Some((_serial, mut setup)) = Setup::new(test, "") else {
        return;
    };
    // Exactly as many entries as the table holds; the update drops 10 and adds 10.
    let addresses = |first: u32| -> String {
        let base = u32::from(Ipv4Addr::new(100, 64, 0, 0));
        (first..first + 1024)
            .map(|i| format!("{}\n", Ipv4Addr::from(base + i)))
            .collect()
    };
    let list = setup.dir.path().join("full.txt");
    write_atomically(&list, addresses(0).as_bytes());
    setup.write_config(&format!(
        "mode = \"driver\"\nmax_deny = 1024\n\n[[blocklists]]\nname = \"full\"\nfile = \"{}\"\nrefresh = \"1s\"\n",
        list.display()
    ));
    let mut daemon = setup.daemon();
    daemon
        .wait_for("blocklist applied at the NIC", UPDATED)
        .unwrap();
    let first = applied(&daemon, "full", 0);
    assert_eq!(first["entries"], 1024, "{first}");
    assert_eq!(first["refused"], 0, "{first}");
    write_atomically(&list, addresses(10).as_bytes());
    daemon
        .wait_for_count("blocklist applied at the NIC", 2, UPDATED)
        .unwrap();
    let second = applied(&daemon, "full", 1);
    assert_eq!(second["entries"], 1024, "{second}");
    assert_eq!(second["inserted"], 10, "{second}");
    assert_eq!(second["deleted"], 10, "{second}");
    assert_eq!(second["refused"], 0, "nothing left out: {second}");
    let maps = api_shield::fastpath::PinnedMaps::open(&setup.pins.layout()).unwrap();
    assert_eq!(maps.deny_keys().unwrap().len(), 1024);
    daemon.stop();
}
