//! The media loop: paced by the capture device, not by a clock of its own.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use crate::format::{FRAME_SAMPLES, Frame};
use crate::stream::{CaptureReader, PlaybackWriter, StreamStats};

/// Tuning for [`run_media_loop`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MediaLoopOptions {
    /// When more than this much audio waits in the playback ring (the capture
    /// and playback devices drift apart, or capture delivered a burst), the
    /// frame is dropped instead of queued, keeping mouth-to-ear delay bounded.
    pub max_playback_queue_ms: f64,
    /// When capture delivers nothing for this long (no microphone, device
    /// being switched), the loop carries on with silent input frames paced by
    /// the wall clock, so playback keeps flowing.
    pub capture_stall: Duration,
    /// How long to sleep when no frame is ready yet.
    pub idle_sleep: Duration,
}

impl Default for MediaLoopOptions {
    fn default() -> Self {
        MediaLoopOptions {
            max_playback_queue_ms: 60.0,
            capture_stall: Duration::from_millis(60),
            idle_sleep: Duration::from_millis(1),
        }
    }
}

/// What a media loop did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaLoopReport {
    /// Frames passed through the closure.
    pub frames: u64,
    /// Input frames that were silence because capture stalled.
    pub silent_input_frames: u64,
    /// Output frames dropped to keep the playback queue short.
    pub trimmed_frames: u64,
    /// The capture stream's counters at the end.
    pub capture: StreamStats,
    /// The playback stream's counters at the end.
    pub playback: StreamStats,
}

/// Runs the media thread's loop on the calling thread until `process` breaks:
/// pull a captured 10 ms frame, hand it to `process` with an output frame
/// (zeroed), push the output to playback.
///
/// The pace is the capture device's: a frame is processed when one has been
/// captured. `process` is where encoding, decoding, echo cancellation and
/// mixing go; it must not block for long, or capture overruns.
pub fn run_media_loop<F>(
    capture: &mut CaptureReader,
    playback: &mut PlaybackWriter,
    options: MediaLoopOptions,
    mut process: F,
) -> MediaLoopReport
where
    F: FnMut(&Frame, &mut Frame) -> ControlFlow<()>,
{
    let mut report = MediaLoopReport::default();
    let mut input = [0.0f32; FRAME_SAMPLES];
    let mut output = [0.0f32; FRAME_SAMPLES];
    let frame_time = Duration::from_millis(10);
    let mut last = Instant::now();
    loop {
        if capture.read_frame(&mut input) {
            last = Instant::now();
        } else if last.elapsed() >= options.capture_stall {
            input.fill(0.0);
            last += frame_time;
            report.silent_input_frames += 1;
        } else {
            std::thread::sleep(options.idle_sleep);
            continue;
        }
        output.fill(0.0);
        let flow = process(&input, &mut output);
        if playback.queued_ms() > options.max_playback_queue_ms {
            playback.note_dropped_frame();
            report.trimmed_frames += 1;
        } else {
            playback.write_frame(&output);
        }
        report.frames += 1;
        if flow.is_break() {
            break;
        }
    }
    report.capture = capture.stats();
    report.playback = playback.stats();
    report
}
