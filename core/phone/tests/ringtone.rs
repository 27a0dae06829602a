//! The ring tone: while a call comes in, the phone plays it on the chosen ringing device
//! (not the call's speaker), and stops when the call is answered or the caller gives up. Run in a private
//! PulseAudio daemon with two null sinks, Speaker (the default) and Bell (the ringing
//! device); the caller is a `vaxel run` CLI phone playing a file. The streams are seen
//! with `pactl list short sink-inputs` (which sink each playback stream runs on).

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::*;
use vaxel_audio::DeviceChoice;
use vaxel_phone::{Command, Event, Phone, PhoneConfig};
use vaxel_testkit::pulse::{PulseDaemon, in_child, pactl, pulseaudio_installed};

const SCRIPT: &str = "\
load-module module-null-sink sink_name=speaker rate=48000 channels=1 sink_properties=device.description=Speaker
load-module module-null-sink sink_name=bell rate=48000 channels=1 sink_properties=device.description=Bell
set-default-sink speaker
";

#[test]
fn ringtone_plays_on_the_ringing_device_until_answered_or_cancelled() {
    if !pulseaudio_installed() {
        vaxel_testkit::peers::skip_or_fail(
            "ringtone_plays_on_the_ringing_device_until_answered_or_cancelled",
            "pulseaudio",
        );
        return;
    }
    let daemon = PulseDaemon::start(SCRIPT).expect("start pulseaudio");
    daemon.run_child_test("child_ringtone");
}

/// The index of sink `name`.
fn sink_index(name: &str) -> String {
    let out = pactl(&["list", "short", "sinks"]).expect("pactl list sinks");
    out.lines()
        .find(|l| l.split('\t').nth(1) == Some(name))
        .and_then(|l| l.split('\t').next())
        .unwrap_or_else(|| panic!("no sink {name} in:\n{out}"))
        .to_string()
}

/// How many playback streams run on the sink with index `sink`.
fn streams_on(sink: &str) -> usize {
    let out = pactl(&["list", "short", "sink-inputs"]).expect("pactl list sink-inputs");
    out.lines()
        .filter(|l| l.split('\t').nth(1) == Some(sink))
        .count()
}

fn wait_until(what: &str, secs: u64, f: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
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

#[test]
#[ignore = "runs inside the test PulseAudio daemon, started by ringtone_plays_on_the_ringing_device_until_answered_or_cancelled"]
fn child_ringtone() {
    assert!(in_child());
    let (speaker, bell) = (sink_index("speaker"), sink_index("bell"));
    let dir = temp_dir("ringtone");
    let tone = dir.join("tone.wav");
    tone_wav(&tone, 1000.0, 2);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let port = free_port();
        let mut config = PhoneConfig::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
        config.sip_port = port;
        config.audio.ringing = DeviceChoice::Name("Bell".into());
        let (phone, mut events) = Phone::start(config).await.expect("phone starts");
        next_event(&mut events, "started", |e| {
            matches!(e, Event::Started { .. })
        })
        .await;

        let mut caller = Vaxel::spawn(
            "caller",
            &[
                "--profile",
                dir.join("caller").to_str().unwrap(),
                "--listen",
                &format!("127.0.0.1:{}", free_port()),
                "run",
                "--play",
                tone.to_str().unwrap(),
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
        // Ringing: a stream on Bell, none on the call's speaker.
        wait_until("the ring tone on Bell", 5, || streams_on(&bell) == 1);
        assert_eq!(streams_on(&speaker), 0, "nothing plays on the speaker yet");

        phone.send(Command::Answer {
            call: Some(call),
            media: Default::default(),
        });
        next_event(&mut events, "established", |e| {
            matches!(e, Event::Established { .. })
        })
        .await;
        // Answered: the ring tone is gone, the call plays on the speaker.
        wait_until("the ring tone to stop", 5, || streams_on(&bell) == 0);
        wait_until("the call on the speaker", 5, || streams_on(&speaker) == 1);

        phone.send(Command::Hangup { call: Some(call) });
        next_event(&mut events, "ended", |e| matches!(e, Event::Ended { .. })).await;
        caller.event("ended", 10);

        // A caller who gives up stops the ring tone too.
        caller.send(&format!("call sip:vaxel@127.0.0.1:{port}"));
        next_event(&mut events, "incoming", |e| {
            matches!(e, Event::Incoming { .. })
        })
        .await;
        wait_until("the second ring tone on Bell", 5, || streams_on(&bell) == 1);
        caller.send("hangup");
        next_event(&mut events, "ended", |e| matches!(e, Event::Ended { .. })).await;
        wait_until("the ring tone to stop after the cancel", 5, || {
            streams_on(&bell) == 0
        });
        caller.send("quit");
        caller.event("stopped", 10);
        phone.send(Command::Quit);
    });
    let _ = std::fs::remove_dir_all(&dir);
}
