//! Capture and playback streams: a cpal stream whose callback copies raw bytes
//! to or from a lock-free ring, and the media-thread half that converts them
//! to and from 10 ms pipeline frames.
//!
//! A logical stream outlives the device it runs on: when the control thread
//! moves it to another device it builds a new cpal stream with a new ring (a
//! *leg*) and hands the media-side half of the leg over through a second
//! small lock-free ring. The media thread picks it up on its next call, so it
//! never waits for the control thread either.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use cpal::traits::{DeviceTrait, StreamTrait};
use ringbuf::traits::{Consumer as _, Observer as _, Producer as _, Split as _};
use ringbuf::{HeapCons, HeapProd, HeapRb};

use crate::device::{AudioHost, DeviceInfo, DeviceRole, Direction};
use crate::error::AudioError;
use crate::format::{
    CaptureConverter, DeviceFormat, FRAME_SAMPLES, Frame, PIPELINE_RATE, PlaybackConverter,
};

/// How to pick the format a stream runs in on its device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FormatPolicy {
    /// Ask the device for 48 kHz mono if it takes it (PulseAudio always does
    /// and converts in the server), so the media thread converts nothing.
    #[default]
    Pipeline,
    /// Run in the device's own format and convert on the media thread
    /// (resampling with rubato). Useful on hosts whose conversion is poor, and
    /// to exercise the conversion path.
    DeviceNative,
}

/// Options for opening a stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamOptions {
    /// Which format to run the device in.
    pub format: FormatPolicy,
    /// Callback buffer to ask the host for, in milliseconds; falls back to the
    /// host's default when it refuses. `None` asks for the default.
    pub buffer_ms: Option<u32>,
    /// Capacity of the ring between callback and media thread, milliseconds.
    pub ring_ms: u32,
    /// Playback only: audio to queue before the callback starts (and restarts
    /// after an underrun) draining the ring, milliseconds.
    pub prefill_ms: u32,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            format: FormatPolicy::Pipeline,
            buffer_ms: Some(10),
            ring_ms: 200,
            prefill_ms: 20,
        }
    }
}

/// Counters one logical stream keeps across every device it ran on. Written
/// by the callback with relaxed atomics only.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    callbacks: AtomicU64,
    device_frames: AtomicU64,
    overruns: AtomicU64,
    underruns: AtomicU64,
    dropped_frames: AtomicU64,
    errors: AtomicU64,
    host_xruns: AtomicU64,
    host_latency_us: AtomicU64,
    pub(crate) restarts: AtomicU64,
}

/// A snapshot of a stream's health, for the call statistics panel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamStats {
    /// Device callbacks so far.
    pub callbacks: u64,
    /// Device frames (one sample per channel) moved by the callbacks.
    pub device_frames: u64,
    /// Capture: callbacks that found the ring full and dropped audio because
    /// the media thread fell behind.
    pub overruns: u64,
    /// Playback: callbacks that found the ring short and played silence.
    pub underruns: u64,
    /// Playback: 10 ms frames the media thread could not queue (ring full or
    /// trimmed to keep latency down).
    pub dropped_frames: u64,
    /// Errors the host reported (fatal ones move the stream).
    pub errors: u64,
    /// Glitches the host itself reported.
    pub host_xruns: u64,
    /// The host's own buffering at the last callback, milliseconds.
    pub host_latency_ms: f64,
    /// Times the stream was rebuilt, on the same device or another one.
    pub restarts: u64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> StreamStats {
        StreamStats {
            callbacks: self.callbacks.load(Relaxed),
            device_frames: self.device_frames.load(Relaxed),
            overruns: self.overruns.load(Relaxed),
            underruns: self.underruns.load(Relaxed),
            dropped_frames: self.dropped_frames.load(Relaxed),
            errors: self.errors.load(Relaxed),
            host_xruns: self.host_xruns.load(Relaxed),
            host_latency_ms: self.host_latency_us.load(Relaxed) as f64 / 1000.0,
            restarts: self.restarts.load(Relaxed),
        }
    }

    fn on_error(&self, err: &cpal::Error, failed: &AtomicBool) {
        use cpal::ErrorKind as K;
        match err.kind() {
            // The stream keeps running through these.
            K::Xrun => {
                self.host_xruns.fetch_add(1, Relaxed);
            }
            K::DeviceChanged | K::RealtimeDenied => {
                self.errors.fetch_add(1, Relaxed);
            }
            _ => {
                self.errors.fetch_add(1, Relaxed);
                failed.store(true, Relaxed);
            }
        }
    }
}

