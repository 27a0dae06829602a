//! Echo cancellation and noise suppression with WebRTC's audio processing
//! module (the `aec` feature).
//!
//! The crate `webrtc-audio-processing` 0.5 links the system library through
//! pkg-config (Debian 12: `libwebrtc-audio-processing-dev` 0.3, the AEC of
//! WebRTC around 2016: AEC1 with delay-agnostic mode and the extended filter).
//! Frames are the pipeline's: 10 ms, 48 kHz, mono.
//!
//! Call [`EchoCanceller::far_end`] with every frame sent to the loudspeaker and
//! [`EchoCanceller::near_end`] with every frame from the microphone, both on
//! the media thread.

use webrtc_audio_processing as apm;

use crate::error::AudioError;
use crate::format::{FRAME_SAMPLES, Frame};

/// How hard the noise suppressor works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseLevel {
    /// Light: least speech distortion.
    Low,
    /// The usual choice for an office.
    Moderate,
    /// Noisy rooms.
    High,
    /// Very noisy rooms, at the cost of speech quality.
    VeryHigh,
}

/// What the processor does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AecOptions {
    /// Cancel the echo of the far end coming back through the microphone.
    pub echo_cancellation: bool,
    /// Estimate the loudspeaker-to-microphone delay by itself. Leave on unless
    /// `stream_delay_ms` is known and stable.
    pub delay_agnostic: bool,
    /// A longer adaptive filter, robust to long and changing delays.
    pub extended_filter: bool,
    /// The delay from `far_end` to the echo reaching `near_end`, if known.
    pub stream_delay_ms: Option<u32>,
    /// Noise suppression, if any.
    pub noise_suppression: Option<NoiseLevel>,
    /// Automatic gain control on the microphone (SPEC R-106 "automatic level").
    pub gain_control: bool,
    /// Remove DC and rumble below ~80 Hz.
    pub high_pass_filter: bool,
}

impl Default for AecOptions {
    fn default() -> Self {
        AecOptions {
            echo_cancellation: true,
            delay_agnostic: true,
            extended_filter: true,
            stream_delay_ms: None,
            noise_suppression: Some(NoiseLevel::Moderate),
            gain_control: false,
            high_pass_filter: true,
        }
    }
}

/// The processor's own view of how it is doing.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AecStats {
    /// Echo return loss enhancement the AEC reports, dB.
    pub erle_db: Option<f64>,
    /// Echo return loss (far end to echo) it measures, dB.
    pub erl_db: Option<f64>,
    /// The echo delay it estimates, milliseconds.
    pub delay_ms: Option<i32>,
}

/// Echo canceller, noise suppressor and automatic gain for one call.
pub struct EchoCanceller {
    processor: apm::Processor,
    scratch: Vec<f32>,
    options: AecOptions,
}

impl std::fmt::Debug for EchoCanceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoCanceller")
            .field("options", &self.options)
            .finish()
    }
}

impl EchoCanceller {
    /// A processor for 48 kHz mono frames.
    pub fn new(options: AecOptions) -> Result<Self, AudioError> {
        debug_assert_eq!(apm::NUM_SAMPLES_PER_FRAME as usize, FRAME_SAMPLES);
        let init = apm::InitializationConfig {
            num_capture_channels: 1,
            num_render_channels: 1,
            ..Default::default()
        };
        let mut processor =
            apm::Processor::new(&init).map_err(|e| AudioError::Processing(e.to_string()))?;
        processor.set_config(config(&options));
        Ok(EchoCanceller {
            processor,
            scratch: vec![0.0; FRAME_SAMPLES],
            options,
        })
    }

    /// The options in force.
    pub fn options(&self) -> AecOptions {
        self.options
    }

    /// Changes the options mid-call (e.g. the user toggles noise suppression).
    pub fn set_options(&mut self, options: AecOptions) {
        self.options = options;
        self.processor.set_config(config(&options));
    }

    /// Feeds a frame that is about to be played on the loudspeaker.
    pub fn far_end(&mut self, frame: &Frame) -> Result<(), AudioError> {
        self.scratch.copy_from_slice(frame);
        self.processor
            .process_render_frame(&mut self.scratch)
            .map_err(|e| AudioError::Processing(e.to_string()))
    }

    /// Cleans a microphone frame in place: echo removed, noise suppressed.
    pub fn near_end(&mut self, frame: &mut Frame) -> Result<(), AudioError> {
        self.processor
            .process_capture_frame(&mut frame[..])
            .map_err(|e| AudioError::Processing(e.to_string()))
    }

    /// What the processor reports about itself.
    pub fn stats(&self) -> AecStats {
        let s = self.processor.get_stats();
        AecStats {
            erle_db: s.echo_return_loss_enhancement,
            erl_db: s.echo_return_loss,
            delay_ms: s.delay_median_ms,
        }
    }
}

