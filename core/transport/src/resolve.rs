//! Locating SIP servers (RFC 3263): from a SIP or SIPS URI to an ordered list
//! of transport + address targets to try.
//!
//! The DNS queries go through the [`Resolver`] trait ([`DnsResolver`] is the
//! real one, over `hickory-resolver`); the choices RFC 3263 makes between the
//! answers — which NAPTR services apply and in which order (§4.1), SRV
//! priority and weight (RFC 2782), the fallbacks when a record kind is
//! missing — are plain functions of the records ([`order_naptr`],
//! [`order_srv`]) so they are tested without a network.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;

use crate::{Peer, TransportKind};

/// A boxed future, so that [`Resolver`] stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a name could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// The name exists but has no records of the kind asked for, or does not exist.
    #[error("no records for {0}")]
    NotFound(String),
    /// The DNS could not be asked (no server reachable, malformed answer...).
    #[error("DNS lookup of {name} failed: {reason}")]
    Lookup {
        /// The name that was looked up.
        name: String,
        /// What the resolver said.
        reason: String,
    },
    /// The URI asks for a transport this endpoint does not offer.
    #[error("no usable transport for {0}")]
    NoTransport(String),
}

/// One NAPTR record (RFC 3403), as far as RFC 3263 §4.1 uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NaptrRecord {
    /// Lower orders are used first.
    pub order: u16,
    /// Within one order, lower preferences are used first.
    pub preference: u16,
    /// The flags; SIP uses only `S` (the replacement is an SRV name).
    pub flags: String,
    /// The service, e.g. `SIP+D2U`, `SIP+D2T`, `SIPS+D2T`.
    pub service: String,
    /// The SRV name to query next, e.g. `_sip._udp.example.com`.
    pub replacement: String,
}

/// One SRV record (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    /// Lower priorities are tried first.
    pub priority: u16,
    /// Within a priority, the relative chance of being tried first.
    pub weight: u16,
    /// The port to use.
    pub port: u16,
    /// The host to resolve with A/AAAA; `.` means "no service here".
    pub target: String,
}

/// The DNS queries RFC 3263 needs. Implement it over another resolver or a
/// fixed table in tests.
pub trait Resolver: Send + Sync {
    /// NAPTR records of `domain`; an empty list when there are none.
    fn naptr<'a>(
        &'a self,
        domain: &'a str,
    ) -> BoxFuture<'a, Result<Vec<NaptrRecord>, ResolveError>>;
    /// SRV records of `name` (e.g. `_sip._tcp.example.com`); an empty list when there are none.
    fn srv<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<SrvRecord>, ResolveError>>;
    /// A and AAAA records of `host`.
    fn ip<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, ResolveError>>;
}

/// Where a request should go: the transport and address, plus the host name
/// the URI named, which TLS checks the server certificate against (RFC 5922).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Transport and address.
    pub peer: Peer,
    /// The domain or host from the URI (or SRV target) for TLS server-name
    /// checks; `None` when the URI held a numeric address.
    pub server_name: Option<String>,
}

impl Target {
    /// A target with no server name (numeric address).
    pub fn new(transport: TransportKind, addr: SocketAddr) -> Self {
        Target {
            peer: Peer { transport, addr },
            server_name: None,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.peer.transport.via_token(), self.peer.addr)?;
        if let Some(n) = &self.server_name {
            write!(f, " ({n})")?;
        }
        Ok(())
    }
}

/// What RFC 3263 needs from a SIP or SIPS URI: its host (or `maddr`), port,
/// `transport` parameter and scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Host name or numeric address (IPv6 with or without brackets).
    pub host: String,
    /// The explicit port, if any.
    pub port: Option<u16>,
    /// The `transport=` parameter, if any and known.
    pub transport: Option<TransportKind>,
    /// A `sips:` URI: TLS only (RFC 3263 §4.1).
    pub secure: bool,
}

impl Destination {
    /// A destination for `host` with no port, transport or scheme constraint.
    pub fn host(host: impl Into<String>) -> Self {
        Destination {
            host: host.into(),
            port: None,
            transport: None,
            secure: false,
        }
    }