/// The media-side half of one capture leg.
pub(crate) struct CaptureLeg {
    ring: HeapCons<u8>,
    converter: CaptureConverter,
    device: DeviceInfo,
    scratch: Vec<u8>,
}

/// The media-side half of one playback leg.
pub(crate) struct PlaybackLeg {
    ring: HeapProd<u8>,
    converter: PlaybackConverter,
    device: DeviceInfo,
}

/// A running cpal stream as the control thread holds it.
pub(crate) struct DeviceStream {
    /// Held for its `Drop`, which stops the callback.
    _stream: cpal::Stream,
    /// The stream's own host connection, dropped after the stream.
    _host: AudioHost,
    pub(crate) device: DeviceInfo,
    pub(crate) failed: Arc<AtomicBool>,
}

/// Picks the device format for a stream under `policy`.
pub(crate) fn choose_format(
    info: &DeviceInfo,
    policy: FormatPolicy,
) -> Result<DeviceFormat, AudioError> {
    let usable = info.ranges.iter().filter_map(|r| r.sample.map(|s| (r, s)));
    if policy == FormatPolicy::Pipeline {
        let best = usable
            .clone()
            .filter(|(r, _)| r.min_rate <= PIPELINE_RATE && PIPELINE_RATE <= r.max_rate)
            .max_by_key(|(r, s)| {
                (
                    r.channels == 1,
                    std::cmp::Reverse(r.channels),
                    s.preference(),
                )
            });
        if let Some((r, s)) = best {
            return Ok(DeviceFormat {
                rate: PIPELINE_RATE,
                channels: r.channels,
                sample: s,
            });
        }
    }
    if let Some(n) = info.native
        && let Some(sample) = n.sample
        && n.channels > 0
        && n.rate > 0
    {
        return Ok(DeviceFormat {
            rate: n.rate,
            channels: n.channels,
            sample,
        });
    }
    // No usable native config: the best range, at the rate nearest 48 kHz.
    usable
        .max_by_key(|(r, s)| (std::cmp::Reverse(r.channels), s.preference()))
        .filter(|(r, _)| r.channels > 0 && r.max_rate > 0)
        .map(|(r, s)| DeviceFormat {
            rate: PIPELINE_RATE.clamp(r.min_rate.max(1), r.max_rate),
            channels: r.channels,
            sample: s,
        })
        .ok_or_else(|| AudioError::UnsupportedDevice {
            device: info.id.clone(),
            reason: "no range in u8, s16, s24, s32, f32 or f64".into(),
        })
}

fn buffer_size(info: &DeviceInfo, format: &DeviceFormat, ms: Option<u32>) -> cpal::BufferSize {
    let Some(ms) = ms else {
        return cpal::BufferSize::Default;
    };
    let frames = (format.rate as u64 * ms as u64 / 1000).max(1) as u32;
    let allowed = info
        .ranges
        .iter()
        .filter(|r| r.channels == format.channels && r.sample == Some(format.sample))
        .all(|r| {
            r.buffer_frames
                .is_none_or(|(lo, hi)| lo <= frames && frames <= hi)
        });
    if allowed {
        cpal::BufferSize::Fixed(frames)
    } else {
        cpal::BufferSize::Default
    }
}

