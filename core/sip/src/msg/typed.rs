//! Typed values of the known headers, parsed lazily from [`Headers`] when asked
//! (the parser has already checked their grammar, so for a parsed message these
//! calls succeed). Each scanner here is allocation-free and shared by the
//! parse-time validation and the typed accessors.

use std::borrow::Cow;
use std::fmt;

use bytestring::ByteString;

use super::addr::{Contact, NameAddr, scan_name_addr, scan_name_addr_at};
use super::error::{ErrorKind, ParseError};
use super::headers::{HeaderName, Headers};
use super::method::Method;
use super::scan::{self, CommaSplit, TOKEN, WORD};
use super::uri::{ParamIter, Params, scan_header_params};
use super::via::Via;

const fn range(detail: &'static str) -> ParseError {
    ParseError::new(ErrorKind::OutOfRange, detail)
}

/// Largest delta-seconds accepted (§25.1 leaves it open; 2^32-1 is what
/// implementations and RFC 4475 §3.1.2.4 treat as the bound).
const MAX_DELTA: u64 = u32::MAX as u64;

/// `delta-seconds = 1*DIGIT`, bounded to 32 bits.
pub(crate) fn delta_seconds(s: &str) -> Result<u32, ParseError> {
    scan::parse_num(s, MAX_DELTA)
        .map(|v| v as u32)
        .ok_or(range("delta-seconds not a 32-bit number"))
}

/// Splits `value` at the first `;` (outside quotes): the head and the params text.
fn head_and_params(s: &str) -> Result<(&str, &str), ParseError> {
    let b = s.as_bytes();
    let i = scan::skip_wsp(b, 0);
    let mut j = i;
    while j < b.len() && b[j] != b';' && !scan::is_wsp(b[j]) {
        j += 1;
    }
    let end = scan_header_params(b, j)?;
    if end != b.len() {
        return Err(ParseError::value("unexpected text after value"));
    }
    Ok((scan::sub(s, i, j), scan::trim(scan::sub(s, j, end))))
}

/// Applies `f` to each comma-separated element; empty elements are an error
/// unless `allow_empty` (a list header with an empty value, like `Supported:`).
pub(crate) fn each_element(
    s: &str,
    allow_empty: bool,
    mut f: impl FnMut(&str) -> Result<(), ParseError>,
) -> Result<(), ParseError> {
    if allow_empty && scan::trim(s).is_empty() {
        return Ok(());
    }
    for e in CommaSplit::new(s) {
        if e.is_empty() {
            return Err(ParseError::value("empty list element"));
        }
        f(e)?;
    }
    Ok(())
}

/// Validates a comma-separated list in one pass: `elem` scans one element
/// from the given index and returns where it stopped (§7.3.1: elements are
/// separated by `SWS "," SWS`; empty elements are an error).
fn each_scanned(
    s: &str,
    mut elem: impl FnMut(&str, usize) -> Result<usize, ParseError>,
) -> Result<(), ParseError> {
    let b = s.as_bytes();
    let mut i = 0;
    loop {
        i = scan::skip_wsp(b, i);
        if i >= b.len() || b[i] == b',' {
            return Err(ParseError::value("empty list element"));
        }
        let e = scan::skip_wsp(b, elem(s, i)?);
        if e >= b.len() {
            return Ok(());
        }
        if b[e] != b',' {
            return Err(ParseError::value("unexpected text in list element"));
        }
        i = e + 1;
    }
}

/// `[token *(COMMA token)]` in one pass (Allow, Supported, Require, ...).
fn check_token_list(s: &str, allow_empty: bool) -> Result<(), ParseError> {
    if allow_empty && scan::skip_wsp(s.as_bytes(), 0) == s.len() {
        return Ok(());
    }
    each_scanned(s, |s, i| {
        let e = scan::run(s.as_bytes(), i, TOKEN);
        if e == i {
            return Err(ParseError::value("list element is not a token"));
        }
        Ok(e)
    })
}

// ---------------------------------------------------------------------------
// CSeq, Call-ID, RAck

/// The CSeq header (§20.16): a sequence number and the request method.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CSeq {
    /// The sequence number (below 2^31, §8.1.1.5).
    pub seq: u32,
    /// The method.
    pub method: Method,
}

/// `1*DIGIT LWS Method`; the number must be below 2^31 (§8.1.1.5).
pub(crate) fn scan_cseq(s: &str) -> Result<(u32, &str), ParseError> {
    let b = s.as_bytes();
    let i = scan::skip_wsp(b, 0);
    let d = i + b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    let seq = scan::parse_num_bytes(&b[i..d], (1 << 31) - 1).ok_or(range("CSeq number"))? as u32;
    let m = scan::skip_wsp(b, d);
    if m == d {
        return Err(ParseError::value("expected method after CSeq number"));
    }
    let e = scan::run(b, m, TOKEN);
    if e == m || scan::skip_wsp(b, e) != b.len() {
        return Err(ParseError::value("bad CSeq method"));
    }
    Ok((seq, scan::sub(s, m, e)))
}

impl CSeq {
    /// A CSeq value.
    pub fn new(seq: u32, method: Method) -> Self {
        CSeq { seq, method }
    }

    /// Parses a CSeq value.
    pub fn parse(value: &ByteString) -> Result<CSeq, ParseError> {
        let (seq, m) = scan_cseq(value)?;
        Ok(CSeq {
            seq,
            method: Method::from_token(&value.slice_ref(m))?,
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// `callid = word [ "@" word ]` (§25.1).
pub(crate) fn check_call_id(s: &str) -> Result<(), ParseError> {
    let b = s.as_bytes();
    let w = scan::run(b, 0, WORD);
    if w == 0 {
        return Err(ParseError::value("empty Call-ID"));
    }
    let end = if b.get(w) == Some(&b'@') {
        let w2 = scan::run(b, w + 1, WORD);
        if w2 == w + 1 {
            return Err(ParseError::value("empty Call-ID host part"));
        }
        w2
    } else {
        w
    };
    if end != b.len() {
        return Err(ParseError::value("bad character in Call-ID"));
    }
    Ok(())
}

/// The RAck header (RFC 3262 §7.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RAck {
    /// The RSeq of the provisional response acknowledged.
    pub rseq: u32,
    /// The CSeq number of the request it answered.
    pub cseq: u32,
    /// The method of that request.
    pub method: Method,
}

fn scan_rack(s: &str) -> Result<(u32, u32, &str), ParseError> {
    let b = s.as_bytes();
    let i = scan::skip_wsp(b, 0);
    let d = i + b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    let rseq = scan::parse_num_bytes(&b[i..d], MAX_DELTA).ok_or(range("RAck response-num"))? as u32;
    let (cseq, m) = scan_cseq(&s[d..])?;
    Ok((rseq, cseq, m))
}

impl RAck {
    /// Parses a RAck value.
    pub fn parse(value: &ByteString) -> Result<RAck, ParseError> {
        let (rseq, cseq, m) = scan_rack(value)?;
        Ok(RAck {
            rseq,
            cseq,
            method: Method::from_token(&value.slice_ref(m))?,
        })
    }
}

impl fmt::Display for RAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.rseq, self.cseq, self.method)
    }
}

