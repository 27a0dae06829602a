//! URIs: `sip`/`sips` (RFC 3261 §19.1, §25.1), `tel` (RFC 3966) and any other
//! absolute URI, kept opaque (RFC 3261 §19, RFC 4475 §3.3.2/§3.3.4), with IPv6
//! references (RFC 5118). Parsed parts are zero-copy slices of the input.

use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use bytestring::ByteString;
use memchr::{memchr, memchr2, memchr3};

use super::error::{ErrorKind, ParseError};
use super::scan::{self, HNV, HOST, LABEL, PARAM, PASSWORD, URIC, USER};

const fn uri_err(detail: &'static str) -> ParseError {
    ParseError::value(detail)
}

// ---------------------------------------------------------------------------
// Params

/// An ordered list of `;name[=value]` parameters, of a URI (§19.1.1) or of a
/// header value (generic-param, §25.1). Names compare case-insensitively.
/// Values are kept as written: a quoted value keeps its quotes (see
/// [`Params::get_unquoted`]), a URI parameter value keeps its escapes.
#[derive(Clone, Default)]
pub struct Params {
    raw: ByteString,
}

impl Params {
    /// An empty list.
    pub fn new() -> Self {
        Params::default()
    }

    /// Wraps already validated parameter text (starting with `;` or empty).
    pub(crate) fn from_raw(raw: ByteString) -> Self {
        Params { raw }
    }

    /// The parameters as text, as received (with leading `;`), or empty.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The parameters in order, as `(name, value)`.
    pub fn iter(&self) -> ParamIter<'_> {
        ParamIter { s: &self.raw }
    }

    /// `Some(value)` when a parameter `name` is present (`Some(None)` for a flag
    /// such as `lr`), `None` when absent.
    pub fn find(&self, name: &str) -> Option<Option<&str>> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The value of parameter `name`, when present with a value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.find(name).flatten()
    }

    /// The value of parameter `name` with the quotes and quoted-pairs of a
    /// quoted-string removed.
    pub fn get_unquoted(&self, name: &str) -> Option<Cow<'_, str>> {
        self.get(name).map(scan::unquote)
    }

    /// The value of parameter `name` as a zero-copy slice.
    pub fn get_bytes(&self, name: &str) -> Option<ByteString> {
        self.get(name).map(|v| self.raw.slice_ref(v))
    }

    /// Whether parameter `name` is present (with or without a value).
    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    fn rebuild<'a>(items: impl Iterator<Item = (&'a str, Option<&'a str>)>) -> ByteString {
        let mut out = String::new();
        for (n, v) in items {
            out.push(';');
            out.push_str(n);
            if let Some(v) = v {
                out.push('=');
                out.push_str(v);
            }
        }
        ByteString::from(out)
    }

    /// Sets parameter `name` (replacing the first of that name, or appending).
    /// The caller passes a valid token, host or quoted-string as value (a URI
    /// parameter value must be escaped, see [`escape_param`]).
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        let mut seen = false;
        let items: Vec<(&str, Option<&str>)> = self
            .iter()
            .filter_map(|(n, v)| {
                if n.eq_ignore_ascii_case(name) {
                    if seen {
                        return None;
                    }
                    seen = true;
                    Some((name, value))
                } else {
                    Some((n, v))
                }
            })
            .collect();
        let raw = if seen {
            Self::rebuild(items.into_iter())
        } else {
            Self::rebuild(items.into_iter().chain(std::iter::once((name, value))))
        };
        self.raw = raw;
    }

    /// Appends parameter `name` (even when one of that name exists).
    pub fn push(&mut self, name: &str, value: Option<&str>) {
        let raw = Self::rebuild(self.iter().chain(std::iter::once((name, value))));
        self.raw = raw;
    }

    /// Removes every parameter `name`; returns whether one was there.
    pub fn remove(&mut self, name: &str) -> bool {
        if !self.contains(name) {
            return false;
        }
        let raw = Self::rebuild(self.iter().filter(|(n, _)| !n.eq_ignore_ascii_case(name)));
        self.raw = raw;
        true
    }
}

impl PartialEq for Params {
    fn eq(&self, other: &Self) -> bool {
        let mut a = self.iter();
        let mut b = other.iter();
        loop {
            match (a.next(), b.next()) {
                (None, None) => return true,
                (Some((n1, v1)), Some((n2, v2))) => {
                    if !n1.eq_ignore_ascii_case(n2) || v1 != v2 {
                        return false;
                    }
                }
                _ => return false,
            }
        }
    }
}

