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
//! - `early_media_183.xml`: vaxel calls SIPp, which answers 183 with SDP and streams a
//!   1 kHz tone (RTP, PCMU) for 3 s before its 200: vaxel reports `early_media`, and the
//!   tone is in its recording from the start, seconds before `established`.
//! - `ringing_180.xml`: SIPp rings (180 without SDP) for 2 s before answering: vaxel
//!   plays its own ringback (425 Hz, Danish cadence) into the call's recording until the
//!   answer.
//! - `replaces_refused_486.xml`: a failed attended transfer — vaxel a holds vaxel b,
//!   consults SIPp, and REFERs b to SIPp with Replaces; SIPp refuses b's INVITE with 486,
//!   so a gets `transfer_failed` (486) and takes b back (`resumed`), both calls still up.
//! - `via_group.xml`: a call presented through a hunt group as the engine does it
//!   (From `"Sales" <sip:4005%231@…>`): vaxel's `incoming` carries number 4005 and group
//!   Sales (id 1), and the history row keeps both.
//!
//! - `voicemail_302.xml`: "send to voicemail" — SIPp calls, vaxel gets `voicemail`
//!   while it rings and answers 302 Moved Temporarily with `Contact:
//!   <sip:*59*vaxel@…>` (checked by SIPp); the history row says why.
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
    sipp_with(dir, scenario_file, port, remote, 1, &[])
}

