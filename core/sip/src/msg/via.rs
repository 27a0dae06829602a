//! The Via header (RFC 3261 §20.42, §18.2.1; rport of RFC 3581; IPv6 of RFC 5118).

use std::fmt;

use bytestring::ByteString;

use super::error::{ErrorKind, ParseError};
use super::scan::{self, TOKEN};
use super::uri::{Host, Params, RawHost, parse_ipv4, scan_header_params_with, scan_host};

/// The transport of a Via (§20.42 `transport`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// SCTP.
    Sctp,
    /// TLS over SCTP (RFC 4168).
    TlsSctp,
    /// WebSocket (RFC 7118).
    Ws,
    /// Secure WebSocket (RFC 7118).
    Wss,
    /// Any other transport token, as written.
    Other(ByteString),
}

impl Transport {
    /// Recognises a transport token (case-insensitive).
    pub fn from_token(t: &ByteString) -> Transport {
        Self::known(t).unwrap_or_else(|| Transport::Other(t.clone()))
    }

    fn known(t: &str) -> Option<Transport> {
        Some(match t.len() {
            2 if t.eq_ignore_ascii_case("ws") => Transport::Ws,
            3 if t.eq_ignore_ascii_case("udp") => Transport::Udp,
            3 if t.eq_ignore_ascii_case("tcp") => Transport::Tcp,
            3 if t.eq_ignore_ascii_case("tls") => Transport::Tls,
            3 if t.eq_ignore_ascii_case("wss") => Transport::Wss,
            4 if t.eq_ignore_ascii_case("sctp") => Transport::Sctp,
            8 if t.eq_ignore_ascii_case("tls-sctp") => Transport::TlsSctp,
            _ => return None,
        })
    }

    /// The token as sent (upper case for the known ones).
    pub fn as_str(&self) -> &str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Sctp => "SCTP",
            Transport::TlsSctp => "TLS-SCTP",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
            Transport::Other(s) => s,
        }
    }

    /// Whether the transport is reliable (stream-based: §17.1.1.2, Timer A not used).
    pub fn is_reliable(&self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The default port (§19.1.2: 5060, 5061 for TLS; RFC 7118 leaves WS to the URI).
    pub fn default_port(&self) -> u16 {
        match self {
            Transport::Tls | Transport::TlsSctp | Transport::Wss => 5061,
            _ => 5060,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub(crate) struct RawVia<'a> {
    pub(crate) transport: &'a str,
    pub(crate) host: RawHost<'a>,
    pub(crate) port: Option<u16>,
    pub(crate) params: &'a str,
}

fn num(v: &[u8], max: u64) -> bool {
    std::str::from_utf8(v).is_ok_and(|v| scan::parse_num(v, max).is_some())
}

/// `received = IPv4address / IPv6address` (§20.42); an IPv6reference in
/// brackets is accepted too (RFC 5118 §4.5).
fn is_ip(v: &[u8]) -> bool {
    if parse_ipv4(v).is_some() {
        return true;
    }
    let v = v
        .strip_prefix(b"[")
        .and_then(|v| v.strip_suffix(b"]"))
        .unwrap_or(v);
    std::str::from_utf8(v).is_ok_and(|v| v.parse::<std::net::Ipv6Addr>().is_ok())
}

fn slash(b: &[u8], i: usize) -> Result<usize, ParseError> {
    let i = scan::skip_wsp(b, i);
    if b.get(i) != Some(&b'/') {
        return Err(ParseError::value("bad sent-protocol"));
    }
    Ok(scan::skip_wsp(b, i + 1))
}

/// `protocol-name SLASH protocol-version SLASH` from `s[i]`; returns where the
/// transport starts.
fn sent_protocol(s: &str, i: usize, any_version: bool) -> Result<usize, ParseError> {
    let b = s.as_bytes();
    let n = scan::run(b, i, TOKEN);
    if !s[i..n].eq_ignore_ascii_case("SIP") {
        return Err(ParseError::value("sent-protocol is not SIP"));
    }
    let i = slash(b, n)?;
    let v = scan::run(b, i, TOKEN);
    if v == i || (!any_version && scan::sub(s, i, v) != "2.0") {
        return Err(ParseError::new(
            ErrorKind::Version,
            "Via version is not 2.0",
        ));
    }
    slash(b, v)
}

/// Scans one via-parm: `sent-protocol LWS sent-by *( SEMI via-params )`.
pub(crate) fn scan_via(s: &str) -> Result<RawVia<'_>, ParseError> {
    scan_via_version(s, false)
}

/// [`scan_via`], accepting any protocol version when `any_version` (to route
/// back a 505, RFC 3261 §21.5.20).
pub(crate) fn scan_via_version(s: &str, any_version: bool) -> Result<RawVia<'_>, ParseError> {
    let (v, end) = scan_via_at(s, 0, any_version)?;
    if end != s.len() {
        return Err(ParseError::value("unexpected text in Via"));
    }
    Ok(v)
}