/// Builds a stream, asking for a fixed buffer first and the host's default
/// after a refusal.
fn build_with_fallback<S>(
    info: &DeviceInfo,
    format: &DeviceFormat,
    options: &StreamOptions,
    mut build: impl FnMut(cpal::StreamConfig) -> Result<S, cpal::Error>,
) -> Result<S, AudioError> {
    let mut config = cpal::StreamConfig {
        channels: format.channels,
        sample_rate: format.rate,
        buffer_size: buffer_size(info, format, options.buffer_ms),
    };
    match build(config) {
        Ok(s) => Ok(s),
        Err(e)
            if e.kind() == cpal::ErrorKind::UnsupportedConfig
                && config.buffer_size != cpal::BufferSize::Default =>
        {
            tracing::debug!(device = %info.id, "fixed buffer refused ({e}); using the host default");
            config.buffer_size = cpal::BufferSize::Default;
            build(config).map_err(|e| AudioError::from_cpal(&info.id, &e))
        }
        Err(e) => Err(AudioError::from_cpal(&info.id, &e)),
    }
}

const BUILD_TIMEOUT: Duration = Duration::from_secs(3);

/// Opens a capture leg on `info`. The callback copies whole device frames
/// into the ring and nothing else.
pub(crate) fn open_capture(
    host: &AudioHost,
    info: &DeviceInfo,
    options: &StreamOptions,
    counters: &Arc<Counters>,
) -> Result<(DeviceStream, CaptureLeg), AudioError> {
    let host = host.another_connection()?;
    let device = host.device(&info.id, Direction::Input)?;
    let format = choose_format(info, options.format)?;
    let converter = CaptureConverter::new(format)?;
    let frame_bytes = format.frame_bytes();
    let ring_bytes = format.bytes_for_ms(options.ring_ms.max(20));
    let failed = Arc::new(AtomicBool::new(false));
    // Each attempt owns a fresh ring: a refused attempt drops its callback,
    // and the producer with it.
    let (stream, ring) = build_with_fallback(info, &format, options, |config| {
        let (mut prod, cons) = HeapRb::<u8>::new(ring_bytes).split();
        let counters = counters.clone();
        let counters_err = counters.clone();
        let failed = failed.clone();
        device
            .build_input_stream_raw(
                config,
                format.sample.to_cpal(),
                move |data: &cpal::Data, info: &cpal::InputCallbackInfo| {
                    let bytes = data.bytes();
                    let room = prod.vacant_len() / frame_bytes * frame_bytes;
                    let n = room.min(bytes.len());
                    prod.push_slice(&bytes[..n]);
                    if n < bytes.len() {
                        counters.overruns.fetch_add(1, Relaxed);
                    }
                    counters.callbacks.fetch_add(1, Relaxed);
                    counters
                        .device_frames
                        .fetch_add((bytes.len() / frame_bytes) as u64, Relaxed);
                    let ts = info.timestamp();
                    let lat = ts.callback.saturating_duration_since(ts.capture);
                    counters
                        .host_latency_us
                        .store(lat.as_micros() as u64, Relaxed);
                },
                move |e| counters_err.on_error(&e, &failed),
                Some(BUILD_TIMEOUT),
            )
            .map(|s| (s, cons))
    })?;
    stream
        .play()
        .map_err(|e| AudioError::from_cpal(&info.id, &e))?;
    tracing::debug!(device = %info.id, %format, "stream started");
    Ok((
        DeviceStream {
            _stream: stream,
            _host: host,
            device: info.clone(),
            failed,
        },
        CaptureLeg {
            ring,
            converter,
            device: info.clone(),
            scratch: vec![0; format.bytes_for_ms(10)],
        },
    ))
}

