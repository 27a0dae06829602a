//! The engine as the office's presence server (R-314), with real clients:
//!
//! - three `vaxel run` phones register; Carla watches Alice's presence and Bob's
//!   phone (SUBSCRIBE `presence` and `dialog` through the engine);
//! - Alice sets "meeting" with a note and an end time (PUBLISH, PIDF + RPID): Carla
//!   sees it;
//! - Alice calls Bob: Carla's busy lamp for Bob goes early → confirmed → terminated,
//!   and Alice shows `on-the-phone` while the call is up;
//! - Bob sets "lunch" through the control API (`PUT /api/me/presence`): Carla, a SIP
//!   watcher, sees it, and `GET /api/directory` and the WebSocket events show it;
//! - Alice unregisters: Carla sees her closed (offline); Carla unregisters: her
//!   subscriptions end (`deactivated`);
//! - an unauthenticated SUBSCRIBE and PUBLISH are challenged (407); watching someone
//!   outside the office is refused (404); a raw SUBSCRIBE for 5 s ends with NOTIFY
//!   `terminated;reason=timeout` (RFC 6665 §4.2.2).
//!
//! The `vaxel` binary is the one `cargo test --workspace` builds next to this test;
//! alone, build it first: `cargo build -p vaxel-phone --bin vaxel`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use serde_json::{Value, json};
use vaxel_sip::auth::{ChallengeKind, DigestClient, Secret};
use vaxel_sip::msg::{HeaderName, Message, Request, Response};

fn vaxel_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("vaxel"))
        .unwrap();
    assert!(
        bin.is_file(),
        "{} is missing: `cargo build -p vaxel-phone --bin vaxel` (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

/// One second of 1 kHz at 16 kHz, what the phones play in calls.
fn tone_wav(path: &Path) {
    let mut rec =
        vaxel_media::wav::WavRecorder::new(std::fs::File::create(path).unwrap(), 16_000).unwrap();
    rec.write(&vaxel_media::dsp::sine(16_000, 1000.0, 8000.0, 16_000))
        .unwrap();
    rec.finish().unwrap();
}

/// A running `vaxel run` with its JSON events.
struct Vaxel {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    events: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Vaxel {
    fn start(dir: &Path, ext: &str, password: &str, engine: &EngineProc) -> Vaxel {
        let profile = dir.join(ext);
        let status = Command::new(vaxel_bin())
            .arg("--profile")
            .arg(&profile)
            .args(["account", "add", "--name", ext])
            .args(["--uri", &format!("sip:{ext}@{DOMAIN}")])
            .args(["--proxy", &format!("sip:{}", engine.sip)])
            .status()
            .unwrap();
        assert!(status.success());
        let mut child = Command::new(vaxel_bin())
            .arg("--profile")
            .arg(&profile)
            .args(["--listen", "127.0.0.1", "run", "--play"])
            .arg(dir.join("tone.wav"))
            .arg("--record")
            .arg(dir.join(format!("{ext}.wav")))
            .env("VAXEL_PASSWORD", password)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("vaxel starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let tag = ext.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                eprintln!("[{tag}] {line}");
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && tx.send(v).is_err()
                {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut v = Vaxel {
            name: ext.into(),
            child,
            stdin,
            events: rx,
            seen: Vec::new(),
        };
        v.expect("registered", 15, |v| v["event"] == "registered");
        v
    }

    fn send(&mut self, line: &str) {
        let s = self.stdin.as_mut().unwrap();
        writeln!(s, "{line}").unwrap();
        s.flush().unwrap();
    }

    /// The first event so far (or within `secs`) that `f` accepts.
    fn expect(&mut self, what: &str, secs: u64, f: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.seen.iter().find(|v| f(v)) {
            return v.clone();
        }
        self.expect_new(what, secs, f)
    }

    /// The next new event within `secs` that `f` accepts.
    fn expect_new(&mut self, what: &str, secs: u64, f: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if f(&v) {
                        return v;
                    }
                }
                Err(_) => panic!(
                    "{}: no {what} within {secs} s; saw {:?}",
                    self.name, self.seen
                ),
            }
        }
    }
}

impl Drop for Vaxel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http(
    api: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut s = TcpStream::connect(api).unwrap();
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status: u16 = text[9..12].parse().unwrap();
    let (_, body) = text.split_once("\r\n\r\n").unwrap_or(("", ""));
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())),
    )
}