// ---------------------------------------------------------------------------
// Content-Type

/// A media type (§20.15 `media-type`): `type/subtype;params`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaType {
    /// The type (`application`).
    pub mtype: ByteString,
    /// The subtype (`sdp`).
    pub subtype: ByteString,
    /// The parameters (`charset`, `boundary`, ...).
    pub params: Params,
}

fn scan_media_type(s: &str) -> Result<(&str, &str, &str), ParseError> {
    let b = s.as_bytes();
    let i = scan::skip_wsp(b, 0);
    let t = scan::run(b, i, TOKEN);
    let sl = scan::skip_wsp(b, t);
    if t == i || b.get(sl) != Some(&b'/') {
        return Err(ParseError::value("bad media type"));
    }
    let j = scan::skip_wsp(b, sl + 1);
    let st = scan::run(b, j, TOKEN);
    if st == j {
        return Err(ParseError::value("bad media subtype"));
    }
    let end = scan_header_params(b, st)?;
    if end != b.len() {
        return Err(ParseError::value("unexpected text in media type"));
    }
    Ok((
        scan::sub(s, i, t),
        scan::sub(s, j, st),
        scan::trim(scan::sub(s, st, end)),
    ))
}

impl MediaType {
    /// A media type without parameters (`type` and `subtype` must be tokens).
    pub fn new(mtype: &str, subtype: &str) -> Result<Self, ParseError> {
        if !scan::is_token(mtype) || !scan::is_token(subtype) {
            return Err(ParseError::new(
                ErrorKind::InvalidArgument,
                "media type is not a token",
            ));
        }
        Ok(MediaType {
            mtype: mtype.into(),
            subtype: subtype.into(),
            params: Params::new(),
        })
    }

    /// Parses a Content-Type value.
    pub fn parse(value: &ByteString) -> Result<Self, ParseError> {
        let (t, st, p) = scan_media_type(value)?;
        Ok(MediaType {
            mtype: value.slice_ref(t),
            subtype: value.slice_ref(st),
            params: Params::from_raw(value.slice_ref(p)),
        })
    }

    /// Whether this is `mtype/subtype` (case-insensitive).
    pub fn is(&self, mtype: &str, subtype: &str) -> bool {
        self.mtype.eq_ignore_ascii_case(mtype) && self.subtype.eq_ignore_ascii_case(subtype)
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}{}", self.mtype, self.subtype, self.params)
    }
}

// ---------------------------------------------------------------------------
// Event packages (RFC 6665), Replaces (RFC 3891), Reason (RFC 3326),
// Session timers (RFC 4028)

/// The Event header (RFC 6665 §8.2.1): a package and parameters such as `id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The event type (package with optional templates: `presence`, `dialog`, `refer`).
    pub package: ByteString,
    /// The parameters.
    pub params: Params,
}

fn scan_token_head<'a>(s: &'a str, what: &'static str) -> Result<(&'a str, &'a str), ParseError> {
    let (h, p) = head_and_params(s)?;
    if !scan::is_token(h) {
        return Err(ParseError::value(what));
    }
    Ok((h, p))
}

impl Event {
    /// An Event value without parameters.
    pub fn new(package: &str) -> Self {
        Event {
            package: package.into(),
            params: Params::new(),
        }
    }

    /// Parses an Event value.
    pub fn parse(value: &ByteString) -> Result<Self, ParseError> {
        let (h, p) = scan_token_head(value, "bad event type")?;
        Ok(Event {
            package: value.slice_ref(h),
            params: Params::from_raw(value.slice_ref(p)),
        })
    }

    /// The `id` parameter.
    pub fn id(&self) -> Option<&str> {
        self.params.get("id")
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.package, self.params)
    }
}

/// The Subscription-State header (RFC 6665 §8.2.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionState {
    /// `active`, `pending`, `terminated` or an extension.
    pub state: ByteString,
    /// The parameters (`expires`, `reason`, `retry-after`).
    pub params: Params,
}

fn check_subscription_state(s: &str) -> Result<(), ParseError> {
    let (_, p) = scan_token_head(s, "bad subscription state")?;
    for (n, v) in ParamIter::new(p) {
        if n.eq_ignore_ascii_case("expires") || n.eq_ignore_ascii_case("retry-after") {
            delta_seconds(v.unwrap_or(""))?;
        }
    }
    Ok(())
}

impl SubscriptionState {
    /// Parses a Subscription-State value.
    pub fn parse(value: &ByteString) -> Result<Self, ParseError> {
        check_subscription_state(value)?;
        let (h, p) = head_and_params(value)?;
        Ok(SubscriptionState {
            state: value.slice_ref(h),
            params: Params::from_raw(value.slice_ref(p)),
        })
    }

    /// The `expires` parameter.
    pub fn expires(&self) -> Option<u32> {
        self.params.get("expires").and_then(|v| v.parse().ok())
    }

    /// The `reason` parameter.
    pub fn reason(&self) -> Option<&str> {
        self.params.get("reason")
    }

    /// The `retry-after` parameter.
    pub fn retry_after(&self) -> Option<u32> {
        self.params.get("retry-after").and_then(|v| v.parse().ok())
    }

    /// Whether the state is `terminated`.
    pub fn is_terminated(&self) -> bool {
        self.state.eq_ignore_ascii_case("terminated")
    }
}

