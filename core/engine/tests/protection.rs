//! R-503 against SIPVicious: svwar enumerates no extension, svcrack finds no password
//! (although the right one is in its dictionary), the attacking sources are banned,
//! and a legitimate user on another address registers and is unaffected.

mod common;

use std::process::Command;

use common::*;
use vaxel_testkit::peers::skip_or_fail;

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().expect("runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn sipvicious_finds_nothing_and_gets_banned_legitimate_users_unaffected() {
    if !(have("svwar") && have("svcrack"))
        && skip_or_fail("protection", "sipvicious (svwar, svcrack)")
    {
        return;
    }
    // SIPVicious sends from 127.0.0.1 whatever it binds, so each tool gets its own
    // engine; the legitimate user is on 127.0.0.2.
    let dir = temp_dir("protection-svwar");
    // Default protection (16 requests in 2 s, 5 failed authentications, 5-minute ban).
    let engine = EngineProc::start(&dir, Some(&office("")), free_port());
    let port = engine.sip.port().to_string();
    assert_eq!(
        register_from("127.0.0.2", engine.sip, "4002", "bob-pw"),
        Some(200)
    );
    // Enumeration by REGISTER and by INVITE: every extension answers like a missing one.
    for method in ["REGISTER", "INVITE"] {
        let out = run(
            "svwar",
            &[
                "-e",
                "3900-4100",
                "-m",
                method,
                "--force",
                "-p",
                &port,
                "--maximumtime=5",
                "127.0.0.1",
            ],
        );
        for ext in ["4001", "4002", "4003", "4004"] {
            assert!(
                !out.contains(&format!("| {ext}")),
                "svwar -m {method} enumerated {ext}:\n{out}"
            );
        }
    }
    // svwar gives up at once ("every extension answers like a missing one"), so it
    // never floods. A flood of requests from one source is banned (rate limit):
    let flood = std::net::UdpSocket::bind("127.0.0.6:0").unwrap();
    flood
        .set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    let local = flood.local_addr().unwrap();
    for i in 0..20 {
        let m = format!(
            "OPTIONS sip:{} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKflood{i}\r\nMax-Forwards: 70\r\n\
             From: <sip:x@{local}>;tag=f\r\nTo: <sip:{}>\r\nCall-ID: flood{i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            engine.sip, engine.sip
        );
        flood.send_to(m.as_bytes(), engine.sip).unwrap();
    }
    let mut answered = 0;
    let mut buf = [0u8; 2048];
    while flood.recv(&mut buf).is_ok() {
        answered += 1;
    }
    assert_eq!(
        answered, 16,
        "16 requests in 2 s are served, the rest dropped"
    );
    assert_eq!(
        register_from("127.0.0.6", engine.sip, "4001", "alice-pw"),
        None,
        "the flooder is banned"
    );
    // The legitimate user is unaffected.
    assert_eq!(
        register_from("127.0.0.2", engine.sip, "4002", "bob-pw"),
        Some(200)
    );
    drop(engine);

    let dir = temp_dir("protection-svcrack");
    let engine = EngineProc::start(&dir, Some(&office("")), free_port());
    let port = engine.sip.port().to_string();
    // Password guessing, the right password 20th in the dictionary.
    let mut dict: Vec<String> = (0..19).map(|i| format!("guess{i}")).collect();
    dict.push("alice-pw".into());
    std::fs::write(dir.join("dict"), dict.join("\n")).unwrap();
    let dict_path = dir.join("dict").display().to_string();
    let out = run(
        "svcrack",
        &[
            "-u",
            "4001",
            "-d",
            &dict_path,
            "-p",
            &port,
            "--maximumtime=5",
            "127.0.0.1",
        ],
    );
    assert!(
        !out.contains("alice-pw"),
        "svcrack found the password:\n{out}"
    );
    assert_eq!(
        register_from("127.0.0.1", engine.sip, "4001", "alice-pw"),
        None,
        "the guesser is banned"
    );
    assert_eq!(
        register_from("127.0.0.2", engine.sip, "4001", "alice-pw"),
        Some(200),
        "the user is not locked out"
    );
}