impl Eq for Params {}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, v) in self.iter() {
            f.write_str(";")?;
            f.write_str(n)?;
            if let Some(v) = v {
                f.write_str("=")?;
                f.write_str(v)?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Iterator over [`Params`].
#[derive(Clone, Debug)]
pub struct ParamIter<'a> {
    s: &'a str,
}

impl<'a> ParamIter<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        ParamIter { s }
    }
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = (&'a str, Option<&'a str>);

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.s;
        let b = s.as_bytes();
        let mut i = 0;
        loop {
            while i < b.len() && (b[i] == b';' || scan::is_wsp(b[i])) {
                i += 1;
            }
            if i >= b.len() {
                self.s = "";
                return None;
            }
            let start = i;
            let mut eq = None;
            let mut quoted = false;
            while i < b.len() {
                let c = b[i];
                if quoted {
                    if c == b'\\' {
                        i += 1;
                    } else if c == b'"' {
                        quoted = false;
                    }
                } else if c == b'"' {
                    quoted = true;
                } else if c == b';' {
                    break;
                } else if c == b'=' && eq.is_none() {
                    eq = Some(i);
                }
                i += 1;
            }
            let end = i.min(b.len());
            self.s = &s[end..];
            let (n, v) = match eq {
                Some(e) => (
                    scan::trim(scan::sub(s, start, e)),
                    Some(scan::trim(scan::sub(s, e + 1, end))),
                ),
                None => (scan::trim(scan::sub(s, start, end)), None),
            };
            if !n.is_empty() {
                return Some((n, v));
            }
            i = end;
        }
    }
}

/// Validates `*( SEMI generic-param )` of a header value from `s[i]` (§25.1:
/// `generic-param = token [ EQUAL gen-value ]`, `gen-value = token / host /
/// quoted-string`), with LWS around `;` and `=`. Returns the index after the
/// last parameter and its trailing whitespace.
///
/// Most values have no parameters: that case is decided inline, without a
/// call.
#[inline(always)]
pub(crate) fn scan_header_params(s: &[u8], i: usize) -> Result<usize, ParseError> {
    match s.get(i) {
        Some(b';' | b' ' | b'\t') => scan_header_params_call(s, i),
        _ => Ok(i),
    }
}

#[inline(never)]
fn scan_header_params_call(s: &[u8], i: usize) -> Result<usize, ParseError> {
    scan_header_params_with(s, i, |_, _| Ok(()))
}

/// [`scan_header_params`], calling `check(name, value)` for each parameter so
/// that a header can check its own parameters in the same pass.
#[inline]
pub(crate) fn scan_header_params_with(
    s: &[u8],
    mut i: usize,
    mut check: impl FnMut(&[u8], Option<&[u8]>) -> Result<(), ParseError>,
) -> Result<usize, ParseError> {
    loop {
        i = scan::skip_wsp(s, i);
        if s.get(i) != Some(&b';') {
            return Ok(i);
        }
        i = scan::skip_wsp(s, i + 1);
        let n0 = i;
        let n = scan::run(s, i, scan::TOKEN);
        if n == i {
            return Err(ParseError::value("empty parameter name"));
        }
        i = scan::skip_wsp(s, n);
        let mut value = None;
        if s.get(i) == Some(&b'=') {
            i = scan::skip_wsp(s, i + 1);
            let v0 = i;
            match s.get(i) {
                Some(b'"') => {
                    i = scan::skip_quoted(s, i)
                        .ok_or(ParseError::value("unbalanced quotes in parameter value"))?;
                }
                Some(b'[') => {
                    // Never across a line end (the parser's fast path
                    // scans on past it; a value holds no CR or LF).
                    let close = memchr3(b']', b'\r', b'\n', &s[i..])
                        .filter(|&c| s[i + c] == b']')
                        .ok_or(ParseError::value("unterminated IPv6 reference"))?;
                    i += close + 1;
                }
                _ => {
                    // token / host; an unbracketed IPv6 address also appears
                    // (Via received, RFC 5118 §4.5).
                    let e = scan::run(s, i, scan::GEN_VALUE);
                    if e == i {
                        return Err(ParseError::value("empty parameter value"));
                    }
                    i = e;
                }
            }
            value = Some(&s[v0..i]);
        }
        check(&s[n0..n], value)?;
    }
}

// ---------------------------------------------------------------------------
// Host