impl fmt::Display for SubscriptionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.state, self.params)
    }
}

/// The Replaces header (RFC 3891 §6.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replaces {
    /// The Call-ID of the dialog to replace.
    pub call_id: ByteString,
    /// The parameters (`to-tag`, `from-tag`, `early-only`).
    pub params: Params,
}

fn check_replaces(s: &str) -> Result<(), ParseError> {
    let (c, p) = head_and_params(s)?;
    check_call_id(c)?;
    let mut to = false;
    let mut from = false;
    for (n, _) in ParamIter::new(p) {
        to |= n.eq_ignore_ascii_case("to-tag");
        from |= n.eq_ignore_ascii_case("from-tag");
    }
    if !(to && from) {
        return Err(ParseError::value("Replaces needs to-tag and from-tag"));
    }
    Ok(())
}

impl Replaces {
    /// Parses a Replaces value.
    pub fn parse(value: &ByteString) -> Result<Self, ParseError> {
        check_replaces(value)?;
        let (c, p) = head_and_params(value)?;
        Ok(Replaces {
            call_id: value.slice_ref(c),
            params: Params::from_raw(value.slice_ref(p)),
        })
    }

    /// The `to-tag` parameter.
    pub fn to_tag(&self) -> Option<&str> {
        self.params.get("to-tag")
    }

    /// The `from-tag` parameter.
    pub fn from_tag(&self) -> Option<&str> {
        self.params.get("from-tag")
    }

    /// Whether `early-only` is present.
    pub fn early_only(&self) -> bool {
        self.params.contains("early-only")
    }
}

impl fmt::Display for Replaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.call_id, self.params)
    }
}

/// One Reason value (RFC 3326 §2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason {
    /// `SIP`, `Q.850` or another protocol token.
    pub protocol: ByteString,
    /// The parameters (`cause`, `text`).
    pub params: Params,
}

fn check_reason(s: &str) -> Result<(), ParseError> {
    let (_, p) = scan_token_head(s, "bad reason protocol")?;
    if let Some(c) = ParamIter::new(p)
        .find(|(n, _)| n.eq_ignore_ascii_case("cause"))
        .map(|(_, v)| v)
    {
        scan::parse_num(c.unwrap_or(""), 65535).ok_or(range("Reason cause"))?;
    }
    Ok(())
}

impl Reason {
    /// Parses one Reason value.
    pub fn parse(value: &ByteString) -> Result<Self, ParseError> {
        check_reason(value)?;
        let (h, p) = head_and_params(value)?;
        Ok(Reason {
            protocol: value.slice_ref(h),
            params: Params::from_raw(value.slice_ref(p)),
        })
    }

    /// The `cause` parameter.
    pub fn cause(&self) -> Option<u16> {
        self.params.get("cause").and_then(|c| c.parse().ok())
    }

    /// The `text` parameter, unquoted.
    pub fn text(&self) -> Option<Cow<'_, str>> {
        self.params.get_unquoted("text")
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.protocol, self.params)
    }
}

/// Session-Expires (RFC 4028 §4): the interval and the `refresher`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionExpires {
    /// The session interval in seconds.
    pub seconds: u32,
    /// The parameters (`refresher=uac|uas`).
    pub params: Params,
}

fn check_session_expires(s: &str) -> Result<u32, ParseError> {
    let (d, _) = head_and_params(s)?;
    delta_seconds(d)
}

impl SessionExpires {
    /// Parses a Session-Expires (or Min-SE) value.
    pub fn parse(value: &ByteString) -> Result<Self, ParseError> {
        let seconds = check_session_expires(value)?;
        let (_, p) = head_and_params(value)?;
        Ok(SessionExpires {
            seconds,
            params: Params::from_raw(value.slice_ref(p)),
        })
    }

    /// The `refresher` parameter (`uac` or `uas`).
    pub fn refresher(&self) -> Option<&str> {
        self.params.get("refresher")
    }
}

impl fmt::Display for SessionExpires {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.seconds, self.params)
    }
}

// ---------------------------------------------------------------------------
// Date (§20.17, RFC 1123 date in GMT only)

/// A Date header value (§20.17): an RFC 1123 date, always GMT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipDate {
    /// Year (four digits).
    pub year: u16,
    /// Month, 1 to 12.
    pub month: u8,
    /// Day of month, 1 to 31.
    pub day: u8,
    /// Hour, 0 to 23.
    pub hour: u8,
    /// Minute, 0 to 59.
    pub minute: u8,
    /// Second, 0 to 60 (leap second).
    pub second: u8,
}

const WKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn days_from_civil(y: i64, m: u8, d: u8) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl SipDate {
    /// Parses `wkday "," SP 2DIGIT SP month SP 4DIGIT SP 2DIGIT ":" 2DIGIT ":" 2DIGIT SP "GMT"`.
    pub fn parse(s: &str) -> Result<SipDate, ParseError> {
        let bad = || ParseError::value("not an RFC 1123 date in GMT");
        let b = s.as_bytes();
        if b.len() != 29 || &b[3..5] != b", " || &b[25..] != b" GMT" {
            return Err(bad());
        }
        let two = |i: usize| -> Result<u8, ParseError> {
            let (x, y) = (b[i], b[i + 1]);
            if x.is_ascii_digit() && y.is_ascii_digit() {
                Ok((x - b'0') * 10 + (y - b'0'))
            } else {
                Err(bad())
            }
        };
        let wk = scan::sub(s, 0, 3);
        let wkday = WKDAYS.iter().position(|w| *w == wk).ok_or_else(bad)?;
        let day = two(5)?;
        let mon = MONTHS
            .iter()
            .position(|m| *m == scan::sub(s, 8, 11))
            .ok_or_else(bad)? as u8
            + 1;
        if b[7] != b' ' || b[11] != b' ' || b[16] != b' ' || b[19] != b':' || b[22] != b':' {
            return Err(bad());
        }
        let year = u16::from(two(12)?) * 100 + u16::from(two(14)?);
        let (hour, minute, second) = (two(17)?, two(20)?, two(23)?);
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        let mdays = [
            31,
            if leap { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        if day == 0 || day > mdays[usize::from(mon - 1)] || hour > 23 || minute > 59 || second > 60
        {
            return Err(range("date field out of range"));
        }
        let d = SipDate {
            year,
            month: mon,
            day,
            hour,
            minute,
            second,
        };
        // 1970-01-01 was a Thursday (index 3).
        let wd = (days_from_civil(i64::from(year), mon, day) + 3).rem_euclid(7) as usize;
        if wd != wkday {
            return Err(ParseError::value("weekday does not match the date"));
        }
        Ok(d)
    }

    /// Seconds since the Unix epoch.
    pub fn unix_timestamp(&self) -> i64 {
        days_from_civil(i64::from(self.year), self.month, self.day) * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }

    /// The date of a Unix timestamp (for writing a Date header; the caller
    /// supplies wall time, ARCHITECTURE.md §3.1).
    pub fn from_unix_timestamp(t: i64) -> SipDate {
        let days = t.div_euclid(86_400);
        let secs = t.rem_euclid(86_400);
        // civil_from_days (H. Hinnant).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as u16;
        SipDate {
            year,
            month,
            day,
            hour: (secs / 3600) as u8,
            minute: (secs % 3600 / 60) as u8,
            second: (secs % 60) as u8,
        }
    }
}

impl fmt::Display for SipDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wd = (days_from_civil(i64::from(self.year), self.month, self.day) + 3).rem_euclid(7);
        write!(
            f,
            "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
            WKDAYS[wd as usize],
            self.day,
            MONTHS[usize::from(self.month - 1)],
            self.year,
            self.hour,
            self.minute,
            self.second
        )
    }
}

