//! SRTP on the calls the engine answers itself (its media server: prompts, menus,
//! voicemail), with real phones: a baresip caller that requires SRTP (RTP/SAVP with
//! SDES `a=crypto`, RFC 4568, over TLS) is answered with the engine's own key; what
//! the engine plays reaches it encrypted, what it sends (its voice, RFC 4733 keys)
//! is decrypted by the engine; when the call is then connected to a person, that
//! person's leg is SRTP or plain RTP as their phone says, never keyed end to end.
//!
//! Each baresip phone sends a tone from a file and records what it decodes
//! (baresip's `sndfile` module); the recordings are checked against the prompt
//! files and the other phone's tone.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use vaxel_testkit::peers::skip_or_fail;

/// One engine and its phones at a time (a 2-core machine, real-time audio).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn prompts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/prompts")
}

/// The office: 7000 plays the welcome prompt, then a menu whose `1` rings the
/// sales group (4002); 7003 rings the group straight away (the engine does not
/// answer first); 7002 takes a voicemail message for the shared box.
fn srtp_office() -> String {
    office(
        r#"
[protection]
allow = ["127.0.0.1"]

[routing]
time_zone = "UTC"
language = "en"
voicemail_number = "8000"
echo_number = "8001"

[routing.groups.sales]
id = 1
name = "Sales"
strategy = "fixed"
members = [{ user = "4002" }]
ring_secs = 20
no_answer = { type = "prompt", prompt = "no_answer" }

[[routing.mailboxes]]
name = "office"
members = ["4001"]
pin = "1234"
max_secs = 30

[[routing.flows]]
name = "main"
numbers = ["7000"]
active = 1
[[routing.flows.versions]]
version = 1
start = "welcome"
[routing.flows.versions.steps.welcome]
type = "play_prompt"
prompt = "welcome"
next = "menu"
[routing.flows.versions.steps.menu]
type = "menu"
prompt = "menu"
choices = { "1" = "sales" }
timeout_secs = 10
repeats = 2
[routing.flows.versions.steps.sales]
type = "hunt_group"
group = "sales"

[[routing.flows]]
name = "sales-direct"
numbers = ["7003"]
active = 1
[[routing.flows.versions]]
version = 1
start = "sales"
[routing.flows.versions.steps.sales]
type = "hunt_group"
group = "sales"

[[routing.flows]]
name = "messages"
numbers = ["7002"]
active = 1
[[routing.flows.versions]]
version = 1
start = "vm"
[routing.flows.versions.steps.vm]
type = "voicemail"
mailbox = { shared = "office" }
"#,
    )
}

/// A 16-bit mono WAV of a sine at `freq` Hz.
fn write_tone(path: &Path, freq: f64, secs: u32, rate: u32) {
    let n = rate * secs;
    let mut data = Vec::with_capacity(n as usize * 2);
    for i in 0..n {
        let s = (f64::from(i) / f64::from(rate) * freq * std::f64::consts::TAU).sin() * 8000.0;
        data.extend_from_slice(&(s as i16).to_le_bytes());
    }
    let mut f = Vec::new();
    f.extend_from_slice(b"RIFF");
    f.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    f.extend_from_slice(b"WAVEfmt ");
    f.extend_from_slice(&16u32.to_le_bytes());
    f.extend_from_slice(&1u16.to_le_bytes());
    f.extend_from_slice(&1u16.to_le_bytes());
    f.extend_from_slice(&rate.to_le_bytes());
    f.extend_from_slice(&(rate * 2).to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&16u16.to_le_bytes());
    f.extend_from_slice(b"data");
    f.extend_from_slice(&(data.len() as u32).to_le_bytes());
    f.extend_from_slice(&data);
    std::fs::write(path, f).unwrap();
}

/// Samples of a 16-bit WAV (first channel) and its rate.
fn read_wav(path: &Path) -> (Vec<i16>, u32) {
    let b = std::fs::read(path).unwrap();
    let channels = usize::from(u16::from_le_bytes([b[22], b[23]])).max(1);
    let rate = u32::from_le_bytes([b[24], b[25], b[26], b[27]]);
    let mut i = 12;
    while i + 8 <= b.len() {
        let len = u32::from_le_bytes([b[i + 4], b[i + 5], b[i + 6], b[i + 7]]) as usize;
        if &b[i..i + 4] == b"data" {
            // A file still being written says 0 (or a placeholder): up to its end.
            let end = if len == 0 || len == u32::MAX as usize {
                b.len()
            } else {
                (i + 8 + len).min(b.len())
            };
            let s = b[i + 8..end]
                .chunks_exact(2 * channels)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return (s, rate);
        }
        i += 8 + len;
    }
    (Vec::new(), rate)
}