/// Opens a playback leg on `info`. The callback copies bytes out of the ring;
/// when the ring runs short it plays silence, counts an underrun and waits
/// for `prefill_ms` of audio before draining again.
pub(crate) fn open_playback(
    host: &AudioHost,
    info: &DeviceInfo,
    options: &StreamOptions,
    counters: &Arc<Counters>,
) -> Result<(DeviceStream, PlaybackLeg), AudioError> {
    let host = host.another_connection()?;
    let device = host.device(&info.id, Direction::Output)?;
    let format = choose_format(info, options.format)?;
    let converter = PlaybackConverter::new(format)?;
    let ring_bytes = format.bytes_for_ms(options.ring_ms.max(20));
    let prefill = format.bytes_for_ms(options.prefill_ms).min(ring_bytes / 2);
    let silence = format.sample.silence_byte();
    let failed = Arc::new(AtomicBool::new(false));
    let frame_bytes = format.frame_bytes();
    let (stream, ring) = build_with_fallback(info, &format, options, |config| {
        let (prod, mut cons) = HeapRb::<u8>::new(ring_bytes).split();
        let counters = counters.clone();
        let counters_err = counters.clone();
        let failed = failed.clone();
        let mut priming = true;
        let mut started = false;
        device
            .build_output_stream_raw(
                config,
                format.sample.to_cpal(),
                move |data: &mut cpal::Data, info: &cpal::OutputCallbackInfo| {
                    let out = data.bytes_mut();
                    counters.callbacks.fetch_add(1, Relaxed);
                    counters
                        .device_frames
                        .fetch_add((out.len() / frame_bytes) as u64, Relaxed);
                    let ts = info.timestamp();
                    let lat = ts.playback.saturating_duration_since(ts.callback);
                    counters
                        .host_latency_us
                        .store(lat.as_micros() as u64, Relaxed);
                    if priming {
                        if cons.occupied_len() >= prefill.max(out.len()) {
                            priming = false;
                            started = true;
                        } else {
                            out.fill(silence);
                            return;
                        }
                    }
                    let n = cons.pop_slice(out);
                    if n < out.len() {
                        out[n..].fill(silence);
                        priming = true;
                        if started {
                            counters.underruns.fetch_add(1, Relaxed);
                        }
                    }
                },
                move |e| counters_err.on_error(&e, &failed),
                Some(BUILD_TIMEOUT),
            )
            .map(|s| (s, prod))
    })?;
    stream
        .play()
        .map_err(|e| AudioError::from_cpal(&info.id, &e))?;
    tracing::debug!(device = %info.id, %format, "stream started");
    Ok((
        DeviceStream {
            _stream: stream,
            _host: host,
            device: info.clone(),
            failed,
        },
        PlaybackLeg {
            ring,
            converter,
            device: info.clone(),
        },
    ))
}

/// What the control thread shares with one media-side stream handle.
pub(crate) struct Shared {
    pub(crate) counters: Arc<Counters>,
    /// Set by the handle's `Drop`, so the control thread closes the device stream.
    pub(crate) closed: AtomicBool,
}

/// The media thread's end of a capture stream: 10 ms mono 48 kHz frames out.
///
/// Never blocks. When the device changes under it, the next call picks up
/// the new device's ring; audio still queued for the old device is dropped.
pub struct CaptureReader {
    pub(crate) role: DeviceRole,
    pub(crate) legs: HeapCons<CaptureLeg>,
    pub(crate) leg: Option<CaptureLeg>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) wake: std::sync::mpsc::Sender<crate::control::Command>,
}

impl CaptureReader {
    fn adopt_new_leg(&mut self) {
        while let Some(leg) = self.legs.try_pop() {
            self.leg = Some(leg);
        }
    }

    /// Takes the next captured 10 ms frame if one is ready; `false` means not
    /// yet (or no device right now), so try again shortly.
    pub fn read_frame(&mut self, out: &mut Frame) -> bool {
        self.adopt_new_leg();
        let Some(leg) = &mut self.leg else {
            return false;
        };
        loop {
            if leg.converter.pop_frame(out) {
                return true;
            }
            let n = leg.ring.pop_slice(&mut leg.scratch);
            if n == 0 {
                return false;
            }
            leg.converter.push_bytes(&leg.scratch[..n]);
        }
    }

    /// Whether a device stream is attached right now.
    pub fn is_attached(&mut self) -> bool {
        self.adopt_new_leg();
        self.leg.is_some()
    }

