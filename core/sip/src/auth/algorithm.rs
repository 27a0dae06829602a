//! Digest algorithms, quality of protection and the hash computations of RFC 7616 §3.4
//! (with RFC 8760 §2 for SIP and RFC 2617 §3.2.2 / RFC 2069 for the legacy forms).

use core::fmt;
use core::str::FromStr;

use md5::Md5;
use sha2::{Digest, Sha256, Sha512_256};

use super::ParseError;

/// The hash function under a digest algorithm (RFC 7616 §3.2, RFC 8760 §2.2).
///
/// The stored secret of a user (HA1, RFC 7616 §3.4.2) depends only on this and not on
/// whether the `-sess` variant is used, so credential stores key their hashes by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DigestHash {
    /// MD5 (RFC 1321). Kept for backward compatibility only (RFC 7616 §3.2, RFC 8760 §2.2).
    Md5,
    /// SHA-256 (FIPS 180-4); the algorithm RFC 8760 §2.2 asks every SIP endpoint to support.
    Sha256,
    /// SHA-512/256 (FIPS 180-4 §5.3.6), a SHA-512 truncated to 256 bits with its own initial
    /// values (RFC 7616 §3.2); not the first 32 bytes of a SHA-512.
    Sha512_256,
}

impl DigestHash {
    /// All hashes, weakest first.
    pub const ALL: [DigestHash; 3] = [DigestHash::Md5, DigestHash::Sha256, DigestHash::Sha512_256];

    /// The algorithm token of the plain (non-session) variant (RFC 7616 §3.3).
    pub fn name(self) -> &'static str {
        self.algorithm().name()
    }

    /// The plain (non-session) algorithm built on this hash.
    pub fn algorithm(self) -> Algorithm {
        match self {
            DigestHash::Md5 => Algorithm::Md5,
            DigestHash::Sha256 => Algorithm::Sha256,
            DigestHash::Sha512_256 => Algorithm::Sha512_256,
        }
    }

    /// Length of the lowercase hex form of this hash's output: 32 for MD5, 64 for the others
    /// (digest values are written as lowercase hex, RFC 7616 §3.2).
    pub fn hex_len(self) -> usize {
        match self {
            DigestHash::Md5 => 32,
            DigestHash::Sha256 | DigestHash::Sha512_256 => 64,
        }
    }

    /// `H(data)` of RFC 7616 §3.4 in lowercase hex, over the parts joined by `:`.
    ///
    /// Joining here keeps every call site in the RFC's own notation,
    /// `H(unq(username) ":" unq(realm) ":" passwd)` becoming `h(&[user, realm, pass])`.
    pub(crate) fn hex_joined(self, parts: &[&[u8]]) -> String {
        fn run<D: Digest>(parts: &[&[u8]]) -> String {
            let mut d = D::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p);
            }
            hex(&d.finalize())
        }
        match self {
            DigestHash::Md5 => run::<Md5>(parts),
            DigestHash::Sha256 => run::<Sha256>(parts),
            DigestHash::Sha512_256 => run::<Sha512_256>(parts),
        }
    }

    /// `H(entity-body)` of RFC 7616 §3.4.3 for `auth-int`, in lowercase hex.
    pub fn body_hash(self, body: &[u8]) -> String {
        self.hex_joined(&[body])
    }
}

impl From<Algorithm> for DigestHash {
    fn from(a: Algorithm) -> Self {
        a.hash()
    }
}

impl fmt::Display for DigestHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A digest algorithm as named by the `algorithm` parameter (RFC 7616 §3.3, RFC 8760 §2.2).
///
/// An absent parameter means [`Algorithm::Md5`] (RFC 7616 §3.3, RFC 3261 §22.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5`.
    Md5,
    /// `MD5-sess`: HA1 bound to the nonce and cnonce (RFC 7616 §3.4.2).
    Md5Sess,
    /// `SHA-256`.
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
    /// `SHA-512-256`.
    Sha512_256,
    /// `SHA-512-256-sess`.
    Sha512_256Sess,
}

impl Algorithm {
    /// Every algorithm this module implements, weakest hash first.
    pub const ALL: [Algorithm; 6] = [
        Algorithm::Md5,
        Algorithm::Md5Sess,
        Algorithm::Sha256,
        Algorithm::Sha256Sess,
        Algorithm::Sha512_256,
        Algorithm::Sha512_256Sess,
    ];

