//! Where a call's audio comes from and goes to: a small source/sink trait pair and the
//! endpoints the phone uses — sound devices, WAV files, tones and silence.
//!
//! Every endpoint works in vaxel-audio's unit: 10 ms mono frames at 48 kHz
//! ([`Frame`], [`FRAME_SAMPLES`]). The media thread calls them once per frame; they
//! must not block for long. File endpoints do their file IO here, in the driver
//! (vaxel-media only sees readers and writers).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use vaxel_audio::{CaptureReader, FRAME_SAMPLES, Frame, PIPELINE_RATE, PlaybackWriter};
use vaxel_media::tones::Tone;
use vaxel_media::wav::{Prompt, PromptPlayer, WavRecorder};

use super::MediaError;

/// Audio into a call: the microphone, a WAV file, a tone, silence.
pub trait AudioSource: Send {
    /// Fills `frame` with the next 10 ms. Returns `false` when a clocked source has no
    /// frame ready yet (try again shortly); unclocked sources always return `true`.
    fn read_frame(&mut self, frame: &mut Frame) -> bool;

    /// Whether a hardware clock drives this source. The media thread is paced by a
    /// clocked source; otherwise by a timer.
    fn is_clocked(&self) -> bool {
        false
    }

    /// Audio held inside the source (device ring and host buffer), in ms, for the
    /// latency breakdown.
    fn buffered_ms(&mut self) -> f64 {
        0.0
    }
}

/// Audio out of a call: the speaker, a WAV recording, nothing.
pub trait AudioSink: Send {
    /// Takes the next 10 ms.
    fn write_frame(&mut self, frame: &Frame);

    /// Whether a hardware clock drains this sink.
    fn is_clocked(&self) -> bool {
        false
    }

    /// Audio queued in the sink (device ring and host buffer), in ms, for the latency
    /// breakdown.
    fn buffered_ms(&mut self) -> f64 {
        0.0
    }

    /// Ends the stream: a recording writes its final header. Called once, when the call's
    /// media stops; reports the first write error of the stream, if any.
    fn finish(&mut self) -> Result<(), MediaError> {
        Ok(())
    }
}

/// A source of digital silence (no microphone, or a receive-only test peer).
#[derive(Debug, Default, Clone, Copy)]
pub struct SilentSource;

impl AudioSource for SilentSource {
    fn read_frame(&mut self, frame: &mut Frame) -> bool {
        frame.fill(0.0);
        true
    }
}

/// A sink that discards everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl AudioSink for NullSink {
    fn write_frame(&mut self, _frame: &Frame) {}
}

/// A tone generator: a sum of frequencies with an optional cadence ([`Tone`]), sample
/// exact however long it plays.
#[derive(Debug, Clone)]
pub struct ToneSource {
    tone: Tone,
    n: u64,
    pcm: Vec<i16>,
}

impl ToneSource {
    /// Plays `tone` from its start.
    pub fn new(tone: Tone) -> Self {
        ToneSource {
            tone,
            n: 0,
            pcm: vec![0; FRAME_SAMPLES],
        }
    }

    /// A continuous sine of `freq` Hz at `dbfs` (peak level relative to full scale).
    pub fn sine(freq: u32, dbfs: f64) -> Self {
        let mut tone = Tone::new(&[freq], &[]);
        tone.amplitude = 32767.0 * 10f64.powf(dbfs / 20.0);
        ToneSource::new(tone)
    }
}

impl AudioSource for ToneSource {
    fn read_frame(&mut self, frame: &mut Frame) -> bool {
        self.tone.fill(PIPELINE_RATE, self.n, &mut self.pcm);
        self.n += FRAME_SAMPLES as u64;
        for (o, &s) in frame.iter_mut().zip(&self.pcm) {
            *o = s as f32 / 32768.0;
        }
        true
    }
}

/// How a WAV source plays its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayMode {
    /// From the start again at the end (music on hold, test tones).
    Loop,
    /// Once, then silence.
    Once,
}

/// Plays a WAV file (`vaxel --play FILE.wav`): any rate and channel count, converted to
/// 48 kHz mono when opened.
#[derive(Debug)]
pub struct WavFileSource {
    player: PromptPlayer,
    pcm: Vec<i16>,
}

