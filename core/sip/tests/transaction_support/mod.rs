//! Shared helpers for the transaction and dialog test suites: message
//! builders, peers and draining the layer's outputs.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use vaxel_sip::msg::{self, HeaderName, Message, Method, Request, Response, StatusCode};
use vaxel_sip::transaction::{Peer, Transactions, Transmit, TransportKind, TxEvent};

pub const ALICE: &str = "192.0.2.10:5060";
pub const BOB: &str = "192.0.2.20:5060";

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub fn peer(transport: TransportKind, a: &str) -> Peer {
    Peer {
        transport,
        addr: addr(a),
    }
}

pub fn udp(a: &str) -> Peer {
    peer(TransportKind::Udp, a)
}

pub fn tcp(a: &str) -> Peer {
    peer(TransportKind::Tcp, a)
}

pub fn parse(text: &str) -> Message {
    msg::parse(Bytes::from(text.replace('\n', "\r\n"))).unwrap_or_else(|e| panic!("{e}: {text}"))
}

pub fn parse_bytes(b: &Bytes) -> Message {
    msg::parse(b.clone()).unwrap()
}

pub fn request_text(method: &str, branch: &str, transport: TransportKind, seq: u32) -> String {
    format!(
        "{method} sip:bob@192.0.2.20 SIP/2.0
Via: SIP/2.0/{t} 192.0.2.10:5060;branch={branch}
Max-Forwards: 70
To: Bob <sip:bob@example.com>
From: Alice <sip:alice@example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.example.com
CSeq: {seq} {method}
Contact: <sip:alice@192.0.2.10>
Content-Length: 0

",
        t = transport.via_token()
    )
}

/// A request from Alice to Bob with the given method and branch.
pub fn request(method: &str, branch: &str, transport: TransportKind) -> Request {
    let Message::Request(r) = parse(&request_text(method, branch, transport, 1)) else {
        unreachable!()
    };
    r
}

pub fn invite(branch: &str) -> Request {
    request("INVITE", branch, TransportKind::Udp)
}

pub fn options(branch: &str) -> Request {
    request("OPTIONS", branch, TransportKind::Udp)
}

/// A response to `req` with a To tag (none for 100).
pub fn response(req: &Request, code: u16, to_tag: &str) -> Response {
    let status = StatusCode::new(code).unwrap();
    let mut r = Response::from_request(req, status);
    if code != 100 {
        r.set_to_tag(to_tag).unwrap();
    }
    r
}

pub fn transmits(tx: &mut Transactions) -> Vec<Transmit> {
    std::iter::from_fn(|| tx.poll_transmit()).collect()
}

pub fn events(tx: &mut Transactions) -> Vec<TxEvent> {
    std::iter::from_fn(|| tx.poll_event()).collect()
}

/// The first line of each transmit.
pub fn lines(ts: &[Transmit]) -> Vec<String> {
    ts.iter()
        .map(|t| {
            let s = String::from_utf8_lossy(&t.bytes);
            s.lines().next().unwrap_or("").to_owned()
        })
        .collect()
}

pub fn status_of(e: &TxEvent) -> Option<u16> {
    match e {
        TxEvent::Response { response, .. } => Some(response.status.as_u16()),
        _ => None,
    }
}

pub fn method_of(m: &Message) -> Option<Method> {
    match m {
        Message::Request(r) => Some(r.method.clone()),
        Message::Response(_) => None,
    }
}

pub fn header(m: &Message, name: HeaderName) -> Option<String> {
    m.headers().get(&name).map(|v| v.to_string())
}

pub mod sim;
