//! The outbound policy: where Tenancy's own HTTP requests may go.
//!
//! Four features make requests to URLs that API callers choose: `http:invoke` tasks,
//! webhook deliveries, provisioning hooks and functions. Without a policy they are a
//! server-side request forgery (SSRF) channel into whatever the server can reach:
//! loopback services, the private network, the cloud metadata endpoint
//! (169.254.169.254). All four build their client here ([`OutboundPolicy::client`]), so they share one rule:
//!
//! * A destination address in [`DENIED`] (loopback, private, link-local, CGNAT,
//!   unique-local, multicast, documentation, ... and the IPv4-mapped, NAT64 and 6to4
//!   IPv6 forms of those) is refused unless the operator's allow-list
//!   (`--outbound-allow`, CIDRs or host names) admits it.
//! * The check runs on the **resolved** addresses, in the client's DNS resolver, so
//!   the address connected to is the address checked (DNS rebinding cannot slip a
//!   private address in after a check). A literal IP in a URL never reaches a resolver:
//!   [`OutboundPolicy::check_url`] checks it before the request is sent.
//! * Redirects are not followed; system proxies are not used (a proxy would resolve
//!   the name, not us); connect timeout [`CONNECT_TIMEOUT`], total timeout
//!   [`TOTAL_TIMEOUT`] unless the caller sets a shorter one per request.
//! * Response bodies are read in chunks up to a cap ([`read_capped`]).
//!
//! A refusal is reported as [`REFUSED`], a fixed text, and transport failures as a
//! coarse category ([`describe`]), so attempt logs and execution history reveal
//! nothing about the network behind the server (no port-scan oracle).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

/// What a refused destination is reported as, everywhere.
pub const REFUSED: &str = "destination not allowed by the outbound policy";
/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest any outbound request may take (requests may set shorter ones).
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest response body `http:invoke` reads: Step Functions' payload limit.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// Destinations refused unless allowed (IPv4-mapped, IPv4-compatible, NAT64 and 6to4
/// IPv6 addresses are checked as the IPv4 address they carry).
pub const DENIED: &[&str] = &[
    // IPv4
    "0.0.0.0/8",       // "this network", the unspecified address
    "10.0.0.0/8",      // private (RFC 1918)
    "100.64.0.0/10",   // carrier-grade NAT (RFC 6598)
    "127.0.0.0/8",     // loopback
    "169.254.0.0/16",  // link-local, cloud metadata (169.254.169.254)
    "172.16.0.0/12",   // private (RFC 1918)
    "192.0.0.0/24",    // IETF protocol assignments
    "192.0.2.0/24",    // documentation (TEST-NET-1)
    "192.88.99.0/24",  // 6to4 relay anycast
    "192.168.0.0/16",  // private (RFC 1918)
    "198.18.0.0/15",   // benchmarking
    "198.51.100.0/24", // documentation (TEST-NET-2)
    "203.0.113.0/24",  // documentation (TEST-NET-3)
    "224.0.0.0/4",     // multicast
    "240.0.0.0/4",     // reserved, broadcast (255.255.255.255)
    // IPv6
    "::/128",        // unspecified
    "::1/128",       // loopback
    "100::/64",      // discard
    "2001:db8::/32", // documentation
    "fc00::/7",      // unique-local (incl. fd00:ec2::254, the AWS metadata endpoint)
    "fe80::/10",     // link-local
    "fec0::/10",     // site-local (deprecated)
    "ff00::/8",      // multicast
];

/// The error a refused destination fails with (found again in the error's chain).
#[derive(Debug, Clone, Copy)]
pub struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REFUSED)
    }
}

impl std::error::Error for Refused {}

/// Where outbound requests may go: the default deny list minus the operator's
/// allow-list.
#[derive(Debug, Clone)]
pub struct OutboundPolicy {
    denied: Vec<IpNet>,
    allowed_nets: Vec<IpNet>,
    /// Lower-case host names whose every address is allowed.
    allowed_hosts: Vec<String>,
}

impl Default for OutboundPolicy {
    fn default() -> Self {
        OutboundPolicy::deny_private()
    }
}

