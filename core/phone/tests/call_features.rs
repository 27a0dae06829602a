//! In-call features between `vaxel run` phones calling each other directly on loopback
//! (no server), each checked on the far side:
//!
//! - reject: `busy` gives the caller 486 and `decline` 603, recorded as declined;
//! - mute: while a is muted, b's recording of a's tone has a silent stretch as long as the
//!   mute, with the tone before and after;
//! - DTMF by SIP INFO (`info`), both ways: the digits arrive as `dtmf` events `via: info`;
//! - call waiting and swapping: a talks to b, c calls a (a second incoming call while in a
//!   call), a holds b and answers c, then swaps back (holds c, resumes b); c's recording
//!   has a's voice, b's has it again at the end, the held sides see `held`/`resumed`;
//! - a local three-party conference: a talks to b, holds b, consults c, then `merge`s:
//!   b is resumed, and b's recording has c's tone as well as a's, c's has b's and a's
//!   (the far ends hear each other through a's mixer); when c hangs up the conference
//!   ends and a and b still talk.
//!
//! (Cancel before answer is in `cli_direct`; early media and a failed attended transfer
//! in `sipp_edge`.)

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

fn phone(dir: &Path, name: &str, port: u16, play: &Path) -> Vaxel {
    let profile = dir.join(name);
    let rec = dir.join(format!("{name}.wav"));
    let mut v = Vaxel::spawn(
        name,
        &[
            "--profile",
            profile.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "run",
            "--play",
            play.to_str().unwrap(),
            "--record",
            rec.to_str().unwrap(),
        ],
        &[],
    );
    v.event("started", 10);
    v
}

/// A WAV of `secs` seconds of silence (a phone that says nothing).
fn silent_wav(path: &Path, secs: usize) {
    let mut rec =
        vaxel_media::wav::WavRecorder::new(std::fs::File::create(path).unwrap(), 16_000).unwrap();
    rec.write(&vec![0i16; 16_000 * secs]).unwrap();
    rec.finish().unwrap();
}

/// Energy per 100 ms block of a 16 kHz recording, and whether each block is loud.
fn loud_blocks(path: &Path) -> Vec<bool> {
    let p = vaxel_media::wav::Prompt::from_wav(std::fs::File::open(path).unwrap(), 16_000).unwrap();
    p.samples()
        .chunks(1600)
        .filter(|c| c.len() == 1600)
        .map(|c| {
            let rms = (c.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>() / 1600.0).sqrt();
            rms > 1000.0
        })
        .collect()
}

/// The longest run of quiet blocks that has loud blocks before and after it.
fn longest_inner_gap(blocks: &[bool]) -> usize {
    let (Some(first), Some(last)) = (
        blocks.iter().position(|&l| l),
        blocks.iter().rposition(|&l| l),
    ) else {
        return 0;
    };
    blocks[first..=last]
        .split(|&l| l)
        .map(<[bool]>::len)
        .max()
        .unwrap_or(0)
}