fn config(o: &AecOptions) -> apm::Config {
    apm::Config {
        echo_cancellation: o.echo_cancellation.then(|| apm::EchoCancellation {
            suppression_level: apm::EchoCancellationSuppressionLevel::High,
            enable_extended_filter: o.extended_filter,
            enable_delay_agnostic: o.delay_agnostic,
            stream_delay_ms: o.stream_delay_ms.map(|d| d as i32),
        }),
        gain_control: o.gain_control.then_some(apm::GainControl {
            mode: apm::GainControlMode::AdaptiveDigital,
            target_level_dbfs: 3,
            compression_gain_db: 9,
            enable_limiter: true,
        }),
        noise_suppression: o.noise_suppression.map(|l| apm::NoiseSuppression {
            suppression_level: match l {
                NoiseLevel::Low => apm::NoiseSuppressionLevel::Low,
                NoiseLevel::Moderate => apm::NoiseSuppressionLevel::Moderate,
                NoiseLevel::High => apm::NoiseSuppressionLevel::High,
                NoiseLevel::VeryHigh => apm::NoiseSuppressionLevel::VeryHigh,
            },
        }),
        voice_detection: None,
        enable_transient_suppressor: false,
        enable_high_pass_filter: o.high_pass_filter,
    }
}

/// A far-end/near-end pair to measure an echo canceller on, all at 48 kHz.
#[derive(Debug, Clone)]
pub struct EchoScenario {
    /// What the loudspeaker plays (the remote party).
    pub far: Vec<f32>,
    /// The local talker at the microphone; zero outside double-talk.
    pub near: Vec<f32>,
    /// The loudspeaker-to-microphone path.
    pub room: crate::signal::RoomEcho,
    /// Microphone self-noise, dBFS (white).
    pub noise_dbfs: f32,
    /// Seconds to leave out at the start while the filter converges.
    pub converge_s: f32,
}

/// The outcome of [`measure_erle`].
#[derive(Debug, Clone, PartialEq)]
pub struct ErleReport {
    /// ERLE over far-end-only speech after convergence, dB.
    pub erle_far_only_db: f64,
    /// Seconds of far-end-only speech that went into it.
    pub far_only_s: f64,
    /// Echo return loss of the simulated room: far-end power over echo power, dB.
    pub room_erl_db: f64,
    /// During double-talk: output power relative to the near-end talker's, dB
    /// (0 = the local voice passes untouched; very negative = it was suppressed).
    pub double_talk_near_db: Option<f64>,
    /// Seconds of double-talk.
    pub double_talk_s: f64,
    /// What the processor itself reported at the end.
    pub reported: AecStats,
}

/// Runs `scenario` through an [`EchoCanceller`] frame by frame, as the media
/// loop would, and measures how much echo it removed where only the far end
/// talks.
pub fn measure_erle(
    scenario: &EchoScenario,
    options: AecOptions,
) -> Result<ErleReport, AudioError> {
    use crate::signal::{Lcg, power};
    let rate = crate::format::PIPELINE_RATE;
    let len = scenario.far.len().min(scenario.near.len()) / FRAME_SAMPLES * FRAME_SAMPLES;
    if len == 0 {
        return Err(AudioError::InvalidArgument(
            "scenario is shorter than one frame".into(),
        ));
    }
    let far = &scenario.far[..len];
    let near = &scenario.near[..len];
    let echo = scenario.room.apply(far, rate);
    let noise_amp = 10f32.powf(scenario.noise_dbfs / 20.0) * 3f32.sqrt();
    let mut rng = Lcg::new(99);
    let mic: Vec<f32> = (0..len)
        .map(|i| echo[i] + near[i] + noise_amp * rng.next_f32())
        .collect();

    let mut aec = EchoCanceller::new(options)?;
    let mut out = vec![0.0f32; len];
    let mut frame = [0.0f32; FRAME_SAMPLES];
    for (k, chunk) in out.chunks_exact_mut(FRAME_SAMPLES).enumerate() {
        let at = k * FRAME_SAMPLES;
        frame.copy_from_slice(&far[at..at + FRAME_SAMPLES]);
        aec.far_end(&frame)?;
        frame.copy_from_slice(&mic[at..at + FRAME_SAMPLES]);
        aec.near_end(&mut frame)?;
        chunk.copy_from_slice(&frame);
    }

    let skip = (scenario.converge_s * rate as f32) as usize / FRAME_SAMPLES;
    // Echo above −50 dBFS counts as far-end speech.
    let active = 10f64.powf(-50.0 / 10.0);
    let (mut e_far, mut o_far, mut n_far) = (0.0f64, 0.0f64, 0usize);
    let (mut near_dt, mut o_dt, mut n_dt) = (0.0f64, 0.0f64, 0usize);
    for k in skip..len / FRAME_SAMPLES {
        let r = k * FRAME_SAMPLES..(k + 1) * FRAME_SAMPLES;
        let pe = power(&echo[r.clone()]);
        let pn = power(&near[r.clone()]);
        let po = power(&out[r.clone()]);
        if pn == 0.0 && pe > active {
            e_far += pe;
            o_far += po;
            n_far += 1;
        } else if pn > active && pe > active {
            near_dt += pn;
            o_dt += po;
            n_dt += 1;
        }
    }
    if n_far == 0 {
        return Err(AudioError::InvalidArgument(
            "scenario has no far-end-only speech after convergence".into(),
        ));
    }
    let frame_s = FRAME_SAMPLES as f64 / rate as f64;
    Ok(ErleReport {
        erle_far_only_db: 10.0 * (e_far / o_far.max(1e-15)).log10(),
        far_only_s: n_far as f64 * frame_s,
        room_erl_db: 10.0 * (power(far) / power(&echo).max(1e-15)).log10(),
        double_talk_near_db: (n_dt > 0).then(|| 10.0 * (o_dt / near_dt.max(1e-15)).log10()),
        double_talk_s: n_dt as f64 * frame_s,
        reported: aec.stats(),
    })
}
