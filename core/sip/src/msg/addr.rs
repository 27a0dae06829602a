//! Addresses: `name-addr` / `addr-spec` with header parameters (RFC 3261 §20.10,
//! §20.20, §20.39, §25.1), used by From, To, Contact, Route, Record-Route,
//! Refer-To, Referred-By, P-Asserted-Identity, Diversion, History-Info.

use std::borrow::Cow;
use std::fmt;

use bytestring::ByteString;
use memchr::memchr2;

use super::error::ParseError;
use super::scan::{self, TOKEN};
use super::uri::{Params, RawUri, Uri, scan_header_params, scan_sip_at, scan_uri};

pub(crate) struct RawNameAddr<'a> {
    pub(crate) display: Option<&'a str>,
    pub(crate) uri: RawUri<'a>,
    pub(crate) params: &'a str,
}

impl RawNameAddr<'_> {
    pub(crate) fn own(&self, base: &ByteString) -> NameAddr {
        NameAddr {
            display: self.display.map(|d| base.slice_ref(d)),
            uri: self.uri.own(base),
            params: Params::from_raw(base.slice_ref(self.params)),
        }
    }
}

/// Scans one `(name-addr / addr-spec) *(SEMI param)` element. With
/// `require_angle`, only the name-addr form is accepted (Route, Record-Route).
pub(crate) fn scan_name_addr(s: &str, require_angle: bool) -> Result<RawNameAddr<'_>, ParseError> {
    let (r, end) = scan_name_addr_at(s, 0, require_angle)?;
    if end != s.len() {
        return Err(ParseError::value("unexpected text after address"));
    }
    Ok(r)
}

/// Scans one address element from `s[start]`; returns it and the index where
/// it ends (end of input or the `,` before the next element).
#[inline(always)]
pub(crate) fn scan_name_addr_at(
    s: &str,
    start: usize,
    require_angle: bool,
) -> Result<(RawNameAddr<'_>, usize), ParseError> {
    let b = s.as_bytes();
    let mut i = scan::skip_wsp(b, start);
    let mut display = None;
    let uri;
    let pstart;
    if b.get(i) == Some(&b'"') {
        let e = scan::skip_quoted(b, i)
            .ok_or(ParseError::value("unbalanced quotes in display name"))?;
        display = Some(scan::sub(s, i, e));
        i = scan::skip_wsp(b, e);
        if b.get(i) != Some(&b'<') {
            return Err(ParseError::value("expected '<' after display name"));
        }
    } else if b.get(i) != Some(&b'<') {
        // display-name = *(token LWS): look ahead for the '<'.
        let mut j = i;
        loop {
            let t = scan::run(b, j, TOKEN);
            if t == j {
                break;
            }
            j = scan::skip_wsp(b, t);
        }
        if b.get(j) == Some(&b'<') {
            display = Some(scan::trim(scan::sub(s, i, j)));
            i = j;
        }
    }
    let sip_in_angle = if b.get(i) == Some(&b'<')
        && b.len() > i + 5
        && b[i + 1..i + 5].eq_ignore_ascii_case(b"sip:")
    {
        // The usual `<sip:...>`: the URI scan itself finds the `>`.
        match scan_sip_at(s, i + 5, false) {
            Ok((r, e)) if b.get(e) == Some(&b'>') => Some((r, e)),
            _ => None,
        }
    } else {
        None
    };
    if let Some((r, e)) = sip_in_angle {
        uri = RawUri::Sip(r);
        pstart = e + 1;
    } else if b.get(i) == Some(&b'<') {
        // A value holds no CR (the parser's fast path scans on past the line
        // end: stopping at a CR keeps that scan within the line).
        let close = memchr2(b'>', b'\r', &b[i + 1..])
            .map(|p| p + i + 1)
            .filter(|&c| b[c] == b'>')
            .ok_or(ParseError::value("missing '>' after URI"))?;
        uri = scan_uri(scan::sub(s, i + 1, close))?;
        pstart = close + 1;
    } else {
        if require_angle {
            return Err(ParseError::value("URI must be enclosed in '<' '>'"));
        }
        // addr-spec: a URI holding ',', '?' or ';' must be in brackets (§20.10),
        // so the URI ends at the first ';' or whitespace.
        let end = b[i..]
            .iter()
            .position(|&c| c == b';' || c == b',' || c == b'\r' || scan::is_wsp(c))
            .map_or(b.len(), |p| i + p);
        let uri_text = scan::sub(s, i, end);
        if uri_text.contains('?') {
            return Err(ParseError::value(
                "URI with headers must be enclosed in '<' '>'",
            ));
        }
        uri = scan_uri(uri_text)?;
        pstart = end;
    }
    let end = scan_header_params(b, pstart)?;
    Ok((
        RawNameAddr {
            display: display.filter(|d| !d.is_empty()),
            uri,
            params: scan::trim(scan::sub(s, pstart, end)),
        },
        end,
    ))
}