// ---------------------------------------------------------------------------
// Grammar-only checks

/// Authentication headers (§20.7, §20.27, §20.28, §20.44, §20.6):
/// `auth-scheme LWS auth-param *(COMMA auth-param)` (without the scheme for
/// Authentication-Info), `auth-param = token EQUAL (token / quoted-string)`.
/// A token68 credential (RFC 7235 §2.1, RFC 8898) is accepted after a scheme.
pub(crate) fn check_auth(s: &str, with_scheme: bool) -> Result<(), ParseError> {
    let b = s.as_bytes();
    let mut i = scan::skip_wsp(b, 0);
    if with_scheme {
        let t = scan::run(b, i, TOKEN);
        if t == i {
            return Err(ParseError::value("missing auth scheme"));
        }
        i = scan::skip_wsp(b, t);
        if i == t {
            return Err(ParseError::value("missing auth parameters"));
        }
        // token68
        let e = scan::run(b, i, scan::TOKEN68);
        let mut e2 = e;
        while b.get(e2) == Some(&b'=') {
            e2 += 1;
        }
        let digest = s[..t].trim().eq_ignore_ascii_case("digest");
        if !digest && e > i && scan::skip_wsp(b, e2) == b.len() {
            return Ok(());
        }
    }
    let mut any = false;
    loop {
        i = scan::skip_wsp(b, i);
        if b.get(i) == Some(&b',') {
            i += 1;
            continue;
        }
        if i >= b.len() {
            break;
        }
        let n = scan::run(b, i, TOKEN);
        if n == i {
            return Err(ParseError::value("bad auth-param name"));
        }
        i = scan::skip_wsp(b, n);
        if b.get(i) != Some(&b'=') {
            return Err(ParseError::value("auth-param without '='"));
        }
        i = scan::skip_wsp(b, i + 1);
        if b.get(i) == Some(&b'"') {
            i = scan::skip_quoted(b, i)
                .ok_or(ParseError::value("unbalanced quotes in auth-param"))?;
        } else {
            let v = scan::run(b, i, TOKEN);
            if v == i {
                return Err(ParseError::value("empty auth-param value"));
            }
            i = v;
        }
        any = true;
        i = scan::skip_wsp(b, i);
        match b.get(i) {
            None => break,
            Some(b',') => i += 1,
            Some(_) => return Err(ParseError::value("expected ',' between auth-params")),
        }
    }
    if !any {
        return Err(ParseError::value("missing auth parameters"));
    }
    Ok(())
}

/// `server-val *(LWS server-val)`, `server-val = product / comment`,
/// `product = token [SLASH product-version]` (§20.35, §20.41).
pub(crate) fn check_product_list(s: &str) -> Result<(), ParseError> {
    let b = s.as_bytes();
    let mut i = scan::skip_wsp(b, 0);
    while i < b.len() {
        if b[i] == b'(' {
            i = scan::skip_comment(b, i).ok_or(ParseError::value("unbalanced comment"))?;
        } else {
            let t = scan::run(b, i, TOKEN);
            if t == i {
                return Err(ParseError::value("bad product token"));
            }
            i = t;
            while scan::skip_wsp(b, i) < b.len() && b[scan::skip_wsp(b, i)] == b'/' {
                let j = scan::skip_wsp(b, scan::skip_wsp(b, i) + 1);
                let v = scan::run(b, j, TOKEN);
                if v == j {
                    return Err(ParseError::value("bad product version"));
                }
                i = v;
            }
        }
        i = scan::skip_wsp(b, i);
    }
    Ok(())
}

/// `Retry-After = delta-seconds [ comment ] *( SEMI retry-param )` (§20.33).
fn check_retry_after(s: &str) -> Result<u32, ParseError> {
    let b = s.as_bytes();
    let i = scan::skip_wsp(b, 0);
    let d = i + b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    let v = delta_seconds(scan::sub(s, i, d))?;
    let mut j = scan::skip_wsp(b, d);
    if b.get(j) == Some(&b'(') {
        j = scan::skip_comment(b, j).ok_or(ParseError::value("unbalanced comment"))?;
    }
    if scan_header_params(b, j)? != b.len() {
        return Err(ParseError::value("unexpected text in Retry-After"));
    }
    Ok(v)
}

