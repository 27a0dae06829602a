//! The endpoint driver in process, on loopback: what reaches the TU, what the
//! network sees, and the counters.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio::time::timeout;
use vaxel_sip::msg::{
    self, HeaderName, Message, Method, NameAddr, Request, Response, StatusCode, Uri,
};
use vaxel_sip::transaction::TxEvent;
use vaxel_transport::{
    Endpoint, EndpointConfig, EndpointHandle, Events, Peer, SocketsConfig, Target, TransportKind,
};

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn endpoint(udp: bool, tcp: bool) -> (EndpointHandle, Events) {
    Endpoint::start(EndpointConfig {
        sockets: SocketsConfig {
            udp: if udp { vec![loopback()] } else { vec![] },
            tcp: if tcp { vec![loopback()] } else { vec![] },
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap()
}

async fn next(events: &mut Events) -> TxEvent {
    timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("no event in 5 s")
        .expect("endpoint stopped")
}

/// An OPTIONS from `handle` to `to`, with a fresh branch.
fn options(
    handle: &EndpointHandle,
    transport: TransportKind,
    to: SocketAddr,
    cseq: u32,
) -> Request {
    let uri: Uri = format!("sip:peer@{to}").parse().unwrap();
    let mut r = Request::new(Method::Options, uri.clone());
    r.headers
        .push_value(HeaderName::Via, &handle.via(transport));
    r.headers.push(HeaderName::MaxForwards, "70");
    let from: Uri = "sip:test@127.0.0.1".parse().unwrap();
    r.headers
        .push_value(HeaderName::From, &NameAddr::new(from).with_tag("t1"));
    r.headers.push_value(HeaderName::To, &NameAddr::new(uri));
    r.headers.push(HeaderName::CallId, format!("call-{cseq}"));
    r.headers.push(HeaderName::CSeq, format!("{cseq} OPTIONS"));
    r
}

fn raw_options(via: &str, extra: &str) -> String {
    format!(
        "OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
         From: <sip:raw@127.0.0.1>;tag=r1\r\nTo: <sip:a@127.0.0.1>\r\n{extra}\
         CSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

async fn recv_text(sock: &UdpSocket) -> String {
    let mut buf = vec![0u8; 65_536];
    let (n, _) = timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("nothing came back in 5 s")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn received_and_rport_are_stamped_and_the_response_follows_rport() {
    let (handle, mut events) = endpoint(true, false).await;
    let server = handle.local_addr(TransportKind::Udp).unwrap();
    let raw = UdpSocket::bind(loopback()).await.unwrap();
    let raw_port = raw.local_addr().unwrap().port();
    // The sent-by is a NATed private address; the packet comes from 127.0.0.1:raw_port.
    let text = raw_options(
        "SIP/2.0/UDP 192.0.2.9:5099;rport;branch=z9hG4bK-nat",
        "Call-ID: nat-1\r\n",
    );
    raw.send_to(text.as_bytes(), server).await.unwrap();
    let TxEvent::Request { tx, request, from } = next(&mut events).await else {
        panic!("expected a request");
    };
    assert_eq!(from.addr, raw.local_addr().unwrap());
    let via = request.headers.top_via().unwrap();
    assert_eq!(
        via.received().map(|h| h.to_string()).as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(via.rport(), Some(raw_port));
    handle
        .send_response(tx, Response::from_request(&request, StatusCode::OK))
        .await
        .unwrap();
    // The response reaches the source port, not 5099 (RFC 3581 §4).
    let reply = recv_text(&raw).await;
    assert!(reply.starts_with("SIP/2.0 200 OK\r\n"), "{reply}");
    assert!(reply.contains(&format!("rport={raw_port}")), "{reply}");
    handle.stop().await;
}

#[tokio::test]
async fn malformed_datagrams_are_answered_counted_and_survived() {
    let (handle, mut events) = endpoint(true, false).await;
    let server = handle.local_addr(TransportKind::Udp).unwrap();
    let raw = UdpSocket::bind(loopback()).await.unwrap();
    let me = raw.local_addr().unwrap();
    let via = format!("SIP/2.0/UDP {me};branch=z9hG4bK-bad");
    // Content-Length past the datagram: 400.
    let bad_cl =
        raw_options(&via, "Call-ID: bad-1\r\n").replace("Content-Length: 0", "Content-Length: 99");
    raw.send_to(bad_cl.as_bytes(), server).await.unwrap();
    let reply = recv_text(&raw).await;
    assert!(reply.starts_with("SIP/2.0 400 "), "{reply}");
    assert!(reply.contains("Call-ID: bad-1"), "{reply}");
    // No Call-ID: no response can be matched; dropped and counted.
    raw.send_to(raw_options(&via, "").as_bytes(), server)
        .await
        .unwrap();
    // Not SIP at all, and a broken response: dropped and counted.
    raw.send_to(b"GET / HTTP/1.1\r\n\r\n", server)
        .await
        .unwrap();
    raw.send_to(b"SIP/2.0 200 OK\r\nVia: nonsense\r\n\r\n", server)
        .await
        .unwrap();
    // A keep-alive is not malformed.
    raw.send_to(b"\r\n\r\n", server).await.unwrap();
    // And the endpoint still serves.
    let good = raw_options(
        &format!("SIP/2.0/UDP {me};branch=z9hG4bK-good"),
        "Call-ID: good-1\r\n",
    );
    raw.send_to(good.as_bytes(), server).await.unwrap();
    let TxEvent::Request { request, .. } = next(&mut events).await else {
        panic!("expected the good request");
    };
    assert_eq!(&*request.headers.call_id().unwrap(), "good-1");
    let s = handle.stats();
    assert_eq!(s.malformed, 4, "{s:?}");
    assert_eq!(s.bad_requests_answered, 1, "{s:?}");
    assert_eq!(s.messages_received, 5, "{s:?}");
    handle.stop().await;
}

/// Answers every request 200 until stopped.
fn answer_all(handle: EndpointHandle, mut events: Events) -> tokio::task::JoinHandle<Vec<Peer>> {
    tokio::spawn(async move {
        let mut froms = Vec::new();
        while let Some(ev) = events.recv().await {
            if let TxEvent::Request { tx, request, from } = ev {
                froms.push(from);
                let ok = Response::from_request(&request, StatusCode::OK);
                let _ = handle.send_response(tx, ok).await;
            }
        }
        froms
    })
}

async fn final_response(events: &mut Events) -> Response {
    loop {
        if let TxEvent::Response { response, .. } = next(events).await
            && response.status.is_final()
        {
            return response;
        }
    }
}

#[tokio::test]
async fn tcp_requests_both_ways_share_one_connection() {
    let (server, server_events) = endpoint(false, true).await;
    let (client, mut client_events) = endpoint(false, true).await;
    let server_addr = server.local_addr(TransportKind::Tcp).unwrap();
    let target = Target::new(TransportKind::Tcp, server_addr);
    let answering = answer_all(server.clone(), server_events);

    for cseq in 1..=3 {
        let r = options(&client, TransportKind::Tcp, server_addr, cseq);
        client.send_request(r, target.clone()).await.unwrap();
        assert_eq!(
            final_response(&mut client_events).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(client.stats().connections_opened, 1);
    assert_eq!(server.stats().connections_accepted, 1);

    server.stop().await;
    let froms = answering.await.unwrap();
    assert_eq!(froms.len(), 3);
    assert!(froms.iter().all(|f| *f == froms[0]));
    assert_eq!(client.stats().connections_accepted, 0);
    client.stop().await;
}

#[tokio::test]
async fn server_requests_reuse_the_clients_connection() {
    let (server, mut server_events) = endpoint(false, true).await;
    let (client, client_events) = endpoint(false, true).await;
    let server_addr = server.local_addr(TransportKind::Tcp).unwrap();
    let _client_answers = answer_all(client.clone(), client_events);
    // The client's first request opens the connection...
    let r = options(&client, TransportKind::Tcp, server_addr, 1);
    client
        .send_request(r, Target::new(TransportKind::Tcp, server_addr))
        .await
        .unwrap();
    let TxEvent::Request { tx, request, from } = next(&mut server_events).await else {
        panic!("expected a request");
    };
    server
        .send_response(tx, Response::from_request(&request, StatusCode::OK))
        .await
        .unwrap();
    // ...and the server's own request to that peer goes over it.
    let back = options(&server, TransportKind::Tcp, from.addr, 9);
    server
        .send_request(
            back,
            Target {
                peer: from,
                server_name: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        final_response(&mut server_events).await.status,
        StatusCode::OK
    );
    assert_eq!(server.stats().connections_opened, 0);
    assert_eq!(client.stats().connections_accepted, 0);
    assert_eq!(client.stats().connections_opened, 1);
    server.stop().await;
    client.stop().await;
}

#[tokio::test]
async fn a_connection_dropped_mid_transaction_is_a_transport_error() {
    let listener = TcpListener::bind(loopback()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    // A peer that reads the request and hangs up without answering.
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
    });
    let (client, mut events) = endpoint(false, false).await;
    let r = options(&client, TransportKind::Tcp, addr, 1);
    let key = client
        .send_request(r, Target::new(TransportKind::Tcp, addr))
        .await
        .unwrap();
    loop {
        match next(&mut events).await {
            TxEvent::TransportError { tx } => {
                assert_eq!(tx, key);
                break;
            }
            TxEvent::Terminated { .. } => {}
            other => panic!("expected a transport error, got {other:?}"),
        }
    }
    assert!(client.stats().transport_errors >= 1);

    // Nothing listening at all: the same, through a failed connect.
    let closed = TcpListener::bind(loopback()).await.unwrap();
    let nowhere = closed.local_addr().unwrap();
    drop(closed);
    let r = options(&client, TransportKind::Tcp, nowhere, 2);
    let key = client
        .send_request(r, Target::new(TransportKind::Tcp, nowhere))
        .await
        .unwrap();
    loop {
        match next(&mut events).await {
            TxEvent::TransportError { tx } if tx == key => break,
            TxEvent::Terminated { .. } | TxEvent::TransportError { .. } => {}
            other => panic!("expected a transport error, got {other:?}"),
        }
    }
    client.stop().await;
}

#[tokio::test]
async fn udp_keep_alive_and_misuse_errors() {
    let (handle, _events) = endpoint(true, false).await;
    let raw = UdpSocket::bind(loopback()).await.unwrap();
    let peer = Peer {
        transport: TransportKind::Udp,
        addr: raw.local_addr().unwrap(),
    };
    handle.keep_alive(peer).await.unwrap();
    let mut buf = [0u8; 16];
    let (n, _) = timeout(Duration::from_secs(5), raw.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"\r\n\r\n");
    // A stream keep-alive needs an open connection.
    let tcp_peer = Peer {
        transport: TransportKind::Tcp,
        addr: peer.addr,
    };
    assert!(handle.keep_alive(tcp_peer).await.is_err());
    // A request without a proper branch is our mistake: an error, not an event.
    let mut r = options(&handle, TransportKind::Udp, peer.addr, 1);
    r.headers
        .set(HeaderName::Via, "SIP/2.0/UDP 127.0.0.1:1;branch=nocookie");
    assert!(
        handle
            .send_request(r, Target::new(TransportKind::Udp, peer.addr))
            .await
            .is_err()
    );
    // Parsing what the endpoint prints round-trips.
    let r = options(&handle, TransportKind::Udp, peer.addr, 2);
    assert!(matches!(msg::parse(r.to_bytes()), Ok(Message::Request(_))));
    handle.stop().await;
    assert!(matches!(
        handle
            .send_request(r, Target::new(TransportKind::Udp, peer.addr))
            .await,
        Err(vaxel_transport::EndpointError::Stopped)
    ));
}
