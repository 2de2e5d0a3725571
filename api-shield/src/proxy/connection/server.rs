//! Listeners: HTTPS (TLS handshake, then HTTP/1.1 or HTTP/2 by ALPN, on the connection workers
//! when there are several) and the optional plain-HTTP listener beside it (`redirect.rs`).

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use arc_swap::ArcSwap;

use http::Request;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_rustls::TlsAcceptor;

use crate::proxy::{
    connection::conn_limit::{ConnectionLimiter, ConnectionPermit, Refused},
    connection::drain::{Drain, Held, Watcher},
    connection::evict::Evictions,
    connection::head_timer::HeadDeadline,
    connection::idle::Tracked,
    connection::parse_errors::{self, ParseErrors},
    connection::proxy_protocol,
    connection::redirect::{serve_redirect, RedirectTarget},
    connection::serve_http::{Protocol, Served},
    connection::supervise::{supervise, Ended},
    connection::tls::{self, Certificates, TlsError},
    connection::workers::{Dispatcher, Workers, WorkersError},
    request::client::Client,
    request::deadline::ExchangeTimer,
    request::handler::{Connection, Proxy},
};
use crate::{
    accept::{self, AcceptErrors},
    config::{Config, ProxyConfig},
    telemetry::log_limit::LogLimit,
};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// A listener's TLS could not be set up.
    #[error("listener `{listener}`: {source}")]
    Tls {
        /// Listener name.
        listener: String,
        /// Why.
        #[source]
        source: TlsError,
    },
    /// A route, upstream or policy could not be compiled.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The connection workers could not start.
    #[error(transparent)]
    Workers(#[from] WorkersError),
    /// A port below 1024 without the capability to bind it.
    #[error("listener `{listener}`: cannot listen on {addr}: ports below 1024 need CAP_NET_BIND_SERVICE, which the shipped systemd unit leaves out; add it with `systemctl edit api-shield` (README, Operations)")]
    PrivilegedPort {
        /// Listener name.
        listener: String,
        /// Address.
        addr: SocketAddr,
    },
    /// A socket could not be bound.
    #[error("listener `{listener}`: cannot listen on {addr}: {source}")]
    Bind {
        /// Listener name.
        listener: String,
        /// Address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What the listeners serve with, swapped whole on reload: requests already running keep the
/// proxy they started with, new ones get the new one.
#[derive(Debug)]
pub(crate) struct Live {
    pub(super) proxy: ArcSwap<Proxy>,
    pub(super) settings: ArcSwap<ProxyConfig>,
    pub(super) evictions: Arc<Evictions>,
}

/// The running listeners.
#[derive(Debug)]
pub(crate) struct ProxyServer {
    tasks: Vec<JoinHandle<()>>,
    refreshes: Vec<JoinHandle<()>>,
    certificates: Vec<(String, Arc<Certificates>)>,
    live: Arc<Live>,
    listeners: Vec<crate::config::ListenerConfig>,
    escalator: Option<Arc<crate::escalate::Escalator>>,
    drain: Drain,
    /// The threads HTTPS connections are served on, with more than one worker (else the
    /// daemon's runtime serves them).
    workers: Option<Workers>,
    /// Where each listener listens, by name (HTTPS and redirect).
    pub addresses: Vec<(String, SocketAddr)>,
}

impl ProxyServer {
    /// Binds every listener and starts serving.
    pub(crate) async fn start(
        config: &Config,
        escalator: Option<Arc<crate::escalate::Escalator>>,
    ) -> Result<ProxyServer, ProxyError> {
        let proxy =
            Proxy::new(config, crate::policy::clock::system())?.with_escalator(escalator.clone());
        let live = Arc::new(Live {
            proxy: ArcSwap::from_pointee(proxy),
            settings: ArcSwap::from_pointee(config.proxy.clone()),
            evictions: Arc::default(),
        });
        if let Some(escalator) = &escalator {
            escalator.close_connections_with(Arc::clone(&live.evictions));
        }
        // One limiter for all listeners: its limits are per client address and in total.
        let limiter = ConnectionLimiter::new(
            config.proxy.max_connections_per_ip,
            config.proxy.max_connections,
        );
        let mut server = ProxyServer {
            tasks: Vec::new(),
            refreshes: live.proxy.load().policies().spawn_refreshes(),
            certificates: Vec::new(),
            live: Arc::clone(&live),
            listeners: config.listeners.clone(),
            escalator,
            drain: Drain::default(),
            workers: match config.proxy.workers {
                0 | 1 => None,
                count => Some(Workers::start(count)?),
            },
            addresses: Vec::new(),
        };
        for (i, listener) in config.listeners.iter().enumerate() {
            let name = listener
                .name
                .clone()
                .unwrap_or_else(|| format!("listener-{i}"));
            let (tls, certificates) =
                tls::server_config(&listener.tls).map_err(|source| ProxyError::Tls {
                    listener: name.clone(),
                    source,
                })?;
            server.certificates.push((name.clone(), certificates));
            let addr = listener.bind;
            let tcp = bind(&name, addr).await?;
            let local = tcp.local_addr().unwrap_or(addr);
            tracing::info!(listener = %name, addr = %local, "listening (HTTPS)");
            server.addresses.push((name.clone(), local));
            let context = ListenerContext {
                acceptor: TlsAcceptor::from(tls),
                tls_failures: crate::telemetry::metrics()
                    .tls_failures
                    .with_label_values(&[name.as_str()]),
                live: Arc::clone(&live),
                limiter: Arc::clone(&limiter),
                proxy_protocol: listener.proxy_protocol,
                name: name.clone(),
                dispatcher: server.workers.as_ref().map(Workers::dispatcher),
            };
            server.tasks.push(tokio::spawn(serve_https(
                tcp,
                context,
                server.drain.watcher(),
            )));
            if let Some(redirect) = &listener.redirect {
                let addr = redirect.bind;
                let tcp = bind(&name, addr).await?;
                let plain = tcp.local_addr().unwrap_or(addr);
                tracing::info!(listener = %name, addr = %plain, "listening (HTTP, redirects to HTTPS)");
                server.addresses.push((format!("{name}-redirect"), plain));
                let target = RedirectTarget {
                    https_port: local.port(),
                    certificates: Arc::clone(&server.certificates.last().expect("pushed above").1),
                    canonical: redirect.canonical_host.clone(),
                };
                server.tasks.push(tokio::spawn(serve_redirect(
                    tcp,
                    Arc::new(target),
                    Arc::clone(&live),
                    Arc::clone(&limiter),
                    server.drain.watcher(),
                )));
            }
        }
        Ok(server)
    }

    /// Reloads every listener's certificates from their files (all of them when `only_changed`
    /// is false, else those whose files changed). A listener whose new files are bad keeps its
    /// old certificates and the error is logged.
    pub(crate) fn reload_certificates(&self, only_changed: bool) {
        for (listener, certificates) in &self.certificates {
            if only_changed && !certificates.files_changed() {
                continue;
            }
            match certificates.reload() {
                Ok(()) => tracing::info!(listener = %listener, "certificates reloaded"),
                Err(error) => {
                    tracing::error!(
                        listener = %listener,
                        %error,
                        "certificate reload failed; keeping the previous ones"
                    );
                }
            }
        }
    }

    /// Compiles a new config's routes and policies (reading key, schema and OpenAPI files) for
    /// [`ProxyServer::commit`]; nothing running changes. Blocking: run it off the runtime's
    /// workers.
    pub(crate) fn compile(config: &Config) -> Result<Proxy, ProxyError> {
        Ok(Proxy::new(config, crate::policy::clock::system())?)
    }

    /// Serves a compiled config: swaps routes, policies and settings in, restarts key refreshes
    /// and reloads certificates. Cannot fail. Open connections and running requests finish on
    /// what they started with. Listener addresses and certificate paths are read at start only:
    /// a change to them is logged and needs a restart.
    pub(crate) fn commit(&mut self, proxy: Proxy, config: &Config) {
        let proxy = proxy.with_escalator(self.escalator.clone());
        if let Some(escalator) = &self.escalator {
            escalator.update(config);
        }
        if config.listeners != self.listeners {
            tracing::warn!("listener changes (addresses, certificate paths, TLS settings) take effect at the next restart");
        }
        for task in self.refreshes.drain(..) {
            task.abort();
        }
        self.refreshes = proxy.policies().spawn_refreshes();
        self.live.proxy.store(Arc::new(proxy));
        self.live.settings.store(Arc::new(config.proxy.clone()));
        self.reload_certificates(false);
    }

    /// Stops accepting, lets open connections finish their exchanges for up to `timeout`,
    /// then drops what is left.
    pub(crate) async fn stop(self, timeout: std::time::Duration) {
        let open = self.drain.open();
        if self.drain.drain(timeout).await {
            tracing::info!(connections = open, "connections drained");
        } else {
            tracing::warn!(
                left = self.drain.open(),
                timeout_secs = timeout.as_secs(),
                "drain timeout: closing the connections still open"
            );
        }
        for task in self.tasks.into_iter().chain(self.refreshes) {
            task.abort();
        }
        // What is left on the workers is dropped, and its access-log lines written, before the
        // daemon goes on stopping.
        if let Some(workers) = self.workers {
            workers.stop().await;
        }
    }
}

async fn bind(listener: &str, addr: SocketAddr) -> Result<TcpListener, ProxyError> {
    TcpListener::bind(addr).await.map_err(|source| {
        if source.kind() == std::io::ErrorKind::PermissionDenied && addr.port() < 1024 {
            ProxyError::PrivilegedPort {
                listener: listener.to_owned(),
                addr,
            }
        } else {
            ProxyError::Bind {
                listener: listener.to_owned(),
                addr,
                source,
            }
        }
    })
}

/// A refused connection is logged at most once per source per 10 s.
static REFUSAL_LINES: std::sync::LazyLock<LogLimit> =
    std::sync::LazyLock::new(|| LogLimit::new(std::time::Duration::from_secs(10)));

/// What every connection of one HTTPS listener shares.
struct ListenerContext {
    acceptor: TlsAcceptor,
    tls_failures: prometheus::IntCounter,
    live: Arc<Live>,
    limiter: Arc<ConnectionLimiter>,
    proxy_protocol: bool,
    name: String,
    /// Where connections are served, with more than one worker.
    dispatcher: Option<Dispatcher>,
}

async fn serve_https(tcp: TcpListener, context: ListenerContext, mut watcher: Watcher) {
    let context = Arc::new(context);
    let mut errors = AcceptErrors::new(context.name.clone());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = accept::next(&tcp, &mut errors) => accepted,
            () = watcher.stopping() => return,
        };
        let held = watcher.hold();
        let (shared, connection_watcher) = (Arc::clone(&context), watcher.clone());
        match &context.dispatcher {
            None => {
                tokio::spawn(serve_connection(
                    stream,
                    peer,
                    shared,
                    connection_watcher,
                    held,
                ));
            }
            Some(dispatcher) => dispatcher.take(stream, peer, move |stream| {
                serve_connection(stream, peer, shared, connection_watcher, held)
            }),
        }
    }
}

