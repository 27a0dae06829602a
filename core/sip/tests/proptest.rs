//! Property tests of the message parser and printer:
//! - structured messages print to text that parses back to the same message;
//! - any message the parser accepts prints to text that parses back to it;
//! - parsing never panics, on arbitrary bytes or on mutated valid messages.

use bytes::Bytes;
use proptest::prelude::*;
use vaxel_sip::msg::{
    self, CSeq, Contact, Host, Message, Method, NameAddr, Request, Response, SipUri, StatusCode,
    Transport, Uri, Via,
};

fn without_content_length(m: &Message) -> Message {
    let mut m = m.clone();
    m.headers_mut().remove(&msg::HeaderName::ContentLength);
    m
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9.!%*_+`'~-]{1,12}"
}

fn host() -> impl Strategy<Value = Host> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,8}(\\.[a-z][a-z0-9-]{0,8}){0,3}".prop_map(|d| Host::parse(&d).unwrap()),
        any::<[u8; 4]>().prop_map(|a| Host::V4(a.into())),
        any::<[u16; 8]>().prop_map(|a| Host::V6(a.into())),
    ]
}

fn sip_uri() -> impl Strategy<Value = SipUri> {
    (
        any::<bool>(),
        proptest::option::of("\\PC{1,10}"),
        host(),
        proptest::option::of(any::<u16>()),
        proptest::collection::vec((token(), proptest::option::of("\\PC{1,6}")), 0..3),
        any::<bool>(),
    )
        .prop_map(|(secure, user, host, port, params, lr)| {
            let mut u = SipUri::new(host).with_secure(secure);
            if let Some(user) = user {
                u = u.with_user(&user);
            }
            if let Some(p) = port {
                u = u.with_port(p);
            }
            for (n, v) in params {
                u = u.with_param(&n, v.as_deref());
            }
            if lr {
                u = u.with_param("lr", None);
            }
            u
        })
}

fn name_addr() -> impl Strategy<Value = NameAddr> {
    (
        proptest::option::of("[^\r\n]{0,12}"),
        sip_uri(),
        proptest::option::of(token()),
    )
        .prop_map(|(d, u, tag)| {
            let mut a = NameAddr::new(u);
            if let Some(d) = d {
                a = a.with_display_name(&d);
            }
            if let Some(t) = tag {
                a = a.with_tag(&t);
            }
            a
        })
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Invite),
        Just(Method::Register),
        Just(Method::Options),
        Just(Method::Bye),
        Just(Method::Refer),
        token().prop_map(|t| Method::new(&t).unwrap()),
    ]
}

fn via() -> impl Strategy<Value = Via> {
    (
        prop_oneof![
            Just(Transport::Udp),
            Just(Transport::Tcp),
            Just(Transport::Tls),
            Just(Transport::Wss)
        ],
        host(),
        proptest::option::of(any::<u16>()),
        token(),
        any::<bool>(),
    )
        .prop_map(|(t, h, p, b, rport)| {
            let v = Via::new(t, h, p).with_branch(&format!("z9hG4bK{b}"));
            if rport { v.with_rport() } else { v }
        })
}

/// Unknown headers: a token name and a value without line breaks or edge whitespace.
fn extension_header() -> impl Strategy<Value = (String, String)> {
    (
        "X-[A-Za-z0-9-]{1,10}",
        "[^\r\n\t ]([^\r\n]{0,20}[^\r\n\t ])?",
    )
}

#[allow(clippy::too_many_arguments)]
fn common_headers(
    h: &mut msg::Headers,
    vias: &[Via],
    from: &NameAddr,
    to: &NameAddr,
    call_id: &str,
    cseq: &CSeq,
    contacts: &[NameAddr],
    ext: &[(String, String)],
) {
    for v in vias {
        h.push_value(msg::HeaderName::Via, v);
    }
    h.push_value(msg::HeaderName::From, from);
    h.push_value(msg::HeaderName::To, to);
    h.push(msg::HeaderName::CallId, call_id.to_owned());
    h.push_value(msg::HeaderName::CSeq, cseq);
    for c in contacts {
        h.push_value(msg::HeaderName::Contact, c);
    }
    for (n, v) in ext {
        h.push(msg::HeaderName::new(n).unwrap(), v.clone());
    }
}

prop_compose! {
    fn request()(
        method in method(),
        uri in sip_uri(),
        vias in proptest::collection::vec(via(), 1..4),
        from in name_addr(),
        to in name_addr(),
        call_id in "[A-Za-z0-9.!%*_+`'~()<>:\\\\\"/\\[\\]?{}-]{1,20}(@[a-z0-9.]{1,10})?",
        seq in 0u32..(1 << 31),
        contacts in proptest::collection::vec(name_addr(), 0..3),
        ext in proptest::collection::vec(extension_header(), 0..4),
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) -> Request {
        let mut r = Request::new(method.clone(), Uri::Sip(uri));
        common_headers(&mut r.headers, &vias, &from, &to, &call_id, &CSeq::new(seq, method), &contacts, &ext);
        r.headers.push(msg::HeaderName::MaxForwards, "70");
        r.body = Bytes::from(body);
        r
    }
}

