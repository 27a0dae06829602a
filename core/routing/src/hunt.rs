//! Hunt groups and the caller display of group calls.
//!
//! A strategy is an **eligibility filter** ([`eligible`]) plus a **sort key** ([`order`]):
//! who may ring at all (active, not excluded by presence, not busy unless allowed), then in
//! which order. The [`crate::Router`] walks that order one member (or, simultaneous, up to
//! [`SIMULTANEOUS_CAP`] members) at a time, each for the member's ring time, for at most
//! `attempts` passes or `max_total_secs`, then sends the call to the no-answer destination.

use std::collections::BTreeMap;

use jiff::Timestamp;
use rand_core::RngCore;
use serde::{Deserialize, Serialize};

use crate::flow::{MailboxRef, Target};

/// A user id (extension or account name).
pub type UserId = String;

/// Simultaneous ring rings at most this many members at once.
pub const SIMULTANEOUS_CAP: usize = 10;

/// Order in which members ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Always from the first member, in list order.
    Fixed,
    /// Start with the member after the one who last answered a call from this group.
    Rotating,
    /// All eligible members at once (at most [`SIMULTANEOUS_CAP`]).
    Simultaneous,
    /// The member idle longest first (never busy counts as idle since forever).
    LongestIdle,
    /// A random order, drawn from the injected RNG per pass.
    Random,
}

/// A group member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// The user.
    pub user: UserId,
    /// Active members ring; passive ones are logged out of the group.
    #[serde(default = "yes")]
    pub active: bool,
    /// Ring time for this member; absent = the group's.
    #[serde(default)]
    pub ring_secs: Option<u32>,
}

fn yes() -> bool {
    true
}

/// Where a call goes when nobody answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum NoAnswer {
    /// Forward to a number.
    Forward {
        /// Where.
        target: Target,
    },
    /// A voicemail box.
    Voicemail {
        /// Which.
        mailbox: MailboxRef,
    },
    /// Play a prompt, then hang up.
    Prompt {
        /// Which.
        prompt: String,
    },
}

/// A hunt group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HuntGroup {
    /// Numeric group id shown to members as "A-number#id".
    pub id: u32,
    /// Shown to members with the call.
    pub name: String,
    /// Ring order.
    pub strategy: Strategy,
    /// Members in list order.
    pub members: Vec<Member>,
    /// Default ring time per member.
    #[serde(default = "default_ring")]
    pub ring_secs: u32,
    /// Passes through the member list before giving up (at least 1).
    #[serde(default = "one")]
    pub attempts: u32,
    /// Overall time limit from the first ring; absent = only `attempts` limits.
    #[serde(default)]
    pub max_total_secs: Option<u32>,
    /// Skip members busy on another call (default); false rings them anyway (call waiting).
    #[serde(default = "yes")]
    pub skip_busy: bool,
    /// Where unanswered calls go; the flow's `no_answer` step may override.
    pub no_answer: NoAnswer,
}

fn default_ring() -> u32 {
    20
}
fn one() -> u32 {
    1
}

impl HuntGroup {
    /// The ring time of `member`.
    pub fn ring_secs_of(&self, member: &Member) -> u32 {
        member.ring_secs.unwrap_or(self.ring_secs)
    }
}

/// What the router knows about a user right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberState {
    /// On another call.
    pub busy: bool,
    /// Presence excludes group calls (at lunch, in a meeting…). Minimal now: one flag.
    pub excluded: bool,
    /// Idle since (end of the last call); `None` = no call seen, idle the longest.
    pub idle_since: Option<Timestamp>,
}

/// Per-group memory: the rotating strategy's last answerer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupState {
    /// Who answered the group's last call.
    pub last_answered: Option<UserId>,
}

/// The eligibility filter: active, not excluded by presence, not busy (if the group skips busy).
pub fn eligible(group: &HuntGroup, member: &Member, state: Option<&MemberState>) -> bool {
    let st = state.cloned().unwrap_or_default();
    member.active && !st.excluded && !(group.skip_busy && st.busy)
}

/// The members to ring in one pass, in order (the sort key of the strategy applied to the
/// eligible members). Simultaneous returns at most [`SIMULTANEOUS_CAP`], to ring together.
pub fn order(
    group: &HuntGroup,
    states: &BTreeMap<UserId, MemberState>,
    gstate: &GroupState,
    rng: &mut dyn RngCore,
) -> Vec<UserId> {
    let mut list: Vec<(usize, &Member)> = group
        .members
        .iter()
        .enumerate()
        .filter(|(_, m)| eligible(group, m, states.get(&m.user)))
        .collect();
    match group.strategy {
        Strategy::Fixed => {}
        Strategy::Simultaneous => list.truncate(SIMULTANEOUS_CAP),
        Strategy::Rotating => {
            let n = group.members.len();
            let start = gstate
                .last_answered
                .as_ref()
                .and_then(|u| group.members.iter().position(|m| &m.user == u))
                .map_or(0, |i| i + 1);
            list.sort_by_key(|(i, _)| (i + n - start % n.max(1)) % n.max(1));
        }
        Strategy::LongestIdle => {
            // None (never seen busy) sorts before any timestamp; ties keep list order.
            list.sort_by_key(|(i, m)| (states.get(&m.user).and_then(|s| s.idle_since), *i));
        }
        Strategy::Random => {
            let mut keyed: Vec<(u64, (usize, &Member))> =
                list.into_iter().map(|e| (rng.next_u64(), e)).collect();
            keyed.sort_by_key(|(k, (i, _))| (*k, *i));
            list = keyed.into_iter().map(|(_, e)| e).collect();
        }
    }
    list.into_iter().map(|(_, m)| m.user.clone()).collect()
}

/// What a ringing phone shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerDisplay {
    /// The number shown: "A-number#groupId" through a group, else the plain A-number.
    pub number: String,
    /// The group's name, for group calls.
    pub group_name: Option<String>,
}

/// The caller display for a call from `a_number`, through `group` or direct (`None`).
pub fn caller_display(a_number: &str, group: Option<&HuntGroup>) -> CallerDisplay {
    match group {
        Some(g) => CallerDisplay {
            number: format!("{a_number}#{}", g.id),
            group_name: Some(g.name.clone()),
        },
        None => CallerDisplay {
            number: a_number.to_string(),
            group_name: None,
        },
    }
}