/// `warning-value = warn-code SP warn-agent SP warn-text` (§20.43).
fn check_warning(s: &str) -> Result<(), ParseError> {
    let b = s.as_bytes();
    if b.len() < 4 || !b[..3].iter().all(u8::is_ascii_digit) || b[3] != b' ' {
        return Err(ParseError::value("warn-code must be three digits"));
    }
    let agent_end = 4 + b[4..]
        .iter()
        .position(|&c| c == b' ')
        .ok_or(ParseError::value("missing warn-text"))?;
    if agent_end == 4 {
        return Err(ParseError::value("missing warn-agent"));
    }
    let t = agent_end + 1;
    if b.get(t) != Some(&b'"') || scan::skip_quoted(b, t) != Some(b.len()) {
        return Err(ParseError::value("warn-text must be a quoted-string"));
    }
    Ok(())
}

/// Validates the value of a known header at parse time. Unknown headers and
/// free-text ones are not checked. Returns the Content-Length when `name` is one.
pub(crate) fn check_known(name: &HeaderName, v: &str) -> Result<Option<u32>, ParseError> {
    use HeaderName as H;
    match name {
        H::Via => each_scanned(v, |s, i| Ok(super::via::scan_via_at(s, i, false)?.1))?,
        H::From | H::To | H::ReferTo | H::ReferredBy | H::ReplyTo => {
            scan_name_addr(v, false).map(drop)?
        }
        H::Contact if scan::trim(v) != "*" => each_scanned(v, |s, i| {
            let (r, e) = scan_name_addr_at(s, i, false)?;
            if !r.params.is_empty() {
                super::addr::check_contact_params(r.params)?;
            }
            Ok(e)
        })?,
        H::Route | H::RecordRoute | H::Path | H::ServiceRoute => {
            each_scanned(v, |s, i| Ok(scan_name_addr_at(s, i, true)?.1))?
        }
        H::PAssertedIdentity | H::PPreferredIdentity | H::Diversion | H::HistoryInfo => {
            each_scanned(v, |s, i| Ok(scan_name_addr_at(s, i, false)?.1))?
        }
        H::CallId => check_call_id(scan::trim(v))?,
        H::CSeq => scan_cseq(v).map(drop)?,
        H::MaxForwards => {
            scan::parse_num(v, 255).ok_or(range("Max-Forwards outside 0..=255"))?;
        }
        H::ContentLength => {
            return scan::parse_num(v, MAX_DELTA)
                .map(|n| Some(n as u32))
                .ok_or(ParseError::new(ErrorKind::ContentLength, "not a number"));
        }
        H::ContentType => scan_media_type(v).map(drop)?,
        H::Expires | H::MinExpires => delta_seconds(v).map(drop)?,
        H::RetryAfter => check_retry_after(v).map(drop)?,
        H::Allow
        | H::Supported
        | H::Require
        | H::ProxyRequire
        | H::Unsupported
        | H::AllowEvents => check_token_list(
            v,
            !matches!(name, H::Require | H::ProxyRequire | H::Unsupported),
        )?,
        H::Event => scan_token_head(v, "bad event type").map(drop)?,
        H::SubscriptionState => check_subscription_state(v)?,
        H::Replaces => check_replaces(v)?,
        H::Reason => each_element(v, false, check_reason)?,
        H::UserAgent | H::Server => check_product_list(v)?,
        H::Privacy => {
            for t in v.split(';') {
                if !scan::is_token(scan::trim(t)) {
                    return Err(ParseError::value("bad priv-value"));
                }
            }
        }
        H::SessionExpires | H::MinSe => check_session_expires(v).map(drop)?,
        H::RSeq => {
            scan::parse_num(v, (1 << 31) - 1).ok_or(range("RSeq"))?;
        }
        H::RAck => scan_rack(v).map(drop)?,
        H::Date => SipDate::parse(v).map(drop)?,
        H::WwwAuthenticate | H::ProxyAuthenticate | H::Authorization | H::ProxyAuthorization => {
            check_auth(v, true)?
        }
        H::AuthenticationInfo => check_auth(v, false)?,
        H::Warning => each_element(v, false, check_warning)?,
        _ => {}
    }
    Ok(None)
}

/// `1*DIGIT` from `s[i]` no larger than `max`: its value and end.
#[inline]
fn number_at(s: &str, i: usize, max: u64) -> Option<(u64, usize)> {
    // One pass: the value saturates (every `max` is far below u64::MAX, so
    // a saturated value is above it), and as in `parse_num` at most 40
    // digits are taken.
    let b = s.as_bytes();
    let mut j = i;
    let mut v: u64 = 0;
    while let Some(&c) = b.get(j) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        v = v.saturating_mul(10).saturating_add(u64::from(d));
        j += 1;
    }
    debug_assert_eq!(
        scan::parse_num_bytes(&b[i..j], max),
        (j > i && j - i <= 40 && v <= max).then_some(v)
    );
    (j > i && j - i <= 40 && v <= max).then_some((v, j))
}

/// [`each_scanned`] that stops, instead of failing, at text that is neither
/// `,` nor an element: returns where the list ends.
#[inline(always)]
fn each_scanned_to(
    s: &str,
    mut i: usize,
    mut elem: impl FnMut(&str, usize) -> Option<usize>,
) -> Option<usize> {
    let b = s.as_bytes();
    loop {
        i = scan::skip_wsp(b, i);
        if i >= b.len() || b[i] == b',' {
            return None;
        }
        let e = scan::skip_wsp(b, elem(s, i)?);
        if b.get(e) != Some(&b',') {
            return Some(e);
        }
        i = e + 1;
    }
}

/// [`check_product_list`] from `s[i]`, stopping at the first byte that
/// cannot start a product or comment; returns where it stopped.
#[inline]
fn product_list_to(s: &str, i: usize) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = scan::skip_wsp(b, i);
    loop {
        match b.get(i) {
            Some(b'(') => i = scan::skip_comment(b, i)?,
            Some(&c) if scan::is(c, TOKEN) => {
                i = scan::run(b, i, TOKEN);
                loop {
                    let k = scan::skip_wsp(b, i);
                    if b.get(k) != Some(&b'/') {
                        break;
                    }
                    let j = scan::skip_wsp(b, k + 1);
                    let v = scan::run(b, j, TOKEN);
                    if v == j {
                        return None;
                    }
                    i = v;
                }
            }
            _ => return Some(i),
        }
        i = scan::skip_wsp(b, i);
    }
}

// The address and Via scans of [`check_known_to`], each a call of its own:
// inlined, their many live values made every call of it save and restore
// registers, also for the short values (numbers, tokens).

