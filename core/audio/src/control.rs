//! The control thread: owns the host connection and every cpal stream, polls
//! the device list, and moves streams between devices (SPEC ).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringbuf::traits::Producer as _;

use crate::device::{AudioHost, DeviceChoice, DeviceInfo, DeviceRole, Direction, HostChoice};
use crate::error::AudioError;
use crate::stream::{
    self, CaptureReader, Counters, DeviceStream, LegSender, PlaybackWriter, Shared, StreamOptions,
};

/// How the audio side starts.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioConfig {
    /// Which host API to use.
    pub host: HostChoice,
    /// How often the control thread polls the device list for hot-plug and
    /// default changes.
    pub poll_interval: Duration,
    /// The device choice for calls' microphone.
    pub input: DeviceChoice,
    /// The device choice for calls' speaker or headset.
    pub output: DeviceChoice,
    /// The device choice for the ring tone.
    pub ringing: DeviceChoice,
}

impl Default for AudioConfig {
    fn default() -> Self {
        AudioConfig {
            host: HostChoice::Auto,
            poll_interval: Duration::from_millis(1000),
            input: DeviceChoice::SystemDefault,
            output: DeviceChoice::SystemDefault,
            ringing: DeviceChoice::SystemDefault,
        }
    }
}

/// Why a stream moved to another device (or restarted on the same one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveReason {
    /// The device it ran on vanished or failed; it fell back to the default.
    DeviceLost,
    /// The user's chosen device is not present; the stream runs on the default.
    ChosenDeviceMissing,
    /// The stream follows the system default, and the default changed.
    FollowedDefault,
    /// The user's chosen device came back; the stream returned to it.
    ChosenDeviceReturned,
    /// The user chose another device.
    ChoiceChanged,
    /// The stream had no device and now has one again.
    Recovered,
}

/// Something the user or the UI may want to know about the sound devices.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioEvent {
    /// A device appeared (plugged in, module loaded, Bluetooth connected).
    DeviceAdded(DeviceInfo),
    /// A device disappeared.
    DeviceRemoved(DeviceInfo),
    /// The OS default device of one direction changed.
    DefaultChanged {
        /// Which direction's default.
        direction: Direction,
        /// The new default, if there is one.
        device: Option<DeviceInfo>,
    },
    /// A stream now runs on another device (or restarted on the same one).
    StreamMoved {
        /// The stream's role.
        role: DeviceRole,
        /// The device it ran on before, if any.
        from: Option<DeviceInfo>,
        /// The device it runs on now.
        to: DeviceInfo,
        /// Why it moved.
        reason: MoveReason,
    },
    /// A stream lost its device and there is nothing to fall back to; it
    /// resumes by itself when a device appears.
    StreamStalled {
        /// The stream's role.
        role: DeviceRole,
        /// The device it ran on, if any.
        device: Option<DeviceInfo>,
        /// What went wrong.
        error: AudioError,
    },
    /// The device list could not be read (the audio server went away); the
    /// control thread keeps trying to reconnect.
    HostUnavailable(AudioError),
}

impl AudioEvent {
    /// A sentence to show the user, for the events a user should hear about.
    pub fn user_notice(&self) -> Option<String> {
        match self {
            AudioEvent::StreamMoved {
                role,
                from,
                to,
                reason,
            } => match reason {
                MoveReason::DeviceLost => Some(format!(
                    "{} is not available any more: {role} now uses {}",
                    from.as_ref()
                        .map_or("The sound device", |d| d.name.as_str()),
                    to.name
                )),
                MoveReason::ChosenDeviceMissing => Some(format!(
                    "The chosen {role} device is not connected: using {} until it is",
                    to.name
                )),
                MoveReason::ChosenDeviceReturned => {
                    Some(format!("{} is back: {role} uses it again", to.name))
                }
                _ => None,
            },
            AudioEvent::StreamStalled { role, .. } => Some(format!(
                "No {} device is available for {role}",
                role.direction()
            )),
            AudioEvent::HostUnavailable(e) => {
                Some(format!("The sound system is not available: {e}"))
            }
            _ => None,
        }
    }
}

