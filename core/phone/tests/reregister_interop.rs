//! Registration that survives the server, against Kamailio started by the test on
//! loopback (tests/kamailio/kamailio.cfg.in, digest auth):
//!
//! - several contacts: alice is registered from two phones (one over TCP, one over UDP);
//!   each finds its own binding among the two Contacts of the 200, a call from bob rings
//!   both, one answers, the other is cancelled and records it as answered elsewhere (not
//!   missed);
//! - server restart: Kamailio is stopped (its bindings are in memory only, so they are
//!   gone) and started again 3 s later on the same port. The TCP phone notices its
//!   connection to the registrar closing, tries to register at once (fails: 503, with a
//!   retry time), backs off and registers again when Kamailio is back — without anyone
//!   asking — and bob's next call reaches it.
//!
//! - network change: a phone on 127.0.0.2 is told the network changed to 127.0.0.3
//!   (`network-changed`, what `vaxel run` does by itself when the address that reaches the
//!   server changes): it moves there, registers the new contact and removes the old one in
//!   the same REGISTER (Kamailio then holds one contact), and takes a call there.
//!
//! Skips (or fails with `VAXEL_REQUIRE_PEERS=1`) when kamailio is not installed.

mod common;

use std::process::Command;
use std::time::Duration;

use common::kamailio::start_kamailio;
use common::*;

fn phone(dir: &std::path::Path, name: &str, user: &str, kport: u16, transport: &str) -> Vaxel {
    phone_on(dir, name, user, kport, transport, "127.0.0.1")
}

fn phone_on(
    dir: &std::path::Path,
    name: &str,
    user: &str,
    kport: u16,
    transport: &str,
    ip: &str,
) -> Vaxel {
    let profile = dir.join(name);
    let status = Command::new(BIN)
        .args(["--profile", profile.to_str().unwrap(), "account", "add"])
        .args([
            "--name",
            user,
            "--uri",
            &format!("sip:{user}@127.0.0.1:{kport}"),
        ])
        .args(["--transport", transport])
        .status()
        .unwrap();
    assert!(status.success());
    let tone = dir.join("tone.wav");
    let rec = dir.join(format!("{name}.wav"));
    let mut v = Vaxel::spawn(
        name,
        &[
            "--profile",
            profile.to_str().unwrap(),
            "--listen",
            ip,
            "run",
            "--play",
            tone.to_str().unwrap(),
            "--record",
            rec.to_str().unwrap(),
        ],
        &[("VAXEL_PASSWORD", &format!("{user}-secret"))],
    );
    v.event("registered", 10);
    v
}

#[test]
fn two_contacts_and_a_server_restart() {
    if !have_peer("/usr/sbin/kamailio") {
        return;
    }
    let dir = temp_dir("reregister");
    let kport = free_port();
    for d in ["k1", "k2"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let k = start_kamailio(&dir.join("k1"), kport);
    tone_wav(&dir.join("tone.wav"), 1000.0, 1);

    let mut desk = phone(&dir, "desk", "alice", kport, "tcp");
    let mut laptop = phone(&dir, "laptop", "alice", kport, "udp");
    let mut bob = phone(&dir, "bob", "bob", kport, "udp");
    // Each of alice's phones took its own binding's expiry from a 200 listing both.
    assert_eq!(desk.event("registered", 1)["expires"], 600);
    assert_eq!(laptop.event("registered", 1)["expires"], 600);

    // A call to alice rings both; the laptop answers, the desk phone stops ringing.
    bob.send("call alice");
    let on_desk = desk.event("incoming", 10);
    let on_laptop = laptop.event("incoming", 10);
    laptop.send(&format!("answer {}", on_laptop["call"]));
    bob.event("established", 10);
    // Kamailio cancels the other branch with "Reason: SIP;cause=200" (RFC 3326): answered
    // elsewhere, not a missed call.
    desk.expect("answered elsewhere", 10, |v| {
        v["event"] == "ended" && v["call"] == on_desk["call"] && v["cause"] == "answered_elsewhere"
    });
    desk.send("history");
    let h = desk.event("history", 5);
    assert_eq!(h["calls"][0]["outcome"], "answered_elsewhere", "{h}");
    assert_eq!(h["unseen_missed"], 0, "no badge for it: {h}");
    bob.send("hangup");
    laptop.expect("ended", 10, |v| {
        v["event"] == "ended" && v["cause"] == "remote_hangup"
    });

    // Kamailio restarts and forgets every binding.
    let before = desk
        .seen
        .iter()
        .filter(|v| v["event"] == "registered")
        .count();
    drop(k);
    std::thread::sleep(Duration::from_secs(3));
    let failed = desk.event("registration_failed", 10);
    assert!(failed["retry_in_s"].as_u64().is_some(), "{failed}");
    let k = start_kamailio(&dir.join("k2"), kport);
    desk.expect_new("registered again", 30, |v| v["event"] == "registered");
    let after = desk
        .seen
        .iter()
        .filter(|v| v["event"] == "registered")
        .count();
    assert_eq!(after, before + 1, "registered again by itself");

    // bob reaches the desk phone through the restarted server.
    bob.send("register");
    bob.expect_new("bob registered again", 10, |v| v["event"] == "registered");
    bob.send("call alice");
    let inc = desk.expect("incoming after restart", 10, |v| {
        v["event"] == "incoming" && v["call"] != on_desk["call"]
    });
    desk.send(&format!("answer {}", inc["call"]));
    bob.expect("established after restart", 10, |v| {
        v["event"] == "established" && v["call"] == 2
    });
    bob.send("hangup");
    desk.expect("ended after restart", 10, |v| {
        v["event"] == "ended" && v["call"] == inc["call"]
    });

    for v in [&mut desk, &mut laptop, &mut bob] {
        v.send("quit");
        assert_eq!(v.wait(10), 0);
    }
    drop(k);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_network_change_moves_the_registration() {
    if !have_peer("/usr/sbin/kamailio") {
        return;
    }
    let dir = temp_dir("netchange");
    let kport = free_port();
    std::fs::create_dir_all(dir.join("k")).unwrap();
    let _k = start_kamailio(&dir.join("k"), kport);
    tone_wav(&dir.join("tone.wav"), 1000.0, 1);
    let mut alice = phone_on(&dir, "alice", "alice", kport, "udp", "127.0.0.2");
    assert_eq!(alice.event("registered", 1)["contacts"], 1);
    let mut bob = phone(&dir, "bob", "bob", kport, "udp");

    alice.send("network-changed 127.0.0.3");
    let moved = alice.event("address_changed", 10);
    assert!(
        moved["listening"][0]
            .as_str()
            .unwrap()
            .starts_with("udp:127.0.0.3:"),
        "{moved}"
    );
    let again = alice.expect_new("registered from the new address", 10, |v| {
        v["event"] == "registered"
    });
    assert_eq!(again["contacts"], 1, "the old contact was removed: {again}");

    bob.send("call alice");
    let inc = alice.event("incoming", 10);
    alice.send(&format!("answer {}", inc["call"]));
    bob.event("established", 10);
    alice.event("established", 10);
    bob.send("hangup");
    alice.expect("ended", 10, |v| {
        v["event"] == "ended" && v["cause"] == "remote_hangup"
    });
    for v in [&mut alice, &mut bob] {
        v.send("quit");
        v.event("unregistered", 10);
        assert_eq!(v.wait(10), 0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
