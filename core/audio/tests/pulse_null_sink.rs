//! Audio-path tests against a private PulseAudio daemon with null sinks: a
//! tone and a click go out through vaxel-audio's playback stream and come back
//! through the sink's monitor source into its capture stream; devices come and
//! go while streams run (SPEC ).
//!
//! Each `#[test]` here starts its own daemon and runs its `child_*` twin in a
//! child process pointed at that daemon (cpal finds PulseAudio through the
//! environment). Without `pulseaudio` installed the tests print a skip line,
//! or fail when `VAXEL_REQUIRE_PEERS=1`.

mod support;

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use vaxel_audio::signal::{dbfs, first_above, tone, tone_present};
use vaxel_audio::{
    Audio, AudioConfig, AudioEvent, DeviceChoice, DeviceRole, Direction, FRAME_SAMPLES,
    FormatPolicy, HostChoice, MediaLoopOptions, MoveReason, PIPELINE_RATE, StreamOptions,
    run_media_loop,
};
use vaxel_testkit::pulse::{PulseDaemon, in_child, pactl, pulseaudio_installed};

const SINK: &str = "module-null-sink sink_name=vaxel_test rate=48000 channels=2 \
                    sink_properties=device.description=Vaxel_Test_Sink";

fn with_daemon(test: &str, script: &str, child: &str) {
    if !pulseaudio_installed() {
        vaxel_testkit::peers::skip_or_fail(test, "pulseaudio");
        return;
    }
    let daemon = PulseDaemon::start(script).expect("start pulseaudio");
    daemon.run_child_test(child);
}

fn start_audio(input: DeviceChoice, output: DeviceChoice) -> Audio {
    Audio::start(AudioConfig {
        host: HostChoice::PulseAudio,
        poll_interval: Duration::from_millis(100),
        input,
        output,
        ringing: DeviceChoice::SystemDefault,
    })
    .expect("cpal's PulseAudio host reaches the test daemon")
}

// ---------------------------------------------------------------------------
// Tone and click round trip

#[test]
fn null_sink_tone_and_click_round_trip() {
    with_daemon(
        "null_sink_tone_and_click_round_trip",
        &format!(
            "load-module {SINK}\nset-default-sink vaxel_test\nset-default-source vaxel_test.monitor"
        ),
        "child_tone_and_click_pipeline_format",
    );
}

#[test]
#[ignore = "runs inside the test PulseAudio daemon, started by null_sink_tone_and_click_round_trip"]
fn child_tone_and_click_pipeline_format() {
    assert!(in_child());
    tone_and_click("pulseaudio:vaxel_test", FormatPolicy::Pipeline);
}

#[test]
fn null_sink_44k1_stereo_s16_converted_on_our_side() {
    with_daemon(
        "null_sink_44k1_stereo_s16_converted_on_our_side",
        "load-module module-null-sink sink_name=vaxel_cd rate=44100 channels=2 format=s16le \
         sink_properties=device.description=Vaxel_CD_Sink\n\
         set-default-sink vaxel_cd\nset-default-source vaxel_cd.monitor",
        "child_tone_and_click_device_native_format",
    );
}

#[test]
#[ignore = "runs inside the test PulseAudio daemon, started by null_sink_44k1_stereo_s16_converted_on_our_side"]
fn child_tone_and_click_device_native_format() {
    assert!(in_child());
    tone_and_click("pulseaudio:vaxel_cd", FormatPolicy::DeviceNative);
}

