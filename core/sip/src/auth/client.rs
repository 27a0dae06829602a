//! The user agent side: answering 401/407 challenges (RFC 3261 §22.2–§22.3, RFC 7616 §3.4,
//! RFC 8760 §2.4).

use core::fmt;

use super::algorithm::{Algorithm, DigestHash, DigestInput, NonceCount, Qop, ct_eq, ha1, userhash};
use super::header::{AuthenticationInfo, Challenge, Credentials};
use super::{ChallengeKind, ParseError};

/// What the client proves it knows: the password, or the HA1 derived from it
/// (RFC 7616 §3.4.2).
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// The password itself; works with every algorithm and realm.
    Password(String),
    /// A precomputed HA1 ([`ha1`](super::ha1)), so the phone need not keep the password.
    /// It only answers challenges of this realm whose algorithm uses this hash.
    Ha1 {
        /// The hash the HA1 was computed with.
        hash: DigestHash,
        /// The realm the HA1 was computed for.
        realm: String,
        /// `H(username ":" realm ":" password)` in hex.
        ha1: String,
    },
}

impl fmt::Debug for Secret {
    // Logs never print passwords (ARCHITECTURE.md §3.7), nor hashes that work like them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Password(_) => f.write_str("Password(<redacted>)"),
            Secret::Ha1 { hash, realm, .. } => f
                .debug_struct("Ha1")
                .field("hash", hash)
                .field("realm", realm)
                .field("ha1", &"<redacted>")
                .finish(),
        }
    }
}

/// How to choose among several challenges for one realm (RFC 7616 §3.7, RFC 8760 §2.4: a
/// server sends one challenge per algorithm it supports, its preferred one first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AlgorithmPreference {
    /// The strongest hash we support (SHA-512-256, then SHA-256, then MD5); among equals,
    /// the server's order. Default: a downgrade to MD5 then needs the attacker to strip
    /// the stronger challenges rather than merely reorder them.
    #[default]
    Strongest,
    /// The first challenge we support, in the order the server listed them (servers list
    /// their most preferred algorithm first, RFC 8760 §2.4).
    ServerOrder,
}

/// Which protection to use when a challenge offers both (RFC 7616 §3.3 `qop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QopPreference {
    /// `auth` (default): survives a B2BUA or SBC rewriting the body (SDP), which
    /// `auth-int` would not.
    #[default]
    Auth,
    /// `auth-int`: also protects the body (RFC 7616 §3.4.3).
    AuthInt,
}

/// Credentials ready to put in a request, and which header they go in
/// (RFC 3261 §22.2 `Authorization`, §22.3 `Proxy-Authorization`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// Which challenge they answer; [`ChallengeKind::credentials_header`] names the header.
    pub kind: ChallengeKind,
    /// The header value (print it with `to_string()`).
    pub credentials: Credentials,
}

impl Authorization {
    /// The header to write: `Authorization` or `Proxy-Authorization`.
    pub fn header_name(&self) -> &'static str {
        self.kind.credentials_header()
    }
}

/// Why [`DigestClient::handle_challenge`] cannot answer (RFC 3261 §22.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// The server refused our credentials: a new, non-stale challenge came for a realm we had
    /// already answered (RFC 3261 §22.2). Report a wrong username or password to the user;
    /// do not resend. After [`DigestClient::set_secret`] the same challenge can be answered.
    #[error("credentials for realm {realm:?} were refused")]
    Rejected {
        /// The realm that refused.
        realm: String,
    },
    /// No challenge was of a kind we can answer: other schemes, algorithms we do not
    /// implement, only unknown qop options, or (with [`Secret::Ha1`]) another realm or hash.
    #[error("no usable digest challenge")]
    NoUsableChallenge,
    /// Not a single challenge could be read; this is the first error (the server's fault).
    #[error("malformed challenge: {0}")]
    Malformed(ParseError),
}

/// What [`DigestClient::verify_authentication_info`] established (RFC 7616 §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MutualAuth {
    /// `rspauth` matched: the server knows our secret (RFC 7616 §3.5).
    Verified,
    /// The server sent no `rspauth`; nothing was proven either way.
    NotOffered,
}

