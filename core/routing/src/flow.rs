//! Call flows: a graph of steps joined by outcomes, versioned, validated before
//! activation.
//!
//! # Validation rule
//!
//! [`validate`] accepts a flow version only if:
//! 1. the start step and every step an outcome names exist, and every prompt, schedule set,
//!    hunt group, queue, user and mailbox a step names exists in the [`Config`];
//! 2. every step is reachable from the start;
//! 3. **every step has a way out**: from each step some path of outcomes reaches an *exit*
//!    — a terminal step (Voicemail, Forward, Hangup) or a step that can hand the call to a
//!    person (HuntGroup, Queue: an answer leaves the flow). A cycle is therefore allowed only
//!    if one of its steps has an outcome leading out of it (e.g. a Menu whose choice or
//!    timeout goes to a group), and "no dead end" is the same check;
//! 4. **every cycle waits**: a cycle made only of CheckHours steps would spin without
//!    waiting for any event, so each cycle must contain a step that waits (PlayPrompt,
//!    Menu, HuntGroup, Queue);
//! 5. a Menu has at least one choice, choices are single keys `0-9*#`, and `repeats ≥ 1`.
//!
//! At run time the [`crate::Router`] also caps the transitions of one call
//! ([`crate::router::MAX_TRANSITIONS`]) and counts each Menu's timeouts/invalid keys across
//! visits, so a validated flow terminates for any sequence of events.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::forwarding::Forwarding;
use crate::hunt::{HuntGroup, NoAnswer, UserId};
use crate::schedule::{Schedule, ScheduleSet};

/// A step's name within a flow version.
pub type StepId = String;

/// An internal user or an external number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A user of this office (their forwarding applies).
    Internal(UserId),
    /// A number outside (E.164 or dialable).
    External(String),
}

/// A personal or a shared (group) mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailboxRef {
    /// The user's own box.
    Personal(UserId),
    /// A shared box by name.
    Shared(String),
}

/// Which greeting a mailbox plays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Greeting {
    /// The standard greeting.
    #[default]
    Standard,
    /// The "we are closed" greeting.
    Closed,
    /// The greeting for the owner's presence.
    Presence,
}

/// One step of a call flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Branch on the active schedule of a schedule set.
    CheckHours {
        /// The schedule set.
        schedule_set: String,
        /// Next when open.
        open: StepId,
        /// Next when closed.
        closed: StepId,
        /// Next on a holiday; absent = `closed`.
        #[serde(default)]
        holiday: Option<StepId>,
    },
    /// Play a prompt, then go on.
    PlayPrompt {
        /// The prompt.
        prompt: String,
        /// Language; absent = the office default.
        #[serde(default)]
        language: Option<String>,
        /// Next when it finished.
        next: StepId,
    },
    /// An IVR menu: play, collect one key, branch.
    Menu {
        /// The prompt listing the choices.
        prompt: String,
        /// Language; absent = the office default.
        #[serde(default)]
        language: Option<String>,
        /// Key → next step.
        choices: BTreeMap<String, StepId>,
        /// Seconds to wait for a key after the prompt.
        #[serde(default = "default_menu_timeout")]
        timeout_secs: u32,
        /// Times the menu is offered in total before `on_exhausted` (timeouts and invalid
        /// keys both count, across visits).
        #[serde(default = "default_repeats")]
        repeats: u32,
        /// Prompt played on an invalid key before repeating; absent = just repeat.
        #[serde(default)]
        invalid_prompt: Option<String>,
        /// Next when repeats are used up; absent = hang up.
        #[serde(default)]
        on_exhausted: Option<StepId>,
    },
    /// Ring a hunt group.
    HuntGroup {
        /// The group.
        group: String,
        /// Next when nobody answered; absent = the group's own no-answer destination.
        #[serde(default)]
        no_answer: Option<StepId>,
    },
    /// Put the call in a queue (modelled only; queues come later).
    Queue {
        /// The queue.
        queue: String,
        /// Next on overflow.
        #[serde(default)]
        overflow: Option<StepId>,
    },
    /// Send to voicemail.
    Voicemail {
        /// The box.
        mailbox: MailboxRef,
        /// The greeting.
        #[serde(default)]
        greeting: Greeting,
    },
    /// Forward to a number.
    Forward {
        /// Where.
        target: Target,
    },
    /// Hang up.
    Hangup,
}

fn default_menu_timeout() -> u32 {
    5
}
fn default_repeats() -> u32 {
    3
}