type Reply<T> = SyncSender<Result<T, AudioError>>;

pub(crate) enum Command {
    Devices(Reply<Vec<DeviceInfo>>),
    SetChoice(DeviceRole, DeviceChoice, Reply<Option<DeviceInfo>>),
    OpenCapture(StreamOptions, Reply<CaptureReader>),
    OpenPlayback(DeviceRole, StreamOptions, Reply<PlaybackWriter>),
    Subscribe(Sender<AudioEvent>),
    /// Nudge: a stream handle was dropped, look for closed streams.
    Wake,
    Shutdown,
}

/// The handle to the sound side: device list, device choices, events, and
/// streams. Cheap calls: each is one round trip to the control thread.
pub struct Audio {
    tx: Sender<Command>,
    thread: Option<JoinHandle<()>>,
    host_name: &'static str,
}

impl std::fmt::Debug for Audio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audio")
            .field("host", &self.host_name)
            .finish()
    }
}

/// How long a caller waits for the control thread before giving up. Generous:
/// opening a stream on a slow Bluetooth device can take a second or two.
const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

impl Audio {
    /// Connects to the host API and starts the control thread.
    pub fn start(config: AudioConfig) -> Result<Audio, AudioError> {
        if config.poll_interval.is_zero() {
            return Err(AudioError::InvalidArgument(
                "poll_interval must be above zero".into(),
            ));
        }
        let (tx, rx) = mpsc::channel();
        // Stream handles nudge the control thread through this when dropped.
        let wake_tx = tx.clone();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("vaxel-audio-control".into())
            .spawn(move || {
                let host = match AudioHost::open(config.host) {
                    Ok(h) => h,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(host.name()));
                Control::new(host, config, wake_tx).run(rx);
            })
            .map_err(|e| AudioError::Backend(format!("cannot start the control thread: {e}")))?;
        let host_name = match ready_rx.recv() {
            Ok(Ok(name)) => name,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => return Err(AudioError::Stopped),
        };
        Ok(Audio {
            tx,
            thread: Some(thread),
            host_name,
        })
    }

    /// The host API in use ("PulseAudio", "ALSA", …).
    pub fn host_name(&self) -> &'static str {
        self.host_name
    }

    fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, AudioError> {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        self.tx
            .send(make(reply_tx))
            .map_err(|_| AudioError::Stopped)?;
        match reply_rx.recv_timeout(REPLY_TIMEOUT) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => Err(AudioError::Backend(
                "the audio control thread did not answer".into(),
            )),
            Err(RecvTimeoutError::Disconnected) => Err(AudioError::Stopped),
        }
    }

    /// Rescans and returns every input and output device. Any change since
    /// the last scan is also sent as events.
    pub fn devices(&self) -> Result<Vec<DeviceInfo>, AudioError> {
        self.ask(Command::Devices)
    }

    /// Events from now on: hot-plug, default changes, streams moving.
    pub fn subscribe(&self) -> Receiver<AudioEvent> {
        let (tx, rx) = mpsc::channel();
        let _ = self.tx.send(Command::Subscribe(tx));
        rx
    }

    /// Sets the device choice for a role and moves open streams of that role.
    /// Returns the device the choice resolves to now; `None` means the chosen
    /// device is absent and the default is used until it appears.
    pub fn set_choice(
        &self,
        role: DeviceRole,
        choice: DeviceChoice,
    ) -> Result<Option<DeviceInfo>, AudioError> {
        self.ask(|r| Command::SetChoice(role, choice, r))
    }

    /// Opens the microphone (role [`DeviceRole::Input`]) on the chosen device.
    pub fn open_capture(&self, options: StreamOptions) -> Result<CaptureReader, AudioError> {
        self.ask(|r| Command::OpenCapture(options, r))
    }

    /// Opens a playback stream for `role` ([`DeviceRole::Output`] for calls,
    /// [`DeviceRole::Ringing`] for the ring tone) on the chosen device.
    pub fn open_playback(
        &self,
        role: DeviceRole,
        options: StreamOptions,
    ) -> Result<PlaybackWriter, AudioError> {
        if role.direction() != Direction::Output {
            return Err(AudioError::InvalidArgument(format!(
                "{role} is not a playback role"
            )));
        }
        self.ask(|r| Command::OpenPlayback(role, options, r))
    }
}

