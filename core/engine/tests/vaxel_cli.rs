//! The Vaxel softphone (`vaxel run`, the workspace's own CLI) registers to the engine
//! and calls through it: audio both ways through the engine's relay (each phone
//! plays its own tone, the other's recording must hold it), DTMF (RFC 4733 events
//! relayed end to end), and attended transfer executed by the engine (REFER with
//! Replaces: the engine joins the two remaining phones, who then hear each other), and
//! "send to voicemail" from a ringing vaxel (`voicemail`: 302 to `*59*4002`), which the
//! engine follows to the mailbox, where the caller leaves a message.
//!
//! The `vaxel` binary is the one `cargo test --workspace` builds next to this test
//! (`npm test` does that); alone, build it first: `cargo build -p vaxel-phone --bin
//! vaxel`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use vaxel_media::dsp::{goertzel_power, sine};
use vaxel_media::wav::{Prompt, WavRecorder};

/// baresip and vaxel tests each start several phones; one at a time on 2 cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The `vaxel` binary built in the same target directory as this test.
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

/// A WAV with a sine of `freq` Hz at 16 kHz (silence for 0 Hz), −12 dBFS.
fn tone_wav(path: &Path, freq: f64, secs: usize) {
    let mut rec = WavRecorder::new(std::fs::File::create(path).unwrap(), 16_000).unwrap();
    let amp = 32767.0 * 10f64.powf(-12.0 / 20.0);
    rec.write(&sine(16_000, freq, amp, 16_000 * secs)).unwrap();
    rec.finish().unwrap();
}

/// The strongest of `freqs` in the loudest second of a recording, and its share of
/// that second's energy.
fn dominant(path: &Path, freqs: &[f64]) -> (f64, f64) {
    let p = Prompt::from_wav(std::fs::File::open(path).unwrap(), 16_000).unwrap();
    let s = p.samples();
    let block = 16_000usize;
    let mut best = (0.0, 0.0, 0.0f64);
    for chunk in s.chunks(block).filter(|c| c.len() == block) {
        let energy: f64 = chunk.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        if energy <= best.2 {
            continue;
        }
        let (f, pw) = freqs
            .iter()
            .map(|&f| (f, goertzel_power(chunk, 16_000, f)))
            .fold((0.0, -1.0), |a, b| if b.1 > a.1 { b } else { a });
        best = (f, pw, energy);
    }
    let share = if best.2 > 0.0 {
        2.0 * best.1 / (best.2 / block as f64)
    } else {
        0.0
    };
    (best.0, share)
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
    /// Adds the account (`sip:EXT@office.test` through the engine as outbound proxy)
    /// and starts `vaxel run` playing `play` and recording to `record`.
    fn start(dir: &Path, ext: &str, password: &str, engine: &EngineProc, play: &Path) -> Vaxel {
        Vaxel::start_with(dir, ext, password, engine, play, true)
    }

    /// [`Vaxel::start`], answering calls by itself or not.
    fn start_with(
        dir: &Path,
        ext: &str,
        password: &str,
        engine: &EngineProc,
        play: &Path,
        auto_answer: bool,
    ) -> Vaxel {
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
            .args(["--listen", "127.0.0.1", "run"])
            .args(auto_answer.then_some("--auto-answer"))
            .arg("--play")
            .arg(play)
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
        v.event("registered", 15);
        v
    }

    fn send(&mut self, line: &str) {
        let s = self.stdin.as_mut().unwrap();
        writeln!(s, "{line}").unwrap();
        s.flush().unwrap();
    }

    fn expect(&mut self, what: &str, secs: u64, f: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.seen.iter().find(|v| f(v)) {
            return v.clone();
        }
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

    fn event(&mut self, event: &str, secs: u64) -> Value {
        self.expect(event, secs, |v| v["event"] == event)
    }

    fn digits(&self) -> String {
        self.seen
            .iter()
            .filter(|v| v["event"] == "dtmf")
            .filter_map(|v| v["digit"].as_str())
            .collect()
    }
}

impl Drop for Vaxel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const FREQS: [f64; 4] = [500.0, 700.0, 1000.0, 1500.0];

#[test]
fn vaxel_phones_call_through_the_engine_with_audio_both_ways_and_dtmf() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("vaxel-call");
    let engine = EngineProc::start(&dir, Some(&office("")), free_port());
    let (t1000, t700) = (dir.join("t1000.wav"), dir.join("t700.wav"));
    tone_wav(&t1000, 1000.0, 2);
    tone_wav(&t700, 700.0, 2);
    let mut alice = Vaxel::start(&dir, "4001", "alice-pw", &engine, &t1000);
    let mut bob = Vaxel::start(&dir, "4002", "bob-pw", &engine, &t700);
    alice.send("call 4002");
    alice.expect("established", 15, |v| v["event"] == "established");
    bob.event("established", 10);
    // RFC 4733 events: the relay carries them like any RTP packet.
    alice.send("dtmf 1 42#");
    bob.expect("dtmf #", 10, |v| v["event"] == "dtmf" && v["digit"] == "#");
    assert_eq!(bob.digits(), "42#");
    // Hold and resume: both re-INVITEs pass through the engine to Bob.
    alice.send("hold 1");
    alice.expect("held", 10, |v| v["event"] == "held" && v["call"] == 1);
    bob.expect("held by Alice", 10, |v| {
        v["event"] == "held" && v["by"] == "remote"
    });
    alice.send("resume 1");
    alice.expect("resumed", 10, |v| v["event"] == "resumed" && v["call"] == 1);
    bob.expect("resumed by Alice", 10, |v| {
        v["event"] == "resumed" && v["by"] == "remote"
    });
    std::thread::sleep(Duration::from_secs(2));
    alice.send("hangup 1");
    alice.expect("ended", 10, |v| v["event"] == "ended");
    bob.expect("ended", 10, |v| {
        v["event"] == "ended" && v["cause"] == "remote_hangup"
    });
    std::thread::sleep(Duration::from_millis(500));
    let (f, share) = dominant(&dir.join("4002.wav"), &FREQS);
    assert_eq!(f, 1000.0, "Bob hears Alice's 1 kHz ({share:.2})");
    assert!(share > 0.5, "{share}");
    let (f, share) = dominant(&dir.join("4001.wav"), &FREQS);
    assert_eq!(f, 700.0, "Alice hears Bob's 700 Hz ({share:.2})");
    assert!(share > 0.5, "{share}");
    let db = vaxel_engine::db::Db::open(&dir).unwrap();
    let call = db.calls(1).unwrap().remove(0);
    assert_eq!(call.answered_by.as_deref(), Some("4002"));
}

