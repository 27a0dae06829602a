//! Helpers shared by the integration tests and the mouth-to-ear example: a private
//! PulseAudio daemon (adapted from vaxel-audio's tests) and the measurement itself.
#![allow(dead_code)]

pub mod mouth_to_ear;
