//! Helpers shared by the integration tests and the examples: a private
//! PulseAudio daemon with a null sink, and speech rendered by espeak-ng.
#![allow(dead_code)]

pub mod speech;
