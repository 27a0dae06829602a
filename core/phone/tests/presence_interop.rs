//! Presence and busy lamps through Kamailio's presence server (tests/kamailio/presence.cfg.in:
//! presence + presence_xml for PIDF, dialog + pua_dialoginfo + presence_dialoginfo for
//! dialog state), started by the test on loopback with digest auth:
//!
//! - alice PUBLISHes "busy, in a meeting, until 14:00" (PIDF with RPID); carol, who
//!   watches alice (SUBSCRIBE presence), sees it, and sees it change back to available;
//! - carol watches bob's dialog state (SUBSCRIBE dialog): alice calls bob, and carol's
//!   busy lamp for bob goes early (ringing), confirmed (answered) and terminated (hung up);
//! - unwatch ends the subscriptions; quitting removes alice's publication.
//!
//! And instant messages (SIP MESSAGE, RFC 3428) through the same Kamailio with digest
//! auth: `run`'s `message` and the one-shot `vaxel message` reach a registered phone, a
//! message to nobody fails with 404.
//!
//! Skips (or fails with `VAXEL_REQUIRE_PEERS=1`) when kamailio or its presence modules
//! are not installed.

mod common;

use std::process::Command;

use common::kamailio::start_kamailio_presence;
use common::*;

fn user(dir: &std::path::Path, name: &str, kport: u16, auto_answer: bool) -> Vaxel {
    let profile = dir.join(name);
    let status = Command::new(BIN)
        .args(["--profile", profile.to_str().unwrap(), "account", "add"])
        .args([
            "--name",
            name,
            "--uri",
            &format!("sip:{name}@127.0.0.1:{kport}"),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let rec = dir.join(format!("{name}.wav"));
    let tone = dir.join("tone.wav");
    let mut args = vec![
        "--profile",
        profile.to_str().unwrap(),
        "--listen",
        "127.0.0.1",
        "run",
        "--play",
        tone.to_str().unwrap(),
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
fn presence_and_busy_lamps_through_kamailio() {
    if !have_peer("/usr/sbin/kamailio")
        || !have_peer("/usr/lib/x86_64-linux-gnu/kamailio/modules/presence_dialoginfo.so")
    {
        return;
    }
    let dir = temp_dir("presence");
    let kport = free_port();
    let _k = start_kamailio_presence(&dir, kport);
    tone_wav(&dir.join("tone.wav"), 1000.0, 1);

    let mut alice = user(&dir, "alice", kport, false);
    let mut bob = user(&dir, "bob", kport, false);
    let mut carol = user(&dir, "carol", kport, false);

    // carol watches alice's presence and bob's phone.
    carol.send("watch alice --presence-only");
    carol.send("watch bob --dialog-only");
    carol.expect("watching alice", 10, |v| {
        v["event"] == "watching" && v["uri"] == "alice" && v["package"] == "presence"
    });
    carol.expect("watching bob", 10, |v| {
        v["event"] == "watching" && v["uri"] == "bob" && v["package"] == "dialog"
    });

    // 1. alice: busy, in a meeting, until 14:00.
    alice.send("presence set busy --note in a meeting --until 14:00");
    let p = alice.event("presence_published", 10);
    assert_eq!(p["activity"], "busy");
    let until = p["until"].as_str().unwrap().to_owned();
    assert!(until.ends_with('Z') && until.contains(":00:00"), "{until}");
    let seen = carol.expect("alice busy", 10, |v| {
        v["event"] == "presence_changed" && v["uri"] == "alice" && v["activity"] == "busy"
    });
    assert_eq!(seen["status"], "open");
    assert_eq!(seen["note"], "in a meeting");
    assert_eq!(seen["until"], until.as_str());

    // The snapshots say it too: alice's own activity, carol's watches with their last state.
    alice.send("snapshot");
    assert_eq!(
        alice.event("snapshot", 5)["accounts"][0]["presence"],
        "busy"
    );
    carol.send("snapshot");
    let snap = carol.event("snapshot", 5);
    let watches = snap["watches"].as_array().unwrap();
    assert_eq!(watches.len(), 2, "{snap}");
    let w = watches.iter().find(|w| w["uri"] == "alice").unwrap();
    assert_eq!(w["package"], "presence");
    assert_eq!(w["active"], true);
    assert_eq!(w["last"]["activity"], "busy");
    let w = watches.iter().find(|w| w["uri"] == "bob").unwrap();
    assert_eq!(w["last"]["state"], "idle");

    // The same from the command line: `vaxel watch alice` prints it, Ctrl-C ends it.
    let profile = dir.join("carol");
    let mut watcher = Vaxel::spawn(
        "watch",
        &[
            "--profile",
            profile.to_str().unwrap(),
            "--listen",
            "127.0.0.1",
            "watch",
            "alice",
            "--presence-only",
        ],
        &[("VAXEL_PASSWORD", "carol-secret")],
    );
    let w = watcher.expect("alice busy (CLI)", 10, |v| {
        v["event"] == "presence_changed" && v["activity"] == "busy"
    });
    assert_eq!(w["note"], "in a meeting");
    watcher.interrupt();
    watcher.expect("unwatched (CLI)", 10, |v| {
        v["event"] == "watch_ended" && v["reason"] == "unwatched"
    });
    assert_eq!(watcher.wait(10), 0);

    // 2. alice calls bob: carol's lamp for bob goes early, confirmed, terminated.
    alice.send("call bob");
    let inc = bob.event("incoming", 10);
    carol.expect("bob early", 10, |v| {
        v["event"] == "dialog_state_changed" && v["uri"] == "bob" && v["state"] == "early"
    });
    bob.send(&format!("answer {}", inc["call"]));
    alice.event("established", 10);
    let up = carol.expect("bob confirmed", 10, |v| {
        v["event"] == "dialog_state_changed" && v["uri"] == "bob" && v["state"] == "confirmed"
    });
    assert_eq!(up["direction"], "recipient", "bob was called: {up}");
    alice.send("hangup");
    bob.event("ended", 10);
    carol.expect("bob free", 10, |v| {
        v["event"] == "dialog_state_changed" && v["uri"] == "bob" && v["state"] == "terminated"
    });
    let lamp: Vec<&str> = carol
        .seen
        .iter()
        .filter(|v| v["event"] == "dialog_state_changed")
        .filter_map(|v| v["state"].as_str())
        .collect();
    assert_eq!(lamp, ["idle", "early", "confirmed", "terminated"]);

    // 3. alice is available again.
    alice.send("presence available");
    carol.expect("alice available", 10, |v| {
        v["event"] == "presence_changed"
            && v["uri"] == "alice"
            && v["status"] == "open"
            && v["activity"].is_null()
    });

    // An activity with an end time ends by itself: alice is back to available then.
    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3);
    alice.send(&format!("presence lunch --until {soon}"));
    carol.expect_new("alice at lunch", 10, |v| {
        v["event"] == "presence_changed" && v["uri"] == "alice" && v["activity"] == "lunch"
    });
    alice.expect_new("back from lunch", 10, |v| {
        v["event"] == "presence_published" && v["activity"] == "available"
    });
    carol.expect_new("alice available again", 10, |v| {
        v["event"] == "presence_changed" && v["uri"] == "alice" && v["activity"].is_null()
    });

    // `vaxel presence set` from the command line (bob's profile): published while it runs,
    // removed when it is stopped with Ctrl-C (exit 0: it was published).
    let mut setter = Vaxel::spawn(
        "presence-set",
        &[
            "--profile",
            dir.join("bob").to_str().unwrap(),
            "--listen",
            "127.0.0.1",
            "presence",
            "set",
            "meeting",
            "--note",
            "weekly review",
        ],
        &[("VAXEL_PASSWORD", "bob-secret")],
    );
    setter.event("presence_published", 10);
    carol.send("watch bob --presence-only");
    let m = carol.expect_new("bob in a meeting", 10, |v| {
        v["event"] == "presence_changed" && v["uri"] == "bob" && v["activity"] == "meeting"
    });
    assert_eq!(m["note"], "weekly review");
    setter.interrupt();
    assert_eq!(setter.wait(10), 0);
    carol.expect_new("bob's presence removed", 10, |v| {
        v["event"] == "presence_changed" && v["uri"] == "bob" && v["status"] != "open"
    });

    // 4. unwatch.
    carol.send("unwatch bob");
    carol.expect("unwatched bob", 10, |v| {
        v["event"] == "watch_ended" && v["uri"] == "bob" && v["reason"] == "unwatched"
    });
    // The order on carol's side: busy before the calls' lamp, available after.
    let order: Vec<String> = carol
        .seen
        .iter()
        .filter(|v| v["event"] == "presence_changed" && v["uri"] == "alice")
        .map(|v| v["activity"].as_str().unwrap_or("-").to_owned())
        .collect();
    assert_eq!(order.last().map(String::as_str), Some("-"), "{order:?}");
    assert!(order.iter().any(|a| a == "busy"), "{order:?}");

    // alice leaves: her publication is removed (PUBLISH Expires: 0), carol sees it go.
    alice.send("quit");
    alice.event("unregistered", 10);
    assert_eq!(alice.wait(10), 0);
    let gone = carol.expect("alice gone", 10, |v| {
        v["event"] == "presence_changed" && v["uri"] == "alice" && v["status"] != "open"
    });
    assert!(gone["activity"].is_null(), "{gone}");

    for v in [&mut bob, &mut carol] {
        v.send("quit");
        v.event("unregistered", 10);
        assert_eq!(v.wait(10), 0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn instant_messages_through_kamailio() {
    if !have_peer("/usr/sbin/kamailio")
        || !have_peer("/usr/lib/x86_64-linux-gnu/kamailio/modules/presence.so")
    {
        return;
    }
    let dir = temp_dir("message");
    let kport = free_port();
    let _k = start_kamailio_presence(&dir, kport);
    tone_wav(&dir.join("tone.wav"), 1000.0, 1);
    let mut alice = user(&dir, "alice", kport, false);
    let mut bob = user(&dir, "bob", kport, false);

    // From `run`, both ways, UTF-8 intact.
    alice.send("message bob Hej Bob, ringer du tilbage? Ærlig talt 😀");
    let sent = alice.event("message_sent", 10);
    assert_eq!(sent["delivered"], true, "{sent}");
    assert_eq!(sent["to"], format!("sip:bob@127.0.0.1:{kport}"));
    let got = bob.event("message_received", 10);
    assert_eq!(got["text"], "Hej Bob, ringer du tilbage? Ærlig talt 😀");
    assert_eq!(got["from"], format!("sip:alice@127.0.0.1:{kport}"));
    assert_eq!(got["account"], "bob");
    bob.send(r#"{"cmd":"message","to":"alice","text":"ja, om 5 min"}"#);
    let back = alice.event("message_received", 10);
    assert_eq!(back["text"], "ja, om 5 min");

    // The one-shot command: exit 0 when accepted…
    let carol = dir.join("carol");
    let add = Command::new(BIN)
        .args(["--profile", carol.to_str().unwrap(), "account", "add"])
        .args([
            "--name",
            "carol",
            "--uri",
            &format!("sip:carol@127.0.0.1:{kport}"),
        ])
        .status()
        .unwrap();
    assert!(add.success());
    let send = |to: &str| {
        Command::new(BIN)
            .args([
                "--profile",
                carol.to_str().unwrap(),
                "--listen",
                "127.0.0.1",
            ])
            .args(["message", to, "please", "call", "back"])
            .env("VAXEL_PASSWORD", "carol-secret")
            .output()
            .unwrap()
    };
    let out = send("bob");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let got = bob.expect("from carol", 10, |v| {
        v["event"] == "message_received" && v["text"] == "please call back"
    });
    assert_eq!(got["from"], format!("sip:carol@127.0.0.1:{kport}"));
    // …and 1 when nobody is there (Kamailio: 404).
    let out = send("nobody");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(r#""delivered":false,"status":404"#),
        "{stdout}"
    );

    for v in [&mut alice, &mut bob] {
        v.send("quit");
        v.event("unregistered", 10);
        assert_eq!(v.wait(10), 0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
