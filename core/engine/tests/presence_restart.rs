//! Presence publications survive a restart of the engine process (RFC 3903 §6: the
//! ESC keeps a publication until it lapses): a device's refresh PUBLISH with
//! `SIP-If-Match` after a `kill -9` and restart gets 200, a watcher subscribing
//! afterwards sees what was published, the presence set through the control API
//! is still there, and a publication that lapsed while the engine was down is gone
//! (412 to its refresh).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use vaxel_sip::auth::{ChallengeKind, DigestClient, Secret};
use vaxel_sip::msg::{HeaderName, Message, Request, Response};

/// A SIP endpoint on a plain UDP socket speaking for one user (digest on demand).
struct Raw {
    sock: UdpSocket,
    local: SocketAddr,
    engine: SocketAddr,
    user: &'static str,
    password: &'static str,
    cseq: u32,
}

impl Raw {
    fn new(engine: SocketAddr, user: &'static str, password: &'static str) -> Raw {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let local = sock.local_addr().unwrap();
        Raw {
            sock,
            local,
            engine,
            user,
            password,
            cseq: 0,
        }
    }

    /// The next message within `secs`.
    fn recv(&self, secs: u64) -> Option<Message> {
        let end = Instant::now() + Duration::from_secs(secs);
        let mut buf = vec![0u8; 8192];
        while Instant::now() < end {
            if let Ok(n) = self.sock.recv(&mut buf) {
                return vaxel_sip::msg::parse(Bytes::copy_from_slice(&buf[..n])).ok();
            }
        }
        None
    }

    fn response(&self, secs: u64) -> Response {
        loop {
            match self.recv(secs) {
                Some(Message::Response(r)) if r.status.as_u16() >= 200 => return r,
                Some(_) => {}
                None => panic!("no final response within {secs} s"),
            }
        }
    }

    /// Sends `method` to `target` with `headers` and `body`; answers the digest
    /// challenge (407) once; the final response.
    fn request(&mut self, method: &str, target: &str, headers: &str, body: &str) -> Response {
        let uri = format!("sip:{target}@{DOMAIN}");
        let mut auth = String::new();
        loop {
            self.cseq += 1;
            let text = format!(
                "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bK{method}{c}x{p};rport\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:{u}@{d}>;tag=t{method}{p}\r\nTo: <{uri}>\r\n\
                 Call-ID: {method}-{p}-{l}\r\nCSeq: {c} {method}\r\nContact: <sip:{u}@{l}>\r\n\
                 {headers}{auth}Content-Length: {n}\r\n\r\n{body}",
                l = self.local,
                c = self.cseq,
                u = self.user,
                d = DOMAIN,
                p = self.local.port(),
                n = body.len(),
            );
            self.sock.send_to(text.as_bytes(), self.engine).unwrap();
            let r = self.response(5);
            if r.status.as_u16() != 407 || !auth.is_empty() {
                return r;
            }
            let values: Vec<String> = r
                .headers
                .get_all(&HeaderName::ProxyAuthenticate)
                .map(|v| v.to_string())
                .collect();
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            let mut client = DigestClient::new(self.user, Secret::Password(self.password.into()));
            client
                .handle_challenge(ChallengeKind::Proxy, &refs)
                .unwrap();
            let a = client.authorize(method, &uri, body.as_bytes(), "0a4f113b");
            auth = format!("Proxy-Authorization: {}\r\n", a[0].credentials);
        }
    }

    /// Answers a request 200 (copying Via, From, To, Call-ID, CSeq).
    fn ok(&self, r: &Request) {
        let h = |n: HeaderName| {
            r.headers
                .get_all(&n)
                .map(|v| format!("{}: {v}\r\n", n.as_str()))
                .collect::<String>()
        };
        let text = format!(
            "SIP/2.0 200 OK\r\n{}{}{}{}{}Content-Length: 0\r\n\r\n",
            h(HeaderName::Via),
            h(HeaderName::From),
            h(HeaderName::To),
            h(HeaderName::CallId),
            h(HeaderName::CSeq)
        );
        self.sock.send_to(text.as_bytes(), self.engine).unwrap();
    }
}

/// A PIDF document with an RPID activity and note (RFC 3863, RFC 4480).
fn pidf(user: &str, activity: &str, note: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:{user}@{DOMAIN}">
<tuple id="t1"><status><basic>open</basic></status></tuple>
<dm:person id="p1"><rpid:activities><rpid:{activity}/></rpid:activities><dm:note>{note}</dm:note></dm:person>
</presence>
"#
    )
}

fn etag(r: &Response) -> String {
    r.headers
        .get(&HeaderName::new("SIP-ETag").unwrap())
        .map(|v| v.to_string())
        .unwrap_or_else(|| panic!("no SIP-ETag in {r:?}"))
}

