//! The registrar / B2BUA side: challenges with stateless nonces, verification against
//! stored HA1s, replay protection and `Authentication-Info` (RFC 3261 §22.1, §22.4;
//! RFC 7616 §3.3–§3.5, §5; RFC 8760 §2.4).

use std::collections::{BTreeMap, HashMap};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::algorithm::{
    Algorithm, DigestHash, DigestInput, NonceCount, Qop, ct_eq, hex, unhex, userhash,
};
use super::header::{AuthenticationInfo, Challenge, Credentials};
use super::{ChallengeKind, ParseError};

/// How many random bytes the caller supplies for each nonce: 128 bits, so nonces are
/// unpredictable and do not repeat (RFC 7616 §5.12).
pub const NONCE_RANDOM_LEN: usize = 16;
/// Bytes of HMAC-SHA-256 kept in the nonce (128 bits, RFC 2104 §5 allows truncation to
/// half the output).
const NONCE_MAC_LEN: usize = 16;
const NONCE_BYTES: usize = 8 + NONCE_RANDOM_LEN + NONCE_MAC_LEN;
/// Domain separation, so a MAC made with the same key for another purpose is no nonce.
const NONCE_CONTEXT: &[u8] = b"vaxel-sip digest nonce v1\0";

/// How a [`DigestServer`] challenges and what it accepts (RFC 3261 §22.1, RFC 8760 §2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// 401/`WWW-Authenticate` (registrar, UAS) or 407/`Proxy-Authenticate` (proxy role).
    pub kind: ChallengeKind,
    /// The realm (RFC 3261 §22.1: a registrar uses its domain).
    pub realm: String,
    /// Algorithms offered, most preferred first: one challenge each (RFC 8760 §2.4).
    /// Credentials with any other algorithm are refused, which stops downgrades below
    /// what we offer.
    pub algorithms: Vec<Algorithm>,
    /// qop options offered. Empty means the RFC 2069 form without qop, which has no
    /// replay protection: only for devices that cannot do better.
    pub qop: Vec<Qop>,
    /// Seconds a nonce stays fresh; an older one with a correct digest gets `stale=true`.
    pub nonce_lifetime_secs: u64,
    /// How many nonces the replay window remembers (bounded memory, least recently used
    /// forgotten first).
    pub max_tracked_nonces: usize,
    /// Offer `userhash=true` (RFC 7616 §3.4.4).
    pub userhash: bool,
    /// Require `uri` to equal the Request-URI (RFC 7616 §3.4.6, RFC 3261 §22.4: the digest
    /// then covers the request actually made). Compared exactly, ignoring ASCII case.
    pub check_uri: bool,
}

impl ServerConfig {
    /// Defaults: SHA-256 then MD5 (RFC 8760 §2.2: SHA-256 is required; MD5 kept for older
    /// phones), qop `auth`, 300 s nonces, 4096 tracked nonces, no userhash, URI checked.
    pub fn new(kind: ChallengeKind, realm: impl Into<String>) -> Self {
        ServerConfig {
            kind,
            realm: realm.into(),
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            qop: vec![Qop::Auth],
            nonce_lifetime_secs: 300,
            max_tracked_nonces: 4096,
            userhash: false,
            check_uri: true,
        }
    }
}

/// A [`ServerConfig`] or key that cannot work: the caller's mistake (not the peer's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No algorithm offered.
    #[error("no digest algorithm configured")]
    NoAlgorithms,
    /// A `-sess` algorithm needs a cnonce, which only travels with qop (RFC 7616 §3.4.2).
    #[error("-sess algorithms need qop")]
    SessionWithoutQop,
    /// The nonce key is shorter than 16 bytes.
    #[error("nonce key must be at least 16 bytes")]
    WeakKey,
    /// The replay window must hold at least one nonce.
    #[error("max_tracked_nonces must be at least 1")]
    NoReplayWindow,
}

/// What the verifier needs of the request: method, Request-URI and body (RFC 3261 §22.4,
/// RFC 7616 §3.4.3).
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The request method.
    pub method: &'a str,
    /// The Request-URI as received, compared with the credentials' `uri`.
    pub request_uri: &'a str,
    /// The message body, for `auth-int`.
    pub body: &'a [u8],
}

