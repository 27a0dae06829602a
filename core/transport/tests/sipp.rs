//! Interop with SIPp (Debian `sip-tester`) and between our own examples, on
//! loopback ports the tests pick:
//!
//! 1. SIPp's `uac` scenario calls `sip-answer` over UDP and TCP;
//! 2. `sip-call` calls SIPp's `uas` scenario over UDP and TCP;
//! 3. SIPp sends malformed requests (`tests/sipp/malformed.xml`), expects 400
//!    for each, then completes a valid call;
//! 4. `sip-call` calls `sip-answer` over TLS (SIPp 3.6.1 here has no TLS).
//!
//! Without `sipp` on the PATH the SIPp cases print a skip line and pass,
//! unless `VAXEL_REQUIRE_PEERS=1`, which makes them fail. Every child process
//! is killed when its guard drops, so a failing assertion leaves nothing behind.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{example, free_port, sipp_available, start_answer};

/// Calls per SIPp case, and the rate SIPp places them at (calls per second).
const CALLS: u32 = 200;
const RATE: u32 = 100;

/// Runs a child to completion within `limit`, killing it otherwise.
fn run(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting a child");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("waiting for a child"),
        Err(_) => {
            // The waiting thread owns the child: kill it by pid.
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            let out = rx.recv().expect("child output").expect("child output");
            panic!(
                "child {cmd:?} did not finish in {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// SIPp's counters from its final statistics screen.
#[derive(Debug, PartialEq, Eq)]
struct SippCalls {
    created: u64,
    successful: u64,
    failed: u64,
}

fn counter(screen: &str, name: &str) -> u64 {
    // `  Successful call        |        0                  |      200    `
    screen
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with(name))
        .and_then(|l| l.rsplit('|').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name:?} counter in SIPp's output:\n{screen}"))
}

fn sipp_calls(out: &Output) -> SippCalls {
    let screen = String::from_utf8_lossy(&out.stdout);
    SippCalls {
        created: counter(&screen, "Total Calls created"),
        successful: counter(&screen, "Successful call"),
        failed: counter(&screen, "Failed call"),
    }
}

fn sipp(args: &[&str], sipp_port: u16) -> Command {
    let mut cmd = Command::new("sipp");
    cmd.args(args).args([
        "-p",
        &sipp_port.to_string(),
        "-i",
        "127.0.0.1",
        "-nostdin",
        "-timeout",
        "90s",
        "-timeout_error",
        "-max_recv_loops",
        "10000",
    ]);
    cmd
}

fn assert_sipp_ok(case: &str, out: &Output, expected: u32) {
    let calls = sipp_calls(out);
    println!("{case}: SIPp {calls:?}");
    assert!(
        out.status.success() && calls.failed == 0 && calls.successful == u64::from(expected),
        "{case}: SIPp exit {:?}, {calls:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn sipp_uac_calls_sip_answer(transport: &str) {
    let case = format!("sipp uac -> sip-answer over {transport}");
    if !sipp_available(&case) {
        return;
    }
    let port = free_port();
    let _answer = start_answer(&["--port", &port.to_string()]);
    let target = format!("127.0.0.1:{port}");
    let cmd = sipp(
        &[
            "-sn",
            "uac",
            &target,
            "-m",
            &CALLS.to_string(),
            "-r",
            &RATE.to_string(),
            "-l",
            "50",
            "-t",
            transport,
        ],
        free_port(),
    );
    let t0 = Instant::now();
    let out = run(cmd, Duration::from_secs(120));
    assert_sipp_ok(&case, &out, CALLS);
    println!(
        "{case}: {CALLS} calls in {:.1} s",
        t0.elapsed().as_secs_f32()
    );
}

#[test]
fn sipp_uac_to_sip_answer_udp() {
    sipp_uac_calls_sip_answer("u1");
}

#[test]
fn sipp_uac_to_sip_answer_tcp() {
    sipp_uac_calls_sip_answer("t1");
}

fn sip_call_calls_sipp_uas(transport: &str) {
    let case = format!("sip-call -> sipp uas over {transport}");
    if !sipp_available(&case) {
        return;
    }
    let port = free_port();
    let mut uas = sipp(
        &["-sn", "uas", "-m", &CALLS.to_string(), "-t", transport],
        port,
    );
    uas.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SIPp gets its own runner thread; our UAC runs meanwhile.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(run(uas, Duration::from_secs(120)));
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut call = Command::new(example("sip-call"));
    call.arg(format!("127.0.0.1:{port}")).args([
        "-n",
        &CALLS.to_string(),
        "-c",
        "20",
        "--hold-ms",
        "20",
        "--quiet",
        // SIPp's uas pauses 4 s after each call and fails calls whose TCP
        // connection closes meanwhile: keep ours open past that.
        "--linger-ms",
        if transport == "t1" { "4500" } else { "0" },
    ]);
    if transport == "t1" {
        call.arg("--tcp");
    }
    let ours = run(call, Duration::from_secs(120));
    let summary = String::from_utf8_lossy(&ours.stdout);
    println!("{case}: {}", summary.trim());
    assert!(ours.status.success(), "{case}: sip-call failed:\n{summary}");
    assert!(
        summary.contains(&format!("{CALLS} calls, {CALLS} succeeded, 0 failed")),
        "{summary}"
    );
    let out = rx
        .recv_timeout(Duration::from_secs(130))
        .expect("SIPp uas result");
    assert_sipp_ok(&case, &out, CALLS);
}

#[test]
fn sip_call_to_sipp_uas_udp() {
    sip_call_calls_sipp_uas("u1");
}

#[test]
fn sip_call_to_sipp_uas_tcp() {
    sip_call_calls_sipp_uas("t1");
}

#[test]
fn sipp_malformed_requests_get_400_and_service_continues() {
    let case = "sipp malformed.xml -> sip-answer over UDP";
    if !sipp_available(case) {
        return;
    }
    let port = free_port();
    let _answer = start_answer(&["--udp", &port.to_string()]);
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/malformed.xml");
    let target = format!("127.0.0.1:{port}");
    let runs = 20;
    let cmd = sipp(
        &[
            "-sf",
            scenario.to_str().unwrap(),
            &target,
            "-m",
            &runs.to_string(),
            "-r",
            "20",
            "-t",
            "u1",
        ],
        free_port(),
    );
    let out = run(cmd, Duration::from_secs(60));
    assert_sipp_ok(case, &out, runs);
}

#[test]
fn sip_call_to_sip_answer_over_tls() {
    let dir = std::env::temp_dir().join(format!("vaxel-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let _answer = start_answer(&[
        "--tls",
        &addr.to_string(),
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    let calls = 50;
    let mut call = Command::new(example("sip-call"));
    call.arg(format!("sip:localhost:{port}")).args([
        "--tls",
        "--ca",
        cert.to_str().unwrap(),
        "-n",
        &calls.to_string(),
        "-c",
        "10",
        "--hold-ms",
        "20",
        "--quiet",
    ]);
    let out = run(call, Duration::from_secs(60));
    let summary = String::from_utf8_lossy(&out.stdout);
    println!("sip-call -> sip-answer over TLS: {}", summary.trim());
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{summary}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        summary.contains(&format!("{calls} calls, {calls} succeeded, 0 failed")),
        "{summary}"
    );
}
