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