    /// Audio captured but not yet read, milliseconds (ring plus converter).
    pub fn queued_ms(&mut self) -> f64 {
        self.adopt_new_leg();
        self.leg.as_ref().map_or(0.0, |l| {
            l.converter.format().ms_for_bytes(l.ring.occupied_len()) + l.converter.buffered_ms()
        })
    }

    /// The device this stream reads from, as of the last `&mut self` call
    /// (which picks up a device move).
    pub fn device(&self) -> Option<&DeviceInfo> {
        self.leg.as_ref().map(|l| &l.device)
    }

    /// The format the device runs in.
    pub fn device_format(&self) -> Option<DeviceFormat> {
        self.leg.as_ref().map(|l| l.converter.format())
    }

    /// Delay added by resampling on our side, milliseconds.
    pub fn resampler_delay_ms(&self) -> f64 {
        self.leg
            .as_ref()
            .map_or(0.0, |l| l.converter.resampler_delay_ms())
    }

    /// The role this stream fills.
    pub fn role(&self) -> DeviceRole {
        self.role
    }

    /// Counters so far.
    pub fn stats(&self) -> StreamStats {
        self.shared.counters.snapshot()
    }
}

impl Drop for CaptureReader {
    fn drop(&mut self) {
        self.shared.closed.store(true, Relaxed);
        let _ = self.wake.send(crate::control::Command::Wake);
    }
}

/// The media thread's end of a playback stream: 10 ms mono 48 kHz frames in.
///
/// Never blocks. When the device changes under it, the next call writes to
/// the new device's ring.
pub struct PlaybackWriter {
    pub(crate) role: DeviceRole,
    pub(crate) legs: HeapCons<PlaybackLeg>,
    pub(crate) leg: Option<PlaybackLeg>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) wake: std::sync::mpsc::Sender<crate::control::Command>,
}

impl PlaybackWriter {
    fn adopt_new_leg(&mut self) {
        while let Some(leg) = self.legs.try_pop() {
            self.leg = Some(leg);
        }
    }

    /// Queues one 10 ms frame for the device. Returns `false` (and counts a
    /// dropped frame) when the ring has no room; when no device is attached
    /// the frame is discarded and `true` is returned, as if it had played.
    pub fn write_frame(&mut self, frame: &Frame) -> bool {
        self.adopt_new_leg();
        let Some(leg) = &mut self.leg else {
            return true;
        };
        let bytes = leg.converter.convert(frame);
        if leg.ring.vacant_len() < bytes.len() {
            self.shared.counters.dropped_frames.fetch_add(1, Relaxed);
            return false;
        }
        leg.ring.push_slice(bytes);
        true
    }

    /// Counts a frame the caller chose not to queue (to trim latency).
    pub fn note_dropped_frame(&self) {
        self.shared.counters.dropped_frames.fetch_add(1, Relaxed);
    }

    /// Audio queued for the device but not yet taken by it, milliseconds.
    pub fn queued_ms(&mut self) -> f64 {
        self.adopt_new_leg();
        self.leg.as_ref().map_or(0.0, |l| {
            l.converter.format().ms_for_bytes(l.ring.occupied_len())
        })
    }

    /// Whether a device stream is attached right now.
    pub fn is_attached(&mut self) -> bool {
        self.adopt_new_leg();
        self.leg.is_some()
    }

    /// The device this stream plays on, as of the last `&mut self` call
    /// (which picks up a device move).
    pub fn device(&self) -> Option<&DeviceInfo> {
        self.leg.as_ref().map(|l| &l.device)
    }

    /// The format the device runs in.
    pub fn device_format(&self) -> Option<DeviceFormat> {
        self.leg.as_ref().map(|l| l.converter.format())
    }

    /// Delay added by resampling on our side, milliseconds.
    pub fn resampler_delay_ms(&self) -> f64 {
        self.leg
            .as_ref()
            .map_or(0.0, |l| l.converter.resampler_delay_ms())
    }