/// Scans one via-parm from `s[start]`; returns it and the index where it ends
/// (end of input or the `,` before the next via-parm).
#[inline(always)]
pub(crate) fn scan_via_at(
    s: &str,
    start: usize,
    any_version: bool,
) -> Result<(RawVia<'_>, usize), ParseError> {
    let b = s.as_bytes();
    let i = scan::skip_wsp(b, start);
    // Nearly every Via starts `SIP/2.0/` without inner whitespace.
    let t0 = if b.len() > i + 8 && b[i..i + 8].eq_ignore_ascii_case(b"SIP/2.0/") {
        scan::skip_wsp(b, i + 8)
    } else {
        sent_protocol(s, i, any_version)?
    };
    let t = scan::run(b, t0, TOKEN);
    if t == t0 {
        return Err(ParseError::value("missing transport"));
    }
    let transport = scan::sub(s, t0, t);
    let h = scan::skip_wsp(b, t);
    if h == t {
        return Err(ParseError::value("missing sent-by"));
    }
    let (host, mut i) = scan_host(s, h)?;
    let mut port = None;
    let c = scan::skip_wsp(b, i);
    if b.get(c) == Some(&b':') {
        let p = scan::skip_wsp(b, c + 1);
        let e = p + b[p..].iter().take_while(|c| c.is_ascii_digit()).count();
        port = Some(
            scan::parse_num_bytes(&b[p..e], 65535).ok_or(ParseError::value("bad sent-by port"))?
                as u16,
        );
        i = e;
    }
    let pstart = i;
    // via-params (§20.42, RFC 3581 rport) checked in the same pass.
    let end = scan_header_params_with(b, i, |n, v| {
        let ok = match n.len() {
            3 if n.eq_ignore_ascii_case(b"ttl") => v.is_some_and(|v| num(v, 255)),
            5 if n.eq_ignore_ascii_case(b"rport") => v.is_none_or(|v| num(v, 65535)),
            5 if n.eq_ignore_ascii_case(b"maddr") => {
                v.is_some_and(|v| std::str::from_utf8(v).is_ok_and(|v| Host::parse(v).is_ok()))
            }
            6 if n.eq_ignore_ascii_case(b"branch") => v.is_some(),
            8 if n.eq_ignore_ascii_case(b"received") => v.is_some_and(is_ip),
            _ => true,
        };
        if ok {
            Ok(())
        } else {
            Err(ParseError::value("bad Via parameter"))
        }
    })?;
    let params = scan::trim(scan::sub(s, pstart, end));
    Ok((
        RawVia {
            transport,
            host,
            port,
            params,
        },
        end,
    ))
}

/// One Via value (§20.42): `SIP/2.0/transport sent-by;params`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via {
    /// The transport the request was sent over.
    pub transport: Transport,
    /// The sent-by host.
    pub host: Host,
    /// The sent-by port, when written.
    pub port: Option<u16>,
    /// The via-params in order (branch, received, rport, maddr, ttl, ...).
    pub params: Params,
}

impl Via {
    /// A Via without parameters; add the branch with [`Via::with_branch`] (§8.1.1.7).
    pub fn new(transport: Transport, host: Host, port: Option<u16>) -> Self {
        Via {
            transport,
            host,
            port,
            params: Params::new(),
        }
    }

    /// Parses one via-parm (not a comma-separated list).
    pub fn parse(value: &ByteString) -> Result<Via, ParseError> {
        let r = scan_via(value)?;
        Ok(Via {
            transport: Transport::known(r.transport)
                .unwrap_or_else(|| Transport::Other(value.slice_ref(r.transport))),
            host: r.host.own(value),
            port: r.port,
            params: Params::from_raw(value.slice_ref(r.params)),
        })
    }

