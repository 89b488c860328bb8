//! Where an indexer may make this service, or its torrent client, connect to.
//!
//! An indexer result is written by whoever uploaded it, so its links, trackers and web seeds are hostile: pointed
//! at `localhost`, the LAN, or the cloud metadata address, they would turn the service into a proxy into the
//! network it runs in. Two policies:
//!
//! - [`LinkPolicy`] for the `.torrent` links this service fetches: a link (and every redirect hop) must be http(s)
//!   without credentials, and its host is either trusted - the host and port of `[jackett] url`, or listed in
//!   `[jackett] allowed_link_hosts` - or must resolve to public addresses only (checked after DNS resolution, see
//!   [`crate::models::address::is_public_ip`]). Requests to untrusted hosts go through a client whose resolver
//!   ([`PublicOnlyResolver`]) drops internal addresses again at connect time, so a name that re-resolves to an
//!   internal address between the check and the request (DNS rebinding) cannot be reached either.
//! - [`SourcePolicy`] for the trackers, web seeds, DHT nodes and peers of a magnet or `.torrent`, which the
//!   torrent client contacts by itself: each must be listed in `[jackett] allowed_tracker_hosts` (a private LAN
//!   tracker) or resolve to public addresses only; the others are removed before the client sees the torrent.
//!
//! Never logs more than a host (tracker URLs may carry passkeys).

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use url::{Host, Url};

use crate::models::address::{is_internal_name, is_public_ip, source_host, HostPattern};
use crate::models::metainfo::SourceKind;

/// How long one DNS resolution of a policy check may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);
/// Distinct sources of one torrent checked (each may need a DNS lookup); the rest are removed.
pub const MAX_CHECKED_SOURCES: usize = 64;
/// DNS lookups of one torrent's sources at the same time.
const SOURCE_CHECK_CONCURRENCY: usize = 8;

/// Which HTTP client a link that passed the check is fetched with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRoute {
    /// The indexer itself or an allow-listed host: the ordinary client.
    Trusted,
    /// Any other host: the client whose resolver only returns public addresses.
    PublicOnly,
}

/// Why a link is not fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkVerdict {
    /// Never fetched, however often it is tried (a scheme other than http(s), credentials, an internal address).
    Refused(String),
    /// The host's name did not resolve now; it may later.
    Unresolved(String),
}

/// The policy for links this service fetches.
#[derive(Debug, Clone)]
pub struct LinkPolicy {
    trusted: Vec<HostPattern>,
}

impl LinkPolicy {
    /// Trusts the origin of `indexer_url` and every entry of `allowed` (`host` or `host:port`).
    pub fn new(indexer_url: Option<&Url>, allowed: &[String]) -> Result<LinkPolicy, String> {
        let mut trusted: Vec<HostPattern> = indexer_url.and_then(HostPattern::origin_of).into_iter().collect();
        for entry in allowed {
            trusted.push(HostPattern::parse(entry).map_err(|err| format!("[jackett] allowed_link_hosts: {err}"))?);
        }
        Ok(LinkPolicy { trusted })
    }

    /// Checks a link or a redirect target before it is requested.
    pub async fn check(&self, url: &Url) -> Result<LinkRoute, LinkVerdict> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(LinkVerdict::Refused(format!("the {:?} scheme is never fetched", url.scheme())));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(LinkVerdict::Refused("links carrying credentials are never fetched".into()));
        }
        let host = url.host().ok_or_else(|| LinkVerdict::Refused("the link names no host".into()))?;
        let port = url.port_or_known_default();
        if self.trusted.iter().any(|pattern| pattern.matches(&host, port)) {
            return Ok(LinkRoute::Trusted);
        }
        let not_allowed = "; list the host in [jackett] allowed_link_hosts to allow it";
        match host {
            Host::Ipv4(ip) if !is_public_ip(ip.into()) => {
                Err(LinkVerdict::Refused(format!("{ip} is not a public address{not_allowed}")))
            }
            Host::Ipv6(ip) if !is_public_ip(ip.into()) => {
                Err(LinkVerdict::Refused(format!("{ip} is not a public address{not_allowed}")))
            }
            Host::Ipv4(_) | Host::Ipv6(_) => Ok(LinkRoute::PublicOnly),
            Host::Domain(name) => match resolve_public(name, port.unwrap_or(0)).await {
                Resolution::Public => Ok(LinkRoute::PublicOnly),
                Resolution::Internal(reason) => Err(LinkVerdict::Refused(format!("{reason}{not_allowed}"))),
                Resolution::Failed(reason) => Err(LinkVerdict::Unresolved(reason)),
            },
        }
    }
}

/// The policy for the sources a torrent client contacts by itself.
#[derive(Debug, Clone, Default)]
pub struct SourcePolicy {
    allowed: Vec<HostPattern>,
}

