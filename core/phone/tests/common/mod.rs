//! Helpers for the `vaxel` program tests: temp dirs, tone files, free ports, running
//! `vaxel` as a child and reading its JSON events, finding a tone in a recording.

#![allow(dead_code)]

pub mod baresip;
pub mod kamailio;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use vaxel_media::dsp::{goertzel_power, sine};
use vaxel_media::wav::{Prompt, WavRecorder};

pub const BIN: &str = env!("CARGO_BIN_EXE_vaxel");

pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vaxel-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A WAV with a sine of `freq` Hz at 16 kHz, `secs` long, −12 dBFS.
pub fn tone_wav(path: &Path, freq: f64, secs: usize) {
    let mut rec = WavRecorder::new(std::fs::File::create(path).unwrap(), 16_000).unwrap();
    let amp = 32767.0 * 10f64.powf(-12.0 / 20.0);
    rec.write(&sine(16_000, freq, amp, 16_000 * secs)).unwrap();
    rec.finish().unwrap();
}

/// A UDP+TCP port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    loop {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// The strongest of `freqs` in a recording, and the share of the 1 s block energy it
/// takes (checked over the loudest second).
pub fn dominant(path: &Path, freqs: &[f64]) -> (f64, f64) {
    let p = Prompt::from_wav(std::fs::File::open(path).unwrap(), 16_000).unwrap();
    let s = p.samples();
    let block = 16_000usize;
    let mut best = (0.0, 0.0, 0.0f64); // freq, power, energy
    for chunk in s.chunks(block).filter(|c| c.len() == block) {
        let energy: f64 = chunk.iter().map(|&x| (x as f64) * (x as f64)).sum();
        if energy <= best.2 {
            continue;
        }
        let (f, pw) = freqs
            .iter()
            .map(|&f| (f, goertzel_power(chunk, 16_000, f)))
            .fold((0.0, -1.0), |a, b| if b.1 > a.1 { b } else { a });
        best = (f, pw, energy);
    }
    // goertzel_power of a pure tone of amplitude A is A²/4; its mean energy A²/2.
    let share = if best.2 > 0.0 {
        2.0 * best.1 / (best.2 / block as f64)
    } else {
        0.0
    };
    (best.0, share)
}

/// A running `vaxel` with its events.
pub struct Vaxel {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    events: mpsc::Receiver<Value>,
    pub seen: Vec<Value>,
}

impl Vaxel {
    pub fn spawn(name: &str, args: &[&str], env: &[(&str, &str)]) -> Vaxel {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("vaxel starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let tag = name.to_owned();
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
        Vaxel {
            name: name.into(),
            child,
            stdin,
            events: rx,
            seen: Vec::new(),
        }
    }

    pub fn send(&mut self, line: &str) {
        let s = self.stdin.as_mut().expect("stdin open");
        writeln!(s, "{line}").unwrap();
        s.flush().unwrap();
    }

    /// Ctrl-C (SIGINT), as a person stops `vaxel watch`.
    pub fn interrupt(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for an event for which `f` holds; panics after `secs`.
    pub fn expect(&mut self, what: &str, secs: u64, f: impl Fn(&Value) -> bool) -> Value {
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

    /// Waits for a new event (one not seen yet) for which `f` holds; panics after `secs`.
    pub fn expect_new(&mut self, what: &str, secs: u64, f: impl Fn(&Value) -> bool) -> Value {
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
                    "{}: no new {what} within {secs} s; saw {:?}",
                    self.name, self.seen
                ),
            }
        }
    }

    /// Waits for `event` (by name).
    pub fn event(&mut self, event: &str, secs: u64) -> Value {
        self.expect(event, secs, |v| v["event"] == event)
    }

    /// Waits for the exit; returns the status code (kills after `secs`).
    pub fn wait(&mut self, secs: u64) -> i32 {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                // Collect what is left.
                while let Ok(v) = self.events.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(v);
                }
                return s.code().unwrap_or(-1);
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!(
                    "{} did not exit within {secs} s; saw {:?}",
                    self.name, self.seen
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn digits(&self) -> String {
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

/// Whether a required peer program exists; prints a skip line, or panics when
/// `VAXEL_REQUIRE_PEERS=1`.
pub fn have_peer(program: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
        || Path::new(program).is_file();
    if !found {
        if std::env::var("VAXEL_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("{program} is required (VAXEL_REQUIRE_PEERS=1) but not installed");
        }
        eprintln!("SKIP: {program} not installed (scripts/setup.sh test installs it)");
    }
    found
}
