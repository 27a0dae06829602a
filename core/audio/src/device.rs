//! Device enumeration and choice: what the settings screen lists and what the
//! user picks for input, output and ringing.

use std::fmt;

use cpal::traits::{DeviceTrait, HostTrait};

use crate::error::AudioError;
use crate::format::SampleKind;

/// Which way sound flows through a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// A microphone or other capture source.
    Input,
    /// A speaker, headset or other playback sink.
    Output,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Input => "input",
            Direction::Output => "output",
        })
    }
}

/// What a stream is for; each role has its own device choice (SPEC R-106).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceRole {
    /// The microphone for calls.
    Input,
    /// The speaker or headset for calls.
    Output,
    /// Where the ring tone plays (often the loudspeaker while calls go to a headset).
    Ringing,
}

impl DeviceRole {
    /// The direction of the devices that can fill this role.
    pub fn direction(self) -> Direction {
        match self {
            DeviceRole::Input => Direction::Input,
            DeviceRole::Output | DeviceRole::Ringing => Direction::Output,
        }
    }

    /// All roles, for iterating over settings.
    pub const ALL: [DeviceRole; 3] = [DeviceRole::Input, DeviceRole::Output, DeviceRole::Ringing];
}

impl fmt::Display for DeviceRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceRole::Input => "input",
            DeviceRole::Output => "output",
            DeviceRole::Ringing => "ringing",
        })
    }
}

/// The user's device choice for one role.
///
/// A specific device that is missing is not an error: the stream runs on the
/// system default meanwhile and moves back when the device returns (SPEC R-118).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum DeviceChoice {
    /// Whatever the OS calls the default right now, following it when it changes.
    #[default]
    SystemDefault,
    /// A device by its stable id ([`DeviceInfo::id`]), as stored in settings.
    Id(String),
    /// A device by its display name ([`DeviceInfo::name`]), matched exactly,
    /// then ignoring case.
    Name(String),
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::SystemDefault => f.write_str("the system default"),
            DeviceChoice::Id(id) => write!(f, "id {id:?}"),
            DeviceChoice::Name(name) => write!(f, "name {name:?}"),
        }
    }
}

impl DeviceChoice {
    /// Finds the device this choice names among `devices` (of one direction).
    /// `SystemDefault` resolves to the device flagged as default.
    pub fn find<'a>(&self, devices: &'a [DeviceInfo]) -> Option<&'a DeviceInfo> {
        match self {
            DeviceChoice::SystemDefault => devices.iter().find(|d| d.is_default),
            DeviceChoice::Id(id) => devices.iter().find(|d| &d.id == id),
            DeviceChoice::Name(name) => devices
                .iter()
                .find(|d| &d.name == name)
                .or_else(|| devices.iter().find(|d| d.name.eq_ignore_ascii_case(name))),
        }
    }
}

/// One range of stream formats a device accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigRange {
    /// Interleaved channel count.
    pub channels: u16,
    /// Lowest sample rate in Hz.
    pub min_rate: u32,
    /// Highest sample rate in Hz.
    pub max_rate: u32,
    /// Sample encoding, or `None` for one this crate cannot convert.
    pub sample: Option<SampleKind>,
    /// Smallest and largest callback buffer in frames, when the host says.
    pub buffer_frames: Option<(u32, u32)>,
}

/// The format a device runs in when nobody asks for anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NativeConfig {
    /// Sample rate in Hz.
    pub rate: u32,
    /// Interleaved channel count.
    pub channels: u16,
    /// Sample encoding, or `None` for one this crate cannot convert.
    pub sample: Option<SampleKind>,
}

/// A sound device as the settings screen shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Stable id across restarts and re-plugging (`host:device`, e.g.
    /// `pulseaudio:alsa_output.usb-Jabra…`); store this in settings.
    pub id: String,
    /// Human-readable name ("Jabra Evolve2 65 Analog Stereo").
    pub name: String,
    /// Capture or playback.
    pub direction: Direction,
    /// Whether the OS currently calls this the default device of its direction.
    pub is_default: bool,
    /// The device's own format, if the host tells it.
    pub native: Option<NativeConfig>,
    /// Every format range the device accepts.
    pub ranges: Vec<ConfigRange>,
}