/// The question put to the credential store: whose HA1 (RFC 7616 §3.4.2), possibly
/// behind a userhash (RFC 7616 §3.4.4).
#[derive(Debug, Clone, Copy)]
pub struct UserQuery<'a> {
    /// The name from the credentials, or with `is_userhash` the hex `H(username ":" realm)`.
    pub username: &'a str,
    /// Whether `username` is a userhash (RFC 7616 §3.4.4).
    pub is_userhash: bool,
    /// The realm.
    pub realm: &'a str,
    /// Which stored HA1 is wanted.
    pub hash: DigestHash,
}

impl UserQuery<'_> {
    /// Whether this query is about `name`, hashing it when the client sent a userhash.
    pub fn matches(&self, name: &str) -> bool {
        if self.is_userhash {
            ct_eq(
                userhash(self.hash, name, self.realm).as_bytes(),
                self.username.to_ascii_lowercase().as_bytes(),
            )
        } else {
            self.username == name
        }
    }
}

/// What the credential store answers for a known user: the stored HA1 of RFC 7616 §3.4.2.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredUser {
    /// The real username (what a userhash stood for).
    pub username: String,
    /// The stored `H(username ":" realm ":" password)` for the asked hash ([`ha1`](super::ha1)).
    pub ha1: String,
}

impl core::fmt::Debug for StoredUser {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StoredUser")
            .field("username", &self.username)
            .field("ha1", &"<redacted>")
            .finish()
    }
}

/// A request whose credentials checked out (RFC 3261 §22.4); keeps what
/// `Authentication-Info` needs (RFC 7616 §3.5).
#[derive(Clone, PartialEq, Eq)]
pub struct AuthenticatedUser {
    username: String,
    algorithm: Algorithm,
    qop: Option<Qop>,
    nonce: String,
    cnonce: Option<String>,
    nc: Option<NonceCount>,
    uri: String,
    ha1: String,
}

impl AuthenticatedUser {
    /// The authenticated username (the real one, also when a userhash was sent).
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The algorithm used.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The qop used; `None` for the RFC 2069 form.
    pub fn qop(&self) -> Option<Qop> {
        self.qop
    }

    /// The nonce count of this request.
    pub fn nonce_count(&self) -> Option<NonceCount> {
        self.nc
    }
}

impl core::fmt::Debug for AuthenticatedUser {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AuthenticatedUser")
            .field("username", &self.username)
            .field("algorithm", &self.algorithm)
            .field("qop", &self.qop)
            .field("nc", &self.nc)
            .finish_non_exhaustive()
    }
}

/// Why a nonce needs replacing although the digest was right: answered with `stale=true`
/// (RFC 7616 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleReason {
    /// Older than [`ServerConfig::nonce_lifetime_secs`] (or from the future).
    Expired,
    /// Not made with our key: another server, a restart with a new key, or garbled.
    Unknown,
    /// This `nc` was already used with this nonce, or is too far behind (RFC 7616 §5.5).
    Replayed,
    /// The replay window had to forget this nonce, so a replay cannot be ruled out.
    Forgotten,
}

/// Why credentials were refused (RFC 3261 §22.4). For logs and counters only: every reason must be
/// answered the same way (a fresh challenge, or 403 after too many tries), so a peer
/// cannot tell an unknown user from a wrong password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The store does not know the user. The digest is still computed (against a
    /// dummy secret) so that the answer takes as long as for a known user.
    UnknownUser,
    /// The response digest is wrong: wrong password, or (`auth-int`) a changed body.
    WrongResponse,
    /// An algorithm we did not offer (or do not implement).
    AlgorithmNotOffered,
    /// No qop (or one we did not offer) when we required one.
    QopNotOffered,
}

/// The verdict on a request's credentials, and how to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The request is authenticated; process it. [`DigestServer::authentication_info`]
    /// can build the `Authentication-Info` for the response.
    Authenticated(AuthenticatedUser),
    /// No credentials for our realm: answer 401/407 with [`DigestServer::challenge`].
    NoCredentials,
    /// The user knows the secret but the nonce must change: answer 401/407 with a
    /// challenge with `stale=true` (RFC 7616 §3.3), and the client retries silently.
    Stale(StaleReason),
    /// The credentials are wrong: answer 401/407 with a fresh challenge (`stale=false`),
    /// the same for every reason.
    Rejected(RejectReason),
    /// The credentials cannot be read, or their `uri` is not the Request-URI: answer
    /// 400 Bad Request (RFC 3261 §21.4.1, RFC 7616 §3.4.6).
    Malformed(ParseError),
}