#[inline(never)]
fn via_to(s: &str, i: usize) -> Option<usize> {
    each_scanned_to(s, i, |s, i| {
        super::via::scan_via_at(s, i, false).ok().map(|r| r.1)
    })
}

#[inline(never)]
fn name_addr_to(s: &str, i: usize) -> Option<usize> {
    scan_name_addr_at(s, i, false).ok().map(|r| r.1)
}

#[inline(never)]
fn contact_to(s: &str, i: usize) -> Option<usize> {
    each_scanned_to(s, i, |s, i| {
        let (r, e) = scan_name_addr_at(s, i, false).ok()?;
        if !r.params.is_empty() {
            super::addr::check_contact_params(r.params).ok()?;
        }
        Some(e)
    })
}

#[inline(never)]
fn route_to(s: &str, i: usize) -> Option<usize> {
    each_scanned_to(s, i, |s, i| scan_name_addr_at(s, i, true).ok().map(|r| r.1))
}

/// The parser's fast path for the common headers: validates the value that
/// starts at `s[i]` without knowing where its line ends, and returns where
/// the grammar stops (the caller requires CRLF there, after whitespace) and
/// a number that depends on the header: the Content-Length for
/// Content-Length, where the method starts for CSeq (the method ends where
/// the grammar stops), else 0. `None` means "not decided here": the value is then
/// cut at its line end and checked by [`check_known`], which reports the
/// error, if any. So this accepts only what [`check_known`] accepts for the
/// same (trimmed) value; it reads no CR or LF, which no grammar here allows.
#[inline(always)]
pub(crate) fn check_known_to(name: &HeaderName, s: &str, i: usize) -> Option<(usize, usize)> {
    use HeaderName as H;
    let b = s.as_bytes();
    let e = match name {
        H::Via => via_to(s, i)?,
        H::From | H::To => name_addr_to(s, i)?,
        H::Contact => contact_to(s, i)?,
        H::Route | H::RecordRoute => route_to(s, i)?,
        H::CallId => {
            let w = scan::run(b, i, WORD);
            if w == i {
                return None;
            }
            if b.get(w) == Some(&b'@') {
                let w2 = scan::run(b, w + 1, WORD);
                if w2 == w + 1 {
                    return None;
                }
                w2
            } else {
                w
            }
        }
        H::CSeq => {
            let (_, d) = number_at(s, i, (1 << 31) - 1)?;
            let m = scan::skip_wsp(b, d);
            let e = scan::run(b, m, TOKEN);
            if m == d || e == m {
                return None;
            }
            return Some((e, m));
        }
        H::MaxForwards => number_at(s, i, 255)?.1,
        H::ContentLength => {
            let (n, e) = number_at(s, i, MAX_DELTA)?;
            return Some((e, n as usize));
        }
        H::Expires => number_at(s, i, MAX_DELTA)?.1,
        H::SessionExpires => {
            let (_, d) = number_at(s, i, MAX_DELTA)?;
            scan_header_params(b, d).ok()?
        }
        H::ContentType => {
            let t = scan::run(b, i, TOKEN);
            let sl = scan::skip_wsp(b, t);
            if t == i || b.get(sl) != Some(&b'/') {
                return None;
            }
            let j = scan::skip_wsp(b, sl + 1);
            let st = scan::run(b, j, TOKEN);
            if st == j {
                return None;
            }
            scan_header_params(b, st).ok()?
        }
        H::Allow | H::Supported => each_scanned_to(s, i, |s, i| {
            let e = scan::run(s.as_bytes(), i, TOKEN);
            (e > i).then_some(e)
        })?,
        H::UserAgent => product_list_to(s, i)?,
        _ => return None,
    };
    Some((e, 0))
}

// ---------------------------------------------------------------------------
// Accessors

impl Headers {
    fn single<T>(
        &self,
        name: HeaderName,
        f: impl FnOnce(&ByteString) -> Result<T, ParseError>,
    ) -> Result<Option<T>, ParseError> {
        match self.get(&name) {
            None => Ok(None),
            Some(v) => f(v).map(Some).map_err(|e| e.in_header(&name)),
        }
    }

    fn required<T>(
        &self,
        name: HeaderName,
        f: impl FnOnce(&ByteString) -> Result<T, ParseError>,
    ) -> Result<T, ParseError> {
        self.single(name.clone(), f)?.ok_or_else(|| {
            ParseError::new(ErrorKind::MissingHeader, "header is missing").in_header(&name)
        })
    }

    fn list<T>(
        &self,
        name: HeaderName,
        f: impl Fn(&ByteString) -> Result<T, ParseError>,
    ) -> Result<Vec<T>, ParseError> {
        self.values(&name)
            .map(|v| f(&v).map_err(|e| e.in_header(&name)))
            .collect()
    }

    fn tokens(&self, name: HeaderName) -> Vec<ByteString> {
        self.values(&name).collect()
    }

    /// All Via values, top first (§20.42).
    pub fn vias(&self) -> Result<Vec<Via>, ParseError> {
        self.list(HeaderName::Via, Via::parse)
    }

    /// The topmost Via (§8.2.6, §17.2.3); an error when there is none.
    pub fn top_via(&self) -> Result<Via, ParseError> {
        match self.values(&HeaderName::Via).next() {
            Some(v) => Via::parse(&v).map_err(|e| e.in_header(&HeaderName::Via)),
            None => Err(
                ParseError::new(ErrorKind::MissingHeader, "header is missing")
                    .in_header(&HeaderName::Via),
            ),
        }
    }

    /// The From address (§20.20).
    pub fn from(&self) -> Result<NameAddr, ParseError> {
        self.required(HeaderName::From, NameAddr::parse)
    }

    /// The To address (§20.39).
    pub fn to(&self) -> Result<NameAddr, ParseError> {
        self.required(HeaderName::To, NameAddr::parse)
    }

    /// The Call-ID (§20.8), zero-copy.
    pub fn call_id(&self) -> Result<ByteString, ParseError> {
        self.required(HeaderName::CallId, |v| {
            check_call_id(v)?;
            Ok(v.clone())
        })
    }

