//! Echo cancellation for a call's device loop, whether or not this build has it: with
//! the `aec` feature [`CallEcho::new`] gives WebRTC's canceller ([`crate::aec`]), without
//! it `None`, so callers need no feature of their own.

use crate::format::Frame;

/// One call's echo canceller: [`CallEcho::near_end`] on every microphone frame before
/// it is sent, [`CallEcho::far_end`] on every frame played to the speaker, both on the
/// media thread.
#[derive(Debug)]
pub struct CallEcho {
    #[cfg(feature = "aec")]
    inner: crate::aec::EchoCanceller,
}

impl CallEcho {
    /// Whether this build can cancel echo (the `aec` feature).
    pub const AVAILABLE: bool = cfg!(feature = "aec");

    /// A canceller with the default options (echo cancellation, moderate noise
    /// suppression, high-pass filter), or `None` when this build has none or the
    /// library refused.
    pub fn new() -> Option<CallEcho> {
        #[cfg(feature = "aec")]
        {
            match crate::aec::EchoCanceller::new(crate::aec::AecOptions::default()) {
                Ok(inner) => Some(CallEcho { inner }),
                Err(e) => {
                    tracing::warn!("echo cancellation unavailable: {e}");
                    None
                }
            }
        }
        #[cfg(not(feature = "aec"))]
        {
            None
        }
    }

    /// A frame that goes to the speaker (the echo's source).
    pub fn far_end(&mut self, frame: &Frame) {
        #[cfg(feature = "aec")]
        if let Err(e) = self.inner.far_end(frame) {
            tracing::debug!("echo canceller far end: {e}");
        }
        #[cfg(not(feature = "aec"))]
        let _ = frame;
    }

    /// A microphone frame, cleaned in place.
    pub fn near_end(&mut self, frame: &mut Frame) {
        #[cfg(feature = "aec")]
        if let Err(e) = self.inner.near_end(frame) {
            tracing::debug!("echo canceller near end: {e}");
        }
        #[cfg(not(feature = "aec"))]
        let _ = frame;
    }
}
