//! Digest authentication against the published examples (RFC 2069 with erratum 749,
//! RFC 2617 §3.5, RFC 7616 §3.9.1 and §3.9.2 with erratum 4897), then client ↔ server
//! round trips for every algorithm and qop, and the failure paths a registrar must get
//! right. Time is a plain number of seconds and randomness fixed bytes: no clock, no RNG.

use vaxel_sip::auth::{
    Algorithm, AuthInfoError, AuthenticationInfo, Challenge, ChallengeError, ChallengeKind,
    Credentials, DigestClient, DigestHash, DigestInput, DigestServer, MutualAuth, NonceCount, Qop,
    QopPreference, RejectReason, RequestParts, Secret, ServerConfig, StaleReason, StoredUser,
    UserQuery, Verification, ha1, userhash,
};

// ---------------------------------------------------------------------------------------
// Published examples
// ---------------------------------------------------------------------------------------

/// RFC 2617 §3.5 (the `WWW-Authenticate` exactly as printed there, folded lines and all).
const RFC2617_CHALLENGE: &str = "Digest\r\n                 realm=\"testrealm@host.com\",\r\n                 qop=\"auth,auth-int\",\r\n                 nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\r\n                 opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";
const RFC2617_AUTHORIZATION: &str = "Digest username=\"Mufasa\",\r\n                 realm=\"testrealm@host.com\",\r\n                 nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\r\n                 uri=\"/dir/index.html\",\r\n                 qop=auth,\r\n                 nc=00000001,\r\n                 cnonce=\"0a4f113b\",\r\n                 response=\"6629fae49393a05397450978507c4ef1\",\r\n                 opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";

#[test]
fn rfc2617_section_3_5() {
    let mut client = DigestClient::new("Mufasa", Secret::Password("Circle Of Life".into()));
    client
        .handle_challenge(ChallengeKind::Www, &[RFC2617_CHALLENGE])
        .unwrap();
    let sent = client.authorize("GET", "/dir/index.html", b"", "0a4f113b");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].header_name(), "Authorization");
    assert_eq!(
        sent[0].credentials,
        Credentials::parse(RFC2617_AUTHORIZATION).unwrap()
    );
    assert_eq!(
        sent[0].credentials.response,
        "6629fae49393a05397450978507c4ef1"
    );
}

#[test]
fn rfc2069_form_with_erratum_749() {
    // RFC 2069 §2.4's example (password "CircleOfLife", no qop). The response printed
    // there, e966c932…, is wrong; erratum 749 gives 1949323746fe6a43ef61f9606e7febea.
    let challenge = "Digest realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";
    let mut client = DigestClient::new("Mufasa", Secret::Password("CircleOfLife".into()));
    client
        .handle_challenge(ChallengeKind::Www, &[challenge])
        .unwrap();
    let sent = client.authorize("GET", "/dir/index.html", b"", "unused");
    assert_eq!(
        sent[0].credentials.to_string(),
        "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", response=\"1949323746fe6a43ef61f9606e7febea\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""
    );
    // The same inputs with RFC 2617's password, as several implementations test.
    let mut client = DigestClient::new("Mufasa", Secret::Password("Circle Of Life".into()));
    client
        .handle_challenge(ChallengeKind::Www, &[challenge])
        .unwrap();
    let sent = client.authorize("GET", "/dir/index.html", b"", "unused");
    assert_eq!(
        sent[0].credentials.response,
        "670fd8c2df070c60b045671b8b24ff02"
    );
}

/// RFC 7616 §3.9.1: the two challenges of the 401, SHA-256 first.
const RFC7616_SHA256_CHALLENGE: &str = "Digest\r\n    realm=\"http-auth@example.org\",\r\n    qop=\"auth, auth-int\",\r\n    algorithm=SHA-256,\r\n    nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n    opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
const RFC7616_MD5_CHALLENGE: &str = "Digest\r\n    realm=\"http-auth@example.org\",\r\n    qop=\"auth, auth-int\",\r\n    algorithm=MD5,\r\n    nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n    opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
const RFC7616_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

fn rfc7616_authorization(algorithm: &str, response: &str) -> String {
    format!(
        "Digest username=\"Mufasa\",\r\n    realm=\"http-auth@example.org\",\r\n    uri=\"/dir/index.html\",\r\n    algorithm={algorithm},\r\n    nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n    nc=00000001,\r\n    cnonce=\"{RFC7616_CNONCE}\",\r\n    qop=auth,\r\n    response=\"{response}\",\r\n    opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
    )
}