impl Drop for Audio {
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct OpenStream {
    role: DeviceRole,
    options: StreamOptions,
    shared: Arc<Shared>,
    legs: LegSender,
    current: Option<DeviceStream>,
    /// The device the stream ran on when it last lost it, for the event.
    lost: Option<DeviceInfo>,
}

struct Control {
    config: AudioConfig,
    host: Option<AudioHost>,
    devices: Vec<DeviceInfo>,
    scanned: bool,
    host_down: bool,
    choices: HashMap<DeviceRole, DeviceChoice>,
    streams: Vec<OpenStream>,
    subscribers: Vec<Sender<AudioEvent>>,
    wake_tx: Sender<Command>,
}

impl Control {
    fn new(host: AudioHost, config: AudioConfig, wake_tx: Sender<Command>) -> Self {
        let choices = HashMap::from([
            (DeviceRole::Input, config.input.clone()),
            (DeviceRole::Output, config.output.clone()),
            (DeviceRole::Ringing, config.ringing.clone()),
        ]);
        Control {
            config,
            host: Some(host),
            devices: Vec::new(),
            scanned: false,
            host_down: false,
            choices,
            streams: Vec::new(),
            subscribers: Vec::new(),
            wake_tx,
        }
    }

    fn run(mut self, rx: Receiver<Command>) {
        let interval = self.config.poll_interval;
        self.scan();
        let mut next = Instant::now() + interval;
        loop {
            let wait = next.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Command::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(cmd) => self.handle(cmd),
                Err(RecvTimeoutError::Timeout) => {
                    self.scan();
                    self.reconcile_all(false);
                    next = Instant::now() + interval;
                }
            }
        }
        // Stop every callback before the rings go away.
        for s in &mut self.streams {
            s.current = None;
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Devices(reply) => {
                self.scan();
                self.reconcile_all(false);
                let result = if self.host.is_some() {
                    Ok(self.devices.clone())
                } else {
                    Err(AudioError::HostUnavailable(
                        "the audio server is not reachable".into(),
                    ))
                };
                let _ = reply.send(result);
            }
            Command::SetChoice(role, choice, reply) => {
                let found = choice.find(&self.of(role.direction())).cloned();
                self.choices.insert(role, choice);
                for i in 0..self.streams.len() {
                    if self.streams[i].role == role {
                        self.reconcile(i, true);
                    }
                }
                let _ = reply.send(Ok(found));
            }
            Command::OpenCapture(options, reply) => {
                let _ = reply.send(self.open_capture(options));
            }
            Command::OpenPlayback(role, options, reply) => {
                let _ = reply.send(self.open_playback(role, options));
            }
            Command::Subscribe(tx) => self.subscribers.push(tx),
            Command::Wake => self.reap(),
            Command::Shutdown => {}
        }
    }

    fn emit(&mut self, event: AudioEvent) {
        tracing::debug!(?event, "audio event");
        self.subscribers.retain(|s| s.send(event.clone()).is_ok());
    }

    fn of(&self, direction: Direction) -> Vec<DeviceInfo> {
        self.devices
            .iter()
            .filter(|d| d.direction == direction)
            .cloned()
            .collect()
    }