impl Step {
    /// The steps this one can lead to.
    pub fn next_steps(&self) -> Vec<&StepId> {
        match self {
            Step::CheckHours {
                open,
                closed,
                holiday,
                ..
            } => {
                let mut v = vec![open, closed];
                v.extend(holiday.as_ref());
                v
            }
            Step::PlayPrompt { next, .. } => vec![next],
            Step::Menu {
                choices,
                on_exhausted,
                ..
            } => {
                let mut v: Vec<&StepId> = choices.values().collect();
                v.extend(on_exhausted.as_ref());
                v
            }
            Step::HuntGroup { no_answer, .. } => no_answer.iter().collect(),
            Step::Queue { overflow, .. } => overflow.iter().collect(),
            Step::Voicemail { .. } | Step::Forward { .. } | Step::Hangup => vec![],
        }
    }

    /// Whether the call can leave the flow here (terminal, or answered by a person).
    /// A Menu with no `on_exhausted` hangs up when exhausted, so it is an exit too.
    pub fn is_exit(&self) -> bool {
        matches!(
            self,
            Step::Voicemail { .. }
                | Step::Forward { .. }
                | Step::Hangup
                | Step::HuntGroup { .. }
                | Step::Queue { .. }
        ) || matches!(
            self,
            Step::Menu {
                on_exhausted: None,
                ..
            }
        )
    }

    /// Whether the step waits for an event before moving on.
    pub fn waits(&self) -> bool {
        !matches!(self, Step::CheckHours { .. })
    }

    /// Short kind name for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::CheckHours { .. } => "check_hours",
            Step::PlayPrompt { .. } => "play_prompt",
            Step::Menu { .. } => "menu",
            Step::HuntGroup { .. } => "hunt_group",
            Step::Queue { .. } => "queue",
            Step::Voicemail { .. } => "voicemail",
            Step::Forward { .. } => "forward",
            Step::Hangup => "hangup",
        }
    }
}

/// One version of a flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowVersion {
    /// Version number, unique within the flow.
    pub version: u32,
    /// First step.
    pub start: StepId,
    /// Steps by name.
    pub steps: BTreeMap<StepId, Step>,
}

/// A main number's call flow: several versions kept, at most one active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallFlow {
    /// Unique name.
    pub name: String,
    /// The main numbers that run it.
    pub numbers: Vec<String>,
    /// Kept versions.
    pub versions: Vec<FlowVersion>,
    /// The active version; set through [`Config::activate`].
    #[serde(default)]
    pub active: Option<u32>,
}

impl CallFlow {
    /// The active version.
    pub fn active_version(&self) -> Option<&FlowVersion> {
        self.active
            .and_then(|v| self.versions.iter().find(|f| f.version == v))
    }
}

/// A user of the office.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Id (referenced by groups, targets and mailboxes).
    pub id: UserId,
    /// Numbers that reach the user directly (extension, DID).
    #[serde(default)]
    pub numbers: Vec<String>,
    /// Whether the user has a personal mailbox.
    #[serde(default = "yes")]
    pub mailbox: bool,
    /// Forwarding settings.
    #[serde(default)]
    pub forwarding: Forwarding,
}

fn yes() -> bool {
    true
}

/// A queue (model only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueDef {
    /// Unique name.
    pub name: String,
    /// Number used by `*75*queue#`.
    #[serde(default)]
    pub number: Option<String>,
}

/// Everything routing needs, loadable from TOML.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The office's IANA time zone (for feature codes and forwarding).
    #[serde(default = "default_tz")]
    pub time_zone: String,
    /// Default prompt language.
    #[serde(default = "default_language")]
    pub language: String,
    /// Prompt names that exist.
    #[serde(default)]
    pub prompts: BTreeSet<String>,
    /// Schedules.
    #[serde(default)]
    pub schedules: Vec<Schedule>,
    /// Schedule sets (one active schedule each).
    #[serde(default)]
    pub schedule_sets: Vec<ScheduleSet>,
    /// Hunt groups by name.
    #[serde(default)]
    pub groups: BTreeMap<String, HuntGroup>,
    /// Queues.
    #[serde(default)]
    pub queues: Vec<QueueDef>,
    /// Users.
    #[serde(default)]
    pub users: Vec<User>,
    /// Shared mailboxes by name.
    #[serde(default)]
    pub shared_mailboxes: BTreeSet<String>,
    /// Call flows.
    #[serde(default)]
    pub flows: Vec<CallFlow>,
}

fn default_tz() -> String {
    "Europe/Copenhagen".into()
}
fn default_language() -> String {
    "da".into()
}

/// Why a flow version is not valid; names the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// The step at fault (or the flow's start).
    pub step: StepId,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {:?}: {}", self.step, self.reason)
    }
}
impl std::error::Error for ValidationError {}

/// Misuse of [`Config::activate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivateError {
    /// No flow or version by that name/number.
    NotFound,
    /// The version does not validate.
    Invalid(Vec<ValidationError>),
}