/// Attended transfer executed by the engine: Alice calls Bob, holds him, calls
/// Carla, then REFERs Bob to Carla with Replaces naming her call with Carla. The
/// engine re-INVITEs Bob onto Carla's call relay; Alice gets NOTIFY 200 and BYE on
/// both calls; Bob and Carla hear each other. Alice plays silence, so what Bob and
/// Carla record loudest is each other.
#[test]
fn vaxel_attended_transfer_executed_by_the_engine() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("vaxel-atransfer");
    let engine = EngineProc::start(&dir, Some(&office("")), free_port());
    let (quiet, t700, t1500) = (
        dir.join("quiet.wav"),
        dir.join("t700.wav"),
        dir.join("t1500.wav"),
    );
    tone_wav(&quiet, 0.0, 2);
    tone_wav(&t700, 700.0, 2);
    tone_wav(&t1500, 1500.0, 2);
    let mut alice = Vaxel::start(&dir, "4001", "alice-pw", &engine, &quiet);
    let mut bob = Vaxel::start(&dir, "4002", "bob-pw", &engine, &t700);
    let mut carla = Vaxel::start(&dir, "4003", "carla-pw", &engine, &t1500);
    alice.send("call 4002");
    alice.expect("established 1", 15, |v| {
        v["event"] == "established" && v["call"] == 1
    });
    bob.event("established", 10);
    alice.send("hold 1");
    alice.expect("held 1", 10, |v| v["event"] == "held" && v["call"] == 1);
    bob.expect("held by Alice", 10, |v| {
        v["event"] == "held" && v["by"] == "remote"
    });
    alice.send("call 4003");
    alice.expect("established 2", 15, |v| {
        v["event"] == "established" && v["call"] == 2
    });
    carla.event("established", 10);
    alice.send("attended-transfer 1 2");
    alice.expect("transferred 1", 10, |v| {
        v["event"] == "transferred" && v["call"] == 1
    });
    alice.expect("consultation ended by the engine", 10, |v| {
        v["event"] == "ended" && v["call"] == 2
    });
    bob.expect("resumed by the engine's re-INVITE", 10, |v| {
        v["event"] == "resumed" && v["by"] == "remote"
    });
    std::thread::sleep(Duration::from_secs(3));
    bob.send("hangup 1");
    bob.expect("Bob's call ended", 10, |v| v["event"] == "ended");
    carla.expect("Carla's call ended by Bob", 10, |v| {
        v["event"] == "ended" && v["cause"] == "remote_hangup"
    });
    std::thread::sleep(Duration::from_millis(500));
    let (f, share) = dominant(&dir.join("4003.wav"), &FREQS);
    assert_eq!(f, 700.0, "Carla hears Bob's 700 Hz ({share:.2})");
    assert!(share > 0.5, "{share}");
    let (f, share) = dominant(&dir.join("4002.wav"), &FREQS);
    assert_eq!(f, 1500.0, "Bob hears Carla's 1500 Hz ({share:.2})");
    assert!(share > 0.5, "{share}");
    // The call records: both calls ended; Alice→Carla got Bob's leg and carried
    // RTP both ways.
    let db = vaxel_engine::db::Db::open(&dir).unwrap();
    let calls = db.calls(10).unwrap();
    assert_eq!(calls.len(), 2, "{calls:?}");
    let first = calls.iter().find(|c| c.callee == "4002").unwrap();
    assert!(first.ended_at.is_some(), "{first:?}");
    let second = calls.iter().find(|c| c.callee == "4003").unwrap();
    assert_eq!(db.leg_count(second.id).unwrap(), 3, "A, B and Bob's leg");
    assert!(
        second.packets_a_to_b > 100 && second.packets_b_to_a > 100,
        "{second:?}"
    );
}

