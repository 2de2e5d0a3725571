//! The hostile clients: seven kinds, each from its own pool of 16 source addresses
//! 127.0.K.1-16 (K = the kind's number; the socket is bound before it connects), each paced at
//! its share of the hostile rate with a cap on what it has in flight:
//!
//! 1. bad tokens (tampered signatures, garbage, none) on the JWT route: 401s, escalation
//!    `auth-failures` bans the source at the NIC;
//! 2. bad API keys over HTTP/2 on the API-key route: 401s, the same rule;
//! 3. invalid bodies on the schema route (malformed JSON, schema violations, wrong media type,
//!    oversized): 400/422/415/413, escalation `invalid-requests`;
//! 4. a greedy client with a valid token bursting past the rate limit: 429s, escalation
//!    `rate-limited`;
//! 5. slowloris: a request head trickled one byte every 500 ms until the daemon cuts it;
//! 6. idle connections opened and abandoned (bare TCP, after the TLS handshake, after the
//!    HTTP/2 preface), held until the daemon closes them;
//! 7. connections reset (RST) right after connecting, mid-head, or mid-body.
//!
//! A banned source's packets are dropped at the NIC, so its connects and exchanges time out:
//! those are counted as NIC timeouts. The pacing loops stop at `stop`; abandoned connections
//! already open stay open until the daemon closes them (that is what the cool-down measures).

use std::{
    net::Ipv4Addr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    sync::Semaphore,
    task::JoinSet,
    time::MissedTickBehavior,
};

use super::{
    client::{request, Sender, Target, Version},
    counts::{Counts, Held},
    stack::Credentials,
};

/// Source addresses per kind.
const POOL: u64 = 16;
/// How long a hostile connect, handshake or exchange may take before it counts as dropped at
/// the NIC (a SYN retransmit comes at 1 s; every answer on loopback takes milliseconds).
const TIMEOUT: Duration = Duration::from_secs(2);
/// Requests per connection of the kinds that send several.
const REQUESTS_PER_CONNECTION: u64 = 3;
/// Requests in one greedy burst (the route allows a burst of 100, then 100/s).
const BURST: u64 = 150;

/// One kind of hostile client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bad bearer tokens on the JWT route.
    BadToken = 1,
    /// Bad API keys on the API-key route, over HTTP/2.
    BadKey = 2,
    /// Invalid bodies on the schema route.
    BadBody = 3,
    /// A valid token bursting past the rate limit.
    Burst = 4,
    /// A request head trickled byte by byte.
    Slowloris = 5,
    /// Connections opened and abandoned.
    Idle = 6,
    /// Connections reset mid-request.
    Reset = 7,
}

/// Every kind.
pub const KINDS: [Kind; 7] = [
    Kind::BadToken,
    Kind::BadKey,
    Kind::BadBody,
    Kind::Burst,
    Kind::Slowloris,
    Kind::Idle,
    Kind::Reset,
];

impl Kind {
    /// The `n`th source address of this kind's pool.
    pub fn source(self, n: u64) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, self as u8, 1 + (n % POOL) as u8)
    }

    /// Actions per second at a total hostile rate of `rps`.
    fn rate(self, rps: f64) -> f64 {
        match self {
            Kind::BadToken | Kind::BadBody | Kind::Reset => rps * 0.2,
            Kind::BadKey | Kind::Idle => rps * 0.15,
            Kind::Slowloris => rps * 0.1,
            // One burst every four seconds whatever the rate: each is 150 requests.
            Kind::Burst => 0.25,
        }
    }

    /// Actions of this kind in flight at most (abandoned connections count until closed).
    fn max_in_flight(self) -> usize {
        match self {
            Kind::Burst => 2,
            Kind::Idle => 32,
            _ => 16,
        }
    }
}

/// What every hostile task shares.
pub struct Hostile {
    /// Where to go.
    pub target: Target,
    /// The greedy client's token, and the legitimate token to tamper with.
    pub credentials: Credentials,
    /// Counters.
    pub counts: Arc<Counts>,
    /// Set when the traffic phase ends.
    pub stop: Arc<AtomicBool>,
}

/// Runs every kind until `stop`, at `rps` actions per second in all.
pub async fn run(hostile: Arc<Hostile>, rps: f64) {
    let mut kinds = JoinSet::new();
    for kind in KINDS {
        kinds.spawn(pace(Arc::clone(&hostile), kind, kind.rate(rps)));
    }
    while kinds.join_next().await.is_some() {}
}

/// One kind's pacing loop: an action per tick, skipped while the kind is at its cap.
async fn pace(hostile: Arc<Hostile>, kind: Kind, rate: f64) {
    if rate <= 0.0 {
        return;
    }
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let in_flight = Arc::new(Semaphore::new(kind.max_in_flight()));
    let mut n: u64 = 0;
    loop {
        ticker.tick().await;
        if hostile.stop.load(Ordering::Relaxed) {
            return;
        }
        n += 1;
        let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
            continue;
        };
        let hostile = Arc::clone(&hostile);
        tokio::spawn(async move {
            let _permit = permit;
            act(&hostile, kind, n).await;
        });
    }
}

