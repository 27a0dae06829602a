//! The settings screen's sound check: play a test tone on the output (or
//! ringing) device, or loop the microphone back to the speaker while showing
//! the input level.
//!
//! ```sh
//! cargo run -p vaxel-audio --example sound_check -- tone [seconds] [output-device-id-or-name]
//! cargo run -p vaxel-audio --example sound_check -- ring [seconds] [device-id-or-name]
//! cargo run -p vaxel-audio --example sound_check -- loopback [seconds] [input] [output]
//! ```

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use vaxel_audio::signal::{dbfs, tone};
use vaxel_audio::{
    Audio, AudioConfig, AudioEvent, DeviceChoice, DeviceRole, FRAME_SAMPLES, Frame,
    MediaLoopOptions, PIPELINE_RATE, StreamOptions, run_media_loop,
};

fn choice(arg: Option<String>) -> DeviceChoice {
    match arg {
        None => DeviceChoice::SystemDefault,
        Some(s) if s.contains(':') => DeviceChoice::Id(s),
        Some(s) => DeviceChoice::Name(s),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "tone".into());
    let seconds: f32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let mut config = AudioConfig::default();
    match mode.as_str() {
        "tone" => config.output = choice(args.next()),
        "ring" => config.ringing = choice(args.next()),
        "loopback" => {
            config.input = choice(args.next());
            config.output = choice(args.next());
        }
        other => {
            eprintln!("unknown mode {other:?}: use tone, ring or loopback");
            std::process::exit(2);
        }
    }
    let audio = Audio::start(config).unwrap_or_else(|e| {
        eprintln!("no sound system: {e}");
        std::process::exit(1);
    });
    let events = audio.subscribe();
    let result = match mode.as_str() {
        "loopback" => loopback(&audio, seconds),
        "ring" => play_tone(&audio, DeviceRole::Ringing, seconds),
        _ => play_tone(&audio, DeviceRole::Output, seconds),
    };
    for e in events.try_iter() {
        report(&e);
    }
    if let Err(e) = result {
        eprintln!("sound check failed: {e} ({})", e.code());
        std::process::exit(1);
    }
}

fn report(e: &AudioEvent) {
    if let Some(text) = e.user_notice() {
        println!("notice: {text}");
    }
}

/// A 1 kHz tone (or, for ringing, a 425 Hz ring cadence) paced by the wall
/// clock: there is no microphone to pace a media loop here.
fn play_tone(audio: &Audio, role: DeviceRole, seconds: f32) -> Result<(), vaxel_audio::AudioError> {
    let mut out = audio.open_playback(role, StreamOptions::default())?;
    let freq = if role == DeviceRole::Ringing {
        425.0
    } else {
        1000.0
    };
    let sine = tone(freq, 0.25, PIPELINE_RATE as usize, PIPELINE_RATE);
    let frames = (seconds * 100.0) as usize;
    let start = Instant::now();
    let mut frame: Frame = [0.0; FRAME_SAMPLES];
    for k in 0..frames {
        // Ring cadence: 1 s on, 4 s off (ETSI); a plain tone for the output test.
        let on = role != DeviceRole::Ringing || (k % 500) < 100;
        let at = (k % 100) * FRAME_SAMPLES;
        if on {
            frame.copy_from_slice(&sine[at..at + FRAME_SAMPLES]);
        } else {
            frame.fill(0.0);
        }
        while out.queued_ms() > 40.0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        out.write_frame(&frame);
    }
    std::thread::sleep(Duration::from_millis(100));
    println!(
        "played {seconds} s of {freq} Hz on {} in {:.1} s; {:?}",
        out.device().map_or("?", |d| d.name.as_str()),
        start.elapsed().as_secs_f32(),
        out.stats()
    );
    Ok(())
}

/// Microphone to speaker, printing the input level twice a second.
fn loopback(audio: &Audio, seconds: f32) -> Result<(), vaxel_audio::AudioError> {
    let mut mic = audio.open_capture(StreamOptions::default())?;
    let mut speaker = audio.open_playback(DeviceRole::Output, StreamOptions::default())?;
    println!(
        "loopback: {} -> {}",
        mic.device().map_or("?", |d| d.name.as_str()),
        speaker.device().map_or("?", |d| d.name.as_str())
    );
    let frames = (seconds * 100.0) as u64;
    let mut n = 0u64;
    let mut peak = -120.0f32;
    let report = run_media_loop(
        &mut mic,
        &mut speaker,
        MediaLoopOptions::default(),
        |input, output| {
            output.copy_from_slice(input);
            peak = peak.max(dbfs(input));
            n += 1;
            if n.is_multiple_of(50) {
                println!(
                    "input level {peak:6.1} dBFS {}",
                    "#".repeat(((peak + 60.0).max(0.0) / 2.0) as usize)
                );
                peak = -120.0;
            }
            if n >= frames {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    );
    println!("{report:?}");
    Ok(())
}