impl Verification {
    /// The response status to send: `None` to go ahead, 400 for [`Verification::Malformed`],
    /// else the challenge status of `kind` (401 or 407).
    pub fn response_status(&self, kind: ChallengeKind) -> Option<u16> {
        match self {
            Verification::Authenticated(_) => None,
            Verification::Malformed(_) => Some(400),
            _ => Some(kind.status_code()),
        }
    }

    /// Whether the challenge to answer with carries `stale=true`.
    pub fn is_stale(&self) -> bool {
        matches!(self, Verification::Stale(_))
    }
}

/// What the replay window knows about one nonce: the `nc` values already accepted, which
/// is how a server detects replays (RFC 7616 §5.5, §3.4).
#[derive(Debug, Clone)]
struct NonceUse {
    /// Highest `nc` accepted.
    max_nc: u32,
    /// Bit `i` set: `max_nc - i` was accepted. 64 counts of reordering are allowed, for
    /// requests sent in parallel over UDP that arrive out of order.
    seen: u64,
    /// When it was last used, in `ReplayWindow::tick` units (for least-recently-used).
    last_use: u64,
    /// When the nonce was issued (seconds), for the forgetting mark.
    issued_at: u64,
}

/// A bounded record of the `nc` values used per nonce.
#[derive(Debug)]
struct ReplayWindow {
    capacity: usize,
    entries: HashMap<String, NonceUse>,
    by_use: BTreeMap<u64, String>,
    tick: u64,
    /// The newest issue time of any nonce forgotten to make room. An untracked nonce
    /// issued at or before it may have been used before, so it is refused as stale;
    /// this keeps replay protection sound with bounded memory.
    forgotten_up_to: Option<u64>,
}

impl ReplayWindow {
    fn new(capacity: usize) -> Self {
        ReplayWindow {
            capacity,
            entries: HashMap::new(),
            by_use: BTreeMap::new(),
            tick: 0,
            forgotten_up_to: None,
        }
    }

    /// Records `nc` for `nonce` if it was not used before.
    fn accept(&mut self, nonce: &str, issued_at: u64, nc: u32) -> Result<(), StaleReason> {
        self.tick += 1;
        let tick = self.tick;
        if let Some(e) = self.entries.get_mut(nonce) {
            if nc > e.max_nc {
                let shift = nc - e.max_nc;
                e.seen = if shift >= 64 {
                    1
                } else {
                    (e.seen << shift) | 1
                };
                e.max_nc = nc;
            } else {
                let back = e.max_nc - nc;
                if back >= 64 || e.seen & (1u64 << back) != 0 {
                    return Err(StaleReason::Replayed);
                }
                e.seen |= 1u64 << back;
            }
            self.by_use.remove(&e.last_use);
            e.last_use = tick;
            self.by_use.insert(tick, nonce.to_owned());
            return Ok(());
        }
        if self.forgotten_up_to.is_some_and(|mark| issued_at <= mark) {
            return Err(StaleReason::Forgotten);
        }
        while self.entries.len() >= self.capacity {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            if let Some(gone) = self.entries.remove(&oldest) {
                let mark = self
                    .forgotten_up_to
                    .map_or(gone.issued_at, |m| m.max(gone.issued_at));
                self.forgotten_up_to = Some(mark);
            }
        }
        self.entries.insert(
            nonce.to_owned(),
            NonceUse {
                max_nc: nc,
                seen: 1,
                last_use: tick,
                issued_at,
            },
        );
        self.by_use.insert(tick, nonce.to_owned());
        Ok(())
    }
}

/// The state of a nonce presented to us.
enum NonceCheck {
    Fresh { issued_at: u64 },
    Expired,
    Unknown,
}

/// The server side of digest authentication for one realm (RFC 3261 §22.1, §22.4).
///
/// Nonces are stateless: `hex(timestamp ‖ random ‖ HMAC-SHA-256(key, timestamp ‖ random ‖
/// realm))`, so any nonce can be checked for origin and age without remembering it
/// (RFC 7616 §3.3 suggests a time stamp and a private key in the nonce). The only state is
/// the bounded replay window of used `nc` values. Time (seconds, from the driver's wall
/// clock) and randomness are arguments; the key comes from the caller's secret store and
/// may be shared by several engine nodes behind one load balancer.
pub struct DigestServer {
    config: ServerConfig,
    mac: Hmac<Sha256>,
    replay: ReplayWindow,
}

impl core::fmt::Debug for DigestServer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DigestServer")
            .field("config", &self.config)
            .field("tracked_nonces", &self.replay.entries.len())
            .finish_non_exhaustive()
    }
}

