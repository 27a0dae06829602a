//! Per-user forwarding: unconditional, on busy, on no answer after T seconds, and
//! time-controlled by a standard week.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::clock::Hm;
use crate::flow::Target;
use crate::schedule::Week;

/// Forward when unanswered for `after_secs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoAnswerForward {
    /// Where.
    pub target: Target,
    /// After how long.
    #[serde(default = "default_after")]
    pub after_secs: u32,
}

fn default_after() -> u32 {
    20
}

/// Outside the standard week's intervals (in the office zone), forward to `target`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimedForward {
    /// The hours the user takes calls.
    pub week: Week,
    /// Where calls go outside them.
    pub target: Target,
}

/// A user's forwarding settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forwarding {
    /// Always.
    #[serde(default)]
    pub unconditional: Option<Target>,
    /// When busy.
    #[serde(default)]
    pub busy: Option<Target>,
    /// When not answered in time.
    #[serde(default)]
    pub no_answer: Option<NoAnswerForward>,
    /// By a standard week.
    #[serde(default)]
    pub timed: Option<TimedForward>,
}

/// What to do with a direct call to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward right away.
    Forward(Target),
    /// Ring the user's devices; on no answer after `.0` seconds forward to `.1`.
    Ring(Option<(u32, Target)>),
    /// The user is busy and has no busy forwarding.
    Busy,
}

/// Decide, in precedence order: unconditional, time-controlled (outside the week), busy,
/// then ring (with the no-answer forward, if any).
pub fn decide(fwd: &Forwarding, tz: &TimeZone, now: Timestamp, busy: bool) -> Decision {
    if let Some(t) = &fwd.unconditional {
        return Decision::Forward(t.clone());
    }
    if let Some(timed) = &fwd.timed {
        let local = now.to_zoned(tz.clone()).datetime();
        if !timed
            .week
            .contains(local.date().weekday(), Hm::of(local.time()))
        {
            return Decision::Forward(timed.target.clone());
        }
    }
    if busy {
        return match &fwd.busy {
            Some(t) => Decision::Forward(t.clone()),
            None => Decision::Busy,
        };
    }
    Decision::Ring(
        fwd.no_answer
            .as_ref()
            .map(|n| (n.after_secs, n.target.clone())),
    )
}