#[test]
fn rfc7616_section_3_9_1_sha256_and_md5() {
    let sha256 = rfc7616_authorization(
        "SHA-256",
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
    );
    let md5 = rfc7616_authorization("MD5", "8ca523f5e9506fed4657c9700eebdbec");

    // Both challenges offered: the client takes SHA-256 (strongest, and first).
    let mut client = DigestClient::new("Mufasa", Secret::Password("Circle of Life".into()));
    client
        .handle_challenge(
            ChallengeKind::Www,
            &[RFC7616_MD5_CHALLENGE, RFC7616_SHA256_CHALLENGE],
        )
        .unwrap();
    let sent = client.authorize("GET", "/dir/index.html", b"", RFC7616_CNONCE);
    assert_eq!(sent[0].credentials, Credentials::parse(&sha256).unwrap());

    // Only MD5 offered.
    let mut client = DigestClient::new("Mufasa", Secret::Password("Circle of Life".into()));
    client
        .handle_challenge(ChallengeKind::Www, &[RFC7616_MD5_CHALLENGE])
        .unwrap();
    let sent = client.authorize("GET", "/dir/index.html", b"", RFC7616_CNONCE);
    assert_eq!(sent[0].credentials, Credentials::parse(&md5).unwrap());

    // The computation alone, from a stored HA1.
    for (alg, header) in [(Algorithm::Sha256, &sha256), (Algorithm::Md5, &md5)] {
        let c = Credentials::parse(header).unwrap();
        let stored = ha1(alg, "Mufasa", "http-auth@example.org", "Circle of Life");
        let got = DigestInput {
            algorithm: alg,
            ha1: &stored,
            nonce: &c.nonce,
            cnonce: RFC7616_CNONCE,
            nc: NonceCount(1),
            qop: Some(Qop::Auth),
            method: "GET",
            uri: "/dir/index.html",
            body: b"",
        }
        .response();
        assert_eq!(got, c.response);
    }
}

#[test]
fn rfc7616_vectors_checked_by_the_server() {
    // The RFC's nonce is not ours, so a *correct* digest earns Stale (come back with our
    // nonce), a wrong one Rejected: the server's verdict proves the digest check.
    let mut config = ServerConfig::new(ChallengeKind::Www, "http-auth@example.org");
    config.check_uri = true;
    let mut server = DigestServer::new(config, vec![42; 32]).unwrap();
    let request = RequestParts {
        method: "GET",
        request_uri: "/dir/index.html",
        body: b"",
    };
    for (alg, response) in [
        (
            "SHA-256",
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        ),
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ] {
        for (password, want) in [
            ("Circle of Life", Verification::Stale(StaleReason::Unknown)),
            (
                "Circle Of Life",
                Verification::Rejected(RejectReason::WrongResponse),
            ),
        ] {
            let header = rfc7616_authorization(alg, response);
            let got = server.verify(&request, &[&header], 1_000, |q| {
                (q.username == "Mufasa").then(|| StoredUser {
                    username: "Mufasa".into(),
                    ha1: ha1(q.hash, "Mufasa", q.realm, password),
                })
            });
            assert_eq!(got, want, "{alg} {password}");
        }
    }
}

/// RFC 7616 §3.9.2, SHA-512-256 with userhash and a non-ASCII username.
const RFC7616_USERHASH_CHALLENGE: &str = "Digest\r\n    realm=\"api@example.org\",\r\n    qop=\"auth\",\r\n    algorithm=SHA-512-256,\r\n    nonce=\"5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK\",\r\n    opaque=\"HRPCssKJSGjCrkzDg8OhwpzCiGPChXYjwrI2QmXDnsOS\",\r\n    charset=UTF-8,\r\n    userhash=true";
/// The `Authorization` exactly as RFC 7616 §3.9.2 prints it.
const RFC7616_USERHASH_AUTHORIZATION_AS_PRINTED: &str = "Digest\r\n    username=\"488869477bf257147b804c45308cd62ac4e25eb717b12b298c79e62dcea254ec\",\r\n    realm=\"api@example.org\",\r\n    uri=\"/doe.json\",\r\n    algorithm=SHA-512-256,\r\n    nonce=\"5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK\",\r\n    nc=00000001,\r\n    cnonce=\"NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v\",\r\n    qop=auth,\r\n    response=\"ae66e67d6b427bd3f120414a82e4acff38e8ecd9101d6c861229025f607a79dd\",\r\n    opaque=\"HRPCssKJSGjCrkzDg8OhwpzCiGPChXYjwrI2QmXDnsOS\",\r\n    userhash=true";
const JASON: &str = "J\u{e4}s\u{f8}n Doe";

