//! Interop with baresip (Debian's 1.0.0), driven through its ctrl_tcp socket; audio is
//! a WAV tone each way (vaxel 1 kHz, baresip 700 Hz), checked with Goertzel in vaxel's
//! recording and in baresip's `sndfile` dump of what it received.
//!
//! 1. Direct, no registrar: vaxel calls baresip (audio both ways, DTMF seen by
//!    baresip, hold and resume), then baresip calls vaxel (audio both ways).
//! 2. The same through Kamailio (tests/kamailio/kamailio.cfg.in): baresip registers as
//!    dave, vaxel as alice; alice calls dave, dave calls alice.
//!
//! 3. Blind transfer, direct (`baresip_direct_transfer_both_ways`): vaxel A REFERs
//!    baresip to a third vaxel C (baresip calls C; NOTIFY sipfrag back to A), then
//!    baresip REFERs vaxel A to C (its `transfer` command); audio checked on the new
//!    call each time (C plays 1.5 kHz).
//!
//! 4. The same transfers through Kamailio: alice REFERs dave (baresip) to carol, then
//!    dave REFERs alice to carol (`baresip_through_kamailio_transfer_both_ways`).
//!
//! Skips without baresip, or fails with `VAXEL_REQUIRE_PEERS=1`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::baresip::{BARESIP, Baresip, modules_present};
use common::kamailio::start_kamailio;
use common::*;

/// A sine WAV at 8 kHz (baresip's aufile source plays only 8 kHz files), −12 dBFS.
fn tone_wav_8k(path: &Path, freq: f64, secs: usize) {
    let mut rec =
        vaxel_media::wav::WavRecorder::new(std::fs::File::create(path).unwrap(), 8_000).unwrap();
    let amp = 32767.0 * 10f64.powf(-12.0 / 20.0);
    rec.write(&vaxel_media::dsp::sine(8_000, freq, amp, 8_000 * secs))
        .unwrap();
    rec.finish().unwrap();
}

const FREQS: [f64; 4] = [500.0, 700.0, 1000.0, 1500.0];

fn have_baresip() -> bool {
    if !have_peer(BARESIP) {
        return false;
    }
    if let Err(m) = modules_present() {
        assert!(
            std::env::var("VAXEL_REQUIRE_PEERS").as_deref() != Ok("1"),
            "{m} is required (VAXEL_REQUIRE_PEERS=1) but not installed"
        );
        eprintln!("SKIP: {m} not installed");
        return false;
    }
    true
}

/// Two free ports p, p+1 (baresip takes SIP on p, TLS on p+1), and a third.
fn baresip_ports() -> (u16, u16) {
    loop {
        let p = free_port();
        if p < 65000
            && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", p + 1)).is_ok()
        {
            return (p, free_port());
        }
    }
}

fn assert_tone(path: &Path, freq: f64, who: &str) {
    let (f, share) = dominant(path, &FREQS);
    assert_eq!(f, freq, "{who}: {} ({share:.2})", path.display());
    assert!(share > 0.5, "{who}: share {share:.2}");
}

/// A `vaxel run` without an account on 127.0.0.1:PORT, answering by itself.
fn spawn_direct(dir: &Path, name: &str, play: &Path, rec: &Path) -> (Vaxel, u16) {
    let port = free_port();
    let mut v = Vaxel::spawn(
        name,
        &[
            "--profile",
            dir.join(name).to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "run",
            "--auto-answer",
            "--play",
            play.to_str().unwrap(),
            "--record",
            rec.to_str().unwrap(),
        ],
        &[],
    );
    v.event("started", 10);
    (v, port)
}

