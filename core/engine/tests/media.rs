//! The engine's media anchor with real phones: SRTP terminated per leg (RFC 3711,
//! SDES keys RFC 4568) and transcoding when the legs share no codec. Each phone
//! (baresip) sends a different tone from a file and records what it hears; the
//! recordings must hold the other phone's tone.
//!
//! The baresip helper is this file's own (tests/baresip.rs has the plain one):
//! here each phone also chooses its media encryption and codecs.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use vaxel_testkit::peers::skip_or_fail;

/// One call of baresip phones at a time (each binds its SIP port + 1 for TLS, and
/// two pairs of phones starve a 2-core machine).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
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
            let end = (i + 8 + len).min(b.len());
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

/// The dominant frequency of the loud part of a signal, by zero crossings.
fn tone_of(samples: &[i16], rate: u32) -> Option<f64> {
    let loud: Vec<i16> = samples.iter().copied().filter(|s| s.abs() > 0).collect();
    let loud_n = samples.iter().filter(|s| s.abs() > 1000).count();
    if loud_n < rate as usize {
        return None;
    }
    let crossings = loud.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    Some(crossings as f64 / 2.0 / (loud.len() as f64 / f64::from(rate)))
}

/// How a test phone is set up.
struct PhoneSetup<'a> {
    user: &'a str,
    password: &'a str,
    /// Outbound proxy URI (the engine's UDP or TLS address).
    outbound: String,
    /// baresip `mediaenc` (`srtp`: RTP/AVP with `a=crypto`, `srtp-mand`: RTP/SAVP).
    mediaenc: Option<&'a str>,
    /// baresip `audio_codecs`, e.g. `PCMU` or `opus/48000/1` (baresip registers Opus mono here).
    codecs: &'a str,
    tone: f64,
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
    fn start(dir: &Path, p: &PhoneSetup) -> Baresip {
        std::fs::create_dir_all(dir).unwrap();
        let (sip, ctrl) = (free_port(), free_port());
        let opus = p.codecs.contains("opus");
        let rate = if opus { 48000 } else { 8000 };
        write_tone(&dir.join("tx.wav"), p.tone, 20, rate);
        std::fs::write(
            dir.join("config"),
            format!(
                "poll_method epoll\nnet_interface 127.0.0.1\n\
                 sip_listen 127.0.0.1:{sip}\n\
                 audio_player aubridge,nil\n\
                 audio_source aufile,{tx}\n\
                 audio_alert aubridge,nil\n\
                 audio_srate {rate}\n\
                 audio_channels 1\n\
                 snd_path {dir}\n\
                 module_path /usr/lib/baresip/modules\n\
                 module g711.so\n\
                 module opus.so\n\
                 module srtp.so\n\
                 module aufile.so\n\
                 module aubridge.so\n\
                 module sndfile.so\n\
                 module_app account.so\n\
                 module_app menu.so\n\
                 module_app ctrl_tcp.so\n\
                 ctrl_tcp_listen 127.0.0.1:{ctrl}\n\
                 opus_stereo no\nopus_sprop_stereo no\n",
                tx = dir.join("tx.wav").display(),
                dir = dir.display(),
            ),
        )
        .unwrap();
        let menc = p
            .mediaenc
            .map(|m| format!(";mediaenc={m}"))
            .unwrap_or_default();
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{}@{DOMAIN}>;auth_pass={};outbound=\"{}\";regint=600;answermode=auto;audio_codecs={}{menc}\n",
                p.user, p.password, p.outbound, p.codecs,
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

    /// The tone this phone heard (its decoder's recording).
    fn heard(&self) -> Option<f64> {
        let wav = std::fs::read_dir(&self.dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.to_string_lossy().ends_with("-dec.wav"))?;
        let (s, rate) = read_wav(&wav);
        tone_of(&s, rate)
    }
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An engine with a TLS listener (self-signed certificate for 127.0.0.1).
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
    let engine = EngineProc::start_with(
        dir,
        Some(&office("")),
        free_port(),
        &[
            "--tls",
            &tls,
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    (engine, format!("sip:{tls};transport=tls"))
}

/// `caller` dials `callee_ext`; after a few seconds of audio it hangs up.
fn call(db: &vaxel_engine::db::Db, caller: &Baresip, callee_ext: &str) {
    wait_until("both phones registered", 15, || {
        db.bindings(0).map(|b| b.len() == 2).unwrap_or(false)
    });
    caller.command("dial", callee_ext);
    wait_until("the call answered", 15, || {
        db.calls(1)
            .ok()
            .and_then(|c| c.first().cloned())
            .is_some_and(|c| c.answered_at.is_some())
    });
    std::thread::sleep(Duration::from_secs(4));
    caller.command("hangup", "");
    wait_until("the call ended", 10, || {
        db.calls(1)
            .ok()
            .and_then(|c| c.first().cloned())
            .is_some_and(|c| c.ended_at.is_some())
    });
    std::thread::sleep(Duration::from_millis(500));
}

fn assert_heard(phone: &Baresip, name: &str, want: f64) {
    let f = phone
        .heard()
        .unwrap_or_else(|| panic!("{name} heard no tone:\n{}", phone.log()));
    assert!(
        (f - want).abs() < want * 0.06,
        "{name} heard {f} Hz, the other phone sent {want} Hz"
    );
}

fn peers_present(what: &str) -> bool {
    for tool in ["baresip", "openssl"] {
        if !have(tool) && skip_or_fail(what, tool) {
            return false;
        }
    }
    true
}

/// An SRTP phone (baresip over TLS, RTP/SAVP with `a=crypto`) calls a phone
/// without SRTP (UDP, plain RTP/AVP): the engine answers the caller with its own
/// key and decrypts, the callee gets plain RTP; audio both ways. End-to-end keys
/// could not do this: the plain phone cannot decrypt.
#[test]
fn an_srtp_phone_and_a_plain_phone_talk_through_the_engine() {
    let _serial = one_at_a_time();
    if !peers_present("SRTP to plain") {
        return;
    }
    let dir = temp_dir("srtp-plain");
    let (engine, tls) = engine_with_tls(&dir);
    let alice = Baresip::start(
        &dir.join("alice"),
        &PhoneSetup {
            user: "4001",
            password: "alice-pw",
            outbound: tls,
            mediaenc: Some("srtp-mand"),
            codecs: "PCMU",
            tone: 440.0,
        },
    );
    let bob = Baresip::start(
        &dir.join("bob"),
        &PhoneSetup {
            user: "4002",
            password: "bob-pw",
            outbound: format!("sip:{}", engine.sip),
            mediaenc: None,
            codecs: "PCMU",
            tone: 1000.0,
        },
    );
    let db = vaxel_engine::db::Db::open(&dir).unwrap();
    call(&db, &alice, "4002");
    assert_heard(&alice, "Alice (SRTP)", 1000.0);
    assert_heard(&bob, "Bob (plain)", 440.0);
    assert!(alice.used_srtp(), "{}", alice.log());
    assert!(!bob.used_srtp(), "{}", bob.log());
}

/// Two SRTP phones: each uses the engine's key toward it (the callee was offered
/// opportunistic SRTP, RTP/AVP with `a=crypto`, and took it); audio both ways.
#[test]
fn two_srtp_phones_each_get_the_engines_keys() {
    let _serial = one_at_a_time();
    if !peers_present("SRTP to SRTP") {
        return;
    }
    let dir = temp_dir("srtp-srtp");
    let (_engine, tls) = engine_with_tls(&dir);
    let alice = Baresip::start(
        &dir.join("alice"),
        &PhoneSetup {
            user: "4001",
            password: "alice-pw",
            outbound: tls.clone(),
            mediaenc: Some("srtp-mand"),
            codecs: "PCMU",
            tone: 440.0,
        },
    );
    let bob = Baresip::start(
        &dir.join("bob"),
        &PhoneSetup {
            user: "4002",
            password: "bob-pw",
            outbound: tls,
            mediaenc: Some("srtp"),
            codecs: "PCMU",
            tone: 1000.0,
        },
    );
    let db = vaxel_engine::db::Db::open(&dir).unwrap();
    call(&db, &bob, "4001");
    assert_heard(&alice, "Alice (SRTP)", 1000.0);
    assert_heard(&bob, "Bob (SRTP)", 440.0);
    // Both legs are SRTP; the relay decrypts with each phone's key and encrypts with
    // the engine's key for the other (relay::tests::srtp_is_terminated_per_leg
    // checks the keys in the SDP differ per leg).
    assert!(alice.used_srtp(), "{}", alice.log());
    assert!(bob.used_srtp(), "{}", bob.log());
}

/// Transcoding: an Opus-only phone calls a PCMU-only phone. The engine offers the
/// callee Opus plus G.711, the callee answers PCMU, and the relay decodes,
/// resamples (48 kHz ↔ 8 kHz) and encodes every packet; each phone hears the
/// other's tone.
#[test]
fn an_opus_phone_and_a_pcmu_phone_talk_through_the_engine() {
    let _serial = one_at_a_time();
    if !peers_present("Opus to PCMU") {
        return;
    }
    let dir = temp_dir("opus-pcmu");
    let engine = EngineProc::start(&dir, Some(&office("")), free_port());
    let alice = Baresip::start(
        &dir.join("alice"),
        &PhoneSetup {
            user: "4001",
            password: "alice-pw",
            outbound: format!("sip:{}", engine.sip),
            mediaenc: None,
            codecs: "opus/48000/1",
            tone: 440.0,
        },
    );
    let bob = Baresip::start(
        &dir.join("bob"),
        &PhoneSetup {
            user: "4002",
            password: "bob-pw",
            outbound: format!("sip:{}", engine.sip),
            mediaenc: None,
            codecs: "PCMU",
            tone: 1000.0,
        },
    );
    let db = vaxel_engine::db::Db::open(&dir).unwrap();
    call(&db, &alice, "4002");
    assert!(
        alice.log().contains("Set audio encoder: opus"),
        "{}",
        alice.log()
    );
    assert!(
        bob.log().contains("Set audio encoder: PCMU"),
        "{}",
        bob.log()
    );
    assert_heard(&alice, "Alice (Opus)", 1000.0);
    assert_heard(&bob, "Bob (PCMU)", 440.0);
}

/// Transcoding and SRTP together: an Opus phone with SRTP over TLS calls a
/// PCMU-only phone without SRTP.
#[test]
fn an_opus_srtp_phone_and_a_plain_pcmu_phone_talk_through_the_engine() {
    let _serial = one_at_a_time();
    if !peers_present("Opus SRTP to PCMU") {
        return;
    }
    let dir = temp_dir("opus-srtp-pcmu");
    let (engine, tls) = engine_with_tls(&dir);
    let alice = Baresip::start(
        &dir.join("alice"),
        &PhoneSetup {
            user: "4001",
            password: "alice-pw",
            outbound: tls,
            mediaenc: Some("srtp-mand"),
            codecs: "opus/48000/1",
            tone: 440.0,
        },
    );
    let bob = Baresip::start(
        &dir.join("bob"),
        &PhoneSetup {
            user: "4002",
            password: "bob-pw",
            outbound: format!("sip:{}", engine.sip),
            mediaenc: None,
            codecs: "PCMU",
            tone: 1000.0,
        },
    );
    let db = vaxel_engine::db::Db::open(&dir).unwrap();
    call(&db, &bob, "4001");
    assert_heard(&alice, "Alice (Opus, SRTP)", 1000.0);
    assert_heard(&bob, "Bob (PCMU)", 440.0);
    assert!(alice.used_srtp(), "{}", alice.log());
}
