//! Echo cancellation on a call with sound devices (`PhoneConfig::echo_cancellation`, the
//! desktop's settings switch): in a private PulseAudio whose microphone is the speaker's
//! monitor — every sound the phone plays comes straight back into its microphone, the
//! worst echo there is — a `vaxel run` caller plays noise and records what it hears back.
//! With echo cancellation off it hears its own noise at full level; with it on, far less.
//!
//! Needs vaxel-audio's `aec` feature (as `npm test` builds it:
//! `cargo test -p vaxel-phone --features vaxel-audio/aec --test echo`); without it the
//! test says so and skips.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use common::*;
use vaxel_phone::{Command, Event, Phone, PhoneConfig};
use vaxel_testkit::pulse::{PulseDaemon, in_child, pulseaudio_installed};

const SCRIPT: &str = "\
load-module module-null-sink sink_name=speaker rate=48000 channels=1
set-default-sink speaker
set-default-source speaker.monitor
";

#[test]
fn echo_cancellation_removes_the_speakers_echo_from_the_microphone() {
    if !vaxel_audio::CallEcho::AVAILABLE {
        println!(
            "SKIP: built without vaxel-audio's `aec` feature (add --features vaxel-audio/aec)"
        );
        return;
    }
    if !pulseaudio_installed() {
        vaxel_testkit::peers::skip_or_fail(
            "echo_cancellation_removes_the_speakers_echo_from_the_microphone",
            "pulseaudio",
        );
        return;
    }
    let daemon = PulseDaemon::start(SCRIPT).expect("start pulseaudio");
    daemon.run_child_test("child_echo");
}

/// 16 kHz noise at about −20 dBFS (a simple LCG: the same file every run).
fn noise_wav(path: &Path, secs: usize) {
    let mut rec =
        vaxel_media::wav::WavRecorder::new(std::fs::File::create(path).unwrap(), 16_000).unwrap();
    let mut x: u32 = 12345;
    let samples: Vec<i16> = (0..16_000 * secs)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((x >> 16) as i16) / 6
        })
        .collect();
    rec.write(&samples).unwrap();
    rec.finish().unwrap();
}

/// RMS of the last `secs` seconds of a 16 kHz recording, dBFS.
fn tail_dbfs(path: &Path, secs: usize) -> f64 {
    let p = vaxel_media::wav::Prompt::from_wav(std::fs::File::open(path).unwrap(), 16_000).unwrap();
    let s = p.samples();
    let tail = &s[s.len().saturating_sub(16_000 * secs)..];
    let ms = tail.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / tail.len().max(1) as f64;
    10.0 * (ms.max(1e-3) / (32768.0f64 * 32768.0)).log10()
}

async fn next_event(
    events: &mut vaxel_phone::PhoneEvents,
    what: &str,
    f: impl Fn(&Event) -> bool,
) -> Event {
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(end, events.recv()).await {
            Ok(Some(e)) if f(&e) => return e,
            Ok(Some(_)) => {}
            _ => panic!("no {what} event"),
        }
    }
}

/// One call: the caller plays noise for 8 s; returns the level of what it heard back in
/// the last 3 s (after the canceller has converged).
async fn echo_level(dir: &Path, cancel: bool) -> f64 {
    let port = free_port();
    let mut config = PhoneConfig::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    config.sip_port = port;
    config.echo_cancellation = cancel;
    let (phone, mut events) = Phone::start(config).await.expect("phone starts");
    next_event(&mut events, "started", |e| {
        matches!(e, Event::Started { .. })
    })
    .await;
    let name = if cancel { "on" } else { "off" };
    let heard = dir.join(format!("heard-{name}.wav"));
    let mut caller = Vaxel::spawn(
        &format!("caller-{name}"),
        &[
            "--profile",
            dir.join(format!("caller-{name}")).to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "run",
            "--play",
            dir.join("noise.wav").to_str().unwrap(),
            "--record",
            heard.to_str().unwrap(),
        ],
        &[],
    );
    caller.event("started", 10);
    caller.send(&format!("call sip:vaxel@127.0.0.1:{port}"));
    let Event::Incoming { call, .. } = next_event(&mut events, "incoming", |e| {
        matches!(e, Event::Incoming { .. })
    })
    .await
    else {
        unreachable!()
    };
    phone.send(Command::Answer {
        call: Some(call),
        media: Default::default(),
    });
    next_event(&mut events, "established", |e| {
        matches!(e, Event::Established { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    caller.send("hangup");
    caller.event("ended", 10);
    caller.send("quit");
    caller.event("stopped", 10);
    phone.send(Command::Quit);
    tail_dbfs(&heard, 3)
}

#[test]
#[ignore = "runs inside the test PulseAudio daemon, started by echo_cancellation_removes_the_speakers_echo_from_the_microphone"]
fn child_echo() {
    assert!(in_child());
    let dir = temp_dir("echo");
    noise_wav(&dir.join("noise.wav"), 10);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (off, on) =
        rt.block_on(async { (echo_level(&dir, false).await, echo_level(&dir, true).await) });
    println!("echo heard back by the caller: off {off:.1} dBFS, on {on:.1} dBFS");
    assert!(
        off > -35.0,
        "without cancellation the echo is loud: {off:.1} dBFS"
    );
    assert!(
        off - on >= 15.0,
        "echo cancellation takes at least 15 dB off: off {off:.1}, on {on:.1} dBFS"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