fn login(api: SocketAddr, user: &str, password: &str) -> String {
    let (st, v) = http(
        api,
        "POST",
        "/api/login",
        None,
        json!({"username": user, "password": password}),
    );
    assert_eq!(st, 200, "{v}");
    v["token"].as_str().unwrap().to_owned()
}

/// A SIP endpoint on a plain UDP socket, for what the phones do not do on purpose.
struct Raw {
    sock: UdpSocket,
    local: SocketAddr,
    engine: SocketAddr,
}

impl Raw {
    fn new(engine: SocketAddr) -> Raw {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let local = sock.local_addr().unwrap();
        Raw {
            sock,
            local,
            engine,
        }
    }

    fn send(&self, text: &str) {
        self.sock.send_to(text.as_bytes(), self.engine).unwrap();
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
        self.send(&text);
    }

    fn subscribe(&self, target: &str, event: &str, expires: u32, cseq: u32, auth: &str) -> String {
        format!(
            "SUBSCRIBE sip:{target}@{d} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bKs{cseq}{event};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:4004@{d}>;tag=raw{event}\r\nTo: <sip:{target}@{d}>\r\n\
             Call-ID: raw-{event}-{l}\r\nCSeq: {cseq} SUBSCRIBE\r\nContact: <sip:4004@{l}>\r\n\
             Event: {event}\r\nExpires: {expires}\r\n{auth}Content-Length: 0\r\n\r\n",
            d = DOMAIN,
            l = self.local
        )
    }
}