impl OutboundPolicy {
    /// The default: everything in [`DENIED`] refused, nothing allowed beyond.
    pub fn deny_private() -> Self {
        let denied = DENIED.iter().map(|s| s.parse().expect("the deny list parses")).collect();
        OutboundPolicy { denied, allowed_nets: Vec::new(), allowed_hosts: Vec::new() }
    }

    /// The default deny list with `entries` allowed: CIDRs (`127.0.0.0/8`, `::1/128`),
    /// single addresses (`10.1.2.3`, `::1`) or host names (`hooks.internal`; every
    /// address it resolves to is allowed). Empty entries are ignored.
    pub fn with_allowed<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut p = OutboundPolicy::deny_private();
        for raw in entries {
            let e = raw.as_ref().trim();
            if e.is_empty() {
                continue;
            }
            if let Ok(net) = e.parse::<IpNet>() {
                p.allowed_nets.push(net.trunc());
            } else if let Ok(ip) = e.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
                p.allowed_nets.push(IpNet::from(ip));
            } else if valid_host(e) {
                p.allowed_hosts.push(e.trim_end_matches('.').to_ascii_lowercase());
            } else {
                return Err(format!(
                    "invalid outbound allow-list entry {e:?}: use a CIDR (10.0.0.0/8), an address or a host name"
                ));
            }
        }
        Ok(p)
    }

    /// Whether anything beyond the default is allowed (for the startup log).
    pub fn allow_list(&self) -> Vec<String> {
        self.allowed_nets.iter().map(ToString::to_string).chain(self.allowed_hosts.iter().cloned()).collect()
    }

    /// Whether a connection to `ip` is allowed (the host name aside).
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let canonical = embedded_v4(ip).map(IpAddr::V4);
        let allowed = |a: IpAddr| self.allowed_nets.iter().any(|n| n.contains(&a));
        if allowed(ip) || canonical.is_some_and(allowed) {
            return true;
        }
        let denied = |a: IpAddr| self.denied.iter().any(|n| n.contains(&a));
        !(denied(ip) || canonical.is_some_and(denied))
    }

    /// Whether `host` (a name, not an address) is on the allow-list.
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.allowed_hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    /// Checks what the resolver cannot: the scheme, and a literal IP address in the
    /// URL (connected to without resolving).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Refused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused);
        }
        // The URL parser normalizes addresses (`0x7f000001` is `127.0.0.1`).
        let host = url.host_str().ok_or(Refused)?;
        match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            Ok(ip) if !self.allows_ip(ip) => Err(Refused),
            _ => Ok(()),
        }
    }

    /// A client builder bound to this policy: the filtering resolver, no redirects, no
    /// proxies, the connect and total timeouts. Add settings and `build()`.
    pub fn client_builder(self: &Arc<Self>) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .dns_resolver(Arc::new(PolicyResolver { policy: self.clone() }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TOTAL_TIMEOUT)
    }

    /// [`OutboundPolicy::client_builder`], built.
    pub fn client(self: &Arc<Self>) -> reqwest::Client {
        self.client_builder().build().expect("the HTTP client builds")
    }
}

/// The IPv4 address an IPv6 address carries: IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`, `64:ff9b:1::/48`) and
/// 6to4 (`2002:AABB:CCDD::`). An IPv4 address is itself.
fn embedded_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    let v6: Ipv6Addr = match ip {
        IpAddr::V4(v4) => return Some(v4),
        IpAddr::V6(v6) => v6,
    };
    let s = v6.segments();
    let o = v6.octets();
    let last = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    // IPv4-compatible (`::a.b.c.d`; `::` and `::1` are themselves) and NAT64.
    let compatible = s[..6] == [0, 0, 0, 0, 0, 0] && !(s[6] == 0 && s[7] <= 1);
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || s[..3] == [0x64, 0xff9b, 1];
    if let Some(v4) = v6.to_ipv4_mapped() {
        Some(v4)
    } else if compatible || nat64 {
        Some(last)
    } else if s[0] == 0x2002 {
        Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]))
    } else {
        None
    }
}