    /// The token as written in headers (RFC 7616 §6.1 registry spelling).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
            Algorithm::Sha512_256 => "SHA-512-256",
            Algorithm::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    /// Reads an algorithm token, ignoring ASCII case (tokens are case-insensitive,
    /// RFC 3261 §7.3.1). `None` for algorithms not implemented here (e.g. `AKAv1-MD5`).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// The hash function underneath.
    pub fn hash(self) -> DigestHash {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => DigestHash::Md5,
            Algorithm::Sha256 | Algorithm::Sha256Sess => DigestHash::Sha256,
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => DigestHash::Sha512_256,
        }
    }

    /// Whether this is a `-sess` variant, whose HA1 also covers nonce and cnonce
    /// (RFC 7616 §3.4.2).
    pub fn is_session(self) -> bool {
        matches!(
            self,
            Algorithm::Md5Sess | Algorithm::Sha256Sess | Algorithm::Sha512_256Sess
        )
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::from_name(s).ok_or_else(|| ParseError::UnsupportedAlgorithm(clip(s)))
    }
}

/// Quality of protection (RFC 7616 §3.3 `qop`, RFC 3261 §25.1 `qop-value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qop {
    /// `auth`: authentication of the method and request URI.
    Auth,
    /// `auth-int`: also covers a hash of the message body (RFC 7616 §3.4.3).
    AuthInt,
}

impl Qop {
    /// The token as written in headers.
    pub fn name(self) -> &'static str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
        }
    }

    /// Reads a qop token, ignoring ASCII case; `None` for extension values.
    pub fn from_name(name: &str) -> Option<Qop> {
        [Qop::Auth, Qop::AuthInt]
            .into_iter()
            .find(|q| q.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Qop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The nonce count `nc`: how many requests, this one included, the client has sent with
/// the nonce (RFC 7616 §3.4).
///
/// Printed as exactly 8 lowercase hex digits (`nc-value = 8LHEX`, RFC 3261 §25.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NonceCount(pub u32);

impl fmt::Display for NonceCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl FromStr for NonceCount {
    type Err = ParseError;
    /// Accepts exactly 8 hex digits (`8LHEX`, RFC 3261 §25.1); upper case is tolerated.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseError::InvalidValue("nc"));
        }
        u32::from_str_radix(s, 16)
            .map(NonceCount)
            .map_err(|_| ParseError::InvalidValue("nc"))
    }
}

/// The stored secret of a user: `H(username ":" realm ":" password)` in lowercase hex
/// (RFC 7616 §3.4.2, RFC 2617 §3.2.2.2).
///
/// This is what a registrar provisions and keeps instead of the password
/// (ARCHITECTURE.md §3.7). It is the same for an algorithm and its `-sess` variant; the
/// session key is derived from it per nonce. Username, realm and password are taken as
/// UTF-8 (RFC 7616 §3.4.2 with `charset=UTF-8`; SIP is UTF-8 throughout, RFC 3261 §7.3.1).
pub fn ha1(hash: impl Into<DigestHash>, username: &str, realm: &str, password: &str) -> String {
    hash.into()
        .hex_joined(&[username.as_bytes(), realm.as_bytes(), password.as_bytes()])
}

/// The hashed username `H(username ":" realm)` sent with `userhash=true` (RFC 7616 §3.4.4).
pub fn userhash(hash: impl Into<DigestHash>, username: &str, realm: &str) -> String {
    hash.into()
        .hex_joined(&[username.as_bytes(), realm.as_bytes()])
}

/// Everything the `response` (and `rspauth`) of one request depends on
/// (RFC 7616 §3.4.1–§3.4.3; RFC 2069 §2.1.2 when `qop` is `None`).
///
/// Client and server both compute through this, so they cannot drift apart.
#[derive(Debug, Clone, Copy)]
pub struct DigestInput<'a> {
    /// The algorithm in use.
    pub algorithm: Algorithm,
    /// The user's stored secret from [`ha1`] (never the session key: that is derived here).
    pub ha1: &'a str,
    /// The server's nonce.
    pub nonce: &'a str,
    /// The client's nonce; unused when `qop` is `None` unless the algorithm is `-sess`.
    pub cnonce: &'a str,
    /// The nonce count; unused when `qop` is `None`.
    pub nc: NonceCount,
    /// The protection chosen; `None` is the RFC 2069 form for servers that offer no qop.
    pub qop: Option<Qop>,
    /// The request method (`REGISTER`, `INVITE`…).
    pub method: &'a str,
    /// The `uri` parameter: the Request-URI as the client wrote it (RFC 3261 §22.4).
    pub uri: &'a str,
    /// The message body, hashed for `auth-int` (RFC 3261 §22.4 / RFC 7616 §3.4.3).
    pub body: &'a [u8],
}