/// The host of a URI or Via sent-by (§25.1 `host`): a domain name, an IPv4
/// address or an IPv6 address (written in brackets, RFC 5118 §4.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name, as written (compare with [`Host::same_as`]: case-insensitive).
    Domain(ByteString),
    /// An IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 address.
    V6(Ipv6Addr),
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum RawHost<'a> {
    Domain(&'a str),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl RawHost<'_> {
    pub(crate) fn own(self, base: &ByteString) -> Host {
        match self {
            RawHost::Domain(d) => Host::Domain(base.slice_ref(d)),
            RawHost::V4(a) => Host::V4(a),
            RawHost::V6(a) => Host::V6(a),
        }
    }
}

/// Scans a host from `s[i]`: an IPv6 reference in brackets, else hostname or
/// IPv4address characters. Returns the host and the index after it.
#[inline(always)]
pub(crate) fn scan_host(s: &str, i: usize) -> Result<(RawHost<'_>, usize), ParseError> {
    let b = s.as_bytes();
    if b.get(i) == Some(&b'[') {
        let close = memchr2(b']', b'\r', &b[i..])
            .map(|c| c + i)
            .filter(|&c| b[c] == b']')
            .ok_or(uri_err("unterminated IPv6 reference"))?;
        let addr: Ipv6Addr = s[i + 1..close]
            .parse()
            .map_err(|_| uri_err("bad IPv6 address"))?;
        return Ok((RawHost::V6(addr), close + 1));
    }
    // Fast path: a domain name starting with a letter (so not an IPv4address),
    // label by label: a run of label characters, then a dot or the end.
    if b.get(i).is_some_and(u8::is_ascii_alphabetic) {
        let mut j = i;
        loop {
            // Not empty: `b[j]` is a letter or (after a dot) a label character.
            let e = scan::run(b, j, LABEL);
            if b.get(e) != Some(&b'.') {
                return Ok((RawHost::Domain(scan::sub(s, i, e)), e));
            }
            j = e + 1;
            match b.get(j) {
                Some(&c) if scan::is(c, LABEL) => {}
                Some(b'.') => return Err(uri_err("empty label in host name")),
                // A trailing dot (FQDN) ends the host.
                _ => return Ok((RawHost::Domain(scan::sub(s, i, j)), j)),
            }
        }
    }
    // One pass: hostname characters, noting whether the host is all digits
    // and dots (then only an IPv4address fits, a toplabel starts with ALPHA,
    // §25.1) and whether a label is empty.
    let mut j = i;
    let mut numeric = true;
    let mut prev_dot = true;
    let mut empty_label = false;
    while j < b.len() {
        let c = b[j];
        if c == b'.' {
            empty_label |= prev_dot;
            prev_dot = true;
        } else if scan::is(c, HOST) {
            prev_dot = false;
            numeric &= c.is_ascii_digit();
        } else {
            break;
        }
        j += 1;
    }
    if j == i {
        return Err(uri_err("missing host"));
    }
    if numeric {
        return parse_ipv4(&b[i..j])
            .map(|a| (RawHost::V4(a), j))
            .ok_or(uri_err("bad IPv4 address"));
    }
    if empty_label {
        return Err(uri_err("empty label in host name"));
    }
    Ok((RawHost::Domain(scan::sub(s, i, j)), j))
}

/// `IPv4address = 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT` (§25.1), each at most 255.
pub(crate) fn parse_ipv4(b: &[u8]) -> Option<Ipv4Addr> {
    let mut o = [0u8; 4];
    let mut k = 0;
    let mut v: u16 = 0;
    let mut digits = 0;
    for &c in b {
        if c == b'.' {
            if digits == 0 || k == 3 {
                return None;
            }
            o[k] = v as u8;
            k += 1;
            v = 0;
            digits = 0;
        } else if c.is_ascii_digit() {
            v = v * 10 + u16::from(c - b'0');
            digits += 1;
            if digits > 3 || v > 255 {
                return None;
            }
        } else {
            return None;
        }
    }
    if digits == 0 || k != 3 {
        return None;
    }
    o[3] = v as u8;
    Some(Ipv4Addr::from(o))
}

impl Host {
    /// Parses a host: domain name, IPv4 address, IPv6 address with or without
    /// brackets (Via `received` carries it without, RFC 5118 §4.5).
    pub fn parse(s: &str) -> Result<Host, ParseError> {
        if !s.starts_with('[') && s.contains(':') {
            return s
                .parse::<Ipv6Addr>()
                .map(Host::V6)
                .map_err(|_| uri_err("bad IPv6 address"));
        }
        let (h, end) = scan_host(s, 0)?;
        if end != s.len() {
            return Err(uri_err("unexpected character in host"));
        }
        Ok(match h {
            RawHost::Domain(d) => Host::Domain(ByteString::from(d)),
            RawHost::V4(a) => Host::V4(a),
            RawHost::V6(a) => Host::V6(a),
        })
    }

    /// Host comparison of §19.1.4: domain names case-insensitively, addresses by value.
    pub fn same_as(&self, other: &Host) -> bool {
        match (self, other) {
            (Host::Domain(a), Host::Domain(b)) => a.eq_ignore_ascii_case(b),
            (Host::V4(a), Host::V4(b)) => a == b,
            (Host::V6(a), Host::V6(b)) => a == b,
            _ => false,
        }
    }
}

impl From<Ipv4Addr> for Host {
    fn from(a: Ipv4Addr) -> Self {
        Host::V4(a)
    }
}

impl From<Ipv6Addr> for Host {
    fn from(a: Ipv6Addr) -> Self {
        Host::V6(a)
    }
}

impl From<std::net::IpAddr> for Host {
    fn from(a: std::net::IpAddr) -> Self {
        match a {
            std::net::IpAddr::V4(a) => Host::V4(a),
            std::net::IpAddr::V6(a) => Host::V6(a),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

// ---------------------------------------------------------------------------
// URIs

/// A URI as found in a Request-URI or a name-addr.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Uri {
    /// `sip:` or `sips:` (§19.1).
    Sip(SipUri),
    /// `tel:` (RFC 3966).
    Tel(TelUri),
    /// Any other absolute URI, kept opaque (§19, RFC 4475 §3.3.2).
    Other {
        /// The scheme as written.
        scheme: ByteString,
        /// Everything after the first `:`.
        opaque: ByteString,
    },
}

/// A `sip:` or `sips:` URI (§19.1.1). Text parts are kept as written (escaped);
/// use the `*_decoded` accessors for their meaning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipUri {
    /// `sips:` rather than `sip:` (§19.1.2).
    pub secure: bool,
    /// The user part, escaped as written (§19.1.2, §25.1 `user`).
    pub user: Option<ByteString>,
    /// The password, escaped as written (its use is NOT RECOMMENDED, §19.1.1).
    pub password: Option<ByteString>,
    /// The host.
    pub host: Host,
    /// The port, when written.
    pub port: Option<u16>,
    /// The uri-parameters in order (transport, user, method, ttl, maddr, lr, ...).
    pub params: Params,
    /// The headers part after `?`, escaped as written (`hname=hvalue&...`).
    pub headers: Option<ByteString>,
}

/// A `tel:` URI (RFC 3966 §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TelUri {
    /// A global number (`+` and digits) rather than a local one.
    pub global: bool,
    /// The digits with their visual separators, without the `+`.
    pub number: ByteString,
    /// The parameters (phone-context, ext, isub, ...).
    pub params: Params,
}

pub(crate) struct RawSip<'a> {
    pub(crate) secure: bool,
    pub(crate) user: Option<&'a str>,
    pub(crate) password: Option<&'a str>,
    pub(crate) host: RawHost<'a>,
    pub(crate) port: Option<u16>,
    pub(crate) params: &'a str,
    pub(crate) headers: Option<&'a str>,
}

