//! Message framing on stream transports (TCP, TLS, WebSocket without its own
//! framing): RFC 3261 §18.3 and the CRLF keep-alives of RFC 5626 §3.5.1.
//!
//! On a stream, Content-Length is mandatory (§18.3, §20.14): it is the only
//! way to find where a message ends. A missing or malformed one, or a head
//! that grows past the bound without its empty line, is a [`FramingError`]:
//! the stream can no longer be resynchronised and the driver closes the
//! connection. A message that frames but does not parse is not a framing
//! error: pass it to [`super::parse`] and answer it with 400 if it is a request.

use bytes::{Buf, Bytes, BytesMut};
use memchr::memmem;

use super::scan;

/// Default bound on the head (start line and headers) of one message.
pub const DEFAULT_MAX_HEAD: usize = 64 * 1024;
/// Default bound on the body of one message.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// What the framer found next on the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// One complete message (head and Content-Length bytes of body), to be
    /// passed to [`super::parse`].
    Message(Bytes),
    /// A CRLFCRLF keep-alive ping (RFC 5626 §3.5.1): answer with a single CRLF.
    Ping,
    /// A lone CRLF: the pong answering our ping (RFC 5626 §4.4.1).
    Pong,
}

/// Why the stream cannot be framed any further; the connection must be closed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    /// The head exceeded the bound without its terminating empty line.
    #[error("message head exceeds {0} bytes")]
    HeadTooLarge(usize),
    /// The message has no Content-Length (mandatory on streams, §18.3).
    #[error("message without Content-Length on a stream")]
    MissingContentLength,
    /// The Content-Length is not a number, or several disagree.
    #[error("malformed Content-Length")]
    BadContentLength,
    /// The Content-Length exceeds the body bound.
    #[error("body of {0} bytes exceeds the bound")]
    BodyTooLarge(usize),
}

/// Splits a byte stream into SIP messages and keep-alives.
///
/// Push received bytes with [`StreamFramer::push`], then call
/// [`StreamFramer::poll`] until it returns `Ok(None)`.
#[derive(Debug)]
pub struct StreamFramer {
    buf: BytesMut,
    max_head: usize,
    max_body: usize,
    /// Where to resume the search for the end of the head.
    searched: usize,
    /// Total length of the message at the front, once its head is known.
    pending: Option<usize>,
    /// The last thing taken was a CRLF that emptied the buffer: a CRLF arriving
    /// next completes a ping split across two reads.
    lone_crlf: bool,
    failed: Option<FramingError>,
}

impl Default for StreamFramer {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamFramer {
    /// A framer with the default bounds (64 KiB head, 1 MiB body).
    pub fn new() -> Self {
        Self::with_limits(DEFAULT_MAX_HEAD, DEFAULT_MAX_BODY)
    }

    /// A framer with the given bounds on head and body size.
    pub fn with_limits(max_head: usize, max_body: usize) -> Self {
        StreamFramer {
            buf: BytesMut::new(),
            max_head,
            max_body,
            searched: 0,
            pending: None,
            lone_crlf: false,
            failed: None,
        }
    }