impl DigestInput<'_> {
    /// The session-adjusted HA1: `H(HA1 ":" nonce ":" cnonce)` for `-sess`
    /// algorithms (RFC 7616 §3.4.2), HA1 itself otherwise.
    fn session_ha1(&self) -> String {
        let h = self.algorithm.hash();
        if self.algorithm.is_session() {
            // RFC 7616 §3.4.2 uses the lowercase hex HA1 as the hash input.
            h.hex_joined(&[
                self.ha1.to_ascii_lowercase().as_bytes(),
                self.nonce.as_bytes(),
                self.cnonce.as_bytes(),
            ])
        } else {
            self.ha1.to_ascii_lowercase()
        }
    }

    /// `KD(HA1, nonce ":" nc ":" cnonce ":" qop ":" HA2)` with the given A2 method part
    /// (RFC 7616 §3.4.1); RFC 2069's `KD(HA1, nonce ":" HA2)` without qop.
    fn digest_with_method(&self, method: &str) -> String {
        let h = self.algorithm.hash();
        let ha2 = match self.qop {
            Some(Qop::AuthInt) => {
                let body = h.body_hash(self.body);
                h.hex_joined(&[method.as_bytes(), self.uri.as_bytes(), body.as_bytes()])
            }
            Some(Qop::Auth) | None => h.hex_joined(&[method.as_bytes(), self.uri.as_bytes()]),
        };
        let ha1 = self.session_ha1();
        match self.qop {
            Some(q) => {
                let nc = self.nc.to_string();
                h.hex_joined(&[
                    ha1.as_bytes(),
                    self.nonce.as_bytes(),
                    nc.as_bytes(),
                    self.cnonce.as_bytes(),
                    q.name().as_bytes(),
                    ha2.as_bytes(),
                ])
            }
            None => h.hex_joined(&[ha1.as_bytes(), self.nonce.as_bytes(), ha2.as_bytes()]),
        }
    }

    /// The `response` parameter of the credentials (RFC 7616 §3.4.1).
    pub fn response(&self) -> String {
        self.digest_with_method(self.method)
    }

    /// The `rspauth` of `Authentication-Info`: the same digest with an empty method in A2
    /// (RFC 2617 §3.2.3, RFC 7616 §3.5; RFC 3261 §20.6). Here `body` is the *response's*
    /// body for `auth-int`.
    pub fn rspauth(&self) -> String {
        self.digest_with_method("")
    }
}

/// Lowercase hex, as every digest value is written (RFC 7616 §3.4).
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Reads lowercase or uppercase hex; `None` on odd length or a non-hex digit.
pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    fn nib(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    b.chunks_exact(2)
        .map(|p| Some(nib(p[0])? << 4 | nib(p[1])?))
        .collect()
}

/// Compares two byte strings in time that depends only on their lengths, so a peer
/// cannot find the expected response byte by byte from our answer times.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Shortens peer-supplied text kept in an error, so a hostile header cannot make our
/// logs or error values large.
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 40;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_ignore_case() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(a.name()), Some(a));
            assert_eq!(
                Algorithm::from_name(&a.name().to_ascii_lowercase()),
                Some(a)
            );
        }
        assert_eq!(Algorithm::from_name("AKAv1-MD5"), None);
        assert_eq!(Algorithm::from_name("-sess"), None);
        assert_eq!(Qop::from_name("AUTH-INT"), Some(Qop::AuthInt));
    }

    #[test]
    fn sha512_256_is_not_truncated_sha512() {
        // FIPS 180-4 test vector for SHA-512/256("abc").
        assert_eq!(
            DigestHash::Sha512_256.body_hash(b"abc"),
            "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23"
        );
    }

    #[test]
    fn nonce_count_is_eight_hex_digits() {
        assert_eq!(NonceCount(1).to_string(), "00000001");
        assert_eq!(NonceCount(0xdead_beef).to_string(), "deadbeef");
        assert_eq!("0000000A".parse::<NonceCount>(), Ok(NonceCount(10)));
        assert!("1".parse::<NonceCount>().is_err());
        assert!("+0000001".parse::<NonceCount>().is_err());
        assert!("000000001".parse::<NonceCount>().is_err());
    }

    #[test]
    fn hex_helpers() {
        assert_eq!(hex(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(unhex("00ABff"), Some(vec![0, 0xab, 0xff]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert_eq!(clip(&"é".repeat(50)).chars().count(), 21);
    }
}
