//! Typed header accessors on a parsed message, and the builders the
//! transaction and dialog layers use.

use bytes::Bytes;
use vaxel_sip::msg::{
    self, CSeq, ErrorKind, HeaderName, Host, MediaType, Message, Method, NameAddr, Request,
    Response, SipUri, StatusCode, Transport, Via,
};

const REFER: &[u8] = b"REFER sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bK-1;rport, SIP/2.0/UDP proxy.example.com;branch=z9hG4bK-0;received=192.0.2.9;ttl=16\r\n\
Max-Forwards: 70\r\n\
f: \"Alice\" <sip:alice@atlanta.example.com>;tag=a1\r\n\
t: <sip:bob@biloxi.example.com>;tag=b2\r\n\
i: refer-1@atlanta.example.com\r\n\
CSeq: 93 REFER\r\n\
m: <sip:alice@192.0.2.4;transport=tls>;expires=60;q=0.5\r\n\
Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
r: <sip:carol@chicago.example.com?Replaces=12345%40192.0.2.1%3Bto-tag%3D1%3Bfrom-tag%3D2>\r\n\
b: <sip:alice@atlanta.example.com>\r\n\
Replaces: 12345@192.0.2.1;to-tag=1;from-tag=2;early-only\r\n\
o: refer;id=93\r\n\
u: presence, dialog, refer\r\n\
Subscription-State: active;expires=600\r\n\
Reason: SIP;cause=200;text=\"Call completed elsewhere\", Q.850;cause=16\r\n\
P-Asserted-Identity: \"Alice\" <sip:alice@atlanta.example.com>, <tel:+15551234567>\r\n\
P-Preferred-Identity: <sip:alice@atlanta.example.com>\r\n\
Privacy: id; header\r\n\
Diversion: <sip:+15550001@example.com>;reason=unconditional;counter=1\r\n\
History-Info: <sip:bob@biloxi.example.com>;index=1, <sip:bob@192.0.2.5>;index=1.1\r\n\
x: 1800;refresher=uac\r\n\
Min-SE: 90\r\n\
Allow: INVITE, ACK, BYE, CANCEL, REFER, NOTIFY\r\n\
k: replaces, timer\r\n\
Require: 100rel\r\n\
Proxy-Require: foo\r\n\
Unsupported: bar\r\n\
RSeq: 988789\r\n\
RAck: 776656 1 INVITE\r\n\
Date: Sat, 13 Nov 2010 23:29:00 GMT\r\n\
Expires: 3600\r\n\
Min-Expires: 60\r\n\
Retry-After: 120 (maintenance);duration=3600\r\n\
User-Agent: Vaxel/0.1 (test)\r\n\
Authorization: Digest username=\"alice\", realm=\"atlanta.example.com\", nonce=\"x\", uri=\"sip:bob@biloxi.example.com\", response=\"0123\", qop=auth, nc=00000001, cnonce=\"c\"\r\n\
c: text/plain;charset=utf-8\r\n\
l: 5\r\n\
\r\n\
hello";

fn refer() -> Request {
    match msg::parse(Bytes::from_static(REFER)).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => unreachable!(),
    }
}