    /// The role this stream fills.
    pub fn role(&self) -> DeviceRole {
        self.role
    }

    /// Counters so far.
    pub fn stats(&self) -> StreamStats {
        self.shared.counters.snapshot()
    }
}

impl Drop for PlaybackWriter {
    fn drop(&mut self) {
        self.shared.closed.store(true, Relaxed);
        let _ = self.wake.send(crate::control::Command::Wake);
    }
}

/// Both directions of a device stream, for the control thread's bookkeeping.
pub(crate) enum LegSender {
    Capture(HeapProd<CaptureLeg>),
    Playback(HeapProd<PlaybackLeg>),
}

/// Capacity of the hand-over ring: the control thread never has more than a
/// couple of legs in flight.
pub(crate) const LEG_SLOTS: usize = 4;

pub(crate) fn leg_ring<T>() -> (HeapProd<T>, HeapCons<T>) {
    HeapRb::<T>::new(LEG_SLOTS).split()
}

// A pipeline frame is 10 ms.
const _: () = assert!(FRAME_SAMPLES * 100 == PIPELINE_RATE as usize);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{ConfigRange, NativeConfig};
    use crate::format::SampleKind;

    fn device(ranges: Vec<ConfigRange>, native: Option<NativeConfig>) -> DeviceInfo {
        DeviceInfo {
            id: "test:dev".into(),
            name: "Dev".into(),
            direction: Direction::Output,
            is_default: true,
            native,
            ranges,
        }
    }

    fn range(channels: u16, min: u32, max: u32, sample: Option<SampleKind>) -> ConfigRange {
        ConfigRange {
            channels,
            min_rate: min,
            max_rate: max,
            sample,
            buffer_frames: Some((1, 8192)),
        }
    }

    #[test]
    fn pipeline_policy_asks_for_48k_mono_float_when_offered() {
        // What PulseAudio offers: every channel count and format at any rate.
        let mut ranges = Vec::new();
        for ch in 1..=8 {
            for s in [SampleKind::I16, SampleKind::F32, SampleKind::U8] {
                ranges.push(range(ch, 1, 384_000, Some(s)));
            }
        }
        let native = NativeConfig {
            rate: 44_100,
            channels: 2,
            sample: Some(SampleKind::I16),
        };
        let d = device(ranges, Some(native));
        let f = choose_format(&d, FormatPolicy::Pipeline).unwrap();
        assert_eq!(
            f,
            DeviceFormat {
                rate: 48_000,
                channels: 1,
                sample: SampleKind::F32
            }
        );
        let f = choose_format(&d, FormatPolicy::DeviceNative).unwrap();
        assert_eq!(
            f,
            DeviceFormat {
                rate: 44_100,
                channels: 2,
                sample: SampleKind::I16
            }
        );
        assert_eq!(buffer_size(&d, &f, Some(10)), cpal::BufferSize::Fixed(441));
    }

    #[test]
    fn a_device_without_48k_runs_natively() {
        // A USB headset that only does 44.1 kHz stereo s16.
        let d = device(vec![range(2, 44_100, 44_100, Some(SampleKind::I16))], None);
        let f = choose_format(&d, FormatPolicy::Pipeline).unwrap();
        assert_eq!(
            f,
            DeviceFormat {
                rate: 44_100,
                channels: 2,
                sample: SampleKind::I16
            }
        );
        // Buffer sizes the device does not offer fall back to the host default.
        let tight = DeviceInfo {
            ranges: vec![ConfigRange {
                buffer_frames: Some((1024, 4096)),
                ..d.ranges[0].clone()
            }],
            ..d
        };
        assert_eq!(buffer_size(&tight, &f, Some(10)), cpal::BufferSize::Default);
    }

    #[test]
    fn a_device_with_no_usable_format_is_refused() {
        let d = device(vec![range(2, 44_100, 48_000, None)], None);
        let e = choose_format(&d, FormatPolicy::Pipeline).unwrap_err();
        assert_eq!(e.code(), "audio.unsupported_device");
    }
}