impl WavFileSource {
    /// Reads and decodes the whole file now (on the caller's thread, not the media thread).
    pub fn open(path: impl AsRef<Path>, mode: PlayMode) -> Result<Self, MediaError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| MediaError::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let prompt =
            Prompt::from_wav(BufReader::new(file), PIPELINE_RATE).map_err(|e| MediaError::Wav {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        Ok(Self::from_prompt(Arc::new(prompt), mode))
    }

    /// Plays a prompt already decoded at 48 kHz.
    pub fn from_prompt(prompt: Arc<Prompt>, mode: PlayMode) -> Self {
        WavFileSource {
            player: PromptPlayer::new(prompt, mode == PlayMode::Loop),
            pcm: vec![0; FRAME_SAMPLES],
        }
    }

    /// Whether a [`PlayMode::Once`] file has played to its end.
    pub fn is_finished(&self) -> bool {
        self.player.is_finished()
    }
}

impl AudioSource for WavFileSource {
    fn read_frame(&mut self, frame: &mut Frame) -> bool {
        self.player.read(&mut self.pcm);
        for (o, &s) in frame.iter_mut().zip(&self.pcm) {
            *o = s as f32 / 32768.0;
        }
        true
    }
}

/// Records what the call plays into a 16-bit mono 48 kHz WAV file
/// (`vaxel --record FILE.wav`).
pub struct WavFileSink {
    path: PathBuf,
    recorder: Option<WavRecorder<OwnedFile>>,
    pcm: Vec<i16>,
    error: Option<String>,
}

impl std::fmt::Debug for WavFileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavFileSink")
            .field("path", &self.path)
            .finish()
    }
}