#[test]
fn every_typed_accessor() {
    let r = refer();
    let h = &r.headers;
    assert_eq!(r.method, Method::Refer);
    let vias = h.vias().unwrap();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[0].transport, Transport::Tls);
    assert_eq!(vias[0].host, Host::V6("2001:db8::1".parse().unwrap()));
    assert!(vias[0].has_rport());
    assert_eq!(vias[1].received(), Some(Host::V4([192, 0, 2, 9].into())));
    assert_eq!(vias[1].ttl(), Some(16));
    assert_eq!(h.top_via().unwrap(), vias[0]);
    assert_eq!(h.from().unwrap().display_name().as_deref(), Some("Alice"));
    assert_eq!(h.to().unwrap().tag(), Some("b2"));
    assert_eq!(&*h.call_id().unwrap(), "refer-1@atlanta.example.com");
    assert_eq!(h.cseq().unwrap(), CSeq::new(93, Method::Refer));
    assert_eq!(h.max_forwards().unwrap(), Some(70));
    let c = h.contacts().unwrap();
    assert_eq!((c[0].expires(), c[0].q()), (Some(60), Some(500)));
    assert_eq!(
        c[0].address().unwrap().uri.as_sip().unwrap().transport(),
        Some("tls")
    );
    let routes = h.routes().unwrap();
    assert_eq!(routes.len(), 2);
    assert!(routes[1].uri.as_sip().unwrap().lr());
    assert!(h.record_routes().unwrap().is_empty());
    let refer_to = h.refer_to().unwrap().unwrap();
    assert!(
        refer_to
            .uri
            .as_sip()
            .unwrap()
            .headers
            .as_deref()
            .unwrap()
            .starts_with("Replaces=")
    );
    assert!(h.referred_by().unwrap().is_some());
    let rep = h.replaces().unwrap().unwrap();
    assert_eq!(
        (rep.to_tag(), rep.from_tag(), rep.early_only()),
        (Some("1"), Some("2"), true)
    );
    let ev = h.event().unwrap().unwrap();
    assert_eq!((&*ev.package, ev.id()), ("refer", Some("93")));
    assert_eq!(h.allow_events(), ["presence", "dialog", "refer"]);
    let ss = h.subscription_state().unwrap().unwrap();
    assert_eq!((&*ss.state, ss.expires()), ("active", Some(600)));
    let reasons = h.reasons().unwrap();
    assert_eq!(
        reasons[0].text().as_deref(),
        Some("Call completed elsewhere")
    );
    assert_eq!(
        (&*reasons[1].protocol, reasons[1].cause()),
        ("Q.850", Some(16))
    );
    let pai = h.p_asserted_identities().unwrap();
    assert_eq!(pai[1].uri.scheme(), "tel");
    assert_eq!(h.p_preferred_identities().unwrap().len(), 1);
    assert_eq!(h.privacy(), ["id", "header"]);
    assert_eq!(
        h.diversions().unwrap()[0].params.get("reason"),
        Some("unconditional")
    );
    let hi = h.history_info().unwrap();
    assert_eq!(hi[1].params.get("index"), Some("1.1"));
    let se = h.session_expires().unwrap().unwrap();
    assert_eq!((se.seconds, se.refresher()), (1800, Some("uac")));
    assert_eq!(h.min_se().unwrap(), Some(90));
    assert_eq!(h.allow().unwrap().len(), 6);
    assert_eq!(h.supported(), ["replaces", "timer"]);
    assert_eq!(h.require(), ["100rel"]);
    assert_eq!(h.proxy_require(), ["foo"]);
    assert_eq!(h.unsupported(), ["bar"]);
    assert_eq!(h.rseq().unwrap(), Some(988789));
    assert_eq!(h.rack().unwrap().unwrap().method, Method::Invite);
    assert_eq!(h.date().unwrap().unwrap().unix_timestamp(), 1_289_690_940);
    assert_eq!(h.expires().unwrap(), Some(3600));
    assert_eq!(h.min_expires().unwrap(), Some(60));
    assert_eq!(h.retry_after().unwrap(), Some(120));
    assert_eq!(h.user_agent().map(|u| &**u), Some("Vaxel/0.1 (test)"));
    assert!(h.server().is_none());
    assert_eq!(h.auth_values(&HeaderName::Authorization).unwrap().len(), 1);
    let ct = h.content_type().unwrap().unwrap();
    assert!(ct.is("text", "plain"));
    assert_eq!(ct.params.get("charset"), Some("utf-8"));
    assert_eq!(h.content_length().unwrap(), Some(5));
    assert_eq!(&r.body[..], b"hello");
}

#[test]
fn rejects_malformed_known_headers_and_names_them() {
    let cases: &[(&str, &str, ErrorKind)] = &[
        ("Max-Forwards", "256", ErrorKind::OutOfRange),
        ("Expires", "-1", ErrorKind::OutOfRange),
        ("Route", "sip:p1.example.com", ErrorKind::HeaderValue),
        ("Event", "", ErrorKind::HeaderValue),
        ("Replaces", "abc", ErrorKind::HeaderValue),
        ("Session-Expires", "soon", ErrorKind::OutOfRange),
        ("RSeq", "0x10", ErrorKind::OutOfRange),
        (
            "Date",
            "Sat, 13 Nov 2010 23:29:00 PST",
            ErrorKind::HeaderValue,
        ),
        ("Authorization", "Digest realm=\"x", ErrorKind::HeaderValue),
        ("Supported", "a b", ErrorKind::HeaderValue),
        ("Content-Type", "text", ErrorKind::HeaderValue),
        ("Call-ID", "a b", ErrorKind::HeaderValue),
    ];
    for (name, value, kind) in cases {
        let raw = format!(
            "OPTIONS sip:a@b.example SIP/2.0\r\nVia: SIP/2.0/UDP h.example;branch=z9hG4bK1\r\nTo: <sip:a@b.example>\r\nFrom: <sip:c@d.example>;tag=1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n{name}: {value}\r\nContent-Length: 0\r\n\r\n"
        );
        let e = msg::parse(Bytes::from(raw.clone())).unwrap_err();
        assert_eq!(e.kind(), *kind, "{name}: {value}: {e}");
        assert_eq!(e.header(), Some(&HeaderName::new(name).unwrap()), "{name}");
        let reply = msg::bad_request_reply(raw.as_bytes(), &e);
        if *name != "Call-ID" {
            let reply = reply.unwrap();
            assert_eq!(reply.status, StatusCode::BAD_REQUEST);
            assert!(reply.reason.contains(name), "{}", reply.reason);
        }
    }
    // Unknown headers are never checked beyond the header-line syntax.
    let raw =
        "OPTIONS sip:a@b.example SIP/2.0\r\nX-Anything: ;;,,\"<<\r\nContent-Length: 0\r\n\r\n";
    let m = msg::parse(Bytes::from_static(raw.as_bytes())).unwrap();
    assert_eq!(
        m.headers()
            .get(&HeaderName::new("x-anything").unwrap())
            .unwrap(),
        ";;,,\"<<"
    );
    // ... but a line without a colon is.
    let raw = "OPTIONS sip:a@b.example SIP/2.0\r\nX-Anything\r\n\r\n";
    assert_eq!(
        msg::parse(Bytes::from_static(raw.as_bytes()))
            .unwrap_err()
            .kind(),
        ErrorKind::HeaderLine
    );
    // Headers must be UTF-8; the body need not be.
    let raw = b"OPTIONS sip:a@b.example SIP/2.0\r\nSubject: \xff\r\nContent-Length: 1\r\n\r\n\xff";
    assert_eq!(
        msg::parse(Bytes::from_static(raw)).unwrap_err().kind(),
        ErrorKind::NotUtf8
    );
    let raw = b"OPTIONS sip:a@b.example SIP/2.0\r\nContent-Length: 1\r\n\r\n\xff";
    assert_eq!(
        &msg::parse(Bytes::from_static(raw)).unwrap().body()[..],
        b"\xff"
    );
}

