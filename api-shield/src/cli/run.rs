//! `api-shield run --config FILE`: the daemon. Starts it, reloads the config on SIGHUP, reopens
//! the access-log file on SIGUSR1, checks certificate files for changes, and stops cleanly on
//! SIGTERM or SIGINT (the access log's last lines written).

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, Result};
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    config,
    daemon::Daemon,
    systemd,
    telemetry::{access_log, init_logging, LogFormat},
};

/// How often certificate files are checked for changes.
const CERTIFICATE_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Arguments.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The config file.
    #[arg(long, short, default_value = super::maps_args::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Runs the daemon until a stop signal.
pub(super) fn run(args: &Args) -> Result<()> {
    init_logging(args.log_format);
    let config = config::load(&args.config)?;
    if config.fastpath.enabled {
        // First, since nothing else can be done without it.
        crate::fastpath::privileges::check()?;
    }
    config::check_host(&config)?;
    // Its format by default the daemon's.
    access_log::install(&config.access_log, args.log_format).context("starting the access log")?;
    // With one worker, one thread does everything. With more, client connections run on
    // worker threads of their own (`proxy::connection::workers`), and the daemon's own work
    // (accepting, the control socket, metrics, reloads, ban sweeps, fleet and CrowdSec links)
    // on two threads, so a long synchronous step on one (reading a large ban map, say) never
    // stalls accepting or the control socket.
    let mut builder = if config.proxy.workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(2);
        builder
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let served = runtime.block_on(serve(args.config.clone(), config));
    // Every line of the requests served is written before the process ends.
    access_log::access_log().shutdown();
    served
}

async fn serve(path: PathBuf, config: config::Config) -> Result<()> {
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut rotate =
        signal(SignalKind::user_defined1()).context("installing the SIGUSR1 handler")?;
    let daemon = Daemon::start(path, config).await?;
    systemd::ready("serving");
    let watchdog = systemd::spawn_watchdog();
    let mut file_check = tokio::time::interval(CERTIFICATE_CHECK_INTERVAL);
    let signal = loop {
        tokio::select! {
            _ = terminate.recv() => break "SIGTERM",
            _ = interrupt.recv() => break "SIGINT",
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the config");
                // The daemon logs and counts the outcome, and tells the service manager.
                let _ = daemon.reload().await;
            }
            _ = rotate.recv() => {
                access_log::access_log().reopen();
                tracing::info!("SIGUSR1: reopening the access log");
            }
            _ = file_check.tick() => daemon.check_certificates(),
        }
    };
    tracing::info!(signal, "stopping");
    systemd::stopping();
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    daemon.stop().await;
    tracing::info!("stopped");
    Ok(())
}