pub(crate) enum RawUri<'a> {
    Sip(RawSip<'a>),
    Tel {
        global: bool,
        number: &'a str,
        params: &'a str,
    },
    Other {
        scheme: &'a str,
        opaque: &'a str,
    },
}

impl RawUri<'_> {
    pub(crate) fn has_headers(&self) -> bool {
        matches!(
            self,
            RawUri::Sip(RawSip {
                headers: Some(_),
                ..
            })
        )
    }

    pub(crate) fn own(&self, base: &ByteString) -> Uri {
        match self {
            RawUri::Sip(r) => Uri::Sip(SipUri {
                secure: r.secure,
                user: r.user.map(|u| base.slice_ref(u)),
                password: r.password.map(|p| base.slice_ref(p)),
                host: r.host.own(base),
                port: r.port,
                params: Params::from_raw(base.slice_ref(r.params)),
                headers: r.headers.map(|h| base.slice_ref(h)),
            }),
            RawUri::Tel {
                global,
                number,
                params,
            } => Uri::Tel(TelUri {
                global: *global,
                number: base.slice_ref(number),
                params: Params::from_raw(base.slice_ref(params)),
            }),
            RawUri::Other { scheme, opaque } => Uri::Other {
                scheme: base.slice_ref(scheme),
                opaque: base.slice_ref(opaque),
            },
        }
    }
}

/// Scans a whole URI (`s` must be exactly the URI text).
#[inline(always)]
pub(crate) fn scan_uri(s: &str) -> Result<RawUri<'_>, ParseError> {
    let b = s.as_bytes();
    // Nearly every URI is `sip:`.
    if b.len() > 4 && b[..4].eq_ignore_ascii_case(b"sip:") {
        return scan_sip(s, 4, false).map(RawUri::Sip);
    }
    let colon = memchr(b':', b).ok_or(uri_err("URI without scheme"))?;
    let scheme = &b[..colon];
    if scheme.is_empty()
        || !scheme[0].is_ascii_alphabetic()
        || !scheme
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
    {
        return Err(uri_err("bad URI scheme"));
    }
    if scheme.eq_ignore_ascii_case(b"sip") {
        scan_sip(s, colon + 1, false).map(RawUri::Sip)
    } else if scheme.eq_ignore_ascii_case(b"sips") {
        scan_sip(s, colon + 1, true).map(RawUri::Sip)
    } else if scheme.eq_ignore_ascii_case(b"tel") {
        scan_tel(s, colon + 1)
    } else {
        let opaque = &b[colon + 1..];
        if opaque.is_empty() || !opaque.iter().all(|&c| scan::is(c, URIC)) {
            return Err(uri_err("bad characters in URI"));
        }
        Ok(RawUri::Other {
            scheme: &s[..colon],
            opaque: &s[colon + 1..],
        })
    }
}

#[inline(always)]
fn scan_sip(s: &str, start: usize, secure: bool) -> Result<RawSip<'_>, ParseError> {
    let (r, i) = scan_sip_at(s, start, secure)?;
    if i != s.len() {
        return Err(uri_err("unexpected character in SIP URI"));
    }
    Ok(r)
}

