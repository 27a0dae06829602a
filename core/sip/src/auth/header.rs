//! The three digest header values: challenges (`WWW-Authenticate`, `Proxy-Authenticate`),
//! credentials (`Authorization`, `Proxy-Authorization`) and `Authentication-Info`
//! (RFC 3261 §20.44, §20.27, §20.7, §20.28, §20.6; RFC 7616 §3.3–§3.5).

use core::fmt;

use super::ParseError;
use super::algorithm::{Algorithm, NonceCount, Qop, clip};
use super::params::{
    AuthParam, Params, RawAuth, Separator, decode_ext_value, encode_ext_value, parse_auth_list,
    parse_param_list, write_bare, write_extensions, write_quoted,
};

/// The scheme name of digest authentication (RFC 3261 §25.1 `"Digest"`), compared ignoring
/// case (RFC 7235 §2.1).
const DIGEST: &str = "Digest";

fn parse_bool(v: &str) -> bool {
    // RFC 7616 §3.3: anything but "true" (any case) counts as false.
    v.eq_ignore_ascii_case("true")
}

fn parse_algorithm(p: Option<AuthParam>) -> Result<Option<Algorithm>, ParseError> {
    p.map(|p| p.value.trim().parse()).transpose()
}

/// A digest challenge: one `WWW-Authenticate` or `Proxy-Authenticate` value
/// (RFC 7616 §3.3, RFC 3261 §20.44 / §20.27).
///
/// Parse with [`Challenge::parse`] (or [`Challenge::parse_all`] for a comma-joined list);
/// print with `Display`, which writes `Digest realm="…", nonce="…", …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `realm`: the protection space, shown to users and part of HA1 (RFC 7616 §3.3).
    pub realm: String,
    /// `domain`: space-separated URIs of the protection space, kept as written (RFC 7616 §3.3).
    pub domain: Option<String>,
    /// `nonce`: the server's one-time value.
    pub nonce: String,
    /// `opaque`: returned unchanged by the client.
    pub opaque: Option<String>,
    /// `stale=true`: the previous credentials were right but their nonce was not
    /// (RFC 7616 §3.3): retry with this nonce without asking the user.
    pub stale: bool,
    /// `algorithm`, `None` when absent (which means MD5, RFC 7616 §3.3).
    pub algorithm: Option<Algorithm>,
    /// `qop` options offered. `None` when the parameter is absent: an RFC 2069 server that
    /// wants the old response form. Unknown option tokens are dropped, so `Some(vec![])`
    /// means the server offered only options we do not implement.
    pub qop: Option<Vec<Qop>>,
    /// `charset`: only `UTF-8` is defined (RFC 7616 §3.3).
    pub charset: Option<String>,
    /// `userhash=true`: the server supports hashed usernames (RFC 7616 §3.4.4).
    pub userhash: bool,
    /// Parameters this module does not interpret, in their original order.
    pub extensions: Vec<AuthParam>,
}

impl Challenge {
    /// A challenge with the required parameters and everything else absent.
    pub fn new(realm: impl Into<String>, nonce: impl Into<String>) -> Self {
        Challenge {
            realm: realm.into(),
            domain: None,
            nonce: nonce.into(),
            opaque: None,
            stale: false,
            algorithm: None,
            qop: None,
            charset: None,
            userhash: false,
            extensions: Vec::new(),
        }
    }

    /// The algorithm in force: the parameter, or MD5 when absent (RFC 7616 §3.3).
    pub fn effective_algorithm(&self) -> Algorithm {
        self.algorithm.unwrap_or(Algorithm::Md5)
    }

    /// Reads one challenge header value (RFC 3261 §25.1 `challenge`).
    ///
    /// Errors: [`ParseError::NotDigest`] for another scheme,
    /// [`ParseError::UnsupportedAlgorithm`] for a digest algorithm not implemented here,
    /// [`ParseError::MultipleChallenges`] for a comma-joined list (use
    /// [`Challenge::parse_all`]), other variants for broken syntax.
    pub fn parse(value: &str) -> Result<Challenge, ParseError> {
        let mut list = parse_auth_list(value)?;
        if list.len() != 1 {
            return Err(ParseError::MultipleChallenges);
        }
        Challenge::from_raw(list.remove(0))
    }