    fn ip(&self) -> Option<IpAddr> {
        let h = self.host.trim_start_matches('[').trim_end_matches(']');
        h.parse().ok()
    }
}

/// The NAPTR service for a transport (RFC 3263 §4.1, RFC 7118 §5 for WS).
fn naptr_service(service: &str) -> Option<TransportKind> {
    let s = service.to_ascii_uppercase();
    Some(match s.as_str() {
        "SIP+D2U" => TransportKind::Udp,
        "SIP+D2T" => TransportKind::Tcp,
        "SIPS+D2T" => TransportKind::Tls,
        "SIP+D2W" => TransportKind::Ws,
        "SIPS+D2W" => TransportKind::Wss,
        _ => return None,
    })
}

/// The SRV prefix for a transport (RFC 3263 §4.1).
fn srv_prefix(t: TransportKind) -> &'static str {
    match t {
        TransportKind::Udp => "_sip._udp.",
        TransportKind::Tcp => "_sip._tcp.",
        TransportKind::Tls => "_sips._tcp.",
        TransportKind::Ws => "_sip._ws.",
        TransportKind::Wss => "_sips._ws.",
    }
}

fn is_secure(t: TransportKind) -> bool {
    matches!(t, TransportKind::Tls | TransportKind::Wss)
}

fn default_port(t: TransportKind) -> u16 {
    if is_secure(t) { 5061 } else { 5060 }
}

/// RFC 3263 §4.1: the NAPTR records that apply, best first, as (transport,
/// SRV name). Records with flags other than `S`, with services we do not
/// offer (`supported`), or — for a SIPS URI — without TLS are dropped; the
/// rest are sorted by order, then preference (RFC 3403 §4).
pub fn order_naptr(
    records: &[NaptrRecord],
    supported: &[TransportKind],
    secure: bool,
) -> Vec<(TransportKind, String)> {
    let mut usable: Vec<(&NaptrRecord, TransportKind)> = records
        .iter()
        .filter(|r| r.flags.eq_ignore_ascii_case("s"))
        .filter_map(|r| naptr_service(&r.service).map(|t| (r, t)))
        .filter(|(_, t)| supported.contains(t) && (!secure || is_secure(*t)))
        .collect();
    usable.sort_by_key(|(r, _)| (r.order, r.preference));
    usable
        .into_iter()
        .map(|(r, t)| (t, r.replacement.trim_end_matches('.').to_owned()))
        .collect()
}

/// RFC 2782 ordering of SRV records: by ascending priority; within one
/// priority, a weighted random order (zero-weight records first in the
/// running sum, so they are chosen rarely but can be). `random(n)` must return
/// a uniformly random number in `0..=n`. A single record with target `.` means
/// the service is decidedly not offered: the result is empty.
pub fn order_srv(records: &[SrvRecord], mut random: impl FnMut(u32) -> u32) -> Vec<SrvRecord> {
    if records.len() == 1 && records[0].target.trim_end_matches('.').is_empty() {
        return Vec::new();
    }
    let mut sorted: Vec<SrvRecord> = records
        .iter()
        .filter(|r| !r.target.trim_end_matches('.').is_empty())
        .cloned()
        .collect();
    sorted.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(sorted.len());
    let mut i = 0;
    while i < sorted.len() {
        let prio = sorted[i].priority;
        let end = i + sorted[i..]
            .iter()
            .take_while(|r| r.priority == prio)
            .count();
        let mut group: Vec<SrvRecord> = sorted[i..end].to_vec();
        // Zero weights first (RFC 2782 "Usage rules").
        group.sort_by_key(|r| r.weight != 0);
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let pick = random(total).min(total);
            let mut running = 0u32;
            let mut chosen = group.len() - 1;
            for (k, r) in group.iter().enumerate() {
                running += u32::from(r.weight);
                if running >= pick {
                    chosen = k;
                    break;
                }
            }
            out.push(group.remove(chosen));
        }
        i = end;
    }
    out
}