#[test]
fn rfc7616_section_3_9_2_sha512_256_userhash() {
    // The userhash and response printed in RFC 7616 §3.9.2 (488869…, ae66e6…) are not the
    // hashes of the inputs printed next to them; erratum 4897 corrects them to the values
    // below, which Python's hashlib and other implementations reproduce as well.
    const USERHASH: &str = "793263caabb707a56211940d90411ea4a575adeccb7e360aeb624ed06ece9b0b";
    const RESPONSE: &str = "3798d4131c277846293534c3edc11bd8a5e4cdcbff78b05db9d95eeb1cec68a5";

    let ch = Challenge::parse(RFC7616_USERHASH_CHALLENGE).unwrap();
    assert_eq!(ch.algorithm, Some(Algorithm::Sha512_256));
    assert!(ch.userhash);
    assert_eq!(ch.charset.as_deref(), Some("UTF-8"));
    assert_eq!(
        userhash(DigestHash::Sha512_256, JASON, "api@example.org"),
        USERHASH
    );

    let mut client = DigestClient::new(JASON, Secret::Password("Secret, or not?".into()));
    client
        .handle_challenge(ChallengeKind::Www, &[RFC7616_USERHASH_CHALLENGE])
        .unwrap();
    let sent = client.authorize(
        "GET",
        "/doe.json",
        b"",
        "NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v",
    );
    // Everything but the two corrected hashes is as printed in the RFC.
    let mut expected = Credentials::parse(RFC7616_USERHASH_AUTHORIZATION_AS_PRINTED).unwrap();
    assert_eq!(
        expected.username,
        "488869477bf257147b804c45308cd62ac4e25eb717b12b298c79e62dcea254ec"
    );
    expected.username = USERHASH.into();
    expected.response = RESPONSE.into();
    assert_eq!(sent[0].credentials, expected);

    // The RFC's other form: username* instead of a userhash, same response.
    let star = "Digest\r\n    username*=UTF-8''J%C3%A4s%C3%B8n%20Doe,\r\n    realm=\"api@example.org\",\r\n    uri=\"/doe.json\",\r\n    algorithm=SHA-512-256,\r\n    nonce=\"5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK\",\r\n    nc=00000001,\r\n    cnonce=\"NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v\",\r\n    qop=auth,\r\n    response=\"3798d4131c277846293534c3edc11bd8a5e4cdcbff78b05db9d95eeb1cec68a5\",\r\n    opaque=\"HRPCssKJSGjCrkzDg8OhwpzCiGPChXYjwrI2QmXDnsOS\",\r\n    userhash=false";
    let c = Credentials::parse(star).unwrap();
    assert_eq!(c.username, JASON);
    assert!(c.username_extended && !c.userhash);
    assert_eq!(c.response, RESPONSE);

    // A server holding Jäsøn's HA1 finds the user behind the hash and checks the digest
    // (Stale: the nonce is the RFC's, not ours; the digest was right).
    let mut config = ServerConfig::new(ChallengeKind::Www, "api@example.org");
    config.algorithms = vec![Algorithm::Sha512_256];
    config.userhash = true;
    let mut server = DigestServer::new(config, vec![1; 32]).unwrap();
    let request = RequestParts {
        method: "GET",
        request_uri: "/doe.json",
        body: b"",
    };
    let stored = ha1(
        DigestHash::Sha512_256,
        JASON,
        "api@example.org",
        "Secret, or not?",
    );
    let lookup = |q: &UserQuery<'_>| {
        q.matches(JASON).then(|| StoredUser {
            username: JASON.into(),
            ha1: stored.clone(),
        })
    };
    let corrected = sent[0].credentials.to_string();
    for header in [corrected.as_str(), star] {
        assert_eq!(
            server.verify(&request, &[header], 5, lookup),
            Verification::Stale(StaleReason::Unknown)
        );
    }
    assert!(matches!(
        server.verify(
            &request,
            &[RFC7616_USERHASH_AUTHORIZATION_AS_PRINTED],
            5,
            lookup
        ),
        Verification::Rejected(RejectReason::UnknownUser)
    ));
}

// ---------------------------------------------------------------------------------------
// Client ↔ server
// ---------------------------------------------------------------------------------------

const REALM: &str = "vaxel.test";
const KEY: [u8; 32] = [0x5a; 32];
const T0: u64 = 1_700_000_000;

struct Directory {
    users: Vec<(&'static str, &'static str)>,
}

impl Directory {
    fn new() -> Self {
        Directory {
            users: vec![("alice", "wonderland"), ("bob", "builder")],
        }
    }

    /// What provisioning stored: one HA1 per hash, never the password.
    fn lookup(&self, q: &UserQuery<'_>) -> Option<StoredUser> {
        self.users
            .iter()
            .find(|(name, _)| q.matches(name))
            .map(|(name, password)| StoredUser {
                username: (*name).into(),
                ha1: ha1(q.hash, name, q.realm, password),
            })
    }
}

fn random(n: u8) -> [u8; 16] {
    [n; 16]
}

fn server(kind: ChallengeKind, algorithm: Algorithm, qop: Option<Qop>) -> DigestServer {
    let mut config = ServerConfig::new(kind, REALM);
    config.algorithms = vec![algorithm];
    config.qop = qop.into_iter().collect();
    DigestServer::new(config, KEY.to_vec()).unwrap()
}

