//! Network addresses an indexer may name: which IP addresses are public (anything else - loopback, private,
//! link-local with the cloud metadata address, carrier-grade NAT, unique-local, documentation, multicast, reserved -
//! is internal), and the `host` / `host:port` entries of the allow-lists (`[jackett] allowed_link_hosts`,
//! `allowed_tracker_hosts`). Pure; the DNS resolution that turns names into addresses is the searcher's.
//!
//! Hosts are compared after the URL standard's parsing (`url` crate), so `0x7f000001`, `127.1` and `2130706433`
//! are all `127.0.0.1`, and names are compared in lower case without a trailing dot.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Whether `ip` is a public unicast address: not loopback, unspecified, private (RFC 1918), shared/CGNAT
/// (100.64/10), link-local (169.254/16, including 169.254.169.254; fe80::/10), unique-local (fc00::/7, including
/// fd00:ec2::254), documentation, benchmarking, multicast, broadcast or reserved. IPv6 forms that embed an IPv4
/// address (mapped, compatible, NAT64, 6to4) are judged by that address.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let internal = a == 0                                  // "this network", 0.0.0.0
        || a == 10                                         // private
        || a == 127                                        // loopback
        || (a == 100 && (64..128).contains(&b))            // shared address space (CGNAT)
        || (a == 169 && b == 254)                          // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b))             // private
        || (a == 192 && b == 0 && c == 0)                  // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)                  // TEST-NET-1
        || (a == 192 && b == 88 && c == 99)                // 6to4 relay anycast (deprecated)
        || (a == 192 && b == 168)                          // private
        || (a == 198 && (18..20).contains(&b))             // benchmarking
        || (a == 198 && b == 51 && c == 100)               // TEST-NET-2
        || (a == 203 && b == 0 && c == 113)                // TEST-NET-3
        || a >= 224; // multicast, reserved, broadcast
    !internal
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = ip.segments();
    let first = segments[0];
    // ::/96 (IPv4-compatible, deprecated), :: and ::1 included.
    if segments[..6].iter().all(|s| *s == 0) {
        return segments[6] != 0 && is_public_v4(embedded_v4(segments[6], segments[7]));
    }
    // NAT64 (64:ff9b::/96): the embedded IPv4 address decides.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded_v4(segments[6], segments[7]));
    }
    // 6to4 (2002::/16): the IPv4 address in bits 16-48.
    if first == 0x2002 {
        return is_public_v4(embedded_v4(segments[1], segments[2]));
    }
    let internal = (first & 0xfe00) == 0xfc00              // unique-local fc00::/7
        || (first & 0xffc0) == 0xfe80                      // link-local fe80::/10
        || (first & 0xffc0) == 0xfec0                      // site-local (deprecated) fec0::/10
        || (first & 0xff00) == 0xff00                      // multicast
        || (first == 0x2001 && segments[1] == 0x0db8)      // documentation 2001:db8::/32
        || (first == 0x0100 && segments[1..4] == [0, 0, 0]) // discard-only 100::/64
        || (first == 0x2001 && segments[1] < 0x0200); // IETF protocol assignments 2001::/23 (Teredo, ORCHID, ...)
    !internal
}

/// The IPv4 address held by two IPv6 segments.
fn embedded_v4(high: u16, low: u16) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(high) << 16) | u32::from(low))
}

/// One allow-list entry: a host (any port) or `host:port`, e.g. `tracker.lan`, `192.168.1.5:6969`, `[fd00::7]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    host: Host<String>,
    port: Option<u16>,
}

impl HostPattern {
    /// Parses an entry; the error says what is wrong with it.
    pub fn parse(entry: &str) -> Result<HostPattern, String> {
        let trimmed = entry.trim();
        if trimmed.is_empty() || trimmed.contains(['/', '@', '?', '#']) || trimmed.contains(char::is_whitespace) {
            return Err(format!("{entry:?} is not a host or host:port"));
        }
        let url = Url::parse(&format!("http://{trimmed}/")).map_err(|err| format!("{entry:?}: {err}"))?;
        let host = url.host().ok_or_else(|| format!("{entry:?} names no host"))?;
        // An explicit `:80` is kept even though the URL parser drops the default port of http.
        let port = match url.port() {
            Some(port) => Some(port),
            None if trimmed.ends_with(":80") => Some(80),
            None => None,
        };
        Ok(HostPattern { host: normalise(host), port })
    }

    /// The pattern matching exactly the origin of `url` (its host and effective port), for the configured indexer.
    pub fn origin_of(url: &Url) -> Option<HostPattern> {
        Some(HostPattern { host: normalise(url.host()?), port: url.port_or_known_default() })
    }

