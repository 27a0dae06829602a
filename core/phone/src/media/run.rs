//! The media thread's loops: how a call's pipeline is paced.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use vaxel_audio::{FRAME_SAMPLES, MediaLoopOptions, run_media_loop};

use super::endpoint::{AudioIo, AudioSink, AudioSource};
use super::pipeline::{CAPTURE_STALL, Pipeline};
use super::{MediaError, MediaSummary};

const FRAME: Duration = Duration::from_millis(10);
/// Frames per slice of `run_media_loop`; between slices the device buffers are sampled
/// for the latency figures (the loop holds the streams while it runs).
const SLICE_FRAMES: u64 = 10;

/// Runs the pipeline until stopped; returns the final statistics or the sink's error.
pub(crate) fn run(mut pipeline: Pipeline, io: AudioIo) -> Result<MediaSummary, MediaError> {
    let finished = match io {
        AudioIo::Devices {
            mut capture,
            mut playback,
        } => {
            let options = MediaLoopOptions::default();
            loop {
                let mut n = 0;
                let mut stop = false;
                run_media_loop(&mut capture, &mut playback, options, |input, output| {
                    n += 1;
                    if pipeline.tick(Instant::now(), input, output).is_break() {
                        stop = true;
                        return ControlFlow::Break(());
                    }
                    if n == SLICE_FRAMES {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                });
                pipeline.set_device_latency(
                    capture.queued_ms() + capture.stats().host_latency_ms,
                    playback.queued_ms() + playback.stats().host_latency_ms,
                    (capture.resampler_delay_ms(), playback.resampler_delay_ms()),
                );
                if stop {
                    break;
                }
            }
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