/// An address with optional display name and header parameters (§25.1
/// `name-addr`/`addr-spec` plus `*( SEMI param )`), as in From, To, Contact,
/// Route and Record-Route. Printed always in the `name-addr` form with `<...>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr {
    display: Option<ByteString>,
    /// The address.
    pub uri: Uri,
    /// The header parameters after the address (tag, expires, q, lr, ...).
    pub params: Params,
}

impl NameAddr {
    /// An address without display name or parameters.
    pub fn new(uri: impl Into<Uri>) -> Self {
        NameAddr {
            display: None,
            uri: uri.into(),
            params: Params::new(),
        }
    }

    /// Parses one address element (not a comma-separated list).
    pub fn parse(value: &ByteString) -> Result<NameAddr, ParseError> {
        Ok(scan_name_addr(value, false)?.own(value))
    }

    /// Sets the display name, written as a quoted-string with `"` and `\` escaped.
    pub fn with_display_name(mut self, name: &str) -> Self {
        self.display = Some(scan::quote(name).into());
        self
    }

    /// Sets or replaces a parameter (a token, host or quoted-string value).
    pub fn with_param(mut self, name: &str, value: Option<&str>) -> Self {
        self.params.set(name, value);
        self
    }

    /// Sets the `tag` parameter (§19.3).
    pub fn with_tag(mut self, tag: &str) -> Self {
        self.set_tag(tag);
        self
    }

    /// Sets the `tag` parameter (§19.3).
    pub fn set_tag(&mut self, tag: &str) {
        self.params.set("tag", Some(tag));
    }

    /// The display name, decoded: quotes and quoted-pairs removed.
    pub fn display_name(&self) -> Option<Cow<'_, str>> {
        self.display.as_deref().map(scan::unquote)
    }

    /// The display name as written (a quoted-string keeps its quotes).
    pub fn display_name_raw(&self) -> Option<&str> {
        self.display.as_deref()
    }

    /// The `tag` parameter (§19.3).
    pub fn tag(&self) -> Option<&str> {
        self.params.get("tag")
    }

    /// The `tag` parameter as a zero-copy slice.
    pub fn tag_bytes(&self) -> Option<ByteString> {
        self.params.get_bytes("tag")
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "{d} ")?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

/// One Contact value (§20.10): an address, or `*` in a REGISTER that removes
/// all bindings (§10.2.2).
// Contacts are short-lived values read from a header; boxing the address
// would cost an allocation per value for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contact {
    /// `*`.
    Wildcard,
    /// An address with contact-params.
    Address(NameAddr),
}

