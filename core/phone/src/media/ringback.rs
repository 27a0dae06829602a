//! Local ringback: the ringing tone the caller hears while the far end rings and sends
//! no audio of its own (a 180 Ringing without SDP, RFC 3261 §13.2.2.2 leaves the
//! alerting to the UAC; RFC 3960 §3).
//!
//! [`Ringback::start`] takes the call's [`AudioIo`] before the call has media and plays
//! the tone into its sink on a thread of its own, paced by a 10 ms timer; the source is
//! left alone (a file still starts at its beginning when the call is answered).
//! [`Ringback::stop`] gives the `AudioIo` back, so the call's media continues in the same
//! sink: the same speaker stream, the same recording file.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vaxel_audio::FRAME_SAMPLES;
use vaxel_media::tones::Tone;

use super::endpoint::{AudioIo, AudioSource, ToneSource};

/// A ringback tone playing into a call's sink (see the module documentation).
#[derive(Debug)]
pub struct Ringback {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<AudioIo>,
}

impl Ringback {
    /// Plays `tone` into the sink of `io` until [`Ringback::stop`].
    pub fn start(io: AudioIo, tone: Tone) -> std::io::Result<Ringback> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("vaxel-ringback".into())
            .spawn(move || play(io, tone, &flag))?;
        Ok(Ringback { stop, thread })
    }

    /// Stops the tone and gives the audio back (within one frame).
    pub fn stop(self) -> Option<AudioIo> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().ok()
    }
}

fn play(mut io: AudioIo, tone: Tone, stop: &AtomicBool) -> AudioIo {
    const FRAME: Duration = Duration::from_millis(10);
    let mut source = ToneSource::new(tone);
    let mut frame = [0.0f32; FRAME_SAMPLES];
    let mut mic = [0.0f32; FRAME_SAMPLES];
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        source.read_frame(&mut frame);
        match &mut io {
            AudioIo::Devices { capture, playback } => {
                // The microphone's frames are not sent anywhere yet: keep its ring empty.
                while capture.read_frame(&mut mic) {}
                playback.write_frame(&frame);
            }
            AudioIo::Endpoints { sink, .. } => sink.write_frame(&frame),
        }
        next += FRAME;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else if now > next + 10 * FRAME {
            next = now;
        }
    }
    io
}

/// The ring tone: played on the ringing device ([`vaxel_audio::DeviceRole::Ringing`],
/// often the loudspeaker while calls go to a headset) while a call comes in, on a thread
/// of its own paced by a 10 ms timer. Stops when dropped (answer, reject, caller gave up).
#[derive(Debug)]
pub struct Ringtone {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<vaxel_audio::PlaybackWriter>>,
}

impl Ringtone {
    /// The ring tone's sound: 440 + 480 Hz, a double ring (0.4 s on, 0.2 s off, 0.4 s
    /// on, 2 s off), unlike any country's ringback so it is not taken for a call's audio.
    pub fn tone() -> Tone {
        Tone::new(&[440, 480], &[(400, 200), (400, 2000)])
    }

    /// Plays `tone` into `playback` until [`Ringtone::stop`] or drop.
    pub fn start(playback: vaxel_audio::PlaybackWriter, tone: Tone) -> std::io::Result<Ringtone> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("vaxel-ringtone".into())
            .spawn(move || ring(playback, tone, &flag))?;
        Ok(Ringtone {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the tone (within one frame) and gives the stream back.
    pub fn stop(mut self) -> Option<vaxel_audio::PlaybackWriter> {
        self.halt()
    }

    fn halt(&mut self) -> Option<vaxel_audio::PlaybackWriter> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok())
    }
}

impl Drop for Ringtone {
    fn drop(&mut self) {
        self.halt();
    }
}

fn ring(
    mut playback: vaxel_audio::PlaybackWriter,
    tone: Tone,
    stop: &AtomicBool,
) -> vaxel_audio::PlaybackWriter {
    const FRAME: Duration = Duration::from_millis(10);
    let mut source = ToneSource::new(tone);
    let mut frame = [0.0f32; FRAME_SAMPLES];
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        source.read_frame(&mut frame);
        playback.write_frame(&frame);
        next += FRAME;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else if now > next + 10 * FRAME {
            next = now;
        }
    }
    playback
}
