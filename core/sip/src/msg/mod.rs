//! SIP messages: a zero-copy parser and a printer (RFC 3261 §7, §20, §25).
//!
//! [`parse`] takes one datagram (or one message framed off a stream by
//! [`framing::StreamFramer`]) as [`Bytes`] and returns a [`Message`] whose
//! header values are [`ByteString`] slices of that buffer: parsing copies
//! nothing but folded header lines (§7.3.1), which it joins into a fresh value.
//!
//! The parser checks the start line and the grammar of every *known* header
//! while it walks the head once, so a message that parses is one the
//! transaction layer may act on; unknown headers are kept byte-exact and only
//! need a token name and a colon. Typed values ([`Via`], [`NameAddr`], [`CSeq`],
//! ...) are parsed lazily by the accessors on [`Headers`]. What the parser
//! cannot decide alone — missing mandatory headers (§8.1.1), duplicated single
//! headers, conflicting Content-Length — is reported by [`Message::validate`],
//! because RFC 4475 §3.3 wants such messages parsed and then answered with 400.
//!
//! A request that fails either way is answered with [`bad_request_reply`].
//!
//! ```
//! use bytes::Bytes;
//! use vaxel_sip::msg::{self, Message, Method, StatusCode, Response};
//!
//! let raw = Bytes::from_static(
//!     b"OPTIONS sip:bob@example.com SIP/2.0\r\n\
//!       Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds\r\n\
//!       Max-Forwards: 70\r\n\
//!       To: <sip:bob@example.com>\r\n\
//!       From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
//!       Call-ID: a84b4c76e66710@pc33.example.com\r\n\
//!       CSeq: 63104 OPTIONS\r\n\
//!       Content-Length: 0\r\n\r\n",
//! );
//! let Message::Request(req) = msg::parse(raw).unwrap() else { unreachable!() };
//! assert_eq!(req.method, Method::Options);
//! assert_eq!(req.headers.top_via().unwrap().branch(), Some("z9hG4bK776asdhds"));
//! let mut ok = Response::from_request(&req, StatusCode::OK);
//! ok.set_to_tag("a6c85cf").unwrap();
//! assert!(ok.to_string().starts_with("SIP/2.0 200 OK\r\n"));
//! ```

mod addr;
mod error;
pub mod framing;
mod headers;
mod method;
mod parser;
mod reply;
mod scan;
mod typed;
mod uri;
mod via;

use std::fmt;

use bytes::{BufMut, Bytes};
use bytestring::ByteString;

pub use addr::{Contact, NameAddr};
pub use error::{ErrorKind, ParseError};
pub use headers::{Header, HeaderName, Headers};
pub use method::{Method, StatusCode};
pub use reply::bad_request_reply;
pub use typed::{
    CSeq, Event, MediaType, RAck, Reason, Replaces, SessionExpires, SipDate, SubscriptionState,
};
pub use uri::{
    Host, ParamIter, Params, SipUri, TelUri, Uri, escape_header, escape_param, escape_password,
    escape_user, unescape,
};
pub use via::{Transport, Via};

/// Parses one SIP message from one datagram or one framed stream message
/// (§7). The result slices `buf`; see the module documentation for what is
/// checked.
pub fn parse(buf: Bytes) -> Result<Message, ParseError> {
    parser::parse(buf)
}

/// A SIP request or response (§7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

/// A SIP request (§7.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The Request-URI.
    pub uri: Uri,
    /// The headers, in order.
    pub headers: Headers,
    /// The body (arbitrary bytes).
    pub body: Bytes,
}

/// A SIP response (§7.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: StatusCode,
    /// The reason phrase (may be empty, RFC 4475 §3.1.1.13).
    pub reason: ByteString,
    /// The headers, in order.
    pub headers: Headers,
    /// The body (arbitrary bytes).
    pub body: Bytes,
}

