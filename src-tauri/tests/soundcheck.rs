//! The settings' sound checks on a real sound server: a private PulseAudio whose default
//! microphone is the speaker's monitor, so the microphone test hears the test tone.
//! Before the tone the level is silence; while it plays the meter shows it near −15 dBFS
//! (a −12 dBFS peak sine); the tone plays on the speaker as a stream of its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vaxel_audio::{AudioConfig, DeviceRole};
use vaxel_desktop::soundcheck::{mic_levels, play_tone};
use vaxel_testkit::pulse::{PulseDaemon, in_child, pactl, pulseaudio_installed};

const SCRIPT: &str = "\
load-module module-null-sink sink_name=speaker rate=48000 channels=1
set-default-sink speaker
set-default-source speaker.monitor
";

#[test]
fn the_microphone_test_hears_the_test_tone() {
    if !pulseaudio_installed() {
        vaxel_testkit::peers::skip_or_fail("the_microphone_test_hears_the_test_tone", "pulseaudio");
        return;
    }
    let daemon = PulseDaemon::start(SCRIPT).expect("start pulseaudio");
    daemon.run_child_test("child_soundcheck");
}

#[test]
#[ignore = "runs inside the test PulseAudio daemon, started by the_microphone_test_hears_the_test_tone"]
fn child_soundcheck() {
    assert!(in_child());
    let levels = Arc::new(Mutex::new(Vec::<f32>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mic = {
        let (levels, stop) = (levels.clone(), stop.clone());
        std::thread::spawn(move || {
            mic_levels(
                AudioConfig::default(),
                stop,
                Duration::from_secs(20),
                |db| levels.lock().unwrap().push(db),
            )
        })
    };
    // Silence first (the device takes a moment to open).
    for _ in 0..60 {
        if levels.lock().unwrap().len() >= 5 || mic.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if mic.is_finished() {
        panic!("the microphone test ended: {:?}", mic.join().unwrap());
    }
    let before: Vec<f32> = levels.lock().unwrap().clone();
    assert!(before.len() >= 4, "levels come ten a second: {before:?}");
    assert!(
        before.iter().all(|&d| d < -60.0),
        "silence first: {before:?}"
    );
    // The tone, on the speaker as its own stream while it plays.
    let tone = std::thread::spawn(|| play_tone(AudioConfig::default(), DeviceRole::Output, 1.5));
    let mut streams = 0;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(50));
        let out = pactl(&["list", "short", "sink-inputs"]).unwrap();
        streams = streams.max(out.lines().count());
    }
    tone.join().unwrap().expect("the tone plays");
    assert!(streams >= 1, "a playback stream while the tone plays");
    stop.store(true, Ordering::Relaxed);
    mic.join().unwrap().expect("the microphone opens");
    let all = levels.lock().unwrap().clone();
    let loudest = all.iter().cloned().fold(-100.0f32, f32::max);
    assert!(
        (-20.0..-10.0).contains(&loudest),
        "the meter shows the tone (−15 dBFS RMS): {loudest} in {all:?}"
    );
}
