//! The legitimate load of bench-flood, from the sender namespace, all three at once: a
//! keep-alive client (wrk, 10 connections), a NAT-like address (wrk, 200 connections from one
//! source address) and a stream of new clients, each a fresh TLS connection from an address
//! never seen before (curl bound to it).

use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::topology::{ip, run, Topology};

use crate::receiver::RX;

/// `count` sender addresses in 10.202.`block`.0/24, added to the sender's veth.
pub fn new_addresses(topology: &Topology, block: u8, count: u32) -> Result<Vec<String>> {
    let mut addresses = Vec::new();
    for i in 1..=count.min(250) {
        let address = format!("10.202.{block}.{i}");
        ip(&[
            "-n",
            &topology.tx_ns,
            "addr",
            "add",
            &format!("{address}/16"),
            "dev",
            &topology.tx_if,
        ])?;
        addresses.push(address);
    }
    Ok(addresses)
}

/// What one wrk run measured.
#[derive(Debug, Clone, Copy)]
pub struct Goodput {
    pub rps: f64,
    pub p99_ms: f64,
}

/// wrk with one thread and `connections` keep-alive connections from the sender to `address`.
pub fn wrk(tx_ns: &str, address: &str, connections: u32, seconds: u32) -> Result<Goodput> {
    let out = match run(
        "ip",
        &[
            "netns",
            "exec",
            tx_ns,
            "wrk",
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--timeout",
            "5s",
            "--latency",
            &format!("https://{address}/"),
        ],
        None,
    ) {
        Ok(out) => out,
        // wrk's first connection did not get through the flood within its timeout: the client
        // was served nothing, which is a measure, not a failure of the benchmark.
        Err(error) if error.to_string().contains("unable to connect") => {
            return Ok(Goodput {
                rps: 0.0,
                p99_ms: WRK_TIMEOUT_MS,
            })
        }
        Err(error) => return Err(error),
    };
    let rps = out
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .context("wrk printed no Requests/sec")?;
    let p99 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| duration_ms(v.trim()))
        .transpose()?
        .context("wrk printed no 99th percentile")?;
    Ok(Goodput { rps, p99_ms: p99 })
}

/// wrk's request timeout (`--timeout 5s`): a client that cannot connect at all is reported as
/// 0 req/s with this p99.
const WRK_TIMEOUT_MS: f64 = 5000.0;

/// A wrk duration (`812.00us`, `2.31ms`, `1.02s`) in milliseconds.
fn duration_ms(text: &str) -> Result<f64> {
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        bail!("unknown duration {text}");
    };
    Ok(number.parse::<f64>()? * factor)
}

/// One fresh TLS connection and request from each address, `parallel` at a time (curl, 3 s to
/// connect, 5 s in all): how many got 200, and the connect times of those that connected.
pub fn new_clients(tx_ns: &str, addresses: &[String], parallel: usize) -> Result<(u32, Vec<f64>)> {
    let chunks: Vec<Vec<String>> = addresses
        .chunks(addresses.len().div_ceil(parallel.max(1)).max(1))
        .map(<[String]>::to_vec)
        .collect();
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let tx_ns = tx_ns.to_owned();
            std::thread::spawn(move || -> Result<Vec<(bool, Option<f64>)>> {
                chunk
                    .iter()
                    .map(|address| {
                        let out = Command::new("ip")
                            .args(["netns", "exec", &tx_ns, "curl", "-sk", "-o", "/dev/null"])
                            .args(["--interface", address, "--connect-timeout", "3", "-m", "5"])
                            .args(["-w", "%{http_code} %{time_connect}"])
                            .arg(format!("https://{RX}/"))
                            .output()?;
                        let text = String::from_utf8_lossy(&out.stdout).into_owned();
                        let mut parts = text.split_whitespace();
                        let ok = parts.next() == Some("200");
                        let connect = parts
                            .next()
                            .and_then(|t| t.parse::<f64>().ok())
                            .filter(|t| *t > 0.0)
                            .map(|t| t * 1000.0);
                        Ok((ok, connect))
                    })
                    .collect()
            })
        })
        .collect();
    let mut ok = 0;
    let mut connects = Vec::new();
    for handle in handles {
        let results = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        for (success, connect) in results {
            ok += u32::from(success);
            connects.extend(connect);
        }
    }
    Ok((ok, connects))
}

/// The value at quantile `q` of `values` (nearest rank), NaN when empty.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
