//! A private PulseAudio daemon for audio-path tests: a clocked virtual sound
//! card (null sinks and their monitors) that no other program shares.
//!
//! How it runs here, as root on a machine without a sound card or D-Bus:
//!
//! - `pulseaudio -n` skips the system's `default.pa`; `-F script` loads only
//!   `module-native-protocol-unix` (socket in our temp dir, anonymous auth, so
//!   no cookie is needed) and a `module-null-sink`.
//! - As root, PulseAudio prints "This program is not intended to be run as root
//!   (unless --system is specified)" and carries on as a per-user daemon. We do
//!   *not* pass `--system`: system mode ignores `-F`, wants the `pulse` user and
//!   a system-wide socket. HOME, XDG_RUNTIME_DIR, PULSE_RUNTIME_PATH and
//!   PULSE_STATE_PATH all point into the temp dir, so the daemon writes nothing
//!   into root's real home and cannot meet another test's daemon.
//! - `--daemonize=no` keeps it our child, so the guard can kill it by pid;
//!   `--exit-idle-time=-1` keeps it alive between streams; `--use-pid-file=no`
//!   lets several run at once.
//! - Clients (cpal's PulseAudio host, `pactl`) find it through
//!   `PULSE_SERVER=unix:<dir>/native`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A running daemon; killed and cleaned up on drop, also when a test fails.
pub struct PulseDaemon {
    child: Child,
    dir: PathBuf,
}

/// Whether the `pulseaudio` program is installed.
pub fn pulseaudio_installed() -> bool {
    Command::new("pulseaudio")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl PulseDaemon {
    /// Starts a daemon whose startup script loads the native protocol and
    /// then `script` (PulseAudio CLI commands, one per line).
    pub fn start(script: &str) -> Result<PulseDaemon, String> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "vaxel-pulse-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("state")).map_err(|e| e.to_string())?;
        let socket = dir.join("native");
        let script_path = dir.join("test.pa");
        std::fs::write(
            &script_path,
            format!(
                "load-module module-native-protocol-unix auth-anonymous=1 socket={}\n{script}\n",
                socket.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("daemon.log")).map_err(|e| e.to_string())?;
        let child = Command::new("pulseaudio")
            .args([
                "-n",
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--use-pid-file=no",
                "--log-target=stderr",
                "--log-level=warn",
                "-F",
            ])
            .arg(&script_path)
            .env("HOME", &dir)
            .env("XDG_RUNTIME_DIR", &dir)
            .env("PULSE_RUNTIME_PATH", &dir)
            .env("PULSE_STATE_PATH", dir.join("state"))
            .env_remove("PULSE_SERVER")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start pulseaudio: {e}"))?;
        let daemon = PulseDaemon { child, dir };
        daemon.wait_ready(&socket)?;
        Ok(daemon)
    }

    fn wait_ready(&self, socket: &Path) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if socket.exists() && self.pactl(&["info"]).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "pulseaudio did not come up; its log:\n{}",
            self.log()
        ))
    }

    /// The environment a client needs to reach this daemon.
    pub fn env(&self) -> Vec<(String, String)> {
        let dir = self.dir.display().to_string();
        vec![
            ("PULSE_SERVER".into(), format!("unix:{dir}/native")),
            ("PULSE_RUNTIME_PATH".into(), dir.clone()),
            ("XDG_RUNTIME_DIR".into(), dir),
        ]
    }

    /// Runs `pactl` against this daemon.
    pub fn pactl(&self, args: &[&str]) -> Result<String, String> {
        pactl_with(&self.env(), args)
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// Runs the `#[ignore]`d test `name` of the current test binary in a child
    /// process whose environment points at this daemon, prints its output and
    /// fails when it fails. (cpal's PulseAudio host finds its server through
    /// the environment, which a test cannot safely change in-process.)
    pub fn run_child_test(&self, name: &str) {
        let exe = std::env::current_exe().expect("test binary path");
        let out = Command::new(exe)
            .args([
                "--ignored",
                "--exact",
                name,
                "--nocapture",
                "--test-threads=1",
            ])
            .envs(self.env())
            .env("VAXEL_PULSE_CHILD", "1")
            .output()
            .expect("run child test");
        print!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        let ran = String::from_utf8_lossy(&out.stdout).contains("1 passed");
        if !out.status.success() || !ran {
            panic!(
                "child test {name} failed ({}); PulseAudio log:\n{}",
                out.status,
                self.log()
            );
        }
    }
}

/// Runs `pactl` with an explicit environment (the child tests use their own).
pub fn pactl_with(env: &[(String, String)], args: &[&str]) -> Result<String, String> {
    let out = Command::new("pactl")
        .args(args)
        .envs(env.iter().cloned())
        .output()
        .map_err(|e| format!("cannot run pactl: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "pactl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `pactl` against the daemon named by this process's environment.
pub fn pactl(args: &[&str]) -> Result<String, String> {
    pactl_with(&[], args)
}

/// Whether this process is a child test started by [`PulseDaemon::run_child_test`].
pub fn in_child() -> bool {
    std::env::var_os("VAXEL_PULSE_CHILD").is_some()
}

impl Drop for PulseDaemon {
    fn drop(&mut self) {
        // Our own child, by pid: never a broad kill.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
