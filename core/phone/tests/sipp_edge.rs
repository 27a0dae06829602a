//! SIPp edge cases against `vaxel run` (scenarios in tests/sipp/):
//!
//! - `cancel_crossing_200.xml`: a CANCEL that crosses vaxel's 200 OK changes nothing;
//!   the call is ACKed and ended with BYE.
//! - `reinvite_glare_491.xml`: a re-INVITE arriving while vaxel's own (hold) is pending
//!   gets 491; vaxel's hold then completes.
//! - `bye_unknown_dialog.xml`: BYE outside any dialog gets 481.
//! - `register_401_200.xml`: SIPp as registrar challenges (401), checks vaxel's digest
//!   (password from VAXEL_PASSWORD) and accepts (200); vaxel unregisters at exit.
//! - `malformed_400.xml`: malformed requests get 400, then a whole call still works.
//!
//! Each fails unless SIPp reports its call successful (exit status 0). Skips (or fails
//! with `VAXEL_REQUIRE_PEERS=1`) when sipp is not installed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

/// Starts SIPp with `scenario`, one call, logging to `dir`; `remote` is the target of a
/// client scenario (none for a server scenario).
fn sipp(dir: &Path, scenario_file: &str, port: u16, remote: Option<&str>) -> Child {
    let mut cmd = Command::new("sipp");
    cmd.arg("-sf")
        .arg(scenario(scenario_file))
        .args(["-m", "1", "-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args(["-p", &port.to_string(), "-nostdin"])
        .args([
            "-timeout",
            "30s",
            "-timeout_error",
            "-trace_err",
            "-trace_msg",
        ])
        .arg("-error_file")
        .arg(dir.join(format!("{scenario_file}.err")))
        .arg("-message_file")
        .arg(dir.join(format!("{scenario_file}.msg")))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(r) = remote {
        cmd.arg(r);
    }
    cmd.spawn().expect("sipp starts")
}

/// Waits for SIPp; panics with its logs unless it exits 0.
fn sipp_ok(dir: &Path, scenario_file: &str, mut child: Child, secs: u64) {
    let end = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |ext: &str| {
        std::fs::read_to_string(dir.join(format!("{scenario_file}.{ext}"))).unwrap_or_default()
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(
        status.is_some_and(|s| s.success()),
        "sipp {scenario_file}: {status:?}\n--- stderr\n{stderr}\n--- errors\n{}\n--- messages\n{}",
        read("err"),
        read("msg")
    );
}

fn vaxel(dir: &Path, port: u16) -> Vaxel {
    let tone = dir.join("tone.wav");
    tone_wav(&tone, 1000.0, 1);
    let mut v = Vaxel::spawn(
        "vaxel",
        &[
            "--profile",
            dir.join("profile").to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "run",
            "--auto-answer",
            "--play",
            tone.to_str().unwrap(),
        ],
        &[],
    );
    v.event("started", 10);
    v
}

fn quit(mut v: Vaxel) {
    v.send("quit");
    v.event("stopped", 10);
    assert_eq!(v.wait(10), 0);
}

#[test]
fn sipp_cancel_crossing_200() {
    if !have_peer("sipp") {
        return;
    }
    let dir = temp_dir("sipp-cancel");
    let vport = free_port();
    let mut v = vaxel(&dir, vport);
    let s = sipp(
        &dir,
        "cancel_crossing_200.xml",
        free_port(),
        Some(&format!("127.0.0.1:{vport}")),
    );
    sipp_ok(&dir, "cancel_crossing_200.xml", s, 30);
    // The call was up and ended by the BYE, not by the CANCEL.
    v.event("established", 5);
    v.expect("ended by bye", 5, |e| {
        e["event"] == "ended" && e["cause"] == "remote_hangup"
    });
    quit(v);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sipp_reinvite_glare_gets_491() {
    if !have_peer("sipp") {
        return;
    }
    let dir = temp_dir("sipp-glare");
    let vport = free_port();
    let mut v = vaxel(&dir, vport);
    let s = sipp(
        &dir,
        "reinvite_glare_491.xml",
        free_port(),
        Some(&format!("127.0.0.1:{vport}")),
    );
    let e = v.event("established", 15);
    v.send(&format!("hold {}", e["call"]));
    sipp_ok(&dir, "reinvite_glare_491.xml", s, 30);
    // Our hold went through after the glare.
    v.expect("held", 5, |e| e["event"] == "held" && e["by"] == "local");
    v.expect("ended", 5, |e| {
        e["event"] == "ended" && e["cause"] == "remote_hangup"
    });
    quit(v);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sipp_bye_for_unknown_dialog_gets_481() {
    if !have_peer("sipp") {
        return;
    }
    let dir = temp_dir("sipp-bye481");
    let vport = free_port();
    let v = vaxel(&dir, vport);
    let s = sipp(
        &dir,
        "bye_unknown_dialog.xml",
        free_port(),
        Some(&format!("127.0.0.1:{vport}")),
    );
    sipp_ok(&dir, "bye_unknown_dialog.xml", s, 30);
    quit(v);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sipp_registrar_401_then_200() {
    if !have_peer("sipp") {
        return;
    }
    let dir = temp_dir("sipp-register");
    let sport = free_port();
    let s = sipp(&dir, "register_401_200.xml", sport, None);
    std::thread::sleep(Duration::from_millis(500));
    let profile = dir.join("profile");
    let status = Command::new(BIN)
        .args(["--profile", profile.to_str().unwrap(), "account", "add"])
        .args([
            "--name",
            "alice",
            "--uri",
            &format!("sip:alice@127.0.0.1:{sport}"),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let mut v = Vaxel::spawn(
        "vaxel",
        &[
            "--profile",
            profile.to_str().unwrap(),
            "--listen",
            "127.0.0.1",
            "register",
        ],
        &[("VAXEL_PASSWORD", "sipp-secret")],
    );
    v.close_stdin();
    let r = v.event("registered", 15);
    assert!(r["expires"].as_u64().is_some_and(|e| e > 0), "{r}");
    assert_eq!(v.wait(15), 0);
    v.event("unregistered", 1);
    sipp_ok(&dir, "register_401_200.xml", s, 15);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sipp_malformed_requests_get_400_and_vaxel_keeps_serving() {
    if !have_peer("sipp") {
        return;
    }
    let dir = temp_dir("sipp-malformed");
    let vport = free_port();
    let mut v = vaxel(&dir, vport);
    let s = sipp(
        &dir,
        "malformed_400.xml",
        free_port(),
        Some(&format!("127.0.0.1:{vport}")),
    );
    sipp_ok(&dir, "malformed_400.xml", s, 30);
    v.event("established", 5);
    v.expect("ended", 5, |e| {
        e["event"] == "ended" && e["cause"] == "remote_hangup"
    });
    quit(v);
    let _ = std::fs::remove_dir_all(&dir);
}
