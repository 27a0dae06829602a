//! The one-pass message parser (RFC 3261 §7). It walks the head line by line,
//! slices every header value out of the input (`Bytes::slice`: a reference
//! count, no copy), checks known headers with the allocation-free scanners of
//! [`super::typed`], then takes the body by Content-Length (§18.3, §20.14).

use bytes::Bytes;
use bytestring::ByteString;
use memchr::{memchr, memchr2, memmem};

use super::error::{ErrorKind, ParseError};
use super::headers::{Header, HeaderName, Headers};
use super::method::{Method, StatusCode};
use super::scan::{self, TOKEN};
use super::typed::{check_known, check_known_to, scan_cseq};
use super::uri::{RawUri, scan_uri};
use super::{Message, Request, Response};

const fn err(kind: ErrorKind, detail: &'static str) -> ParseError {
    ParseError::new(kind, detail)
}

/// Finds the CRLF ending the line that starts at `from`; returns the index of
/// its CR. A bare LF or CR inside the line is an error (§7.3.1 allows line
/// breaks only as CRLF, and inside a header only as folding).
#[inline]
fn line_end(b: &[u8], from: usize) -> Result<usize, ParseError> {
    match memchr2(b'\r', b'\n', &b[from..]) {
        Some(p) => {
            let i = from + p;
            match (b[i], b.get(i + 1)) {
                (b'\r', Some(b'\n')) => Ok(i),
                (b'\r', None) => Err(err(ErrorKind::Incomplete, "unterminated line")),
                (b'\r', _) => Err(err(ErrorKind::HeaderLine, "bare CR")),
                _ => Err(err(ErrorKind::HeaderLine, "bare LF")),
            }
        }
        None => Err(err(ErrorKind::Incomplete, "unterminated line")),
    }
}

/// Joins folded lines (§7.3.1): each CRLF with the whitespace around it becomes one SP.
fn unfold(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\r' && raw.get(i + 1) == Some(&b'\n') {
            while out.last().is_some_and(|c| scan::is_wsp(*c)) {
                out.pop();
            }
            i = scan::skip_wsp(raw, i + 2);
            if !out.is_empty() {
                out.push(b' ');
            }
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    while out.last().is_some_and(|c| scan::is_wsp(*c)) {
        out.pop();
    }
    out
}

fn is_sip_version(v: &[u8]) -> bool {
    v.eq_ignore_ascii_case(b"SIP/2.0")
}

/// Whether `v` looks like a SIP-Version of another number (§7.1: answer 505).
fn looks_like_version(v: &[u8]) -> bool {
    v.len() > 4
        && v[..4].eq_ignore_ascii_case(b"SIP/")
        && v[4..].iter().all(|c| c.is_ascii_digit() || *c == b'.')
}

enum StartLine {
    Request {
        method: Method,
        uri: ByteString,
    },
    Response {
        status: StatusCode,
        reason: ByteString,
    },
}

