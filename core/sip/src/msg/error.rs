//! Errors of the message layer. A [`ParseError`] is always the peer's fault (a
//! malformed message from the network): the caller logs and counts it and, for a
//! request, answers with the status of [`ParseError::status_code`]
//! (ARCHITECTURE.md §3.5).

use std::fmt;

use super::StatusCode;
use super::headers::HeaderName;

/// What kind of defect a [`ParseError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input ended before the message did: no empty line after the headers
    /// (RFC 3261 §7), or an unterminated line.
    Incomplete,
    /// The head is larger than the framer's bound (a memory attack or a broken peer).
    TooLarge,
    /// Header or start-line text that is not UTF-8 (§7.3.1, TEXT-UTF8 of §25.1).
    NotUtf8,
    /// The start line does not follow Request-Line or Status-Line (§7.1, §7.2).
    StartLine,
    /// A SIP-Version other than `SIP/2.0` (§7.1); a request gets 505.
    Version,
    /// The Request-URI is malformed or not allowed there (§7.1, §19.1.1).
    RequestUri,
    /// A header line without a token name or colon, or with a bare CR or LF (§7.3.1).
    HeaderLine,
    /// A known header's value does not follow its grammar (§20, §25.1).
    HeaderValue,
    /// A number outside the range its grammar allows (RFC 4475 §3.1.2.4).
    OutOfRange,
    /// Content-Length malformed, larger than the body, or missing on a stream (§18.3, §20.14).
    ContentLength,
    /// The CSeq method differs from the request method (§8.1.1.5, RFC 4475 §3.1.2.17).
    CSeqMismatch,
    /// A mandatory header is missing (§8.1.1).
    MissingHeader,
    /// A header allowed once appears several times (§7.3.1, RFC 4475 §3.3.8).
    DuplicateHeader,
    /// A value handed to a builder cannot be written as valid SIP (API misuse).
    InvalidArgument,
}

impl ErrorKind {
    fn describe(self) -> &'static str {
        match self {
            ErrorKind::Incomplete => "incomplete message",
            ErrorKind::TooLarge => "message head too large",
            ErrorKind::NotUtf8 => "header text is not UTF-8",
            ErrorKind::StartLine => "malformed start line",
            ErrorKind::Version => "unsupported SIP version",
            ErrorKind::RequestUri => "invalid Request-URI",
            ErrorKind::HeaderLine => "malformed header line",
            ErrorKind::HeaderValue => "invalid header value",
            ErrorKind::OutOfRange => "number out of range",
            ErrorKind::ContentLength => "bad Content-Length",
            ErrorKind::CSeqMismatch => "CSeq method does not match the request method",
            ErrorKind::MissingHeader => "missing mandatory header",
            ErrorKind::DuplicateHeader => "header appears more than once",
            ErrorKind::InvalidArgument => "invalid argument",
        }
    }
}

/// A malformed message or value: what is wrong ([`ErrorKind`] and a detail) and
/// where (the header, when the defect is in one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    kind: ErrorKind,
    header: Option<HeaderName>,
    detail: &'static str,
}

impl ParseError {
    pub(crate) const fn new(kind: ErrorKind, detail: &'static str) -> Self {
        ParseError {
            kind,
            header: None,
            detail,
        }
    }

    pub(crate) const fn value(detail: &'static str) -> Self {
        Self::new(ErrorKind::HeaderValue, detail)
    }

    /// Attaches the header the defect was found in (kept if one is already set).
    pub(crate) fn in_header(mut self, name: &HeaderName) -> Self {
        if self.header.is_none() {
            self.header = Some(name.clone());
        }
        self
    }

    /// The class of defect.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The header the defect is in, if it is in one.
    pub fn header(&self) -> Option<&HeaderName> {
        self.header.as_ref()
    }

    /// A short, static description of the defect (safe to log: no message content).
    pub fn detail(&self) -> &'static str {
        self.detail
    }

    /// The status a UAS answers a request that failed this way with: 505 for a
    /// bad SIP version (§21.5.20), 400 otherwise (§8.1.3.1, §21.4.1).
    pub fn status_code(&self) -> StatusCode {
        match self.kind {
            ErrorKind::Version => StatusCode::VERSION_NOT_SUPPORTED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// A reason phrase naming the problem, for the error response (§21.4.1 lets
    /// the phrase say what is wrong).
    pub fn reason_phrase(&self) -> String {
        format!("{} ({self})", self.status_code().canonical_reason())
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.header, self.kind) {
            (Some(h), ErrorKind::MissingHeader) => write!(f, "missing {h} header"),
            (Some(h), ErrorKind::DuplicateHeader) => write!(f, "more than one {h} header"),
            (Some(h), _) => write!(f, "invalid {h} header: {}", self.detail),
            (None, _) => write!(f, "{}: {}", self.kind.describe(), self.detail),
        }
    }
}

impl std::error::Error for ParseError {}