/// RMS per 20 ms at 8 kHz.
fn envelope(s: &[i16]) -> Vec<f64> {
    s.chunks(160)
        .map(|c| (c.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / c.len() as f64).sqrt())
        .collect()
}

/// How well the start of `heard` (from its first sound) matches `prompt`: the
/// correlation of their loudness envelopes over the prompt's length.
fn match_score(heard: &[i16], prompt: &[i16]) -> f64 {
    let h = envelope(heard);
    let p = envelope(prompt);
    let Some(start) = h.iter().position(|v| *v > 200.0) else {
        return 0.0;
    };
    let p_start = p.iter().position(|v| *v > 200.0).unwrap_or(0);
    let mut best: f64 = 0.0;
    for shift in 0..6usize {
        let hs = start.saturating_sub(3) + shift;
        let n = (p.len() - p_start).min(h.len().saturating_sub(hs));
        if n < 25 {
            continue;
        }
        let (a, b) = (&h[hs..hs + n], &p[p_start..p_start + n]);
        let (ma, mb) = (
            a.iter().sum::<f64>() / n as f64,
            b.iter().sum::<f64>() / n as f64,
        );
        let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
        let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
        best = best.max(cov / (va.sqrt() * vb.sqrt()).max(1e-9));
    }
    best
}

fn prompt_samples(name: &str) -> Vec<i16> {
    read_wav(&prompts_dir().join("en").join(format!("{name}.wav"))).0
}

/// Goertzel power of `freq` relative to the signal's power, over `s` (8 kHz).
fn tone_ratio(s: &[i16], freq: f64) -> f64 {
    let w = std::f64::consts::TAU * freq / 8000.0;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for x in s {
        let s0 = f64::from(*x) + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let p = s1 * s1 + s2 * s2 - c * s1 * s2;
    let e: f64 = s.iter().map(|x| f64::from(*x).powi(2)).sum();
    p / (e * s.len() as f64 / 2.0).max(1.0)
}

/// How many 100 ms stretches of `s` (8 kHz) are mostly a `freq` tone.
fn tone_stretches(s: &[i16], freq: f64) -> usize {
    s.chunks(800)
        .filter(|c| c.len() == 800 && envelope(c)[0] > 300.0 && tone_ratio(c, freq) > 0.6)
        .count()
}

struct Baresip {
    child: Child,
    ctrl: u16,
    dir: PathBuf,
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Baresip {
    /// A PCMU phone sending a `tone` Hz sine, registered through `outbound`, with
    /// baresip `mediaenc` (`srtp-mand`: RTP/SAVP with `a=crypto`) or none.
    fn start(
        dir: &Path,
        user: &str,
        password: &str,
        outbound: &str,
        mediaenc: Option<&str>,
        tone: f64,
    ) -> Baresip {
        std::fs::create_dir_all(dir).unwrap();
        let (sip, ctrl) = (free_port(), free_port());
        write_tone(&dir.join("tx.wav"), tone, 30, 8000);
        std::fs::write(
            dir.join("config"),
            format!(
                "poll_method epoll\nnet_interface 127.0.0.1\n\
                 sip_listen 127.0.0.1:{sip}\n\
                 audio_player aubridge,nil\n\
                 audio_source aufile,{tx}\n\
                 audio_alert aubridge,nil\n\
                 audio_srate 8000\n\
                 audio_channels 1\n\
                 snd_path {dir}\n\
                 module_path /usr/lib/baresip/modules\n\
                 module g711.so\n\
                 module srtp.so\n\
                 module aufile.so\n\
                 module aubridge.so\n\
                 module sndfile.so\n\
                 module_app account.so\n\
                 module_app menu.so\n\
                 module_app ctrl_tcp.so\n\
                 ctrl_tcp_listen 127.0.0.1:{ctrl}\n",
                tx = dir.join("tx.wav").display(),
                dir = dir.display(),
            ),
        )
        .unwrap();
        let menc = mediaenc
            .map(|m| format!(";mediaenc={m}"))
            .unwrap_or_default();
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{user}@{DOMAIN}>;auth_pass={password};outbound=\"{outbound}\";regint=600;answermode=auto;audio_codecs=PCMU{menc}\n",
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("baresip.log")).unwrap();
        let child = Command::new("baresip")
            .arg("-v")
            .arg("-f")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("baresip starts");
        Baresip {
            child,
            ctrl,
            dir: dir.to_owned(),
        }
    }

    /// Sends a command over ctrl_tcp (netstring JSON).
    fn command(&self, command: &str, params: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut s = loop {
            match TcpStream::connect(("127.0.0.1", self.ctrl)) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => panic!("baresip ctrl_tcp: {e}"),
            }
        };
        let json = format!(r#"{{"command":"{command}","params":"{params}","token":"t"}}"#);
        s.write_all(format!("{}:{json},", json.len()).as_bytes())
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 512];
        let _ = s.read(&mut buf);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("baresip.log")).unwrap_or_default()
    }

    /// Whether the phone's media was SRTP (baresip's srtp module says so).
    fn used_srtp(&self) -> bool {
        self.log().contains("SRTP is Enabled")
    }

    /// What this phone decoded during its call (8 kHz).
    fn heard(&self) -> Vec<i16> {
        std::fs::read_dir(&self.dir)
            .ok()
            .and_then(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
            })
            .map(|p| read_wav(&p).0)
            .unwrap_or_default()
    }
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The engine with the office above, its prompts and a TLS listener (self-signed
/// certificate for 127.0.0.1); returns it and its TLS URI.
fn engine_with_tls(dir: &Path) -> (EngineProc, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success(), "openssl made a certificate");
    let tls = format!("127.0.0.1:{}", free_port());
    let prompts = prompts_dir();
    let engine = EngineProc::start_with(
        dir,
        Some(&srtp_office()),
        free_port(),
        &[
            "--tls",
            &tls,
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--prompts",
            prompts.to_str().unwrap(),
        ],
    );
    (engine, format!("sip:{tls};transport=tls"))
}