/// Why an `Authentication-Info` value was not accepted (RFC 7616 §3.5, RFC 3261 §20.6).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthInfoError {
    /// The value could not be read (the server's fault).
    #[error("malformed Authentication-Info: {0}")]
    Malformed(ParseError),
    /// `rspauth` is wrong: whoever answered does not know the secret (RFC 7616 §3.5).
    /// Treat the response as not from our server.
    #[error("rspauth does not match")]
    RspauthMismatch,
    /// `cnonce` or `nc` differ from what we sent (RFC 7616 §3.5: they must echo ours).
    #[error("cnonce or nc not echoed")]
    EchoMismatch,
    /// The credentials given are not ones this client could have made (another realm or
    /// hash than a [`Secret::Ha1`] covers): a caller mistake.
    #[error("credentials not produced by this client")]
    NotOurs,
}

/// What we know about one realm's current nonce.
#[derive(Debug, Clone)]
struct Session {
    kind: ChallengeKind,
    challenge: Challenge,
    algorithm: Algorithm,
    qop: Option<Qop>,
    /// The last `nc` used with this nonce (RFC 7616 §3.4: counts requests per nonce).
    nc: u32,
    /// For `-sess`, the cnonce of the first request with this nonce, which fixes the session
    /// key (RFC 2617 §3.2.2.2: HA1 is "calculated only once"); reused so servers that
    /// recompute it per request and servers that cache it agree.
    session_cnonce: Option<String>,
    /// Whether credentials were made with this nonce: a fresh non-stale challenge for the
    /// realm then means they were refused.
    used: bool,
}

/// The client side of digest authentication for one account (RFC 3261 §22.2–§22.3).
///
/// Feed it the challenges of each 401/407 with [`DigestClient::handle_challenge`], then
/// add the result of [`DigestClient::authorize`] to the resent request. It remembers each
/// realm's nonce, so later requests carry credentials straight away (RFC 3261 §22.3) with
/// an increasing `nc`. Randomness (the cnonce) comes from the caller.
///
/// A request's `ACK` (for a non-2xx) and `CANCEL` must carry the same credentials as the
/// request they belong to (RFC 3261 §22.1): copy the header, do not call `authorize` again.
pub struct DigestClient {
    username: String,
    secret: Secret,
    algorithm_preference: AlgorithmPreference,
    qop_preference: QopPreference,
    sessions: Vec<Session>,
    /// Realms that refused our credentials, until the secret changes: stops the
    /// challenge–resend loop of a wrong password.
    rejected: Vec<(ChallengeKind, String)>,
}