/// The SIP URI after its scheme, from `s[start]` to the first byte that
/// cannot continue it; returns it and where it stops. No URI character
/// class holds `>`, so in `<...>` it stops at the first `>` exactly when the
/// text before that `>` is a whole SIP URI.
#[inline(always)]
pub(crate) fn scan_sip_at(
    s: &str,
    start: usize,
    secure: bool,
) -> Result<(RawSip<'_>, usize), ParseError> {
    let b = s.as_bytes();
    let mut i = start;
    let (mut user, mut password) = (None, None);
    // The userinfo is a run of user characters (which include ';', '?' and
    // ',', RFC 4475 §3.1.1.2, §3.1.1.9), optionally ':' and a password, ending
    // in '@' (§25.1); without the '@' the same text is the host.
    let u_end = scan::run_escaped(b, i, USER).ok_or(uri_err("bad escape in URI"))?;
    if u_end > i {
        match b.get(u_end) {
            Some(b'@') => {
                user = Some(scan::sub(s, i, u_end));
                i = u_end + 1;
            }
            Some(b':') => {
                let p_end = scan::run_escaped(b, u_end + 1, PASSWORD)
                    .ok_or(uri_err("bad escape in URI password"))?;
                if b.get(p_end) == Some(&b'@') {
                    user = Some(scan::sub(s, i, u_end));
                    password = Some(scan::sub(s, u_end + 1, p_end));
                    i = p_end + 1;
                }
            }
            _ => {}
        }
    }
    let (host, mut i) = scan_host(s, i)?;
    let mut port = None;
    if b.get(i) == Some(&b':') {
        let e = i + 1 + b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        port = Some(
            scan::parse_num_bytes(&b[i + 1..e], 65535).ok_or(uri_err("bad port in URI"))? as u16,
        );
        i = e;
    }
    let pstart = i;
    while b.get(i) == Some(&b';') {
        let n0 = i + 1;
        let n1 = scan::run_escaped(b, n0, PARAM).ok_or(uri_err("bad escape in URI parameter"))?;
        if n1 == n0 {
            return Err(uri_err("empty URI parameter"));
        }
        i = n1;
        if b.get(i) == Some(&b'=') {
            let v1 =
                scan::run_escaped(b, i + 1, PARAM).ok_or(uri_err("bad escape in URI parameter"))?;
            if v1 == i + 1 {
                return Err(uri_err("empty URI parameter value"));
            }
            if s[n0..n1].eq_ignore_ascii_case("ttl")
                && scan::parse_num_bytes(&b[i + 1..v1], 255).is_none()
            {
                return Err(uri_err("bad ttl parameter"));
            }
            i = v1;
        }
    }
    let params = scan::sub(s, pstart, i);
    let mut headers = None;
    if b.get(i) == Some(&b'?') {
        let hstart = i + 1;
        i = hstart;
        loop {
            let n1 = scan::run_escaped(b, i, HNV).ok_or(uri_err("bad escape in URI header"))?;
            if n1 == i || b.get(n1) != Some(&b'=') {
                return Err(uri_err("bad URI header"));
            }
            i = scan::run_escaped(b, n1 + 1, HNV).ok_or(uri_err("bad escape in URI header"))?;
            if b.get(i) == Some(&b'&') {
                i += 1;
                continue;
            }
            break;
        }
        headers = Some(scan::sub(s, hstart, i));
    }
    Ok((
        RawSip {
            secure,
            user,
            password,
            host,
            port,
            params,
            headers,
        },
        i,
    ))
}

fn scan_tel(s: &str, start: usize) -> Result<RawUri<'_>, ParseError> {
    let b = s.as_bytes();
    let global = b.get(start) == Some(&b'+');
    let n0 = if global { start + 1 } else { start };
    let mut j = n0;
    let mut digits = 0;
    while j < b.len() {
        let c = b[j];
        if c.is_ascii_digit() || (!global && (c.is_ascii_hexdigit() || c == b'*' || c == b'#')) {
            digits += 1;
        } else if !matches!(c, b'-' | b'.' | b'(' | b')') {
            break;
        }
        j += 1;
    }
    if digits == 0 {
        return Err(uri_err("tel URI without digits"));
    }
    let number = scan::sub(s, n0, j);
    let pstart = j;
    while b.get(j) == Some(&b';') {
        let n1 = j
            + 1
            + b[j + 1..]
                .iter()
                .position(|c| !(c.is_ascii_alphanumeric() || *c == b'-'))
                .unwrap_or(b.len() - j - 1);
        if n1 == j + 1 {
            return Err(uri_err("empty tel URI parameter"));
        }
        j = n1;
        if b.get(j) == Some(&b'=') {
            let v1 = scan::run_escaped(b, j + 1, PARAM).ok_or(uri_err("bad escape in tel URI"))?;
            if v1 == j + 1 {
                return Err(uri_err("empty tel URI parameter value"));
            }
            j = v1;
        }
    }
    if j != b.len() {
        return Err(uri_err("unexpected character in tel URI"));
    }
    Ok(RawUri::Tel {
        global,
        number,
        params: scan::sub(s, pstart, j),
    })
}

impl Uri {
    /// Parses a URI from a zero-copy string (the result slices it).
    pub fn parse(s: &ByteString) -> Result<Uri, ParseError> {
        Ok(scan_uri(s)?.own(s))
    }

    /// The scheme, lower-case for sip/sips/tel.
    pub fn scheme(&self) -> &str {
        match self {
            Uri::Sip(u) if u.secure => "sips",
            Uri::Sip(_) => "sip",
            Uri::Tel(_) => "tel",
            Uri::Other { scheme, .. } => scheme,
        }
    }

