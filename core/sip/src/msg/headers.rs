//! Header names and the ordered header list (RFC 3261 §7.3, §20).

use std::fmt;
use std::hash::{Hash, Hasher};

use bytestring::ByteString;

use super::scan::{self, CommaSplit};

macro_rules! known_headers {
    ($( $(#[$doc:meta])* $variant:ident => $canon:literal, $lower:literal, $compact:expr, $list:expr; )*) => {
        /// A header field name (§7.3). Names compare case-insensitively and a
        /// compact form (§7.3.3) maps to its long form; unknown names keep their
        /// original spelling in [`HeaderName::Other`] byte-exact.
        #[derive(Clone, Debug)]
        #[non_exhaustive]
        pub enum HeaderName {
            $( $(#[$doc])* $variant, )*
            /// Any other header, spelled as received or given.
            Other(ByteString),
        }

        impl HeaderName {
            /// The canonical (long form) name; the original spelling for [`HeaderName::Other`].
            pub fn as_str(&self) -> &str {
                match self {
                    $( HeaderName::$variant => $canon, )*
                    HeaderName::Other(s) => s,
                }
            }

            fn from_lower(lower: &[u8]) -> Option<HeaderName> {
                Some(match lower {
                    $( $lower => HeaderName::$variant, )*
                    _ => return None,
                })
            }

            /// The compact form (§7.3.3, RFC 3515, RFC 3265, RFC 4028, RFC 3841), if it has one.
            pub fn compact(&self) -> Option<char> {
                match self {
                    $( HeaderName::$variant => $compact, )*
                    HeaderName::Other(_) => None,
                }
            }

            /// Whether the header's grammar is a comma-separated list, so that
            /// several values may share one line (§7.3.1).
            pub fn is_list(&self) -> bool {
                match self {
                    $( HeaderName::$variant => $list, )*
                    HeaderName::Other(_) => false,
                }
            }

        }
    };
}

known_headers! {
    /// Accept (§20.1).
    Accept => "Accept", b"accept", None, true;
    /// Accept-Contact (RFC 3841).
    AcceptContact => "Accept-Contact", b"accept-contact", Some('a'), true;
    /// Accept-Encoding (§20.2).
    AcceptEncoding => "Accept-Encoding", b"accept-encoding", None, true;
    /// Accept-Language (§20.3).
    AcceptLanguage => "Accept-Language", b"accept-language", None, true;
    /// Alert-Info (§20.4).
    AlertInfo => "Alert-Info", b"alert-info", None, true;
    /// Allow (§20.5).
    Allow => "Allow", b"allow", None, true;
    /// Allow-Events (RFC 6665 §8.2.2).
    AllowEvents => "Allow-Events", b"allow-events", Some('u'), true;
    /// Authentication-Info (§20.6).
    AuthenticationInfo => "Authentication-Info", b"authentication-info", None, false;
    /// Authorization (§20.7).
    Authorization => "Authorization", b"authorization", None, false;
    /// Call-ID (§20.8).
    CallId => "Call-ID", b"call-id", Some('i'), false;
    /// Call-Info (§20.9).
    CallInfo => "Call-Info", b"call-info", None, true;
    /// Contact (§20.10).
    Contact => "Contact", b"contact", Some('m'), true;
    /// Content-Disposition (§20.11).
    ContentDisposition => "Content-Disposition", b"content-disposition", None, false;
    /// Content-Encoding (§20.12).
    ContentEncoding => "Content-Encoding", b"content-encoding", Some('e'), true;
    /// Content-Language (§20.13).
    ContentLanguage => "Content-Language", b"content-language", None, true;
    /// Content-Length (§20.14).
    ContentLength => "Content-Length", b"content-length", Some('l'), false;
    /// Content-Type (§20.15).
    ContentType => "Content-Type", b"content-type", Some('c'), false;
    /// CSeq (§20.16).
    CSeq => "CSeq", b"cseq", None, false;
    /// Date (§20.17).
    Date => "Date", b"date", None, false;
    /// Diversion (RFC 5806).
    Diversion => "Diversion", b"diversion", None, true;
    /// Error-Info (§20.18).
    ErrorInfo => "Error-Info", b"error-info", None, true;
    /// Event (RFC 6665 §8.2.1).
    Event => "Event", b"event", Some('o'), false;
    /// Expires (§20.19).
    Expires => "Expires", b"expires", None, false;
    /// From (§20.20).
    From => "From", b"from", Some('f'), false;
    /// History-Info (RFC 7044).
    HistoryInfo => "History-Info", b"history-info", None, true;
    /// Identity (RFC 8224).
    Identity => "Identity", b"identity", Some('y'), false;
    /// Identity-Info (RFC 4474).
    IdentityInfo => "Identity-Info", b"identity-info", Some('n'), false;
    /// In-Reply-To (§20.21).
    InReplyTo => "In-Reply-To", b"in-reply-to", None, true;
    /// Max-Forwards (§20.22).
    MaxForwards => "Max-Forwards", b"max-forwards", None, false;
    /// MIME-Version (§20.24).
    MimeVersion => "MIME-Version", b"mime-version", None, false;
    /// Min-Expires (§20.23).
    MinExpires => "Min-Expires", b"min-expires", None, false;
    /// Min-SE (RFC 4028).
    MinSe => "Min-SE", b"min-se", None, false;
    /// Organization (§20.25).
    Organization => "Organization", b"organization", None, false;
    /// P-Asserted-Identity (RFC 3325).
    PAssertedIdentity => "P-Asserted-Identity", b"p-asserted-identity", None, true;
    /// P-Preferred-Identity (RFC 3325).
    PPreferredIdentity => "P-Preferred-Identity", b"p-preferred-identity", None, true;
    /// Path (RFC 3327).
    Path => "Path", b"path", None, true;
    /// Priority (§20.26).
    Priority => "Priority", b"priority", None, false;
    /// Privacy (RFC 3323).
    Privacy => "Privacy", b"privacy", None, false;
    /// Proxy-Authenticate (§20.27).
    ProxyAuthenticate => "Proxy-Authenticate", b"proxy-authenticate", None, false;
    /// Proxy-Authorization (§20.28).
    ProxyAuthorization => "Proxy-Authorization", b"proxy-authorization", None, false;
    /// Proxy-Require (§20.29).
    ProxyRequire => "Proxy-Require", b"proxy-require", None, true;
    /// RAck (RFC 3262).
    RAck => "RAck", b"rack", None, false;
    /// Reason (RFC 3326).
    Reason => "Reason", b"reason", None, true;
    /// Record-Route (§20.30).
    RecordRoute => "Record-Route", b"record-route", None, true;
    /// Refer-To (RFC 3515).
    ReferTo => "Refer-To", b"refer-to", Some('r'), false;
    /// Referred-By (RFC 3892).
    ReferredBy => "Referred-By", b"referred-by", Some('b'), false;
    /// Reject-Contact (RFC 3841).
    RejectContact => "Reject-Contact", b"reject-contact", Some('j'), true;
    /// Replaces (RFC 3891).
    Replaces => "Replaces", b"replaces", None, false;
    /// Reply-To (§20.31).
    ReplyTo => "Reply-To", b"reply-to", None, false;
    /// Request-Disposition (RFC 3841).
    RequestDisposition => "Request-Disposition", b"request-disposition", Some('d'), true;
    /// Require (§20.32).
    Require => "Require", b"require", None, true;
    /// Retry-After (§20.33).
    RetryAfter => "Retry-After", b"retry-after", None, false;
    /// Route (§20.34).
    Route => "Route", b"route", None, true;
    /// RSeq (RFC 3262).
    RSeq => "RSeq", b"rseq", None, false;
    /// Server (§20.35).
    Server => "Server", b"server", None, false;
    /// Service-Route (RFC 3608).
    ServiceRoute => "Service-Route", b"service-route", None, true;
    /// Session-Expires (RFC 4028).
    SessionExpires => "Session-Expires", b"session-expires", Some('x'), false;
    /// Subject (§20.36).
    Subject => "Subject", b"subject", Some('s'), false;
    /// Subscription-State (RFC 6665 §8.2.3).
    SubscriptionState => "Subscription-State", b"subscription-state", None, false;
    /// Supported (§20.37).
    Supported => "Supported", b"supported", Some('k'), true;
    /// Timestamp (§20.38).
    Timestamp => "Timestamp", b"timestamp", None, false;
    /// To (§20.39).
    To => "To", b"to", Some('t'), false;
    /// Unsupported (§20.40).
    Unsupported => "Unsupported", b"unsupported", None, true;
    /// User-Agent (§20.41).
    UserAgent => "User-Agent", b"user-agent", None, false;
    /// Via (§20.42).
    Via => "Via", b"via", Some('v'), true;
    /// Warning (§20.43).
    Warning => "Warning", b"warning", None, true;
    /// WWW-Authenticate (§20.44).
    WwwAuthenticate => "WWW-Authenticate", b"www-authenticate", None, false;
}

impl HeaderName {
    /// Recognises a header name (case-insensitive, compact forms included).
    /// Returns `None` for names that are not known; see [`HeaderName::new`].
    pub fn known(name: &[u8]) -> Option<HeaderName> {
        // Every known name is a token.
        if scan::run(name, 0, scan::TOKEN) == name.len() {
            Self::known_token(name)
        } else {
            None
        }
    }

    /// [`HeaderName::known`] for a name that is a token (§25.1), as the parser has.
    pub(crate) fn known_token(name: &[u8]) -> Option<HeaderName> {
        debug_assert_eq!(scan::run(name, 0, scan::TOKEN), name.len());
        if name.len() == 1 {
            return Self::from_compact(name[0]);
        }
        if name.len() <= 16 {
            let mut buf = [0u8; 16];
            buf[..name.len()].copy_from_slice(name);
            if let Some(h) = Self::known_fast(&buf, 0, name.len()) {
                return Some(h);
            }
        }
        Self::known_slow(name)
    }

    /// [`HeaderName::known_token`] for the token `buf[p..n_end]`: the bytes
    /// after the name (at least its colon) let the usual names be compared
    /// as two 8-byte words without a copy.
    #[inline]
    pub(crate) fn known_in(buf: &[u8], p: usize, n_end: usize) -> Option<HeaderName> {
        let name = &buf[p..n_end];
        if name.len() == 1 {
            return Self::from_compact(name[0]);
        }
        if let Some(h) = Self::known_fast(buf, p, name.len()) {
            return Some(h);
        }
        Self::known_slow(name)
    }

    /// The usual header line start `name:` (no whitespace before the colon)
    /// with a known name, found from `buf[p..p + 16]` read as two words: the
    /// colon by a zero-byte search of the words XOR `:`, then the name by
    /// [`HeaderName::known_fast`], with no byte-wise token run. Returns the
    /// name and its length (the colon's offset from `p`); `None` sends the
    /// line the general way (any other name, or fewer than 16 bytes left).
    ///
    /// A known name is a token, so a name that matches is one, provided it
    /// holds no CR (the one non-token byte the OR-0x20 compare takes for a
    /// token byte, `-`): that is checked with the same zero-byte search.
    #[inline]
    pub(crate) fn known_colon(buf: &[u8], p: usize) -> Option<(HeaderName, usize)> {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        // The lowest set bit marks the first zero byte exactly (higher bits
        // may be false positives, only above a true zero byte).
        #[inline(always)]
        fn zeros(x: u64) -> u64 {
            x.wrapping_sub(ONES) & !x & HIGH
        }
        let w = buf.get(p..p + 16)?;
        let r0 = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        let r1 = u64::from_le_bytes([w[8], w[9], w[10], w[11], w[12], w[13], w[14], w[15]]);
        let (c0, c1) = (zeros(r0 ^ (ONES * 0x3a)), zeros(r1 ^ (ONES * 0x3a)));
        let n = if c0 != 0 {
            (c0.trailing_zeros() / 8) as usize
        } else if c1 != 0 {
            8 + (c1.trailing_zeros() / 8) as usize
        } else {
            return None;
        };
        // The first CR, if any, must come after the colon.
        let (d0, d1) = (zeros(r0 ^ (ONES * 0x0d)), zeros(r1 ^ (ONES * 0x0d)));
        let cr = if d0 != 0 {
            (d0.trailing_zeros() / 8) as usize
        } else if d1 != 0 {
            8 + (d1.trailing_zeros() / 8) as usize
        } else {
            16
        };
        if cr < n {
            return None;
        }
        let name = match n {
            0 => return None,
            1 => Self::from_compact(w[0])?,
            _ => Self::known_words(r0, r1, n)?,
        };
        Some((name, n))
    }

    /// The headers of nearly every message, without the lower-casing copy:
    /// the name `buf[p..p + n]` read as two little-endian words with bit 5
    /// set in every byte, masked to its length, compared with the lower-case
    /// name. Setting bit 5 lower-cases a letter; of the other bytes only CR
    /// (0x0D) would turn into `-`, and a token has no CR, so for a token this
    /// is exactly a case-insensitive compare. `None` when the name is not one
    /// of these or `buf` has fewer than 16 bytes from `p`.
    #[inline(always)]
    fn known_fast(buf: &[u8], p: usize, n: usize) -> Option<HeaderName> {
        let w = buf.get(p..p + 16)?;
        let w0 = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        let w1 = u64::from_le_bytes([w[8], w[9], w[10], w[11], w[12], w[13], w[14], w[15]]);
        Self::known_words(w0, w1, n)
    }

    /// [`HeaderName::known_fast`] on the two words already read.
    #[inline(always)]
    fn known_words(w0: u64, w1: u64, n: usize) -> Option<HeaderName> {
        const fn word(s: &[u8], off: usize) -> u64 {
            let mut w = 0u64;
            let mut k = 0;
            while k < 8 {
                if off + k < s.len() {
                    w |= (s[off + k] as u64) << (8 * k);
                }
                k += 1;
            }
            w
        }
        const fn mask(n: usize) -> u64 {
            if n >= 8 {
                u64::MAX
            } else {
                (1u64 << (8 * n)) - 1
            }
        }
        const LOWER: u64 = 0x2020_2020_2020_2020;
        let (w0, w1) = (w0 | LOWER, w1 | LOWER);
        let (m0, m1) = (mask(n), if n > 8 { mask(n - 8) } else { 0 });
        let (w0, w1) = (w0 & m0, w1 & m1);
        macro_rules! pick {
            ($($lit:literal => $v:ident),* $(,)?) => {{
                $(
                    {
                        const C0: u64 = word($lit, 0);
                        const C1: u64 = word($lit, 8);
                        if w0 == C0 && w1 == C1 {
                            return Some(HeaderName::$v);
                        }
                    }
                )*
            }};
        }
        match n {
            2 => pick!(b"to" => To),
            3 => pick!(b"via" => Via),
            4 => pick!(b"from" => From, b"cseq" => CSeq),
            5 => pick!(b"route" => Route, b"allow" => Allow),
            7 => pick!(b"call-id" => CallId, b"contact" => Contact, b"expires" => Expires),
            9 => pick!(b"supported" => Supported),
            10 => pick!(b"user-agent" => UserAgent),
            12 => pick!(
                b"max-forwards" => MaxForwards,
                b"content-type" => ContentType,
                b"record-route" => RecordRoute,
            ),
            14 => pick!(b"content-length" => ContentLength),
            15 => pick!(b"session-expires" => SessionExpires),
            _ => {}
        }
        None
    }

    /// The lower-casing lookup of every known name.
    fn known_slow(name: &[u8]) -> Option<HeaderName> {
        let mut buf = [0u8; 24];
        if name.len() > buf.len() {
            return None;
        }
        let lower = &mut buf[..name.len()];
        for (d, s) in lower.iter_mut().zip(name) {
            *d = s.to_ascii_lowercase();
        }
        Self::from_lower(lower)
    }

    fn from_compact(c: u8) -> Option<HeaderName> {
        Some(match c.to_ascii_lowercase() {
            b'i' => HeaderName::CallId,
            b'm' => HeaderName::Contact,
            b'e' => HeaderName::ContentEncoding,
            b'l' => HeaderName::ContentLength,
            b'c' => HeaderName::ContentType,
            b'f' => HeaderName::From,
            b's' => HeaderName::Subject,
            b'k' => HeaderName::Supported,
            b't' => HeaderName::To,
            b'v' => HeaderName::Via,
            b'o' => HeaderName::Event,
            b'r' => HeaderName::ReferTo,
            b'b' => HeaderName::ReferredBy,
            b'u' => HeaderName::AllowEvents,
            b'x' => HeaderName::SessionExpires,
            b'a' => HeaderName::AcceptContact,
            b'j' => HeaderName::RejectContact,
            b'd' => HeaderName::RequestDisposition,
            b'y' => HeaderName::Identity,
            b'n' => HeaderName::IdentityInfo,
            _ => return None,
        })
    }

    /// A header name from text: the known variant when the name (or compact
    /// form) is known, else [`HeaderName::Other`] keeping `name` as given.
    /// Returns `None` when `name` is not a token (§25.1), as it could not be sent.
    pub fn new(name: &str) -> Option<HeaderName> {
        if !scan::is_token(name) {
            return None;
        }
        Some(Self::known(name.as_bytes()).unwrap_or_else(|| HeaderName::Other(name.into())))
    }
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (HeaderName::Other(_), _) | (_, HeaderName::Other(_)) => {
                self.as_str().eq_ignore_ascii_case(other.as_str())
            }
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl Eq for HeaderName {}

impl Hash for HeaderName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for b in self.as_str().bytes() {
            state.write_u8(b.to_ascii_lowercase());
        }
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&HeaderName> for HeaderName {
    fn from(h: &HeaderName) -> Self {
        h.clone()
    }
}

/// One header line: a name and its value, the value without the leading and
/// trailing whitespace and with folded lines joined by one space (§7.3.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The field name.
    pub name: HeaderName,
    /// The field value (zero-copy slice of the received message when it was not folded).
    pub value: ByteString,
}

/// The headers of a message, in order (§7.3). Order matters for headers of the
/// same name (Via, Route, Record-Route) and is kept for all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    list: Vec<Header>,
}

impl Headers {
    /// An empty list.
    pub fn new() -> Self {
        Headers { list: Vec::new() }
    }

    /// An empty list with room for `n` headers.
    pub fn with_capacity(n: usize) -> Self {
        Headers {
            list: Vec::with_capacity(n),
        }
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// All header lines in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.list.iter()
    }

    /// The value of the first line named `name`.
    pub fn get(&self, name: &HeaderName) -> Option<&ByteString> {
        self.list.iter().find(|h| h.name == *name).map(|h| &h.value)
    }

    /// The values of all lines named `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a ByteString> {
        self.list
            .iter()
            .filter(move |h| h.name == *name)
            .map(|h| &h.value)
    }

    /// The comma-separated elements of all lines named `name`, in order, as
    /// zero-copy slices; commas inside quoted-strings and `<...>` do not split
    /// (§7.3.1). Empty elements are skipped.
    pub fn values<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = ByteString> + 'a {
        self.get_all(name).flat_map(|v| {
            CommaSplit::new(v)
                .filter(|e| !e.is_empty())
                .map(move |e| v.slice_ref(e))
        })
    }

    /// Whether a line named `name` exists.
    pub fn contains(&self, name: &HeaderName) -> bool {
        self.list.iter().any(|h| h.name == *name)
    }

    /// Number of lines named `name`.
    pub fn count(&self, name: &HeaderName) -> usize {
        self.list.iter().filter(|h| h.name == *name).count()
    }

    /// Appends a line.
    pub fn push(&mut self, name: HeaderName, value: impl Into<ByteString>) {
        self.list.push(Header {
            name,
            value: value.into(),
        });
    }

    /// Appends a line whose value is `value` printed.
    pub fn push_value(&mut self, name: HeaderName, value: &impl fmt::Display) {
        self.push(name, value.to_string());
    }

    /// Inserts a line before the first line of the same name, or at the top when
    /// there is none (as a proxy prepends its Via, §16.6 step 8).
    pub fn insert_first(&mut self, name: HeaderName, value: impl Into<ByteString>) {
        let at = self.list.iter().position(|h| h.name == name).unwrap_or(0);
        self.list.insert(
            at,
            Header {
                name,
                value: value.into(),
            },
        );
    }

    /// Replaces all lines named `name` by one line with `value`, at the place of
    /// the first of them (or at the end).
    pub fn set(&mut self, name: HeaderName, value: impl Into<ByteString>) {
        let value = value.into();
        match self.list.iter().position(|h| h.name == name) {
            Some(at) => {
                self.list[at].value = value;
                let mut i = 0;
                self.list.retain(|h| {
                    let keep = i <= at || h.name != name;
                    i += 1;
                    keep
                });
            }
            None => self.list.push(Header { name, value }),
        }
    }

    /// Removes all lines named `name`; returns how many were removed.
    pub fn remove(&mut self, name: &HeaderName) -> usize {
        let before = self.list.len();
        self.list.retain(|h| h.name != *name);
        before - self.list.len()
    }

    /// Removes and returns the first line named `name`.
    pub fn remove_first(&mut self, name: &HeaderName) -> Option<ByteString> {
        let at = self.list.iter().position(|h| h.name == *name)?;
        Some(self.list.remove(at).value)
    }

    #[inline]
    pub(crate) fn push_header(&mut self, h: Header) {
        self.list.push(h);
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(HeaderName::known(b"v"), Some(HeaderName::Via));
        assert_eq!(HeaderName::known(b"ViA"), Some(HeaderName::Via));
        assert_eq!(HeaderName::known(b"CALL-id"), Some(HeaderName::CallId));
        assert_eq!(HeaderName::known(b"C%6Fntact"), None);
        let other = HeaderName::new("X-Foo").unwrap();
        assert_eq!(other.as_str(), "X-Foo");
        assert_eq!(other, HeaderName::new("x-foo").unwrap());
        assert_eq!(HeaderName::Other("via".into()), HeaderName::Via);
        assert!(HeaderName::new("bad name").is_none());
        for c in "imelcfsktvorbuxajdyn".bytes() {
            let h = HeaderName::known(&[c]).unwrap();
            assert_eq!(h.compact(), Some(c as char), "{h}");
        }
    }

    #[test]
    fn list_operations() {
        let mut h = Headers::new();
        h.push(HeaderName::Via, "SIP/2.0/UDP a");
        h.push(HeaderName::To, "<sip:b@c>");
        h.push(HeaderName::Via, "SIP/2.0/UDP b, SIP/2.0/UDP c");
        h.insert_first(HeaderName::Via, "SIP/2.0/UDP z");
        let v: Vec<_> = h.values(&HeaderName::Via).collect();
        assert_eq!(
            v,
            [
                "SIP/2.0/UDP z",
                "SIP/2.0/UDP a",
                "SIP/2.0/UDP b",
                "SIP/2.0/UDP c"
            ]
        );
        h.set(HeaderName::Via, "SIP/2.0/TCP x");
        assert_eq!(h.count(&HeaderName::Via), 1);
        assert_eq!(h.iter().next().unwrap().value, "SIP/2.0/TCP x");
        assert_eq!(h.remove(&HeaderName::To), 1);
        assert_eq!(h.len(), 1);
    }
}
