//! Helpers shared by the tests that run the example binaries.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A child process killed on drop.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free for both UDP and TCP on 127.0.0.1 (SIP uses one number for both).
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

/// Whether SIPp can run here; prints the skip line when it cannot.
pub fn sipp_available(case: &str) -> bool {
    let found = Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        vaxel_testkit::peers::skip_or_fail(case, "sipp (apt-get install sip-tester)");
    }
    found
}

/// The examples, built for this test profile. `cargo test` builds examples
/// already; building again is a no-op then, and covers `--test sipp` runs.
pub fn example(name: &str) -> PathBuf {
    static BUILD: std::sync::Once = std::sync::Once::new();
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/sipp-<hash> → target/<profile>/examples/<name>
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    BUILD.call_once(|| {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "-p", "vaxel-transport", "--examples"]);
        // Cargo gives the test process the variables of this crate's build
        // (CARGO_MANIFEST_DIR, CARGO_PKG_*...); build scripts that watch them
        // (ring's does) would rebuild on every run, here and in the next `cargo test`.
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            let per_crate = k.starts_with("CARGO_PKG_")
                || matches!(
                    &*k,
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_BIN_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                        | "CARGO_RUSTC_CURRENT_DIR"
                        | "OUT_DIR"
                );
            if per_crate {
                cmd.env_remove(&key);
            }
        }
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build for the examples");
        assert!(status.success(), "building the examples failed");
    });
    let path = profile_dir.join("examples").join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Starts `sip-answer` and waits until its banner says it listens.
pub fn start_answer(args: &[&str]) -> Guard {
    let mut child = Command::new(example("sip-answer"))
        // Defaults first: the example takes the last value of an option.
        .args(["--quiet", "--ring-ms", "20"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting sip-answer");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("Ctrl-C") {
                let _ = tx.send(());
            }
        }
    });
    let guard = Guard(child);
    rx.recv_timeout(Duration::from_secs(30))
        .expect("sip-answer did not start");
    guard
}