fn challenge_values(server: &DigestServer, now: u64, n: u8, stale: bool) -> Vec<String> {
    server
        .challenge(now, random(n), stale)
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

const URI: &str = "sip:vaxel.test";
const SDP: &[u8] = b"v=0\r\no=alice 1 1 IN IP4 192.0.2.1\r\n";

fn request(body: &'static [u8]) -> RequestParts<'static> {
    RequestParts {
        method: "INVITE",
        request_uri: URI,
        body,
    }
}

#[test]
fn round_trip_every_algorithm_qop_kind_and_userhash() {
    let dir = Directory::new();
    for kind in [ChallengeKind::Www, ChallengeKind::Proxy] {
        for algorithm in Algorithm::ALL {
            for qop in [None, Some(Qop::Auth), Some(Qop::AuthInt)] {
                if qop.is_none() && algorithm.is_session() {
                    continue; // not a valid configuration (ConfigError::SessionWithoutQop)
                }
                for hashed in [false, true] {
                    let ctx = format!("{kind:?} {algorithm} {qop:?} userhash={hashed}");
                    let mut config = ServerConfig::new(kind, REALM);
                    config.algorithms = vec![algorithm];
                    config.qop = qop.into_iter().collect();
                    config.userhash = hashed;
                    let mut srv = DigestServer::new(config, KEY.to_vec()).unwrap();
                    let mut client =
                        DigestClient::new("alice", Secret::Password("wonderland".into()))
                            .with_qop_preference(QopPreference::AuthInt);

                    let values = challenge_values(&srv, T0, 1, false);
                    client.handle_challenge(kind, &refs(&values)).unwrap();
                    for round in 1..=3u32 {
                        let now = T0 + u64::from(round);
                        let sent = client.authorize("INVITE", URI, SDP, &format!("cn{round}"));
                        assert_eq!(sent.len(), 1, "{ctx}");
                        assert_eq!(sent[0].header_name(), kind.credentials_header());
                        let header = sent[0].credentials.to_string();
                        assert_eq!(sent[0].credentials.userhash, hashed, "{ctx}");
                        let verdict = srv.verify(&request(SDP), &[&header], now, |q| dir.lookup(q));
                        let Verification::Authenticated(user) = verdict else {
                            panic!("{ctx} round {round}: {verdict:?}");
                        };
                        assert_eq!(user.username(), "alice");
                        assert_eq!(user.algorithm(), algorithm);
                        assert_eq!(user.qop(), qop);
                        assert_eq!(user.nonce_count(), qop.map(|_| NonceCount(round)), "{ctx}");
                        if qop.is_none() {
                            // RFC 2069 form: no nc, so nothing more to check per round.
                            break;
                        }
                        // Mutual authentication, over a response body.
                        let info = srv.authentication_info(&user, b"answer-sdp", None);
                        assert!(info.rspauth.is_some(), "{ctx}");
                        assert_eq!(
                            client.verify_authentication_info(
                                &sent[0],
                                &info.to_string(),
                                b"answer-sdp"
                            ),
                            Ok(MutualAuth::Verified),
                            "{ctx}"
                        );
                        if qop == Some(Qop::AuthInt) {
                            assert_eq!(
                                client.verify_authentication_info(
                                    &sent[0],
                                    &info.to_string(),
                                    b"other-sdp"
                                ),
                                Err(AuthInfoError::RspauthMismatch),
                                "{ctx}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn several_challenges_the_client_picks_and_the_server_accepts() {
    let dir = Directory::new();
    let mut config = ServerConfig::new(ChallengeKind::Www, REALM);
    config.algorithms = vec![Algorithm::Sha512_256, Algorithm::Sha256, Algorithm::Md5];
    config.qop = vec![Qop::Auth, Qop::AuthInt];
    let mut srv = DigestServer::new(config, KEY.to_vec()).unwrap();
    let values = challenge_values(&srv, T0, 1, false);
    assert_eq!(values.len(), 3);
    assert!(values[0].contains("algorithm=SHA-512-256"));
    assert!(values[0].contains("qop=\"auth,auth-int\""));
    let mut client = DigestClient::new("bob", Secret::Password("builder".into()));
    client
        .handle_challenge(ChallengeKind::Www, &refs(&values))
        .unwrap();
    let sent = client.authorize("REGISTER", URI, b"", "abc");
    assert_eq!(sent[0].credentials.algorithm, Some(Algorithm::Sha512_256));
    assert_eq!(sent[0].credentials.qop, Some(Qop::Auth));
    let header = sent[0].credentials.to_string();
    let req = RequestParts {
        method: "REGISTER",
        request_uri: URI,
        body: b"",
    };
    assert!(matches!(
        srv.verify(&req, &[&header], T0, |q| dir.lookup(q)),
        Verification::Authenticated(_)
    ));
}

#[test]
fn stale_nonce_flow() {
    let dir = Directory::new();
    let mut srv = server(ChallengeKind::Www, Algorithm::Sha256, Some(Qop::Auth));
    let lifetime = srv.config().nonce_lifetime_secs;
    let mut client = DigestClient::new("alice", Secret::Password("wonderland".into()));
    client
        .handle_challenge(
            ChallengeKind::Www,
            &refs(&challenge_values(&srv, T0, 1, false)),
        )
        .unwrap();
    let first = client.authorize("INVITE", URI, b"", "a").remove(0);
    assert!(matches!(
        srv.verify(
            &request(b""),
            &[&first.credentials.to_string()],
            T0 + 1,
            |q| dir.lookup(q)
        ),
        Verification::Authenticated(_)
    ));

    // Later the nonce is too old: right password, so stale, not rejected.
    let later = T0 + lifetime + 1;
    let again = client.authorize("INVITE", URI, b"", "b").remove(0);
    let verdict = srv.verify(
        &request(b""),
        &[&again.credentials.to_string()],
        later,
        |q| dir.lookup(q),
    );
    assert_eq!(verdict, Verification::Stale(StaleReason::Expired));
    assert!(verdict.is_stale());
    assert_eq!(verdict.response_status(ChallengeKind::Www), Some(401));
    let stale = challenge_values(&srv, later, 2, true);
    assert!(stale[0].contains("stale=true"));

    // The client retries on its own, without new credentials, with nc back at 1.
    client
        .handle_challenge(ChallengeKind::Www, &refs(&stale))
        .unwrap();
    let retry = client.authorize("INVITE", URI, b"", "c").remove(0);
    assert_eq!(retry.credentials.nc, Some(NonceCount(1)));
    assert!(matches!(
        srv.verify(
            &request(b""),
            &[&retry.credentials.to_string()],
            later + 1,
            |q| dir.lookup(q)
        ),
        Verification::Authenticated(_)
    ));

    // An expired nonce with a *wrong* digest is rejected, not stale (RFC 7616 §3.3).
    let mut wrong = again.credentials.clone();
    wrong.response = "0".repeat(64);
    assert_eq!(
        srv.verify(&request(b""), &[&wrong.to_string()], later, |q| dir
            .lookup(q)),
        Verification::Rejected(RejectReason::WrongResponse)
    );
}

#[test]
fn nc_replay_is_refused() {
    let dir = Directory::new();
    let mut srv = server(ChallengeKind::Proxy, Algorithm::Sha256, Some(Qop::Auth));
    let mut client = DigestClient::new("alice", Secret::Password("wonderland".into()));
    client
        .handle_challenge(
            ChallengeKind::Proxy,
            &refs(&challenge_values(&srv, T0, 1, false)),
        )
        .unwrap();
    let one = client
        .authorize("INVITE", URI, b"", "a")
        .remove(0)
        .credentials;
    let two = client
        .authorize("INVITE", URI, b"", "b")
        .remove(0)
        .credentials;
    let verify = |srv: &mut DigestServer, c: &Credentials| {
        srv.verify(&request(b""), &[&c.to_string()], T0 + 1, |q| dir.lookup(q))
    };
    // Out of order is fine (parallel requests over UDP) …
    assert!(matches!(
        verify(&mut srv, &two),
        Verification::Authenticated(_)
    ));
    assert!(matches!(
        verify(&mut srv, &one),
        Verification::Authenticated(_)
    ));
    // … the same nc twice is not.
    assert_eq!(
        verify(&mut srv, &one),
        Verification::Stale(StaleReason::Replayed)
    );
    assert_eq!(
        verify(&mut srv, &two),
        Verification::Stale(StaleReason::Replayed)
    );
    // A bumped nc without the password to recompute the digest is just wrong.
    let mut bumped = two.clone();
    bumped.nc = Some(NonceCount(3));
    assert_eq!(
        verify(&mut srv, &bumped),
        Verification::Rejected(RejectReason::WrongResponse)
    );
    // And that forgery did not burn nc 3 for the honest client.
    let three = client
        .authorize("INVITE", URI, b"", "c")
        .remove(0)
        .credentials;
    assert_eq!(three.nc, Some(NonceCount(3)));
    assert!(matches!(
        verify(&mut srv, &three),
        Verification::Authenticated(_)
    ));
}

#[test]
fn bounded_replay_memory_stays_sound() {
    let dir = Directory::new();
    let mut config = ServerConfig::new(ChallengeKind::Www, REALM);
    config.max_tracked_nonces = 2;
    let mut srv = DigestServer::new(config, KEY.to_vec()).unwrap();
    let mut sent = Vec::new();
    for n in 0..3u8 {
        let mut c = DigestClient::new("alice", Secret::Password("wonderland".into()));
        let now = T0 + u64::from(n);
        c.handle_challenge(
            ChallengeKind::Www,
            &refs(&challenge_values(&srv, now, n, false)),
        )
        .unwrap();
        let cred = c.authorize("INVITE", URI, b"", "x").remove(0).credentials;
        assert!(matches!(
            srv.verify(&request(b""), &[&cred.to_string()], now, |q| dir.lookup(q)),
            Verification::Authenticated(_)
        ));
        sent.push(cred);
    }
    // The first nonce was forgotten to make room; its replay cannot be told from a new
    // use, so it is refused as stale rather than accepted.
    assert_eq!(
        srv.verify(&request(b""), &[&sent[0].to_string()], T0 + 3, |q| dir
            .lookup(q)),
        Verification::Stale(StaleReason::Forgotten)
    );
}

#[test]
fn wrong_password_and_unknown_user_look_the_same_and_stop_the_client() {
    let dir = Directory::new();
    let mut srv = server(ChallengeKind::Www, Algorithm::Sha256, Some(Qop::Auth));
    let mut outcomes = Vec::new();
    for (user, password) in [("alice", "guess"), ("mallory", "wonderland")] {
        let mut client = DigestClient::new(user, Secret::Password(password.into()));
        client
            .handle_challenge(
                ChallengeKind::Www,
                &refs(&challenge_values(&srv, T0, 1, false)),
            )
            .unwrap();
        let cred = client
            .authorize("INVITE", URI, b"", "a")
            .remove(0)
            .credentials;
        let verdict = srv.verify(&request(b""), &[&cred.to_string()], T0, |q| dir.lookup(q));
        assert!(matches!(verdict, Verification::Rejected(_)), "{verdict:?}");
        // What the peer sees: the same status and a fresh, non-stale challenge.
        outcomes.push((
            verdict.response_status(ChallengeKind::Www),
            verdict.is_stale(),
        ));

        // The phone reports the refusal instead of resending.
        let fresh = challenge_values(&srv, T0 + 1, 2, false);
        assert_eq!(
            client.handle_challenge(ChallengeKind::Www, &refs(&fresh)),
            Err(ChallengeError::Rejected {
                realm: REALM.into()
            })
        );
        assert!(client.authorize("INVITE", URI, b"", "b").is_empty());
    }
    assert_eq!(outcomes[0], outcomes[1]);
    assert_eq!(outcomes[0], (Some(401), false));
}

#[test]
fn auth_int_covers_the_body() {
    let dir = Directory::new();
    let mut srv = server(ChallengeKind::Www, Algorithm::Sha256, Some(Qop::AuthInt));
    let mut client = DigestClient::new("alice", Secret::Password("wonderland".into()));
    client
        .handle_challenge(
            ChallengeKind::Www,
            &refs(&challenge_values(&srv, T0, 1, false)),
        )
        .unwrap();
    let cred = client
        .authorize("INVITE", URI, SDP, "a")
        .remove(0)
        .credentials;
    assert_eq!(cred.qop, Some(Qop::AuthInt));
    let tampered = RequestParts {
        body: b"v=0\r\no=mallory 1 1 IN IP4 203.0.113.9\r\n",
        ..request(SDP)
    };
    assert_eq!(
        srv.verify(&tampered, &[&cred.to_string()], T0, |q| dir.lookup(q)),
        Verification::Rejected(RejectReason::WrongResponse)
    );
    assert!(matches!(
        srv.verify(&request(SDP), &[&cred.to_string()], T0, |q| dir.lookup(q)),
        Verification::Authenticated(_)
    ));

    // With qop=auth the body is not covered: a changed body still verifies.
    let mut srv = server(ChallengeKind::Www, Algorithm::Sha256, Some(Qop::Auth));
    let mut client = DigestClient::new("alice", Secret::Password("wonderland".into()));
    client
        .handle_challenge(
            ChallengeKind::Www,
            &refs(&challenge_values(&srv, T0, 1, false)),
        )
        .unwrap();
    let cred = client
        .authorize("INVITE", URI, SDP, "a")
        .remove(0)
        .credentials;
    assert!(matches!(
        srv.verify(&tampered, &[&cred.to_string()], T0, |q| dir.lookup(q)),
        Verification::Authenticated(_)
    ));
}

#[test]
fn server_policy_checks() {
    let dir = Directory::new();
    let mut srv = server(ChallengeKind::Www, Algorithm::Sha256, Some(Qop::Auth));
    let values = challenge_values(&srv, T0, 1, false);
    let nonce = Challenge::parse(&values[0]).unwrap().nonce;
    let verify = |srv: &mut DigestServer, values: &[&str]| {
        srv.verify(&request(b""), values, T0, |q| dir.lookup(q))
    };
    let answer = |alg: &str, qop: Option<&str>, uri: &str| {
        let mut client = DigestClient::new("alice", Secret::Password("wonderland".into()));
        let q = qop.map_or(String::new(), |q| format!(", qop=\"{q}\""));
        let ch = format!("Digest realm=\"{REALM}\", nonce=\"{nonce}\", algorithm={alg}{q}");
        client.handle_challenge(ChallengeKind::Www, &[&ch]).unwrap();
        client
            .authorize("INVITE", uri, b"", "a")
            .remove(0)
            .credentials
            .to_string()
    };

    // Nothing for us: challenge.
    assert_eq!(verify(&mut srv, &[]), Verification::NoCredentials);
    let other_realm = "Digest username=\"alice\", realm=\"elsewhere\", nonce=\"n\", uri=\"sip:x\", response=\"00\"";
    assert_eq!(
        verify(&mut srv, &[other_realm]),
        Verification::NoCredentials
    );
    assert_eq!(
        verify(&mut srv, &["Basic YWxpY2U6d29uZGVybGFuZA=="]),
        Verification::NoCredentials
    );
    // Ours is found among several realms' credentials (RFC 3261 §22.3).
    let good = answer("SHA-256", Some("auth"), URI);
    assert!(matches!(
        verify(&mut srv, &[other_realm, &good]),
        Verification::Authenticated(_)
    ));
    // A downgrade to an algorithm we did not offer.
    assert_eq!(
        verify(&mut srv, &[&answer("MD5", Some("auth"), URI)]),
        Verification::Rejected(RejectReason::AlgorithmNotOffered)
    );
    // Dropping qop (RFC 2069 form) when we require it.
    assert_eq!(
        verify(&mut srv, &[&answer("SHA-256", None, URI)]),
        Verification::Rejected(RejectReason::QopNotOffered)
    );
    // Credentials for another Request-URI: 400 (RFC 7616 §3.4.6).
    let moved = verify(
        &mut srv,
        &[&answer("SHA-256", Some("auth"), "sip:other.test")],
    );
    assert!(matches!(moved, Verification::Malformed(_)));
    assert_eq!(moved.response_status(ChallengeKind::Www), Some(400));
    // Unreadable credentials: 400.
    let broken = verify(&mut srv, &["Digest username=\"alice"]);
    assert!(matches!(broken, Verification::Malformed(_)));
    // An algorithm nobody implements.
    let aka = "Digest username=\"alice\", realm=\"vaxel.test\", nonce=\"n\", uri=\"sip:vaxel.test\", response=\"00\", algorithm=AKAv1-MD5";
    assert_eq!(
        verify(&mut srv, &[aka]),
        Verification::Rejected(RejectReason::AlgorithmNotOffered)
    );
}

#[test]
fn nextnonce_and_rspauth_on_the_client() {
    let dir = Directory::new();
    let mut srv = server(ChallengeKind::Www, Algorithm::Sha256Sess, Some(Qop::Auth));
    let mut client = DigestClient::new("alice", Secret::Password("wonderland".into()));
    client
        .handle_challenge(
            ChallengeKind::Www,
            &refs(&challenge_values(&srv, T0, 1, false)),
        )
        .unwrap();
    let sent = client.authorize("REGISTER", URI, b"", "a").remove(0);
    let req = RequestParts {
        method: "REGISTER",
        request_uri: URI,
        body: b"",
    };
    let Verification::Authenticated(user) =
        srv.verify(&req, &[&sent.credentials.to_string()], T0, |q| {
            dir.lookup(q)
        })
    else {
        panic!("not authenticated");
    };
    let info = srv.authentication_info(&user, b"", Some((T0 + 10, random(9))));
    let next = info.nextnonce.clone().unwrap();
    let value = info.to_string();
    assert_eq!(AuthenticationInfo::parse(&value).unwrap(), info);
    assert_eq!(
        ChallengeKind::Www.authentication_info_header(),
        Some("Authentication-Info")
    );

    // A forged rspauth is caught, and its nextnonce not taken.
    let mut forged = info.clone();
    forged.rspauth = Some("0".repeat(64));
    assert_eq!(
        client.verify_authentication_info(&sent, &forged.to_string(), b""),
        Err(AuthInfoError::RspauthMismatch)
    );
    let mut echo = info.clone();
    echo.nc = Some(NonceCount(7));
    assert_eq!(
        client.verify_authentication_info(&sent, &echo.to_string(), b""),
        Err(AuthInfoError::EchoMismatch)
    );
    assert!(matches!(
        client.verify_authentication_info(&sent, "rspauth", b""),
        Err(AuthInfoError::Malformed(_))
    ));
    assert_eq!(
        client
            .verify_authentication_info(&sent, "nextnonce=\"x\"", b"")
            .ok(),
        Some(MutualAuth::NotOffered)
    );
    // The genuine one moves the client to the next nonce, nc from 1 again.
    assert_eq!(
        client.verify_authentication_info(&sent, &value, b""),
        Ok(MutualAuth::Verified)
    );
    let following = client.authorize("REGISTER", URI, b"", "b").remove(0);
    assert_eq!(following.credentials.nonce, next);
    assert_eq!(following.credentials.nc, Some(NonceCount(1)));
    assert!(matches!(
        srv.verify(&req, &[&following.credentials.to_string()], T0 + 11, |q| {
            dir.lookup(q)
        }),
        Verification::Authenticated(_)
    ));
}

#[test]
fn stored_ha1_client_against_server() {
    let dir = Directory::new();
    let mut srv = server(ChallengeKind::Www, Algorithm::Sha512_256, Some(Qop::Auth));
    let mut client = DigestClient::new(
        "alice",
        Secret::Ha1 {
            hash: DigestHash::Sha512_256,
            realm: REALM.into(),
            ha1: ha1(DigestHash::Sha512_256, "alice", REALM, "wonderland"),
        },
    );
    client
        .handle_challenge(
            ChallengeKind::Www,
            &refs(&challenge_values(&srv, T0, 1, false)),
        )
        .unwrap();
    let cred = client
        .authorize("INVITE", URI, b"", "a")
        .remove(0)
        .credentials;
    assert!(matches!(
        srv.verify(&request(b""), &[&cred.to_string()], T0, |q| dir.lookup(q)),
        Verification::Authenticated(_)
    ));
}

#[test]
fn challenge_kind_names_the_headers() {
    for (kind, status, read, write) in [
        (ChallengeKind::Www, 401, "WWW-Authenticate", "Authorization"),
        (
            ChallengeKind::Proxy,
            407,
            "Proxy-Authenticate",
            "Proxy-Authorization",
        ),
    ] {
        assert_eq!(ChallengeKind::from_status(status), Some(kind));
        assert_eq!(kind.status_code(), status);
        assert_eq!(kind.challenge_header(), read);
        assert_eq!(kind.credentials_header(), write);
    }
    assert_eq!(ChallengeKind::from_status(403), None);
    assert_eq!(ChallengeKind::Proxy.authentication_info_header(), None);
    assert_eq!(
        ChallengeKind::Proxy.reason_phrase(),
        "Proxy Authentication Required"
    );
}

// ---------------------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------------------

mod hostile {
    use super::*;
    use proptest::prelude::*;
    use vaxel_sip::auth::AuthParam;

    /// Strings made mostly of the grammar's own characters, to get past the first byte.
    fn headerish() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("Digest ".to_string()),
            Just("realm".to_string()),
            Just("nonce".to_string()),
            Just("qop".to_string()),
            Just("nc".to_string()),
            Just("username*".to_string()),
            Just("UTF-8''%C3%A4".to_string()),
            Just("algorithm=SHA-256".to_string()),
            "[=,\"\\\\ \t\r\na-z0-9%']{1,4}",
            any::<char>().prop_map(String::from),
        ];
        prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    /// Values without CR/LF, which a quoted string cannot carry (they print as spaces).
    fn text() -> impl Strategy<Value = String> {
        any::<String>()
    }

    fn printed(s: &str) -> String {
        s.replace(['\r', '\n'], " ")
    }

    fn opt_text() -> impl Strategy<Value = Option<String>> {
        prop::option::of(text())
    }

    fn algorithm() -> impl Strategy<Value = Option<Algorithm>> {
        prop::option::of(prop::sample::select(Algorithm::ALL.to_vec()))
    }

    fn extensions() -> impl Strategy<Value = Vec<AuthParam>> {
        prop::collection::btree_map("x-[a-z0-9]{1,6}", (text(), any::<bool>()), 0..3).prop_map(
            |m| {
                m.into_iter()
                    .map(|(name, (value, quoted))| AuthParam {
                        name,
                        value,
                        quoted,
                    })
                    .collect()
            },
        )
    }

    fn printed_extensions(e: &[AuthParam]) -> Vec<AuthParam> {
        e.iter()
            .map(|p| AuthParam {
                name: p.name.clone(),
                value: printed(&p.value),
                // A bare value that is not a valid bare value is printed quoted.
                quoted: p.quoted
                    || p.value.is_empty()
                    || !p
                        .value
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && !matches!(b, b',' | b'"' | b'\\' | b';')),
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn parsers_never_panic(s in any::<String>(), h in headerish()) {
            for v in [&s, &h] {
                let _ = Challenge::parse(v);
                let _ = Challenge::parse_all(v);
                let _ = Credentials::parse(v);
                let _ = AuthenticationInfo::parse(v);
                let _ = v.parse::<NonceCount>();
                let _ = v.parse::<Algorithm>();
            }
        }

        #[test]
        fn client_and_server_never_panic(h in headerish(), body in any::<Vec<u8>>()) {
            let mut client = DigestClient::new("alice", Secret::Password("pw".into()));
            let _ = client.handle_challenge(ChallengeKind::Www, &[&h]);
            let sent = client.authorize("INVITE", &h, &body, &h);
            for a in &sent {
                let _ = client.verify_authentication_info(a, &h, &body);
            }
            let mut srv = server(ChallengeKind::Www, Algorithm::Sha256, Some(Qop::Auth));
            let req = RequestParts { method: "INVITE", request_uri: &h, body: &body };
            let verdict = srv.verify(&req, &[&h], T0, |q| {
                Some(StoredUser { username: q.username.into(), ha1: h.clone() })
            });
            prop_assert!(!matches!(verdict, Verification::Authenticated(_)));
        }

        #[test]
        fn challenge_print_parse_round_trip(
            realm in text(), nonce in text(), domain in opt_text(), opaque in opt_text(),
            stale in any::<bool>(), algorithm in algorithm(),
            qop in prop::option::of(prop::sample::subsequence(vec![Qop::Auth, Qop::AuthInt], 0..=2)),
            charset in opt_text(), userhash in any::<bool>(), extensions in extensions(),
        ) {
            let c = Challenge {
                realm, domain, nonce, opaque, stale, algorithm, qop,
                charset, userhash, extensions,
            };
            let back = Challenge::parse(&c.to_string()).unwrap();
            prop_assert!(!c.to_string().contains(['\r', '\n']));
            let want = Challenge {
                realm: printed(&c.realm),
                domain: c.domain.as_deref().map(printed),
                nonce: printed(&c.nonce),
                opaque: c.opaque.as_deref().map(printed),
                charset: c.charset.as_deref().map(printed),
                extensions: printed_extensions(&c.extensions),
                ..c.clone()
            };
            prop_assert_eq!(back, want);
        }

        #[test]
        fn credentials_print_parse_round_trip(
            username in text(), extended in any::<bool>(), realm in text(), nonce in text(),
            uri in text(), response in "[0-9a-f]{0,64}", algorithm in algorithm(),
            cnonce in text(), opaque in opt_text(),
            qop in prop::option::of(prop::sample::select(vec![Qop::Auth, Qop::AuthInt])),
            nc in any::<u32>(), userhash in any::<bool>(), extensions in extensions(),
        ) {
            let c = Credentials {
                username, username_extended: extended && !userhash, realm, nonce, uri,
                response, algorithm, cnonce: qop.map(|_| cnonce), opaque, qop,
                nc: qop.map(|_| NonceCount(nc)), userhash, extensions,
            };
            let line = c.to_string();
            prop_assert!(!line.contains(['\r', '\n']));
            let back = Credentials::parse(&line).unwrap();
            let want = Credentials {
                username: if c.username_extended { c.username.clone() } else { printed(&c.username) },
                realm: printed(&c.realm),
                nonce: printed(&c.nonce),
                uri: printed(&c.uri),
                cnonce: c.cnonce.as_deref().map(printed),
                opaque: c.opaque.as_deref().map(printed),
                extensions: printed_extensions(&c.extensions),
                ..c.clone()
            };
            prop_assert_eq!(back, want);
        }
    }
}