impl DigestServer {
    /// A server with this configuration and nonce key (at least 16 bytes of secret
    /// randomness).
    pub fn new(config: ServerConfig, key: Vec<u8>) -> Result<Self, ConfigError> {
        if config.algorithms.is_empty() {
            return Err(ConfigError::NoAlgorithms);
        }
        if config.qop.is_empty() && config.algorithms.iter().any(|a| a.is_session()) {
            return Err(ConfigError::SessionWithoutQop);
        }
        if key.len() < 16 {
            return Err(ConfigError::WeakKey);
        }
        if config.max_tracked_nonces == 0 {
            return Err(ConfigError::NoReplayWindow);
        }
        let mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| ConfigError::WeakKey)?;
        let replay = ReplayWindow::new(config.max_tracked_nonces);
        Ok(DigestServer {
            config,
            mac,
            replay,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    fn nonce_mac(&self, issued_at: u64, random: &[u8]) -> [u8; NONCE_MAC_LEN] {
        let mut mac = self.mac.clone();
        mac.update(NONCE_CONTEXT);
        mac.update(&issued_at.to_be_bytes());
        mac.update(random);
        mac.update(self.config.realm.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; NONCE_MAC_LEN];
        out.copy_from_slice(&full[..NONCE_MAC_LEN]);
        out
    }

    /// A fresh nonce issued at `now_secs` with the caller's random bytes.
    pub fn make_nonce(&self, now_secs: u64, random: [u8; NONCE_RANDOM_LEN]) -> String {
        let mut raw = Vec::with_capacity(NONCE_BYTES);
        raw.extend_from_slice(&now_secs.to_be_bytes());
        raw.extend_from_slice(&random);
        raw.extend_from_slice(&self.nonce_mac(now_secs, &random));
        hex(&raw)
    }

    fn check_nonce(&self, nonce: &str, now_secs: u64) -> NonceCheck {
        let Some(raw) = unhex(nonce).filter(|r| r.len() == NONCE_BYTES) else {
            return NonceCheck::Unknown;
        };
        let (ts, rest) = raw.split_at(8);
        let (random, mac) = rest.split_at(NONCE_RANDOM_LEN);
        let mut ts_bytes = [0u8; 8];
        ts_bytes.copy_from_slice(ts);
        let issued_at = u64::from_be_bytes(ts_bytes);
        if !ct_eq(&self.nonce_mac(issued_at, random), mac) {
            return NonceCheck::Unknown;
        }
        // A nonce from the future means our clock stepped back; treat it like an old one.
        if issued_at > now_secs || now_secs - issued_at > self.config.nonce_lifetime_secs {
            return NonceCheck::Expired;
        }
        NonceCheck::Fresh { issued_at }
    }

    /// The challenges for a 401/407, one per configured algorithm in order of preference
    /// (RFC 8760 §2.4), sharing one nonce. Print each with `to_string()` into its own
    /// [`ChallengeKind::challenge_header`] field. Set `stale` when answering
    /// [`Verification::Stale`].
    pub fn challenge(
        &self,
        now_secs: u64,
        random: [u8; NONCE_RANDOM_LEN],
        stale: bool,
    ) -> Vec<Challenge> {
        let nonce = self.make_nonce(now_secs, random);
        self.config
            .algorithms
            .iter()
            .map(|&a| {
                let mut c = Challenge::new(self.config.realm.clone(), nonce.clone());
                c.algorithm = Some(a);
                c.stale = stale;
                c.qop = (!self.config.qop.is_empty()).then(|| self.config.qop.clone());
                c.userhash = self.config.userhash;
                if self.config.userhash {
                    // userhash is defined over UTF-8 names (RFC 7616 §3.4.4, §4).
                    c.charset = Some("UTF-8".into());
                }
                c
            })
            .collect()
    }

    /// Checks the credentials of a request: `credential_values` are all its
    /// [`ChallengeKind::credentials_header`] values (several realms may be present,
    /// RFC 3261 §22.3; ours is picked out), `now_secs` the wall clock in seconds, and
    /// `lookup` the credential store.
    ///
    /// The order of the checks follows RFC 7616 §3.3: the digest is checked even for an
    /// expired or unknown nonce, and only a *correct* digest on a bad nonce earns
    /// [`Verification::Stale`]; an `nc` is recorded only once the digest is correct, so
    /// forged requests cannot fill the replay window.
    pub fn verify(
        &mut self,
        request: &RequestParts<'_>,
        credential_values: &[&str],
        now_secs: u64,
        mut lookup: impl FnMut(&UserQuery<'_>) -> Option<StoredUser>,
    ) -> Verification {
        let mut malformed: Option<ParseError> = None;
        let mut ours: Option<Credentials> = None;
        for v in credential_values {
            match Credentials::parse(v) {
                Ok(c) if c.realm == self.config.realm => {
                    ours = Some(c);
                    break;
                }
                Ok(_) | Err(ParseError::NotDigest(_)) => {}
                Err(ParseError::UnsupportedAlgorithm(_)) => {
                    // Well-formed, for an algorithm we never offer. Its realm is unknown
                    // to us here, so only refuse if nothing else is for us.
                    malformed.get_or_insert(ParseError::UnsupportedAlgorithm(String::new()));
                }
                Err(e) => {
                    malformed = Some(e);
                }
            }
        }
        let Some(c) = ours else {
            return match malformed {
                Some(ParseError::UnsupportedAlgorithm(_)) => {
                    Verification::Rejected(RejectReason::AlgorithmNotOffered)
                }
                Some(e) => Verification::Malformed(e),
                None => Verification::NoCredentials,
            };
        };

        let algorithm = c.effective_algorithm();
        if !self.config.algorithms.contains(&algorithm) {
            return Verification::Rejected(RejectReason::AlgorithmNotOffered);
        }
        match c.qop {
            Some(q) if !self.config.qop.contains(&q) => {
                return Verification::Rejected(RejectReason::QopNotOffered);
            }
            None if !self.config.qop.is_empty() => {
                return Verification::Rejected(RejectReason::QopNotOffered);
            }
            _ => {}
        }
        if self.config.check_uri && !c.uri.eq_ignore_ascii_case(request.request_uri) {
            return Verification::Malformed(ParseError::InvalidValue("uri"));
        }

        let hash = algorithm.hash();
        let query = UserQuery {
            username: &c.username,
            is_userhash: c.userhash,
            realm: &self.config.realm,
            hash,
        };
        let found = lookup(&query);
        let known = found.is_some();
        let stored = found.unwrap_or_else(|| StoredUser {
            username: String::new(),
            // Same length as a real HA1, so the computation below costs the same.
            ha1: "0".repeat(hash.hex_len()),
        });
        let expected = DigestInput {
            algorithm,
            ha1: &stored.ha1,
            nonce: &c.nonce,
            cnonce: c.cnonce.as_deref().unwrap_or(""),
            nc: c.nc.unwrap_or_default(),
            qop: c.qop,
            method: request.method,
            uri: &c.uri,
            body: request.body,
        }
        .response();
        let matches = ct_eq(
            expected.as_bytes(),
            c.response.trim().to_ascii_lowercase().as_bytes(),
        );
        if !known {
            return Verification::Rejected(RejectReason::UnknownUser);
        }
        if !matches {
            return Verification::Rejected(RejectReason::WrongResponse);
        }

        let issued_at = match self.check_nonce(&c.nonce, now_secs) {
            NonceCheck::Fresh { issued_at } => issued_at,
            NonceCheck::Expired => return Verification::Stale(StaleReason::Expired),
            NonceCheck::Unknown => return Verification::Stale(StaleReason::Unknown),
        };
        if let Some(nc) = c.nc
            && let Err(reason) = self.replay.accept(&c.nonce, issued_at, nc.0)
        {
            return Verification::Stale(reason);
        }
        Verification::Authenticated(AuthenticatedUser {
            username: stored.username,
            algorithm,
            qop: c.qop,
            nonce: c.nonce,
            cnonce: c.cnonce,
            nc: c.nc,
            uri: c.uri,
            ha1: stored.ha1,
        })
    }

    /// The `Authentication-Info` for the response to an authenticated request
    /// (RFC 7616 §3.5, RFC 3261 §20.6): `rspauth` proving we know the secret (when qop was
    /// used), the echoed `qop`, `cnonce` and `nc`, and with `next` a `nextnonce` issued at
    /// that time with those random bytes. `response_body` is hashed for `auth-int`.
    ///
    /// Only [`ChallengeKind::Www`] has such a header in SIP
    /// ([`ChallengeKind::authentication_info_header`]).
    pub fn authentication_info(
        &self,
        user: &AuthenticatedUser,
        response_body: &[u8],
        next: Option<(u64, [u8; NONCE_RANDOM_LEN])>,
    ) -> AuthenticationInfo {
        let rspauth = user.qop.map(|_| {
            DigestInput {
                algorithm: user.algorithm,
                ha1: &user.ha1,
                nonce: &user.nonce,
                cnonce: user.cnonce.as_deref().unwrap_or(""),
                nc: user.nc.unwrap_or_default(),
                qop: user.qop,
                method: "",
                uri: &user.uri,
                body: response_body,
            }
            .rspauth()
        });
        AuthenticationInfo {
            nextnonce: next.map(|(now, random)| self.make_nonce(now, random)),
            qop: user.qop,
            rspauth,
            cnonce: user.cnonce.clone(),
            nc: user.nc,
            extensions: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_mistakes_are_typed() {
        let ok = ServerConfig::new(ChallengeKind::Www, "r");
        let key = vec![1u8; 16];
        assert_eq!(
            DigestServer::new(ok.clone(), vec![1u8; 15]).err(),
            Some(ConfigError::WeakKey)
        );
        let mut c = ok.clone();
        c.algorithms.clear();
        assert_eq!(
            DigestServer::new(c, key.clone()).err(),
            Some(ConfigError::NoAlgorithms)
        );
        let mut c = ok.clone();
        c.qop.clear();
        c.algorithms = vec![Algorithm::Md5Sess];
        assert_eq!(
            DigestServer::new(c, key.clone()).err(),
            Some(ConfigError::SessionWithoutQop)
        );
        let mut c = ok;
        c.max_tracked_nonces = 0;
        assert_eq!(
            DigestServer::new(c, key).err(),
            Some(ConfigError::NoReplayWindow)
        );
    }

    #[test]
    fn nonces_carry_time_and_reject_tampering() {
        let s = DigestServer::new(ServerConfig::new(ChallengeKind::Www, "r"), vec![9; 32]).unwrap();
        let n = s.make_nonce(1000, [3; 16]);
        assert_eq!(n.len(), 2 * NONCE_BYTES);
        assert!(matches!(
            s.check_nonce(&n, 1000),
            NonceCheck::Fresh { issued_at: 1000 }
        ));
        assert!(matches!(s.check_nonce(&n, 1300), NonceCheck::Fresh { .. }));
        assert!(matches!(s.check_nonce(&n, 1301), NonceCheck::Expired));
        assert!(matches!(s.check_nonce(&n, 999), NonceCheck::Expired));
        let mut t = n.clone().into_bytes();
        t[15] = if t[15] == b'0' { b'1' } else { b'0' }; // move the timestamp
        let t = String::from_utf8(t).unwrap();
        assert!(matches!(s.check_nonce(&t, 1000), NonceCheck::Unknown));
        assert!(matches!(s.check_nonce("zz", 1000), NonceCheck::Unknown));
        assert!(matches!(s.check_nonce("", 1000), NonceCheck::Unknown));
        // Another realm with the same key does not accept it.
        let other =
            DigestServer::new(ServerConfig::new(ChallengeKind::Www, "r2"), vec![9; 32]).unwrap();
        assert!(matches!(other.check_nonce(&n, 1000), NonceCheck::Unknown));
    }

    #[test]
    fn replay_window_orders_and_bounds() {
        let mut w = ReplayWindow::new(2);
        assert_eq!(w.accept("a", 10, 1), Ok(()));
        assert_eq!(w.accept("a", 10, 1), Err(StaleReason::Replayed));
        assert_eq!(w.accept("a", 10, 3), Ok(()));
        assert_eq!(w.accept("a", 10, 2), Ok(())); // late but new
        assert_eq!(w.accept("a", 10, 2), Err(StaleReason::Replayed));
        assert_eq!(w.accept("a", 10, 100), Ok(()));
        assert_eq!(w.accept("a", 10, 36), Err(StaleReason::Replayed)); // beyond the window
        assert_eq!(w.accept("a", 10, 37), Ok(()));
        assert_eq!(w.accept("b", 20, 1), Ok(()));
        assert_eq!(w.accept("a", 10, 101), Ok(())); // a is now most recent
        assert_eq!(w.accept("c", 30, 1), Ok(())); // forgets b (issued at 20)
        assert_eq!(w.entries.len(), 2);
        assert_eq!(w.forgotten_up_to, Some(20));
        assert_eq!(w.accept("b", 20, 2), Err(StaleReason::Forgotten));
        assert_eq!(w.accept("d", 15, 1), Err(StaleReason::Forgotten));
        assert_eq!(w.accept("e", 25, 1), Ok(()));
        assert_eq!(w.entries.len(), 2);
        assert_eq!(w.by_use.len(), 2);
    }
}