prop_compose! {
    fn response()(
        code in 100u16..700,
        reason in "[^\r\n\x00-\x08\x0a-\x1f\x7f]{0,20}",
        method in method(),
        vias in proptest::collection::vec(via(), 1..3),
        from in name_addr(),
        to in name_addr(),
        seq in 0u32..(1 << 31),
        contacts in proptest::collection::vec(name_addr(), 0..2),
        ext in proptest::collection::vec(extension_header(), 0..3),
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) -> Response {
        let mut r = Response::new(StatusCode::new(code).unwrap());
        r.reason = reason.into();
        common_headers(&mut r.headers, &vias, &from, &to, "cid@example.com", &CSeq::new(seq, method), &contacts, &ext);
        r.body = Bytes::from(body);
        r
    }
}

fn corpus() -> Vec<Vec<u8>> {
    let dir = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/testdata/rfc4475"
    ));
    let dir = std::env::var_os("VAXEL_SHARED_DIR")
        .map(|d| std::path::PathBuf::from(d).join("testdata/rfc4475"))
        .unwrap_or(dir);
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "dat"))
                .filter_map(|e| std::fs::read(e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Any accepted message prints to text that parses back to it (Content-Length
/// aside: printing always writes one equal to the body).
fn check_reprint(raw: Bytes) {
    if let Ok(m) = msg::parse(raw) {
        let printed = m.to_bytes();
        let again = msg::parse(printed.clone()).unwrap_or_else(|e| {
            panic!(
                "reprint rejected: {e}\n{}",
                String::from_utf8_lossy(&printed)
            )
        });
        if m.validate().is_ok() {
            assert_eq!(without_content_length(&again), without_content_length(&m));
        }
        assert_eq!(msg::parse(again.to_bytes()).unwrap(), again);
        // The typed views of what parsed are usable.
        let h = again.headers();
        if h.contains(&msg::HeaderName::Via) {
            h.vias().unwrap();
        }
        h.contacts().unwrap();
        h.routes().unwrap();
        h.record_routes().unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn structured_requests_round_trip(r in request()) {
        let printed = r.to_bytes();
        let m = msg::parse(printed.clone()).unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&printed)));
        let Message::Request(p) = &m else { panic!("not a request") };
        prop_assert_eq!(&p.method, &r.method);
        prop_assert!(p.uri.equivalent(&r.uri));
        prop_assert_eq!(&p.body, &r.body);
        prop_assert_eq!(p.headers.vias().unwrap(), r.headers.vias().unwrap());
        prop_assert_eq!(p.headers.from().unwrap(), r.headers.from().unwrap());
        prop_assert_eq!(p.headers.to().unwrap(), r.headers.to().unwrap());
        prop_assert_eq!(p.headers.cseq().unwrap(), r.headers.cseq().unwrap());
        prop_assert_eq!(p.headers.contacts().unwrap(), r.headers.contacts().unwrap());
        m.validate().unwrap();
        // print(parse(print(x))) == print(x)
        prop_assert_eq!(m.to_bytes(), printed);
        check_reprint(m.to_bytes());
    }

    #[test]
    fn structured_responses_round_trip(r in response()) {
        let printed = r.to_bytes();
        let m = msg::parse(printed.clone()).unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&printed)));
        let Message::Response(p) = &m else { panic!("not a response") };
        prop_assert_eq!(p.status, r.status);
        prop_assert_eq!(&p.reason, &r.reason);
        prop_assert_eq!(&p.body, &r.body);
        prop_assert_eq!(p.headers.to().unwrap(), r.headers.to().unwrap());
        prop_assert_eq!(p.headers.contacts().unwrap().len(), r.headers.contacts().unwrap().len());
        prop_assert_eq!(m.to_bytes(), printed);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let raw = Bytes::from(data);
        check_reprint(raw.clone());
        if let Err(e) = msg::parse(raw.clone()) {
            let _ = msg::bad_request_reply(&raw, &e);
        }
    }

    #[test]
    fn mutated_messages_never_panic(
        pick in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..8),
    ) {
        let corpus = corpus();
        prop_assume!(!corpus.is_empty());
        let mut data = corpus[pick.index(corpus.len())].clone();
        for (at, byte, op) in edits {
            if data.is_empty() {
                break;
            }
            let i = at.index(data.len());
            match op {
                0 => data[i] = byte,
                1 => data.insert(i, byte),
                2 => { data.remove(i); }
                // Characters that matter to the grammar.
                _ => {
                    let special = b"\r\n :;,<>\"\\@[]%=";
                    data[i] = special[usize::from(byte) % special.len()];
                }
            }
        }
        let raw = Bytes::from(data);
        check_reprint(raw.clone());
        if let Err(e) = msg::parse(raw.clone()) {
            let _ = msg::bad_request_reply(&raw, &e);
        }
    }
}

#[test]
fn contact_wildcard_round_trip() {
    let raw = Bytes::from_static(b"REGISTER sip:r.example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@r.example.com>\r\nFrom: <sip:a@r.example.com>;tag=1\r\nCall-ID: 1\r\nCSeq: 2 REGISTER\r\nContact: *\r\nExpires: 0\r\nContent-Length: 0\r\n\r\n");
    let m = msg::parse(raw).unwrap();
    assert_eq!(m.headers().contacts().unwrap(), vec![Contact::Wildcard]);
    check_reprint(m.to_bytes());
}
