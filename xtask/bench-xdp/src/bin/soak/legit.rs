//! The legitimate clients: from 127.0.0.1 (allowed at the NIC and in `never_ban`), one
//! HTTP/1.1 and one HTTP/2 keep-alive connection, each sending a paced mix of a JWT-authenticated
//! GET (rate-limited route), an API-key GET and a schema-valid JSON POST. Every request must get
//! its expected status; anything else (another status, an error, no answer within the request
//! timeout) is a failure. A connection the server closed between two requests is counted as a
//! reconnect and replaced.

use std::{
    net::Ipv4Addr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use http::StatusCode;
use tokio::time::MissedTickBehavior;

use super::{
    client::{request, Sender, Target, Version},
    counts::Counts,
    stack::Credentials,
};

/// How long one legitimate exchange may take (the daemon's request timeout).
const TIMEOUT: Duration = Duration::from_secs(5);

/// Runs one legitimate client until `stop`, sending `rps` requests per second over `version`.
pub async fn run(
    target: Target,
    version: Version,
    rps: f64,
    credentials: Credentials,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
) {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rps.max(0.1)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let bearer = format!("Bearer {}", credentials.legit_token);
    let mut sender: Option<Sender> = None;
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        n += 1;
        if sender.as_ref().is_some_and(Sender::is_closed) {
            // Not a failed request, but worth seeing: nothing should close a busy connection.
            Counts::bump(&counts.legit_reconnects);
            sender = None;
        }
        let mut conn = match sender.take() {
            Some(conn) => conn,
            None => match target.open(Ipv4Addr::LOCALHOST, version, TIMEOUT).await {
                Ok(conn) => conn,
                Err(error) => {
                    Counts::bump(&counts.legit_sent);
                    counts.legit_failure(format!("{version:?}: connect: {error}"));
                    continue;
                }
            },
        };
        let (what, req, expect) = match n % 3 {
            0 => (
                "GET /api/v1/users/{id} (JWT)",
                request(
                    "GET",
                    &format!("/api/v1/users/{}", n % 1000),
                    &[("authorization", &bearer)],
                    "",
                ),
                StatusCode::OK,
            ),
            1 => (
                "GET /api/v1/admin/stats (API key)",
                request(
                    "GET",
                    "/api/v1/admin/stats",
                    &[("x-api-key", &credentials.api_key)],
                    "",
                ),
                StatusCode::OK,
            ),
            _ => (
                "POST /api/v1/users (valid JSON)",
                request(
                    "POST",
                    "/api/v1/users",
                    &[("content-type", "application/json")],
                    format!(r#"{{"name": "user {n}", "email": "user{n}@example.com", "age": 30}}"#),
                ),
                StatusCode::CREATED,
            ),
        };
        Counts::bump(&counts.legit_sent);
        match conn.send(req, TIMEOUT).await {
            Ok((status, _)) if status == expect => {
                Counts::bump(&counts.legit_ok);
                sender = Some(conn);
            }
            Ok((status, body)) => {
                counts.legit_failure(format!(
                    "{version:?} {what}: {status} {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ));
                sender = Some(conn);
            }
            Err(error) => counts.legit_failure(format!("{version:?} {what}: {error}")),
        }
    }
}