    /// Re-reads the device list and reports what changed.
    fn scan(&mut self) {
        if self.host.is_none() {
            // The server went away earlier: try to reconnect.
            self.host = AudioHost::open(self.config.host).ok();
        }
        let Some(host) = &self.host else { return };
        let fresh = match host.devices() {
            Ok(d) => d,
            Err(e) => {
                self.host = None;
                if !self.host_down {
                    self.host_down = true;
                    self.emit(AudioEvent::HostUnavailable(e));
                }
                return;
            }
        };
        self.host_down = false;
        let old = std::mem::replace(&mut self.devices, fresh);
        if !self.scanned {
            self.scanned = true;
            return;
        }
        let key = |d: &DeviceInfo| (d.id.clone(), d.direction);
        let mut events = Vec::new();
        for d in &self.devices {
            if !old.iter().any(|o| key(o) == key(d)) {
                events.push(AudioEvent::DeviceAdded(d.clone()));
            }
        }
        for o in &old {
            if !self.devices.iter().any(|d| key(o) == key(d)) {
                events.push(AudioEvent::DeviceRemoved(o.clone()));
            }
        }
        for direction in [Direction::Input, Direction::Output] {
            let was = old
                .iter()
                .find(|d| d.direction == direction && d.is_default);
            let now = self
                .devices
                .iter()
                .find(|d| d.direction == direction && d.is_default);
            if was.map(|d| &d.id) != now.map(|d| &d.id) {
                events.push(AudioEvent::DefaultChanged {
                    direction,
                    device: now.cloned(),
                });
            }
        }
        for e in events {
            self.emit(e);
        }
    }

    /// Where a stream of `role` should run now: the chosen device if present,
    /// else the default, else any device that is not a monitor.
    fn target(&self, role: DeviceRole) -> (Option<DeviceInfo>, bool) {
        let list = self.of(role.direction());
        let choice = self.choices.get(&role).cloned().unwrap_or_default();
        if let Some(d) = choice.find(&list) {
            return (Some(d.clone()), true);
        }
        let fallback = list
            .iter()
            .find(|d| d.is_default)
            .or_else(|| list.iter().find(|d| !d.is_monitor()))
            .or_else(|| list.first())
            .cloned();
        (fallback, false)
    }

    fn reap(&mut self) {
        self.streams.retain(|s| !s.shared.closed.load(Relaxed));
    }

    fn reconcile_all(&mut self, choice_changed: bool) {
        self.reap();
        for i in 0..self.streams.len() {
            self.reconcile(i, choice_changed);
        }
    }

    /// Moves stream `i` where it belongs, if it is not there already.
    fn reconcile(&mut self, i: usize, choice_changed: bool) {
        let role = self.streams[i].role;
        let (target, is_chosen) = self.target(role);
        let specific = !matches!(
            self.choices.get(&role),
            None | Some(DeviceChoice::SystemDefault)
        );
        let s = &mut self.streams[i];
        let present = |d: &DeviceInfo| {
            self.devices
                .iter()
                .any(|x| x.id == d.id && x.direction == d.direction)
        };
        let (current_id, broken) = match &s.current {
            Some(c) => (
                Some(c.device.id.clone()),
                c.failed.load(Relaxed) || !present(&c.device),
            ),
            None => (None, false),
        };
        let on_target = current_id.is_some() && current_id == target.as_ref().map(|t| t.id.clone());
        if !broken && on_target {
            return;
        }
        if current_id.is_none() && target.is_none() {
            return; // Still nothing to run on; already reported.
        }
        let reason = if broken {
            MoveReason::DeviceLost
        } else if choice_changed {
            MoveReason::ChoiceChanged
        } else if specific && is_chosen {
            MoveReason::ChosenDeviceReturned
        } else if current_id.is_none() {
            MoveReason::Recovered
        } else {
            MoveReason::FollowedDefault
        };
        // Stop the old callback first: the new stream may be on the same device.
        let old = s.current.take().map(|c| c.device);
        let from = old.clone().or_else(|| s.lost.clone());
        if broken {
            s.lost = old.clone();
        }
        let Some(target) = target else {
            let error = AudioError::NoSuchDevice {
                direction: role.direction(),
                choice: "any device".into(),
            };
            self.emit(AudioEvent::StreamStalled {
                role,
                device: from,
                error,
            });
            return;
        };
        let s = &mut self.streams[i];
        s.shared.counters.restarts.fetch_add(1, Relaxed);
        let t0 = Instant::now();
        let result = attach(self.host.as_ref(), s, &target);
        tracing::debug!(%role, device = %target.id, took = ?t0.elapsed(), ok = result.is_ok(), "stream moved");
        match result {
            Ok(()) => {
                s.lost = None;
                self.emit(AudioEvent::StreamMoved {
                    role,
                    from,
                    to: target,
                    reason,
                });
            }
            Err(error) => {
                tracing::warn!(%role, device = %target.id, "cannot open stream: {error}");
                if old.is_some() {
                    self.emit(AudioEvent::StreamStalled {
                        role,
                        device: old,
                        error,
                    });
                }
            }
        }
    }