/// Parses the start line `head[..to]`.
fn parse_start_line(head: &ByteString, to: usize) -> Result<StartLine, ParseError> {
    let text = &head[..to];
    let line = text.as_bytes();
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let sp = memchr(b' ', line).ok_or(err(ErrorKind::StartLine, "no status code"))?;
        if !is_sip_version(&line[..sp]) {
            return Err(if looks_like_version(&line[..sp]) {
                err(ErrorKind::Version, "not SIP/2.0")
            } else {
                err(ErrorKind::StartLine, "bad SIP version")
            });
        }
        let code = &line[sp + 1..];
        let digits = code.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits != 3 || (code.len() > 3 && code[3] != b' ') {
            return Err(err(ErrorKind::StartLine, "status code is not three digits"));
        }
        let n = u16::from(code[0] - b'0') * 100
            + u16::from(code[1] - b'0') * 10
            + u16::from(code[2] - b'0');
        let status =
            StatusCode::new(n).ok_or(err(ErrorKind::StartLine, "status code outside 100..=699"))?;
        let reason = &text[(sp + 5).min(to)..];
        if reason
            .bytes()
            .any(|c| (c < 0x20 && c != b'\t') || c == 0x7f)
        {
            return Err(err(
                ErrorKind::StartLine,
                "control character in reason phrase",
            ));
        }
        return Ok(StartLine::Response {
            status,
            reason: head.slice_ref(reason),
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version (single SPs, §7.1)
    let m = scan::run(line, 0, TOKEN);
    if m == 0 || line.get(m) != Some(&b' ') {
        return Err(err(ErrorKind::StartLine, "bad method"));
    }
    let u0 = m + 1;
    let u1 = memchr(b' ', &line[u0..])
        .map(|p| u0 + p)
        .ok_or(err(ErrorKind::StartLine, "no SIP version"))?;
    let version = &line[u1 + 1..];
    if !is_sip_version(version) {
        return Err(if looks_like_version(version) {
            err(ErrorKind::Version, "not SIP/2.0")
        } else {
            err(ErrorKind::StartLine, "bad request line")
        });
    }
    if u1 == u0 {
        return Err(err(ErrorKind::RequestUri, "empty Request-URI"));
    }
    // A known method needs no slice of the message.
    let mt = scan::sub(text, 0, m);
    let method = match Method::known(mt) {
        Some(known) => known,
        None => Method::from_token(&head.slice_ref(mt))?,
    };
    Ok(StartLine::Request {
        method,
        uri: head.slice_ref(scan::sub(text, u0, u1)),
    })
}

/// Parses the Request-URI: any absolute URI, but not in `<...>` (RFC 4475
/// §3.1.2.7) and a SIP URI without headers (§19.1.1 table: not allowed in a
/// Request-URI; RFC 4475 §3.1.2.11).
fn request_uri(uri: &ByteString) -> Result<RawUri<'_>, ParseError> {
    let raw = scan_uri(uri).map_err(|e| err(ErrorKind::RequestUri, e.detail()))?;
    if raw.has_headers() {
        return Err(err(
            ErrorKind::RequestUri,
            "headers are not allowed in a Request-URI",
        ));
    }
    Ok(raw)
}

/// What the walk over the head found.
struct Walk {
    start: StartLine,
    headers: Headers,
    /// Length of the head up to the empty line (the empty line excluded).
    head_len: usize,
    content_length: Option<u32>,
    cl_conflict: bool,
    /// Whether the method of the first CSeq differs from the request
    /// method (§8.1.1.5), reported after the checks of the body.
    cseq_mismatch: bool,
}

/// Walks the start line and the header lines of `head`, validating known
/// headers. With `stop_at_empty`, `head` runs on past the head and the walk
/// stops at the empty line (an error when there is none); else `head` ends
/// right after the CRLF of the last header line.
fn walk_head(head: &ByteString, stop_at_empty: bool) -> Result<Walk, ParseError> {
    let h: &str = head;
    let hb = h.as_bytes();
    let sl_end = line_end(hb, 0).map_err(|e| ParseError::new(ErrorKind::StartLine, e.detail()))?;
    let start = parse_start_line(head, sl_end)?;
    let mut p = sl_end + 2;

    let mut headers = Headers::with_capacity(16);
    let mut content_length: Option<u32> = None;
    let mut cl_conflict = false;
    // The request method as written (a known method is spelled as
    // `Method::as_str` gives it: the comparison is the same).
    let req_method: Option<&[u8]> = match start {
        StartLine::Request { .. } => Some(&hb[..scan::run(hb, 0, TOKEN)]),
        StartLine::Response { .. } => None,
    };
    let mut cseq_seen = false;
    let mut cseq_mismatch = false;
    loop {
        // A line that starts `known-name:` is neither the end of the head
        // nor a continuation line: those checks only on the other lines.
        let (n_end, colon, mut known) = match HeaderName::known_colon(hb, p) {
            Some((name, n)) => (p + n, p + n, Some(name)),
            None => {
                if p >= hb.len() {
                    if stop_at_empty {
                        return Err(err(
                            ErrorKind::Incomplete,
                            "no empty line after the headers",
                        ));
                    }
                    break;
                }
                let c = hb[p];
                if c == b'\r' && stop_at_empty && hb.get(p + 1) == Some(&b'\n') {
                    break;
                }
                if scan::is_wsp(c) {
                    return Err(err(
                        ErrorKind::HeaderLine,
                        "continuation line without a header",
                    ));
                }
                let n_end = scan::run(hb, p, TOKEN);
                let colon = scan::skip_wsp(hb, n_end);
                let known = if n_end > p && hb.get(colon) == Some(&b':') {
                    HeaderName::known_in(hb, p, n_end)
                } else {
                    None
                };
                (n_end, colon, known)
            }
        };
        debug_assert!(known.is_none() || scan::run(hb, p, TOKEN) == n_end);
        if let Some(name) = known.take() {
            // Fast path: the grammar check of the value also finds its end,
            // with no separate search for the line end. It decides only
            // values that end in CRLF with no folding; anything else goes
            // the general way below, which reports the errors.
            let vs = scan::skip_wsp(hb, colon + 1);
            if let Some((stop, n)) = check_known_to(&name, h, vs) {
                // Usually the value ends right at CRLF and the next line is
                // no continuation: one look at three bytes.
                let (k, line_ok) = match hb.get(stop..stop + 3) {
                    Some(&[b'\r', b'\n', c]) => (stop, !scan::is_wsp(c)),
                    _ => {
                        let k = scan::skip_wsp(hb, stop);
                        let ok = hb.get(k) == Some(&b'\r')
                            && hb.get(k + 1) == Some(&b'\n')
                            && !(k + 2 < hb.len() && scan::is_wsp(hb[k + 2]));
                        (k, ok)
                    }
                };
                if line_ok {
                    let mut ve = k;
                    while ve > vs && scan::is_wsp(hb[ve - 1]) {
                        ve -= 1;
                    }
                    debug_assert!(memchr2(b'\r', b'\n', &hb[p..k]).is_none());
                    let value = head.slice_ref(scan::sub(h, vs, ve));
                    match name {
                        // check_known_to found the method at `n..stop`.
                        HeaderName::CSeq => {
                            debug_assert_eq!(
                                scan_cseq(&value).ok().map(|r| r.1),
                                Some(&h[n..stop])
                            );
                            if !cseq_seen {
                                cseq_seen = true;
                                cseq_mismatch = req_method.is_some_and(|r| r != &hb[n..stop]);
                            }
                        }
                        HeaderName::ContentLength => {
                            let cl = n as u32;
                            debug_assert_eq!(check_known(&name, &value).ok(), Some(Some(cl)));
                            match content_length {
                                Some(prev) if prev != cl => cl_conflict = true,
                                _ => content_length = Some(cl),
                            }
                        }
                        _ => debug_assert_eq!(check_known(&name, &value).ok(), Some(None)),
                    }
                    headers.push_header(Header { name, value });
                    p = k + 2;
                    continue;
                }
            }
            known = Some(name);
        }
        // One logical header line: continue over folded lines.
        let mut end = line_end(hb, p)?;
        let mut folded = false;
        while end + 2 < hb.len() && scan::is_wsp(hb[end + 2]) {
            folded = true;
            end = line_end(hb, end + 2)?;
        }
        if n_end == p {
            return Err(err(ErrorKind::HeaderLine, "header name is not a token"));
        }
        if hb.get(colon) != Some(&b':') || colon > end {
            return Err(err(
                ErrorKind::HeaderLine,
                "missing colon after header name",
            ));
        }
        let name = match known {
            Some(n) => n,
            None => HeaderName::Other(head.slice_ref(&h[p..n_end])),
        };
        let value = if folded {
            // Only ASCII whitespace is removed or added: still UTF-8.
            let v = unfold(&hb[colon + 1..end]);
            let v = String::from_utf8(v).map_err(|_| err(ErrorKind::NotUtf8, "not UTF-8"))?;
            ByteString::from(v.trim_start_matches([' ', '\t']).to_owned())
        } else {
            let vs = scan::skip_wsp(hb, colon + 1);
            let mut ve = end;
            while ve > vs && scan::is_wsp(hb[ve - 1]) {
                ve -= 1;
            }
            head.slice_ref(&h[vs..ve])
        };
        match name {
            HeaderName::CSeq => {
                // Checked here rather than in check_known: the method is kept
                // for the comparison with the request method below.
                let (_, m) = scan_cseq(&value).map_err(|e| e.in_header(&name))?;
                if !cseq_seen {
                    cseq_seen = true;
                    cseq_mismatch = req_method.is_some_and(|r| r != m.as_bytes());
                }
            }
            HeaderName::Other(_) => {}
            _ => {
                if let Some(cl) = check_known(&name, &value).map_err(|e| e.in_header(&name))? {
                    match content_length {
                        Some(prev) if prev != cl => cl_conflict = true,
                        _ => content_length = Some(cl),
                    }
                }
            }
        }
        headers.push_header(Header { name, value });
        p = end + 2;
    }
    Ok(Walk {
        start,
        headers,
        head_len: p,
        content_length,
        cl_conflict,
        cseq_mismatch,
    })
}

/// See [`super::parse`].
pub(crate) fn parse(buf: Bytes) -> Result<Message, ParseError> {
    let b = &buf[..];
    let mut pos = 0;
    // §7.5: CRLFs before the start line are ignored.
    while b[pos..].starts_with(b"\r\n") {
        pos += 2;
    }
    if pos >= b.len() {
        return Err(err(ErrorKind::Incomplete, "empty message"));
    }
    // The head ends with the first empty line (§7). It is checked to be UTF-8
    // once; every header value is then a zero-copy slice of it. Usually the
    // whole message is UTF-8 (ASCII, with an SDP body): then one check covers
    // it, and the line walk finds the empty line itself. Otherwise the head
    // is found first and checked alone.
    let walk = match ByteString::try_from(buf.slice(pos..)) {
        Ok(all) => {
            let walk = walk_head(&all, true);
            // A message without an empty line is incomplete, whatever else is
            // wrong in it (checked only on the error path).
            if walk.is_err() && memmem::find(&b[pos..], b"\r\n\r\n").is_none() {
                return Err(err(
                    ErrorKind::Incomplete,
                    "no empty line after the headers",
                ));
            }
            walk
        }
        Err(_) => {
            let head_end = memmem::find(&b[pos..], b"\r\n\r\n")
                .map(|p| pos + p + 2)
                .ok_or(err(
                    ErrorKind::Incomplete,
                    "no empty line after the headers",
                ))?;
            let head = ByteString::try_from(buf.slice(pos..head_end))
                .map_err(|_| err(ErrorKind::NotUtf8, "head is not UTF-8"))?;
            walk_head(&head, false)
        }
    };
    let Walk {
        start,
        headers,
        head_len,
        content_length,
        cl_conflict,
        cseq_mismatch,
    } = walk?;
    let head_end = pos + head_len;
    let pos = head_end + 2;

    // §18.3: the body is Content-Length bytes; on a datagram, bytes beyond it are
    // discarded (RFC 4475 §3.1.1.8) and a shorter body is an error (§3.1.2.2).
    // Without Content-Length (or with conflicting ones, RFC 4475 §3.3.9, which
    // `Message::validate` reports) the body runs to the end of the datagram.
    let body = match content_length {
        Some(n) if !cl_conflict => {
            let n = n as usize;
            if n > b.len() - pos {
                return Err(
                    err(ErrorKind::ContentLength, "Content-Length exceeds the body")
                        .in_header(&HeaderName::ContentLength),
                );
            }
            buf.slice(pos..pos + n)
        }
        _ => buf.slice(pos..),
    };

    match start {
        StartLine::Request { method, uri } => {
            let raw = request_uri(&uri)?;
            let uri_parsed = raw.own(&uri);
            // §8.1.1.5 / RFC 4475 §3.1.2.17: CSeq method must equal the request method.
            if cseq_mismatch {
                return Err(err(
                    ErrorKind::CSeqMismatch,
                    "CSeq method differs from the request method",
                )
                .in_header(&HeaderName::CSeq));
            }
            Ok(Message::Request(Request {
                method,
                uri: uri_parsed,
                headers,
                body,
            }))
        }
        StartLine::Response { status, reason } => Ok(Message::Response(Response {
            status,
            reason,
            headers,
            body,
        })),
    }
}