fn peers_present(what: &str) -> bool {
    for tool in ["baresip", "openssl"] {
        if !have(tool) && skip_or_fail(what, tool) {
            return false;
        }
    }
    true
}

fn last_call(db: &vaxel_engine::db::Db) -> Option<vaxel_engine::db::CallRecord> {
    db.calls(1).ok().and_then(|c| c.first().cloned())
}

/// An SRTP caller (baresip, `srtp-mand` over TLS) calls the main number: it hears
/// the welcome prompt (decrypted by baresip, so encrypted by the engine), keys `1`
/// by RFC 4733 (decrypted by the engine, or the menu would not move), and reaches
/// the sales group's member on a plain-RTP phone; each hears the other's tone.
#[test]
fn an_srtp_caller_uses_the_menu_and_talks_with_a_plain_group_member() {
    let _serial = one_at_a_time();
    if !peers_present("SRTP caller to the menu") {
        return;
    }
    menu_call("srtp-menu", "7000", true, false);
}

/// The other way round: a caller without SRTP keys the menu and reaches a group
/// member whose phone requires SRTP (`srtp-mand` over TLS): the member is offered
/// the engine's own key (RTP/AVP first, RTP/SAVP after its 488) and talks SRTP
/// while the caller stays plain.
#[test]
fn a_plain_caller_reaches_a_group_member_who_requires_srtp() {
    let _serial = one_at_a_time();
    if !peers_present("plain caller to an SRTP member") {
        return;
    }
    menu_call("srtp-member", "7000", false, true);
}

/// A number that rings the group without the engine answering first: the flow's
/// call terminates SRTP per leg like a routed call (before, the caller's key went
/// end to end, and a plain member could not have decrypted it).
#[test]
fn an_srtp_caller_rings_a_group_straight_away_and_talks_with_a_plain_member() {
    let _serial = one_at_a_time();
    if !peers_present("SRTP caller to a group") {
        return;
    }
    menu_call("srtp-group", "7003", true, false);
}