#[test]
fn presence_and_busy_lamps_served_by_the_engine() {
    let dir = temp_dir("presence");
    // All the phones share 127.0.0.1: keep the flood limit out of the way.
    let engine = EngineProc::start(
        &dir,
        Some(&office("[protection]\nallow = [\"127.0.0.1\"]\n")),
        free_port(),
    );
    tone_wav(&dir.join("tone.wav"));
    let mut alice = Vaxel::start(&dir, "4001", "alice-pw", &engine);
    let mut bob = Vaxel::start(&dir, "4002", "bob-pw", &engine);
    let mut carla = Vaxel::start(&dir, "4003", "carla-pw", &engine);

    carla.send("watch 4001 --presence-only");
    carla.send("watch 4002");
    for (uri, package) in [
        ("4001", "presence"),
        ("4002", "presence"),
        ("4002", "dialog"),
    ] {
        carla.expect(&format!("watching {uri} {package}"), 10, |v| {
            v["event"] == "watching" && v["uri"] == uri && v["package"] == package
        });
    }
    // Registered, nothing published: open, no activity; Bob's phone idle.
    carla.expect("alice open", 10, |v| {
        v["event"] == "presence_changed" && v["uri"] == "4001" && v["status"] == "open"
    });
    carla.expect("bob idle", 10, |v| {
        v["event"] == "dialog_state_changed" && v["uri"] == "4002" && v["state"] == "idle"
    });

    // 1. Alice: in a meeting, with a note, until 14:00 (PUBLISH with PIDF + RPID).
    let sent = Instant::now();
    alice.send("presence set meeting --note weekly sync --until 14:00");
    let p = alice.expect("published", 10, |v| v["event"] == "presence_published");
    let until = p["until"].as_str().unwrap().to_owned();
    let seen = carla.expect("alice in a meeting", 10, |v| {
        v["event"] == "presence_changed" && v["uri"] == "4001" && v["activity"] == "meeting"
    });
    // A figure, not a test: from the command to the watcher's event (PUBLISH, 200,
    // NOTIFY, 200, both phones' event plumbing).
    println!(
        "figure: presence set → watcher sees it: {} ms",
        sent.elapsed().as_millis()
    );
    assert_eq!(seen["status"], "open");
    assert_eq!(seen["note"], "weekly sync");
    assert_eq!(seen["until"], until.as_str());

    // 2. Alice calls Bob: Carla's lamp for Bob goes early, confirmed, terminated.
    let dialled = Instant::now();
    alice.send("call 4002");
    let inc = bob.expect("incoming", 10, |v| v["event"] == "incoming");
    carla.expect("bob early", 10, |v| {
        v["event"] == "dialog_state_changed" && v["uri"] == "4002" && v["state"] == "early"
    });
    println!(
        "figure: call placed → busy lamp early at the watcher: {} ms",
        dialled.elapsed().as_millis()
    );
    bob.send(&format!("answer {}", inc["call"]));
    alice.expect("established", 10, |v| v["event"] == "established");
    let up = carla.expect("bob confirmed", 10, |v| {
        v["event"] == "dialog_state_changed" && v["uri"] == "4002" && v["state"] == "confirmed"
    });
    assert_eq!(up["direction"], "recipient", "bob was called: {up}");
    // In the call Bob is on the phone for presence watchers too (RFC 4480 §3.2).
    carla.expect("bob on the phone", 10, |v| {
        v["event"] == "presence_changed"
            && v["uri"] == "4002"
            && v["activities"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == "on-the-phone"))
    });
    alice.send("hangup");
    bob.expect("ended", 10, |v| v["event"] == "ended");
    carla.expect("bob free", 10, |v| {
        v["event"] == "dialog_state_changed" && v["uri"] == "4002" && v["state"] == "terminated"
    });
    let lamp: Vec<&str> = carla
        .seen
        .iter()
        .filter(|v| v["event"] == "dialog_state_changed")
        .filter_map(|v| v["state"].as_str())
        .collect();
    let pos = |s: &str| lamp.iter().position(|x| *x == s).unwrap();
    assert!(
        pos("idle") < pos("early")
            && pos("early") < pos("confirmed")
            && pos("confirmed") < pos("terminated"),
        "{lamp:?}"
    );

    // 3. Bob sets lunch through the control API: Carla (a SIP watcher) sees it, and so
    // does the directory.
    let token = login(engine.api, "4002", "bob-pw");
    let (mut ws, _) = tokio_tungstenite::tungstenite::connect(format!(
        "ws://{}/api/events?token={token}",
        engine.api
    ))
    .unwrap();
    let (st, v) = http(
        engine.api,
        "PUT",
        "/api/me/presence",
        Some(&token),
        json!({"activity": "lunch", "note": "back at one"}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["state"], "away");
    carla.expect("bob at lunch", 10, |v| {
        v["event"] == "presence_changed" && v["uri"] == "4002" && v["activity"] == "lunch"
    });
    // The live events say it too.
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < end, "no presence event for Bob");
        let msg = ws.read().unwrap();
        let Ok(text) = msg.to_text() else { continue };
        let ev: Value = serde_json::from_str(text).unwrap_or_default();
        if ev["type"] == "presence"
            && ev["extension"] == "4002"
            && ev["presence"]["activity"] == "lunch"
        {
            assert_eq!(ev["presence"]["state"], "away", "{ev}");
            break;
        }
    }
    let _ = ws.close(None);
    let (st, dir_json) = http(
        engine.api,
        "GET",
        "/api/directory",
        Some(&token),
        Value::Null,
    );
    assert_eq!(st, 200);
    let bob_entry = dir_json
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["extension"] == "4002")
        .unwrap()
        .clone();
    assert_eq!(bob_entry["presence"]["activity"], "lunch", "{bob_entry}");
    assert_eq!(bob_entry["presence"]["note"], "back at one");
    let alice_entry = dir_json
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["extension"] == "4001")
        .unwrap()
        .clone();
    assert_eq!(
        alice_entry["presence"]["activity"], "meeting",
        "{alice_entry}"
    );
    // A bad time is the caller's fault.
    let (st, _) = http(
        engine.api,
        "PUT",
        "/api/me/presence",
        Some(&token),
        json!({"activity": "lunch", "until": "soon"}),
    );
    assert_eq!(st, 422);
    // A plain user may not set a colleague's presence.
    let (st, _) = http(
        engine.api,
        "PUT",
        "/api/presence/4001",
        Some(&token),
        json!({"activity": "sick"}),
    );
    assert_eq!(st, 403);
    let (_, doc) = http(engine.api, "GET", "/openapi.json", None, Value::Null);
    assert!(doc["paths"]["/api/me/presence"]["put"].is_object());

    // 4. Watching someone outside the office is refused: 404, and no retry.
    carla.send("watch 7777 --presence-only");
    let ended = carla.expect("7777 refused", 10, |v| {
        v["event"] == "watch_ended" && v["uri"] == "7777"
    });
    assert_eq!(ended["reason"], "404", "{ended}");

    // 5. Alice unregisters: offline (closed) for Carla.
    alice.send("unregister");
    carla.expect("alice offline", 10, |v| {
        v["event"] == "presence_changed" && v["uri"] == "4001" && v["status"] == "closed"
    });

    // When the watcher's last device unregisters, its subscriptions end (`deactivated`,
    // RFC 6665 §4.2.2).
    carla.send("unregister");
    let ended = carla.expect("carla's watch ended", 10, |v| {
        v["event"] == "watch_ended" && v["uri"] == "4002" && v["package"] == "dialog"
    });
    assert_eq!(ended["reason"], "deactivated", "{ended}");

    // 6. Without credentials SUBSCRIBE and PUBLISH are challenged (R-503).
    let raw = Raw::new(engine.sip);
    raw.send(&raw.subscribe("4002", "presence", 60, 1, ""));
    assert_eq!(raw.response(5).status.as_u16(), 407);
    raw.send(&format!(
        "PUBLISH sip:4004@{d} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bKp1;rport\r\nMax-Forwards: 70\r\n\
         From: <sip:4004@{d}>;tag=p1\r\nTo: <sip:4004@{d}>\r\nCall-ID: pub-{l}\r\nCSeq: 1 PUBLISH\r\n\
         Event: presence\r\nExpires: 60\r\nContent-Length: 0\r\n\r\n",
        d = DOMAIN,
        l = raw.local
    ));
    assert_eq!(raw.response(5).status.as_u16(), 407);

    // 7. With credentials, a 5-second subscription: 200, NOTIFY active, then NOTIFY
    // terminated;reason=timeout when it lapses unrefreshed (RFC 6665 §4.2.2).
    let first = raw.subscribe("4002", "dialog", 5, 2, "");
    raw.send(&first);
    let challenge = raw.response(5);
    assert_eq!(challenge.status.as_u16(), 407);
    let values: Vec<String> = challenge
        .headers
        .get_all(&HeaderName::ProxyAuthenticate)
        .map(|v| v.to_string())
        .collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    let mut client = DigestClient::new("4004", Secret::Password("dan-pw".into()));
    client
        .handle_challenge(ChallengeKind::Proxy, &refs)
        .unwrap();
    let a = client.authorize("SUBSCRIBE", &format!("sip:4002@{DOMAIN}"), b"", "0a4f113b");
    raw.send(&raw.subscribe(
        "4002",
        "dialog",
        5,
        3,
        &format!("Proxy-Authorization: {}\r\n", a[0].credentials),
    ));
    let mut got_ok = false;
    let mut states = Vec::new();
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end && !states.iter().any(|s: &String| s.starts_with("terminated")) {
        match raw.recv(1) {
            Some(Message::Response(r)) if r.status.as_u16() == 200 => {
                assert_eq!(
                    r.headers
                        .get(&HeaderName::Expires)
                        .map(|e| e.to_string())
                        .as_deref(),
                    Some("5")
                );
                got_ok = true;
            }
            Some(Message::Request(n)) => {
                raw.ok(&n);
                states.push(
                    n.headers
                        .get(&HeaderName::SubscriptionState)
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                );
            }
            _ => {}
        }
    }
    assert!(got_ok, "SUBSCRIBE accepted");
    assert!(states[0].starts_with("active"), "{states:?}");
    assert_eq!(
        states.last().unwrap(),
        "terminated;reason=timeout",
        "{states:?}"
    );
}

