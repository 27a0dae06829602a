//! `vaxel listen --auto-answer --record` ← `vaxel call --play tone.wav --dtmf 123
//! --hangup-after 3`, directly over loopback (no registrar): the 1 kHz tone arrives in
//! the recording and the digits arrive as events; both exit 0.

mod common;

use common::*;

#[test]
fn direct_call_carries_tone_and_dtmf() {
    let dir = temp_dir("direct");
    let tone = dir.join("tone.wav");
    tone_wav(&tone, 1000.0, 2);
    let rec = dir.join("rec.wav");
    let port = free_port();
    let listen_addr = format!("127.0.0.1:{port}");
    let pb = dir.join("b");
    let mut b = Vaxel::spawn(
        "b",
        &[
            "--profile",
            pb.to_str().unwrap(),
            "--listen",
            &listen_addr,
            "listen",
            "--auto-answer",
            "--record",
            rec.to_str().unwrap(),
            "--count",
            "1",
        ],
        &[],
    );
    b.event("started", 10);
    let pa = dir.join("a");
    let target = format!("sip:bob@127.0.0.1:{port}");
    let mut a = Vaxel::spawn(
        "a",
        &[
            "--profile",
            pa.to_str().unwrap(),
            "--listen",
            "127.0.0.1",
            "call",
            &target,
            "--play",
            tone.to_str().unwrap(),
            "--dtmf",
            "123",
            "--hangup-after",
            "3",
        ],
        &[],
    );
    a.close_stdin();
    a.event("established", 10);
    b.event("incoming", 5);
    assert_eq!(a.wait(20), 0, "the call happened");
    assert_eq!(b.wait(10), 0, "the listener answered");
    assert_eq!(b.digits(), "123");
    let ended = a.event("ended", 1);
    assert_eq!(ended["cause"], "local_hangup");
    assert_eq!(b.event("ended", 1)["cause"], "remote_hangup");
    let (f, share) = dominant(&rec, &[500.0, 800.0, 1000.0, 1200.0, 2000.0]);
    assert_eq!(f, 1000.0, "the tone is 1 kHz");
    assert!(
        share > 0.5,
        "the tone dominates the loudest second ({share:.2})"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn call_to_nobody_fails_with_exit_status_1() {
    let dir = temp_dir("nobody");
    let port = free_port();
    let target = format!("sip:nobody@127.0.0.1:{port}");
    let pa = dir.join("a");
    let mut a = Vaxel::spawn(
        "a",
        &[
            "--profile",
            pa.to_str().unwrap(),
            "--listen",
            "127.0.0.1",
            "call",
            &target,
            "--play",
            "/nonexistent.wav",
            "--timeout",
            "40",
        ],
        &[],
    );
    a.close_stdin();
    // UDP to a closed port: ICMP makes it a transport error (503), or Timer B (408).
    let code = a.wait(45);
    assert_eq!(code, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The history, the missed-call badge, contacts, search and vCard through `vaxel run`:
/// a call that b never answers is missed on b's side and cancelled on a's; the badge
/// counts it until `mark-missed-seen`; a contact added on b is found by search,
/// exported as vCard and imported by a.
#[test]
fn history_missed_badge_contacts_search_and_vcard() {
    let dir = temp_dir("history");
    let tone = dir.join("tone.wav");
    tone_wav(&tone, 1000.0, 1);
    let port = free_port();
    let pb = dir.join("b");
    let mut b = Vaxel::spawn(
        "b",
        &[
            "--profile",
            pb.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "run",
            "--play",
            tone.to_str().unwrap(),
        ],
        &[],
    );
    b.event("started", 10);
    let pa = dir.join("a");
    let mut a = Vaxel::spawn(
        "a",
        &[
            "--profile",
            pa.to_str().unwrap(),
            "--listen",
            "127.0.0.1",
            "run",
            "--play",
            tone.to_str().unwrap(),
        ],
        &[],
    );
    a.event("started", 10);
    a.send(&format!("call sip:bob@127.0.0.1:{port}"));
    b.event("incoming", 10);
    a.event("ringing", 10);
    a.send("hangup");
    a.expect("cancelled", 10, |v| {
        v["event"] == "ended" && v["cause"] == "cancelled"
    });
    b.expect("missed", 10, |v| {
        v["event"] == "ended" && v["cause"] == "remote_cancelled"
    });

    b.send("snapshot");
    assert_eq!(b.event("snapshot", 5)["unseen_missed"], 1);
    b.send("missed");
    let h = b.event("history", 5);
    assert_eq!(h["unseen_missed"], 1);
    assert_eq!(h["calls"][0]["direction"], "incoming");
    assert_eq!(h["calls"][0]["outcome"], "missed");
    assert_eq!(h["calls"][0]["number"], "vaxel");
    assert_eq!(h["calls"][0]["cause"], "remote_cancelled");
    assert!(h["calls"][0]["ended_at"].as_i64() >= h["calls"][0]["started_at"].as_i64());
    b.send("mark-missed-seen");
    assert_eq!(b.event("missed_seen", 5)["marked"], 1);
    b.send(r#"{"cmd":"snapshot"}"#);
    b.expect("snapshot 0", 5, |v| {
        v["event"] == "snapshot" && v["unseen_missed"] == 0
    });
    a.send("history");
    let h = a.event("history", 5);
    assert_eq!(h["calls"][0]["direction"], "outgoing");
    assert_eq!(h["calls"][0]["outcome"], "cancelled");
    assert_eq!(h["calls"][0]["number"], "bob");

    // Contacts and search: contacts first, then history.
    b.send("contact-add Anne Sällström +46701234567 sip:anne@example.com");
    b.event("contact_added", 5);
    b.send("search ann sall");
    let r = b.event("search_results", 5);
    assert_eq!(r["hits"][0]["kind"], "contact");
    assert_eq!(r["hits"][0]["display"], "Anne Sällström");
    b.send("search 0701234");
    b.expect("search by number", 5, |v| {
        v["event"] == "search_results"
            && v["query"] == "0701234"
            && v["hits"][0]["kind"] == "contact"
    });
    // Edit: the new name and number are found, the old number no more.
    let id = b
        .seen
        .iter()
        .rev()
        .find(|v| v["event"] == "contact_added")
        .unwrap()["id"]
        .clone();
    b.send(&format!(
        "contact-update {id} Anne Berg +4511223344 sip:anne@example.com"
    ));
    let up = b.event("contact_updated", 5);
    assert_eq!(up["name"], "Anne Berg", "{up}");
    b.send("search berg");
    b.expect("the new name", 5, |v| {
        v["event"] == "search_results"
            && v["query"] == "berg"
            && v["hits"][0]["number"] == "+4511223344"
    });
    b.send("contact-update 999 Nobody");
    b.expect("no such contact", 5, |v| {
        v["event"] == "error" && v["message"] == "no contact 999"
    });
    b.send(&format!(
        "contact-update {id} Anne Sällström +46701234567 sip:anne@example.com"
    ));
    b.expect_new("the name back", 5, |v| {
        v["event"] == "contact_updated" && v["name"] == "Anne Sällström"
    });
    b.send("search vaxel");
    b.expect("history hit", 5, |v| {
        v["event"] == "search_results" && v["query"] == "vaxel" && v["hits"][0]["kind"] == "history"
    });
    let vcf = dir.join("contacts.vcf");
    b.send(&format!("vcard-export {}", vcf.display()));
    assert_eq!(b.event("vcard_exported", 5)["contacts"], 1);
    assert!(std::fs::read_to_string(&vcf).unwrap().contains("Sällström"));
    a.send(&format!(
        r#"{{"cmd":"vcard_import","path":{}}}"#,
        serde_json::to_string(&vcf).unwrap()
    ));
    let imp = a.event("vcard_imported", 5);
    assert_eq!(imp["imported"], 1, "{imp}");
    a.send("contacts");
    let c = a.event("contacts", 5);
    assert_eq!(c["contacts"][0]["name"], "Anne Sällström");
    assert_eq!(c["contacts"][0]["numbers"][0], "+46701234567");
    // Errors are events, not crashes.
    a.send("vcard-import /nonexistent/x.vcf");
    a.expect("error", 5, |v| {
        v["event"] == "error" && v["code"] == "environment"
    });

    for v in [&mut a, &mut b] {
        v.send("quit");
        v.event("stopped", 10);
        assert_eq!(v.wait(10), 0);
    }
    // The history is kept in the profile's store across runs.
    assert!(pb.join("store.sqlite").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}