#[test]
fn builders() {
    let uri = SipUri::new(Host::parse("biloxi.example.com").unwrap()).with_user("bob");
    let mut req = Request::new(Method::Invite, uri);
    let via = Via::new(
        Transport::Udp,
        Host::parse("192.0.2.4").unwrap(),
        Some(5060),
    )
    .with_branch("z9hG4bKnashds8")
    .with_rport();
    req.headers.push_value(HeaderName::Via, &via);
    req.headers.push(HeaderName::MaxForwards, "70");
    let from = NameAddr::new("sip:alice@atlanta.example.com".parse::<msg::Uri>().unwrap())
        .with_display_name("Alice \"A\" Liddell")
        .with_tag("1928301774");
    req.headers.push_value(HeaderName::From, &from);
    req.headers.push_value(
        HeaderName::To,
        &NameAddr::new("sip:bob@biloxi.example.com".parse::<msg::Uri>().unwrap()),
    );
    req.headers.push(
        HeaderName::CallId,
        "a84b4c76e66710@pc33.atlanta.example.com",
    );
    req.headers
        .push_value(HeaderName::CSeq, &CSeq::new(314159, Method::Invite));
    req.headers
        .push(HeaderName::RecordRoute, "<sip:p1.example.com;lr>");
    req.set_body(
        &MediaType::new("application", "sdp").unwrap(),
        Bytes::from_static(b"v=0\r\n"),
    );
    let wire = req.to_bytes();
    let text = String::from_utf8(wire.to_vec()).unwrap();
    assert!(text.starts_with("INVITE sip:bob@biloxi.example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bKnashds8;rport\r\n"));
    assert!(text.contains(
        "From: \"Alice \\\"A\\\" Liddell\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    ));
    assert!(text.ends_with("Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n"));
    let Message::Request(back) = msg::parse(wire).unwrap() else {
        unreachable!()
    };
    assert_eq!(back, req.clone().tap_content_length());
    back.clone().headers.vias().unwrap();

    // §8.2.6.2 / §12.1.1: the response copies Via, From, To, Call-ID, CSeq
    // (and Record-Route for 101..=299) and gets a To tag.
    let mut ok = Response::from_request(&back, StatusCode::OK);
    ok.set_to_tag("a6c85cf").unwrap();
    let names: Vec<&str> = ok.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        ["Via", "From", "To", "Call-ID", "CSeq", "Record-Route"]
    );
    assert_eq!(ok.headers.to().unwrap().tag(), Some("a6c85cf"));
    let busy = Response::from_request(&back, StatusCode::BUSY_HERE);
    assert!(!busy.headers.contains(&HeaderName::RecordRoute));
    assert_eq!(&*busy.reason, "Busy Here");
    let printed = ok.to_string();
    assert!(printed.starts_with("SIP/2.0 200 OK\r\n"));
    assert!(printed.ends_with("Content-Length: 0\r\n\r\n"));
    assert!(ok.set_to_tag("bad tag").is_err());
}

trait TapContentLength {
    fn tap_content_length(self) -> Self;
}

impl TapContentLength for Request {
    /// The request as it reads back: printing added a Content-Length.
    fn tap_content_length(mut self) -> Self {
        self.headers
            .push(HeaderName::ContentLength, self.body.len().to_string());
        self
    }
}