impl WavFileSink {
    /// Creates (or truncates) the file and writes its header. A call already recording
    /// to the same file (call waiting, being transferred: `vaxel run --record F` gives
    /// every call F) stops writing to it: the file is the newest call's.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, MediaError> {
        let path = path.as_ref().to_path_buf();
        let file = File::create(&path).map_err(|e| MediaError::File {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let owned = OwnedFile::take_over(&path, file);
        let recorder = WavRecorder::new(owned, PIPELINE_RATE).map_err(|e| MediaError::File {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(WavFileSink {
            path,
            recorder: Some(recorder),
            pcm: vec![0; FRAME_SAMPLES],
            error: None,
        })
    }
}

/// Which sink owns each file being recorded now (by absolute path): the newest.
static RECORDING_OWNERS: Mutex<Option<HashMap<PathBuf, u64>>> = Mutex::new(None);
static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

/// A recording's file while its sink owns it; once a newer sink took the same path over,
/// writes and seeks go nowhere (the buffered bytes are dropped, not flushed), so the
/// older call's samples and its closing header cannot land in the newer call's file.
struct OwnedFile {
    key: PathBuf,
    token: u64,
    file: Option<BufWriter<File>>,
}

impl OwnedFile {
    fn take_over(path: &Path, file: File) -> OwnedFile {
        let key = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let token = NEXT_OWNER.fetch_add(1, Ordering::Relaxed);
        let mut owners = RECORDING_OWNERS.lock().unwrap_or_else(|p| p.into_inner());
        owners
            .get_or_insert_with(HashMap::new)
            .insert(key.clone(), token);
        OwnedFile {
            key,
            token,
            file: Some(BufWriter::new(file)),
        }
    }

    /// The file, while this sink still owns it.
    fn file(&mut self) -> Option<&mut BufWriter<File>> {
        if self.file.is_some() {
            let owners = RECORDING_OWNERS.lock().unwrap_or_else(|p| p.into_inner());
            let ours = owners.as_ref().and_then(|o| o.get(&self.key)) == Some(&self.token);
            drop(owners);
            if !ours {
                tracing::info!(path = %self.key.display(), "recording taken over by a newer call");
                // Drop the buffer unwritten.
                let _ = self.file.take().map(BufWriter::into_parts);
            }
        }
        self.file.as_mut()
    }
}

impl Write for OwnedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.file() {
            Some(f) => f.write(buf),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.file() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Seek for OwnedFile {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        match self.file() {
            Some(f) => f.seek(pos),
            None => Ok(0),
        }
    }
}

impl Drop for OwnedFile {
    fn drop(&mut self) {
        let mut owners = RECORDING_OWNERS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(o) = owners.as_mut()
            && o.get(&self.key) == Some(&self.token)
        {
            o.remove(&self.key);
        }
    }
}

impl AudioSink for WavFileSink {
    fn write_frame(&mut self, frame: &Frame) {
        if self.error.is_some() {
            return;
        }
        let Some(rec) = self.recorder.as_mut() else {
            return;
        };
        for (o, &s) in self.pcm.iter_mut().zip(frame.iter()) {
            *o = vaxel_media::dsp::to_i16(s * 32768.0);
        }
        if let Err(e) = rec.write(&self.pcm) {
            // A full disk must not stop the call: stop recording, report at the end.
            tracing::warn!(path = %self.path.display(), "recording stopped: {e}");
            self.error = Some(e.to_string());
        }
    }

    fn finish(&mut self) -> Result<(), MediaError> {
        let finished = self.recorder.take().map(|r| r.finish());
        let error = match (self.error.take(), finished) {
            (Some(e), _) => Some(e),
            (None, Some(Err(e))) => Some(e.to_string()),
            _ => None,
        };
        match error {
            Some(reason) => Err(MediaError::File {
                path: self.path.clone(),
                reason,
            }),
            None => Ok(()),
        }
    }
}

/// The microphone, through vaxel-audio's capture ring (filled by the cpal callback,
/// read here on the media thread).
pub struct DeviceSource {
    reader: CaptureReader,
}

impl DeviceSource {
    /// Wraps a capture stream opened with `vaxel_audio::Audio::open_capture`.
    pub fn new(reader: CaptureReader) -> Self {
        DeviceSource { reader }
    }
}

impl AudioSource for DeviceSource {
    fn read_frame(&mut self, frame: &mut Frame) -> bool {
        self.reader.read_frame(frame)
    }

    fn is_clocked(&self) -> bool {
        true
    }

    fn buffered_ms(&mut self) -> f64 {
        self.reader.queued_ms() + self.reader.stats().host_latency_ms
    }
}

/// The speaker or headset, through vaxel-audio's playback ring.
pub struct DevicePlaybackSink {
    writer: PlaybackWriter,
    max_queue_ms: f64,
}

impl DevicePlaybackSink {
    /// Wraps a playback stream. Frames that would queue more than `max_queue_ms` are
    /// dropped, which bounds the delay when the media thread's pace and the device's
    /// clock drift apart (as `vaxel_audio::run_media_loop` does).
    pub fn new(writer: PlaybackWriter, max_queue_ms: f64) -> Self {
        DevicePlaybackSink {
            writer,
            max_queue_ms,
        }
    }
}

impl AudioSink for DevicePlaybackSink {
    fn write_frame(&mut self, frame: &Frame) {
        if self.writer.queued_ms() > self.max_queue_ms {
            self.writer.note_dropped_frame();
        } else {
            self.writer.write_frame(frame);
        }
    }

    fn is_clocked(&self) -> bool {
        true
    }

    fn buffered_ms(&mut self) -> f64 {
        self.writer.queued_ms() + self.writer.stats().host_latency_ms
    }
}

/// The audio side of a call.
// Built once per call and moved into the media thread: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum AudioIo {
    /// Microphone and speaker. The media thread runs `vaxel_audio::run_media_loop`,
    /// paced by the capture device.
    Devices {
        /// The microphone stream.
        capture: CaptureReader,
        /// The speaker stream.
        playback: PlaybackWriter,
    },
    /// Any source and sink (files, tones, silence, or one device). Paced by whichever
    /// is clocked, the source first, else by a 10 ms timer.
    Endpoints {
        /// Where the audio we send comes from.
        source: Box<dyn AudioSource>,
        /// Where the audio we receive goes.
        sink: Box<dyn AudioSink>,
    },
}

impl std::fmt::Debug for AudioIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AudioIo::Devices { .. } => f.write_str("AudioIo::Devices"),
            AudioIo::Endpoints { .. } => f.write_str("AudioIo::Endpoints"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vaxel_media::dsp::goertzel_power;

    #[test]
    fn tone_source_is_continuous_across_frames() {
        let mut t = ToneSource::sine(1000, -6.0);
        let mut a = [0.0; FRAME_SAMPLES];
        let mut all = Vec::new();
        for _ in 0..10 {
            assert!(t.read_frame(&mut a));
            all.extend(a.iter().map(|&x| (x * 32768.0) as i16));
        }
        let p = goertzel_power(&all, PIPELINE_RATE, 1000.0);
        let peak = all.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!((16000..=16500).contains(&peak), "peak {peak}");
        assert!(p > 1e6);
    }

    #[test]
    fn wav_round_trip_through_file_endpoints() {
        let dir = std::env::temp_dir().join(format!("vaxel-ep-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rt.wav");
        let mut sink = WavFileSink::create(&path).unwrap();
        let mut tone = ToneSource::sine(440, -10.0);
        let mut f = [0.0; FRAME_SAMPLES];
        for _ in 0..5 {
            tone.read_frame(&mut f);
            sink.write_frame(&f);
        }
        sink.finish().unwrap();
        let mut src = WavFileSource::open(&path, PlayMode::Once).unwrap();
        let mut g = [0.0; FRAME_SAMPLES];
        for _ in 0..5 {
            src.read_frame(&mut g);
        }
        assert!(src.is_finished());
        assert!((g[100] - f[100]).abs() < 1e-3);
        src.read_frame(&mut g);
        assert!(g.iter().all(|&x| x == 0.0), "silence after the end");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Two calls recording to one file at once (call waiting, being transferred):
    /// the newer call takes the file over and the older stops writing to it, so the
    /// file holds the newer call only, with a header that matches, whichever ends first.
    #[test]
    fn a_second_call_recording_to_the_same_file_takes_it_over() {
        let dir = std::env::temp_dir().join(format!("vaxel-ep3-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("shared.wav");
        let frames = |sink: &mut WavFileSink, hz: u32, n: usize| {
            let mut tone = ToneSource::sine(hz, -10.0);
            let mut f = [0.0; FRAME_SAMPLES];
            for _ in 0..n {
                tone.read_frame(&mut f);
                sink.write_frame(&f);
            }
        };
        for older_ends_first in [true, false] {
            let mut older = WavFileSink::create(&path).unwrap();
            frames(&mut older, 700, 100);
            let mut newer = WavFileSink::create(&path).unwrap();
            frames(&mut newer, 1500, 30);
            frames(&mut older, 700, 100);
            if older_ends_first {
                older.finish().unwrap();
                frames(&mut newer, 1500, 30);
                newer.finish().unwrap();
            } else {
                frames(&mut newer, 1500, 30);
                newer.finish().unwrap();
                older.finish().unwrap();
            }
            drop(older);
            let p = Prompt::from_wav(File::open(&path).unwrap(), PIPELINE_RATE).unwrap();
            let s = p.samples();
            assert_eq!(
                s.len(),
                60 * FRAME_SAMPLES,
                "older_ends_first={older_ends_first}"
            );
            let len = std::fs::metadata(&path).unwrap().len() as usize;
            assert_eq!(len, 44 + 2 * s.len(), "no bytes past the data");
            assert!(
                goertzel_power(s, PIPELINE_RATE, 1500.0)
                    > 100.0 * goertzel_power(s, PIPELINE_RATE, 700.0),
                "only the newer call's tone"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_or_broken_files_are_typed_errors() {
        assert!(matches!(
            WavFileSource::open("/nonexistent/x.wav", PlayMode::Once),
            Err(MediaError::File { .. })
        ));
        let dir = std::env::temp_dir().join(format!("vaxel-ep2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.wav");
        std::fs::write(&path, b"RIFF junk").unwrap();
        assert!(matches!(
            WavFileSource::open(&path, PlayMode::Once),
            Err(MediaError::Wav { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