    /// The SIP URI, if this is one.
    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    /// URI equivalence: §19.1.4 for SIP URIs, RFC 3966 §4 for tel URIs
    /// (visual separators ignored), case-insensitive scheme and exact text otherwise.
    pub fn equivalent(&self, other: &Uri) -> bool {
        match (self, other) {
            (Uri::Sip(a), Uri::Sip(b)) => a.equivalent(b),
            (Uri::Tel(a), Uri::Tel(b)) => a.equivalent(b),
            (
                Uri::Other {
                    scheme: s1,
                    opaque: o1,
                },
                Uri::Other {
                    scheme: s2,
                    opaque: o2,
                },
            ) => s1.eq_ignore_ascii_case(s2) && o1 == o2,
            _ => false,
        }
    }
}

impl FromStr for Uri {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uri::parse(&ByteString::from(s))
    }
}

impl From<SipUri> for Uri {
    fn from(u: SipUri) -> Self {
        Uri::Sip(u)
    }
}

impl From<TelUri> for Uri {
    fn from(u: TelUri) -> Self {
        Uri::Tel(u)
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.fmt(f),
            Uri::Tel(u) => u.fmt(f),
            Uri::Other { scheme, opaque } => write!(f, "{scheme}:{opaque}"),
        }
    }
}

fn opt_decoded(s: &Option<ByteString>) -> Option<Cow<'_, [u8]>> {
    s.as_deref().map(scan::unescape)
}

fn param_values_match(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => scan::unescape(a).eq_ignore_ascii_case(&scan::unescape(b)),
        _ => false,
    }
}

impl SipUri {
    /// A `sip:` URI for `host`, without user, port or parameters.
    pub fn new(host: Host) -> Self {
        SipUri {
            secure: false,
            user: None,
            password: None,
            host,
            port: None,
            params: Params::new(),
            headers: None,
        }
    }

    /// Parses a SIP or SIPS URI.
    pub fn parse(s: &ByteString) -> Result<SipUri, ParseError> {
        match Uri::parse(s)? {
            Uri::Sip(u) => Ok(u),
            _ => Err(ParseError::new(
                ErrorKind::InvalidArgument,
                "not a sip or sips URI",
            )),
        }
    }

    /// Sets the user, escaping what §25.1 does not allow unescaped.
    pub fn with_user(mut self, user: &str) -> Self {
        self.user = Some(escape_user(user).into());
        self
    }

    /// Sets the port.
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Makes it a `sips:` URI.
    pub fn with_secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Sets a uri-parameter; the value is escaped as §25.1 `pvalue` requires.
    pub fn with_param(mut self, name: &str, value: Option<&str>) -> Self {
        let v = value.map(escape_param);
        self.params.set(&escape_param(name), v.as_deref());
        self
    }

    /// The user part with escapes decoded (may hold any bytes, RFC 4475 §3.1.1.4).
    pub fn user_decoded(&self) -> Option<Cow<'_, [u8]>> {
        opt_decoded(&self.user)
    }

    /// The password with escapes decoded.
    pub fn password_decoded(&self) -> Option<Cow<'_, [u8]>> {
        opt_decoded(&self.password)
    }

    /// The `transport` parameter.
    pub fn transport(&self) -> Option<&str> {
        self.params.get("transport")
    }

    /// The `user` parameter (`phone`, `ip`, ...).
    pub fn user_param(&self) -> Option<&str> {
        self.params.get("user")
    }

    /// The `method` parameter.
    pub fn method_param(&self) -> Option<&str> {
        self.params.get("method")
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<&str> {
        self.params.get("maddr")
    }

    /// The `ttl` parameter.
    pub fn ttl(&self) -> Option<u8> {
        self.params.get("ttl").and_then(|t| t.parse().ok())
    }

    /// Whether the `lr` parameter is present (loose routing, §19.1.1).
    pub fn lr(&self) -> bool {
        self.params.contains("lr")
    }

    /// URI comparison of §19.1.4: userinfo case-sensitive and host
    /// case-insensitive after unescaping; ports equal or both absent; parameters
    /// present in both equal (case-insensitive), user/ttl/method/maddr/transport
    /// present in only one never matching; headers all present in both and equal.
    pub fn equivalent(&self, other: &SipUri) -> bool {
        if self.secure != other.secure
            || opt_decoded(&self.user) != opt_decoded(&other.user)
            || opt_decoded(&self.password) != opt_decoded(&other.password)
            || !self.host.same_as(&other.host)
            || self.port != other.port
        {
            return false;
        }
        const SPECIAL: [&str; 5] = ["user", "ttl", "method", "maddr", "transport"];
        let special = |n: &str| SPECIAL.iter().any(|s| n.eq_ignore_ascii_case(s));
        for (n, v) in self.params.iter() {
            match other.params.find(n) {
                Some(v2) if !param_values_match(v, v2) => return false,
                Some(_) => {}
                None if special(n) => return false,
                None => {}
            }
        }
        for (n, _) in other.params.iter() {
            if special(n) && !self.params.contains(n) {
                return false;
            }
        }
        header_set(self.headers.as_deref()) == header_set(other.headers.as_deref())
    }
}