impl Config {
    /// Schedule by name.
    pub fn schedule(&self, name: &str) -> Option<&Schedule> {
        self.schedules.iter().find(|s| s.name == name)
    }
    /// The active schedule of a set (`None` = no schedule = closed).
    pub fn active_schedule(&self, set: &str) -> Option<&Schedule> {
        let set = self.schedule_sets.iter().find(|s| s.name == set)?;
        self.schedule(set.active.as_deref()?)
    }
    /// User by id.
    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }
    /// The flow run by a main number.
    pub fn flow_for(&self, number: &str) -> Option<&CallFlow> {
        self.flows
            .iter()
            .find(|f| f.numbers.iter().any(|n| n == number))
    }
    /// The user reached directly by a number.
    pub fn user_for(&self, number: &str) -> Option<&User> {
        self.users
            .iter()
            .find(|u| u.numbers.iter().any(|n| n == number))
    }

    /// Validate version `version` of flow `flow` and make it the active one.
    pub fn activate(&mut self, flow: &str, version: u32) -> Result<(), ActivateError> {
        let f = self
            .flows
            .iter()
            .find(|f| f.name == flow)
            .ok_or(ActivateError::NotFound)?;
        let v = f
            .versions
            .iter()
            .find(|v| v.version == version)
            .ok_or(ActivateError::NotFound)?;
        validate(self, v).map_err(ActivateError::Invalid)?;
        let f = self
            .flows
            .iter_mut()
            .find(|f| f.name == flow)
            .expect("found above");
        f.active = Some(version);
        Ok(())
    }

    fn check_target(&self, t: &Target) -> Option<String> {
        match t {
            Target::Internal(u) if self.user(u).is_none() => {
                Some(format!("user {u:?} does not exist"))
            }
            Target::External(n) if n.is_empty() => Some("external number is empty".into()),
            _ => None,
        }
    }
    fn check_mailbox(&self, m: &MailboxRef) -> Option<String> {
        match m {
            MailboxRef::Personal(u) => match self.user(u) {
                None => Some(format!("mailbox owner {u:?} does not exist")),
                Some(user) if !user.mailbox => Some(format!("user {u:?} has no mailbox")),
                Some(_) => None,
            },
            MailboxRef::Shared(s) if !self.shared_mailboxes.contains(s) => {
                Some(format!("shared mailbox {s:?} does not exist"))
            }
            MailboxRef::Shared(_) => None,
        }
    }
}