impl SourcePolicy {
    /// Keeps internal sources only when listed in `allowed` (`host` or `host:port`).
    pub fn new(allowed: &[String]) -> Result<SourcePolicy, String> {
        let allowed = allowed
            .iter()
            .map(|entry| HostPattern::parse(entry).map_err(|err| format!("[jackett] allowed_tracker_hosts: {err}")))
            .collect::<Result<_, _>>()?;
        Ok(SourcePolicy { allowed })
    }

    /// Whether the torrent client may be given this source. A name that does not resolve now is refused (it could
    /// resolve to an internal address when the client tries).
    pub async fn allows(&self, kind: SourceKind, text: &str) -> bool {
        let scheme = text.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase());
        let scheme_ok = matches!(
            (kind, scheme.as_deref()),
            (SourceKind::Tracker, Some("http" | "https" | "udp" | "ws" | "wss"))
                | (SourceKind::WebSeed, Some("http" | "https"))
                | (SourceKind::Endpoint, None)
        );
        let Some((host, port)) = source_host(text).filter(|_| scheme_ok) else {
            return false;
        };
        let borrowed = match &host {
            Host::Domain(name) => Host::Domain(name.as_str()),
            Host::Ipv4(ip) => Host::Ipv4(*ip),
            Host::Ipv6(ip) => Host::Ipv6(*ip),
        };
        if self.allowed.iter().any(|pattern| pattern.matches(&borrowed, port)) {
            return true;
        }
        match host {
            Host::Ipv4(ip) => is_public_ip(ip.into()),
            Host::Ipv6(ip) => is_public_ip(ip.into()),
            Host::Domain(name) => matches!(resolve_public(&name, port.unwrap_or(0)).await, Resolution::Public),
        }
    }

    /// The verdict on each distinct source of `sources` (at most [`MAX_CHECKED_SOURCES`]; any further one is
    /// refused unchecked), checked concurrently.
    pub async fn verdicts(
        &self,
        sources: &[(SourceKind, String)],
    ) -> std::collections::HashMap<(SourceKind, String), bool> {
        let mut distinct: Vec<(SourceKind, String)> = Vec::new();
        for source in sources {
            if !distinct.contains(source) {
                distinct.push(source.clone());
            }
        }
        let unchecked = distinct.split_off(distinct.len().min(MAX_CHECKED_SOURCES));
        let mut verdicts: std::collections::HashMap<(SourceKind, String), bool> = futures::stream::iter(distinct)
            .map(|source| async move {
                let allowed = self.allows(source.0, &source.1).await;
                (source, allowed)
            })
            .buffer_unordered(SOURCE_CHECK_CONCURRENCY)
            .collect()
            .await;
        verdicts.extend(unchecked.into_iter().map(|source| (source, false)));
        verdicts
    }
}

/// The host of a source as it may be logged (no path: announce URLs may carry passkeys).
pub fn source_host_for_log(text: &str) -> String {
    match source_host(text) {
        Some((host, Some(port))) => format!("{host}:{port}"),
        Some((host, None)) => host.to_string(),
        None => "<no host>".into(),
    }
}

enum Resolution {
    Public,
    Internal(String),
    Failed(String),
}

/// Resolves `name` and judges every address it gives: public only, or why not.
async fn resolve_public(name: &str, port: u16) -> Resolution {
    if is_internal_name(name) {
        return Resolution::Internal(format!("{name} is a local name"));
    }
    match lookup_public(name, port).await {
        Ok(_) => Resolution::Public,
        Err(LookupFailure::Internal(ip)) => {
            Resolution::Internal(format!("{name} resolves to {ip}, not a public address"))
        }
        Err(LookupFailure::Failed(message)) => Resolution::Failed(format!("{name} does not resolve: {message}")),
    }
}

enum LookupFailure {
    Internal(std::net::IpAddr),
    Failed(String),
}

/// The addresses of `name`, if every one of them is public.
async fn lookup_public(name: &str, port: u16) -> Result<Vec<SocketAddr>, LookupFailure> {
    let lookup = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, port))).await;
    let addresses: Vec<SocketAddr> = match lookup {
        Ok(Ok(found)) => found.collect(),
        Ok(Err(err)) => return Err(LookupFailure::Failed(err.to_string())),
        Err(_) => return Err(LookupFailure::Failed(format!("no answer within {} s", RESOLVE_TIMEOUT.as_secs()))),
    };
    if let Some(internal) = addresses.iter().find(|address| !is_public_ip(address.ip())) {
        return Err(LookupFailure::Internal(internal.ip()));
    }
    if addresses.is_empty() {
        return Err(LookupFailure::Failed("no address".into()));
    }
    Ok(addresses)
}