    /// The CSeq (§20.16).
    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        self.required(HeaderName::CSeq, CSeq::parse)
    }

    /// Max-Forwards (§20.22), when present.
    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        self.single(HeaderName::MaxForwards, |v| {
            scan::parse_num(v, 255)
                .map(|n| n as u8)
                .ok_or(range("Max-Forwards outside 0..=255"))
        })
    }

    /// All Contact values (§20.10), `*` included.
    pub fn contacts(&self) -> Result<Vec<Contact>, ParseError> {
        self.list(HeaderName::Contact, Contact::parse)
    }

    /// The Route set, in order (§20.34).
    pub fn routes(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.list(HeaderName::Route, NameAddr::parse)
    }

    /// The Record-Route set, in order (§20.30).
    pub fn record_routes(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.list(HeaderName::RecordRoute, NameAddr::parse)
    }

    /// Content-Length (§20.14), when present.
    pub fn content_length(&self) -> Result<Option<u32>, ParseError> {
        self.single(HeaderName::ContentLength, |v| {
            scan::parse_num(v, MAX_DELTA)
                .map(|n| n as u32)
                .ok_or(ParseError::new(ErrorKind::ContentLength, "not a number"))
        })
    }

    /// Content-Type (§20.15), when present.
    pub fn content_type(&self) -> Result<Option<MediaType>, ParseError> {
        self.single(HeaderName::ContentType, MediaType::parse)
    }

    /// Expires in seconds (§20.19), when present.
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.single(HeaderName::Expires, |v| delta_seconds(v))
    }

    /// Min-Expires in seconds (§20.23), when present.
    pub fn min_expires(&self) -> Result<Option<u32>, ParseError> {
        self.single(HeaderName::MinExpires, |v| delta_seconds(v))
    }

    /// Retry-After in seconds (§20.33), when present.
    pub fn retry_after(&self) -> Result<Option<u32>, ParseError> {
        self.single(HeaderName::RetryAfter, |v| check_retry_after(v))
    }

    /// The methods of Allow (§20.5).
    pub fn allow(&self) -> Result<Vec<Method>, ParseError> {
        self.list(HeaderName::Allow, Method::from_token)
    }

    /// The option tags of Supported (§20.37).
    pub fn supported(&self) -> Vec<ByteString> {
        self.tokens(HeaderName::Supported)
    }

    /// The option tags of Require (§20.32).
    pub fn require(&self) -> Vec<ByteString> {
        self.tokens(HeaderName::Require)
    }

    /// The option tags of Proxy-Require (§20.29).
    pub fn proxy_require(&self) -> Vec<ByteString> {
        self.tokens(HeaderName::ProxyRequire)
    }

    /// The option tags of Unsupported (§20.40).
    pub fn unsupported(&self) -> Vec<ByteString> {
        self.tokens(HeaderName::Unsupported)
    }

    /// The event types of Allow-Events (RFC 6665 §8.2.2).
    pub fn allow_events(&self) -> Vec<ByteString> {
        self.tokens(HeaderName::AllowEvents)
    }

    /// Event (RFC 6665 §8.2.1), when present.
    pub fn event(&self) -> Result<Option<Event>, ParseError> {
        self.single(HeaderName::Event, Event::parse)
    }

    /// Subscription-State (RFC 6665 §8.2.3), when present.
    pub fn subscription_state(&self) -> Result<Option<SubscriptionState>, ParseError> {
        self.single(HeaderName::SubscriptionState, SubscriptionState::parse)
    }

    /// Refer-To (RFC 3515 §2.1), when present.
    pub fn refer_to(&self) -> Result<Option<NameAddr>, ParseError> {
        self.single(HeaderName::ReferTo, NameAddr::parse)
    }

    /// Referred-By (RFC 3892 §3), when present.
    pub fn referred_by(&self) -> Result<Option<NameAddr>, ParseError> {
        self.single(HeaderName::ReferredBy, NameAddr::parse)
    }

    /// Replaces (RFC 3891 §6.1), when present.
    pub fn replaces(&self) -> Result<Option<Replaces>, ParseError> {
        self.single(HeaderName::Replaces, Replaces::parse)
    }

    /// All Reason values (RFC 3326).
    pub fn reasons(&self) -> Result<Vec<Reason>, ParseError> {
        self.list(HeaderName::Reason, Reason::parse)
    }

    /// User-Agent text (§20.41), when present.
    pub fn user_agent(&self) -> Option<&ByteString> {
        self.get(&HeaderName::UserAgent)
    }

    /// Server text (§20.35), when present.
    pub fn server(&self) -> Option<&ByteString> {
        self.get(&HeaderName::Server)
    }

    /// P-Asserted-Identity values (RFC 3325 §9.1).
    pub fn p_asserted_identities(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.list(HeaderName::PAssertedIdentity, NameAddr::parse)
    }

    /// P-Preferred-Identity values (RFC 3325 §9.2).
    pub fn p_preferred_identities(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.list(HeaderName::PPreferredIdentity, NameAddr::parse)
    }

    /// Privacy values (RFC 3323 §4.2: `priv-value *(";" priv-value)`).
    pub fn privacy(&self) -> Vec<ByteString> {
        self.get_all(&HeaderName::Privacy)
            .flat_map(|v| {
                v.split(';')
                    .map(scan::trim)
                    .filter(|t| !t.is_empty())
                    .map(move |t| v.slice_ref(t))
            })
            .collect()
    }

    /// Diversion values (RFC 5806 §4), most recent first.
    pub fn diversions(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.list(HeaderName::Diversion, NameAddr::parse)
    }

    /// History-Info entries (RFC 7044 §4.1); each has an `index` parameter.
    pub fn history_info(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.list(HeaderName::HistoryInfo, NameAddr::parse)
    }

    /// Session-Expires (RFC 4028 §4), when present.
    pub fn session_expires(&self) -> Result<Option<SessionExpires>, ParseError> {
        self.single(HeaderName::SessionExpires, SessionExpires::parse)
    }

    /// Min-SE in seconds (RFC 4028 §5), when present.
    pub fn min_se(&self) -> Result<Option<u32>, ParseError> {
        self.single(HeaderName::MinSe, |v| check_session_expires(v))
    }

    /// RSeq (RFC 3262 §7.1), when present.
    pub fn rseq(&self) -> Result<Option<u32>, ParseError> {
        self.single(HeaderName::RSeq, |v| {
            scan::parse_num(v, (1 << 31) - 1)
                .map(|n| n as u32)
                .ok_or(range("RSeq"))
        })
    }

    /// RAck (RFC 3262 §7.2), when present.
    pub fn rack(&self) -> Result<Option<RAck>, ParseError> {
        self.single(HeaderName::RAck, RAck::parse)
    }

    /// Date (§20.17), when present.
    pub fn date(&self) -> Result<Option<SipDate>, ParseError> {
        self.single(HeaderName::Date, |v| SipDate::parse(v))
    }

    /// The raw values of an authentication header (WWW-Authenticate,
    /// Proxy-Authenticate, Authorization, Proxy-Authorization,
    /// Authentication-Info), grammar-checked; the `auth` module reads their meaning.
    pub fn auth_values(&self, name: &HeaderName) -> Result<Vec<ByteString>, ParseError> {
        let with_scheme = !matches!(name, HeaderName::AuthenticationInfo);
        self.get_all(name)
            .map(|v| {
                check_auth(v, with_scheme)
                    .map(|()| v.clone())
                    .map_err(|e| e.in_header(name))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bs(s: &str) -> ByteString {
        ByteString::from(s)
    }

    #[test]
    fn cseq() {
        let c = CSeq::parse(&bs("0009\t INVITE")).unwrap();
        assert_eq!((c.seq, c.method.clone()), (9, Method::Invite));
        assert_eq!(c.to_string(), "9 INVITE");
        assert!(CSeq::parse(&bs("36893488147419103232 REGISTER")).is_err());
        assert!(CSeq::parse(&bs("2147483648 INVITE")).is_err());
        assert!(CSeq::parse(&bs("1INVITE")).is_err());
        assert!(CSeq::parse(&bs("1 INVITE x")).is_err());
        let r = RAck::parse(&bs("776656 1 INVITE")).unwrap();
        assert_eq!((r.rseq, r.cseq, r.method), (776656, 1, Method::Invite));
    }

    #[test]
    fn call_ids() {
        assert!(check_call_id("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{").is_ok());
        assert!(check_call_id("a@b@c").is_err());
        assert!(check_call_id("a b").is_err());
        assert!(check_call_id("").is_err());
    }

    #[test]
    fn media_types() {
        let m = MediaType::parse(&bs("multipart/mixed;boundary=7a9cbec02ceef655")).unwrap();
        assert!(m.is("multipart", "MIXED"));
        assert_eq!(m.params.get("boundary"), Some("7a9cbec02ceef655"));
        assert_eq!(m.to_string(), "multipart/mixed;boundary=7a9cbec02ceef655");
        assert!(MediaType::parse(&bs("application")).is_err());
    }

    #[test]
    fn event_headers() {
        let e = Event::parse(&bs("dialog;id=1")).unwrap();
        assert_eq!((&*e.package, e.id()), ("dialog", Some("1")));
        let s = SubscriptionState::parse(&bs("terminated;reason=timeout;retry-after=30")).unwrap();
        assert!(s.is_terminated());
        assert_eq!((s.reason(), s.retry_after()), (Some("timeout"), Some(30)));
        assert!(SubscriptionState::parse(&bs("active;expires=99999999999")).is_err());
        let r = Replaces::parse(&bs(
            "98732@sip.example.com;from-tag=r33th4x0r;to-tag=ff87ff;early-only",
        ))
        .unwrap();
        assert_eq!(
            (&*r.call_id, r.to_tag(), r.from_tag(), r.early_only()),
            (
                "98732@sip.example.com",
                Some("ff87ff"),
                Some("r33th4x0r"),
                true
            )
        );
        assert!(Replaces::parse(&bs("a@b;to-tag=1")).is_err());
        let r = Reason::parse(&bs("Q.850 ;cause=16 ;text=\"Terminated\"")).unwrap();
        assert_eq!(
            (r.cause(), r.text().as_deref()),
            (Some(16), Some("Terminated"))
        );
        let s = SessionExpires::parse(&bs("1800;refresher=uas")).unwrap();
        assert_eq!((s.seconds, s.refresher()), (1800, Some("uas")));
    }

    #[test]
    fn dates() {
        let d = SipDate::parse("Sat, 13 Nov 2010 23:29:00 GMT").unwrap();
        assert_eq!(d.unix_timestamp(), 1_289_690_940);
        assert_eq!(d.to_string(), "Sat, 13 Nov 2010 23:29:00 GMT");
        assert_eq!(SipDate::from_unix_timestamp(1_289_690_940), d);
        assert!(SipDate::parse("Fri, 01 Jan 2010 16:00:00 EST").is_err());
        assert!(SipDate::parse("Sat, 01 Jan 2010 16:00:00 GMT").is_err());
        assert!(SipDate::parse("Fri, 32 Jan 2010 16:00:00 GMT").is_err());
        assert!(SipDate::parse("Sat, 15 Oct 2005 04:44:56 GMT").is_ok());
    }

    #[test]
    fn auth_grammar() {
        assert!(check_auth("Digest realm=\"atlanta.com\", qop=\"auth,auth-int\", nonce=\"x\\\"y\", algorithm=SHA-256", true).is_ok());
        assert!(check_auth("NoOneKnowsThisScheme opaque-data=here", true).is_ok());
        assert!(check_auth("Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc-_==", true).is_ok());
        assert!(check_auth("Digest realm=\"x", true).is_err());
        assert!(check_auth("Digest", true).is_err());
        assert!(check_auth("Digest realm", true).is_err());
        assert!(
            check_auth(
                "nextnonce=\"47364c23432d2e131a5fb210812c\", qop=auth",
                false
            )
            .is_ok()
        );
    }

    #[test]
    fn product_and_warning() {
        assert!(check_product_list("SIPimp.org/0.2.5 (curses)").is_ok());
        assert!(check_product_list("Linphone Desktop/5.0 (Ubuntu 22.04, Qt (5.15))").is_ok());
        assert!(check_product_list("foo (bar").is_err());
        assert!(check_warning("370 devnull \"Choose a bigger pipe\"").is_ok());
        assert!(check_warning("1812 overture \"In Progress\"").is_err());
    }
}
