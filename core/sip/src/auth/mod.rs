//! SIP digest authentication, client and server (RFC 3261 §22, RFC 7616, RFC 8760; the
//! RFC 2617 and RFC 2069 forms for older peers).
//!
//! This module works on header *values* (`&str`) and plain parameters, so it stands apart
//! from the message parser: the caller picks the header named by [`ChallengeKind`] out of a
//! message and hands its value(s) here.
//!
//! # The pieces
//!
//! - Header values: [`Challenge`] (`WWW-Authenticate` / `Proxy-Authenticate`),
//!   [`Credentials`] (`Authorization` / `Proxy-Authorization`) and [`AuthenticationInfo`],
//!   each with `parse` and `Display`.
//! - The hashes: [`Algorithm`] (MD5, SHA-256, SHA-512-256 and their `-sess` variants),
//!   [`ha1`] for provisioning stored secrets, [`userhash`], and [`DigestInput`] for the
//!   `response` / `rspauth` computation itself.
//! - [`DigestClient`] for the phone: answers 401/407, counts `nc` per nonce, retries on
//!   `stale=true`, reports refused credentials instead of looping, checks `rspauth`.
//! - [`DigestServer`] for the registrar and B2BUA: stateless HMAC nonces, verification
//!   against stored HA1s, `nc` replay protection in bounded memory, `Authentication-Info`.
//!
//! # Client loop
//!
//! ```
//! use vaxel_sip::auth::{ChallengeKind, DigestClient, Secret};
//!
//! let mut client = DigestClient::new("alice", Secret::Password("secret".into()));
//! // The 401 to our REGISTER carried this challenge:
//! let www = r#"Digest realm="example.com", nonce="abc", algorithm=SHA-256, qop="auth""#;
//! client.handle_challenge(ChallengeKind::Www, &[www]).unwrap();
//! // Resend the REGISTER with these headers (cnonce from the injected RNG):
//! for auth in client.authorize("REGISTER", "sip:example.com", b"", "0a4f113b") {
//!     let (name, value) = (auth.kind.credentials_header(), auth.credentials.to_string());
//!     assert_eq!(name, "Authorization");
//!     assert!(value.starts_with("Digest username=\"alice\", realm=\"example.com\""));
//! }
//! ```
//!
//! # Server loop
//!
//! ```
//! use vaxel_sip::auth::{
//!     ChallengeKind, DigestClient, DigestServer, RequestParts, Secret, ServerConfig, StoredUser,
//!     Verification, ha1,
//! };
//!
//! let config = ServerConfig::new(ChallengeKind::Www, "example.com");
//! let mut server = DigestServer::new(config, b"a key of at least sixteen bytes".to_vec()).unwrap();
//! let stored = ha1(vaxel_sip::auth::DigestHash::Sha256, "alice", "example.com", "secret");
//!
//! let now = 1_700_000_000; // seconds, from the driver's clock
//! let challenges = server.challenge(now, [7; 16], false); // random bytes from the driver's RNG
//! let values: Vec<String> = challenges.iter().map(|c| c.to_string()).collect();
//!
//! let mut client = DigestClient::new("alice", Secret::Password("secret".into()));
//! let refs: Vec<&str> = values.iter().map(String::as_str).collect();
//! client.handle_challenge(ChallengeKind::Www, &refs).unwrap();
//! let sent = client.authorize("REGISTER", "sip:example.com", b"", "c0ffee");
//! let header = sent[0].credentials.to_string();
//!
//! let request = RequestParts { method: "REGISTER", request_uri: "sip:example.com", body: b"" };
//! let verdict = server.verify(&request, &[header.as_str()], now + 1, |q| {
//!     (q.username == "alice" && q.hash == vaxel_sip::auth::DigestHash::Sha256)
//!         .then(|| StoredUser { username: "alice".into(), ha1: stored.clone() })
//! });
//! assert!(matches!(verdict, Verification::Authenticated(ref u) if u.username() == "alice"));
//! ```

mod algorithm;
mod client;
mod header;
mod params;
mod server;

pub use algorithm::{Algorithm, DigestHash, DigestInput, NonceCount, Qop, ha1, userhash};
pub use client::{
    AlgorithmPreference, AuthInfoError, Authorization, ChallengeError, DigestClient, MutualAuth,
    QopPreference, Secret,
};
pub use header::{AuthenticationInfo, Challenge, Credentials};
pub use params::AuthParam;
pub use server::{
    AuthenticatedUser, ConfigError, DigestServer, NONCE_RANDOM_LEN, RejectReason, RequestParts,
    ServerConfig, StaleReason, StoredUser, UserQuery, Verification,
};