impl fmt::Debug for DigestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestClient")
            .field("username", &self.username)
            .field("secret", &self.secret)
            .field(
                "realms",
                &self
                    .sessions
                    .iter()
                    .map(|s| &s.challenge.realm)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn hash_rank(h: DigestHash) -> u8 {
    match h {
        DigestHash::Md5 => 0,
        DigestHash::Sha256 => 1,
        DigestHash::Sha512_256 => 2,
    }
}

impl DigestClient {
    /// A client for `username` with the given secret.
    pub fn new(username: impl Into<String>, secret: Secret) -> Self {
        DigestClient {
            username: username.into(),
            secret,
            algorithm_preference: AlgorithmPreference::default(),
            qop_preference: QopPreference::default(),
            sessions: Vec::new(),
            rejected: Vec::new(),
        }
    }

    /// Sets how to choose among challenges for one realm.
    pub fn with_algorithm_preference(mut self, p: AlgorithmPreference) -> Self {
        self.algorithm_preference = p;
        self
    }

    /// Sets which qop to use when both are offered.
    pub fn with_qop_preference(mut self, p: QopPreference) -> Self {
        self.qop_preference = p;
        self
    }

    /// The username this client authenticates as.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Replaces the secret (the user typed a new password) and forgets every nonce and
    /// refusal, so the next challenge is answered afresh.
    pub fn set_secret(&mut self, secret: Secret) {
        self.secret = secret;
        self.reset();
    }

    /// Forgets every nonce and refusal: the next request goes without credentials.
    pub fn reset(&mut self) {
        self.sessions.clear();
        self.rejected.clear();
    }

    /// Whether a challenge was accepted and credentials will be produced.
    pub fn has_credentials(&self) -> bool {
        !self.sessions.is_empty()
    }

    fn ha1_for(&self, realm: &str, hash: DigestHash) -> Option<String> {
        match &self.secret {
            Secret::Password(p) => Some(ha1(hash, &self.username, realm, p)),
            Secret::Ha1 {
                hash: h,
                realm: r,
                ha1,
            } => (*h == hash && r == realm).then(|| ha1.clone()),
        }
    }

    /// The qop we would use for this challenge, or `Err(())` if we cannot answer it.
    fn choose_qop(&self, c: &Challenge) -> Result<Option<Qop>, ()> {
        match &c.qop {
            // RFC 2069 form; a -sess HA1 needs a cnonce, which only travels with qop.
            None if c.effective_algorithm().is_session() => Err(()),
            None => Ok(None),
            Some(offered) => {
                let (first, second) = match self.qop_preference {
                    QopPreference::Auth => (Qop::Auth, Qop::AuthInt),
                    QopPreference::AuthInt => (Qop::AuthInt, Qop::Auth),
                };
                [first, second]
                    .into_iter()
                    .find(|q| offered.contains(q))
                    .map(Some)
                    .ok_or(())
            }
        }
    }

    fn usable(&self, c: &Challenge) -> bool {
        self.ha1_for_possible(&c.realm, c.effective_algorithm().hash())
            && self.choose_qop(c).is_ok()
    }

    fn ha1_for_possible(&self, realm: &str, hash: DigestHash) -> bool {
        match &self.secret {
            Secret::Password(_) => true,
            Secret::Ha1 {
                hash: h, realm: r, ..
            } => *h == hash && r == realm,
        }
    }

    /// Takes the challenge header values of one 401 or 407 response (all of them: a
    /// response may carry one per algorithm, RFC 8760 §2.4, and one per realm when a proxy
    /// forked the request, RFC 3261 §22.3) and prepares credentials for each realm.
    ///
    /// Per realm the challenge is chosen by the [`AlgorithmPreference`]. A `stale=true`
    /// challenge replaces the nonce silently (RFC 7616 §3.3). A non-stale challenge for a
    /// realm we answered it for (the first request with its nonce) means they were refused:
    /// [`ChallengeError::Rejected`], and that realm stays refused until
    /// [`DigestClient::set_secret`] — so a wrong password is reported, not retried forever.
    pub fn handle_challenge(
        &mut self,
        kind: ChallengeKind,
        values: &[&str],
    ) -> Result<(), ChallengeError> {
        let mut first_error: Option<ParseError> = None;
        let mut any_parsed = false;
        let mut candidates: Vec<Challenge> = Vec::new();
        for v in values {
            let parsed = match Challenge::parse_all(v) {
                Ok(list) => list,
                Err(e) => {
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            for c in parsed {
                match c {
                    Ok(c) => {
                        any_parsed = true;
                        if self.usable(&c) {
                            candidates.push(c);
                        }
                    }
                    // Another scheme or algorithm is well-formed, just not for us.
                    Err(ParseError::NotDigest(_) | ParseError::UnsupportedAlgorithm(_)) => {
                        any_parsed = true;
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        if candidates.is_empty() {
            return Err(match first_error {
                Some(e) if !any_parsed => ChallengeError::Malformed(e),
                _ => ChallengeError::NoUsableChallenge,
            });
        }

        // One challenge per realm, realms in order of first appearance.
        let mut realms: Vec<String> = Vec::new();
        for c in &candidates {
            if !realms.contains(&c.realm) {
                realms.push(c.realm.clone());
            }
        }
        let mut refused: Option<String> = None;
        for realm in realms {
            let of_realm = candidates.iter().filter(|c| c.realm == realm);
            let chosen = match self.algorithm_preference {
                AlgorithmPreference::ServerOrder => of_realm.into_iter().next(),
                // max_by_key keeps the last of equals; reverse so the server's first wins.
                AlgorithmPreference::Strongest => of_realm
                    .rev()
                    .max_by_key(|c| hash_rank(c.effective_algorithm().hash())),
            };
            let Some(chosen) = chosen else { continue };
            if self.rejected.iter().any(|(k, r)| *k == kind && *r == realm) {
                refused.get_or_insert(realm);
                continue;
            }
            let existing = self
                .sessions
                .iter()
                .position(|s| s.kind == kind && s.challenge.realm == realm);
            // RFC 3261 §22.2: the server challenged again although we answered its
            // challenge. Credentials reused with an older nonce (§22.3: nc > 1) that meet a
            // fresh challenge only say the nonce is gone — the server restarted or let it
            // expire without `stale` — so they are answered once more, freshly.
            if let Some(i) = existing
                && self.sessions[i].used
                && self.sessions[i].nc <= 1
                && !chosen.stale
            {
                self.sessions.remove(i);
                self.rejected.push((kind, realm.clone()));
                refused.get_or_insert(realm);
                continue;
            }
            let Ok(qop) = self.choose_qop(chosen) else {
                continue;
            };
            let session = Session {
                kind,
                challenge: chosen.clone(),
                algorithm: chosen.effective_algorithm(),
                qop,
                nc: 0,
                session_cnonce: None,
                used: false,
            };
            match existing {
                Some(i) => self.sessions[i] = session,
                None => self.sessions.push(session),
            }
        }
        match refused {
            Some(realm) => Err(ChallengeError::Rejected { realm }),
            None => Ok(()),
        }
    }

    /// Credentials for every realm we hold a nonce for, to add to a request
    /// (RFC 3261 §22.3: reuse them on later requests to the same destination).
    ///
    /// `uri` is the Request-URI as it will be written (RFC 3261 §22.4 `digest-uri`); `body`
    /// is hashed for `auth-int`; `cnonce` is fresh, unpredictable randomness from the caller
    /// (RFC 7616 §5.12), e.g. 16 random bytes in hex. Each call counts as sending: `nc` goes
    /// up by one per realm.
    pub fn authorize(
        &mut self,
        method: &str,
        uri: &str,
        body: &[u8],
        cnonce: &str,
    ) -> Vec<Authorization> {
        let mut out = Vec::with_capacity(self.sessions.len());
        for i in 0..self.sessions.len() {
            let (realm, hash) = {
                let s = &self.sessions[i];
                (s.challenge.realm.clone(), s.algorithm.hash())
            };
            let Some(ha1) = self.ha1_for(&realm, hash) else {
                continue;
            };
            let s = &mut self.sessions[i];
            s.nc = s.nc.saturating_add(1);
            s.used = true;
            let cnonce_used = match (s.qop, s.algorithm.is_session()) {
                (None, _) => String::new(),
                (Some(_), true) => s
                    .session_cnonce
                    .get_or_insert_with(|| cnonce.to_owned())
                    .clone(),
                (Some(_), false) => cnonce.to_owned(),
            };
            let nc = NonceCount(s.nc);
            let response = DigestInput {
                algorithm: s.algorithm,
                ha1: &ha1,
                nonce: &s.challenge.nonce,
                cnonce: &cnonce_used,
                nc,
                qop: s.qop,
                method,
                uri,
                body,
            }
            .response();
            let (username, extended) = if s.challenge.userhash {
                (userhash(hash, &self.username, &realm), false)
            } else {
                // SIP quoted strings carry UTF-8 (RFC 3261 §25.1), so `username*` is only
                // needed for what a quoted string cannot hold.
                let needs_ext = self.username.chars().any(|c| c == '\r' || c == '\n');
                (self.username.clone(), needs_ext)
            };
            out.push(Authorization {
                kind: s.kind,
                credentials: Credentials {
                    username,
                    username_extended: extended,
                    realm,
                    nonce: s.challenge.nonce.clone(),
                    uri: uri.to_owned(),
                    response,
                    algorithm: s.challenge.algorithm,
                    cnonce: s.qop.map(|_| cnonce_used.clone()),
                    opaque: s.challenge.opaque.clone(),
                    qop: s.qop,
                    nc: s.qop.map(|_| nc),
                    userhash: s.challenge.userhash,
                    extensions: Vec::new(),
                },
            });
        }
        out
    }

    /// Checks the `Authentication-Info` of a final response to a request that carried
    /// `sent` (RFC 7616 §3.5, RFC 3261 §20.6), and takes up its `nextnonce`.
    ///
    /// `response_body` is the body of the *response*, for `auth-int`. On
    /// [`AuthInfoError::RspauthMismatch`] the response did not come from a server that knows
    /// our secret; the `nextnonce` of such a value is ignored.
    pub fn verify_authentication_info(
        &mut self,
        sent: &Authorization,
        value: &str,
        response_body: &[u8],
    ) -> Result<MutualAuth, AuthInfoError> {
        let info = AuthenticationInfo::parse(value).map_err(AuthInfoError::Malformed)?;
        let c = &sent.credentials;
        let algorithm = c.effective_algorithm();
        let mutual = match &info.rspauth {
            None => MutualAuth::NotOffered,
            Some(rspauth) => {
                if info
                    .cnonce
                    .as_ref()
                    .is_some_and(|n| Some(n) != c.cnonce.as_ref())
                    || info.nc.is_some_and(|n| Some(n) != c.nc)
                {
                    return Err(AuthInfoError::EchoMismatch);
                }
                let ha1 = self
                    .ha1_for(&c.realm, algorithm.hash())
                    .ok_or(AuthInfoError::NotOurs)?;
                let expected = DigestInput {
                    algorithm,
                    ha1: &ha1,
                    nonce: &c.nonce,
                    cnonce: c.cnonce.as_deref().unwrap_or(""),
                    nc: c.nc.unwrap_or_default(),
                    qop: c.qop,
                    method: "",
                    uri: &c.uri,
                    body: response_body,
                }
                .rspauth();
                if !ct_eq(
                    expected.as_bytes(),
                    rspauth.trim().to_ascii_lowercase().as_bytes(),
                ) {
                    return Err(AuthInfoError::RspauthMismatch);
                }
                MutualAuth::Verified
            }
        };
        if let Some(next) = info.nextnonce {
            // RFC 7616 §3.5: use the next nonce from now on, counting afresh.
            if let Some(s) = self
                .sessions
                .iter_mut()
                .find(|s| s.kind == sent.kind && s.challenge.realm == c.realm)
            {
                s.challenge.nonce = next;
                s.nc = 0;
                s.session_cnonce = None;
                s.used = false;
            }
        }
        Ok(mutual)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(realm: &str, nonce: &str, alg: &str) -> String {
        format!(
            "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={alg}, qop=\"auth,auth-int\""
        )
    }

    fn client() -> DigestClient {
        DigestClient::new("alice", Secret::Password("pw".into()))
    }

    #[test]
    fn picks_strongest_or_server_order() {
        let values = [
            challenge("r", "n1", "MD5"),
            challenge("r", "n2", "SHA-256"),
            challenge("r", "n3", "SHA-512-256-sess"),
            challenge("r", "n4", "SHA-512-256"),
        ];
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let mut c = client();
        c.handle_challenge(ChallengeKind::Www, &refs).unwrap();
        let a = c.authorize("REGISTER", "sip:r", b"", "cn");
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].credentials.algorithm, Some(Algorithm::Sha512_256Sess));
        assert_eq!(a[0].credentials.nonce, "n3");

        let mut c = client().with_algorithm_preference(AlgorithmPreference::ServerOrder);
        c.handle_challenge(ChallengeKind::Www, &refs).unwrap();
        let a = c.authorize("REGISTER", "sip:r", b"", "cn");
        assert_eq!(a[0].credentials.algorithm, Some(Algorithm::Md5));
    }

    #[test]
    fn nc_counts_per_nonce_and_sess_pins_cnonce() {
        let mut c = client();
        let v = challenge("r", "n", "SHA-256-sess");
        c.handle_challenge(ChallengeKind::Proxy, &[&v]).unwrap();
        let a1 = c.authorize("INVITE", "sip:b@r", b"", "c1");
        let a2 = c.authorize("INVITE", "sip:b@r", b"", "c2");
        assert_eq!(a1[0].header_name(), "Proxy-Authorization");
        assert_eq!(a1[0].credentials.nc, Some(NonceCount(1)));
        assert_eq!(a2[0].credentials.nc, Some(NonceCount(2)));
        assert_eq!(a2[0].credentials.cnonce.as_deref(), Some("c1"));
        // A plain algorithm takes the fresh cnonce every time.
        let mut c = client();
        c.handle_challenge(ChallengeKind::Www, &[&challenge("r", "n", "SHA-256")])
            .unwrap();
        c.authorize("INVITE", "sip:b@r", b"", "c1");
        let a = c.authorize("INVITE", "sip:b@r", b"", "c2");
        assert_eq!(a[0].credentials.cnonce.as_deref(), Some("c2"));
    }

    #[test]
    fn wrong_password_is_reported_once_then_sticks() {
        let mut c = client();
        c.handle_challenge(ChallengeKind::Www, &[&challenge("r", "n1", "MD5")])
            .unwrap();
        // A challenge before anything was sent just replaces the nonce.
        c.handle_challenge(ChallengeKind::Www, &[&challenge("r", "n2", "MD5")])
            .unwrap();
        c.authorize("REGISTER", "sip:r", b"", "cn");
        let again = challenge("r", "n3", "MD5");
        assert_eq!(
            c.handle_challenge(ChallengeKind::Www, &[&again]),
            Err(ChallengeError::Rejected { realm: "r".into() })
        );
        assert!(c.authorize("REGISTER", "sip:r", b"", "cn").is_empty());
        assert!(c.handle_challenge(ChallengeKind::Www, &[&again]).is_err());
        c.set_secret(Secret::Password("right".into()));
        c.handle_challenge(ChallengeKind::Www, &[&again]).unwrap();
        assert_eq!(c.authorize("REGISTER", "sip:r", b"", "cn").len(), 1);
    }

    #[test]
    fn stale_retries_with_new_nonce() {
        let mut c = client();
        c.handle_challenge(ChallengeKind::Www, &[&challenge("r", "n1", "MD5")])
            .unwrap();
        c.authorize("REGISTER", "sip:r", b"", "cn");
        c.authorize("REGISTER", "sip:r", b"", "cn");
        let stale = format!("{}, stale=TRUE", challenge("r", "n2", "MD5"));
        c.handle_challenge(ChallengeKind::Www, &[&stale]).unwrap();
        let a = c.authorize("REGISTER", "sip:r", b"", "cn");
        assert_eq!(a[0].credentials.nonce, "n2");
        assert_eq!(a[0].credentials.nc, Some(NonceCount(1)));
    }

    #[test]
    fn a_restarted_server_forgets_the_nonce_and_is_answered_afresh() {
        let mut c = client();
        c.handle_challenge(ChallengeKind::Www, &[&challenge("r", "n1", "MD5")])
            .unwrap();
        c.authorize("REGISTER", "sip:r", b"", "cn"); // answered: 200
        c.authorize("REGISTER", "sip:r", b"", "cn"); // a refresh with the same nonce
        // The server restarted: a fresh challenge, not stale. Not a refusal.
        c.handle_challenge(ChallengeKind::Www, &[&challenge("r", "n2", "MD5")])
            .unwrap();
        let a = c.authorize("REGISTER", "sip:r", b"", "cn");
        assert_eq!(a[0].credentials.nonce, "n2");
        // Refused for the answer to n2 itself: that is a wrong password.
        assert_eq!(
            c.handle_challenge(ChallengeKind::Www, &[&challenge("r", "n3", "MD5")]),
            Err(ChallengeError::Rejected { realm: "r".into() })
        );
    }

    #[test]
    fn unusable_and_malformed_challenges() {
        let mut c = client();
        assert_eq!(
            c.handle_challenge(ChallengeKind::Www, &["Basic realm=\"x\""]),
            Err(ChallengeError::NoUsableChallenge)
        );
        assert_eq!(
            c.handle_challenge(
                ChallengeKind::Www,
                &["Digest realm=\"x\", nonce=\"n\", qop=\"auth-conf\""]
            ),
            Err(ChallengeError::NoUsableChallenge)
        );
        assert_eq!(
            c.handle_challenge(
                ChallengeKind::Www,
                &["Digest realm=\"x\", nonce=\"n\", algorithm=MD5-sess"]
            ),
            Err(ChallengeError::NoUsableChallenge)
        );
        assert!(matches!(
            c.handle_challenge(ChallengeKind::Www, &["Digest realm=\"x"]),
            Err(ChallengeError::Malformed(_))
        ));
        assert!(matches!(
            c.handle_challenge(ChallengeKind::Www, &[]),
            Err(ChallengeError::NoUsableChallenge)
        ));
        // A usable one among broken ones is enough.
        c.handle_challenge(
            ChallengeKind::Www,
            &["Digest realm=\"x", &challenge("r", "n", "SHA-256")],
        )
        .unwrap();
    }

    #[test]
    fn ha1_secret_only_answers_its_realm_and_hash() {
        let stored = ha1(DigestHash::Sha256, "alice", "r", "pw");
        let mut c = DigestClient::new(
            "alice",
            Secret::Ha1 {
                hash: DigestHash::Sha256,
                realm: "r".into(),
                ha1: stored,
            },
        );
        assert_eq!(
            c.handle_challenge(ChallengeKind::Www, &[&challenge("r", "n", "MD5")]),
            Err(ChallengeError::NoUsableChallenge)
        );
        assert_eq!(
            c.handle_challenge(ChallengeKind::Www, &[&challenge("other", "n", "SHA-256")]),
            Err(ChallengeError::NoUsableChallenge)
        );
        c.handle_challenge(
            ChallengeKind::Www,
            &[
                &challenge("r", "n", "MD5"),
                &challenge("r", "n", "SHA-256-sess"),
            ],
        )
        .unwrap();
        let with_pw = {
            let mut p = client();
            p.handle_challenge(ChallengeKind::Www, &[&challenge("r", "n", "SHA-256-sess")])
                .unwrap();
            p.authorize("REGISTER", "sip:r", b"", "cn")
        };
        assert_eq!(c.authorize("REGISTER", "sip:r", b"", "cn"), with_pw);
        assert!(!format!("{c:?}").contains("pw"));
    }

    #[test]
    fn answers_several_realms_and_kinds() {
        let mut c = client();
        c.handle_challenge(
            ChallengeKind::Proxy,
            &[&challenge("a", "n", "MD5"), &challenge("b", "n", "SHA-256")],
        )
        .unwrap();
        c.handle_challenge(ChallengeKind::Www, &[&challenge("a", "m", "MD5")])
            .unwrap();
        let a = c.authorize("INVITE", "sip:x@a", b"", "cn");
        let got: Vec<_> = a
            .iter()
            .map(|a| (a.header_name(), a.credentials.realm.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("Proxy-Authorization", "a"),
                ("Proxy-Authorization", "b"),
                ("Authorization", "a")
            ]
        );
    }

    #[test]
    fn rfc2069_form_without_qop() {
        let mut c = client();
        c.handle_challenge(ChallengeKind::Www, &["Digest realm=\"r\", nonce=\"n\""])
            .unwrap();
        let a = c.authorize("REGISTER", "sip:r", b"", "cn");
        let cr = &a[0].credentials;
        assert_eq!(
            (cr.qop, cr.nc, cr.cnonce.as_deref(), cr.algorithm),
            (None, None, None, None)
        );
        let printed = cr.to_string();
        assert!(!printed.contains("nc="), "{printed}");
        assert_eq!(Credentials::parse(&printed).unwrap(), *cr);
    }
}