fn valid_host(h: &str) -> bool {
    let h = h.trim_end_matches('.');
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Resolves with the system resolver and keeps only the allowed addresses; none left
/// is [`Refused`].
struct PolicyResolver {
    policy: Arc<OutboundPolicy>,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let trusted = policy.allows_host(&host);
            let allowed: Vec<SocketAddr> = addrs.into_iter().filter(|a| trusted || policy.allows_ip(a.ip())).collect();
            if allowed.is_empty() {
                return Err(Box::new(Refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// `req` with a `traceparent` header carrying the current span's trace context, when
/// traces are exported (docs/operations.md "Traces"): the receiver of a hook call, a
/// webhook delivery or a function invocation can continue the trace.
pub fn traced(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match tenancy_trace::traceparent() {
        Some(tp) => req.header(tenancy_trace::TRACEPARENT, tp),
        None => req,
    }
}

/// Whether `e` (or an error it wraps) is a refusal by the policy.
pub fn is_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<Refused>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// A transport error as a coarse, fixed category: the policy's refusal, a timeout, a
/// failed connection, or a failed request. Never addresses, ports or OS messages.
pub fn describe(e: &reqwest::Error) -> &'static str {
    if is_refused(e) {
        REFUSED
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    }
}

/// Why reading a body stopped.
#[derive(Debug)]
pub enum ReadError {
    /// The body is longer than the cap (nothing more was read).
    TooLarge,
    Transport(reqwest::Error),
}

/// Reads a response body chunk by chunk, failing as soon as it passes `cap` bytes (a
/// `Content-Length` above the cap fails before reading anything).
pub async fn read_capped(mut res: reqwest::Response, cap: usize) -> Result<Vec<u8>, ReadError> {
    if res.content_length().is_some_and(|n| n > cap as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(ReadError::Transport)? {
        if body.len() + chunk.len() > cap {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads and drops up to `cap` bytes of a body (so a small body's connection goes back
/// to the pool); a longer body is left unread and its connection closed.
pub async fn drain(mut res: reqwest::Response, cap: usize) {
    let mut read = 0;
    while let Ok(Some(chunk)) = res.chunk().await {
        read += chunk.len();
        if read > cap {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_default_refuses_internal_addresses() {
        let p = OutboundPolicy::deny_private();
        for a in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
        ] {
            assert!(!p.allows_ip(ip(a)), "{a} must be refused");
        }
        for a in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"] {
            assert!(p.allows_ip(ip(a)), "{a} must be allowed");
        }
    }

    #[test]
    fn the_allow_list_admits_nets_addresses_and_hosts() {
        let p = OutboundPolicy::with_allowed(&["127.0.0.0/8", "::1", "10.1.2.3", "Hooks.Internal."]).unwrap();
        assert!(p.allows_ip(ip("127.0.0.1")));
        assert!(p.allows_ip(ip("::ffff:127.0.0.1")));
        assert!(p.allows_ip(ip("::1")));
        assert!(p.allows_ip(ip("10.1.2.3")));
        assert!(!p.allows_ip(ip("10.1.2.4")));
        assert!(!p.allows_ip(ip("169.254.169.254")));
        assert!(p.allows_host("hooks.internal"));
        assert!(!p.allows_host("other.internal"));
        assert!(OutboundPolicy::with_allowed(&["10.0.0.0/33"]).is_err());
        assert!(OutboundPolicy::with_allowed(&["http://x"]).is_err());
    }

    #[test]
    fn literal_addresses_in_urls_are_checked() {
        let p = OutboundPolicy::deny_private();
        let p = |u: &str| p.check_url(&reqwest::Url::parse(u).unwrap());
        assert!(p("http://127.0.0.1:8080/x").is_err());
        assert!(p("http://[::ffff:7f00:1]/").is_err());
        assert!(p("http://169.254.169.254/latest/meta-data/").is_err());
        assert!(p("http://0x7f000001/").is_err());
        assert!(p("file:///etc/passwd").is_err());
        assert!(p("https://example.com/").is_ok());
    }
}
