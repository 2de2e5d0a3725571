//! `api-shield run --config FILE`: the daemon. Starts the fast path (logging its events and
//! sweeping expired bans) and the HTTPS listeners, and stops cleanly on SIGTERM or SIGINT.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, Result};
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    config,
    fastpath::{self, Fastpath, PinnedMaps, SystemClock},
    proxy::server::ProxyServer,
    telemetry::{init_logging, LogFormat},
};

/// How often certificate files are checked for changes.
const CERTIFICATE_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// How often expired bans are removed from the map.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config file.
    #[arg(long, short, default_value = super::maps_args::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Runs the daemon until a stop signal.
pub fn run(args: &Args) -> Result<()> {
    init_logging(args.log_format);
    let config = config::load(&args.config)?;
    // One worker: a single-threaded runtime, which spares the work-stealing machinery.
    let mut builder = if config.proxy.workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(config.proxy.workers);
        builder
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: config::Config) -> Result<()> {
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let fastpath = if config.fastpath.enabled {
        let mut fastpath = Fastpath::start(&config.fastpath)?;
        if let Some(events) = fastpath.take_events() {
            tokio::spawn(async move {
                if let Err(error) = fastpath::log_events(events).await {
                    tracing::error!(%error, "drop events unavailable");
                }
            });
        }
        if let Some(logger) = fastpath.take_logger() {
            tokio::spawn(async move {
                if let Err(error) = fastpath::forward_program_log(logger).await {
                    tracing::error!(%error, "program log unavailable");
                }
            });
        }
        if let Some(maps) = fastpath.take_maps() {
            tokio::spawn(sweep_bans(maps));
        }
        Some(fastpath)
    } else {
        tracing::info!("fast path disabled (fastpath.enabled = false)");
        None
    };
    let proxy = if config.listeners.is_empty() {
        None
    } else {
        Some(ProxyServer::start(&config).await?)
    };
    let listening: Vec<String> = proxy
        .iter()
        .flat_map(|p| p.addresses.iter())
        .map(|(name, addr)| format!("{name}={addr}"))
        .collect();
    let attached: Vec<String> = fastpath
        .iter()
        .flat_map(Fastpath::attachments)
        .map(|a| format!("{}:{}", a.interface, a.mode.as_str()))
        .collect();
    tracing::info!(
        attached = attached.join(","),
        listening = listening.join(","),
        dry_run = config.fastpath.dry_run,
        "ready"
    );
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut file_check = tokio::time::interval(CERTIFICATE_CHECK_INTERVAL);
    let signal = loop {
        tokio::select! {
            _ = terminate.recv() => break "SIGTERM",
            _ = interrupt.recv() => break "SIGINT",
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading certificates");
                if let Some(proxy) = &proxy {
                    proxy.reload_certificates(false);
                }
            }
            _ = file_check.tick() => {
                if let Some(proxy) = &proxy {
                    proxy.reload_certificates(true);
                }
            }
        }
    };
    tracing::info!(signal, "stopping");
    if let Some(proxy) = proxy {
        proxy.stop();
    }
    if let Some(fastpath) = fastpath {
        fastpath.stop();
    }
    tracing::info!("stopped");
    Ok(())
}

async fn sweep_bans(mut maps: PinnedMaps) {
    let mut ticker = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        ticker.tick().await;
        match maps.sweep_expired_bans(&SystemClock) {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "expired bans removed"),
            Err(error) => tracing::warn!(%error, "ban sweep failed"),
        }
    }
}