    /// Adds received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed, or the
    /// error that ends the stream (returned again on every later call).
    pub fn poll(&mut self) -> Result<Option<Frame>, FramingError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.poll_inner();
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn poll_inner(&mut self) -> Result<Option<Frame>, FramingError> {
        if self.pending.is_none() && self.buf.starts_with(b"\r\n") {
            self.searched = 0;
            if self.buf.starts_with(b"\r\n\r\n") {
                self.buf.advance(4);
                self.lone_crlf = false;
                return Ok(Some(Frame::Ping));
            }
            if self.buf.len() == 3 && self.buf[2] == b'\r' {
                return Ok(None);
            }
            self.buf.advance(2);
            if self.lone_crlf {
                self.lone_crlf = false;
                return Ok(Some(Frame::Ping));
            }
            self.lone_crlf = self.buf.is_empty();
            return Ok(Some(Frame::Pong));
        }
        if self.buf.is_empty() || &self.buf[..] == b"\r" {
            return Ok(None);
        }
        self.lone_crlf = false;
        let total = match self.pending {
            Some(t) => t,
            None => {
                let from = self.searched.saturating_sub(3);
                let window = &self.buf[..self.buf.len().min(self.max_head + 4)];
                let Some(p) = memmem::find(&window[from..], b"\r\n\r\n") else {
                    if self.buf.len() > self.max_head {
                        return Err(FramingError::HeadTooLarge(self.max_head));
                    }
                    self.searched = self.buf.len();
                    return Ok(None);
                };
                let head_end = from + p + 2;
                let cl = content_length(&self.buf[..head_end])?;
                if cl > self.max_body {
                    return Err(FramingError::BodyTooLarge(cl));
                }
                let t = head_end + 2 + cl;
                self.pending = Some(t);
                t
            }
        };
        if self.buf.len() < total {
            return Ok(None);
        }
        self.pending = None;
        self.searched = 0;
        Ok(Some(Frame::Message(self.buf.split_to(total).freeze())))
    }
}

/// Finds the Content-Length of a head (long or compact name, folded or not).
fn content_length(head: &[u8]) -> Result<usize, FramingError> {
    let mut found: Option<usize> = None;
    let mut lines = head.split(|&b| b == b'\n').skip(1).peekable();
    while let Some(line) = lines.next() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let n = scan::run(line, 0, scan::TOKEN);
        let c = scan::skip_wsp(line, n);
        if line.get(c) != Some(&b':') {
            continue;
        }
        let name = &line[..n];
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let mut value: Vec<u8> = line[c + 1..].to_vec();
        while let Some(next) = lines.next_if(|l| l.first().is_some_and(|b| scan::is_wsp(*b))) {
            value.extend_from_slice(next.strip_suffix(b"\r").unwrap_or(next));
        }
        let v = std::str::from_utf8(&value).map_err(|_| FramingError::BadContentLength)?;
        let n = scan::parse_num(scan::trim(v), u64::from(u32::MAX))
            .ok_or(FramingError::BadContentLength)? as usize;
        match found {
            Some(prev) if prev != n => return Err(FramingError::BadContentLength),
            _ => found = Some(n),
        }
    }
    found.ok_or(FramingError::MissingContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] =
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 4\r\n\r\nbody";

    #[test]
    fn frames_messages_byte_by_byte() {
        let mut f = StreamFramer::new();
        let mut stream = Vec::new();
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(MSG);
        let mut frames = Vec::new();
        for b in &stream {
            f.push(std::slice::from_ref(b));
            while let Some(fr) = f.poll().unwrap() {
                frames.push(fr);
            }
        }
        assert_eq!(
            frames,
            vec![
                Frame::Message(Bytes::from_static(MSG)),
                Frame::Pong,
                Frame::Ping,
                Frame::Message(Bytes::from_static(MSG))
            ]
        );
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn keepalives() {
        let mut f = StreamFramer::new();
        f.push(b"\r\n\r\n\r\n");
        assert_eq!(f.poll().unwrap(), Some(Frame::Ping));
        assert_eq!(f.poll().unwrap(), Some(Frame::Pong));
        assert_eq!(f.poll().unwrap(), None);
        f.push(MSG);
        assert_eq!(
            f.poll().unwrap(),
            Some(Frame::Message(Bytes::from_static(MSG)))
        );
        // Whole messages in one push, several at once.
        let mut two = MSG.to_vec();
        two.extend_from_slice(MSG);
        f.push(&two);
        assert!(matches!(f.poll().unwrap(), Some(Frame::Message(_))));
        assert!(matches!(f.poll().unwrap(), Some(Frame::Message(_))));
        assert_eq!(f.poll().unwrap(), None);
    }

    #[test]
    fn errors_close_the_stream() {
        let mut f = StreamFramer::new();
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n");
        assert_eq!(f.poll(), Err(FramingError::MissingContentLength));
        assert_eq!(f.poll(), Err(FramingError::MissingContentLength));
        let mut f = StreamFramer::new();
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n");
        assert_eq!(f.poll(), Err(FramingError::BadContentLength));
        let mut f = StreamFramer::new();
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\n");
        assert_eq!(f.poll(), Err(FramingError::BadContentLength));
        let mut f = StreamFramer::with_limits(100, 10);
        f.push(&[b'a'; 101]);
        assert_eq!(f.poll(), Err(FramingError::HeadTooLarge(100)));
        let mut f = StreamFramer::with_limits(100, 10);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 11\r\n\r\n");
        assert_eq!(f.poll(), Err(FramingError::BodyTooLarge(11)));
        let mut f = StreamFramer::new();
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length:\r\n  2\r\n\r\nab");
        assert!(matches!(f.poll(), Ok(Some(Frame::Message(_)))));
    }
}
