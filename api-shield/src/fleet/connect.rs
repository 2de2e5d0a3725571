//! Where the link connects: a `fleet.redis` URL with the ACL user and password added and the
//! TLS roots of `fleet.ca_file`, and, when that server is a Redis Cluster node, the node that
//! holds the fleet's hash slot. Every key of a fleet shares one hash tag, so one node serves
//! all of them: the link talks to that node alone (commands, scripts and the subscription; a
//! cluster relays PUBLISH to every node), and a slot that moves (MOVED, or the node gone) ends
//! the session, so the next one finds the new owner.

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo as _};

use super::link::{Link, LinkError};

/// The connection settings of `url`, with the fleet's credentials.
pub(super) fn info(link: &Link, url: &str) -> Result<ConnectionInfo, LinkError> {
    let info = url.into_connection_info()?;
    let mut settings = info.redis_settings().clone();
    if let Some(user) = &link.config.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = &link.password {
        settings = settings.set_password(&password.0);
    }
    Ok(info.set_redis_settings(settings))
}

/// A client for `info`, trusting `fleet.ca_file` for TLS when given.
pub(super) fn client(link: &Link, info: ConnectionInfo) -> Result<redis::Client, LinkError> {
    let tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
    match &link.config.ca_file {
        Some(ca) if tls => Ok(redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(std::fs::read(ca).map_err(LinkError::Ca)?),
            },
        )?),
        _ => Ok(redis::Client::open(info)?),
    }
}

/// The same settings for another node.
pub(super) fn at(info: &ConnectionInfo, node: (String, u16)) -> ConnectionInfo {
    let addr = match info.addr().clone() {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host: node.0,
            port: node.1,
            insecure,
            tls_params,
        },
        _ => ConnectionAddr::Tcp(node.0, node.1),
    };
    info.clone().set_addr(addr)
}

/// Where `info` points, as `host:port`.
pub(super) fn describe(info: &ConnectionInfo) -> String {
    match info.addr() {
        ConnectionAddr::Tcp(host, port) => format!("redis://{host}:{port}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("rediss://{host}:{port}"),
        other => other.to_string(),
    }
}

/// In a Redis Cluster, the primary that holds the fleet's hash slot (`None` outside a
/// cluster).
pub(super) async fn slot_owner(
    link: &Link,
    redis: &mut redis::aio::MultiplexedConnection,
) -> Result<Option<(String, u16)>, LinkError> {
    let info: String = link
        .timed("INFO", redis::cmd("INFO").arg("cluster").query_async(redis))
        .await?;
    if !info.lines().any(|l| l.trim() == "cluster_enabled:1") {
        return Ok(None);
    }
    let slot: i64 = link
        .timed(
            "CLUSTER KEYSLOT",
            redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(&link.keys.bans)
                .query_async(redis),
        )
        .await?;
    let ranges: Vec<redis::Value> = link
        .timed(
            "CLUSTER SLOTS",
            redis::cmd("CLUSTER").arg("SLOTS").query_async(redis),
        )
        .await?;
    Ok(ranges.iter().find_map(|range| owner(range, slot)))
}

/// The primary of one `CLUSTER SLOTS` entry (`[start, end, [ip, port, id, ...], replicas...]`)
/// when it covers `slot`.
fn owner(range: &redis::Value, slot: i64) -> Option<(String, u16)> {
    let redis::Value::Array(parts) = range else {
        return None;
    };
    let int = |v: &redis::Value| match v {
        redis::Value::Int(n) => Some(*n),
        _ => None,
    };
    let (start, end) = (int(parts.first()?)?, int(parts.get(1)?)?);
    if !(start..=end).contains(&slot) {
        return None;
    }
    let redis::Value::Array(primary) = parts.get(2)? else {
        return None;
    };
    let host = match primary.first()? {
        redis::Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok()?,
        redis::Value::SimpleString(text) => text.clone(),
        _ => return None,
    };
    let port = u16::try_from(int(primary.get(1)?)?).ok()?;
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    #[test]
    fn the_primary_of_the_covering_range_is_the_owner() {
        let range = |start, end, host: &str, port| {
            Value::Array(vec![
                Value::Int(start),
                Value::Int(end),
                Value::Array(vec![
                    Value::BulkString(host.as_bytes().to_vec()),
                    Value::Int(port),
                    Value::BulkString(b"id".to_vec()),
                ]),
            ])
        };
        let slots = [
            range(0, 5460, "10.0.0.1", 7001),
            range(5461, 16383, "10.0.0.2", 7002),
        ];
        let find = |slot| slots.iter().find_map(|r| owner(r, slot));
        assert_eq!(find(5460), Some(("10.0.0.1".to_owned(), 7001)));
        assert_eq!(find(5461), Some(("10.0.0.2".to_owned(), 7002)));
        assert_eq!(owner(&Value::Nil, 1), None);
    }
}