#[test]
fn busy_and_decline_reach_the_caller() {
    let dir = temp_dir("reject");
    let tone = dir.join("tone.wav");
    tone_wav(&tone, 1000.0, 1);
    let (pa, pb) = (free_port(), free_port());
    let mut a = phone(&dir, "a", pa, &tone);
    let mut b = phone(&dir, "b", pb, &tone);
    for (n, (verb, code)) in [("busy", 486), ("decline", 603)].into_iter().enumerate() {
        let call = n as u64 + 1;
        a.send(&format!("call sip:b@127.0.0.1:{pb}"));
        let inc = b.expect_new("incoming", 10, |v| v["event"] == "incoming");
        b.send(&format!("{verb} {}", inc["call"]));
        let end = a.expect_new("rejected", 10, |v| v["event"] == "ended");
        assert_eq!(end["call"], call);
        assert_eq!(end["cause"], "rejected");
        assert_eq!(end["status"], code);
        let end = b.expect_new("rejected here", 10, |v| v["event"] == "ended");
        assert_eq!(end["cause"], "local_rejected");
        assert_eq!(end["status"], code);
    }
    b.send("history");
    let h = b.event("history", 5);
    for c in h["calls"].as_array().unwrap() {
        assert_eq!(c["outcome"], "declined", "{c}");
    }
    a.send("history");
    let h = a.event("history", 5);
    assert_eq!(h["calls"][0]["cause"], "rejected 603");
    assert_eq!(h["calls"][1]["cause"], "rejected 486");
    for v in [&mut a, &mut b] {
        v.send("quit");
        assert_eq!(v.wait(10), 0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mute_silences_what_the_far_end_hears() {
    let dir = temp_dir("mute");
    let tone = dir.join("tone.wav");
    tone_wav(&tone, 1000.0, 2);
    let quiet = dir.join("quiet.wav");
    silent_wav(&quiet, 1);
    let (pa, pb) = (free_port(), free_port());
    let mut a = phone(&dir, "a", pa, &tone);
    let mut b = phone(&dir, "b", pb, &quiet);
    a.send(&format!("call sip:b@127.0.0.1:{pb}"));
    let inc = b.event("incoming", 10);
    b.send(&format!("answer {}", inc["call"]));
    a.event("established", 10);
    std::thread::sleep(Duration::from_millis(1500));
    a.send("mute");
    assert_eq!(a.event("muted", 5)["muted"], true);
    std::thread::sleep(Duration::from_millis(2000));
    a.send("unmute");
    a.expect("unmuted", 5, |v| {
        v["event"] == "muted" && v["muted"] == false
    });
    std::thread::sleep(Duration::from_millis(1500));
    a.send("hangup");
    b.event("ended", 10);
    std::thread::sleep(Duration::from_millis(300));
    let blocks = loud_blocks(&dir.join("b.wav"));
    let gap = longest_inner_gap(&blocks);
    // 2 s muted: 20 blocks of 100 ms, give or take the command's way to the media thread.
    assert!(
        (15..=25).contains(&gap),
        "silent for {gap} blocks: {blocks:?}"
    );
    let loud = blocks.iter().filter(|&&l| l).count();
    assert!(
        loud >= 20,
        "the tone before and after the mute: {loud} loud blocks"
    );
    for v in [&mut a, &mut b] {
        v.send("quit");
        assert_eq!(v.wait(10), 0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dtmf_by_sip_info_both_ways() {
    let dir = temp_dir("info");
    let tone = dir.join("tone.wav");
    tone_wav(&tone, 1000.0, 1);
    let (pa, pb) = (free_port(), free_port());
    let mut a = phone(&dir, "a", pa, &tone);
    let mut b = phone(&dir, "b", pb, &tone);
    a.send(&format!("call sip:b@127.0.0.1:{pb}"));
    let inc = b.event("incoming", 10);
    b.send(&format!("answer {}", inc["call"]));
    a.event("established", 10);
    a.send("info 1 19*#");
    b.expect("# from a", 10, |v| {
        v["event"] == "dtmf" && v["digit"] == "#"
    });
    assert_eq!(b.digits(), "19*#");
    assert!(
        b.seen
            .iter()
            .filter(|v| v["event"] == "dtmf")
            .all(|v| v["via"] == "info"),
        "{:?}",
        b.seen
    );
    b.send(r#"{"cmd":"dtmf","digits":"07","method":"info"}"#);
    a.expect("7 from b", 10, |v| {
        v["event"] == "dtmf" && v["digit"] == "7"
    });
    assert_eq!(a.digits(), "07");
    assert!(
        a.seen
            .iter()
            .filter(|v| v["event"] == "dtmf")
            .all(|v| v["via"] == "info")
    );
    a.send("hangup");
    b.event("ended", 10);
    for v in [&mut a, &mut b] {
        v.send("quit");
        assert_eq!(v.wait(10), 0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn call_waiting_and_swapping_between_two_calls() {
    let dir = temp_dir("waiting");
    let t500 = dir.join("t500.wav");
    tone_wav(&t500, 500.0, 2);
    let quiet = dir.join("quiet.wav");
    silent_wav(&quiet, 1);
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let mut a = phone(&dir, "a", pa, &t500);
    let mut b = phone(&dir, "b", pb, &quiet);
    let mut c = phone(&dir, "c", pc, &quiet);

    // a talks to b.
    a.send(&format!("call sip:b@127.0.0.1:{pb}"));
    let inc = b.event("incoming", 10);
    b.send(&format!("answer {}", inc["call"]));
    a.expect("a-b up", 10, |v| {
        v["event"] == "established" && v["call"] == 1
    });
    std::thread::sleep(Duration::from_millis(1000));

    // c calls a while a is in the call: a second incoming call.
    c.send(&format!("call sip:a@127.0.0.1:{pa}"));
    let waiting = a.event("incoming", 10);
    assert_eq!(waiting["call"], 2);
    a.send("snapshot");
    let snap = a.event("snapshot", 5);
    assert_eq!(snap["calls"][0]["state"], "established");
    assert_eq!(snap["calls"][1]["state"], "ringing");

    // a holds b and answers c.
    a.send("hold 1");
    b.expect("b held", 10, |v| {
        v["event"] == "held" && v["by"] == "remote"
    });
    a.send("answer 2");
    c.event("established", 10);
    a.expect("a-c up", 10, |v| {
        v["event"] == "established" && v["call"] == 2
    });
    std::thread::sleep(Duration::from_millis(1500));

    // Swap: hold c, resume b.
    a.send("hold 2");
    c.expect("c held", 10, |v| {
        v["event"] == "held" && v["by"] == "remote"
    });
    a.send("resume 1");
    b.expect("b resumed", 10, |v| {
        v["event"] == "resumed" && v["by"] == "remote"
    });
    a.expect("a resumed b", 10, |v| {
        v["event"] == "resumed" && v["call"] == 1 && v["by"] == "local"
    });
    std::thread::sleep(Duration::from_millis(1500));
    a.send("snapshot");
    let snap = a.expect_new("snapshot", 5, |v| v["event"] == "snapshot");
    assert_eq!(snap["calls"][0]["held"], false, "{snap}");
    assert_eq!(snap["calls"][1]["held"], true, "{snap}");

    a.send("hangup 1");
    a.send("hangup 2");
    b.event("ended", 10);
    c.event("ended", 10);
    std::thread::sleep(Duration::from_millis(300));

    // c heard a while a talked to c; b heard a again after the swap, at the end.
    let freqs = [500.0, 700.0, 1000.0];
    let (f, share) = dominant(&dir.join("c.wav"), &freqs);
    assert_eq!(f, 500.0, "c hears a ({share:.2})");
    assert!(share > 0.5, "{share}");
    let blocks = loud_blocks(&dir.join("b.wav"));
    let tail = &blocks[blocks.len().saturating_sub(10)..];
    assert!(
        tail.iter().filter(|&&l| l).count() >= 5,
        "b hears a after the swap: {blocks:?}"
    );
    for v in [&mut a, &mut b, &mut c] {
        v.send("quit");
        assert_eq!(v.wait(10), 0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Share of each of `freqs` in each full second of a 16 kHz recording (1.0: all the
/// energy of a pure tone at that frequency).
fn shares_per_second(path: &Path, freqs: &[f64]) -> Vec<Vec<f64>> {
    let p = vaxel_media::wav::Prompt::from_wav(std::fs::File::open(path).unwrap(), 16_000).unwrap();
    p.samples()
        .chunks(16_000)
        .filter(|c| c.len() == 16_000)
        .map(|chunk| {
            let energy = chunk.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>() / 16_000.0;
            freqs
                .iter()
                .map(|&f| {
                    2.0 * vaxel_media::dsp::goertzel_power(chunk, 16_000, f) / energy.max(1.0)
                })
                .collect()
        })
        .collect()
}

#[test]
fn merge_makes_a_local_three_party_conference() {
    let dir = temp_dir("merge");
    let (t500, t700, t1000) = (
        dir.join("t500.wav"),
        dir.join("t700.wav"),
        dir.join("t1000.wav"),
    );
    tone_wav(&t500, 500.0, 2);
    tone_wav(&t700, 700.0, 2);
    tone_wav(&t1000, 1000.0, 2);
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let mut a = phone(&dir, "a", pa, &t500);
    let mut b = phone(&dir, "b", pb, &t700);
    let mut c = phone(&dir, "c", pc, &t1000);

    // a talks to b, holds b and consults c: the announced-transfer start.
    a.send(&format!("call sip:b@127.0.0.1:{pb}"));
    let inc = b.event("incoming", 10);
    b.send(&format!("answer {}", inc["call"]));
    a.expect("a-b up", 10, |v| {
        v["event"] == "established" && v["call"] == 1
    });
    a.send("hold 1");
    b.expect("b held", 10, |v| {
        v["event"] == "held" && v["by"] == "remote"
    });
    a.send(&format!("call sip:c@127.0.0.1:{pc}"));
    let inc = c.event("incoming", 10);
    c.send(&format!("answer {}", inc["call"]));
    a.expect("a-c up", 10, |v| {
        v["event"] == "established" && v["call"] == 2
    });

    // Merge: b comes back from hold and everyone hears everyone.
    a.send("merge");
    let conf = a.event("conference", 5);
    assert_eq!(conf["calls"], serde_json::json!([1, 2]), "{conf}");
    b.expect("b resumed", 10, |v| {
        v["event"] == "resumed" && v["by"] == "remote"
    });
    std::thread::sleep(Duration::from_millis(2500));

    // c leaves: the conference ends, a and b go on.
    c.send("hangup");
    a.expect("c gone", 10, |v| v["event"] == "ended" && v["call"] == 2);
    let conf = a.expect_new("conference over", 5, |v| v["event"] == "conference");
    assert_eq!(conf["calls"], serde_json::json!([]), "{conf}");
    a.send("merge");
    a.expect("one call cannot merge", 5, |v| {
        v["event"] == "error" && v["message"].as_str().unwrap_or("").contains("merge")
    });
    std::thread::sleep(Duration::from_millis(2000));
    a.send("hangup 1");
    b.event("ended", 10);
    for v in [&mut a, &mut b, &mut c] {
        v.send("quit");
        assert_eq!(v.wait(10), 0);
    }

    let freqs = [500.0, 700.0, 1000.0];
    // c's last second was in the conference: a's and b's tones, about half each.
    let hc = shares_per_second(&dir.join("c.wav"), &freqs);
    let last = hc.last().expect("c recorded");
    assert!(
        last[0] > 0.2 && last[1] > 0.2 && last[2] < 0.05,
        "c hears a and b: {hc:?}"
    );
    // b heard c (only possible through a's mixer) and a; never itself; only a at the end.
    let hb = shares_per_second(&dir.join("b.wav"), &freqs);
    assert!(
        hb.iter().any(|s| s[0] > 0.2 && s[2] > 0.2 && s[1] < 0.05),
        "b hears a and c in the conference: {hb:?}"
    );
    let last = hb.last().expect("b recorded");
    assert!(
        last[0] > 0.5 && last[2] < 0.05,
        "b hears only a at the end: {hb:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
