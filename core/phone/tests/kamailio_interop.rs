//! Kamailio as registrar and proxy with digest auth, started by the test on loopback
//! with its own configuration (tests/kamailio/kamailio.cfg.in): three `vaxel run`
//! instances register (401 then 200), alice calls bob through the proxy with audio both
//! ways (1 kHz one way, 700 Hz the other, each found in the other's recording), DTMF,
//! hold and resume; then alice transfers bob to carol blind (REFER), and attended
//! (hold bob, consult carol, REFER with Replaces: carol's call with alice is replaced).
//!
//! Issue 4: a blind transfer to a target that rejects it (486) gives the call back:
//! `transfer_failed`, then `resumed`; the history of each phone records the calls.
//!
//! The password of `vaxel account add --password-stdin` goes to the OS keychain (a
//! private gnome-keyring on a private D-Bus bus, `vaxel_testkit::keyring`) and `vaxel
//! register` finds it there: registered with Kamailio, with no VAXEL_PASSWORD and no
//! password in the profile.
//!
//! Skips (or fails with `VAXEL_REQUIRE_PEERS=1`) when kamailio (or gnome-keyring) is not
//! installed.

mod common;

use std::process::Command;
use std::time::Duration;

use common::kamailio::start_kamailio;
use common::*;

fn user(dir: &std::path::Path, name: &str, kport: u16, play: &std::path::Path) -> Vaxel {
    user_with(dir, name, kport, play, true)
}

fn user_with(
    dir: &std::path::Path,
    name: &str,
    kport: u16,
    play: &std::path::Path,
    auto_answer: bool,
) -> Vaxel {
    let profile = dir.join(name);
    let status = Command::new(BIN)
        .args([
            "--profile",
            profile.to_str().unwrap(),
            "account",
            "add",
            "--name",
            name,
        ])
        .args(["--uri", &format!("sip:{name}@127.0.0.1:{kport}")])
        .status()
        .unwrap();
    assert!(status.success());
    let rec = dir.join(format!("{name}.wav"));
    let mut args = vec![
        "--profile",
        profile.to_str().unwrap(),
        "--listen",
        "127.0.0.1",
        "run",
        "--play",
        play.to_str().unwrap(),
        "--record",
        rec.to_str().unwrap(),
    ];
    if auto_answer {
        args.push("--auto-answer");
    }
    let mut v = Vaxel::spawn(
        name,
        &args,
        &[("VAXEL_PASSWORD", &format!("{name}-secret"))],
    );
    v.event("registered", 10);
    v
}