    /// Whether `host` (as parsed from a URL) and `port` match.
    pub fn matches(&self, host: &Host<&str>, port: Option<u16>) -> bool {
        normalise(host.clone()) == self.host && self.port.is_none_or(|wanted| Some(wanted) == port)
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => write!(f, "{}", self.host),
        }
    }
}

/// Lower-case domains without a trailing dot; addresses as they are.
fn normalise<S: AsRef<str>>(host: Host<S>) -> Host<String> {
    match host {
        Host::Domain(name) => Host::Domain(name.as_ref().trim_end_matches('.').to_ascii_lowercase()),
        Host::Ipv4(ip) => Host::Ipv4(ip),
        Host::Ipv6(ip) => Host::Ipv6(ip),
    }
}

/// The host and port of a source as a client would connect to it: the authority of a URL of any scheme (`udp://`,
/// `ws://`, ...) or a bare `host:port`, parsed with the rules of `http` URLs so that numeric IPv4 forms are
/// addresses. `None` when there is no usable host.
pub fn source_host(text: &str) -> Option<(Host<String>, Option<u16>)> {
    let authority = match text.split_once("://") {
        Some((_, rest)) => rest.split(['/', '?', '#']).next().unwrap_or_default(),
        None => text,
    };
    // Credentials are no part of where the connection goes.
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let url = Url::parse(&format!("http://{authority}/")).ok()?;
    let host = normalise(url.host()?);
    let scheme = text.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase());
    let port = url.port().or_else(|| authority.ends_with(":80").then_some(80)).or(match scheme.as_deref() {
        Some("http" | "ws") => Some(80),
        Some("https" | "wss") => Some(443),
        _ => None,
    });
    Some((host, port))
}

/// Names that are internal by definition (RFC 6761 `localhost`, and single-label names a LAN resolver answers).
pub fn is_internal_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.ends_with(".local")
        || name.ends_with(".internal")
        || name.ends_with(".home.arpa")
        || !name.contains('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(text: &str) -> bool {
        is_public_ip(text.parse().unwrap())
    }

    #[test]
    fn internal_ranges_are_not_public() {
        for internal in [
            "0.0.0.0",
            "127.0.0.1",
            "127.0.0.2",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "2001::1",
        ] {
            assert!(!public(internal), "{internal} must be internal");
        }
        for public_ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(public(public_ip), "{public_ip} is public");
        }
    }

    #[test]
    fn patterns_match_hosts_after_url_parsing() {
        let any_port = HostPattern::parse("127.0.0.1").unwrap();
        let url = Url::parse("http://0x7f000001:6969/a").unwrap();
        assert!(any_port.matches(&url.host().unwrap(), url.port_or_known_default()));
        let with_port = HostPattern::parse("tracker.LAN:6969").unwrap();
        let tracker = Url::parse("http://tracker.lan.:6969/announce").unwrap();
        assert!(with_port.matches(&tracker.host().unwrap(), tracker.port_or_known_default()));
        assert!(!with_port.matches(&tracker.host().unwrap(), Some(80)));
        let v6 = HostPattern::parse("[fd00::7]").unwrap();
        assert!(v6.matches(&Host::Ipv6("fd00::7".parse().unwrap()), Some(1)));
        for bad in ["", "http://x", "a b", "user@host", "x/y", "[::1"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?}");
        }
        let origin = HostPattern::origin_of(&Url::parse("http://127.0.0.1:9117/jackett").unwrap()).unwrap();
        assert_eq!(origin.to_string(), "127.0.0.1:9117");
    }

    #[test]
    fn source_hosts_parse_any_scheme_and_numeric_forms() {
        assert_eq!(source_host("udp://0x7f000001:6969/announce"), Some((Host::Ipv4(Ipv4Addr::LOCALHOST), Some(6969))));
        assert_eq!(source_host("http://127.1/a"), Some((Host::Ipv4(Ipv4Addr::LOCALHOST), Some(80))));
        assert_eq!(source_host("http://u:p@10.0.0.1:80/a"), Some((Host::Ipv4(Ipv4Addr::new(10, 0, 0, 1)), Some(80))));
        assert_eq!(source_host("[::1]:6881"), Some((Host::Ipv6(Ipv6Addr::LOCALHOST), Some(6881))));
        assert_eq!(
            source_host("Router.Example.org:6881"),
            Some((Host::Domain("router.example.org".into()), Some(6881)))
        );
        assert_eq!(source_host("udp://"), None);
        assert!(is_internal_name("localhost") && is_internal_name("db.localhost") && is_internal_name("nas"));
        assert!(!is_internal_name("tracker.example.org"));
    }
}
