//! The settings screen's sound checks, on the devices the settings name and without a
//! call: a test tone on the speaker (or the ringing device), and the microphone's live
//! level. vaxel-audio directly: its own connection to the sound server, closed after.

use std::f32::consts::TAU;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use vaxel_audio::{Audio, AudioConfig, DeviceRole, FRAME_SAMPLES, Frame, PIPELINE_RATE};

use crate::dto::{ErrorCode, UiError};

fn env_err(what: &str, e: impl std::fmt::Display) -> UiError {
    UiError::new(ErrorCode::Environment, format!("{what}: {e}"))
}

/// Plays a 440 Hz tone at −12 dBFS for `secs` on `role`'s device (`Output` or
/// `Ringing`); returns when it has played.
pub fn play_tone(config: AudioConfig, role: DeviceRole, secs: f32) -> Result<(), UiError> {
    let audio = Audio::start(config).map_err(|e| env_err("sound devices", e))?;
    let mut out = audio
        .open_playback(role, Default::default())
        .map_err(|e| env_err("speaker", e))?;
    let frames = (secs * 100.0).round() as usize;
    let step = TAU * 440.0 / PIPELINE_RATE as f32;
    let mut phase = 0.0f32;
    let mut frame: Frame = [0.0; FRAME_SAMPLES];
    for _ in 0..frames {
        // Keep about 40 ms queued: the device's clock paces us.
        while out.queued_ms() > 40.0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        for s in frame.iter_mut() {
            *s = 0.25 * phase.sin();
            phase = (phase + step) % TAU;
        }
        out.write_frame(&frame);
    }
    // Let the queue play out before the stream closes.
    let end = Instant::now() + Duration::from_millis(500);
    while out.queued_ms() > 0.0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(60));
    Ok(())
}

/// Reads the microphone until `stop` is set or `limit` has passed, calling `level` with
/// the RMS in dBFS of every 100 ms (−100 for digital silence).
pub fn mic_levels(
    config: AudioConfig,
    stop: Arc<AtomicBool>,
    limit: Duration,
    mut level: impl FnMut(f32),
) -> Result<(), UiError> {
    let audio = Audio::start(config).map_err(|e| env_err("sound devices", e))?;
    let mut mic = audio
        .open_capture(Default::default())
        .map_err(|e| env_err("microphone", e))?;
    let end = Instant::now() + limit;
    let mut frame: Frame = [0.0; FRAME_SAMPLES];
    let (mut sum, mut n) = (0.0f64, 0usize);
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        if !mic.read_frame(&mut frame) {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        sum += frame.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>();
        n += FRAME_SAMPLES;
        if n >= 10 * FRAME_SAMPLES {
            let db = if sum > 0.0 {
                (10.0 * (sum / n as f64).log10()).max(-100.0) as f32
            } else {
                -100.0
            };
            level(db);
            (sum, n) = (0.0, 0);
        }
    }
    Ok(())
}