    /// Reads a value that may hold several comma-joined challenges (RFC 7235 §4.1 allows
    /// this in HTTP; SIP peers occasionally do it too). The outer error is broken syntax;
    /// each inner result is one challenge, so a `Basic` or `AKAv1-MD5` next to a usable
    /// digest challenge does not hide it.
    pub fn parse_all(value: &str) -> Result<Vec<Result<Challenge, ParseError>>, ParseError> {
        Ok(parse_auth_list(value)?
            .into_iter()
            .map(Challenge::from_raw)
            .collect())
    }

    fn from_raw(raw: RawAuth) -> Result<Challenge, ParseError> {
        if !raw.scheme.eq_ignore_ascii_case(DIGEST) {
            return Err(ParseError::NotDigest(clip(&raw.scheme)));
        }
        let mut ps = Params::new(raw.params);
        let realm = ps.require("realm")?.value;
        let nonce = ps.require("nonce")?.value;
        let domain = ps.take("domain")?.map(|p| p.value);
        let opaque = ps.take("opaque")?.map(|p| p.value);
        let stale = ps.take("stale")?.is_some_and(|p| parse_bool(&p.value));
        let algorithm = parse_algorithm(ps.take("algorithm")?)?;
        let qop = ps.take("qop")?.map(|p| {
            let mut v = Vec::new();
            for q in p.value.split(',').filter_map(|t| Qop::from_name(t.trim())) {
                if !v.contains(&q) {
                    v.push(q);
                }
            }
            v
        });
        let charset = ps.take("charset")?.map(|p| p.value);
        let userhash = ps.take("userhash")?.is_some_and(|p| parse_bool(&p.value));
        Ok(Challenge {
            realm,
            domain,
            nonce,
            opaque,
            stale,
            algorithm,
            qop,
            charset,
            userhash,
            extensions: ps.finish()?,
        })
    }
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Digest ")?;
        let mut sep = Separator::new();
        sep.next(f)?;
        f.write_str("realm=")?;
        write_quoted(f, &self.realm)?;
        if let Some(d) = &self.domain {
            sep.next(f)?;
            f.write_str("domain=")?;
            write_quoted(f, d)?;
        }
        sep.next(f)?;
        f.write_str("nonce=")?;
        write_quoted(f, &self.nonce)?;
        if let Some(o) = &self.opaque {
            sep.next(f)?;
            f.write_str("opaque=")?;
            write_quoted(f, o)?;
        }
        if self.stale {
            sep.next(f)?;
            f.write_str("stale=true")?;
        }
        if let Some(a) = self.algorithm {
            sep.next(f)?;
            write!(f, "algorithm={a}")?;
        }
        if let Some(q) = &self.qop {
            sep.next(f)?;
            // qop-options is always a quoted list (RFC 3261 §25.1).
            let list: Vec<&str> = q.iter().map(|q| q.name()).collect();
            f.write_str("qop=")?;
            write_quoted(f, &list.join(","))?;
        }
        if let Some(c) = &self.charset {
            sep.next(f)?;
            f.write_str("charset=")?;
            write_bare(f, c)?;
        }
        if self.userhash {
            sep.next(f)?;
            f.write_str("userhash=true")?;
        }
        write_extensions(f, &mut sep, &self.extensions)
    }
}