async fn act(h: &Hostile, kind: Kind, n: u64) {
    let from = kind.source(n);
    match kind {
        Kind::BadToken => bad_tokens(h, from, n).await,
        Kind::BadKey => bad_keys(h, from, n).await,
        Kind::BadBody => bad_bodies(h, from, n).await,
        Kind::Burst => burst(h, from, n).await,
        Kind::Slowloris => slowloris(h, from).await,
        Kind::Idle => idle(h, from, n).await,
        Kind::Reset => reset(h, from, n).await,
    }
}

impl Hostile {
    /// A connection for requests, or `None` (counted) when it could not be made.
    async fn open(&self, from: Ipv4Addr, version: Version) -> Option<Sender> {
        Counts::bump(&self.counts.hostile_actions);
        match self.target.open(from, version, TIMEOUT).await {
            Ok(sender) => Some(sender),
            Err(error) => {
                self.failed(&error);
                None
            }
        }
    }

    /// Counts a failed step: a timeout means the source is dropped at the NIC.
    fn failed(&self, error: &std::io::Error) {
        if error.kind() == std::io::ErrorKind::TimedOut {
            Counts::bump(&self.counts.nic_timeouts);
        }
    }

    /// Sends one hostile request; false when the connection is no longer usable.
    async fn send(
        &self,
        conn: &mut Sender,
        req: http::Request<http_body_util::Full<bytes::Bytes>>,
    ) -> bool {
        Counts::bump(&self.counts.hostile_actions);
        match conn.send(req, TIMEOUT).await {
            Ok((status, _)) => {
                if status.is_success() {
                    Counts::bump(&self.counts.hostile_served);
                } else if status.is_client_error() {
                    Counts::bump(&self.counts.hostile_refused);
                }
                true
            }
            Err(error) => {
                self.failed(&error);
                false
            }
        }
    }

    /// A TLS connection (no HTTP yet), or `None` (counted).
    async fn tls(
        &self,
        from: Ipv4Addr,
    ) -> Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        Counts::bump(&self.counts.hostile_actions);
        let tcp = match self.target.tcp(from, TIMEOUT).await {
            Ok(tcp) => tcp,
            Err(error) => {
                self.failed(&error);
                return None;
            }
        };
        match self.target.tls(tcp, Version::H1, TIMEOUT).await {
            Ok(tls) => Some(tls),
            Err(error) => {
                self.failed(&error);
                None
            }
        }
    }
}

/// A token the `soak` issuer never signed: the legitimate one with another signature, garbage
/// shaped like a JWT, or nothing at all.
fn bad_token(legit: &str, n: u64, i: u64) -> Option<String> {
    match (n + i) % 3 {
        0 => {
            let (signed, _) = legit.rsplit_once('.')?;
            Some(format!("Bearer {signed}.{:0>43x}", n * 1000 + i))
        }
        1 => Some(format!(
            "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4{n}x{i}.c2lnbmF0dXJl"
        )),
        _ => None,
    }
}

async fn bad_tokens(h: &Hostile, from: Ipv4Addr, n: u64) {
    let Some(mut conn) = h.open(from, Version::H1).await else {
        return;
    };
    for i in 0..REQUESTS_PER_CONNECTION {
        let token = bad_token(&h.credentials.legit_token, n, i);
        let headers: Vec<(&str, &str)> = token
            .as_deref()
            .map(|t| ("authorization", t))
            .into_iter()
            .collect();
        let req = request("GET", &format!("/api/v1/users/{n}"), &headers, "");
        if !h.send(&mut conn, req).await {
            return;
        }
    }
}

async fn bad_keys(h: &Hostile, from: Ipv4Addr, n: u64) {
    let Some(mut conn) = h.open(from, Version::H2).await else {
        return;
    };
    for i in 0..REQUESTS_PER_CONNECTION {
        let key = format!("ask_not-a-key-{n}-{i}");
        let headers: &[(&str, &str)] = if i == 2 { &[] } else { &[("x-api-key", &key)] };
        if !h
            .send(
                &mut conn,
                request("GET", "/api/v1/admin/stats", headers, ""),
            )
            .await
        {
            return;
        }
    }
}

