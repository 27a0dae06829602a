//! Two real softphones (baresip) register to the engine and call each other through
//! it; each sends a different tone from a file and the other must hear it (audio both
//! ways through the engine's RTP relay).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use vaxel_testkit::peers::skip_or_fail;

/// baresip tests run one at a time: each baresip also binds its SIP port + 1 (for
/// TLS), which can be another test's port, and three pairs of phones plus engines
/// at once starve a 2-core machine so that a WAV dump misses its audio.
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

/// Samples of a 16-bit mono WAV and its rate.
fn read_wav(path: &Path) -> (Vec<i16>, u32) {
    let b = std::fs::read(path).unwrap();
    let rate = u32::from_le_bytes([b[24], b[25], b[26], b[27]]);
    let mut i = 12;
    while i + 8 <= b.len() {
        let len = u32::from_le_bytes([b[i + 4], b[i + 5], b[i + 6], b[i + 7]]) as usize;
        if &b[i..i + 4] == b"data" {
            let end = (i + 8 + len).min(b.len());
            let s = b[i + 8..end]
                .chunks_exact(2)
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
    fn start(dir: &Path, user: &str, password: &str, engine: &EngineProc, tone: f64) -> Baresip {
        Self::start_via(dir, user, password, &format!("sip:{}", engine.sip), tone)
    }

    /// [`Baresip::start`] with `outbound` as the outbound proxy URI.
    fn start_via(dir: &Path, user: &str, password: &str, outbound: &str, tone: f64) -> Baresip {
        std::fs::create_dir_all(dir).unwrap();
        let (sip, ctrl) = (free_port(), free_port());
        write_tone(&dir.join("tx.wav"), tone, 20, 8000);
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
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{user}@{DOMAIN}>;auth_pass={password};outbound=\"{outbound}\";regint=600;answermode=auto;audio_codecs=PCMU\n",
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
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn dec_wav(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
}

#[test]
fn two_baresip_phones_call_through_the_engine_with_audio_both_ways() {
    let _serial = one_at_a_time();
    if !have("baresip") && skip_or_fail("baresip call", "baresip") {
        return;
    }
    let dir = temp_dir("baresip");
    let engine = EngineProc::start(&dir, Some(&office("")), free_port());
    let alice = Baresip::start(&dir.join("alice"), "4001", "alice-pw", &engine, 440.0);
    let bob = Baresip::start(&dir.join("bob"), "4002", "bob-pw", &engine, 1000.0);
    let db = vaxel_engine::db::Db::open(&dir).unwrap();
    wait_until("both phones registered", 15, || {
        db.bindings(0).map(|b| b.len() == 2).unwrap_or(false)
    });
    alice.command("dial", "4002");
    wait_until("the call answered", 15, || {
        db.calls(1)
            .ok()
            .and_then(|c| c.first().cloned())
            .is_some_and(|c| c.answered_at.is_some())
    });
    std::thread::sleep(Duration::from_secs(4));
    alice.command("hangup", "");
    wait_until("the call ended", 10, || {
        db.calls(1)
            .ok()
            .and_then(|c| c.first().cloned())
            .is_some_and(|c| c.ended_at.is_some())
    });
    let call = db.calls(1).unwrap().remove(0);
    assert_eq!(call.caller, "4001");
    assert_eq!(call.answered_by.as_deref(), Some("4002"));
    assert!(
        call.packets_a_to_b > 100 && call.packets_b_to_a > 100,
        "{call:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let heard_by_bob =
        dec_wav(&bob.dir).unwrap_or_else(|| panic!("bob recorded nothing: {}", bob.log()));
    let heard_by_alice =
        dec_wav(&alice.dir).unwrap_or_else(|| panic!("alice recorded nothing: {}", alice.log()));
    let (s, rate) = read_wav(&heard_by_bob);
    let f = tone_of(&s, rate).expect("bob heard a tone");
    assert!(
        (f - 440.0).abs() < 40.0,
        "bob heard {f} Hz, alice sent 440 Hz"
    );
    let (s, rate) = read_wav(&heard_by_alice);
    let f = tone_of(&s, rate).expect("alice heard a tone");
    assert!(
        (f - 1000.0).abs() < 60.0,
        "alice heard {f} Hz, bob sent 1000 Hz"
    );
}

/// Blind transfer executed by the engine: Alice calls Bob, Bob transfers her to
/// Carla (REFER); Carla answers and hears Alice, Alice hears Carla; Bob is gone.
#[test]
fn baresip_blind_transfer_through_the_engine() {
    let _serial = one_at_a_time();
    if !have("baresip") && skip_or_fail("baresip transfer", "baresip") {
        return;
    }
    let dir = temp_dir("transfer");
    let engine = EngineProc::start(&dir, Some(&office("")), free_port());
    let alice = Baresip::start(&dir.join("alice"), "4001", "alice-pw", &engine, 440.0);
    let bob = Baresip::start(&dir.join("bob"), "4002", "bob-pw", &engine, 1000.0);
    let carla = Baresip::start(&dir.join("carla"), "4003", "carla-pw", &engine, 700.0);
    let db = vaxel_engine::db::Db::open(&dir).unwrap();
    wait_until("three phones registered", 15, || {
        db.bindings(0).map(|b| b.len() == 3).unwrap_or(false)
    });
    alice.command("dial", "4002");
    wait_until("Bob answered", 15, || {
        db.calls(1)
            .ok()
            .and_then(|c| c.first().cloned())
            .is_some_and(|c| c.answered_at.is_some())
    });
    std::thread::sleep(Duration::from_secs(1));
    bob.command("transfer", "4003");
    wait_until("Carla answered", 15, || dec_wav(&carla.dir).is_some());
    std::thread::sleep(Duration::from_secs(3));
    alice.command("hangup", "");
    wait_until("the call ended", 10, || {
        db.calls(1)
            .ok()
            .and_then(|c| c.first().cloned())
            .is_some_and(|c| c.ended_at.is_some())
    });
    std::thread::sleep(Duration::from_millis(500));
    let (s, rate) = read_wav(&dec_wav(&carla.dir).unwrap());
    let f = tone_of(&s, rate).unwrap_or_else(|| panic!("Carla heard nothing: {}", carla.log()));
    assert!(
        (f - 440.0).abs() < 40.0,
        "Carla heard {f} Hz, Alice sent 440 Hz"
    );
    let (s, rate) = read_wav(&dec_wav(&alice.dir).unwrap());
    let tail = &s[s.len().saturating_sub(2 * rate as usize)..];
    let f = tone_of(tail, rate).expect("Alice heard Carla");
    assert!(
        (f - 700.0).abs() < 40.0,
        "Alice heard {f} Hz at the end, Carla sent 700 Hz"
    );
    assert!(
        bob.log().contains("terminated"),
        "Bob left the call: {}",
        bob.log()
    );
    let call = db.calls(1).unwrap().remove(0);
    assert_eq!(
        db.leg_count(call.id).unwrap(),
        3,
        "A, B and the transfer leg"
    );
}

/// Hold and resume (re-INVITEs passed between the legs with the SDP rewritten)
/// between two baresip phones; audio flows again after resume.
#[test]
fn baresip_hold_and_resume_through_the_engine() {
    let _serial = one_at_a_time();
    if !have("baresip") && skip_or_fail("baresip hold", "baresip") {
        return;
    }
    let dir = temp_dir("dtmfhold");
    let engine = EngineProc::start(&dir, Some(&office("")), free_port());
    let alice = Baresip::start(&dir.join("alice"), "4001", "alice-pw", &engine, 440.0);
    let bob = Baresip::start(&dir.join("bob"), "4002", "bob-pw", &engine, 1000.0);
    let db = vaxel_engine::db::Db::open(&dir).unwrap();
    wait_until("both phones registered", 15, || {
        db.bindings(0).map(|b| b.len() == 2).unwrap_or(false)
    });
    alice.command("dial", "4002");
    wait_until("the call answered", 15, || {
        db.calls(1)
            .ok()
            .and_then(|c| c.first().cloned())
            .is_some_and(|c| c.answered_at.is_some())
    });
    std::thread::sleep(Duration::from_millis(800));
    alice.command("hold", "");
    wait_until("Bob saw the hold", 10, || {
        bob.log().to_lowercase().contains("sendonly") || bob.log().contains("hold")
    });
    std::thread::sleep(Duration::from_millis(500));
    alice.command("resume", "");
    std::thread::sleep(Duration::from_secs(2));
    alice.command("hangup", "");
    wait_until("the call ended", 10, || {
        db.calls(1)
            .ok()
            .and_then(|c| c.first().cloned())
            .is_some_and(|c| c.ended_at.is_some())
    });
    // Both re-INVITEs reached Bob through the engine and were answered.
    assert_eq!(
        bob.log().matches("got re-INVITE").count(),
        2,
        "{}",
        bob.log()
    );
    assert!(!alice.log().contains("failed"), "{}", alice.log());
    // The relay kept carrying RTP both ways for the whole call (about 50 packets per
    // second each way, through hold and after resume). Baresip 1.0's sndfile stops
    // dumping at the first re-INVITE, so the tones are not checked here.
    let call = db.calls(1).unwrap().remove(0);
    let secs = (call.ended_at.unwrap() - call.answered_at.unwrap()).max(1);
    assert!(
        call.packets_a_to_b >= 40 * (secs - 1) && call.packets_b_to_a >= 40 * (secs - 1),
        "{call:?}"
    );
    assert_eq!(db.calls(10).unwrap().len(), 1);
}

/// SIP over TLS: the engine listens with a certificate; one phone registers and
/// calls over TLS, the other over UDP; the engine's INVITE to the TLS phone goes back
/// through its TLS connection; audio both ways through the relay.
#[test]
fn baresip_over_tls_calls_a_udp_phone_through_the_engine() {
    let _serial = one_at_a_time();
    if !have("baresip") && skip_or_fail("baresip TLS", "baresip") {
        return;
    }
    if !have("openssl") && skip_or_fail("baresip TLS", "openssl") {
        return;
    }
    let dir = temp_dir("tls");
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
    let tls_port = free_port();
    let tls = format!("127.0.0.1:{tls_port}");
    let engine = EngineProc::start_with(
        &dir,
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
    let alice = Baresip::start_via(
        &dir.join("alice"),
        "4001",
        "alice-pw",
        &format!("sip:{tls};transport=tls"),
        440.0,
    );
    let bob = Baresip::start(&dir.join("bob"), "4002", "bob-pw", &engine, 1000.0);
    let db = vaxel_engine::db::Db::open(&dir).unwrap();
    wait_until("both phones registered", 15, || {
        db.bindings(0).map(|b| b.len() == 2).unwrap_or(false)
    });
    let bindings = db.bindings(0).unwrap();
    let a = bindings.iter().find(|b| b.extension == "4001").unwrap();
    assert!(a.transport.eq_ignore_ascii_case("tls"), "{a:?}");
    // Bob calls Alice: the engine's INVITE goes over Alice's TLS connection.
    bob.command("dial", "4001");
    wait_until("the call answered", 15, || {
        db.calls(1)
            .ok()
            .and_then(|c| c.first().cloned())
            .is_some_and(|c| c.answered_at.is_some())
    });
    std::thread::sleep(Duration::from_secs(3));
    bob.command("hangup", "");
    wait_until("the call ended", 10, || {
        db.calls(1)
            .ok()
            .and_then(|c| c.first().cloned())
            .is_some_and(|c| c.ended_at.is_some())
    });
    std::thread::sleep(Duration::from_millis(500));
    let (s, rate) = read_wav(&dec_wav(&alice.dir).unwrap_or_else(|| panic!("{}", alice.log())));
    let f = tone_of(&s, rate).expect("Alice heard a tone");
    assert!(
        (f - 1000.0).abs() < 60.0,
        "Alice heard {f} Hz, Bob sent 1000 Hz"
    );
    let (s, rate) = read_wav(&dec_wav(&bob.dir).unwrap_or_else(|| panic!("{}", bob.log())));
    let f = tone_of(&s, rate).expect("Bob heard a tone");
    assert!(
        (f - 440.0).abs() < 40.0,
        "Bob heard {f} Hz, Alice sent 440 Hz"
    );
}