/// Check a flow version against the rules in the module docs. All errors are returned.
pub fn validate(cfg: &Config, flow: &FlowVersion) -> Result<(), Vec<ValidationError>> {
    let mut errs = Vec::new();
    let mut err = |step: &str, reason: String| {
        errs.push(ValidationError {
            step: step.into(),
            reason,
        })
    };
    if !flow.steps.contains_key(&flow.start) {
        err(&flow.start, "start step does not exist".into());
        return Err(errs);
    }
    // 1. references
    for (id, step) in &flow.steps {
        for n in step.next_steps() {
            if !flow.steps.contains_key(n) {
                err(id, format!("leads to step {n:?}, which does not exist"));
            }
        }
        let prompt_ok = |p: &String| cfg.prompts.contains(p);
        match step {
            Step::CheckHours { schedule_set, .. } => match cfg
                .schedule_sets
                .iter()
                .find(|s| &s.name == schedule_set)
            {
                None => err(id, format!("schedule set {schedule_set:?} does not exist")),
                Some(set) => {
                    for s in set.schedules.iter().chain(set.active.iter()) {
                        match cfg.schedule(s) {
                            None => err(
                                id,
                                format!("schedule {s:?} of set {schedule_set:?} does not exist"),
                            ),
                            Some(sch) if sch.tz().is_err() => err(
                                id,
                                format!("schedule {s:?} has unknown time zone {:?}", sch.time_zone),
                            ),
                            Some(_) => {}
                        }
                    }
                    if let Some(a) = &set.active
                        && !set.schedules.contains(a)
                    {
                        err(
                            id,
                            format!("active schedule {a:?} is not in set {schedule_set:?}"),
                        );
                    }
                }
            },
            Step::PlayPrompt { prompt, .. } if !prompt_ok(prompt) => {
                err(id, format!("prompt {prompt:?} does not exist"))
            }
            Step::Menu {
                prompt,
                choices,
                repeats,
                invalid_prompt,
                ..
            } => {
                if !prompt_ok(prompt) {
                    err(id, format!("prompt {prompt:?} does not exist"));
                }
                if let Some(p) = invalid_prompt.as_ref().filter(|p| !prompt_ok(p)) {
                    err(id, format!("prompt {p:?} does not exist"));
                }
                if choices.is_empty() {
                    err(id, "menu has no choices".into());
                }
                for k in choices.keys() {
                    if !(k.len() == 1
                        && k.chars()
                            .all(|c| c.is_ascii_digit() || c == '*' || c == '#'))
                    {
                        err(id, format!("choice {k:?} is not a single key 0-9, * or #"));
                    }
                }
                if *repeats == 0 {
                    err(id, "repeats must be at least 1".into());
                }
            }
            Step::HuntGroup { group, no_answer } => match cfg.groups.get(group) {
                None => err(id, format!("hunt group {group:?} does not exist")),
                Some(g) => {
                    for m in &g.members {
                        if cfg.user(&m.user).is_none() {
                            err(
                                id,
                                format!("member {:?} of group {group:?} does not exist", m.user),
                            );
                        }
                    }
                    if g.attempts == 0 {
                        err(id, format!("group {group:?} has zero attempts"));
                    }
                    if no_answer.is_none() {
                        let problem = match &g.no_answer {
                            NoAnswer::Forward { target } => cfg.check_target(target),
                            NoAnswer::Voicemail { mailbox } => cfg.check_mailbox(mailbox),
                            NoAnswer::Prompt { prompt } => (!prompt_ok(prompt))
                                .then(|| format!("prompt {prompt:?} does not exist")),
                        };
                        if let Some(p) = problem {
                            err(id, format!("no-answer destination of group {group:?}: {p}"));
                        }
                    }
                }
            },
            Step::Queue { queue, .. } if !cfg.queues.iter().any(|q| &q.name == queue) => {
                err(id, format!("queue {queue:?} does not exist"))
            }
            Step::Voicemail { mailbox, .. } => {
                if let Some(p) = cfg.check_mailbox(mailbox) {
                    err(id, p);
                }
            }
            Step::Forward { target } => {
                if let Some(p) = cfg.check_target(target) {
                    err(id, p);
                }
            }
            _ => {}
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    // 2. reachability
    let mut seen = BTreeSet::new();
    let mut stack = vec![&flow.start];
    while let Some(s) = stack.pop() {
        if seen.insert(s) {
            stack.extend(flow.steps[s].next_steps());
        }
    }
    for id in flow.steps.keys().filter(|k| !seen.contains(k)) {
        errs.push(ValidationError {
            step: id.clone(),
            reason: "unreachable from the start".into(),
        });
    }
    // 3. a way out: backwards fixpoint from the exits
    let mut can_exit: BTreeSet<&StepId> = flow
        .steps
        .iter()
        .filter(|(_, s)| s.is_exit())
        .map(|(k, _)| k)
        .collect();
    loop {
        let before = can_exit.len();
        for (k, s) in &flow.steps {
            if s.next_steps().iter().any(|n| can_exit.contains(n)) {
                can_exit.insert(k);
            }
        }
        if can_exit.len() == before {
            break;
        }
    }
    for (k, s) in &flow.steps {
        if !can_exit.contains(k) {
            let reason = if s.next_steps().is_empty() {
                "dead end: no way out".to_string()
            } else {
                "loop without exit: no path from here reaches voicemail, forward, hangup, a group or a queue".to_string()
            };
            errs.push(ValidationError {
                step: k.clone(),
                reason,
            });
        }
    }
    // 4. every cycle waits: the subgraph of non-waiting steps must be acyclic
    let instant: BTreeSet<&StepId> = flow
        .steps
        .iter()
        .filter(|(_, s)| !s.waits())
        .map(|(k, _)| k)
        .collect();
    let mut state: BTreeMap<&StepId, u8> = BTreeMap::new(); // 1 = on stack, 2 = done
    fn dfs<'a>(
        n: &'a StepId,
        flow: &'a FlowVersion,
        instant: &BTreeSet<&'a StepId>,
        state: &mut BTreeMap<&'a StepId, u8>,
    ) -> Option<&'a StepId> {
        state.insert(n, 1);
        for m in flow.steps[n].next_steps() {
            if !instant.contains(m) {
                continue;
            }
            match state.get(m) {
                Some(1) => return Some(m),
                Some(_) => {}
                None => {
                    if let Some(c) = dfs(m, flow, instant, state) {
                        return Some(c);
                    }
                }
            }
        }
        state.insert(n, 2);
        None
    }
    for n in &instant {
        if !state.contains_key(n)
            && let Some(c) = dfs(n, flow, &instant, &mut state)
        {
            errs.push(ValidationError {
                step: c.clone(),
                reason: "loop of check_hours steps that never waits for an event".into(),
            });
            break;
        }
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}
