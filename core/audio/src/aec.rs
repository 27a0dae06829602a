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