/// `PUT`/`GET` on the control API with a bearer token; status and JSON body.
fn http(api: SocketAddr, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(api).unwrap();
    let auth = if token.is_empty() {
        String::new()
    } else {
        format!("Authorization: Bearer {token}\r\n")
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn login(api: SocketAddr, user: &str, password: &str) -> String {
    let (st, body) = http(
        api,
        "POST",
        "/api/login",
        "",
        &format!(r#"{{"username":"{user}","password":"{password}"}}"#),
    );
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

/// `ext`'s presence as the control API shows it (`GET /api/presence`).
fn presence_of(api: SocketAddr, token: &str, ext: &str) -> serde_json::Value {
    let (st, body) = http(api, "GET", "/api/presence", token, "");
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v[ext].clone()
}

#[test]
fn publications_survive_a_restart() {
    let dir = temp_dir("presence-restart");
    let office = office("[protection]\nallow = [\"127.0.0.1\"]\n");
    let sip_port = free_port();
    let engine = EngineProc::start(&dir, Some(&office), sip_port);

    // Alice's desk phone: in a meeting for an hour.
    let mut alice = Raw::new(engine.sip, "4001", "alice-pw");
    let r = alice.request(
        "PUBLISH",
        "4001",
        "Event: presence\r\nExpires: 3600\r\nContent-Type: application/pidf+xml\r\n",
        &pidf("4001", "meeting", "Budget review"),
    );
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    let alice_tag = etag(&r);
    // Bob's: lunch, for the shortest lifetime; it lapses while the engine is down.
    let mut bob = Raw::new(engine.sip, "4002", "bob-pw");
    let r = bob.request(
        "PUBLISH",
        "4002",
        "Event: presence\r\nExpires: 5\r\nContent-Type: application/pidf+xml\r\n",
        &pidf("4002", "lunch", "Back soon"),
    );
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    let bob_tag = etag(&r);
    // Carla sets "vacation" through the control API.
    let carla = login(engine.api, "4003", "carla-pw");
    let (st, body) = http(
        engine.api,
        "PUT",
        "/api/me/presence",
        &carla,
        r#"{"activity":"vacation","note":"Until Monday"}"#,
    );
    assert_eq!(st, 200, "{body}");
    std::thread::sleep(Duration::from_millis(300));

    // kill -9, wait for Bob's publication to lapse, start again on the same data.
    engine.kill9();
    std::thread::sleep(Duration::from_secs(6));
    let engine = EngineProc::start(&dir, Some(&office), sip_port);
    alice.engine = engine.sip;
    bob.engine = engine.sip;

    // A watcher subscribing now sees Alice's meeting and note (RFC 3856 NOTIFY).
    let mut dan = Raw::new(engine.sip, "4004", "dan-pw");
    let r = dan.request(
        "SUBSCRIBE",
        "4001",
        "Event: presence\r\nAccept: application/pidf+xml\r\nExpires: 60\r\n",
        "",
    );
    assert!(
        matches!(r.status.as_u16(), 200 | 202),
        "SUBSCRIBE accepted: {r:?}"
    );
    let notify = loop {
        match dan.recv(5) {
            Some(Message::Request(n)) => {
                dan.ok(&n);
                break n;
            }
            Some(_) => {}
            None => panic!("no NOTIFY"),
        }
    };
    let body = String::from_utf8_lossy(&notify.body).to_string();
    assert!(
        body.contains("meeting") && body.contains("Budget review"),
        "{body}"
    );

    // Alice's phone refreshes with its entity-tag: 200 and a new tag (RFC 3903 §6).
    let r = alice.request(
        "PUBLISH",
        "4001",
        &format!("Event: presence\r\nExpires: 3600\r\nSIP-If-Match: {alice_tag}\r\n"),
        "",
    );
    assert_eq!(r.status.as_u16(), 200, "refresh after the restart: {r:?}");
    assert_ne!(etag(&r), alice_tag);
    // Bob's lapsed while the engine was down: 412 (§6 step 3).
    let r = bob.request(
        "PUBLISH",
        "4002",
        &format!("Event: presence\r\nExpires: 3600\r\nSIP-If-Match: {bob_tag}\r\n"),
        "",
    );
    assert_eq!(r.status.as_u16(), 412, "{r:?}");

    // The control API's presence is there too; Bob's lunch is not.
    let token = login(engine.api, "4003", "carla-pw");
    let c = presence_of(engine.api, &token, "4003");
    assert_eq!(c["activity"], "vacation", "{c}");
    assert_eq!(c["note"], "Until Monday", "{c}");
    let b = presence_of(engine.api, &token, "4002");
    assert!(b.is_object(), "{b}");
    assert!(b["activity"].is_null(), "{b}");
}