/// Which pair of headers an authentication exchange uses (RFC 3261 §22.1–§22.3).
///
/// A user agent server or registrar challenges with 401 and `WWW-Authenticate`, answered in
/// `Authorization`; a proxy challenges with 407 and `Proxy-Authenticate`, answered in
/// `Proxy-Authorization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChallengeKind {
    /// 401 Unauthorized, `WWW-Authenticate` → `Authorization` (RFC 3261 §22.2).
    Www,
    /// 407 Proxy Authentication Required, `Proxy-Authenticate` → `Proxy-Authorization`
    /// (RFC 3261 §22.3).
    Proxy,
}

impl ChallengeKind {
    /// The kind of challenge a response status carries: 401 → `Www`, 407 → `Proxy`.
    pub fn from_status(status: u16) -> Option<ChallengeKind> {
        match status {
            401 => Some(ChallengeKind::Www),
            407 => Some(ChallengeKind::Proxy),
            _ => None,
        }
    }

    /// The status code that carries this kind of challenge (RFC 3261 §21.4.2, §21.4.8).
    pub fn status_code(self) -> u16 {
        match self {
            ChallengeKind::Www => 401,
            ChallengeKind::Proxy => 407,
        }
    }

    /// The reason phrase of [`ChallengeKind::status_code`] (RFC 3261 §21.4.2, §21.4.8).
    pub fn reason_phrase(self) -> &'static str {
        match self {
            ChallengeKind::Www => "Unauthorized",
            ChallengeKind::Proxy => "Proxy Authentication Required",
        }
    }

    /// The response header that carries the challenge: the one a client reads and a server
    /// writes (RFC 3261 §20.44, §20.27).
    pub fn challenge_header(self) -> &'static str {
        match self {
            ChallengeKind::Www => "WWW-Authenticate",
            ChallengeKind::Proxy => "Proxy-Authenticate",
        }
    }

    /// The request header that carries the answer: the one a client writes and a server
    /// reads (RFC 3261 §20.7, §20.28).
    pub fn credentials_header(self) -> &'static str {
        match self {
            ChallengeKind::Www => "Authorization",
            ChallengeKind::Proxy => "Proxy-Authorization",
        }
    }

    /// The header for `rspauth`/`nextnonce`: `Authentication-Info` for a `Www` exchange
    /// (RFC 3261 §20.6). SIP defines none for proxies (RFC 7615's `Proxy-Authentication-Info`
    /// is HTTP-only), hence `None` for `Proxy`.
    pub fn authentication_info_header(self) -> Option<&'static str> {
        match self {
            ChallengeKind::Www => Some("Authentication-Info"),
            ChallengeKind::Proxy => None,
        }
    }
}

/// Why a digest header value could not be read. Every variant is the peer's fault (or the
/// fault of whoever built the string): a server answers it with 400 (RFC 3261 §21.4.1), a
/// client treats the challenge as unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The value holds nothing but white space and commas.
    #[error("empty authentication header value")]
    Empty,
    /// A parameter came before any scheme (`realm="x"` with no `Digest`).
    #[error("authentication parameters without a scheme")]
    MissingScheme,
    /// A well-formed challenge or credentials of another scheme (`Basic`, `Bearer`…).
    #[error("scheme {0:?} is not Digest")]
    NotDigest(String),
    /// A comma-joined list where one value was expected.
    #[error("several challenges or credentials in one value")]
    MultipleChallenges,
    /// A character the grammar does not allow at that point.
    #[error("unexpected {found:?} at byte {at}")]
    Unexpected {
        /// Byte offset into the value.
        at: usize,
        /// The offending character.
        found: char,
    },
    /// The value stopped in the middle of a parameter.
    #[error("unexpected end of value")]
    UnexpectedEnd,
    /// A quoted string without its closing quote; the offset is of the opening one.
    #[error("unterminated quoted string starting at byte {0}")]
    UnterminatedQuote(usize),
    /// A parameter of this module given twice (RFC 7235 §2.1).
    #[error("parameter {0} given twice")]
    DuplicateParam(&'static str),
    /// An extension parameter given twice.
    #[error("extension parameter {0:?} given twice")]
    DuplicateExtension(String),
    /// A required parameter is missing (RFC 7616 §3.3, §3.4).
    #[error("missing parameter {0}")]
    MissingParam(&'static str),
    /// A parameter's value does not fit its grammar (`nc` not 8 hex digits, unknown `qop`…).
    #[error("invalid value for parameter {0}")]
    InvalidValue(&'static str),
    /// A digest algorithm this module does not implement (e.g. `AKAv1-MD5`).
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
}