    /// Sets the `branch` parameter (§8.1.1.7: starts with `z9hG4bK`).
    pub fn with_branch(mut self, branch: &str) -> Self {
        self.params.set("branch", Some(branch));
        self
    }

    /// Adds a valueless `rport` (RFC 3581 §3).
    pub fn with_rport(mut self) -> Self {
        self.params.set("rport", None);
        self
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&str> {
        self.params.get("branch")
    }

    /// The `branch` parameter as a zero-copy slice.
    pub fn branch_bytes(&self) -> Option<ByteString> {
        self.params.get_bytes("branch")
    }

    /// Whether the branch carries the RFC 3261 magic cookie (§8.1.1.7), so it
    /// identifies the transaction (§17.2.3).
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with("z9hG4bK"))
    }

    /// The `received` parameter (§18.2.1).
    pub fn received(&self) -> Option<Host> {
        self.params
            .get("received")
            .and_then(|r| Host::parse(r).ok())
    }

    /// Whether an `rport` parameter is present, with or without a value (RFC 3581).
    pub fn has_rport(&self) -> bool {
        self.params.contains("rport")
    }

    /// The `rport` value filled in by the server (RFC 3581 §4).
    pub fn rport(&self) -> Option<u16> {
        self.params.get("rport").and_then(|p| p.parse().ok())
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<Host> {
        self.params.get("maddr").and_then(|m| Host::parse(m).ok())
    }

    /// The `ttl` parameter.
    pub fn ttl(&self) -> Option<u8> {
        self.params.get("ttl").and_then(|t| t.parse().ok())
    }

    /// The sent-by port, or the transport's default (§18.2.2).
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or_else(|| self.transport.default_port())
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn via(s: &str) -> Result<Via, ParseError> {
        Via::parse(&ByteString::from(s))
    }

    #[test]
    fn parses() {
        let v = via("SIP  /   2.0 /UDP 192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, Transport::Udp);
        assert_eq!(v.host, Host::V4([192, 0, 2, 2].into()));
        assert_eq!(v.branch(), Some("390skdjuw"));
        let v = via("SIP  / 2.0  / TCP     spindle.example.com   ;\t  branch  =   z9hG4bK9ikj8")
            .unwrap();
        assert_eq!(v.transport, Transport::Tcp);
        assert_eq!(v.branch(), Some("z9hG4bK9ikj8"));
        assert!(v.has_rfc3261_branch());
        let v = via("SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en").unwrap();
        assert_eq!(v.transport.as_str(), "UNKNOWN");
        let v = via("SIP/2.0/UDP [2001:db8::9:1]:5070;branch=z9hG4bKas3-111;received=2001:db8::9:255;rport=5071").unwrap();
        assert_eq!(v.port, Some(5070));
        assert_eq!(
            v.received(),
            Some(Host::V6("2001:db8::9:255".parse().unwrap()))
        );
        assert_eq!(v.rport(), Some(5071));
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP [2001:db8::9:1]:5070;branch=z9hG4bKas3-111;received=2001:db8::9:255;rport=5071"
        );
        let v = via("SIP/2.0/UDP host ; rport").unwrap();
        assert!(v.has_rport() && v.rport().is_none());
        let b = Via::new(
            Transport::Tls,
            Host::parse("a.example").unwrap(),
            Some(5061),
        )
        .with_branch("z9hG4bK1")
        .with_rport();
        assert_eq!(
            b.to_string(),
            "SIP/2.0/TLS a.example:5061;branch=z9hG4bK1;rport"
        );
        assert_eq!(via(&b.to_string()).unwrap(), b);
    }

    #[test]
    fn rejects() {
        for bad in [
            "SIP/2.0/UDP 192.0.2.15;;",
            "SIP/7.0/UDP c.example.com",
            "SIP/2.0/UDP",
            "SIP/2.0/UDPhost",
            "SIP/2.0/UDP host;ttl=256",
            "SIP/2.0/UDP host;received=foo.com",
            "SIP/2.0/UDP host;branch",
            "SIP/2.0/UDP host extra",
            "SIP/2.0/UDP 2001:db8::1",
        ] {
            assert!(via(bad).is_err(), "{bad}");
        }
    }
}