/// Digest credentials: one `Authorization` or `Proxy-Authorization` value
/// (RFC 7616 §3.4, RFC 3261 §20.7 / §20.28).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user as it goes into the hash: the name itself, or with [`Credentials::userhash`]
    /// the hex `H(username ":" realm)` (RFC 7616 §3.4.4). Read from `username` or, decoded,
    /// from `username*`.
    pub username: String,
    /// Print the username as `username*` (RFC 8187 ext-value). Set when it was read that way,
    /// and by the client when the name cannot travel in a quoted string.
    pub username_extended: bool,
    /// `realm`, copied from the challenge.
    pub realm: String,
    /// `nonce`, copied from the challenge.
    pub nonce: String,
    /// `uri`: the Request-URI (RFC 3261 §22.4 `digest-uri`).
    pub uri: String,
    /// `response`: the request digest in hex.
    pub response: String,
    /// `algorithm`, `None` when absent (MD5).
    pub algorithm: Option<Algorithm>,
    /// `cnonce`: the client's nonce; present exactly when `qop` is.
    pub cnonce: Option<String>,
    /// `opaque`, copied from the challenge.
    pub opaque: Option<String>,
    /// `qop` chosen; `None` for the RFC 2069 form.
    pub qop: Option<Qop>,
    /// `nc`; present exactly when `qop` is.
    pub nc: Option<NonceCount>,
    /// `userhash=true`: [`Credentials::username`] is hashed (RFC 7616 §3.4.4).
    pub userhash: bool,
    /// Parameters this module does not interpret, in their original order.
    pub extensions: Vec<AuthParam>,
}

impl Credentials {
    /// The algorithm in force: the parameter, or MD5 when absent.
    pub fn effective_algorithm(&self) -> Algorithm {
        self.algorithm.unwrap_or(Algorithm::Md5)
    }

    /// Reads one credentials header value (RFC 3261 §25.1 `credentials`).
    ///
    /// Requires `username` (or `username*`), `realm`, `nonce`, `uri` and `response`, and
    /// `cnonce` and `nc` whenever `qop` is present (RFC 7616 §3.4). Errors as for
    /// [`Challenge::parse`].
    pub fn parse(value: &str) -> Result<Credentials, ParseError> {
        let mut list = parse_auth_list(value)?;
        if list.len() != 1 {
            return Err(ParseError::MultipleChallenges);
        }
        let raw = list.remove(0);
        if !raw.scheme.eq_ignore_ascii_case(DIGEST) {
            return Err(ParseError::NotDigest(clip(&raw.scheme)));
        }
        let mut ps = Params::new(raw.params);
        let plain = ps.take("username")?;
        let extended = ps.take("username*")?;
        let userhash = ps.take("userhash")?.is_some_and(|p| parse_bool(&p.value));
        let (username, username_extended) = match (plain, extended) {
            (Some(p), None) => (p.value, false),
            (None, Some(e)) if !userhash => (decode_ext_value(&e.value)?, true),
            // RFC 7616 §3.4: never both, and username* never with userhash=true.
            (None, Some(_)) | (Some(_), Some(_)) => {
                return Err(ParseError::InvalidValue("username*"));
            }
            (None, None) => return Err(ParseError::MissingParam("username")),
        };
        let realm = ps.require("realm")?.value;
        let nonce = ps.require("nonce")?.value;
        let uri = ps.require("uri")?.value;
        let response = ps.require("response")?.value;
        let algorithm = parse_algorithm(ps.take("algorithm")?)?;
        let cnonce = ps.take("cnonce")?.map(|p| p.value);
        let opaque = ps.take("opaque")?.map(|p| p.value);
        let qop = ps
            .take("qop")?
            .map(|p| Qop::from_name(p.value.trim()).ok_or(ParseError::InvalidValue("qop")))
            .transpose()?;
        let nc = ps
            .take("nc")?
            .map(|p| p.value.trim().parse::<NonceCount>())
            .transpose()?;
        if qop.is_some() {
            // RFC 7616 §3.4: cnonce and nc MUST be sent with qop …
            if cnonce.is_none() {
                return Err(ParseError::MissingParam("cnonce"));
            }
            if nc.is_none() {
                return Err(ParseError::MissingParam("nc"));
            }
        } else if nc.is_some() {
            // … and MUST NOT without it.
            return Err(ParseError::InvalidValue("nc"));
        }
        Ok(Credentials {
            username,
            username_extended,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            cnonce,
            opaque,
            qop,
            nc,
            userhash,
            extensions: ps.finish()?,
        })
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Digest ")?;
        let mut sep = Separator::new();
        sep.next(f)?;
        if self.username_extended && !self.userhash {
            write!(f, "username*={}", encode_ext_value(&self.username))?;
        } else {
            f.write_str("username=")?;
            write_quoted(f, &self.username)?;
        }
        for (name, v) in [
            ("realm", &self.realm),
            ("nonce", &self.nonce),
            ("uri", &self.uri),
            ("response", &self.response),
        ] {
            sep.next(f)?;
            write!(f, "{name}=")?;
            write_quoted(f, v)?;
        }
        if let Some(a) = self.algorithm {
            sep.next(f)?;
            write!(f, "algorithm={a}")?;
        }
        if let Some(c) = &self.cnonce {
            sep.next(f)?;
            f.write_str("cnonce=")?;
            write_quoted(f, c)?;
        }
        if let Some(o) = &self.opaque {
            sep.next(f)?;
            f.write_str("opaque=")?;
            write_quoted(f, o)?;
        }
        if let Some(q) = self.qop {
            // In credentials qop is a bare token (RFC 3261 §25.1 `message-qop`).
            sep.next(f)?;
            write!(f, "qop={q}")?;
        }
        if let Some(nc) = self.nc {
            sep.next(f)?;
            write!(f, "nc={nc}")?;
        }
        if self.userhash {
            sep.next(f)?;
            f.write_str("userhash=true")?;
        }
        write_extensions(f, &mut sep, &self.extensions)
    }
}