/// Checks the contact-params whose grammar is fixed (§20.10: `expires` is
/// delta-seconds, `q` a qvalue).
pub(crate) fn check_contact_params(params: &str) -> Result<(), ParseError> {
    for (n, v) in super::uri::ParamIter::new(params) {
        if n.eq_ignore_ascii_case("expires") {
            v.and_then(|v| scan::parse_num(v, u64::from(u32::MAX)))
                .ok_or(ParseError::new(
                    super::error::ErrorKind::OutOfRange,
                    "bad expires parameter",
                ))?;
        } else if n.eq_ignore_ascii_case("q") && !v.is_some_and(is_qvalue) {
            return Err(ParseError::value("bad q parameter"));
        }
    }
    Ok(())
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` (§25.1).
pub(crate) fn is_qvalue(v: &str) -> bool {
    let b = v.as_bytes();
    match b.first() {
        Some(b'0') | Some(b'1') => {}
        _ => return false,
    }
    if b.len() == 1 {
        return true;
    }
    if b[1] != b'.' || b.len() > 5 {
        return false;
    }
    let frac = &b[2..];
    if b[0] == b'1' {
        frac.iter().all(|c| *c == b'0')
    } else {
        frac.iter().all(u8::is_ascii_digit)
    }
}

impl Contact {
    /// Parses one Contact element (`*` or an address).
    pub fn parse(value: &ByteString) -> Result<Contact, ParseError> {
        if scan::trim(value) == "*" {
            return Ok(Contact::Wildcard);
        }
        let raw = scan_name_addr(value, false)?;
        check_contact_params(raw.params)?;
        Ok(Contact::Address(raw.own(value)))
    }

    /// The address, unless this is `*`.
    pub fn address(&self) -> Option<&NameAddr> {
        match self {
            Contact::Wildcard => None,
            Contact::Address(a) => Some(a),
        }
    }

    /// The `expires` parameter in seconds.
    pub fn expires(&self) -> Option<u32> {
        self.address()?.params.get("expires")?.parse().ok()
    }

    /// The `q` parameter (preference, 0 to 1), as thousandths.
    pub fn q(&self) -> Option<u16> {
        let v = self.address()?.params.get("q")?;
        if !is_qvalue(v) {
            return None;
        }
        let (int, frac) = v.split_once('.').unwrap_or((v, ""));
        let mut q: u16 = if int == "1" { 1000 } else { 0 };
        let mut scale = 100;
        for c in frac.bytes() {
            q += u16::from(c - b'0') * scale;
            scale /= 10;
        }
        Some(q)
    }
}

impl fmt::Display for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Contact::Wildcard => f.write_str("*"),
            Contact::Address(a) => a.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn na(s: &str) -> NameAddr {
        NameAddr::parse(&ByteString::from(s)).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn forms() {
        let a = na(r#""J Rosenberg \\\""       <sip:jdrosen@example.com> ; tag = 98asjd8"#);
        assert_eq!(a.display_name().as_deref(), Some(r#"J Rosenberg \""#));
        assert_eq!(a.tag(), Some("98asjd8"));
        assert_eq!(
            a.to_string(),
            r#""J Rosenberg \\\"" <sip:jdrosen@example.com>;tag=98asjd8"#
        );
        let a = na("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n");
        assert_eq!(a.tag(), Some("1918181833n"));
        assert!(a.display_name().is_none());
        let a = na("caller<sip:caller@example.com>;tag=323");
        assert_eq!(a.display_name().as_deref(), Some("caller"));
        let a = na("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;tag=x");
        assert_eq!(a.display_name_raw(), Some("token1~` token2'+_ token3*%!.-"));
        let a = na("isbn:2983792873");
        assert_eq!(a.uri.scheme(), "isbn");
        let a = na("<sip:user@example.com?Route=%3Csip:sip.example.com%3E>");
        assert!(a.uri.as_sip().unwrap().headers.is_some());
        let a = na("sip:+19725552222@gw1.example.net;unknownparam");
        assert!(a.params.contains("unknownparam"));
        assert!(a.uri.as_sip().unwrap().params.is_empty());
        let a = na("<sip:+19725552222@gw1.example.net;unknownparam>");
        assert!(a.params.is_empty());
        let b = NameAddr::new(a.uri.clone())
            .with_display_name("A \"B\"")
            .with_tag("t1");
        assert_eq!(
            b.to_string(),
            r#""A \"B\"" <sip:+19725552222@gw1.example.net;unknownparam>;tag=t1"#
        );
        assert_eq!(na(&b.to_string()), b);
    }

    #[test]
    fn rejects() {
        for bad in [
            r#""Mr. J. User <sip:j.user@example.com>"#,
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            "< sip:t.watson@example.org >",
            r#""Joe" <sip:joe@example.org>;;;;"#,
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "<sip:user@example.com",
            "\"x\" sip:a@b",
            "<sip:a@b> junk",
        ] {
            assert!(NameAddr::parse(&ByteString::from(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn contacts() {
        let c = Contact::parse(&ByteString::from("<sip:a@b>;expires=3600;q=0.7")).unwrap();
        assert_eq!(c.expires(), Some(3600));
        assert_eq!(c.q(), Some(700));
        assert_eq!(
            Contact::parse(&ByteString::from(" * ")).unwrap(),
            Contact::Wildcard
        );
        assert!(Contact::parse(&ByteString::from("<sip:a@b>;expires=280297596632815")).is_err());
        assert!(Contact::parse(&ByteString::from("<sip:a@b>;q=2")).is_err());
        assert!(
            is_qvalue("1.000") && is_qvalue("0.33") && !is_qvalue("1.1") && !is_qvalue("0.1234")
        );
    }
}