/// vaxel → baresip: audio both ways, DTMF, hold and resume, hangup. Returns the next
/// call id of vaxel.
fn vaxel_calls_baresip(v: &mut Vaxel, b: &mut Baresip, uri: &str, call: u64, vrec: &Path) {
    b.clear();
    let before = b.received_dumps().len();
    v.send(&format!("call {uri}"));
    v.expect("established", 15, |e| {
        e["event"] == "established" && e["call"] == call
    });
    b.event("CALL_ESTABLISHED", 10);
    std::thread::sleep(Duration::from_millis(1500));
    v.send(&format!("dtmf {call} 42#"));
    // baresip logs each RFC 4733 telephone-event it receives, start and end.
    let end = std::time::Instant::now() + Duration::from_secs(10);
    let digits = loop {
        let log = b.log();
        let digits: String = log
            .lines()
            .filter_map(|l| l.split("received event: '").nth(1))
            .filter(|r| r.contains("(end=1)"))
            .filter_map(|r| r.chars().next())
            .collect();
        if digits.ends_with("42#") || std::time::Instant::now() > end {
            break digits;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(digits.ends_with("42#"), "baresip got digits {digits:?}");
    v.send(&format!("hold {call}"));
    v.expect("held", 10, |e| {
        e["event"] == "held" && e["call"] == call && e["by"] == "local"
    });
    v.send(&format!("resume {call}"));
    v.expect("resumed", 10, |e| {
        e["event"] == "resumed" && e["call"] == call && e["by"] == "local"
    });
    std::thread::sleep(Duration::from_millis(1500));
    v.send(&format!("hangup {call}"));
    v.expect("ended", 10, |e| e["event"] == "ended" && e["call"] == call);
    b.event("CALL_CLOSED", 10);
    std::thread::sleep(Duration::from_millis(300));
    assert_tone(vrec, 700.0, "vaxel hears baresip");
    let dumps = b.received_dumps();
    assert!(dumps.len() > before, "sndfile wrote no dump: {dumps:?}");
    assert_tone(dumps.last().unwrap(), 1000.0, "baresip hears vaxel");
}

/// baresip → vaxel (auto-answer): audio both ways, hangup by baresip.
fn baresip_calls_vaxel(v: &mut Vaxel, b: &mut Baresip, uri: &str, call: u64, vrec: &Path) {
    b.clear();
    let before = b.received_dumps().len();
    let _ = std::fs::remove_file(vrec);
    b.command("dial", uri);
    v.expect("incoming", 15, |e| {
        e["event"] == "incoming" && e["call"] == call
    });
    v.expect("established", 10, |e| {
        e["event"] == "established" && e["call"] == call
    });
    b.event("CALL_ESTABLISHED", 10);
    std::thread::sleep(Duration::from_millis(2500));
    b.command("hangup", "");
    v.expect("ended", 10, |e| {
        e["event"] == "ended" && e["call"] == call && e["cause"] == "remote_hangup"
    });
    b.event("CALL_CLOSED", 10);
    std::thread::sleep(Duration::from_millis(300));
    assert_tone(vrec, 700.0, "vaxel hears baresip");
    let dumps = b.received_dumps();
    assert!(dumps.len() > before, "sndfile wrote no dump: {dumps:?}");
    assert_tone(dumps.last().unwrap(), 1000.0, "baresip hears vaxel");
}

#[test]
fn baresip_direct_calls_both_ways() {
    if !have_baresip() {
        return;
    }
    let dir = temp_dir("baresip-direct");
    let t1000 = dir.join("t1000.wav");
    tone_wav(&t1000, 1000.0, 2);
    let t700 = dir.join("t700.wav");
    // Long enough for a whole test: baresip hangs up when its aufile source ends.
    tone_wav_8k(&t700, 700.0, 60);
    let (bport, cport) = baresip_ports();
    let mut b = Baresip::start(
        &dir.join("baresip"),
        bport,
        cport,
        &t700,
        &format!("<sip:bare@127.0.0.1:{bport}>;regint=0;answermode=auto"),
    );
    let vport = free_port();
    let vrec = dir.join("vaxel.wav");
    let mut v = Vaxel::spawn(
        "vaxel",
        &[
            "--profile",
            dir.join("profile").to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{vport}"),
            "run",
            "--auto-answer",
            "--play",
            t1000.to_str().unwrap(),
            "--record",
            vrec.to_str().unwrap(),
        ],
        &[],
    );
    v.event("started", 10);
    vaxel_calls_baresip(
        &mut v,
        &mut b,
        &format!("sip:bare@127.0.0.1:{bport}"),
        1,
        &vrec,
    );
    baresip_calls_vaxel(
        &mut v,
        &mut b,
        &format!("sip:vaxel@127.0.0.1:{vport}"),
        2,
        &vrec,
    );
    v.send("quit");
    v.event("stopped", 10);
    assert_eq!(v.wait(10), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn baresip_through_kamailio_both_ways() {
    if !have_baresip() || !have_peer("/usr/sbin/kamailio") {
        return;
    }
    let dir = temp_dir("baresip-kamailio");
    let kport = free_port();
    let _k = start_kamailio(&dir, kport);
    let t1000 = dir.join("t1000.wav");
    tone_wav(&t1000, 1000.0, 2);
    let t700 = dir.join("t700.wav");
    // Long enough for a whole test: baresip hangs up when its aufile source ends.
    tone_wav_8k(&t700, 700.0, 60);
    let (bport, cport) = baresip_ports();
    let mut b = Baresip::start(
        &dir.join("baresip"),
        bport,
        cport,
        &t700,
        &format!("<sip:dave@127.0.0.1:{kport}>;auth_pass=dave-secret;regint=300;answermode=auto"),
    );
    // Registered before the control socket was up, so from its log.
    b.wait_log("200 OK", 10);
    let profile = dir.join("alice");
    let status = std::process::Command::new(BIN)
        .args(["--profile", profile.to_str().unwrap(), "account", "add"])
        .args([
            "--name",
            "alice",
            "--uri",
            &format!("sip:alice@127.0.0.1:{kport}"),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let vrec = dir.join("alice.wav");
    let mut v = Vaxel::spawn(
        "alice",
        &[
            "--profile",
            profile.to_str().unwrap(),
            "--listen",
            "127.0.0.1",
            "run",
            "--auto-answer",
            "--play",
            t1000.to_str().unwrap(),
            "--record",
            vrec.to_str().unwrap(),
        ],
        &[("VAXEL_PASSWORD", "alice-secret")],
    );
    v.event("registered", 10);
    vaxel_calls_baresip(&mut v, &mut b, "dave", 1, &vrec);
    baresip_calls_vaxel(
        &mut v,
        &mut b,
        &format!("sip:alice@127.0.0.1:{kport}"),
        2,
        &vrec,
    );
    v.send("quit");
    v.event("unregistered", 10);
    assert_eq!(v.wait(10), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// (a) A calls baresip (`b_uri`) as A's call `call`, then REFERs it to C (`c_target`
/// as A types it, `c_uri` as baresip will dial it); baresip calls C (C's call
/// `c_call`). Checks A's outcome and sipfrag progress, and audio B↔C.
#[allow(clippy::too_many_arguments)]
fn vaxel_transfers_baresip(
    a: &mut Vaxel,
    b: &mut Baresip,
    c: &mut Vaxel,
    b_uri: &str,
    call: u64,
    c_target: &str,
    c_uri: &str,
    c_call: u64,
    crec: &Path,
) {
    b.clear();
    a.send(&format!("call {b_uri}"));
    a.expect("established", 15, |e| {
        e["event"] == "established" && e["call"] == call
    });
    b.event("CALL_ESTABLISHED", 10);
    std::thread::sleep(Duration::from_millis(1000));
    b.clear();
    let before = b.received_dumps().len();
    a.send(&format!("transfer {call} {c_target}"));
    c.expect("incoming from baresip", 15, |e| {
        e["event"] == "incoming" && e["call"] == c_call
    });
    c.expect("established", 10, |e| {
        e["event"] == "established" && e["call"] == c_call
    });
    a.expect("transferred", 10, |e| {
        e["event"] == "transferred" && e["call"] == call
    });
    a.expect("ended transferred", 10, |e| {
        e["event"] == "ended" && e["call"] == call && e["cause"] == "transferred"
    });
    // The NOTIFYs' sipfrag: a provisional status came before the final one.
    let progress: Vec<_> = a
        .seen
        .iter()
        .filter(|e| e["event"] == "transfer_progress" && e["call"] == call)
        .filter_map(|e| e["status"].as_u64())
        .collect();
    assert!(
        !progress.is_empty() && progress.iter().all(|s| (100..200).contains(s)),
        "sipfrag progress at A: {progress:?}"
    );
    std::thread::sleep(Duration::from_millis(2500));
    c.send(&format!("hangup {c_call}"));
    c.expect("ended", 10, |e| {
        e["event"] == "ended" && e["call"] == c_call
    });
    b.expect("B-C closed", 10, |e| {
        e["type"] == "CALL_CLOSED" && e["peeruri"] == c_uri
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_tone(crec, 700.0, "C hears baresip after the transfer");
    let dumps = b.received_dumps();
    assert!(
        dumps.len() > before,
        "sndfile wrote no dump for B-C: {dumps:?}"
    );
    assert_tone(dumps.last().unwrap(), 1500.0, "baresip hears C");
}

/// (b) baresip calls A (`a_uri`, A's call `call`), then REFERs A to `c_uri` with its
/// `transfer` command; A calls C (A's call `call + 1`, C's call `c_call`). Checks
/// audio A↔C.
#[allow(clippy::too_many_arguments)]
fn baresip_transfers_vaxel(
    a: &mut Vaxel,
    b: &mut Baresip,
    c: &mut Vaxel,
    a_uri: &str,
    call: u64,
    c_uri: &str,
    c_call: u64,
    arec: &Path,
    crec: &Path,
) {
    b.clear();
    b.command("dial", a_uri);
    a.expect("incoming from baresip", 15, |e| {
        e["event"] == "incoming" && e["call"] == call
    });
    a.expect("established", 10, |e| {
        e["event"] == "established" && e["call"] == call
    });
    b.event("CALL_ESTABLISHED", 10);
    std::thread::sleep(Duration::from_millis(1000));
    b.command("transfer", c_uri);
    let req = a.expect("transfer_requested", 10, |e| {
        e["event"] == "transfer_requested" && e["call"] == call
    });
    assert_eq!(req["new_call"], call + 1, "{req}");
    assert_eq!(req["target"], c_uri, "{req}");
    c.expect("incoming from A", 15, |e| {
        e["event"] == "incoming" && e["call"] == c_call
    });
    a.expect("A-C established", 10, |e| {
        e["event"] == "established" && e["call"] == call + 1
    });
    // baresip hangs up once the NOTIFY says 200 ("Call transfered").
    a.expect("A-B ended", 10, |e| {
        e["event"] == "ended" && e["call"] == call && e["cause"] == "remote_hangup"
    });
    b.event("CALL_CLOSED", 10);
    std::thread::sleep(Duration::from_millis(2500));
    a.send(&format!("hangup {}", call + 1));
    a.expect("A-C ended", 10, |e| {
        e["event"] == "ended" && e["call"] == call + 1
    });
    c.expect("ended", 10, |e| {
        e["event"] == "ended" && e["call"] == c_call && e["cause"] == "remote_hangup"
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_tone(crec, 1000.0, "C hears A after the transfer");
    // Both of A's calls record to its one file; the newer (to C) took it over.
    assert_tone(arec, 1500.0, "A hears C after the transfer");
}

#[test]
fn baresip_direct_transfer_both_ways() {
    if !have_baresip() {
        return;
    }
    let dir = temp_dir("baresip-transfer");
    let t1000 = dir.join("t1000.wav");
    tone_wav(&t1000, 1000.0, 2);
    let t1500 = dir.join("t1500.wav");
    tone_wav(&t1500, 1500.0, 2);
    let t700 = dir.join("t700.wav");
    tone_wav_8k(&t700, 700.0, 60);
    let (bport, ctlport) = baresip_ports();
    let mut b = Baresip::start(
        &dir.join("baresip"),
        bport,
        ctlport,
        &t700,
        &format!("<sip:bare@127.0.0.1:{bport}>;regint=0;answermode=auto"),
    );
    let arec = dir.join("a.wav");
    let crec = dir.join("c.wav");
    let (mut a, aport) = spawn_direct(&dir, "vaxel-a", &t1000, &arec);
    let (mut c, cport) = spawn_direct(&dir, "vaxel-c", &t1500, &crec);
    let c_uri = format!("sip:c@127.0.0.1:{cport}");
    vaxel_transfers_baresip(
        &mut a,
        &mut b,
        &mut c,
        &format!("sip:bare@127.0.0.1:{bport}"),
        1,
        &c_uri,
        &c_uri,
        1,
        &crec,
    );
    baresip_transfers_vaxel(
        &mut a,
        &mut b,
        &mut c,
        &format!("sip:a@127.0.0.1:{aport}"),
        2,
        &c_uri,
        2,
        &arec,
        &crec,
    );
    for v in [&mut a, &mut c] {
        v.send("quit");
        v.event("stopped", 10);
        assert_eq!(v.wait(10), 0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `vaxel run` registered at Kamailio as `user`, answering by itself.
fn spawn_registered(dir: &Path, user: &str, kport: u16, play: &Path, rec: &Path) -> Vaxel {
    let profile = dir.join(user);
    let status = std::process::Command::new(BIN)
        .args(["--profile", profile.to_str().unwrap(), "account", "add"])
        .args([
            "--name",
            user,
            "--uri",
            &format!("sip:{user}@127.0.0.1:{kport}"),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let mut v = Vaxel::spawn(
        user,
        &[
            "--profile",
            profile.to_str().unwrap(),
            "--listen",
            "127.0.0.1",
            "run",
            "--auto-answer",
            "--play",
            play.to_str().unwrap(),
            "--record",
            rec.to_str().unwrap(),
        ],
        &[("VAXEL_PASSWORD", &format!("{user}-secret"))],
    );
    v.event("registered", 10);
    v
}

#[test]
fn baresip_through_kamailio_transfer_both_ways() {
    if !have_baresip() || !have_peer("/usr/sbin/kamailio") {
        return;
    }
    let dir = temp_dir("baresip-kamailio-transfer");
    let kport = free_port();
    let _k = start_kamailio(&dir, kport);
    let t1000 = dir.join("t1000.wav");
    tone_wav(&t1000, 1000.0, 2);
    let t1500 = dir.join("t1500.wav");
    tone_wav(&t1500, 1500.0, 2);
    let t700 = dir.join("t700.wav");
    tone_wav_8k(&t700, 700.0, 60);
    let (bport, ctlport) = baresip_ports();
    let mut b = Baresip::start(
        &dir.join("baresip"),
        bport,
        ctlport,
        &t700,
        &format!("<sip:dave@127.0.0.1:{kport}>;auth_pass=dave-secret;regint=300;answermode=auto"),
    );
    b.wait_log("200 OK", 10);
    let arec = dir.join("alice.wav");
    let crec = dir.join("carol.wav");
    let mut a = spawn_registered(&dir, "alice", kport, &t1000, &arec);
    let mut c = spawn_registered(&dir, "carol", kport, &t1500, &crec);
    let c_uri = format!("sip:carol@127.0.0.1:{kport}");
    vaxel_transfers_baresip(&mut a, &mut b, &mut c, "dave", 1, "carol", &c_uri, 1, &crec);
    baresip_transfers_vaxel(
        &mut a,
        &mut b,
        &mut c,
        &format!("sip:alice@127.0.0.1:{kport}"),
        2,
        &c_uri,
        2,
        &arec,
        &crec,
    );
    for v in [&mut a, &mut c] {
        v.send("quit");
        v.event("unregistered", 10);
        assert_eq!(v.wait(10), 0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
