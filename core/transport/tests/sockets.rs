//! The socket layer on loopback: UDP, TCP and TLS round trips, connection
//! reuse, RFC 5626 keep-alives, and what a dropped connection reports.

use std::time::Duration;

use bytes::Bytes;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use vaxel_transport::sockets::CloseReason;
use vaxel_transport::{Inbound, Peer, Sockets, SocketsConfig, TransportKind, tls};

const MSG: &[u8] = b"OPTIONS sip:b@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK1\r\nContent-Length: 4\r\n\r\nbody";

fn loopback() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn self_signed() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    (cert, key)
}

async fn next(s: &mut Sockets) -> Inbound {
    timeout(Duration::from_secs(5), s.recv())
        .await
        .expect("nothing arrived in 5 s")
}

fn expect_message(i: Inbound) -> (Bytes, Peer) {
    match i {
        Inbound::Message { bytes, from, .. } => (bytes, from),
        other => panic!("expected a message, got {other:?}"),
    }
}

/// UDP served by threads of its own: datagrams both ways, batches handed over when
/// the runtime parks (`flush_udp`) and when full, keep-alives swallowed, and an
/// overloaded owner's excess dropped and counted rather than queued without bound.
#[test]
fn udp_threads_round_trip_batches_and_bounded_queue() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(vaxel_transport::sockets::flush_udp)
        .build()
        .unwrap();
    rt.block_on(async {
        let mut threaded = Sockets::bind(SocketsConfig {
            udp: vec![loopback()],
            udp_threads: true,
            ..Default::default()
        })
        .await
        .unwrap();
        let peer = tokio::net::UdpSocket::bind(loopback()).await.unwrap();
        let addr = threaded.local_addr(TransportKind::Udp).unwrap();
        let to_peer = Peer {
            transport: TransportKind::Udp,
            addr: peer.local_addr().unwrap(),
        };
        // Fewer than a batch: they go out when the runtime parks (awaiting the peer).
        for i in 0..3u8 {
            threaded
                .send(to_peer, Bytes::from(vec![b'a' + i; 10]))
                .unwrap();
        }
        let mut buf = [0u8; 2048];
        for i in 0..3u8 {
            let (n, from) = timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
                .await
                .expect("a small batch was not sent")
                .unwrap();
            assert_eq!(from, addr);
            assert_eq!(&buf[..n], &[b'a' + i; 10][..], "order kept");
        }
        // More than a batch, in order.
        for i in 0..100u32 {
            threaded.send(to_peer, Bytes::from(i.to_string())).unwrap();
        }
        for i in 0..100u32 {
            let (n, _) = timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&buf[..n], i.to_string().as_bytes());
        }
        // Receiving: a keep-alive is swallowed, a message handed up.
        peer.send_to(b"\r\n\r\n", addr).await.unwrap();
        peer.send_to(MSG, addr).await.unwrap();
        let (bytes, from) = expect_message(next(&mut threaded).await);
        assert_eq!(&bytes[..], MSG);
        assert_eq!(from.addr, to_peer.addr);
        // An owner that does not read: at most the bounded queue waits, the rest is
        // dropped and counted (the peer's socket paces itself on loopback).
        for _ in 0..6000 {
            peer.send_to(MSG, addr).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stats = threaded.stats().snapshot();
        assert!(stats.udp_dropped > 0, "nothing dropped: {stats:?}");
        let mut queued = 0;
        while threaded.try_recv().is_some() {
            queued += 1;
        }
        // The queue's bound (UDP_QUEUE_MAX) filled, no more.
        assert_eq!(queued, 2048, "{stats:?}");
    });
}

#[tokio::test]
async fn udp_round_trip() {
    let cfg = |_| SocketsConfig {
        udp: vec![loopback()],
        ..Default::default()
    };
    let mut a = Sockets::bind(cfg(())).await.unwrap();
    let mut b = Sockets::bind(cfg(())).await.unwrap();
    let b_addr = b.local_addr(TransportKind::Udp).unwrap();
    let to_b = Peer {
        transport: TransportKind::Udp,
        addr: b_addr,
    };
    a.send(to_b, Bytes::from_static(MSG)).unwrap();
    let (bytes, from) = expect_message(next(&mut b).await);
    assert_eq!(&bytes[..], MSG);
    assert_eq!(from.addr, a.local_addr(TransportKind::Udp).unwrap());
    b.send(from, Bytes::from_static(b"reply")).unwrap();
    let (bytes, _) = expect_message(next(&mut a).await);
    assert_eq!(&bytes[..], b"reply");
    // A UDP keep-alive is sent and swallowed by the receiver.
    a.keep_alive(to_b).unwrap();
    a.send(to_b, Bytes::from_static(b"after")).unwrap();
    let (bytes, _) = expect_message(next(&mut b).await);
    assert_eq!(&bytes[..], b"after");
    assert_eq!(a.stats().snapshot().pings_sent, 1);
    assert_eq!(b.stats().snapshot().messages_received, 2);
}

