//! The daemon config the systemd test installs: the fast path in driver mode on the server end
//! of the test's veth pair, HTTPS with an ad hoc certificate on every address, the demo API as
//! the one upstream, and the admin listener as shipped. Plus the two variants the reload step
//! writes: a valid change, and a file the daemon must refuse.

/// Where the demo API listens inside the container (the upstream).
pub const DEMO_API_BIND: &str = "127.0.0.1:9000";
/// The HTTPS port.
pub const HTTPS_PORT: u16 = 8443;
/// A path the demo API answers with 200 through the route below.
pub const HTTPS_PATH: &str = "/api/v1/users/7";
/// A documentation network (RFC 5737) the reloaded config denies; it never covers the client.
pub const RELOAD_DENY: &str = "192.0.2.0/24";

/// The config the daemon starts with.
pub fn good(interface: &str) -> String {
    render(interface, "[]", "")
}

/// A valid change: a deny entry for a network that does not cover the client.
pub fn changed(interface: &str) -> String {
    render(interface, &format!("[\"{RELOAD_DENY}\"]"), "")
}

/// A config with a key the schema does not know: the daemon must refuse to reload it.
pub fn refused(interface: &str) -> String {
    render(interface, "[]", "not_a_key = true\n")
}

/// The access log's file inside the container.
pub const ACCESS_LOG: &str = "/var/log/api-shield/access.log";

fn render(interface: &str, deny: &str, extra_fastpath: &str) -> String {
    format!(
        r#"# Written by `cargo xtask test-systemd`.

[fastpath]
enabled = true
interfaces = ["{interface}"]
mode = "driver"
allow = ["127.0.0.0/8", "::1/128"]
deny = {deny}
{extra_fastpath}
[proxy]
drain_timeout = "3s"

# The file sink, in the directory the unit's LogsDirectory= gives (ProtectSystem=strict
# leaves nothing else writable).
[access_log]
sink = "file"
path = "{ACCESS_LOG}"

[[listeners]]
name = "public"
bind = "0.0.0.0:{HTTPS_PORT}"

[listeners.tls]
adhoc = true

[[upstreams]]
name = "demo"
url = "http://{DEMO_API_BIND}"

[[routes]]
name = "user"
path = "/api/v1/users/{{id}}"
methods = ["GET"]
upstream = "demo"

[admin]
enabled = true
"#
    )
}