async fn serve_connection(
    mut stream: tokio::net::TcpStream,
    peer: SocketAddr,
    context: Arc<ListenerContext>,
    mut watcher: Watcher,
    _held: Held,
) {
    let settings = context.live.settings.load_full();
    let Some(peer) = client_of(&mut stream, peer, context.proxy_protocol, &settings).await else {
        return;
    };
    let Some(permit) = admit(&context.limiter, peer) else {
        return;
    };
    let mut eviction = context.live.evictions.watch();
    let _ = stream.set_nodelay(true);
    // The handshake counts against the header timeout too (slow TLS clients).
    let tls = match tokio::time::timeout(settings.header_timeout, context.acceptor.accept(stream))
        .await
    {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "TLS handshake failed");
            context.tls_failures.inc();
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            context.tls_failures.inc();
            return;
        }
    };
    let connection = Arc::new(Connection {
        https: true,
        client: Client::direct(peer.ip()),
        permit: Some(Arc::new(permit)),
        request_timer: ExchangeTimer::new(),
        response_timer: ExchangeTimer::new(),
    });
    let live = Arc::clone(&context.live);
    let service = service_fn(move |request: Request<Incoming>| {
        let proxy = live.proxy.load_full();
        let connection = Arc::clone(&connection);
        async move { Ok::<_, Infallible>(proxy.handle(request, &connection).await) }
    });
    let protocol = Protocol::from_alpn(tls.get_ref().1.alpn_protocol());
    let head = HeadDeadline::new();
    let tls = ParseErrors::new(tls, parse_error_answer(&context.live, peer, true));
    let (tls, activity) = Tracked::new(tls);
    let mut served = Served::new(
        protocol,
        TokioIo::new(tls),
        service,
        &settings,
        head.timer(),
    );
    let watchdog = async {
        tokio::select! {
            () = activity.expired(settings.idle_timeout) => Watchdog::Idle,
            () = head.overdue(settings.header_timeout) => Watchdog::HeadTimeout,
            () = watcher.stopping() => Watchdog::Stopping,
            () = eviction.banned(peer.ip()) => Watchdog::Banned,
        }
    };
    let result = match supervise(&mut served, watchdog).await {
        Ended::Served(result) => result,
        Ended::Watchdog(Watchdog::Idle) => {
            tracing::debug!(%peer, "connection closed: idle");
            crate::telemetry::metrics().connections.idle_closed.inc();
            return;
        }
        Ended::Watchdog(Watchdog::HeadTimeout) => {
            tracing::debug!(%peer, "connection closed: no request head within the header timeout");
            return;
        }
        Ended::Watchdog(Watchdog::Banned) => {
            // The exchange in progress (often the very refusal that got it banned) is finished,
            // then the connection closes; its packets are dropped at the NIC from now on, so
            // the wait is bounded by the header timeout rather than left to TCP's retries.
            tracing::debug!(%peer, "closing the connection: its client was banned");
            served.graceful_shutdown();
            match tokio::time::timeout(settings.header_timeout, served).await {
                Ok(result) => result,
                Err(_) => return,
            }
        }
        Ended::Watchdog(Watchdog::Stopping) => {
            // Stopping: finish the exchange in progress, then close (GOAWAY on HTTP/2).
            served.graceful_shutdown();
            served.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// What ends a client connection from outside.
enum Watchdog {
    /// Nothing moved for `proxy.idle_timeout`.
    Idle,
    /// An HTTP/1.1 request head was awaited for longer than `proxy.header_timeout`.
    HeadTimeout,
    /// The daemon is stopping.
    Stopping,
    /// The client was banned: its packets are dropped from now on, so nothing more can come.
    Banned,
}

/// How a connection from `peer` answers requests hyper cannot parse: with the proxy in use
/// when it happens.
pub(super) fn parse_error_answer(
    live: &Arc<Live>,
    peer: SocketAddr,
    https: bool,
) -> parse_errors::Answer {
    let live = Arc::clone(live);
    Arc::new(move |denial| {
        live.proxy
            .load()
            .parse_error_answer(denial, peer.ip(), https)
    })
}

/// A place for a connection from `peer` under the connection limits, or `None` (logged and
/// counted) when it must be closed.
pub(super) fn admit(
    limiter: &Arc<ConnectionLimiter>,
    peer: SocketAddr,
) -> Option<ConnectionPermit> {
    match limiter.try_acquire(peer.ip()) {
        Ok(permit) => Some(permit),
        Err(refused) => {
            crate::telemetry::metrics()
                .connections
                .refused
                .with_label_values(&[refused.label()])
                .inc();
            // One line per source (per address, or for all at once when the total is the
            // limit) per interval, saying how many were left out: a client opening connections
            // in a loop must not multiply log lines (the metric above counts every refusal).
            let now = std::time::Instant::now();
            match refused {
                Refused::PerAddress => {
                    if let Some(suppressed) = REFUSAL_LINES.allow(peer.ip(), now) {
                        tracing::warn!(%peer, suppressed, "connection refused: too many open from this address");
                    }
                }
                Refused::Total => {
                    let all = std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);
                    if let Some(suppressed) = REFUSAL_LINES.allow(all, now) {
                        tracing::warn!(%peer, suppressed, "connection refused: proxy.max_connections are open");
                    }
                }
            }
            None
        }
    }
}

/// The client of a connection: its peer, or on a PROXY protocol listener the client the
/// header names (read only from trusted proxies). `None` refuses the connection.
async fn client_of(
    stream: &mut tokio::net::TcpStream,
    peer: SocketAddr,
    proxy_protocol: bool,
    settings: &ProxyConfig,
) -> Option<SocketAddr> {
    if !proxy_protocol {
        return Some(peer);
    }
    if !settings
        .trusted_proxies
        .iter()
        .any(|net| net.contains(&peer.ip()))
    {
        tracing::warn!(%peer, "connection refused: PROXY protocol listener, peer not a trusted proxy");
        return None;
    }
    match tokio::time::timeout(settings.header_timeout, proxy_protocol::read_header(stream)).await {
        Ok(Ok(client)) => Some(client.unwrap_or(peer)),
        Ok(Err(error)) => {
            tracing::warn!(%peer, %error, "connection refused");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "PROXY header timed out");
            None
        }
    }
}