/// The DNS resolver of the client that fetches links on untrusted hosts: answers only when every address of the
/// name is public, so the connection goes to an address that passed the check.
#[derive(Debug, Default)]
pub struct PublicOnlyResolver;

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let name = name.as_str().to_string();
        Box::pin(async move {
            if is_internal_name(&name) {
                return Err(format!("{name} is a local name").into());
            }
            match lookup_public(&name, 0).await {
                Ok(addresses) => Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs),
                Err(LookupFailure::Internal(ip)) => {
                    Err(format!("{name} resolves to {ip}, not a public address").into())
                }
                Err(LookupFailure::Failed(message)) => Err(message.into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LinkPolicy {
        let indexer = Url::parse("http://127.0.0.1:9117/").unwrap();
        LinkPolicy::new(Some(&indexer), &["10.0.0.9".to_string(), "nas:8080".to_string()]).unwrap()
    }

    async fn verdict(text: &str) -> Result<LinkRoute, LinkVerdict> {
        policy().check(&Url::parse(text).unwrap()).await
    }

    #[tokio::test]
    async fn links_to_internal_addresses_are_refused_in_every_spelling() {
        for link in [
            "http://127.0.0.1:9118/dl",
            "http://0x7f000001:9118/dl",
            "http://127.1:9118/dl",
            "http://2130706433:9118/dl",
            "http://0177.0.0.1:9118/dl",
            "http://127.0.0.2/dl",
            "http://localhost:9117/dl",
            "http://LOCALHOST./dl",
            "http://[::1]:9117/dl",
            "http://[::ffff:127.0.0.1]/dl",
            "http://169.254.169.254/latest/meta-data/",
            "http://192.168.1.1/",
            "http://100.64.1.1/",
            "http://[fd00:ec2::254]/",
            "http://127.0.0.1:9117@127.0.0.1:22/",
            "http://user:pass@127.0.0.1:9117/dl",
            "file:///etc/passwd",
            "ftp://8.8.8.8/x",
            "gopher://127.0.0.1:25/",
        ] {
            assert!(matches!(verdict(link).await, Err(LinkVerdict::Refused(_))), "{link} must be refused");
        }
    }

    #[tokio::test]
    async fn the_indexer_origin_allow_listed_hosts_and_public_addresses_pass() {
        assert_eq!(verdict("http://127.0.0.1:9117/dl/x?jackett_apikey=k").await, Ok(LinkRoute::Trusted));
        assert_eq!(verdict("http://0x7f000001:9117/dl/x").await, Ok(LinkRoute::Trusted));
        assert_eq!(verdict("https://10.0.0.9/any").await, Ok(LinkRoute::Trusted));
        assert_eq!(verdict("http://nas:8080/x").await, Ok(LinkRoute::Trusted));
        assert!(matches!(verdict("http://nas:8081/x").await, Err(LinkVerdict::Refused(_))));
        // Public literals need no lookup (nothing here touches the network).
        assert_eq!(verdict("https://93.184.216.34/t.torrent").await, Ok(LinkRoute::PublicOnly));
        assert_eq!(verdict("http://[2606:4700::1111]/t").await, Ok(LinkRoute::PublicOnly));
    }

    #[tokio::test]
    async fn sources_on_internal_hosts_are_refused_unless_listed() {
        let policy = SourcePolicy::new(&["127.0.0.1:6969".to_string(), "tracker.lan".to_string()]).unwrap();
        for (kind, allowed) in [
            (SourceKind::Tracker, "http://127.0.0.1:6969/announce"),
            (SourceKind::Tracker, "udp://0x7f000001:6969"),
            (SourceKind::Tracker, "http://tracker.lan:1234/announce"),
            (SourceKind::Tracker, "udp://93.184.216.34:1337/announce"),
            (SourceKind::WebSeed, "https://[2606:4700::1111]/seed/"),
            (SourceKind::Endpoint, "8.8.8.8:6881"),
        ] {
            assert!(policy.allows(kind, allowed).await, "{allowed} is allowed");
        }
        for (kind, refused) in [
            (SourceKind::Tracker, "http://127.0.0.1:6970/announce"),
            (SourceKind::Tracker, "udp://127.1:80"),
            (SourceKind::Tracker, "http://localhost:6969/announce"),
            (SourceKind::Tracker, "http://169.254.169.254/latest"),
            (SourceKind::Tracker, "file:///etc/passwd"),
            (SourceKind::WebSeed, "udp://93.184.216.34:1/"),
            (SourceKind::WebSeed, "http://10.1.1.1/seed"),
            (SourceKind::Endpoint, "[::1]:6881"),
            (SourceKind::Endpoint, "192.168.0.2:6881"),
            (SourceKind::Tracker, "not a url"),
        ] {
            assert!(!policy.allows(kind, refused).await, "{refused} is refused");
        }
        assert_eq!(source_host_for_log("http://10.1.1.1:81/announce/SECRETPASSKEY"), "10.1.1.1:81");
    }

    #[tokio::test]
    async fn at_most_a_bounded_number_of_sources_is_checked() {
        let policy = SourcePolicy::new(&[]).unwrap();
        let sources: Vec<(SourceKind, String)> =
            (0..200u32).map(|n| (SourceKind::Tracker, format!("udp://8.8.{}.{}:1/", n / 256, n % 256))).collect();
        let verdicts = policy.verdicts(&sources).await;
        assert_eq!(verdicts.len(), 200);
        assert_eq!(verdicts.values().filter(|allowed| **allowed).count(), MAX_CHECKED_SOURCES);
    }
}