fn write_head_line(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    // A value set through the API with a line break would split the header;
    // print such breaks as spaces rather than emit a broken message.
    if value.bytes().any(|c| c == b'\r' || c == b'\n') {
        out.extend(
            value
                .bytes()
                .map(|c| if c == b'\r' || c == b'\n' { b' ' } else { c }),
        );
    } else {
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes the headers with one Content-Length equal to the body length: the
/// first Content-Length keeps its place, others are dropped, and one is
/// appended when there was none (§20.14 makes it mandatory on streams; we
/// always send it).
fn write_headers(headers: &Headers, body_len: usize, out: &mut Vec<u8>) {
    let mut cl_done = false;
    let num = body_len.to_string();
    for h in headers {
        if h.name == HeaderName::ContentLength {
            if !cl_done {
                write_head_line(out, "Content-Length", num.as_str());
                cl_done = true;
            }
            continue;
        }
        write_head_line(out, h.name.as_str(), &h.value);
    }
    if !cl_done {
        write_head_line(out, "Content-Length", num.as_str());
    }
    out.extend_from_slice(b"\r\n");
}

fn head_capacity(headers: &Headers, body: usize) -> usize {
    64 + body + headers.iter().map(|h| h.value.len() + 24).sum::<usize>()
}

impl Request {
    /// A request with no headers and no body; add Via, Max-Forwards, From, To,
    /// Call-ID and CSeq (§8.1.1) before sending.
    pub fn new(method: Method, uri: impl Into<Uri>) -> Self {
        Request {
            method,
            uri: uri.into(),
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// Appends the message in wire form to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(head_capacity(&self.headers, self.body.len()));
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.put_u8(b' ');
        out.extend_from_slice(self.uri.to_string().as_bytes());
        out.extend_from_slice(b" SIP/2.0\r\n");
        write_headers(&self.headers, self.body.len(), out);
        out.extend_from_slice(&self.body);
    }

    /// The message in wire form.
    pub fn to_bytes(&self) -> Bytes {
        let mut v = Vec::new();
        self.write_to(&mut v);
        Bytes::from(v)
    }

    /// Sets the body and its Content-Type (Content-Length follows the body when printed).
    pub fn set_body(&mut self, content_type: &MediaType, body: Bytes) {
        self.headers
            .set(HeaderName::ContentType, content_type.to_string());
        self.body = body;
    }
}

impl Response {
    /// A response with the canonical reason phrase, no headers and no body.
    pub fn new(status: StatusCode) -> Self {
        Response {
            status,
            reason: ByteString::from_static(status.canonical_reason()),
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// A response to `req` (§8.2.6.2): Via (all, in order), From, To, Call-ID
    /// and CSeq copied; Record-Route copied too for 101..=299 (§12.1.1: a
    /// dialog-creating response reflects the route set). Add a To tag with
    /// [`Response::set_to_tag`] (§8.2.6.2).
    pub fn from_request(req: &Request, status: StatusCode) -> Self {
        let mut resp = Response::new(status);
        let copy_rr = status.as_u16() > 100 && status.as_u16() < 300;
        for h in &req.headers {
            let copy = matches!(
                h.name,
                HeaderName::Via
                    | HeaderName::From
                    | HeaderName::To
                    | HeaderName::CallId
                    | HeaderName::CSeq
            ) || (copy_rr && h.name == HeaderName::RecordRoute);
            if copy {
                resp.headers.push_header(h.clone());
            }
        }
        resp
    }

    /// Adds `tag` to the To header unless it already has one (§8.2.6.2).
    pub fn set_to_tag(&mut self, tag: &str) -> Result<(), ParseError> {
        if !scan::is_token(tag) {
            return Err(ParseError::new(
                ErrorKind::InvalidArgument,
                "tag is not a token",
            ));
        }
        let mut to = self.headers.to()?;
        if to.tag().is_none() {
            to.set_tag(tag);
            self.headers.set(HeaderName::To, to.to_string());
        }
        Ok(())
    }

    /// Appends the message in wire form to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(head_capacity(&self.headers, self.body.len()));
        out.extend_from_slice(b"SIP/2.0 ");
        out.extend_from_slice(self.status.to_string().as_bytes());
        out.put_u8(b' ');
        out.extend_from_slice(self.reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        write_headers(&self.headers, self.body.len(), out);
        out.extend_from_slice(&self.body);
    }

    /// The message in wire form.
    pub fn to_bytes(&self) -> Bytes {
        let mut v = Vec::new();
        self.write_to(&mut v);
        Bytes::from(v)
    }
}

impl Message {
    /// The headers.
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    /// The headers, mutable.
    pub fn headers_mut(&mut self) -> &mut Headers {
        match self {
            Message::Request(r) => &mut r.headers,
            Message::Response(r) => &mut r.headers,
        }
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        match self {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        }
    }

    /// Appends the message in wire form to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Message::Request(r) => r.write_to(out),
            Message::Response(r) => r.write_to(out),
        }
    }

    /// The message in wire form.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }

    /// The checks a UA or proxy makes before processing a parsed message
    /// (RFC 4475 §3.3.1, §3.3.8, §3.3.9): To, From, CSeq, Call-ID and at least
    /// one Via present (§8.1.1; Max-Forwards is not required so that RFC 2543
    /// requests are still served, RFC 4475 §3.4.1), single-valued headers not
    /// repeated, Content-Length values agreeing. A failure is answered with
    /// 400 through [`bad_request_reply`].
    pub fn validate(&self) -> Result<(), ParseError> {
        let h = self.headers();
        for name in [
            HeaderName::To,
            HeaderName::From,
            HeaderName::CSeq,
            HeaderName::CallId,
            HeaderName::Via,
        ] {
            match h.count(&name) {
                0 => {
                    return Err(
                        ParseError::new(ErrorKind::MissingHeader, "header is missing")
                            .in_header(&name),
                    );
                }
                1 => {}
                _ if name == HeaderName::Via => {}
                _ => {
                    return Err(ParseError::new(
                        ErrorKind::DuplicateHeader,
                        "header appears more than once",
                    )
                    .in_header(&name));
                }
            }
        }
        for name in [HeaderName::MaxForwards, HeaderName::ContentType] {
            if h.count(&name) > 1 {
                return Err(ParseError::new(
                    ErrorKind::DuplicateHeader,
                    "header appears more than once",
                )
                .in_header(&name));
            }
        }
        let mut cl = h.get_all(&HeaderName::ContentLength);
        if let Some(first) = cl.next()
            && cl.any(|v| v != first)
        {
            return Err(ParseError::new(
                ErrorKind::ContentLength,
                "conflicting Content-Length values",
            )
            .in_header(&HeaderName::ContentLength));
        }
        Ok(())
    }
}

fn fmt_wire(f: &mut fmt::Formatter<'_>, write: impl FnOnce(&mut Vec<u8>)) -> fmt::Result {
    let mut v = Vec::new();
    write(&mut v);
    f.write_str(&String::from_utf8_lossy(&v))
}

/// The wire form; a body that is not UTF-8 is shown lossily (use `to_bytes` to send).
impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_wire(f, |v| self.write_to(v))
    }
}

/// The wire form; a body that is not UTF-8 is shown lossily (use `to_bytes` to send).
impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_wire(f, |v| self.write_to(v))
    }
}

/// The wire form; a body that is not UTF-8 is shown lossily (use `to_bytes` to send).
impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_wire(f, |v| self.write_to(v))
    }
}

impl From<Request> for Message {
    fn from(r: Request) -> Self {
        Message::Request(r)
    }
}

impl From<Response> for Message {
    fn from(r: Response) -> Self {
        Message::Response(r)
    }
}
