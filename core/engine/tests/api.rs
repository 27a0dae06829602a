//! The control API in-process: login with SIP credentials, directory, history,
//! roles, validated administration, live events over WebSocket, OpenAPI document.

mod common;

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use vaxel_sip::auth::{ChallengeKind, DigestClient, Secret};
use vaxel_sip::msg::{HeaderName, Message};

async fn http(
    api: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut s = TcpStream::connect(api).await.unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status: u16 = text[9..12].parse().unwrap();
    let (_, body) = text.split_once("\r\n\r\n").unwrap_or(("", ""));
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())),
    )
}

/// A REGISTER with digest from a plain UDP socket.
async fn register(sip: std::net::SocketAddr, user: &str, password: &str) -> u16 {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sock.local_addr().unwrap();
    let mut client = DigestClient::new(user, Secret::Password(password.into()));
    let mut auth = String::new();
    for cseq in 1..=2 {
        let msg = format!(
            "REGISTER sip:{d} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{cseq}x{user};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:{user}@{d}>;tag=t{user}\r\nTo: <sip:{user}@{d}>\r\nCall-ID: reg-{user}-{local}\r\nCSeq: {cseq} REGISTER\r\n\
             Contact: <sip:{user}@{local}>\r\nExpires: 600\r\n{auth}Content-Length: 0\r\n\r\n",
            d = common::DOMAIN
        );
        sock.send_to(msg.as_bytes(), sip).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let Ok(Message::Response(r)) = vaxel_sip::msg::parse(Bytes::copy_from_slice(&buf[..n]))
        else {
            panic!("not a response");
        };
        if r.status.as_u16() != 401 {
            return r.status.as_u16();
        }
        let values: Vec<String> = r
            .headers
            .get_all(&HeaderName::WwwAuthenticate)
            .map(|v| v.to_string())
            .collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        client.handle_challenge(ChallengeKind::Www, &refs).unwrap();
        let a = client.authorize(
            "REGISTER",
            &format!("sip:{}", common::DOMAIN),
            b"",
            "0a4f113b",
        );
        auth = format!("Authorization: {}\r\n", a[0].credentials);
    }
    401
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_directory_history_admin_events_and_openapi() {
    let dir = common::temp_dir("api");
    std::fs::write(dir.join("office.toml"), common::office("")).unwrap();
    let engine = vaxel_engine::engine::start(vaxel_engine::engine::EngineConfig {
        data: dir.clone(),
        sip: "127.0.0.1:0".parse().unwrap(),
        office: Some(dir.join("office.toml")),
        session_check: Duration::from_secs(90),
        flows: Default::default(),
        session_min_se: 90,
        tls: None,
        udp_threads: false,
    })
    .await
    .unwrap();
    let api = vaxel_engine::api::serve(engine.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();

    let (s, doc) = http(api, "GET", "/openapi.json", None, None).await;
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/login"].is_object());

    // Unknown user and wrong password look the same.
    let (s1, e1) = http(
        api,
        "POST",
        "/api/login",
        None,
        Some(json!({"username": "4001", "password": "nope"})),
    )
    .await;
    let (s2, e2) = http(
        api,
        "POST",
        "/api/login",
        None,
        Some(json!({"username": "9999", "password": "nope"})),
    )
    .await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(e1, e2);
    let (s, _) = http(api, "GET", "/api/directory", None, None).await;
    assert_eq!(s, 401);

    let (s, login) = http(
        api,
        "POST",
        "/api/login",
        None,
        Some(json!({"username": "4001", "password": "alice-pw"})),
    )
    .await;
    assert_eq!(s, 200, "{login}");
    let admin = login["token"].as_str().unwrap().to_owned();
    let (_, login) = http(
        api,
        "POST",
        "/api/login",
        None,
        Some(json!({"username": "4002", "password": "bob-pw"})),
    )
    .await;
    let bob = login["token"].as_str().unwrap().to_owned();

    let (s, me) = http(api, "GET", "/api/me", Some(&bob), None).await;
    assert_eq!((s, me["extension"].as_str()), (200, Some("4002")));
    let (s, d) = http(api, "GET", "/api/directory", Some(&bob), None).await;
    assert_eq!(s, 200);
    assert_eq!(d.as_array().unwrap().len(), 4);
    assert_eq!(d[0]["phone"], "idle");
    assert!(!d.to_string().contains("ha1"), "no hashes in the directory");
    let (s, calls) = http(api, "GET", "/api/me/calls", Some(&bob), None).await;
    assert_eq!((s, calls), (200, json!([])));
    let (s, _) = http(api, "GET", "/api/calls", Some(&bob), None).await;
    assert_eq!(s, 403, "a user cannot see every call");

    // Live events: a registration shows up on the WebSocket.
    let url = format!("ws://{api}/api/events?token={bob}");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(register(engine.sip_addr(), "4003", "carla-pw").await, 200);
    use futures_util::StreamExt;
    // (A new listener first hears everyone's presence: skip those.)
    let ev = loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let ev: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        if ev["type"] != "presence" {
            break ev;
        }
    };
    assert_eq!(
        ev,
        json!({"type": "registration", "extension": "4003", "devices": 1})
    );
    let (_, d) = http(api, "GET", "/api/directory", Some(&bob), None).await;
    assert_eq!(d[2]["devices"], 1);

    // Administration: only administrators, validated, all or nothing, persisted.
    let new_user = json!({"name": "Eve", "number": "+4570104009", "password": "eve-pw-9"});
    let (s, _) = http(
        api,
        "PUT",
        "/api/users/4009",
        Some(&bob),
        Some(new_user.clone()),
    )
    .await;
    assert_eq!(s, 403);
    let (s, e) = http(
        api,
        "PUT",
        "/api/users/4009",
        Some(&admin),
        Some(json!({"name": "Eve", "number": "+4570104001", "password": "eve-pw-9"})),
    )
    .await;
    assert_eq!(s, 422, "a number already in use: {e}");
    assert!(e["message"].as_str().unwrap().contains("used twice"), "{e}");
    let (_, d) = http(api, "GET", "/api/directory", Some(&admin), None).await;
    assert_eq!(d.as_array().unwrap().len(), 4, "nothing half-applied");
    let (s, _) = http(api, "PUT", "/api/users/4009", Some(&admin), Some(new_user)).await;
    assert_eq!(s, 204);
    assert_eq!(
        register(engine.sip_addr(), "4009", "eve-pw-9").await,
        200,
        "the new user can register"
    );
    let (s, _) = http(api, "PUT", "/api/trunks/provider", Some(&admin), Some(json!({"host": "127.0.0.1", "port": 5099, "password": "secret-at-provider", "outbound_prefixes": ["00"]}))).await;
    assert_eq!(s, 204);
    let (s, t) = http(api, "GET", "/api/trunks", Some(&admin), None).await;
    assert_eq!(s, 200);
    assert!(!t.to_string().contains("secret-at-provider"), "{t}");
    let (s, office) = http(api, "GET", "/api/office", Some(&admin), None).await;
    assert_eq!(s, 200);
    let office = office.as_str().unwrap().to_owned();
    assert!(
        office.contains("4009") && !office.contains("eve-pw-9"),
        "{office}"
    );
    let reread = vaxel_engine::office::Office::parse("export", &office).unwrap();
    assert_eq!(reread.users.len(), 5);
    let (s, _) = http(api, "DELETE", "/api/users/4009", Some(&admin), None).await;
    assert_eq!(s, 204);
    let (s, _) = http(api, "DELETE", "/api/users/4009", Some(&admin), None).await;
    assert_eq!(s, 404);
}
