//! baresip (Debian 1.0.0) as an interop peer: a config directory written by the test
//! (`baresip -f DIR`), a WAV tone as its microphone (`aufile`), what it receives dumped
//! to WAV by `sndfile`, and its `ctrl_tcp` control socket (JSON in netstrings) to give
//! commands and read its events.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BARESIP: &str = "/usr/bin/baresip";
const MODULES: &str = "/usr/lib/baresip/modules";

/// A running baresip; killed on drop.
pub struct Baresip {
    child: Child,
    ctrl: TcpStream,
    events: mpsc::Receiver<Value>,
    pub seen: Vec<Value>,
    pub dir: PathBuf,
    pub sip_port: u16,
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the modules the test needs are installed.
pub fn modules_present() -> Result<(), String> {
    for m in [
        "g711.so",
        "aufile.so",
        "sndfile.so",
        "ctrl_tcp.so",
        "menu.so",
        "account.so",
    ] {
        if !Path::new(MODULES).join(m).is_file() {
            return Err(format!("baresip module {m} (in {MODULES})"));
        }
    }
    Ok(())
}

impl Baresip {
    /// Starts baresip in `dir` listening for SIP on 127.0.0.1:`sip_port` (it also takes
    /// `sip_port + 1` for TLS), playing `tone` (an 8 kHz mono WAV: aufile does not
    /// resample), with `account` as its one accounts line.
    pub fn start(dir: &Path, sip_port: u16, ctrl_port: u16, tone: &Path, account: &str) -> Baresip {
        std::fs::create_dir_all(dir).unwrap();
        let dumps = dir.join("dumps");
        std::fs::create_dir_all(&dumps).unwrap();
        let config = format!(
            "poll_method epoll\n\
             sip_listen 127.0.0.1:{sip_port}\n\
             audio_source aufile,{tone}\n\
             audio_player aufile,{play}\n\
             module_path {MODULES}\n\
             module g711.so\n\
             module aufile.so\n\
             module sndfile.so\n\
             module_app account.so\n\
             module_app menu.so\n\
             module_app ctrl_tcp.so\n\
             ctrl_tcp_listen 127.0.0.1:{ctrl_port}\n\
             snd_path {dumps}\n\
             rtp_ports 40000-40999\n",
            tone = tone.display(),
            play = dir.join("play.wav").display(),
            dumps = dumps.display(),
        );
        std::fs::write(dir.join("config"), config).unwrap();
        std::fs::write(dir.join("accounts"), format!("{account}\n")).unwrap();
        let log = std::fs::File::create(dir.join("baresip.log")).unwrap();
        let child = Command::new(BARESIP)
            .arg("-f")
            .arg(dir)
            .args(["-v", "-n", "127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("baresip starts");
        let end = Instant::now() + Duration::from_secs(10);
        let ctrl = loop {
            match TcpStream::connect(("127.0.0.1", ctrl_port)) {
                Ok(s) => break s,
                Err(_) if Instant::now() < end => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => panic!(
                    "baresip's ctrl_tcp did not come up ({e}); log:\n{}",
                    std::fs::read_to_string(dir.join("baresip.log")).unwrap_or_default()
                ),
            }
        };
        let (tx, rx) = mpsc::channel();
        let mut reader = ctrl.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = reader.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                // Netstrings: LEN ":" DATA ","
                while let Some(colon) = buf.iter().position(|&b| b == b':') {
                    let Some(len) = std::str::from_utf8(&buf[..colon])
                        .ok()
                        .and_then(|s| s.parse::<usize>().ok())
                    else {
                        buf.clear();
                        break;
                    };
                    if buf.len() < colon + 1 + len + 1 {
                        break;
                    }
                    let data = buf[colon + 1..colon + 1 + len].to_vec();
                    buf.drain(..colon + 1 + len + 1);
                    if let Ok(v) = serde_json::from_slice::<Value>(&data) {
                        eprintln!("[baresip] {v}");
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Baresip {
            child,
            ctrl,
            events: rx,
            seen: Vec::new(),
            dir: dir.to_owned(),
            sip_port,
        }
    }

    /// Sends a long command (`dial URI`, `accept`, `hangup`, `hold`, …).
    pub fn command(&mut self, command: &str, params: &str) {
        let j = serde_json::json!({"command": command, "params": params, "token": command});
        let d = j.to_string();
        let frame = format!("{}:{},", d.len(), d);
        self.ctrl.write_all(frame.as_bytes()).unwrap();
    }

    /// Waits for an event or response for which `f` holds; panics after `secs`.
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
                    "baresip: no {what} within {secs} s; saw {:?}\nlog:\n{}",
                    self.seen,
                    self.log()
                ),
            }
        }
    }

    /// Waits for the ua event `type` (CALL_ESTABLISHED, CALL_CLOSED, REGISTER_OK…).
    pub fn event(&mut self, kind: &str, secs: u64) -> Value {
        self.expect(kind, secs, |v| v["type"] == kind)
    }

    /// Forgets the events seen so far (for the next call).
    pub fn clear(&mut self) {
        while self.events.try_recv().is_ok() {}
        self.seen.clear();
    }

    /// Waits until baresip's log has a line containing `needle`; panics after `secs`.
    pub fn wait_log(&self, needle: &str, secs: u64) {
        let end = Instant::now() + Duration::from_secs(secs);
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < end,
                "baresip: no {needle:?} in its log within {secs} s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("baresip.log")).unwrap_or_default()
    }

    /// The WAV files sndfile wrote with what baresip received (`*-dec.wav`), oldest first.
    pub fn received_dumps(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.dir.join("dumps"))
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .collect();
        v.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        v
    }
}
