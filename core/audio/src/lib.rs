//! Sound devices for the Vaxel phone: device lists and choices, capture and
//! playback streams behind lock-free rings, hot-plug, and (feature `aec`) echo
//! cancellation and noise suppression.
//!
//! # Shape
//!
//! Three kinds of thread touch audio, and none waits for another
//! (ARCHITECTURE.md §3.6):
//!
//! - **cpal callbacks** only copy raw device bytes to or from a lock-free SPSC
//!   ring (`ringbuf`). No conversion, no allocation, no lock.
//! - **The media thread** (yours) reads and writes 10 ms mono 48 kHz frames
//!   ([`Frame`], [`FRAME_SAMPLES`] = 480) through a [`CaptureReader`] and a
//!   [`PlaybackWriter`]. Decoding the device's sample format, mixing channels
//!   and resampling (`rubato`) happen here, on the consumer side. It is paced by
//!   the capture device: it processes a frame when one has been captured.
//!   [`run_media_loop`] is that loop, ready made.
//! - **The control thread** (inside [`Audio`]) owns the host connection and the
//!   cpal streams. It polls the device list, sends [`AudioEvent`]s
//!   (`DeviceAdded`, `DeviceRemoved`, `DefaultChanged`, `StreamMoved`…) and moves
//!   streams: to the default when their device vanishes, along with the default
//!   when the choice is [`DeviceChoice::SystemDefault`], and back to the chosen
//!   device when it returns (SPEC R-106, R-118). A move hands the media thread a
//!   new ring through a second lock-free ring; the media thread's handles stay
//!   the same.
//!
//! # Use
//!
//! ```no_run
//! use std::ops::ControlFlow;
//! use vaxel_audio::{Audio, AudioConfig, DeviceRole, StreamOptions, MediaLoopOptions, run_media_loop};
//!
//! let audio = Audio::start(AudioConfig::default())?;
//! for d in audio.devices()? {
//!     println!("{:?} {} {}{}", d.direction, d.id, d.name, if d.is_default { " (default)" } else { "" });
//! }
//! let events = audio.subscribe();
//! let mut mic = audio.open_capture(StreamOptions::default())?;
//! let mut speaker = audio.open_playback(DeviceRole::Output, StreamOptions::default())?;
//! let mut n = 0;
//! let report = run_media_loop(&mut mic, &mut speaker, MediaLoopOptions::default(), |input, output| {
//!     output.copy_from_slice(input); // loopback: hear yourself
//!     n += 1;
//!     if n == 300 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
//! });
//! println!("{} frames, {} underruns", report.frames, report.playback.underruns);
//! for e in events.try_iter() {
//!     if let Some(text) = e.user_notice() { println!("{text}"); }
//! }
//! # Ok::<(), vaxel_audio::AudioError>(())
//! ```
//!
//! # Hosts
//!
//! On Linux the host is cpal's native PulseAudio client (feature `pulseaudio`
//! of cpal 0.18, which also talks to PipeWire's PulseAudio server), falling
//! back to ALSA when no server is reachable. Device ids are the server's sink
//! and source names, stable across re-plugging, so a stored choice finds its
//! headset again.

mod control;
mod device;
mod echo;
mod error;
mod format;
mod media;
pub mod mix;
pub mod signal;
mod stream;

#[cfg(feature = "aec")]
pub mod aec;

pub use control::{Audio, AudioConfig, AudioEvent, MoveReason};
pub use device::{
    AudioHost, ConfigRange, DeviceChoice, DeviceInfo, DeviceRole, Direction, HostChoice,
    NativeConfig,
};
pub use echo::CallEcho;
pub use error::{AudioError, Fault};
pub use format::{
    CaptureConverter, DeviceFormat, FRAME_SAMPLES, Frame, PIPELINE_RATE, PlaybackConverter,
    SampleKind, resample_clip,
};
pub use media::{MediaLoopOptions, MediaLoopReport, run_media_loop};
pub use stream::{CaptureReader, FormatPolicy, PlaybackWriter, StreamOptions, StreamStats};
