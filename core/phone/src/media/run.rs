//! The media thread's loops: how a call's pipeline is paced.

use std::time::{Duration, Instant};

use vaxel_audio::{CaptureReader, FRAME_SAMPLES, PlaybackWriter};

use super::endpoint::{AudioIo, AudioSink, AudioSource};
use super::pipeline::{CAPTURE_STALL, Pipeline};
use super::{MediaError, MediaSummary};

const FRAME: Duration = Duration::from_millis(10);
/// Frames between samples of the device buffers for the latency figures.
const SLICE_FRAMES: u64 = 10;
/// The playback ring is trimmed when, over this many frames, it never held less than
/// [`TRIM_ABOVE_MS`] before a write: audio that waits there for nothing.
const TRIM_WINDOW: u32 = 50;
/// A frame plus a little slack for the media thread's scheduling.
const TRIM_ABOVE_MS: f64 = 12.0;
/// Hard bound on the playback ring, as `vaxel_audio::MediaLoopOptions` has.
const MAX_PLAYBACK_MS: f64 = 60.0;
/// A pending trim drops the next quiet frame, or any frame after this many.
const TRIM_PATIENCE: u32 = 50;
/// Peak below which a frame counts as quiet for trimming (about −50 dBFS).
const QUIET_PEAK: f32 = 0.003;

/// Paced by the capture device, like `vaxel_audio::run_media_loop`, with two differences
/// that keep mouth-to-ear short: a capture backlog present when the call starts is
/// dropped instead of sent (it would play late at the peer for the whole call), and the
/// playback ring is kept at the smallest level that never ran dry (it otherwise keeps
/// whatever depth the start-up left it with, up to the hard bound).
fn device_loop(
    pipeline: &mut Pipeline,
    capture: &mut CaptureReader,
    playback: &mut PlaybackWriter,
) {
    let mut input = [0.0f32; FRAME_SAMPLES];
    let mut output = [0.0f32; FRAME_SAMPLES];
    let mut last = Instant::now();
    let mut started = false;
    let mut frames = 0u64;
    let mut window_min = f64::MAX;
    let mut window_len = 0u32;
    let mut trim_pending: Option<u32> = None;
    let mut level_sum = 0.0;
    let mut echo = if pipeline.echo_cancellation() {
        vaxel_audio::CallEcho::new()
    } else {
        None
    };
    loop {
        if capture.read_frame(&mut input) {
            if !started {
                // Whatever queued up while the stream started is old: keep only the newest.
                while capture.queued_ms() >= FRAME.as_secs_f64() * 1000.0
                    && capture.read_frame(&mut input)
                {}
                started = true;
            }
            last = Instant::now();
        } else if last.elapsed() >= CAPTURE_STALL {
            input.fill(0.0);
            last += FRAME;
        } else {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        output.fill(0.0);
        if let Some(e) = echo.as_mut() {
            e.near_end(&mut input);
        }
        let flow = pipeline.tick(Instant::now(), &input, &mut output);
        if let Some(e) = echo.as_mut() {
            e.far_end(&output);
        }
        let level = playback.queued_ms();
        level_sum += level;
        window_min = window_min.min(level);
        window_len += 1;
        if window_len >= TRIM_WINDOW {
            if window_min > TRIM_ABOVE_MS && trim_pending.is_none() {
                trim_pending = Some(0);
            }
            window_min = f64::MAX;
            window_len = 0;
        }
        let trim = match trim_pending.as_mut() {
            Some(waited) => {
                *waited += 1;
                *waited > TRIM_PATIENCE || output.iter().all(|x| x.abs() < QUIET_PEAK)
            }
            None => false,
        };
        if trim || level > MAX_PLAYBACK_MS {
            playback.note_dropped_frame();
            trim_pending = None;
            // The window restarts: the level just fell by a frame.
            window_min = f64::MAX;
            window_len = 0;
        } else {
            playback.write_frame(&output);
        }
        frames += 1;
        if frames.is_multiple_of(SLICE_FRAMES) {
            let ring = level_sum / SLICE_FRAMES as f64;
            level_sum = 0.0;
            let ps = playback.stats();
            pipeline.set_playback_glitches(ps.underruns, ps.dropped_frames);
            pipeline.set_device_latency(
                capture.queued_ms() + capture.stats().host_latency_ms,
                ring + playback.stats().host_latency_ms,
                (capture.resampler_delay_ms(), playback.resampler_delay_ms()),
            );
            if frames.is_multiple_of(10 * SLICE_FRAMES) {
                let (cs, ps) = (capture.stats(), playback.stats());
                tracing::debug!(
                    frames,
                    ring_ms = ring,
                    playback_host_ms = ps.host_latency_ms,
                    underruns = ps.underruns,
                    trimmed = ps.dropped_frames,
                    capture_host_ms = cs.host_latency_ms,
                    overruns = cs.overruns,
                    "device buffers"
                );
            }
        }
        if flow.is_break() {
            return;
        }
    }
}

/// Runs the pipeline until stopped; returns the final statistics or the sink's error.
pub(crate) fn run(mut pipeline: Pipeline, io: AudioIo) -> Result<MediaSummary, MediaError> {
    let finished = match io {
        AudioIo::Devices {
            mut capture,
            mut playback,
        } => {
            device_loop(&mut pipeline, &mut capture, &mut playback);
            Ok(())
        }
        AudioIo::Endpoints {
            mut source,
            mut sink,
        } => {
            endpoint_loop(&mut pipeline, source.as_mut(), sink.as_mut());
            sink.finish()
        }
    };
    pipeline.finish(Instant::now());
    finished.map(|()| MediaSummary {
        stats: pipeline.stats(),
    })
}

/// Paced by the source when a device clocks it, else by a 10 ms timer on absolute
/// deadlines (no drift; after a long stall it resynchronises instead of bursting).
fn endpoint_loop(pipeline: &mut Pipeline, source: &mut dyn AudioSource, sink: &mut dyn AudioSink) {
    let mut input = [0.0f32; FRAME_SAMPLES];
    let mut output = [0.0f32; FRAME_SAMPLES];
    let clocked = source.is_clocked();
    let mut last = Instant::now();
    let mut next = Instant::now();
    let mut frames = 0u64;
    loop {
        if clocked {
            if source.read_frame(&mut input) {
                last = Instant::now();
            } else if last.elapsed() >= CAPTURE_STALL {
                input.fill(0.0);
                last += FRAME;
            } else {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        } else {
            let now = Instant::now();
            if now < next {
                std::thread::sleep(next - now);
            } else if now > next + 10 * FRAME {
                next = now;
            }
            next += FRAME;
            if !source.read_frame(&mut input) {
                input.fill(0.0);
            }
        }
        output.fill(0.0);
        let flow = pipeline.tick(Instant::now(), &input, &mut output);
        sink.write_frame(&output);
        frames += 1;
        if frames.is_multiple_of(SLICE_FRAMES) {
            pipeline.set_device_latency(source.buffered_ms(), sink.buffered_ms(), (0.0, 0.0));
        }
        if flow.is_break() {
            return;
        }
    }
}
