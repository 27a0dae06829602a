//! The 400 (or 505) answer to a request that failed to parse or validate
//! (RFC 3261 §8.1.3.1, §8.2.6, §21.4.1; RFC 4475 §3.1.2).

use bytestring::ByteString;
use memchr::memchr;

use super::Response;
use super::addr::NameAddr;
use super::error::{ErrorKind, ParseError};
use super::headers::HeaderName;
use super::scan::{self, CommaSplit, TOKEN};
use super::typed::{CSeq, check_call_id};
use super::uri::ParamIter;
use super::via::scan_via_version;

/// FNV-1a: a deterministic To tag for a stateless reply, so that a
/// retransmission of the same bad request gets the same tag (§8.2.7) without
/// an RNG in the parser.
fn fnv(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Builds the response an endpoint sends for a request that [`super::parse`]
/// rejected or [`super::Message::validate`] refused: status and reason phrase
/// from `err` ([`ParseError::status_code`], [`ParseError::reason_phrase`]),
/// with the Via, From, To, Call-ID and CSeq of the request copied (§8.2.6.2)
/// and a To tag added.
///
/// Returns `None` when no response may or can be sent: the message is a
/// response or an ACK (§17.1.1.3: an ACK is never answered), or one of those
/// headers is missing or itself malformed, so the reply could not be routed
/// back or matched to the client transaction.
pub fn bad_request_reply(buf: &[u8], err: &ParseError) -> Option<Response> {
    let mut pos = 0;
    while buf[pos..].starts_with(b"\r\n") {
        pos += 2;
    }
    let nl = pos + memchr(b'\n', &buf[pos..])?;
    let line = &buf[pos..nl];
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        return None;
    }
    let m = scan::run(line, 0, TOKEN);
    if m == 0 || line.get(m) != Some(&b' ') || &line[..m] == b"ACK" {
        return None;
    }
    // A lenient walk over the header lines: lines that are not `name: value`
    // are skipped, folded lines are joined.
    let mut vias: Vec<ByteString> = Vec::new();
    let (mut from, mut to, mut call_id, mut cseq) = (None, None, None, None);
    let mut pos = nl + 1;
    while pos < buf.len() {
        let mut end = match memchr(b'\n', &buf[pos..]) {
            Some(p) => pos + p,
            None => buf.len(),
        };
        while end + 1 < buf.len() && scan::is_wsp(buf[end + 1]) {
            end = match memchr(b'\n', &buf[end + 1..]) {
                Some(p) => end + 1 + p,
                None => buf.len(),
            };
        }
        let raw = &buf[pos..end];
        pos = end + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            break;
        }
        let n = scan::run(raw, 0, TOKEN);
        let c = scan::skip_wsp(raw, n);
        if n == 0 || raw.get(c) != Some(&b':') {
            continue;
        }
        let Some(name) = HeaderName::known(&raw[..n]) else {
            continue;
        };
        let mut value = Vec::with_capacity(raw.len() - c);
        for part in raw[c + 1..].split(|&b| b == b'\n') {
            let part = part.strip_suffix(b"\r").unwrap_or(part);
            let t = scan::skip_wsp(part, 0);
            if !value.is_empty() {
                value.push(b' ');
            }
            value.extend_from_slice(&part[t..]);
        }
        while value.last().is_some_and(|b| scan::is_wsp(*b)) {
            value.pop();
        }
        let Ok(value) = ByteString::try_from(value) else {
            return None;
        };
        match name {
            HeaderName::Via => vias.push(value),
            HeaderName::From => {
                from.get_or_insert(value);
            }
            HeaderName::To => {
                to.get_or_insert(value);
            }
            HeaderName::CallId => {
                call_id.get_or_insert(value);
            }
            HeaderName::CSeq => {
                cseq.get_or_insert(value);
            }
            _ => {}
        }
    }
    let (from, to, call_id, cseq) = (from?, to?, call_id?, cseq?);
    let mut top_branch = None;
    let any_version = err.kind() == ErrorKind::Version;
    for v in &vias {
        for e in CommaSplit::new(v) {
            let via = scan_via_version(e, any_version).ok()?;
            if top_branch.is_none() {
                let branch = ParamIter::new(via.params)
                    .find(|(n, _)| n.eq_ignore_ascii_case("branch"))
                    .and_then(|(_, v)| v);
                top_branch = Some(branch.unwrap_or("").to_owned());
            }
        }
    }
    let top_branch = top_branch?;
    let from_addr = NameAddr::parse(&from).ok()?;
    let mut to_addr = NameAddr::parse(&to).ok()?;
    check_call_id(&call_id).ok()?;
    CSeq::parse(&cseq).ok()?;

    let mut resp = Response::new(err.status_code());
    resp.reason = ByteString::from(err.reason_phrase());
    for v in vias {
        resp.headers.push(HeaderName::Via, v);
    }
    resp.headers.push(HeaderName::From, from);
    if to_addr.tag().is_none() {
        let tag = fnv(&[&call_id, from_addr.tag().unwrap_or(""), &cseq, &top_branch]);
        to_addr.set_tag(&format!("{tag:016x}"));
        resp.headers.push(HeaderName::To, to_addr.to_string());
    } else {
        resp.headers.push(HeaderName::To, to);
    }
    resp.headers.push(HeaderName::CallId, call_id);
    resp.headers.push(HeaderName::CSeq, cseq);
    Some(resp)
}