/// An `Authentication-Info` value (RFC 3261 §20.6, RFC 7616 §3.5): the server's proof that
/// it knows the secret too (`rspauth`) and the nonce to use next (`nextnonce`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthenticationInfo {
    /// `nextnonce`: the client should use this nonce for its next request (RFC 7616 §3.5).
    pub nextnonce: Option<String>,
    /// `qop` applied to the response, echoing the request's.
    pub qop: Option<Qop>,
    /// `rspauth`: the response digest that proves the server knows HA1.
    pub rspauth: Option<String>,
    /// `cnonce`, echoing the request's.
    pub cnonce: Option<String>,
    /// `nc`, echoing the request's.
    pub nc: Option<NonceCount>,
    /// Parameters this module does not interpret, in their original order.
    pub extensions: Vec<AuthParam>,
}

impl AuthenticationInfo {
    /// Reads an `Authentication-Info` value (RFC 3261 §25.1 `ainfo` list, no scheme).
    pub fn parse(value: &str) -> Result<AuthenticationInfo, ParseError> {
        let mut ps = Params::new(parse_param_list(value)?);
        let nextnonce = ps.take("nextnonce")?.map(|p| p.value);
        let qop = ps
            .take("qop")?
            .map(|p| Qop::from_name(p.value.trim()).ok_or(ParseError::InvalidValue("qop")))
            .transpose()?;
        let rspauth = ps.take("rspauth")?.map(|p| p.value);
        let cnonce = ps.take("cnonce")?.map(|p| p.value);
        let nc = ps
            .take("nc")?
            .map(|p| p.value.trim().parse::<NonceCount>())
            .transpose()?;
        Ok(AuthenticationInfo {
            nextnonce,
            qop,
            rspauth,
            cnonce,
            nc,
            extensions: ps.finish()?,
        })
    }
}

