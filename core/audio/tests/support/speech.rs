//! Far-end speech for echo tests: espeak-ng rendered at test time when it is
//! installed, else the crate's deterministic speech-like signal.

use std::process::Command;

use vaxel_audio::{PIPELINE_RATE, resample_clip, signal};

/// Where the speech came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Rendered by espeak-ng.
    Espeak,
    /// `vaxel_audio::signal::speech_like`.
    Synthetic,
}

/// `seconds` of speech at 48 kHz, peak about 0.5: espeak-ng's `voice` saying
/// `text` over and over with short pauses, or a synthetic talker with
/// `pitch_hz` when espeak-ng is missing.
pub fn speech(
    text: &str,
    voice: &str,
    seconds: f32,
    seed: u64,
    pitch_hz: f32,
) -> (Vec<f32>, Source) {
    let len = (seconds * PIPELINE_RATE as f32) as usize;
    if let Some(clip) = espeak(text, voice) {
        let mut out = Vec::with_capacity(len);
        let pause = vec![0.0f32; PIPELINE_RATE as usize / 4];
        while out.len() < len {
            out.extend_from_slice(&clip);
            out.extend_from_slice(&pause);
        }
        out.truncate(len);
        return (out, Source::Espeak);
    }
    (
        signal::speech_like(seed, seconds, pitch_hz, PIPELINE_RATE),
        Source::Synthetic,
    )
}

fn espeak(text: &str, voice: &str) -> Option<Vec<f32>> {
    let dir = std::env::temp_dir().join(format!("vaxel-espeak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let wav = dir.join(format!("{voice}.wav"));
    let ok = Command::new("espeak-ng")
        .args(["-v", voice, "-s", "150", "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .ok()?
        .success();
    if !ok {
        return None;
    }
    let mut reader = hound::WavReader::open(&wav).ok()?;
    let spec = reader.spec();
    let samples: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Int => reader
            .samples::<i16>()
            .filter_map(Result::ok)
            .map(|s| s as f32 / 32768.0)
            .collect(),
        hound::SampleFormat::Float => reader.samples::<f32>().filter_map(Result::ok).collect(),
    };
    let _ = std::fs::remove_dir_all(&dir);
    let mono: Vec<f32> = samples
        .chunks(spec.channels.max(1) as usize)
        .map(|c| c.iter().sum::<f32>() / c.len() as f32)
        .collect();
    let mut clip = resample_clip(&mono, spec.sample_rate, PIPELINE_RATE).ok()?;
    let peak = clip.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if peak < 1e-4 {
        return None;
    }
    clip.iter_mut().for_each(|v| *v *= 0.5 / peak);
    Some(clip)
}