#[tokio::test]
async fn tcp_round_trip_reuses_one_connection() {
    let mut server = Sockets::bind(SocketsConfig {
        tcp: vec![loopback()],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut client = Sockets::bind(SocketsConfig {
        tcp: vec![loopback()],
        ..Default::default()
    })
    .await
    .unwrap();
    let to_server = Peer {
        transport: TransportKind::Tcp,
        addr: server.local_addr(TransportKind::Tcp).unwrap(),
    };
    client.send(to_server, Bytes::from_static(MSG)).unwrap();
    let (bytes, from) = expect_message(next(&mut server).await);
    assert_eq!(&bytes[..], MSG);
    // The response goes back on the same connection...
    server.send(from, Bytes::from_static(MSG)).unwrap();
    let (_, came_from) = expect_message(next(&mut client).await);
    assert_eq!(came_from, to_server);
    // ...and so do a second request and a request from the server side.
    client.send(to_server, Bytes::from_static(MSG)).unwrap();
    let (_, from2) = expect_message(next(&mut server).await);
    assert_eq!(from2, from);
    server.send(from, Bytes::from_static(MSG)).unwrap();
    expect_message(next(&mut client).await);
    assert_eq!(server.stats().snapshot().connections_accepted, 1);
    assert_eq!(client.stats().snapshot().connections_opened, 1);
    assert_eq!(client.connection_count(), 1);
    assert_eq!(server.connection_count(), 1);
}

#[tokio::test]
async fn tls_round_trip() {
    let (cert, key) = self_signed();
    let mut server = Sockets::bind(SocketsConfig {
        tls: vec![loopback()],
        tls_server: Some(tls::server_config(vec![cert.clone()], key).unwrap()),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut client = Sockets::bind(SocketsConfig {
        tls_client: Some(tls::client_config([cert]).unwrap()),
        ..Default::default()
    })
    .await
    .unwrap();
    let addr = server.local_addr(TransportKind::Tls).unwrap();
    let to_server = Peer {
        transport: TransportKind::Tls,
        addr,
    };
    client.set_server_name(addr, "localhost");
    client.send(to_server, Bytes::from_static(MSG)).unwrap();
    let (bytes, from) = expect_message(next(&mut server).await);
    assert_eq!(&bytes[..], MSG);
    assert_eq!(from.transport, TransportKind::Tls);
    server.send(from, Bytes::from_static(MSG)).unwrap();
    let (bytes, _) = expect_message(next(&mut client).await);
    assert_eq!(&bytes[..], MSG);
}

#[tokio::test]
async fn tls_with_untrusted_certificate_fails_to_connect() {
    let (cert, key) = self_signed();
    let (other, _) = self_signed();
    let server = Sockets::bind(SocketsConfig {
        tls: vec![loopback()],
        tls_server: Some(tls::server_config(vec![cert], key).unwrap()),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut client = Sockets::bind(SocketsConfig {
        tls_client: Some(tls::client_config([other]).unwrap()),
        ..Default::default()
    })
    .await
    .unwrap();
    let to_server = Peer {
        transport: TransportKind::Tls,
        addr: server.local_addr(TransportKind::Tls).unwrap(),
    };
    client.send(to_server, Bytes::from_static(MSG)).unwrap();
    match next(&mut client).await {
        Inbound::Closed {
            peer,
            reason: CloseReason::ConnectFailed(_),
        } => assert_eq!(peer, to_server),
        other => panic!("expected a failed connect, got {other:?}"),
    }
}

#[tokio::test]
async fn ping_is_answered_with_pong_and_our_pings_get_pongs() {
    let mut server = Sockets::bind(SocketsConfig {
        tcp: vec![loopback()],
        ..Default::default()
    })
    .await
    .unwrap();
    let addr = server.local_addr(TransportKind::Tcp).unwrap();
    // A raw client sends a ping, then a message: the pong comes back, the message goes up.
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(b"\r\n\r\n").await.unwrap();
    let mut pong = [0u8; 2];
    timeout(Duration::from_secs(5), raw.read_exact(&mut pong))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&pong, b"\r\n");
    raw.write_all(MSG).await.unwrap();
    expect_message(next(&mut server).await);
    assert_eq!(server.stats().snapshot().pongs_sent, 1);

    // Our client connections ping on their interval, and a server that
    // answers keeps them alive.
    let mut client = Sockets::bind(SocketsConfig {
        keep_alive_interval: Some(Duration::from_millis(100)),
        pong_timeout: Duration::from_millis(500),
        ..Default::default()
    })
    .await
    .unwrap();
    let to_server = Peer {
        transport: TransportKind::Tcp,
        addr,
    };
    client.send(to_server, Bytes::from_static(MSG)).unwrap();
    expect_message(next(&mut server).await);
    tokio::time::sleep(Duration::from_millis(450)).await;
    let c = client.stats().snapshot();
    assert!(c.pings_sent >= 2, "{c:?}");
    assert!(c.pongs_received >= 2, "{c:?}");
    assert!(client.try_recv().is_none());
    // keep_alive() pings on demand too.
    client.keep_alive(to_server).unwrap();
}

#[tokio::test]
async fn unanswered_pings_close_the_connection() {
    // A peer that reads but never answers pings.
    let listener = TcpListener::bind(loopback()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        while s.read(&mut buf).await.unwrap_or(0) > 0 {}
    });
    let mut client = Sockets::bind(SocketsConfig {
        keep_alive_interval: Some(Duration::from_millis(50)),
        pong_timeout: Duration::from_millis(200),
        ..Default::default()
    })
    .await
    .unwrap();
    let peer = Peer {
        transport: TransportKind::Tcp,
        addr,
    };
    client.send(peer, Bytes::from_static(MSG)).unwrap();
    match next(&mut client).await {
        Inbound::Closed { peer: p, reason } => {
            assert_eq!(p, peer);
            assert_eq!(reason, CloseReason::KeepAliveTimeout);
            assert!(reason.is_failure());
        }
        other => panic!("{other:?}"),
    }
    silent.abort();
}

#[tokio::test]
async fn dropped_and_refused_connections_are_reported() {
    // Refused: nothing listens.
    let unused = TcpListener::bind(loopback()).await.unwrap();
    let addr = unused.local_addr().unwrap();
    drop(unused);
    let mut client = Sockets::bind(SocketsConfig::default()).await.unwrap();
    let peer = Peer {
        transport: TransportKind::Tcp,
        addr,
    };
    client.send(peer, Bytes::from_static(MSG)).unwrap();
    match next(&mut client).await {
        Inbound::Closed {
            reason: CloseReason::ConnectFailed(_),
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    assert!(!client.is_connected(&peer));

    // Dropped by the far end after the first message.
    let listener = TcpListener::bind(loopback()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 16];
        let _ = s.read(&mut buf).await;
    });
    let peer = Peer {
        transport: TransportKind::Tcp,
        addr,
    };
    client.send(peer, Bytes::from_static(MSG)).unwrap();
    match next(&mut client).await {
        Inbound::Closed { peer: p, reason } => {
            assert_eq!(p, peer);
            assert!(reason.is_failure(), "{reason:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn framing_errors_close_the_stream_and_count() {
    let mut server = Sockets::bind(SocketsConfig {
        tcp: vec![loopback()],
        ..Default::default()
    })
    .await
    .unwrap();
    let addr = server.local_addr(TransportKind::Tcp).unwrap();
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: x\r\n\r\n")
        .await
        .unwrap();
    match next(&mut server).await {
        Inbound::Closed {
            reason: CloseReason::Framing(_),
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(server.stats().snapshot().malformed, 1);
    let mut buf = [0u8; 8];
    let n = timeout(Duration::from_secs(5), raw.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the server closed the connection");
}

#[tokio::test]
async fn idle_connections_close_quietly() {
    let mut server = Sockets::bind(SocketsConfig {
        tcp: vec![loopback()],
        idle_timeout: Duration::from_millis(200),
        ..Default::default()
    })
    .await
    .unwrap();
    let addr = server.local_addr(TransportKind::Tcp).unwrap();
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(MSG).await.unwrap();
    expect_message(next(&mut server).await);
    match next(&mut server).await {
        Inbound::Closed { reason, .. } => {
            assert_eq!(reason, CloseReason::Idle);
            assert!(!reason.is_failure());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.connection_count(), 0);
}