impl fmt::Display for AuthenticationInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = Separator::new();
        if let Some(n) = &self.nextnonce {
            sep.next(f)?;
            f.write_str("nextnonce=")?;
            write_quoted(f, n)?;
        }
        if let Some(q) = self.qop {
            sep.next(f)?;
            write!(f, "qop={q}")?;
        }
        if let Some(r) = &self.rspauth {
            sep.next(f)?;
            f.write_str("rspauth=")?;
            write_quoted(f, r)?;
        }
        if let Some(c) = &self.cnonce {
            sep.next(f)?;
            f.write_str("cnonce=")?;
            write_quoted(f, c)?;
        }
        if let Some(nc) = self.nc {
            sep.next(f)?;
            write!(f, "nc={nc}")?;
        }
        write_extensions(f, &mut sep, &self.extensions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC7616_CHALLENGE: &str = "Digest\r\n    realm=\"http-auth@example.org\",\r\n    qop=\"auth, auth-int\",\r\n    algorithm=SHA-256,\r\n    nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n    opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";

    #[test]
    fn challenge_reads_rfc7616_layout() {
        let c = Challenge::parse(RFC7616_CHALLENGE).unwrap();
        assert_eq!(c.realm, "http-auth@example.org");
        assert_eq!(c.algorithm, Some(Algorithm::Sha256));
        assert_eq!(c.qop, Some(vec![Qop::Auth, Qop::AuthInt]));
        assert_eq!(c.nonce, "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v");
        assert_eq!(
            c.opaque.as_deref(),
            Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
        );
        assert!(!c.stale);
        assert_eq!(Challenge::parse(&c.to_string()).unwrap(), c);
    }

    #[test]
    fn challenge_tolerates_order_case_and_unknowns() {
        let c = Challenge::parse(
            "digest NONCE=abc ,Stale=TRUE, ReAlm = \"r\", x-foo=\"bar baz\", qop=auth, y=1, algorithm=sha-256-SESS",
        )
        .unwrap();
        assert_eq!(c.realm, "r");
        assert_eq!(c.nonce, "abc");
        assert!(c.stale);
        assert_eq!(c.qop, Some(vec![Qop::Auth]));
        assert_eq!(c.algorithm, Some(Algorithm::Sha256Sess));
        assert_eq!(c.extensions.len(), 2);
        let printed = c.to_string();
        assert!(printed.contains("x-foo=\"bar baz\""), "{printed}");
        assert!(printed.contains("y=1"), "{printed}");
        assert_eq!(Challenge::parse(&printed).unwrap(), c);
    }

    #[test]
    fn challenge_errors_are_typed() {
        assert_eq!(
            Challenge::parse("Basic realm=\"x\""),
            Err(ParseError::NotDigest("Basic".into()))
        );
        assert_eq!(
            Challenge::parse("Digest realm=\"x\", nonce=\"n\", algorithm=AKAv1-MD5"),
            Err(ParseError::UnsupportedAlgorithm("AKAv1-MD5".into()))
        );
        assert_eq!(
            Challenge::parse("Digest nonce=\"n\""),
            Err(ParseError::MissingParam("realm"))
        );
        assert_eq!(
            Challenge::parse("Digest realm=a, nonce=b, realm=c"),
            Err(ParseError::DuplicateParam("realm"))
        );
        assert_eq!(
            Challenge::parse("Digest realm=a, nonce=b, Digest realm=c, nonce=d"),
            Err(ParseError::MultipleChallenges)
        );
    }

    #[test]
    fn parse_all_keeps_good_challenges_next_to_others() {
        let all = Challenge::parse_all(
            "Basic realm=\"b\", Digest realm=\"d\", nonce=\"n\", algorithm=SHA-256, Digest realm=\"d\", nonce=\"n\", algorithm=AKAv1-MD5",
        )
        .unwrap();
        assert_eq!(all.len(), 3);
        assert!(matches!(all[0], Err(ParseError::NotDigest(_))));
        assert_eq!(all[1].as_ref().unwrap().algorithm, Some(Algorithm::Sha256));
        assert!(matches!(all[2], Err(ParseError::UnsupportedAlgorithm(_))));
    }

    #[test]
    fn qop_list_variants() {
        for (v, want) in [
            ("\"auth,auth-int\"", vec![Qop::Auth, Qop::AuthInt]),
            ("\"auth-int , auth\"", vec![Qop::AuthInt, Qop::Auth]),
            ("auth", vec![Qop::Auth]),
            ("\"auth, token, auth\"", vec![Qop::Auth]),
            ("\"x-new\"", vec![]),
        ] {
            let c = Challenge::parse(&format!("Digest realm=r, nonce=n, qop={v}")).unwrap();
            assert_eq!(c.qop, Some(want), "{v}");
        }
        let c = Challenge::parse("Digest realm=r, nonce=n").unwrap();
        assert_eq!(c.qop, None);
        assert_eq!(c.effective_algorithm(), Algorithm::Md5);
    }

    #[test]
    fn credentials_round_trip_and_rules() {
        let v = "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", uri=\"/dir/index.html\", algorithm=MD5, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", nc=00000001, cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, response=\"8ca523f5e9506fed4657c9700eebdbec\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
        let c = Credentials::parse(v).unwrap();
        assert_eq!(c.username, "Mufasa");
        assert_eq!(c.nc, Some(NonceCount(1)));
        assert_eq!(c.qop, Some(Qop::Auth));
        assert_eq!(Credentials::parse(&c.to_string()).unwrap(), c);

        // Quoted qop and nc are tolerated.
        let q = v
            .replace("qop=auth", "qop=\"auth\"")
            .replace("nc=00000001", "nc=\"00000001\"");
        assert_eq!(Credentials::parse(&q).unwrap(), c);

        for (bad, err) in [
            (
                v.replace("nc=00000001, ", ""),
                ParseError::MissingParam("nc"),
            ),
            (
                v.replace(
                    "cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", ",
                    "",
                ),
                ParseError::MissingParam("cnonce"),
            ),
            (
                v.replace("qop=auth", "qop=auth-conf"),
                ParseError::InvalidValue("qop"),
            ),
            (
                v.replace("nc=00000001", "nc=1"),
                ParseError::InvalidValue("nc"),
            ),
            (
                v.replace("uri=\"/dir/index.html\", ", ""),
                ParseError::MissingParam("uri"),
            ),
            (
                v.replace(
                    "username=\"Mufasa\"",
                    "username*=UTF-8''Mufasa, username=\"x\"",
                ),
                ParseError::InvalidValue("username*"),
            ),
        ] {
            assert_eq!(Credentials::parse(&bad), Err(err), "{bad}");
        }
    }

    #[test]
    fn credentials_extended_username() {
        let v = "Digest username*=UTF-8''J%C3%A4s%C3%B8n%20Doe, realm=\"api@example.org\", uri=\"/doe.json\", nonce=\"n\", response=\"r\"";
        let c = Credentials::parse(v).unwrap();
        assert_eq!(c.username, "J\u{e4}s\u{f8}n Doe");
        assert!(c.username_extended);
        assert_eq!(c.qop, None);
        let printed = c.to_string();
        assert!(
            printed.starts_with("Digest username*=UTF-8''J%C3%A4s%C3%B8n%20Doe, "),
            "{printed}"
        );
        assert_eq!(Credentials::parse(&printed).unwrap(), c);
        // username* may not come with userhash=true (RFC 7616 §3.4.4).
        assert_eq!(
            Credentials::parse(&format!("{v}, userhash=true")),
            Err(ParseError::InvalidValue("username*"))
        );
    }

    #[test]
    fn large_hostile_values_stay_linear() {
        // 64 KiB of distinct extension parameters (the duplicate check must not be
        // quadratic), and the same with one repeated name.
        let many: String = (0..8000).map(|i| format!("x{i}=1,")).collect();
        let c = Challenge::parse(&format!("Digest realm=r, nonce=n, {many}")).unwrap();
        assert_eq!(c.extensions.len(), 8000);
        assert!(matches!(
            Challenge::parse(&format!("Digest realm=r, nonce=n, {many} X0=2")),
            Err(ParseError::DuplicateExtension(_))
        ));
        let long = "\\\"".repeat(20_000);
        let c = Challenge::parse(&format!("Digest realm=\"{long}\", nonce=n")).unwrap();
        assert_eq!(c.realm, "\"".repeat(20_000));
    }

    #[test]
    fn authentication_info_round_trip() {
        let v = "nextnonce=\"47364c23432d2e131a5fb210812c\", qop=auth, rspauth=\"6629fae49393a05397450978507c4ef1\", cnonce=\"0a4f113b\", nc=00000001, x=y";
        let a = AuthenticationInfo::parse(v).unwrap();
        assert_eq!(a.nextnonce.as_deref(), Some("47364c23432d2e131a5fb210812c"));
        assert_eq!(a.qop, Some(Qop::Auth));
        assert_eq!(a.nc, Some(NonceCount(1)));
        assert_eq!(a.to_string(), v);
        assert!(AuthenticationInfo::parse("nextnonce").is_err());
    }
}