impl DeviceInfo {
    /// The distinct channel counts the device accepts, ascending.
    pub fn channel_counts(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self.ranges.iter().map(|r| r.channels).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Lowest and highest sample rate over all ranges.
    pub fn rate_span(&self) -> Option<(u32, u32)> {
        let min = self.ranges.iter().map(|r| r.min_rate).min()?;
        let max = self.ranges.iter().map(|r| r.max_rate).max()?;
        Some((min, max))
    }

    /// Which of the usual telephony and music rates the device accepts.
    pub fn common_rates(&self) -> Vec<u32> {
        const COMMON: [u32; 7] = [8_000, 16_000, 22_050, 32_000, 44_100, 48_000, 96_000];
        COMMON
            .into_iter()
            .filter(|&r| {
                self.ranges
                    .iter()
                    .any(|x| x.min_rate <= r && r <= x.max_rate)
            })
            .collect()
    }

    /// Whether this is a PulseAudio monitor source (what a sink plays, looped
    /// back), which a settings screen usually hides from the microphone list.
    pub fn is_monitor(&self) -> bool {
        self.direction == Direction::Input && self.id.ends_with(".monitor")
    }
}

/// Which host API to talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostChoice {
    /// The platform's best: on Linux PulseAudio (or PipeWire's PulseAudio
    /// server) when its socket is reachable, else ALSA; CoreAudio on macOS;
    /// WASAPI on Windows.
    #[default]
    Auto,
    /// PulseAudio only (Linux and BSDs); fails when no server is reachable.
    PulseAudio,
    /// ALSA only (Linux and BSDs).
    Alsa,
}

/// A connection to the host sound API: lists devices and finds the one a
/// choice names. Blocking calls; keep it off the audio and media threads.
pub struct AudioHost {
    host: cpal::Host,
}

impl fmt::Debug for AudioHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AudioHost")
            .field("host", &self.name())
            .finish()
    }
}

impl AudioHost {
    /// Connects to the chosen host API.
    pub fn open(choice: HostChoice) -> Result<Self, AudioError> {
        let host = match choice {
            HostChoice::Auto => cpal::default_host(),
            HostChoice::PulseAudio => host_by_id(HostChoice::PulseAudio)?,
            HostChoice::Alsa => host_by_id(HostChoice::Alsa)?,
        };
        Ok(AudioHost { host })
    }

    /// The host API's name ("PulseAudio", "ALSA", …).
    pub fn name(&self) -> &'static str {
        self.host.id().name()
    }

    /// Every input and output device, with the current defaults flagged.
    pub fn devices(&self) -> Result<Vec<DeviceInfo>, AudioError> {
        let default_in = self.default_id(Direction::Input);
        let default_out = self.default_id(Direction::Output);
        let devices = self
            .host
            .devices()
            .map_err(|e| AudioError::from_cpal(self.name(), &e))?;
        let mut out = Vec::new();
        for device in devices {
            let Ok(id) = device.id() else { continue };
            let id = id.to_string();
            let name = device
                .description()
                .map(|d| d.name().to_owned())
                .unwrap_or_else(|_| id.clone());
            if device.supports_input() {
                out.push(describe(
                    &device,
                    id.clone(),
                    name.clone(),
                    Direction::Input,
                    default_in.as_deref() == Some(id.as_str()),
                ));
            }
            if device.supports_output() {
                out.push(describe(
                    &device,
                    id.clone(),
                    name,
                    Direction::Output,
                    default_out.as_deref() == Some(id.as_str()),
                ));
            }
        }
        Ok(out)
    }

    /// The id of the current default device of one direction.
    pub fn default_id(&self, direction: Direction) -> Option<String> {
        let device = match direction {
            Direction::Input => self.host.default_input_device(),
            Direction::Output => self.host.default_output_device(),
        }?;
        device.id().ok().map(|id| id.to_string())
    }

    /// A second connection to the same host API. Each stream gets its own:
    /// cpal 0.18's PulseAudio host serves every stream of one connection from
    /// one reader, and a monitor source delivering 0.5 ms fragments starves a
    /// playback stream that shares it (measured: playback stalls after its
    /// first 40 ms).
    pub(crate) fn another_connection(&self) -> Result<AudioHost, AudioError> {
        cpal::host_from_id(self.host.id())
            .map(|host| AudioHost { host })
            .map_err(|e| AudioError::HostUnavailable(format!("{}: {e}", self.name())))
    }

    /// The cpal device with this id and direction.
    pub(crate) fn device(
        &self,
        id: &str,
        direction: Direction,
    ) -> Result<cpal::Device, AudioError> {
        let unavailable = || AudioError::DeviceUnavailable {
            device: id.to_owned(),
            reason: "not in the host's device list".into(),
        };
        let parsed: cpal::DeviceId = id.parse().map_err(|_| unavailable())?;
        let device = self.host.device_by_id(&parsed).ok_or_else(unavailable)?;
        let fits = match direction {
            Direction::Input => device.supports_input(),
            Direction::Output => device.supports_output(),
        };
        if fits { Ok(device) } else { Err(unavailable()) }
    }
}