/// "Send to voicemail" from the ringing phone: Bob's vaxel answers Alice's call with
/// 302 and `Contact: <sip:*59*4002@…>` (`voicemail`), the engine follows it to Bob's
/// mailbox: Alice's call is answered by the voicemail and her tone is left as a
/// message in Bob's box.
#[test]
fn vaxel_sends_a_ringing_call_to_voicemail_and_the_engine_follows() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("vaxel-voicemail");
    let engine = EngineProc::start(&dir, Some(&office("")), free_port());
    let (t1000, quiet) = (dir.join("t1000.wav"), dir.join("quiet.wav"));
    tone_wav(&t1000, 1000.0, 2);
    tone_wav(&quiet, 0.0, 2);
    let mut alice = Vaxel::start(&dir, "4001", "alice-pw", &engine, &t1000);
    let mut bob = Vaxel::start_with(&dir, "4002", "bob-pw", &engine, &quiet, false);
    alice.send("call 4002");
    let inc = bob.event("incoming", 15);
    bob.send(&format!("voicemail {}", inc["call"]));
    bob.expect("Bob's phone redirected", 10, |v| {
        v["event"] == "ended" && v["cause"] == "local_rejected" && v["status"] == 302
    });
    alice.expect("answered by Bob's voicemail", 15, |v| {
        v["event"] == "established" && v["call"] == 1
    });
    // The greeting, the beep, then a few seconds of Alice's tone as the message.
    let boxdir = dir.join("voicemail").join("4002");
    let deadline = Instant::now() + Duration::from_secs(30);
    let has_message = || {
        std::fs::read_dir(&boxdir)
            .map(|d| {
                d.flatten()
                    .any(|e| e.path().extension().is_some_and(|x| x == "wav"))
            })
            .unwrap_or(false)
    };
    std::thread::sleep(Duration::from_secs(12));
    alice.send("hangup 1");
    alice.expect("ended", 10, |v| v["event"] == "ended");
    while !has_message() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(has_message(), "a message in {}", boxdir.display());
}
