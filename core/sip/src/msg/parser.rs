//! The one-pass message parser (RFC 3261 §7). It walks the head line by line,
//! slices every header value out of the input (`Bytes::slice`: a reference
//! count, no copy), checks known headers with the allocation-free scanners of
//! [`super::typed`], then takes the body by Content-Length (§18.3, §20.14).

use bytes::Bytes;
use bytestring::ByteString;
use memchr::memchr;

use super::error::{ErrorKind, ParseError};
use super::headers::{Header, HeaderName, Headers};
use super::method::{Method, StatusCode};
use super::scan::{self, TOKEN};
use super::typed::{check_known, scan_cseq};
use super::uri::{RawUri, scan_uri};
use super::{Message, Request, Response};

const fn err(kind: ErrorKind, detail: &'static str) -> ParseError {
    ParseError::new(kind, detail)
}

/// Finds the CRLF ending the line that starts at `from`; returns the index of
/// its CR. A bare LF or CR inside the line is an error (§7.3.1 allows line
/// breaks only as CRLF, and inside a header only as folding).
#[inline]
pub(crate) fn line_end(b: &[u8], from: usize) -> Result<usize, ParseError> {
    let nl = match memchr(b'\n', &b[from..]) {
        Some(p) => from + p,
        None => return Err(err(ErrorKind::Incomplete, "unterminated line")),
    };
    if nl == from || b[nl - 1] != b'\r' {
        return Err(err(ErrorKind::HeaderLine, "bare LF"));
    }
    if memchr(b'\r', &b[from..nl - 1]).is_some() {
        return Err(err(ErrorKind::HeaderLine, "bare CR"));
    }
    Ok(nl - 1)
}

fn to_text(buf: &Bytes, from: usize, to: usize) -> Result<ByteString, ParseError> {
    ByteString::try_from(buf.slice(from..to)).map_err(|_| err(ErrorKind::NotUtf8, "not UTF-8"))
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
        method: ByteString,
        uri: ByteString,
    },
    Response {
        status: StatusCode,
        reason: ByteString,
    },
}

fn parse_start_line(buf: &Bytes, from: usize, to: usize) -> Result<StartLine, ParseError> {
    let line = &buf[from..to];
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
        let rstart = (from + sp + 5).min(to);
        let reason = to_text(buf, rstart, to)?;
        if reason
            .bytes()
            .any(|c| (c < 0x20 && c != b'\t') || c == 0x7f)
        {
            return Err(err(
                ErrorKind::StartLine,
                "control character in reason phrase",
            ));
        }
        return Ok(StartLine::Response { status, reason });
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
    Ok(StartLine::Request {
        method: to_text(buf, from, from + m)?,
        uri: to_text(buf, from + u0, from + u1)
            .map_err(|_| err(ErrorKind::RequestUri, "not UTF-8"))?,
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
    let sl_end = line_end(b, pos).map_err(|e| ParseError::new(ErrorKind::StartLine, e.detail()))?;
    let start = parse_start_line(&buf, pos, sl_end)?;
    pos = sl_end + 2;

    let mut headers = Headers::with_capacity(16);
    let mut content_length: Option<u32> = None;
    let mut cl_conflict = false;
    loop {
        if pos >= b.len() {
            return Err(err(
                ErrorKind::Incomplete,
                "no empty line after the headers",
            ));
        }
        if b[pos] == b'\r' {
            if b.get(pos + 1) == Some(&b'\n') {
                pos += 2;
                break;
            }
            return Err(err(ErrorKind::HeaderLine, "bare CR"));
        }
        if scan::is_wsp(b[pos]) {
            return Err(err(
                ErrorKind::HeaderLine,
                "continuation line without a header",
            ));
        }
        // One logical header line: continue over folded lines.
        let mut end = line_end(b, pos)?;
        let mut folded = false;
        while end + 2 < b.len() && scan::is_wsp(b[end + 2]) {
            folded = true;
            end = line_end(b, end + 2)?;
        }
        let n_end = scan::run(b, pos, TOKEN);
        if n_end == pos {
            return Err(err(ErrorKind::HeaderLine, "header name is not a token"));
        }
        let colon = scan::skip_wsp(b, n_end);
        if b.get(colon) != Some(&b':') || colon > end {
            return Err(err(
                ErrorKind::HeaderLine,
                "missing colon after header name",
            ));
        }
        let name = match HeaderName::known(&b[pos..n_end]) {
            Some(n) => n,
            None => HeaderName::Other(to_text(&buf, pos, n_end)?),
        };
        let value = if folded {
            let v = unfold(&b[colon + 1..end]);
            let start = scan::skip_wsp(&v, 0);
            ByteString::try_from(Bytes::from(v).slice(start..))
                .map_err(|_| err(ErrorKind::NotUtf8, "not UTF-8").in_header(&name))?
        } else {
            let vs = scan::skip_wsp(b, colon + 1);
            let mut ve = end;
            while ve > vs && scan::is_wsp(b[ve - 1]) {
                ve -= 1;
            }
            to_text(&buf, vs, ve).map_err(|e| e.in_header(&name))?
        };
        if !matches!(name, HeaderName::Other(_)) {
            if let Some(cl) = check_known(&name, &value).map_err(|e| e.in_header(&name))? {
                match content_length {
                    Some(prev) if prev != cl => cl_conflict = true,
                    _ => content_length = Some(cl),
                }
            }
        }
        headers.push_header(Header { name, value });
        pos = end + 2;
    }

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
            let method = Method::from_token(&method)?;
            // §8.1.1.5 / RFC 4475 §3.1.2.17: CSeq method must equal the request method.
            if let Some(cseq) = headers.get(&HeaderName::CSeq) {
                let (_, m) = scan_cseq(cseq).map_err(|e| e.in_header(&HeaderName::CSeq))?;
                if m != method.as_str() {
                    return Err(err(
                        ErrorKind::CSeqMismatch,
                        "CSeq method differs from the request method",
                    )
                    .in_header(&HeaderName::CSeq));
                }
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