/// A small xorshift generator seeded from the clock and a counter, for SRV
/// weighting: it needs to be unpredictable enough to spread load, not secret.
fn weak_random() -> impl FnMut(u32) -> u32 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut s = nanos ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) | 1;
    move |n| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % (u64::from(n) + 1)) as u32
    }
}

/// Resolves `dest` to the ordered targets to try (RFC 3263 §4.1, §4.2),
/// using only the transports in `supported`.
///
/// - A numeric host is used as is (port given or the transport's default).
/// - A host with a port: A/AAAA.
/// - Otherwise NAPTR, then SRV of each NAPTR replacement; with no NAPTR,
///   SRV for each supported transport (TLS first for SIPS); with no SRV,
///   A/AAAA on the default port.
///
/// The transport comes from `transport=`, else the scheme and the records;
/// a SIPS URI only ever yields TLS (or WSS) targets.
pub async fn resolve(
    resolver: &dyn Resolver,
    dest: &Destination,
    supported: &[TransportKind],
) -> Result<Vec<Target>, ResolveError> {
    let secure_ok = |t: TransportKind| !dest.secure || is_secure(t);
    let explicit = match dest.transport {
        // `sips:...;transport=tcp` means TLS over TCP (RFC 3261 §26.2.2).
        Some(TransportKind::Tcp) if dest.secure => Some(TransportKind::Tls),
        Some(TransportKind::Ws) if dest.secure => Some(TransportKind::Wss),
        t => t,
    };
    if let Some(t) = explicit
        && !supported.contains(&t)
    {
        return Err(ResolveError::NoTransport(dest.host.clone()));
    }
    let fallback = || -> Option<TransportKind> {
        let order: &[TransportKind] = if dest.secure {
            &[TransportKind::Tls]
        } else {
            &[TransportKind::Udp, TransportKind::Tcp, TransportKind::Tls]
        };
        order.iter().copied().find(|t| supported.contains(t))
    };

    // §4.1/§4.2: a numeric address needs no DNS.
    if let Some(ip) = dest.ip() {
        let t = explicit
            .or_else(fallback)
            .ok_or_else(|| ResolveError::NoTransport(dest.host.clone()))?;
        let port = dest.port.unwrap_or_else(|| default_port(t));
        return Ok(vec![Target::new(t, SocketAddr::new(ip, port))]);
    }
    let host = dest.host.trim_end_matches('.').to_owned();
    // §4.2: an explicit port means A/AAAA only.
    if let Some(port) = dest.port {
        let t = explicit
            .or_else(fallback)
            .ok_or_else(|| ResolveError::NoTransport(dest.host.clone()))?;
        return address_targets(resolver, &host, port, t).await;
    }

    // Which (transport, SRV name) pairs to try, best first.
    let mut srv_names: Vec<(TransportKind, String)> = Vec::new();
    let mut from_naptr = false;
    if let Some(t) = explicit {
        srv_names.push((t, format!("{}{host}", srv_prefix(t))));
    } else {
        let naptr = match resolver.naptr(&host).await {
            Ok(r) => r,
            Err(ResolveError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        srv_names = order_naptr(&naptr, supported, dest.secure);
        from_naptr = !srv_names.is_empty();
        if srv_names.is_empty() {
            // §4.1: no NAPTR: SRV for each transport we support.
            let order = [
                TransportKind::Tls,
                TransportKind::Tcp,
                TransportKind::Udp,
                TransportKind::Wss,
                TransportKind::Ws,
            ];
            let order: Vec<TransportKind> = if dest.secure {
                order.into_iter().filter(|t| is_secure(*t)).collect()
            } else {
                // Prefer UDP for plain SIP, as §4.1 makes it the default.
                let mut o = vec![TransportKind::Udp, TransportKind::Tcp, TransportKind::Tls];
                o.retain(|t| secure_ok(*t));
                o
            };
            for t in order.into_iter().filter(|t| supported.contains(t)) {
                srv_names.push((t, format!("{}{host}", srv_prefix(t))));
            }
        }
    }

    let mut targets = Vec::new();
    let mut rng = weak_random();
    for (t, name) in &srv_names {
        let records = match resolver.srv(name).await {
            Ok(r) => r,
            Err(ResolveError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        for srv in order_srv(&records, &mut rng) {
            let target_host = srv.target.trim_end_matches('.');
            match address_targets(resolver, target_host, srv.port, *t).await {
                Ok(found) => targets.extend(found.into_iter().map(|mut x| {
                    // RFC 5922 §4: the certificate must match the SIP domain, not the SRV target.
                    x.server_name = Some(host.clone());
                    x
                })),
                Err(ResolveError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        // §4.1: without NAPTR, the first transport whose SRV answered is used;
        // with NAPTR, the remaining services stay as further fallbacks.
        if !from_naptr && !targets.is_empty() {
            break;
        }
    }
    if !targets.is_empty() {
        return Ok(targets);
    }
    // §4.2: no SRV records: A/AAAA on the default port of the transport.
    let t = explicit
        .or_else(|| srv_names.first().map(|(t, _)| *t))
        .or_else(fallback)
        .ok_or_else(|| ResolveError::NoTransport(dest.host.clone()))?;
    address_targets(resolver, &host, default_port(t), t).await
}

async fn address_targets(
    resolver: &dyn Resolver,
    host: &str,
    port: u16,
    t: TransportKind,
) -> Result<Vec<Target>, ResolveError> {
    let ips = resolver.ip(host).await?;
    if ips.is_empty() {
        return Err(ResolveError::NotFound(host.to_owned()));
    }
    Ok(ips
        .into_iter()
        .map(|ip| Target {
            peer: Peer {
                transport: t,
                addr: SocketAddr::new(ip, port),
            },
            server_name: Some(host.to_owned()),
        })
        .collect())
}

/// The system's DNS (from `/etc/resolv.conf` and `/etc/hosts`) through
/// `hickory-resolver`.
pub struct DnsResolver {
    inner: hickory_resolver::TokioResolver,
}

impl fmt::Debug for DnsResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DnsResolver")
    }
}

impl DnsResolver {
    /// A resolver configured from the system (resolv.conf, hosts file).
    pub fn from_system() -> Result<Self, ResolveError> {
        let mut builder =
            hickory_resolver::Resolver::builder_tokio().map_err(|e| ResolveError::Lookup {
                name: "system configuration".into(),
                reason: e.to_string(),
            })?;
        // A before AAAA: SIP servers are still more often reachable over IPv4,
        // and the AAAA targets stay in the list as fallbacks (RFC 3263 §4.3).
        builder.options_mut().ip_strategy = hickory_resolver::config::LookupIpStrategy::Ipv4AndIpv6;
        let inner = builder.build().map_err(|e| ResolveError::Lookup {
            name: "system configuration".into(),
            reason: e.to_string(),
        })?;
        Ok(DnsResolver { inner })
    }
}

fn lookup_error(name: &str, e: hickory_resolver::net::NetError) -> ResolveError {
    if e.is_no_records_found() || e.is_nx_domain() {
        ResolveError::NotFound(name.to_owned())
    } else {
        ResolveError::Lookup {
            name: name.to_owned(),
            reason: e.to_string(),
        }
    }
}

/// A fully qualified form, so the resolver does not walk the search list.
fn fqdn(name: &str) -> String {
    if name.ends_with('.') || !name.contains('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    }
}

impl Resolver for DnsResolver {
    fn naptr<'a>(
        &'a self,
        domain: &'a str,
    ) -> BoxFuture<'a, Result<Vec<NaptrRecord>, ResolveError>> {
        Box::pin(async move {
            use hickory_resolver::proto::rr::{RData, RecordType};
            let lookup = match self.inner.lookup(fqdn(domain), RecordType::NAPTR).await {
                Ok(l) => l,
                Err(e) => return Err(lookup_error(domain, e)),
            };
            Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::NAPTR(n) => Some(NaptrRecord {
                        order: n.order,
                        preference: n.preference,
                        flags: String::from_utf8_lossy(&n.flags).into_owned(),
                        service: String::from_utf8_lossy(&n.services).into_owned(),
                        replacement: n.replacement.to_ascii(),
                    }),
                    _ => None,
                })
                .collect())
        })
    }

    fn srv<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<SrvRecord>, ResolveError>> {
        Box::pin(async move {
            use hickory_resolver::proto::rr::RData;
            let lookup = match self.inner.srv_lookup(fqdn(name)).await {
                Ok(l) => l,
                Err(e) => return Err(lookup_error(name, e)),
            };
            Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::SRV(s) => Some(SrvRecord {
                        priority: s.priority,
                        weight: s.weight,
                        port: s.port,
                        target: s.target.to_ascii(),
                    }),
                    _ => None,
                })
                .collect())
        })
    }

    fn ip<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, ResolveError>> {
        Box::pin(async move {
            match self.inner.lookup_ip(fqdn(host)).await {
                Ok(l) => Ok(l.iter().collect()),
                Err(e) => Err(lookup_error(host, e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn srv(priority: u16, weight: u16, port: u16, target: &str) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port,
            target: target.into(),
        }
    }

    fn naptr(order: u16, preference: u16, service: &str, replacement: &str) -> NaptrRecord {
        NaptrRecord {
            order,
            preference,
            flags: "s".into(),
            service: service.into(),
            replacement: replacement.into(),
        }
    }

    const ALL: &[TransportKind] = &[TransportKind::Udp, TransportKind::Tcp, TransportKind::Tls];

    #[test]
    fn naptr_order_and_filter() {
        let records = vec![
            naptr(50, 50, "SIP+D2U", "_sip._udp.example.com."),
            naptr(90, 50, "SIP+D2T", "_sip._tcp.example.com."),
            naptr(50, 10, "SIPS+D2T", "_sips._tcp.example.com."),
            naptr(10, 10, "SIP+D2S", "_sip._sctp.example.com."),
            NaptrRecord {
                flags: "u".into(),
                ..naptr(1, 1, "SIP+D2U", "x")
            },
        ];
        assert_eq!(
            order_naptr(&records, ALL, false),
            vec![
                (TransportKind::Tls, "_sips._tcp.example.com".to_owned()),
                (TransportKind::Udp, "_sip._udp.example.com".to_owned()),
                (TransportKind::Tcp, "_sip._tcp.example.com".to_owned()),
            ]
        );
        assert_eq!(
            order_naptr(&records, ALL, true),
            vec![(TransportKind::Tls, "_sips._tcp.example.com".to_owned())]
        );
        assert_eq!(
            order_naptr(&records, &[TransportKind::Tcp], false),
            vec![(TransportKind::Tcp, "_sip._tcp.example.com".to_owned())]
        );
    }

    #[test]
    fn srv_priority_then_weight() {
        let records = vec![
            srv(20, 0, 5060, "backup.example.com."),
            srv(10, 60, 5060, "a.example.com."),
            srv(10, 40, 5060, "b.example.com."),
            srv(10, 0, 5060, "z.example.com."),
        ];
        // random = 0 always picks the first in the running sum: the zero-weight one.
        let order: Vec<String> = order_srv(&records, |_| 0)
            .into_iter()
            .map(|r| r.target)
            .collect();
        assert_eq!(
            order,
            [
                "z.example.com.",
                "a.example.com.",
                "b.example.com.",
                "backup.example.com."
            ]
        );
        // random = max picks the last of the group.
        let order: Vec<String> = order_srv(&records, |n| n)
            .into_iter()
            .map(|r| r.target)
            .collect();
        assert_eq!(
            order,
            [
                "b.example.com.",
                "a.example.com.",
                "z.example.com.",
                "backup.example.com."
            ]
        );
        // Weighted distribution: a (60) comes first about 60% of the time.
        let mut rng = weak_random();
        let two = vec![srv(1, 60, 1, "a"), srv(1, 40, 1, "b")];
        let firsts = (0..2000)
            .filter(|_| order_srv(&two, &mut rng)[0].target == "a")
            .count();
        assert!(
            (1000..1400).contains(&firsts),
            "a first {firsts} times of 2000"
        );
        // "." means no service.
        assert!(order_srv(&[srv(0, 0, 0, ".")], |_| 0).is_empty());
    }

    /// A fixed table of records: the RFC 3263 walk is tested against it.
    #[derive(Default)]
    struct FakeDns {
        naptr: HashMap<String, Vec<NaptrRecord>>,
        srv: HashMap<String, Vec<SrvRecord>>,
        ip: HashMap<String, Vec<IpAddr>>,
    }

    impl Resolver for FakeDns {
        fn naptr<'a>(
            &'a self,
            d: &'a str,
        ) -> BoxFuture<'a, Result<Vec<NaptrRecord>, ResolveError>> {
            Box::pin(async move { Ok(self.naptr.get(d).cloned().unwrap_or_default()) })
        }
        fn srv<'a>(&'a self, n: &'a str) -> BoxFuture<'a, Result<Vec<SrvRecord>, ResolveError>> {
            Box::pin(async move {
                self.srv
                    .get(n)
                    .cloned()
                    .ok_or(ResolveError::NotFound(n.into()))
            })
        }
        fn ip<'a>(&'a self, h: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, ResolveError>> {
            Box::pin(async move {
                self.ip
                    .get(h)
                    .cloned()
                    .ok_or(ResolveError::NotFound(h.into()))
            })
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn peers(t: &[Target]) -> Vec<(TransportKind, String)> {
        t.iter()
            .map(|t| (t.peer.transport, t.peer.addr.to_string()))
            .collect()
    }

    fn example_dns() -> FakeDns {
        let mut dns = FakeDns::default();
        dns.naptr.insert(
            "example.com".into(),
            vec![
                naptr(10, 20, "SIP+D2U", "_sip._udp.example.com."),
                naptr(10, 10, "SIP+D2T", "_sip._tcp.example.com."),
                naptr(20, 10, "SIPS+D2T", "_sips._tcp.example.com."),
            ],
        );
        dns.srv.insert(
            "_sip._tcp.example.com".into(),
            vec![
                srv(10, 0, 5070, "p2.example.com."),
                srv(5, 0, 5080, "p1.example.com."),
            ],
        );
        dns.srv.insert(
            "_sip._udp.example.com".into(),
            vec![srv(1, 0, 5090, "p1.example.com.")],
        );
        dns.srv.insert(
            "_sips._tcp.example.com".into(),
            vec![srv(1, 0, 5061, "p3.example.com.")],
        );
        dns.ip.insert(
            "p1.example.com".into(),
            vec![ip("192.0.2.1"), ip("2001:db8::1")],
        );
        dns.ip
            .insert("p2.example.com".into(), vec![ip("192.0.2.2")]);
        dns.ip
            .insert("p3.example.com".into(), vec![ip("192.0.2.3")]);
        dns.ip.insert("example.com".into(), vec![ip("192.0.2.9")]);
        dns
    }

    #[tokio::test]
    async fn naptr_then_srv_then_address() {
        let dns = example_dns();
        let t = resolve(&dns, &Destination::host("example.com"), ALL)
            .await
            .unwrap();
        assert_eq!(
            peers(&t),
            vec![
                (TransportKind::Tcp, "192.0.2.1:5080".into()),
                (TransportKind::Tcp, "[2001:db8::1]:5080".into()),
                (TransportKind::Tcp, "192.0.2.2:5070".into()),
                (TransportKind::Udp, "192.0.2.1:5090".into()),
                (TransportKind::Udp, "[2001:db8::1]:5090".into()),
                (TransportKind::Tls, "192.0.2.3:5061".into()),
            ]
        );
        // The TLS name is the SIP domain, not the SRV target (RFC 5922 §4).
        assert_eq!(t[0].server_name.as_deref(), Some("example.com"));

        // Without TCP support the UDP service leads.
        let t = resolve(
            &dns,
            &Destination::host("example.com"),
            &[TransportKind::Udp],
        )
        .await
        .unwrap();
        assert_eq!(peers(&t)[0], (TransportKind::Udp, "192.0.2.1:5090".into()));

        // SIPS: TLS only.
        let mut d = Destination::host("example.com");
        d.secure = true;
        let t = resolve(&dns, &d, ALL).await.unwrap();
        assert_eq!(
            peers(&t),
            vec![(TransportKind::Tls, "192.0.2.3:5061".into())]
        );

        // transport= skips NAPTR and goes to that SRV.
        let mut d = Destination::host("example.com");
        d.transport = Some(TransportKind::Udp);
        let t = resolve(&dns, &d, ALL).await.unwrap();
        assert_eq!(peers(&t)[0], (TransportKind::Udp, "192.0.2.1:5090".into()));

        // An explicit port: A/AAAA only.
        let mut d = Destination::host("example.com");
        d.port = Some(5099);
        let t = resolve(&dns, &d, ALL).await.unwrap();
        assert_eq!(
            peers(&t),
            vec![(TransportKind::Udp, "192.0.2.9:5099".into())]
        );
    }

    #[tokio::test]
    async fn fallbacks_without_naptr_or_srv() {
        let mut dns = example_dns();
        dns.naptr.clear();
        // No NAPTR: SRV per transport, UDP first for sip:.
        let t = resolve(&dns, &Destination::host("example.com"), ALL)
            .await
            .unwrap();
        assert_eq!(
            peers(&t),
            vec![
                (TransportKind::Udp, "192.0.2.1:5090".into()),
                (TransportKind::Udp, "[2001:db8::1]:5090".into()),
            ]
        );
        // No SRV either: A/AAAA on 5060 over UDP.
        dns.srv.clear();
        let t = resolve(&dns, &Destination::host("example.com"), ALL)
            .await
            .unwrap();
        assert_eq!(
            peers(&t),
            vec![(TransportKind::Udp, "192.0.2.9:5060".into())]
        );
        let mut d = Destination::host("example.com");
        d.secure = true;
        let t = resolve(&dns, &d, ALL).await.unwrap();
        assert_eq!(
            peers(&t),
            vec![(TransportKind::Tls, "192.0.2.9:5061".into())]
        );
        // Unknown host.
        assert!(matches!(
            resolve(&dns, &Destination::host("nowhere.example"), ALL).await,
            Err(ResolveError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn numeric_hosts_need_no_dns() {
        let dns = FakeDns::default();
        let mut d = Destination::host("[::1]");
        d.transport = Some(TransportKind::Tcp);
        let t = resolve(&dns, &d, ALL).await.unwrap();
        assert_eq!(peers(&t), vec![(TransportKind::Tcp, "[::1]:5060".into())]);
        let mut d = Destination::host("127.0.0.1");
        d.secure = true;
        d.port = Some(7000);
        let t = resolve(&dns, &d, ALL).await.unwrap();
        assert_eq!(
            peers(&t),
            vec![(TransportKind::Tls, "127.0.0.1:7000".into())]
        );
        let mut d = Destination::host("127.0.0.1");
        d.transport = Some(TransportKind::Tls);
        assert!(matches!(
            resolve(&dns, &d, &[TransportKind::Udp]).await,
            Err(ResolveError::NoTransport(_))
        ));
    }

    #[tokio::test]
    async fn real_dns_resolves_localhost() {
        let dns = DnsResolver::from_system().unwrap();
        let mut d = Destination::host("localhost");
        d.port = Some(5060);
        d.transport = Some(TransportKind::Tcp);
        let t = resolve(&dns, &d, ALL).await.unwrap();
        assert!(!t.is_empty());
        assert!(
            t.iter()
                .all(|t| t.peer.addr.ip().is_loopback() && t.peer.addr.port() == 5060)
        );
        assert!(t.iter().all(|t| t.peer.transport == TransportKind::Tcp));
    }
}