/// Alice (4001) calls `number` — 7000: hears the welcome prompt and keys 1; 7003:
/// straight to the group — and talks with Bob (4002, the sales group); each phone
/// uses SRTP (`srtp-mand` over TLS) or plain RTP (UDP) as asked.
fn menu_call(name: &str, number: &str, alice_srtp: bool, bob_srtp: bool) {
    let menu = number == "7000";
    let dir = temp_dir(name);
    let (engine, tls) = engine_with_tls(&dir);
    let udp = format!("sip:{}", engine.sip);
    let setup = |srtp: bool| {
        if srtp {
            (tls.clone(), Some("srtp-mand"))
        } else {
            (udp.clone(), None)
        }
    };
    let (outbound, menc) = setup(alice_srtp);
    let alice = Baresip::start(
        &dir.join("alice"),
        "4001",
        "alice-pw",
        &outbound,
        menc,
        440.0,
    );
    let (outbound, menc) = setup(bob_srtp);
    let bob = Baresip::start(&dir.join("bob"), "4002", "bob-pw", &outbound, menc, 1000.0);
    let db = vaxel_engine::db::Db::open(&dir).unwrap();
    wait_until("both phones registered", 15, || {
        db.bindings(0).map(|b| b.len() == 2).unwrap_or(false)
    });
    alice.command("dial", number);
    if menu {
        wait_until("the engine answered the caller", 15, || {
            last_call(&db).is_some_and(|c| c.callee == "7000")
                && alice.log().contains("Call established")
        });
        // The welcome prompt (about 2.6 s), then the menu: key 1 while it plays.
        std::thread::sleep(Duration::from_millis(3500));
        alice.command("sndcode", "1");
    }
    wait_until("Bob answered", 15, || {
        last_call(&db).is_some_and(|c| c.answered_by.as_deref() == Some("4002"))
    });
    let talk_from = alice.heard().len();
    std::thread::sleep(Duration::from_secs(4));
    alice.command("hangup", "");
    wait_until("the call ended", 10, || {
        last_call(&db).is_some_and(|c| c.ended_at.is_some())
    });
    std::thread::sleep(Duration::from_millis(500));

    assert_eq!(alice.used_srtp(), alice_srtp, "{}", alice.log());
    assert_eq!(bob.used_srtp(), bob_srtp, "{}", bob.log());
    let heard = alice.heard();
    if menu {
        let (w, m) = (
            match_score(&heard, &prompt_samples("welcome")),
            match_score(&heard, &prompt_samples("closed")),
        );
        assert!(w > 0.8 && w > m + 0.2, "welcome {w:.2}, closed {m:.2}");
        let call = last_call(&db).unwrap();
        let choices = db.ivr_choices(call.id).unwrap();
        assert_eq!(
            choices
                .iter()
                .map(|c| (c.digit.as_str(), c.valid))
                .collect::<Vec<_>>(),
            [("1", true)],
            "the RFC 4733 key reached the menu"
        );
    }
    // Both ways once connected: Alice hears Bob's 1000 Hz, Bob hears Alice's 440 Hz.
    let talk = &heard[talk_from.min(heard.len())..];
    assert!(
        tone_stretches(talk, 1000.0) >= 10,
        "Alice heard Bob's tone for {} of {} 100 ms",
        tone_stretches(talk, 1000.0),
        talk.len() / 800
    );
    let bob_heard = bob.heard();
    assert!(
        tone_stretches(&bob_heard, 440.0) >= 10,
        "Bob heard Alice's tone for {} of {} 100 ms:\n{}",
        tone_stretches(&bob_heard, 440.0),
        bob_heard.len() / 800,
        bob.log()
    );
}

