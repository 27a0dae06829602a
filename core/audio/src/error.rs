//! Errors, classified by whose fault they are (ARCHITECTURE.md §3.5).

use crate::device::Direction;

/// Whose fault an [`AudioError`] is: decides whether the UI says "check your
/// settings", "check your headset" or "this is a bug".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The caller asked for something that cannot be: an unknown device, a bad
    /// option. Retrying the same call fails the same way.
    Caller,
    /// The sound system or a device failed or refused: unplugged, busy, no
    /// audio server. May succeed later without any change on our side.
    Device,
    /// Vaxel itself is in a state it should not be (the control thread is gone).
    Internal,
}

/// Everything that can go wrong in `vaxel-audio`.
///
/// None of these is ever a panic: a vanished device or an audio server that
/// went away surfaces as one of these, or as an [`crate::AudioEvent`] while a
/// stream keeps running on a fallback device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudioError {
    /// No device of that direction matches the caller's choice, and there is no
    /// default device to fall back to.
    #[error("no {direction} device matches {choice}")]
    NoSuchDevice {
        /// Which side was asked for.
        direction: Direction,
        /// The choice as the caller gave it.
        choice: String,
    },
    /// An option or argument is out of range (for example a zero poll interval).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The audio server or host API is not reachable (no PulseAudio socket, the
    /// server died).
    #[error("audio host unavailable: {0}")]
    HostUnavailable(String),
    /// The device disappeared (unplugged, module unloaded) or never answered.
    #[error("device {device} is not available: {reason}")]
    DeviceUnavailable {
        /// The device's id.
        device: String,
        /// What the host said.
        reason: String,
    },
    /// The device is held by another program or the OS refused access.
    #[error("device {device} is busy or access was denied: {reason}")]
    DeviceBusy {
        /// The device's id.
        device: String,
        /// What the host said.
        reason: String,
    },
    /// The device offers no format this crate can convert (for example only
    /// DSD or 16-bit unsigned samples).
    #[error("device {device} offers no usable format: {reason}")]
    UnsupportedDevice {
        /// The device's id.
        device: String,
        /// Why the formats on offer do not fit.
        reason: String,
    },
    /// Any other failure the host reported.
    #[error("audio backend error: {0}")]
    Backend(String),
    /// The echo canceller / noise suppressor could not be created or failed.
    #[error("audio processing error: {0}")]
    Processing(String),
    /// The control thread is gone; the [`crate::Audio`] handle is unusable.
    #[error("the audio control thread has stopped")]
    Stopped,
}

impl AudioError {
    /// Whose fault this error is.
    pub fn fault(&self) -> Fault {
        match self {
            AudioError::NoSuchDevice { .. } | AudioError::InvalidArgument(_) => Fault::Caller,
            AudioError::HostUnavailable(_)
            | AudioError::DeviceUnavailable { .. }
            | AudioError::DeviceBusy { .. }
            | AudioError::UnsupportedDevice { .. }
            | AudioError::Backend(_)
            | AudioError::Processing(_) => Fault::Device,
            AudioError::Stopped => Fault::Internal,
        }
    }

    /// A short stable code for the UI's `{ code, message }` (ARCHITECTURE.md §3.5).
    pub fn code(&self) -> &'static str {
        match self {
            AudioError::NoSuchDevice { .. } => "audio.no_such_device",
            AudioError::InvalidArgument(_) => "audio.invalid_argument",
            AudioError::HostUnavailable(_) => "audio.host_unavailable",
            AudioError::DeviceUnavailable { .. } => "audio.device_unavailable",
            AudioError::DeviceBusy { .. } => "audio.device_busy",
            AudioError::UnsupportedDevice { .. } => "audio.unsupported_device",
            AudioError::Backend(_) => "audio.backend",
            AudioError::Processing(_) => "audio.processing",
            AudioError::Stopped => "audio.stopped",
        }
    }

    /// Maps a cpal error met while working with `device` onto our classes.
    pub(crate) fn from_cpal(device: &str, err: &cpal::Error) -> Self {
        use cpal::ErrorKind as K;
        let reason = err.to_string();
        match err.kind() {
            K::HostUnavailable => AudioError::HostUnavailable(reason),
            K::DeviceNotAvailable | K::StreamInvalidated | K::DeviceChanged => {
                AudioError::DeviceUnavailable {
                    device: device.to_owned(),
                    reason,
                }
            }
            K::DeviceBusy | K::PermissionDenied => AudioError::DeviceBusy {
                device: device.to_owned(),
                reason,
            },
            K::UnsupportedConfig | K::UnsupportedOperation => AudioError::UnsupportedDevice {
                device: device.to_owned(),
                reason,
            },
            _ => AudioError::Backend(format!("{device}: {reason}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_classified() {
        let e = AudioError::NoSuchDevice {
            direction: Direction::Input,
            choice: "name \"Headset\"".into(),
        };
        assert_eq!(e.fault(), Fault::Caller);
        assert_eq!(e.code(), "audio.no_such_device");
        assert!(e.to_string().contains("input"));
        let gone = AudioError::from_cpal(
            "pulseaudio:x",
            &cpal::Error::with_message(cpal::ErrorKind::DeviceNotAvailable, "unplugged"),
        );
        assert_eq!(gone.fault(), Fault::Device);
        assert_eq!(AudioError::Stopped.fault(), Fault::Internal);
    }
}