/// [`sipp`] with more arguments, run in `dir` (where `rtp_stream` finds its files).
fn sipp_with(
    dir: &Path,
    scenario_file: &str,
    port: u16,
    remote: Option<&str>,
    calls: u32,
    extra: &[&str],
) -> Child {
    let mut cmd = Command::new("sipp");
    cmd.current_dir(dir).args(extra);
    cmd.arg("-sf")
        .arg(scenario(scenario_file))
        .args([
            "-m",
            &calls.to_string(),
            "-i",
            "127.0.0.1",
            "-mi",
            "127.0.0.1",
        ])
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

/// µ-law (PCMU) samples of a `freq` Hz sine at 8 kHz, −12 dBFS, `secs` long: a raw file
/// for SIPp's `rtp_stream`.
fn ulaw_tone(path: &Path, freq: f64, secs: usize) {
    let amp = 32767.0 * 10f64.powf(-12.0 / 20.0);
    let bytes: Vec<u8> = (0..8000 * secs)
        .map(|n| {
            let x = amp * (2.0 * std::f64::consts::PI * freq * n as f64 / 8000.0).sin();
            vaxel_media::codec::g711::linear_to_ulaw(x as i16)
        })
        .collect();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn sipp_early_media_is_heard_before_the_answer() {
    if !have_peer("sipp") {
        return;
    }
    let dir = temp_dir("sipp-early");
    ulaw_tone(&dir.join("tone.ulaw"), 1000.0, 1);
    let sport = free_port();
    let mport = free_port().to_string();
    let s = sipp_with(
        &dir,
        "early_media_183.xml",
        sport,
        None,
        1,
        &["-mp", &mport],
    );
    std::thread::sleep(Duration::from_millis(300));
    let v_port = free_port();
    let mut v = vaxel(&dir, v_port);
    let rec = dir.join("early.wav");
    v.send(&format!(
        "call sip:sipp@127.0.0.1:{sport} --record {}",
        rec.display()
    ));
    v.event("early_media", 10);
    let early_at = Instant::now();
    v.event("established", 10);
    let waited = early_at.elapsed();
    assert!(
        waited >= Duration::from_millis(2500),
        "established {waited:?} after early media"
    );
    std::thread::sleep(Duration::from_millis(500));
    v.send("hangup");
    v.expect("ended", 10, |e| {
        e["event"] == "ended" && e["cause"] == "local_hangup"
    });
    sipp_ok(&dir, "early_media_183.xml", s, 30);
    quit(v);
    // The recording starts with the early media: the tone is there in its first 2 s,
    // before the 200 came.
    let p = vaxel_media::wav::Prompt::from_wav(std::fs::File::open(&rec).unwrap(), 16_000).unwrap();
    let first: Vec<i16> = p.samples().iter().take(32_000).copied().collect();
    assert!(first.len() == 32_000, "at least 2 s recorded");
    let power = |f: f64| vaxel_media::dsp::goertzel_power(&first, 16_000, f);
    assert!(
        power(1000.0) > 20.0 * power(700.0) && power(1000.0) > 20.0 * power(1400.0),
        "1 kHz early media in the first 2 s: {} vs {} / {}",
        power(1000.0),
        power(700.0),
        power(1400.0)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sipp_failed_attended_transfer_gives_the_call_back() {
    if !have_peer("sipp") {
        return;
    }
    let dir = temp_dir("sipp-xfer");
    let sport = free_port();
    let mport = free_port().to_string();
    // Two SIPp calls (by Call-ID): the consultation and the refused INVITE with Replaces.
    let s = sipp_with(
        &dir,
        "replaces_refused_486.xml",
        sport,
        None,
        2,
        &["-mp", &mport],
    );
    std::thread::sleep(Duration::from_millis(300));
    let tone = dir.join("tone.wav");
    tone_wav(&tone, 1000.0, 1);
    let a_port = free_port();
    let mut a = Vaxel::spawn(
        "a",
        &[
            "--profile",
            dir.join("a").to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{a_port}"),
            "run",
            "--play",
            tone.to_str().unwrap(),
        ],
        &[],
    );
    a.event("started", 10);
    let b_port = free_port();
    let mut b = vaxel(&dir, b_port);

    a.send(&format!("call sip:b@127.0.0.1:{b_port}"));
    a.expect("a-b up", 10, |v| {
        v["event"] == "established" && v["call"] == 1
    });
    a.send("hold 1");
    a.expect("held", 10, |v| v["event"] == "held" && v["call"] == 1);
    a.send(&format!("call sip:c@127.0.0.1:{sport}"));
    a.expect("consultation up", 10, |v| {
        v["event"] == "established" && v["call"] == 2
    });
    a.send("attended-transfer 1 2");
    b.expect("transfer_requested", 10, |v| {
        v["event"] == "transfer_requested"
    });
    let failed = a.expect("transfer_failed", 15, |v| v["event"] == "transfer_failed");
    assert_eq!(failed["call"], 1);
    assert_eq!(failed["status"], 486);
    a.expect("taken back", 10, |v| {
        v["event"] == "resumed" && v["call"] == 1 && v["by"] == "local"
    });
    b.expect("b resumed", 10, |v| {
        v["event"] == "resumed" && v["by"] == "remote"
    });
    // Both of a's calls are still up; b's attempt ended with 486.
    a.send("snapshot");
    let snap = a.event("snapshot", 5);
    assert_eq!(snap["calls"][0]["state"], "established", "{snap}");
    assert_eq!(snap["calls"][0]["held"], false, "{snap}");
    assert_eq!(snap["calls"][1]["state"], "established", "{snap}");
    b.expect("b's transfer call refused", 10, |v| {
        v["event"] == "ended" && v["cause"] == "rejected" && v["status"] == 486
    });
    a.send("hangup 2");
    a.expect("consultation ended", 10, |v| {
        v["event"] == "ended" && v["call"] == 2
    });
    sipp_ok(&dir, "replaces_refused_486.xml", s, 30);
    a.send("hangup 1");
    b.expect("b ended", 10, |v| {
        v["event"] == "ended" && v["cause"] == "remote_hangup"
    });
    quit(a);
    quit(b);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sipp_ringing_without_sdp_gets_local_ringback() {
    if !have_peer("sipp") {
        return;
    }
    let dir = temp_dir("sipp-ringback");
    let sport = free_port();
    let mport = free_port().to_string();
    let s = sipp_with(&dir, "ringing_180.xml", sport, None, 1, &["-mp", &mport]);
    std::thread::sleep(Duration::from_millis(300));
    let mut v = vaxel(&dir, free_port());
    let rec = dir.join("ringback.wav");
    v.send(&format!(
        "call sip:sipp@127.0.0.1:{sport} --record {}",
        rec.display()
    ));
    v.event("ringing", 10);
    v.event("established", 10);
    std::thread::sleep(Duration::from_millis(500));
    v.send("hangup");
    v.expect("ended", 10, |e| {
        e["event"] == "ended" && e["cause"] == "local_hangup"
    });
    sipp_ok(&dir, "ringing_180.xml", s, 30);
    quit(v);
    // The recording opens with 1 s of 425 Hz (the cadence's first "on"), then the silent
    // call (SIPp sends no RTP).
    let p = vaxel_media::wav::Prompt::from_wav(std::fs::File::open(&rec).unwrap(), 16_000).unwrap();
    let s = p.samples();
    assert!(
        s.len() >= 16_000 * 2,
        "ringing and the call recorded: {}",
        s.len()
    );
    let first = &s[1_600..14_400];
    let power = |f: f64| vaxel_media::dsp::goertzel_power(first, 16_000, f);
    assert!(
        power(425.0) > 20.0 * power(1000.0) && power(425.0) > 1.0e5,
        "425 Hz ringback at the start: {} vs {}",
        power(425.0),
        power(1000.0)
    );
    let last = &s[s.len() - 4_800..];
    let rms = (last.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / last.len() as f64).sqrt();
    assert!(rms < 300.0, "no ringback once answered (rms {rms:.0})");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sipp_call_via_group_gives_number_and_group() {
    if !have_peer("sipp") {
        return;
    }
    let dir = temp_dir("sipp-via-group");
    let vport = free_port();
    let mut v = vaxel(&dir, vport);
    let s = sipp(
        &dir,
        "via_group.xml",
        free_port(),
        Some(&format!("127.0.0.1:{vport}")),
    );
    sipp_ok(&dir, "via_group.xml", s, 30);
    let inc = v.event("incoming", 5);
    assert_eq!(inc["number"], "4005", "{inc}");
    assert_eq!(inc["group"]["name"], "Sales", "{inc}");
    assert_eq!(inc["group"]["id"], "1", "{inc}");
    assert!(
        inc.get("name").is_none(),
        "the group's name is no caller name: {inc}"
    );
    v.event("ended", 5);
    v.send("history");
    let h = v.event("history", 5);
    let row = &h["calls"][0];
    assert_eq!(row["number"], "4005", "{h}");
    assert_eq!(row["group"], "Sales", "{h}");
    quit(v);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sipp_send_to_voicemail_redirects_with_302() {
    if !have_peer("sipp") {
        return;
    }
    let dir = temp_dir("sipp-voicemail");
    let vport = free_port();
    let mut v = Vaxel::spawn(
        "vaxel",
        &[
            "--profile",
            dir.join("profile").to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{vport}"),
            "run",
        ],
        &[],
    );
    v.event("started", 10);
    let s = sipp(
        &dir,
        "voicemail_302.xml",
        free_port(),
        Some(&format!("127.0.0.1:{vport}")),
    );
    let inc = v.event("incoming", 10);
    v.send(&format!("voicemail {}", inc["call"]));
    sipp_ok(&dir, "voicemail_302.xml", s, 30);
    let ended = v.event("ended", 5);
    assert_eq!(ended["cause"], "local_rejected", "{ended}");
    assert_eq!(ended["status"], 302, "{ended}");
    v.send("history");
    let h = v.event("history", 5);
    assert_eq!(h["calls"][0]["cause"], "local_rejected 302", "{h}");
    quit(v);
    let _ = std::fs::remove_dir_all(&dir);
}