fn tone_and_click(sink_id: &str, policy: FormatPolicy) {
    let monitor = format!("{sink_id}.monitor");
    let audio = start_audio(
        DeviceChoice::Id(monitor.clone()),
        DeviceChoice::Id(sink_id.into()),
    );
    println!("host: {}", audio.host_name());
    let devices = audio.devices().unwrap();
    for d in &devices {
        println!(
            "  {:?} {} {:?} default={} native={:?}",
            d.direction, d.id, d.name, d.is_default, d.native
        );
    }
    assert!(
        devices
            .iter()
            .any(|d| d.id == sink_id && d.direction == Direction::Output)
    );
    assert!(
        devices
            .iter()
            .any(|d| d.id == monitor && d.direction == Direction::Input && d.is_monitor())
    );

    let options = StreamOptions {
        format: policy,
        ..StreamOptions::default()
    };
    let mut mic = audio.open_capture(options).unwrap();
    let mut speaker = audio.open_playback(DeviceRole::Output, options).unwrap();

    // 1. A 1 kHz tone for 1.5 s through the media loop.
    let sine = tone(1000.0, 0.3, PIPELINE_RATE as usize * 2, PIPELINE_RATE);
    let mut captured = Vec::new();
    let mut k = 0;
    let report = run_media_loop(
        &mut mic,
        &mut speaker,
        MediaLoopOptions::default(),
        |input, output| {
            captured.extend_from_slice(input);
            output.copy_from_slice(&sine[k * FRAME_SAMPLES..(k + 1) * FRAME_SAMPLES]);
            k += 1;
            if k == 150 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    );
    println!(
        "device formats: playback {:?}, capture {:?}",
        speaker.device_format(),
        mic.device_format()
    );
    println!("tone loop: {report:?}");
    let tail = &captured[captured.len() - PIPELINE_RATE as usize / 2..];
    println!("captured tail: {:.1} dBFS", dbfs(tail));
    assert!(
        tone_present(tail, 1000.0, PIPELINE_RATE, 20.0),
        "no 1 kHz in the captured audio"
    );
    assert!(
        dbfs(tail) > -20.0,
        "tone came back at {:.1} dBFS",
        dbfs(tail)
    );
    assert!(report.capture.callbacks > 0 && report.playback.callbacks > 0);
    if policy == FormatPolicy::DeviceNative {
        let f = speaker.device_format().unwrap();
        assert_eq!(
            (f.rate, f.channels),
            (44_100, 2),
            "the stream should run in the sink's own format"
        );
        assert!(speaker.resampler_delay_ms() > 0.0 && mic.resampler_delay_ms() > 0.0);
    }

    // 2. Clicks: write a 2 ms burst right after reading a capture frame, and
    //    see how many samples later it comes back.
    let mut input = [0.0f32; FRAME_SAMPLES];
    let mut output = [0.0f32; FRAME_SAMPLES];
    let mut read = 0usize;
    let mut next_click = 50;
    let mut pending: Option<Parts> = None;
    let mut results: Vec<(f64, Parts)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while results.len() < 7 && Instant::now() < deadline {
        if !mic.read_frame(&mut input) {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        if let Some(p) = &pending
            && let Some(pos) = first_above(&input, 0.3)
        {
            let round_trip = (read * FRAME_SAMPLES + pos) as f64 - p.sent_at as f64;
            results.push((round_trip * 1000.0 / PIPELINE_RATE as f64, p.clone()));
            pending = None;
            next_click = read + 30;
        }
        read += 1;
        output.fill(0.0);
        if pending.is_none() && read == next_click {
            output[..96].fill(0.9);
            let capture_backlog_ms = mic.queued_ms();
            speaker.write_frame(&output);
            pending = Some(Parts {
                sent_at: read * FRAME_SAMPLES,
                capture_backlog_ms,
                playback_queue_ms: speaker.queued_ms() - 10.0,
                host_playback_ms: speaker.stats().host_latency_ms,
                host_capture_ms: mic.stats().host_latency_ms,
                resamplers_ms: speaker.resampler_delay_ms() + mic.resampler_delay_ms(),
            });
        } else {
            speaker.write_frame(&output);
        }
    }
    assert!(
        results.len() >= 5,
        "only {} of the clicks came back",
        results.len()
    );
    // The first click can still see start-up buffering; judge the rest.
    results.remove(0);
    results.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (rt, p) = results[results.len() / 2].clone();
    let explained = p.capture_backlog_ms
        + p.playback_queue_ms
        + p.host_playback_ms
        + p.host_capture_ms
        + p.resamplers_ms;
    println!(
        "click round trip through the null sink ({policy:?}): median {rt:.1} ms of {} clicks \
         (min {:.1}, max {:.1})",
        results.len(),
        results[0].0,
        results[results.len() - 1].0
    );
    println!(
        "  capture backlog when sent (already captured, not yet read) {:6.1} ms",
        p.capture_backlog_ms
    );
    println!(
        "  our playback ring ahead of the click                        {:6.1} ms",
        p.playback_queue_ms
    );
    println!(
        "  PulseAudio playback latency (server + sink)                 {:6.1} ms",
        p.host_playback_ms
    );
    println!(
        "  PulseAudio capture latency (monitor source + server)        {:6.1} ms",
        p.host_capture_ms
    );
    println!(
        "  our resamplers (both directions)                            {:6.1} ms",
        p.resamplers_ms
    );
    println!(
        "  not accounted for (callback/frame granularity, null sink)   {:6.1} ms",
        rt - explained
    );
    println!("playback {:?}", speaker.stats());
    println!("capture  {:?}", mic.stats());
    assert!(rt > 0.0 && rt < 1000.0, "implausible round trip {rt} ms");
}

#[derive(Debug, Clone)]
struct Parts {
    sent_at: usize,
    capture_backlog_ms: f64,
    playback_queue_ms: f64,
    host_playback_ms: f64,
    host_capture_ms: f64,
    resamplers_ms: f64,
}

// ---------------------------------------------------------------------------
// Hot-plug: fallback, return of the chosen device, following the default

#[test]
fn hot_plug_fallback_return_and_default_following() {
    with_daemon(
        "hot_plug_fallback_return_and_default_following",
        &format!(
            "load-module {SINK}\n\
             load-module module-null-sink sink_name=vaxel_other sink_properties=device.description=Other\n\
             set-default-sink vaxel_test\nset-default-source vaxel_test.monitor"
        ),
        "child_hot_plug",
    );
}

fn wait_for(
    events: &Receiver<AudioEvent>,
    what: &str,
    mut matches: impl FnMut(&AudioEvent) -> bool,
) -> AudioEvent {
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match events.recv_timeout(left) {
            Ok(e) => {
                println!("  event: {}", describe(&e));
                if matches(&e) {
                    return e;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no event: {what}");
}

type Expect<'a> = (&'a str, Box<dyn Fn(&AudioEvent) -> bool + 'a>);

/// Waits until every expectation has been met by some event, in any order
/// (a device's removal and the stream's fallback race each other).
fn wait_all(events: &Receiver<AudioEvent>, mut expect: Vec<Expect<'_>>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !expect.is_empty() {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        let Ok(e) = events.recv_timeout(left) else {
            break;
        };
        println!("  event: {}", describe(&e));
        expect.retain(|(_, m)| !m(&e));
    }
    let missing: Vec<&str> = expect.iter().map(|(w, _)| *w).collect();
    assert!(missing.is_empty(), "no event: {missing:?}");
}

fn describe(e: &AudioEvent) -> String {
    match e {
        AudioEvent::DeviceAdded(d) => format!("DeviceAdded {} ({:?})", d.id, d.direction),
        AudioEvent::DeviceRemoved(d) => format!("DeviceRemoved {} ({:?})", d.id, d.direction),
        AudioEvent::DefaultChanged { direction, device } => {
            format!(
                "DefaultChanged {direction} → {:?}",
                device.as_ref().map(|d| &d.id)
            )
        }
        AudioEvent::StreamMoved {
            role,
            from,
            to,
            reason,
        } => format!(
            "StreamMoved {role}: {:?} → {} ({reason:?}){}",
            from.as_ref().map(|d| &d.id),
            to.id,
            e.user_notice()
                .map(|n| format!(" — \"{n}\""))
                .unwrap_or_default()
        ),
        other => format!("{other:?}"),
    }
}

fn moved(e: &AudioEvent, role: DeviceRole, to: &str, reason: MoveReason) -> bool {
    matches!(e, AudioEvent::StreamMoved { role: r, to: t, reason: why, .. }
        if *r == role && t.id == to && *why == reason)
}

#[test]
#[ignore = "runs inside the test PulseAudio daemon, started by hot_plug_fallback_return_and_default_following"]
fn child_hot_plug() {
    assert!(in_child());
    // The user chose a headset that is not plugged in yet, for both directions.
    let audio = start_audio(
        DeviceChoice::Id("pulseaudio:headset.monitor".into()),
        DeviceChoice::Name("Headset".into()),
    );
    let events = audio.subscribe();
    let options = StreamOptions::default();
    let mut speaker = audio.open_playback(DeviceRole::Output, options).unwrap();
    let mut mic = audio.open_capture(options).unwrap();
    wait_for(&events, "output runs on the default meanwhile", |e| {
        moved(
            e,
            DeviceRole::Output,
            "pulseaudio:vaxel_test",
            MoveReason::ChosenDeviceMissing,
        )
    });
    assert!(speaker.is_attached());
    assert_eq!(speaker.device().unwrap().id, "pulseaudio:vaxel_test");
    // Ringing follows the system default.
    let ringer = audio.open_playback(DeviceRole::Ringing, options).unwrap();

    // A media loop runs all along on its own thread: a tone out, capture in.
    let stop_media = Arc::new(AtomicBool::new(false));
    let stop_flag = stop_media.clone();
    let media = std::thread::spawn(move || {
        let sine = tone(1000.0, 0.3, PIPELINE_RATE as usize, PIPELINE_RATE);
        let mut k = 0usize;
        let mut last = Vec::new();
        let give_up = Instant::now() + Duration::from_secs(60);
        let mut stop_at: Option<Instant> = None;
        let report = run_media_loop(
            &mut mic,
            &mut speaker,
            MediaLoopOptions::default(),
            |input, output| {
                let at = (k % 100) * FRAME_SAMPLES;
                output.copy_from_slice(&sine[at..at + FRAME_SAMPLES]);
                k += 1;
                last.extend_from_slice(input);
                if last.len() > PIPELINE_RATE as usize / 2 {
                    last.drain(..FRAME_SAMPLES);
                }
                // Once told to stop, run on until the tone is heard through the
                // returned headset (a freshly loaded sink's monitor takes a moment
                // to start), or for 10 s at most.
                if stop_flag.load(Ordering::Relaxed) {
                    let at = *stop_at.get_or_insert_with(Instant::now);
                    let heard = last.len() >= 4_800
                        && tone_present(&last[last.len() - 4_800..], 1000.0, PIPELINE_RATE, 20.0);
                    if heard || at.elapsed() > Duration::from_secs(10) {
                        return ControlFlow::Break(());
                    }
                }
                if Instant::now() > give_up {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        );
        (
            report,
            last,
            mic.device().map(|d| d.id.clone()),
            speaker.device().map(|d| d.id.clone()),
        )
    });

    // 1. The headset is plugged in: both streams move to it.
    let module = pactl(&[
        "load-module",
        "module-null-sink",
        "sink_name=headset",
        "sink_properties=device.description=Headset",
    ])
    .unwrap();
    let module = module.trim().to_owned();
    wait_all(
        &events,
        vec![
            (
                "headset added",
                Box::new(
                    |e| matches!(e, AudioEvent::DeviceAdded(d) if d.id == "pulseaudio:headset"),
                ),
            ),
            (
                "output returns to the chosen headset",
                Box::new(|e| {
                    moved(
                        e,
                        DeviceRole::Output,
                        "pulseaudio:headset",
                        MoveReason::ChosenDeviceReturned,
                    )
                }),
            ),
            (
                "input returns to the chosen headset monitor",
                Box::new(|e| {
                    moved(
                        e,
                        DeviceRole::Input,
                        "pulseaudio:headset.monitor",
                        MoveReason::ChosenDeviceReturned,
                    )
                }),
            ),
        ],
    );

    // 2. It is unplugged mid-stream: both fall back to the default, and the user is told.
    pactl(&["unload-module", &module]).unwrap();
    wait_all(
        &events,
        vec![
            (
                "output falls back to the default, telling the user",
                Box::new(|e| {
                    moved(
                        e,
                        DeviceRole::Output,
                        "pulseaudio:vaxel_test",
                        MoveReason::DeviceLost,
                    ) && e.user_notice().is_some_and(|n| n.contains("Headset"))
                }),
            ),
            (
                "input falls back to the default",
                Box::new(|e| {
                    moved(
                        e,
                        DeviceRole::Input,
                        "pulseaudio:vaxel_test.monitor",
                        MoveReason::DeviceLost,
                    )
                }),
            ),
            (
                "headset removed",
                Box::new(
                    |e| matches!(e, AudioEvent::DeviceRemoved(d) if d.id == "pulseaudio:headset"),
                ),
            ),
        ],
    );

    // 3. The default changes: the ringing stream (system default) follows it.
    pactl(&["set-default-sink", "vaxel_other"]).unwrap();
    wait_all(
        &events,
        vec![
            (
                "default output changed",
                Box::new(|e| {
                    matches!(e, AudioEvent::DefaultChanged { direction: Direction::Output, device: Some(d) }
                        if d.id == "pulseaudio:vaxel_other")
                }),
            ),
            (
                "ringing follows the default",
                Box::new(|e| {
                    moved(
                        e,
                        DeviceRole::Ringing,
                        "pulseaudio:vaxel_other",
                        MoveReason::FollowedDefault,
                    )
                }),
            ),
        ],
    );

    // 4. The headset comes back: calls return to it.
    pactl(&[
        "load-module",
        "module-null-sink",
        "sink_name=headset",
        "sink_properties=device.description=Headset",
    ])
    .unwrap();
    wait_all(
        &events,
        vec![
            (
                "output returns to the headset again",
                Box::new(|e| {
                    moved(
                        e,
                        DeviceRole::Output,
                        "pulseaudio:headset",
                        MoveReason::ChosenDeviceReturned,
                    )
                }),
            ),
            (
                "input returns to the headset monitor",
                Box::new(|e| {
                    moved(
                        e,
                        DeviceRole::Input,
                        "pulseaudio:headset.monitor",
                        MoveReason::ChosenDeviceReturned,
                    )
                }),
            ),
        ],
    );
    // Audio must flow through the headset now; the media loop stops once it hears the tone.
    stop_media.store(true, Ordering::Relaxed);
    let (report, last, mic_dev, speaker_dev) = media.join().unwrap();
    println!("media loop through the moves: {report:?}");
    assert_eq!(mic_dev.as_deref(), Some("pulseaudio:headset.monitor"));
    assert_eq!(speaker_dev.as_deref(), Some("pulseaudio:headset"));
    assert!(
        tone_present(&last[last.len() - 4_800..], 1000.0, PIPELINE_RATE, 20.0),
        "the tone does not come back through the returned headset"
    );
    assert!(
        report.playback.restarts >= 3,
        "playback moved {} times",
        report.playback.restarts
    );
    drop(ringer);
}