fn header_set(h: Option<&str>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut v: Vec<(Vec<u8>, Vec<u8>)> = h
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            (
                scan::unescape(n).to_ascii_lowercase(),
                scan::unescape(v).into_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)?;
        if let Some(h) = &self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

impl FromStr for SipUri {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SipUri::parse(&ByteString::from(s))
    }
}

impl TelUri {
    /// The `phone-context` parameter (mandatory for local numbers, RFC 3966 §5.1.5).
    pub fn phone_context(&self) -> Option<&str> {
        self.params.get("phone-context")
    }

    /// The number without visual separators, with `+` for a global number.
    pub fn normalized_number(&self) -> String {
        let mut s = String::with_capacity(self.number.len() + 1);
        if self.global {
            s.push('+');
        }
        s.extend(
            self.number
                .chars()
                .filter(|c| !matches!(c, '-' | '.' | '(' | ')'))
                .map(|c| c.to_ascii_uppercase()),
        );
        s
    }

    /// Equivalence of RFC 3966 §4: same normalized number and same parameters
    /// (names and values case-insensitive, order ignored).
    pub fn equivalent(&self, other: &TelUri) -> bool {
        if self.normalized_number() != other.normalized_number() {
            return false;
        }
        let norm = |p: &Params| {
            let mut v: Vec<(String, Option<String>)> = p
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.map(str::to_ascii_lowercase)))
                .collect();
            v.sort();
            v
        };
        norm(&self.params) == norm(&other.params)
    }
}

impl fmt::Display for TelUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tel:{}{}{}",
            if self.global { "+" } else { "" },
            self.number,
            self.params
        )
    }
}

/// Escapes a user part for a SIP URI (§25.1 `user`: unreserved and
/// user-unreserved characters stay, everything else becomes `%HH`).
pub fn escape_user(s: &str) -> String {
    scan::escape(s, USER)
}

/// Escapes a password for a SIP URI (§25.1 `password`).
pub fn escape_password(s: &str) -> String {
    scan::escape(s, PASSWORD)
}

/// Escapes a uri-parameter name or value (§25.1 `paramchar`).
pub fn escape_param(s: &str) -> String {
    scan::escape(s, PARAM)
}

/// Escapes a URI header name or value (§25.1 `hnv-unreserved`).
pub fn escape_header(s: &str) -> String {
    scan::escape(s, HNV)
}