    fn wake_sender(&self) -> Sender<Command> {
        self.wake_tx.clone()
    }

    fn open_capture(&mut self, options: StreamOptions) -> Result<CaptureReader, AudioError> {
        let (prod, cons) = stream::leg_ring();
        let shared = Arc::new(Shared {
            counters: Arc::new(Counters::default()),
            closed: AtomicBool::new(false),
        });
        let mut open = OpenStream {
            role: DeviceRole::Input,
            options,
            shared: shared.clone(),
            legs: LegSender::Capture(prod),
            current: None,
            lost: None,
        };
        let target = self.first_target(DeviceRole::Input)?;
        attach(self.host.as_ref(), &mut open, &target.0)?;
        self.streams.push(open);
        if !target.1 {
            self.notice_missing_choice(DeviceRole::Input, target.0);
        }
        Ok(CaptureReader {
            role: DeviceRole::Input,
            legs: cons,
            leg: None,
            shared,
            wake: self.wake_sender(),
        })
    }

    fn open_playback(
        &mut self,
        role: DeviceRole,
        options: StreamOptions,
    ) -> Result<PlaybackWriter, AudioError> {
        let (prod, cons) = stream::leg_ring();
        let shared = Arc::new(Shared {
            counters: Arc::new(Counters::default()),
            closed: AtomicBool::new(false),
        });
        let mut open = OpenStream {
            role,
            options,
            shared: shared.clone(),
            legs: LegSender::Playback(prod),
            current: None,
            lost: None,
        };
        let target = self.first_target(role)?;
        attach(self.host.as_ref(), &mut open, &target.0)?;
        self.streams.push(open);
        if !target.1 {
            self.notice_missing_choice(role, target.0);
        }
        Ok(PlaybackWriter {
            role,
            legs: cons,
            leg: None,
            shared,
            wake: self.wake_sender(),
        })
    }

    fn first_target(&mut self, role: DeviceRole) -> Result<(DeviceInfo, bool), AudioError> {
        if self.host.is_none() || !self.scanned {
            self.scan();
        }
        if self.host.is_none() {
            return Err(AudioError::HostUnavailable(
                "the audio server is not reachable".into(),
            ));
        }
        match self.target(role) {
            (Some(d), chosen) => Ok((d, chosen)),
            (None, _) => Err(AudioError::NoSuchDevice {
                direction: role.direction(),
                choice: self
                    .choices
                    .get(&role)
                    .cloned()
                    .unwrap_or_default()
                    .to_string(),
            }),
        }
    }

    fn notice_missing_choice(&mut self, role: DeviceRole, to: DeviceInfo) {
        if !matches!(
            self.choices.get(&role),
            None | Some(DeviceChoice::SystemDefault)
        ) {
            self.emit(AudioEvent::StreamMoved {
                role,
                from: None,
                to,
                reason: MoveReason::ChosenDeviceMissing,
            });
        }
    }
}

/// Opens a new leg of `s` on `target` and hands its media half over.
fn attach(
    host: Option<&AudioHost>,
    s: &mut OpenStream,
    target: &DeviceInfo,
) -> Result<(), AudioError> {
    let host = host
        .ok_or_else(|| AudioError::HostUnavailable("the audio server is not reachable".into()))?;
    let counters = &s.shared.counters;
    match &mut s.legs {
        LegSender::Capture(tx) => {
            let (ds, leg) = stream::open_capture(host, target, &s.options, counters)?;
            if tx.try_push(leg).is_err() {
                return Err(AudioError::Backend(
                    "the media thread is not reading this stream".into(),
                ));
            }
            s.current = Some(ds);
        }
        LegSender::Playback(tx) => {
            let (ds, leg) = stream::open_playback(host, target, &s.options, counters)?;
            if tx.try_push(leg).is_err() {
                return Err(AudioError::Backend(
                    "the media thread is not writing this stream".into(),
                ));
            }
            s.current = Some(ds);
        }
    }
    Ok(())
}