#[cfg(any(
    target_os = "linux",
    target_os = "dragonfly",
    target_os = "freebsd",
    target_os = "netbsd"
))]
fn host_by_id(choice: HostChoice) -> Result<cpal::Host, AudioError> {
    let id = match choice {
        HostChoice::PulseAudio => cpal::HostId::PulseAudio,
        _ => cpal::HostId::Alsa,
    };
    cpal::host_from_id(id).map_err(|e| AudioError::HostUnavailable(format!("{}: {e}", id.name())))
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "dragonfly",
    target_os = "freebsd",
    target_os = "netbsd"
)))]
fn host_by_id(choice: HostChoice) -> Result<cpal::Host, AudioError> {
    Err(AudioError::HostUnavailable(format!(
        "{choice:?} does not exist on this platform"
    )))
}

fn describe(
    device: &cpal::Device,
    id: String,
    name: String,
    direction: Direction,
    is_default: bool,
) -> DeviceInfo {
    let (native, ranges) = match direction {
        Direction::Input => (
            device.default_input_config().ok(),
            device
                .supported_input_configs()
                .map(|r| r.collect::<Vec<_>>())
                .unwrap_or_default(),
        ),
        Direction::Output => (
            device.default_output_config().ok(),
            device
                .supported_output_configs()
                .map(|r| r.collect::<Vec<_>>())
                .unwrap_or_default(),
        ),
    };
    DeviceInfo {
        id,
        name,
        direction,
        is_default,
        native: native.map(|c| NativeConfig {
            rate: c.sample_rate(),
            channels: c.channels(),
            sample: SampleKind::from_cpal(c.sample_format()),
        }),
        ranges: ranges
            .into_iter()
            .map(|r| ConfigRange {
                channels: r.channels(),
                min_rate: r.min_sample_rate(),
                max_rate: r.max_sample_rate(),
                sample: SampleKind::from_cpal(r.sample_format()),
                buffer_frames: match r.buffer_size() {
                    cpal::SupportedBufferSize::Range { min, max } => Some((*min, *max)),
                    cpal::SupportedBufferSize::Unknown => None,
                },
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(id: &str, name: &str, is_default: bool) -> DeviceInfo {
        DeviceInfo {
            id: id.into(),
            name: name.into(),
            direction: Direction::Output,
            is_default,
            native: None,
            ranges: vec![ConfigRange {
                channels: 2,
                min_rate: 44_100,
                max_rate: 48_000,
                sample: Some(SampleKind::I16),
                buffer_frames: None,
            }],
        }
    }

    #[test]
    fn choices_resolve_by_id_name_and_default() {
        let list = [
            dev("pulseaudio:a", "Speakers", true),
            dev("pulseaudio:b", "Jabra Headset", false),
        ];
        assert_eq!(
            DeviceChoice::SystemDefault.find(&list).unwrap().id,
            "pulseaudio:a"
        );
        assert_eq!(
            DeviceChoice::Id("pulseaudio:b".into())
                .find(&list)
                .unwrap()
                .name,
            "Jabra Headset"
        );
        assert_eq!(
            DeviceChoice::Name("jabra headset".into())
                .find(&list)
                .unwrap()
                .id,
            "pulseaudio:b"
        );
        assert!(
            DeviceChoice::Id("pulseaudio:c".into())
                .find(&list)
                .is_none()
        );
    }

    #[test]
    fn capabilities_are_summarised() {
        let d = dev("pulseaudio:a", "Speakers", true);
        assert_eq!(d.channel_counts(), vec![2]);
        assert_eq!(d.rate_span(), Some((44_100, 48_000)));
        assert_eq!(d.common_rates(), vec![44_100, 48_000]);
        assert!(!d.is_monitor());
    }
}