/// Decodes `%HH` escapes of a URI part (invalid escapes are kept as written).
pub fn unescape(s: &str) -> Cow<'_, [u8]> {
    scan::unescape(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_sip_uris() {
        let u = sip(
            "sip:alice:secret@atlanta.com:5060;transport=tcp;lr?subject=project%20x&priority=urgent",
        );
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("secret"));
        assert_eq!(u.host, Host::Domain("atlanta.com".into()));
        assert_eq!(u.port, Some(5060));
        assert_eq!(u.transport(), Some("tcp"));
        assert!(u.lr());
        assert_eq!(
            u.headers.as_deref(),
            Some("subject=project%20x&priority=urgent")
        );
        assert_eq!(
            u.to_string(),
            "sip:alice:secret@atlanta.com:5060;transport=tcp;lr?subject=project%20x&priority=urgent"
        );
        let u = sip("sips:[2001:db8::10]:5061");
        assert!(u.secure);
        assert_eq!(u.host, Host::V6("2001:db8::10".parse().unwrap()));
        assert_eq!(u.to_string(), "sips:[2001:db8::10]:5061");
        let u = sip("sip:[::ffff:192.0.2.1]");
        assert_eq!(u.to_string(), "sip:[::ffff:192.0.2.1]");
        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user.as_deref(), Some("user;par=u%40example.net"));
        let u = sip("sip:%75se%72@example.com");
        assert_eq!(u.user_decoded().as_deref(), Some(&b"user"[..]));
        let u = sip("sip:null-%00-null@example.com");
        assert_eq!(u.user_decoded().as_deref(), Some(&b"null-\0-null"[..]));
    }

    #[test]
    fn rejects_bad_sip_uris() {
        for bad in [
            "sip:",
            "sip:user@",
            "sip:user@example.com; lr",
            "sip:user@example.com:99999",
            "sip:user@[2001:db8::10",
            "sip:user@2001:db8::10:5070",
            "sip:user@[2001:db8::10]5070",
            "sip:us%4ger@example.com",
            "sip:user@example.com;;lr",
            "sip:user@example.com;ttl=300",
            "sip:user@exa mple.com",
            "sip:a@b..c",
            "sip:a@300.1.1.1",
            "<sip:user@example.com>",
        ] {
            assert!(bad.parse::<Uri>().is_err(), "{bad}");
        }
    }

    #[test]
    fn tel_and_other_uris() {
        let u: Uri = "tel:+1-201-555-0123;ext=12".parse().unwrap();
        let Uri::Tel(t) = &u else { panic!() };
        assert!(t.global);
        assert_eq!(t.normalized_number(), "+12015550123");
        assert_eq!(u.to_string(), "tel:+1-201-555-0123;ext=12");
        let u: Uri = "tel:7042;phone-context=example.com".parse().unwrap();
        let Uri::Tel(t) = &u else { panic!() };
        assert_eq!(t.phone_context(), Some("example.com"));
        let a: Uri = "tel:+1(201)5550123".parse().unwrap();
        let b: Uri = "tel:+1-201-555-0123".parse().unwrap();
        assert!(a.equivalent(&b));
        for o in [
            "nobodyKnowsThisScheme:totallyopaquecontent",
            "soap.beep://192.0.2.103:3002",
            "isbn:2983792873",
            "name:John_Smith",
            "http://www.example.com",
        ] {
            let u: Uri = o.parse().unwrap();
            assert!(matches!(u, Uri::Other { .. }), "{o}");
            assert_eq!(u.to_string(), o);
        }
        assert!("tel:".parse::<Uri>().is_err());
        assert!("1abc:foo".parse::<Uri>().is_err());
    }

    #[test]
    fn comparison_rfc3261_19_1_4() {
        let eq = [
            (
                "sip:%61lice@atlanta.com;transport=TCP",
                "sip:alice@AtLanTa.CoM;Transport=tcp",
            ),
            ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
            ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
            (
                "sip:carol@chicago.com;newparam=5",
                "sip:carol@chicago.com;security=on",
            ),
            (
                "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
                "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
            ),
            (
                "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
                "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
            ),
        ];
        for (a, b) in eq {
            assert!(sip(a).equivalent(&sip(b)), "{a} == {b}");
            assert!(sip(b).equivalent(&sip(a)), "{b} == {a}");
        }
        let ne = [
            (
                "SIP:ALICE@AtLanTa.CoM;Transport=udp",
                "sip:alice@AtLanTa.CoM;Transport=UDP",
            ),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
            (
                "sip:bob@biloxi.com",
                "sip:bob@biloxi.com:6000;transport=tcp",
            ),
            (
                "sip:carol@chicago.com",
                "sip:carol@chicago.com?Subject=next%20meeting",
            ),
            ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
            (
                "sip:carol@chicago.com;security=on",
                "sip:carol@chicago.com;security=off",
            ),
            ("sip:a@b.c", "sips:a@b.c"),
            ("sip:a@b.c;maddr=x.y", "sip:a@b.c"),
        ];
        for (a, b) in ne {
            assert!(!sip(a).equivalent(&sip(b)), "{a} != {b}");
            assert!(!sip(b).equivalent(&sip(a)), "{b} != {a}");
        }
    }

    #[test]
    fn escaping_rules_section_25() {
        assert_eq!(escape_user("I have spaces"), "I%20have%20spaces");
        assert_eq!(escape_user("a;b?c/d&e=f+g$h,i"), "a;b?c/d&e=f+g$h,i");
        assert_eq!(escape_user("a@b:c%"), "a%40b%3Ac%25");
        assert_eq!(escape_password("p:w@"), "p%3Aw%40");
        assert_eq!(escape_param("a;b=c"), "a%3Bb%3Dc");
        assert_eq!(escape_header("<sip:x@y>"), "%3Csip:x%40y%3E");
        let u = SipUri::new(Host::parse("example.com").unwrap())
            .with_user("I have spaces")
            .with_param("n", Some("v a"));
        assert_eq!(u.to_string(), "sip:I%20have%20spaces@example.com;n=v%20a");
        let back = sip(&u.to_string());
        assert_eq!(back, u);
        assert_eq!(&*back.user_decoded().unwrap(), b"I have spaces");
    }

    #[test]
    fn params() {
        let mut p = Params::from_raw(" ; tag = 1918 ;lr; q=\"a;b\"".into());
        assert_eq!(p.get("TAG"), Some("1918"));
        assert_eq!(p.find("lr"), Some(None));
        assert_eq!(p.get_unquoted("q").as_deref(), Some("a;b"));
        p.set("tag", Some("x"));
        assert_eq!(p.to_string(), ";tag=x;lr;q=\"a;b\"");
        p.remove("lr");
        p.push("n", None);
        assert_eq!(p.to_string(), ";tag=x;q=\"a;b\";n");
        assert!(scan_header_params(b";;", 0).is_err());
        assert_eq!(scan_header_params(b" ; a = b ; c ", 0).unwrap(), 13);
    }

    #[test]
    fn hosts() {
        assert_eq!(
            Host::parse("2001:db8::1").unwrap().to_string(),
            "[2001:db8::1]"
        );
        assert_eq!(
            Host::parse("[2001:db8::1]").unwrap(),
            Host::V6("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            Host::parse("192.0.2.1").unwrap(),
            Host::V4([192, 0, 2, 1].into())
        );
        assert!(Host::parse("a b").is_err());
        assert!(Host::Domain("A.com".into()).same_as(&Host::Domain("a.COM".into())));
    }
}