/// An SRTP caller leaves a voicemail message: it hears the greeting and the beep
/// (encrypted by the engine) and the stored message holds its tone (decrypted).
/// Then a member of the box, also with SRTP, calls the voicemail number, keys the
/// PIN by RFC 4733 and hears the message.
#[test]
fn an_srtp_caller_leaves_a_voicemail_message() {
    let _serial = one_at_a_time();
    if !peers_present("SRTP voicemail deposit") {
        return;
    }
    let dir = temp_dir("srtp-vm");
    let (engine, tls) = engine_with_tls(&dir);
    let alice = Baresip::start(
        &dir.join("alice"),
        "4001",
        "alice-pw",
        &tls,
        Some("srtp-mand"),
        440.0,
    );
    let db = vaxel_engine::db::Db::open(&dir).unwrap();
    wait_until("Alice registered", 15, || {
        db.bindings(0).map(|b| b.len() == 1).unwrap_or(false)
    });
    alice.command("dial", "7002");
    wait_until("the engine answered the caller", 15, || {
        alice.log().contains("SRTP is Enabled")
    });
    // Greeting, "after the tone", the beep (about 8 s); then a few seconds of tone.
    std::thread::sleep(Duration::from_secs(14));
    alice.command("hangup", "");
    wait_until("the call ended", 10, || {
        last_call(&db).is_some_and(|c| c.ended_at.is_some())
    });
    std::thread::sleep(Duration::from_millis(500));
    let heard = alice.heard();
    let g = match_score(&heard, &prompt_samples("vm_greeting"));
    assert!(g > 0.8, "the greeting: {g:.2}");
    assert!(
        tone_stretches(&heard, 1000.0) >= 2,
        "Alice heard the beep:\n{}",
        alice.log()
    );
    let wavs: Vec<PathBuf> = walk(&engine.data.join("voicemail"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .collect();
    assert_eq!(wavs.len(), 1, "one message: {wavs:?}");
    let (msg, rate) = read_wav(&wavs[0]);
    assert_eq!(rate, 8000);
    assert!(
        tone_stretches(&msg, 440.0) >= 20,
        "the message holds the caller's tone: {} of {} 100 ms",
        tone_stretches(&msg, 440.0),
        msg.len() / 800
    );

    // Retrieval: 4001 (a member of the box) from another SRTP phone sending 600 Hz.
    drop(alice);
    let again = Baresip::start(
        &dir.join("alice-again"),
        "4001",
        "alice-pw",
        &tls,
        Some("srtp-mand"),
        600.0,
    );
    wait_until("the second phone registered", 15, || {
        db.bindings(0).map(|b| b.len() == 2).unwrap_or(false)
    });
    again.command("dial", "8000");
    wait_until("the engine answered", 15, || {
        again.log().contains("SRTP is Enabled") && again.log().contains("Call established")
    });
    // "Enter your PIN" (about 3.5 s), then 1234# key by key.
    std::thread::sleep(Duration::from_millis(3800));
    for key in ["1", "2", "3", "4", "#"] {
        again.command("sndcode", key);
        std::thread::sleep(Duration::from_millis(400));
    }
    wait_until("the message marked heard", 10, || {
        db.messages("office")
            .is_ok_and(|m| m.len() == 1 && m[0].heard)
    });
    std::thread::sleep(Duration::from_secs(4));
    again.command("hangup", "");
    std::thread::sleep(Duration::from_millis(800));
    let heard = again.heard();
    assert!(
        tone_stretches(&heard, 440.0) >= 15,
        "the member heard the message: {} of {} 100 ms",
        tone_stretches(&heard, 440.0),
        heard.len() / 800
    );
}

/// A phone with best-effort SRTP (RTP/AVP with `a=crypto`, RFC 8643) calls the
/// echo test: before, the engine answered it plain RTP (the key ignored); now it
/// gets the engine's key, and hears itself back through decryption and encryption.
#[test]
fn a_best_effort_srtp_caller_hears_itself_on_the_echo_test() {
    let _serial = one_at_a_time();
    if !peers_present("SRTP echo test") {
        return;
    }
    let dir = temp_dir("srtp-echo");
    let (engine, tls) = engine_with_tls(&dir);
    let alice = Baresip::start(
        &dir.join("alice"),
        "4001",
        "alice-pw",
        &tls,
        Some("srtp"),
        440.0,
    );
    let db = vaxel_engine::db::Db::open(&dir).unwrap();
    wait_until("Alice registered", 15, || {
        db.bindings(0).map(|b| b.len() == 1).unwrap_or(false)
    });
    alice.command("dial", "8001");
    wait_until("the engine answered the caller", 15, || {
        alice.log().contains("SRTP is Enabled")
    });
    // The echo prompt, then a few seconds of one's own tone.
    std::thread::sleep(Duration::from_secs(8));
    alice.command("hangup", "");
    wait_until("the call ended", 10, || {
        last_call(&db).is_some_and(|c| c.ended_at.is_some())
    });
    std::thread::sleep(Duration::from_millis(500));
    let heard = alice.heard();
    let e = match_score(&heard, &prompt_samples("echo"));
    assert!(e > 0.8, "the echo prompt: {e:.2}");
    assert!(
        tone_stretches(&heard, 440.0) >= 10,
        "Alice heard herself for {} of {} 100 ms",
        tone_stretches(&heard, 440.0),
        heard.len() / 800
    );
    drop(engine);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A SIPp caller offering `m_line` with `crypto` lines to `to`, expecting `status`.
fn offer_scenario(
    engine: std::net::SocketAddr,
    to: &str,
    m_line: &str,
    crypto: &str,
    status: u16,
) -> String {
    let full = call_scenario(engine, "4001", "alice-pw", to, false, 0);
    let sdp = format!(
        "m=audio [media_port] {m_line} 0 101\na=rtpmap:0 PCMU/8000\na=rtpmap:101 telephone-event/8000\n{crypto}"
    );
    let full = full.replace(
        "m=audio [media_port] RTP/AVP 8 101\na=rtpmap:8 PCMA/8000\na=rtpmap:101 telephone-event/8000\n",
        &sdp,
    );
    let cut = full
        .find("  <recv response=\"200\" rrs=\"true\"/>")
        .expect("the scenario's answer");
    format!(
        r#"{}  <recv response="{status}"/>
  <send><![CDATA[
ACK sip:{to}@{engine} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:4001@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to}@{DOMAIN}>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
</scenario>
"#,
        &full[..cut]
    )
}

/// RFC 4568 / RFC 3264: an RTP/SAVP offer to the menu, the echo test or voicemail
/// whose `a=crypto` lines the engine cannot use (garbled key, unknown suite, a tag
/// out of range, no line at all) gets 488, and the engine carries on serving.
#[test]
fn a_garbled_crypto_line_gets_488() {
    let _serial = one_at_a_time();
    if !have("sipp") && skip_or_fail("garbled a=crypto", "sipp") {
        return;
    }
    let dir = temp_dir("srtp-garbled");
    let prompts = prompts_dir();
    let engine = EngineProc::start_with(
        &dir,
        Some(&srtp_office()),
        free_port(),
        &["--prompts", prompts.to_str().unwrap()],
    );
    let key = "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
    let hostile = [
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:!!!not-base64!!!\n".to_owned(),
        format!("a=crypto:1 NO_SUCH_SUITE {key}\n"),
        format!("a=crypto:99999999999999999999999 AES_CM_128_HMAC_SHA1_80 {key}\n"),
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNf\n".to_owned(),
        format!(
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{}|2^999|1:99999\n",
            "A".repeat(3000)
        ),
        "a=crypto:\n".to_owned(),
        String::new(),
    ];
    for (i, crypto) in hostile.iter().enumerate() {
        for to in ["7000", "8001", "7002"] {
            let run = sipp(
                &dir,
                &format!("garbled-{i}-{to}"),
                &offer_scenario(engine.sip, to, "RTP/SAVP", crypto, 488),
                &engine.sip.to_string(),
                &["-m", "1", "-p", &free_port().to_string()],
            );
            assert!(run.ok, "{to} with {crypto:?}: {}", run.output);
        }
    }
    // Still serving: a valid key is answered with the engine's (RTP/SAVP) ...
    let good = format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 {key}\n");
    let run = answered(&dir, &engine, "good", "RTP/SAVP", &good, true);
    assert!(run.ok, "a valid key is answered with one: {}", run.output);
    // ... and best-effort SRTP (RTP/AVP) with a garbled key is answered plain, the
    // line ignored (RFC 8643 §4).
    let run = answered(&dir, &engine, "avp-garbled", "RTP/AVP", &hostile[0], false);
    assert!(
        run.ok,
        "garbled best-effort SRTP is answered plain: {}",
        run.output
    );
}

/// A SIPp call to the echo test offering `m_line` and `crypto`, checking that the
/// engine's 200 has (`with_crypto`) or has not an `a=crypto` line.
fn answered(
    dir: &Path,
    engine: &EngineProc,
    name: &str,
    m_line: &str,
    crypto: &str,
    with_crypto: bool,
) -> SippRun {
    let check = if with_crypto {
        r#"check_it="true""#
    } else {
        r#"check_it_inverse="true""#
    };
    let scenario = call_scenario(engine.sip, "4001", "alice-pw", "8001", false, 500)
        .replace(
            "m=audio [media_port] RTP/AVP 8 101\na=rtpmap:8 PCMA/8000\na=rtpmap:101 telephone-event/8000\n",
            &format!("m=audio [media_port] {m_line} 8 101\na=rtpmap:8 PCMA/8000\na=rtpmap:101 telephone-event/8000\n{crypto}"),
        )
        .replace(
            r#"<recv response="200" rrs="true"/>"#,
            &format!(
                r#"<recv response="200" rrs="true"><action><ereg regexp="a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" search_in="body" {check} assign_to="c"/><log message="crypto [$c]"/></action></recv>"#
            ),
        );
    sipp(
        dir,
        name,
        &scenario,
        &engine.sip.to_string(),
        &["-m", "1", "-p", &free_port().to_string()],
    )
}