async fn bad_bodies(h: &Hostile, from: Ipv4Addr, n: u64) {
    let Some(mut conn) = h.open(from, Version::H1).await else {
        return;
    };
    for i in 0..REQUESTS_PER_CONNECTION {
        let json = ("content-type", "application/json");
        let req = match (n * REQUESTS_PER_CONNECTION + i) % 4 {
            // Malformed JSON: 400.
            0 => request(
                "POST",
                "/api/v1/users",
                &[json],
                r#"{"name": "x", "email":"#,
            ),
            // Schema violations (empty name, age out of range, no email): 422.
            1 => request(
                "POST",
                "/api/v1/users",
                &[json],
                r#"{"name": "", "age": 200}"#,
            ),
            // Not JSON: 415.
            2 => request(
                "POST",
                "/api/v1/users",
                &[("content-type", "text/plain")],
                "name=x",
            ),
            // Over the route's 4 KiB: 413.
            _ => request("POST", "/api/v1/users", &[json], vec![b' '; 8192]),
        };
        if !h.send(&mut conn, req).await {
            return;
        }
    }
}

async fn burst(h: &Hostile, from: Ipv4Addr, n: u64) {
    let Some(mut conn) = h.open(from, Version::H1).await else {
        return;
    };
    let bearer = format!("Bearer {}", h.credentials.greedy_token);
    for i in 0..BURST {
        let req = request(
            "GET",
            &format!("/api/v1/users/{}", n * BURST + i),
            &[("authorization", &bearer)],
            "",
        );
        if !h.send(&mut conn, req).await {
            return;
        }
    }
}

/// Waits until the daemon closes `stream` (EOF or an error), reading and discarding what it
/// sends (a 408, a TLS `close_notify`).
async fn until_closed(stream: &mut (impl tokio::io::AsyncRead + Unpin)) {
    let mut buf = [0u8; 1024];
    while let Ok(read) = stream.read(&mut buf).await {
        if read == 0 {
            break;
        }
    }
}

async fn slowloris(h: &Hostile, from: Ipv4Addr) {
    let Some(tls) = h.tls(from).await else {
        return;
    };
    let held = Held::new(&h.counts.held_open);
    let opened = Instant::now();
    let (mut reader, mut writer) = tokio::io::split(tls);
    if writer
        .write_all(b"GET /api/v1/users/1 HTTP/1.1\r\nhost: localhost\r\nx-slow: ")
        .await
        .is_ok()
    {
        let mut trickle = tokio::time::interval(Duration::from_millis(500));
        trickle.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let closed = until_closed(&mut reader);
        tokio::pin!(closed);
        loop {
            tokio::select! {
                () = &mut closed => break,
                _ = trickle.tick() => {
                    if writer.write_all(b"a").await.is_err() || writer.flush().await.is_err() {
                        break;
                    }
                }
            }
        }
    }
    h.counts.reaped_after(opened.elapsed());
    drop(held);
}

async fn idle(h: &Hostile, from: Ipv4Addr, n: u64) {
    match n % 3 {
        // Bare TCP: no TLS ClientHello ever comes.
        0 => {
            Counts::bump(&h.counts.hostile_actions);
            let mut tcp = match h.target.tcp(from, TIMEOUT).await {
                Ok(tcp) => tcp,
                Err(error) => return h.failed(&error),
            };
            let _held = Held::new(&h.counts.held_open);
            let opened = Instant::now();
            until_closed(&mut tcp).await;
            h.counts.reaped_after(opened.elapsed());
        }
        // TLS done, then no request.
        1 => {
            let Some(mut tls) = h.tls(from).await else {
                return;
            };
            let _held = Held::new(&h.counts.held_open);
            let opened = Instant::now();
            until_closed(&mut tls).await;
            h.counts.reaped_after(opened.elapsed());
        }
        // HTTP/2 preface and settings exchanged, then no stream.
        _ => {
            let Some(mut conn) = h.open(from, Version::H2).await else {
                return;
            };
            let _held = Held::new(&h.counts.held_open);
            let opened = Instant::now();
            conn.closed().await;
            h.counts.reaped_after(opened.elapsed());
        }
    }
}

async fn reset(h: &Hostile, from: Ipv4Addr, n: u64) {
    let partial: &[u8] = match n % 3 {
        0 => {
            // Reset right after the TCP handshake.
            Counts::bump(&h.counts.hostile_actions);
            match h.target.tcp(from, TIMEOUT).await {
                Ok(tcp) => {
                    let _ = tcp.set_zero_linger();
                    Counts::bump(&h.counts.resets);
                }
                Err(error) => h.failed(&error),
            }
            return;
        }
        1 => b"GET /api/v1/users/1 HTTP/1.1\r\nhost: loc",
        _ => {
            b"POST /api/v1/users HTTP/1.1\r\nhost: localhost\r\n\
               content-type: application/json\r\ncontent-length: 2048\r\n\r\n\
               {\"name\": \"half a body\", \"email\": \""
        }
    };
    let Some(mut tls) = h.tls(from).await else {
        return;
    };
    if tls.write_all(partial).await.is_err() || tls.flush().await.is_err() {
        return;
    }
    // Let the daemon start on it, then vanish with an RST.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = tls.get_ref().0.set_zero_linger();
    drop(tls);
    Counts::bump(&h.counts.resets);
}