/// baresip (Debian's 1.0, its `presence` module) as a second kind of client: it
/// PUBLISHes its status to the engine (`pubint`) and SUBSCRIBEs to a contact marked
/// `;presence=p2p` through the engine. Bob's "busy" reaches baresip; baresip going
/// offline (`presence_offline`) reaches Carla, a `vaxel` watcher, while it stays
/// registered.
#[test]
fn baresip_publishes_and_watches_through_the_engine() {
    if !Path::new("/usr/lib/baresip/modules/presence.so").exists()
        && vaxel_testkit::peers::skip_or_fail("baresip presence", "baresip's presence module")
    {
        return;
    }
    let dir = temp_dir("presence-baresip");
    let engine = EngineProc::start(
        &dir,
        Some(&office("[protection]\nallow = [\"127.0.0.1\"]\n")),
        free_port(),
    );
    tone_wav(&dir.join("tone.wav"));
    let mut bob = Vaxel::start(&dir, "4002", "bob-pw", &engine);
    let mut carla = Vaxel::start(&dir, "4003", "carla-pw", &engine);

    let bdir = dir.join("baresip");
    std::fs::create_dir_all(&bdir).unwrap();
    let (sip, ctrl) = (free_port(), free_port());
    std::fs::write(
        bdir.join("config"),
        format!(
            "poll_method epoll\nnet_interface 127.0.0.1\nsip_listen 127.0.0.1:{sip}\n\
             audio_player aubridge,nil\naudio_source aubridge,nil\naudio_alert aubridge,nil\n\
             module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aubridge.so\n\
             module_app account.so\nmodule_app contact.so\nmodule_app menu.so\n\
             module_app presence.so\nmodule_app ctrl_tcp.so\nctrl_tcp_listen 127.0.0.1:{ctrl}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        bdir.join("accounts"),
        format!(
            "<sip:4004@{DOMAIN}>;auth_pass=dan-pw;outbound=\"sip:{}\";regint=600;pubint=600\n",
            engine.sip
        ),
    )
    .unwrap();
    std::fs::write(
        bdir.join("contacts"),
        format!("\"Bob\" <sip:4002@{DOMAIN}>;presence=p2p\n"),
    )
    .unwrap();
    let log_path = bdir.join("baresip.log");
    let log = std::fs::File::create(&log_path).unwrap();
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _baresip = Kill(
        Command::new("baresip")
            .arg("-v")
            .arg("-f")
            .arg(&bdir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("baresip starts"),
    );
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let wait_log = |what: &str, f: &dyn Fn(&str) -> bool| {
        let end = Instant::now() + Duration::from_secs(15);
        while !f(&read_log()) {
            assert!(
                Instant::now() < end,
                "baresip: no {what}; log:\n{}",
                read_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_log("registration", &|l| l.contains("200 OK"));

    // Carla watches baresip: open while registered and published open.
    carla.send("watch 4004 --presence-only");
    carla.expect("dan open", 10, |v| {
        v["event"] == "presence_changed" && v["uri"] == "4004" && v["status"] == "open"
    });

    // Bob is busy: baresip's subscription to Bob through the engine says so.
    bob.send("presence set busy --note on a deadline");
    bob.expect("published", 10, |v| v["event"] == "presence_published");
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let contacts = baresip_ctrl(ctrl, "contacts");
        if contacts.contains("4002") && contacts.contains("Busy") {
            break;
        }
        assert!(
            Instant::now() < end,
            "baresip does not see Bob busy: {contacts}\nlog:\n{}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // baresip goes offline (PUBLISH closed): Carla sees it while it is still registered.
    baresip_ctrl(ctrl, "presence_offline");
    carla.expect_new("dan closed", 10, |v| {
        v["event"] == "presence_changed" && v["uri"] == "4004" && v["status"] == "closed"
    });
    let token = login(engine.api, "4003", "carla-pw");
    let (_, all) = http(
        engine.api,
        "GET",
        "/api/presence",
        Some(&token),
        Value::Null,
    );
    assert_eq!(all["4004"]["devices"], 1, "{all}");
    assert_eq!(all["4004"]["open"], false, "{all}");
}

/// A command over baresip's ctrl_tcp (netstring JSON); its answer's text.
fn baresip_ctrl(port: u16, command: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let cmd = format!(r#"{{"command":"{command}","params":"","token":"t"}}"#);
    s.write_all(format!("{}:{cmd},", cmd.len()).as_bytes())
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.ends_with(b",") {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