#[test]
fn kamailio_register_call_audio_dtmf_hold_transfer() {
    if !have_peer("/usr/sbin/kamailio") {
        return;
    }
    let dir = temp_dir("kamailio");
    let kport = free_port();
    let _k = start_kamailio(&dir, kport);
    let t1000 = dir.join("t1000.wav");
    tone_wav(&t1000, 1000.0, 2);
    let t700 = dir.join("t700.wav");
    tone_wav(&t700, 700.0, 2);

    let mut alice = user(&dir, "alice", kport, &t1000);
    let mut bob = user(&dir, "bob", kport, &t700);
    let mut carol = user(&dir, "carol", kport, &t700);

    // 1. A call through the proxy: audio both ways, DTMF, hold and resume.
    alice.send("call bob");
    alice.expect("established", 10, |v| {
        v["event"] == "established" && v["call"] == 1
    });
    bob.event("incoming", 5);
    bob.event("established", 5);
    alice.send("dtmf 1 42#");
    bob.expect("dtmf #", 10, |v| v["event"] == "dtmf" && v["digit"] == "#");
    assert_eq!(bob.digits(), "42#");
    std::thread::sleep(Duration::from_secs(2));
    alice.send("hold 1");
    alice.expect("held", 10, |v| v["event"] == "held" && v["by"] == "local");
    bob.expect("held", 10, |v| v["event"] == "held" && v["by"] == "remote");
    alice.send("resume 1");
    alice.expect("resumed", 10, |v| {
        v["event"] == "resumed" && v["by"] == "local"
    });
    bob.expect("resumed", 10, |v| {
        v["event"] == "resumed" && v["by"] == "remote"
    });
    alice.send("hangup 1");
    alice.expect("ended", 10, |v| v["event"] == "ended" && v["call"] == 1);
    bob.expect("ended", 10, |v| {
        v["event"] == "ended" && v["cause"] == "remote_hangup"
    });
    std::thread::sleep(Duration::from_millis(500));
    let freqs = [500.0, 700.0, 1000.0, 1500.0];
    let (f, share) = dominant(&dir.join("bob.wav"), &freqs);
    assert_eq!(f, 1000.0, "bob hears alice's 1 kHz ({share:.2})");
    assert!(share > 0.5, "{share}");
    let (f, share) = dominant(&dir.join("alice.wav"), &freqs);
    assert_eq!(f, 700.0, "alice hears bob's 700 Hz ({share:.2})");
    assert!(share > 0.5, "{share}");

    // 2. Blind transfer: alice calls bob again and REFERs him to carol.
    alice.send("call bob");
    alice.expect("established 2", 10, |v| {
        v["event"] == "established" && v["call"] == 2
    });
    bob.expect("established 2", 10, |v| {
        v["event"] == "established" && v["call"] == 2
    });
    alice.send("transfer 2 carol");
    bob.expect("transfer_requested", 10, |v| {
        v["event"] == "transfer_requested"
    });
    carol.event("established", 10);
    alice.expect("transferred", 10, |v| v["event"] == "transferred");
    alice.expect("ended 2", 10, |v| {
        v["event"] == "ended" && v["call"] == 2 && v["cause"] == "transferred"
    });
    let bc = bob.expect("bob-carol up", 10, |v| {
        v["event"] == "established" && v["call"] == 3
    });
    assert_eq!(bc["call"], 3);
    bob.send("hangup 3");
    carol.expect("ended", 10, |v| {
        v["event"] == "ended" && v["cause"] == "remote_hangup"
    });

    // 3. Attended transfer: alice calls bob (3), holds him, consults carol (4), then
    //    REFERs bob to carol with Replaces; carol's call with alice is replaced by bob's.
    alice.send("call bob");
    alice.expect("established 3", 10, |v| {
        v["event"] == "established" && v["call"] == 3
    });
    alice.send("hold 3");
    alice.expect("held 3", 10, |v| v["event"] == "held" && v["call"] == 3);
    alice.send("call carol");
    alice.expect("established 4", 10, |v| {
        v["event"] == "established" && v["call"] == 4
    });
    alice.send("attended-transfer 3 4");
    alice.expect("transferred 3", 10, |v| {
        v["event"] == "transferred" && v["call"] == 3
    });
    alice.expect("consult replaced", 10, |v| {
        v["event"] == "ended" && v["call"] == 4 && v["cause"] == "remote_hangup"
    });
    carol.expect("incoming with replaces", 10, |v| {
        v["event"] == "incoming" && !v["replaces"].is_null()
    });
    carol.expect("replaced", 10, |v| {
        v["event"] == "ended" && v["cause"] == "replaced"
    });
    let bc = bob.expect("bob-carol up again", 10, |v| {
        v["event"] == "established" && v["call"].as_u64() > Some(4)
    });
    bob.send(&format!("hangup {}", bc["call"]));
    carol.expect("ended 2", 10, |v| {
        v["event"] == "ended" && v["cause"] == "remote_hangup" && v["call"].as_u64() > Some(2)
    });

    for v in [&mut alice, &mut bob, &mut carol] {
        v.send("quit");
        v.event("unregistered", 10);
        assert_eq!(v.wait(10), 0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn transfer_rejected_by_target_takes_the_call_back() {
    if !have_peer("/usr/sbin/kamailio") {
        return;
    }
    let dir = temp_dir("kamailio-xfer486");
    let kport = free_port();
    let _k = start_kamailio(&dir, kport);
    let t1000 = dir.join("t1000.wav");
    tone_wav(&t1000, 1000.0, 2);
    let mut alice = user(&dir, "alice", kport, &t1000);
    let mut bob = user(&dir, "bob", kport, &t1000);
    let mut carol = user_with(&dir, "carol", kport, &t1000, false);

    alice.send("call bob");
    alice.expect("established", 10, |v| {
        v["event"] == "established" && v["call"] == 1
    });
    bob.event("established", 10);
    alice.send("hold 1");
    alice.expect("held", 10, |v| v["event"] == "held" && v["by"] == "local");
    bob.expect("held", 10, |v| v["event"] == "held" && v["by"] == "remote");
    alice.send("transfer 1 carol");
    bob.expect("transfer_requested", 10, |v| {
        v["event"] == "transfer_requested"
    });
    let incoming = carol.event("incoming", 10);
    carol.send(&format!("busy {}", incoming["call"]));
    let failed = alice.expect("transfer_failed", 15, |v| v["event"] == "transfer_failed");
    assert_eq!(failed["call"], 1);
    assert_eq!(failed["status"], 486);
    alice.expect("resumed", 10, |v| {
        v["event"] == "resumed" && v["call"] == 1 && v["by"] == "local"
    });
    let order: Vec<&str> = alice
        .seen
        .iter()
        .filter_map(|v| v["event"].as_str())
        .filter(|e| matches!(*e, "transfer_failed" | "resumed"))
        .collect();
    assert_eq!(order, ["transfer_failed", "resumed"]);
    bob.expect("resumed", 10, |v| {
        v["event"] == "resumed" && v["by"] == "remote"
    });
    // The call is alice's again: it carries on and ends normally.
    alice.send("snapshot");
    let snap = alice.event("snapshot", 5);
    assert_eq!(snap["calls"][0]["state"], "established");
    assert_eq!(snap["calls"][0]["held"], false);
    alice.send("hangup 1");
    bob.expect("ended", 10, |v| {
        v["event"] == "ended" && v["call"] == 1 && v["cause"] == "remote_hangup"
    });
    // The call is recorded as ended when alice's own BYE completes.
    alice.expect("ended", 10, |v| {
        v["event"] == "ended" && v["call"] == 1 && v["cause"] == "local_hangup"
    });

    // The history on each side (task: every call is recorded as it progresses).
    alice.send("history");
    let h = alice.event("history", 5);
    assert_eq!(h["calls"][0]["direction"], "outgoing");
    assert_eq!(h["calls"][0]["outcome"], "answered");
    assert_eq!(h["calls"][0]["cause"], "local_hangup");
    carol.send("history");
    let h = carol.event("history", 5);
    assert_eq!(h["calls"][0]["direction"], "incoming");
    assert_eq!(h["calls"][0]["outcome"], "declined");
    bob.send("history");
    let h = bob.expect("history", 5, |v| v["event"] == "history");
    let outcomes: Vec<&str> = h["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["outcome"].as_str().unwrap())
        .collect();
    // Newest first: bob's transfer call to carol failed (486); alice's call was answered.
    assert_eq!(outcomes, ["failed", "answered"], "{h}");
    assert_eq!(h["calls"][0]["cause"], "rejected 486");

    for v in [&mut alice, &mut bob, &mut carol] {
        v.send("quit");
        v.event("unregistered", 10);
        assert_eq!(v.wait(10), 0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

const KEYCHAIN_TEST: &str = "keychain_password_registers_with_kamailio";

#[test]
fn keychain_password_registers_with_kamailio() {
    use vaxel_testkit::keyring;
    if keyring::in_child() {
        keychain_child();
        return;
    }
    if !have_peer("/usr/sbin/kamailio") || !keyring::tools_present(KEYCHAIN_TEST) {
        return;
    }
    let dir = keyring::temp_dir("phone");
    let out = keyring::run_under_keyring(KEYCHAIN_TEST, &dir, &[]);
    let _ = std::fs::remove_dir_all(&dir);
    keyring::assert_child_ok(&out, "keychain child: ok");
}

/// On the private bus with an unlocked gnome-keyring.
fn keychain_child() {
    use std::io::Write;
    use std::process::Stdio;
    use vaxel_testkit::keyring;

    let dir = keyring::child_dir();
    let kport = free_port();
    let _k = start_kamailio(&dir, kport);
    let profile = dir.join("profile");
    let aor = format!("sip:dave@127.0.0.1:{kport}");
    let add = |env: &[(&str, &str)]| {
        let mut cmd = Command::new(BIN);
        cmd.args(["--profile", profile.to_str().unwrap(), "account", "add"])
            .args(["--name", "dave", "--uri", &aor, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"dave-secret\n")
            .unwrap();
        child.wait_with_output().unwrap()
    };

    // Without a keychain: a clear message that points at VAXEL_PASSWORD, non-zero exit.
    let nobus = format!("unix:path={}/no-bus", dir.display());
    let out = add(&[("DBUS_SESSION_BUS_ADDRESS", &nobus)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("keychain") && err.contains("VAXEL_PASSWORD"),
        "{err}"
    );
    assert!(!err.contains("dave-secret"), "{err}");

    // With gnome-keyring: stored there, under service "vaxel", key = the AOR.
    let out = add(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        keyring::secret_tool_lookup("vaxel", &aor).as_deref(),
        Some("dave-secret")
    );
    keyring::assert_not_in_files(&profile, "store.sqlite", "dave-secret");
    assert!(!profile.join("accounts.toml").exists());

    // `register` takes it from the keychain (no VAXEL_PASSWORD in this environment).
    assert!(std::env::var_os("VAXEL_PASSWORD").is_none());
    let out = Command::new(BIN)
        .args([
            "--profile",
            profile.to_str().unwrap(),
            "--listen",
            "127.0.0.1",
            "register",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(r#""event":"registered""#),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("dave-secret"));

    println!("keychain child: ok");
}
