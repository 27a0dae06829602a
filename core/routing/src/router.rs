//! The router state machine: `handle(now, event) -> Vec<Action>` per call.

use std::collections::BTreeMap;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use rand_core::RngCore;

use crate::flow::{Config, Greeting, MailboxRef, Step, StepId, Target};
use crate::forwarding::{self, Decision};
use crate::hunt::{self, CallerDisplay, GroupState, MemberState, NoAnswer, UserId};
use crate::schedule::{self, Status};

/// A call, named by the engine.
pub type CallId = u64;
/// A ringing leg, named by the router.
pub type LegId = u64;
/// A timer, named by the router.
pub type TimerId = u64;

/// Step transitions one call may make before the router hangs up (the run-time backstop of
/// the validation rules: a caller pressing the same looping key forever still ends).
pub const MAX_TRANSITIONS: u32 = 64;

/// Ring time of a direct call to a user without no-answer forwarding, before voicemail.
pub const DIRECT_RING_SECS: u32 = 30;

/// Why a leg did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegFailure {
    /// Busy.
    Busy,
    /// Rang out / declined.
    NoAnswer,
    /// Not registered / unreachable.
    Unreachable,
}

/// Input from the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new call for `dialed` from `caller`.
    CallArrived {
        /// Engine's id.
        call: CallId,
        /// Dialled number (main number or a user's number).
        dialed: String,
        /// A-number.
        caller: String,
    },
    /// A leg answered.
    LegAnswered {
        /// Call.
        call: CallId,
        /// Leg.
        leg: LegId,
    },
    /// A leg failed.
    LegFailed {
        /// Call.
        call: CallId,
        /// Leg.
        leg: LegId,
        /// Why.
        reason: LegFailure,
    },
    /// DTMF from the caller.
    DigitsReceived {
        /// Call.
        call: CallId,
        /// Keys.
        digits: String,
    },
    /// The last prompt played to the end.
    PromptFinished {
        /// Call.
        call: CallId,
    },
    /// A timer started with [`Action::StartTimer`] fired.
    TimerFired {
        /// Call.
        call: CallId,
        /// Timer.
        timer: TimerId,
    },
    /// The caller hung up.
    CallerHungUp {
        /// Call.
        call: CallId,
    },
    /// A user's busy/presence/idle state changed.
    MemberStateChanged {
        /// Who.
        user: UserId,
        /// Now.
        state: MemberState,
    },
}

/// A leg to ring: all devices of `user`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    /// Router's leg id.
    pub leg: LegId,
    /// Whose devices.
    pub user: UserId,
}

/// Output for the engine to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ring these legs, showing `display`.
    Ring {
        /// Call.
        call: CallId,
        /// Legs.
        legs: Vec<Leg>,
        /// What the phones show.
        display: CallerDisplay,
    },
    /// Stop ringing these legs.
    CancelLegs {
        /// Call.
        call: CallId,
        /// Legs.
        legs: Vec<LegId>,
    },
    /// Connect the caller with this leg.
    Bridge {
        /// Call.
        call: CallId,
        /// Leg.
        leg: LegId,
    },
    /// Play a prompt; answer with [`Event::PromptFinished`].
    PlayPrompt {
        /// Call.
        call: CallId,
        /// Prompt.
        prompt: String,
        /// Language.
        language: String,
    },
    /// Collect up to `max` keys (delivered with [`Event::DigitsReceived`]).
    CollectDigits {
        /// Call.
        call: CallId,
        /// Max keys.
        max: u8,
    },
    /// Fire [`Event::TimerFired`] at `at`.
    StartTimer {
        /// Call.
        call: CallId,
        /// Timer.
        timer: TimerId,
        /// When.
        at: Timestamp,
    },
    /// Send to voicemail.
    SendToVoicemail {
        /// Call.
        call: CallId,
        /// Box.
        mailbox: MailboxRef,
        /// Greeting.
        greeting: Greeting,
    },
    /// Forward.
    Forward {
        /// Call.
        call: CallId,
        /// Where.
        target: Target,
    },
    /// Put in a queue (queues come later).
    Queue {
        /// Call.
        call: CallId,
        /// Queue.
        queue: String,
    },
    /// Hang up.
    Hangup {
        /// Call.
        call: CallId,
    },
    /// Record an IVR key press with the call.
    RecordChoice {
        /// Call.
        call: CallId,
        /// Menu step.
        menu: StepId,
        /// Key.
        digit: char,
        /// Whether it was one of the menu's choices.
        valid: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Wait {
    /// Prompt of a PlayPrompt step; then go to `next`.
    Prompt(StepId),
    /// Menu prompt playing (keys accepted).
    MenuPrompt,
    /// Menu waiting for a key until `timer`.
    MenuKey(TimerId),
    /// Invalid-key prompt playing, then the menu again.
    MenuInvalid,
    /// A no-answer prompt, then hang up.
    PromptThenHangup,
    /// Ringing a group.
    Hunt(HuntRun),
    /// Ringing a user directly.
    Direct(DirectRun),
    /// Handed over (answered, voicemail, forwarded, queued, hung up).
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct HuntRun {
    group: String,
    step_no_answer: Option<StepId>,
    pass: u32,
    pending: Vec<UserId>,
    ringing: Vec<Leg>,
    ring_timer: TimerId,
    deadline: Option<Timestamp>,
    total_timer: Option<TimerId>,
    display: CallerDisplay,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct DirectRun {
    user: UserId,
    leg: LegId,
    timer: TimerId,
    on_no_answer: Option<Target>,
}

#[derive(Debug, Clone)]
struct CallState {
    caller: String,
    flow: Option<(String, u32)>,
    step: Option<StepId>,
    wait: Wait,
    transitions: u32,
    menu_failures: BTreeMap<StepId, u32>,
}

/// The router: owns the configuration, member and group state, and every call's progress.
pub struct Router<R: RngCore> {
    cfg: Config,
    rng: R,
    members: BTreeMap<UserId, MemberState>,
    groups: BTreeMap<String, GroupState>,
    calls: BTreeMap<CallId, CallState>,
    next_id: u64,
}

impl<R: RngCore> Router<R> {
    /// A router over `cfg`, drawing the random strategy from `rng`.
    pub fn new(cfg: Config, rng: R) -> Self {
        Router {
            cfg,
            rng,
            members: BTreeMap::new(),
            groups: BTreeMap::new(),
            calls: BTreeMap::new(),
            next_id: 1,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Replaces the configuration (a changed flow, group or forwarding) keeping
    /// member states, group rotation and calls in progress. A call continues on the
    /// flow version it started with while that version exists; if it was removed,
    /// the call is hung up at its next step.
    pub fn set_config(&mut self, cfg: Config) {
        self.cfg = cfg;
    }

    /// A group's memory (rotation).
    pub fn group_state(&self, group: &str) -> GroupState {
        self.groups.get(group).cloned().unwrap_or_default()
    }

    /// Calls still in progress.
    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    /// Whether `call` has been handed over or ended (no further routing decisions).
    pub fn is_finished(&self, call: CallId) -> bool {
        self.calls.get(&call).is_none_or(|c| c.wait == Wait::Done)
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Feed one event at wall time `now` (used both for timers and for opening hours);
    /// returns the actions to carry out, in order.
    pub fn handle(&mut self, now: Timestamp, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::CallArrived {
                call,
                dialed,
                caller,
            } => self.arrived(now, call, dialed, caller, &mut out),
            Event::MemberStateChanged { user, state } => {
                self.members.insert(user, state);
            }
            Event::CallerHungUp { call } => {
                if let Some(c) = self.calls.remove(&call) {
                    let legs: Vec<LegId> = match c.wait {
                        Wait::Hunt(h) => h.ringing.iter().map(|l| l.leg).collect(),
                        Wait::Direct(d) => vec![d.leg],
                        _ => vec![],
                    };
                    if !legs.is_empty() {
                        out.push(Action::CancelLegs { call, legs });
                    }
                }
            }
            Event::PromptFinished { call } => self.prompt_finished(now, call, &mut out),
            Event::DigitsReceived { call, digits } => self.digits(now, call, digits, &mut out),
            Event::TimerFired { call, timer } => self.timer(now, call, timer, &mut out),
            Event::LegAnswered { call, leg } => self.answered(call, leg, &mut out),
            Event::LegFailed { call, leg, reason } => self.failed(now, call, leg, reason, &mut out),
        }
        out
    }

    fn arrived(
        &mut self,
        now: Timestamp,
        call: CallId,
        dialed: String,
        caller: String,
        out: &mut Vec<Action>,
    ) {
        if let Some(flow) = self.cfg.flow_for(&dialed) {
            let Some(v) = flow.active_version() else {
                out.push(Action::Hangup { call });
                return;
            };
            let (name, version, start) = (flow.name.clone(), v.version, v.start.clone());
            self.calls.insert(
                call,
                CallState {
                    caller,
                    flow: Some((name, version)),
                    step: None,
                    wait: Wait::Done,
                    transitions: 0,
                    menu_failures: BTreeMap::new(),
                },
            );
            self.enter(now, call, start, out);
        } else if let Some(user) = self.cfg.user_for(&dialed).cloned() {
            self.calls.insert(
                call,
                CallState {
                    caller: caller.clone(),
                    flow: None,
                    step: None,
                    wait: Wait::Done,
                    transitions: 0,
                    menu_failures: BTreeMap::new(),
                },
            );
            let tz = TimeZone::get(&self.cfg.time_zone).unwrap_or(TimeZone::UTC);
            let busy = self.members.get(&user.id).is_some_and(|s| s.busy);
            match forwarding::decide(&user.forwarding, &tz, now, busy) {
                Decision::Forward(t) => self.finish(call, Action::Forward { call, target: t }, out),
                Decision::Busy => self.user_unavailable(call, &user.id, out),
                Decision::Ring(fwd) => {
                    let (secs, on_no_answer) = match fwd {
                        Some((s, t)) => (s, Some(t)),
                        None => (DIRECT_RING_SECS, None),
                    };
                    let leg = self.id();
                    let timer = self.id();
                    out.push(Action::Ring {
                        call,
                        legs: vec![Leg {
                            leg,
                            user: user.id.clone(),
                        }],
                        display: hunt::caller_display(&caller, None),
                    });
                    out.push(Action::StartTimer {
                        call,
                        timer,
                        at: add_secs(now, secs),
                    });
                    self.set_wait(
                        call,
                        Wait::Direct(DirectRun {
                            user: user.id,
                            leg,
                            timer,
                            on_no_answer,
                        }),
                    );
                }
            }
        } else {
            out.push(Action::Hangup { call });
        }
    }

    fn user_unavailable(&mut self, call: CallId, user: &str, out: &mut Vec<Action>) {
        let has_box = self.cfg.user(user).is_some_and(|u| u.mailbox);
        let a = if has_box {
            Action::SendToVoicemail {
                call,
                mailbox: MailboxRef::Personal(user.into()),
                greeting: Greeting::Standard,
            }
        } else {
            Action::Hangup { call }
        };
        self.finish(call, a, out);
    }

    fn set_wait(&mut self, call: CallId, w: Wait) {
        if let Some(c) = self.calls.get_mut(&call) {
            c.wait = w;
        }
    }

    fn finish(&mut self, call: CallId, a: Action, out: &mut Vec<Action>) {
        out.push(a);
        self.set_wait(call, Wait::Done);
    }

    fn step_of(&self, call: CallId, id: &str) -> Option<Step> {
        let c = self.calls.get(&call)?;
        let (flow, version) = c.flow.as_ref()?;
        let f = self.cfg.flows.iter().find(|f| &f.name == flow)?;
        let v = f.versions.iter().find(|v| v.version == *version)?;
        v.steps.get(id).cloned()
    }

    fn enter(&mut self, now: Timestamp, call: CallId, id: StepId, out: &mut Vec<Action>) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.transitions += 1;
        if c.transitions > MAX_TRANSITIONS {
            self.finish(call, Action::Hangup { call }, out);
            return;
        }
        c.step = Some(id.clone());
        let Some(step) = self.step_of(call, &id) else {
            self.finish(call, Action::Hangup { call }, out);
            return;
        };
        let lang =
            |l: &Option<String>, cfg: &Config| l.clone().unwrap_or_else(|| cfg.language.clone());
        match step {
            Step::CheckHours {
                schedule_set,
                open,
                closed,
                holiday,
            } => {
                let status = schedule::is_open(self.cfg.active_schedule(&schedule_set), now)
                    .unwrap_or(Status::Closed);
                let next = match status {
                    Status::Open | Status::Exception { open: true, .. } => open,
                    Status::Holiday(_) => holiday.unwrap_or(closed),
                    Status::Closed | Status::Exception { open: false, .. } => closed,
                };
                self.enter(now, call, next, out);
            }
            Step::PlayPrompt {
                prompt,
                language,
                next,
            } => {
                out.push(Action::PlayPrompt {
                    call,
                    prompt,
                    language: lang(&language, &self.cfg),
                });
                self.set_wait(call, Wait::Prompt(next));
            }
            Step::Menu {
                prompt, language, ..
            } => {
                out.push(Action::PlayPrompt {
                    call,
                    prompt,
                    language: lang(&language, &self.cfg),
                });
                out.push(Action::CollectDigits { call, max: 1 });
                self.set_wait(call, Wait::MenuPrompt);
            }
            Step::HuntGroup { group, no_answer } => {
                self.start_hunt(now, call, group, no_answer, out)
            }
            Step::Queue { queue, .. } => self.finish(call, Action::Queue { call, queue }, out),
            Step::Voicemail { mailbox, greeting } => self.finish(
                call,
                Action::SendToVoicemail {
                    call,
                    mailbox,
                    greeting,
                },
                out,
            ),
            Step::Forward { target } => self.finish(call, Action::Forward { call, target }, out),
            Step::Hangup => self.finish(call, Action::Hangup { call }, out),
        }
    }

    fn prompt_finished(&mut self, now: Timestamp, call: CallId, out: &mut Vec<Action>) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        match c.wait.clone() {
            Wait::Prompt(next) => self.enter(now, call, next, out),
            Wait::MenuPrompt => {
                let Some(Step::Menu { timeout_secs, .. }) =
                    c.step.clone().and_then(|s| self.step_of(call, &s))
                else {
                    return;
                };
                let timer = self.id();
                out.push(Action::StartTimer {
                    call,
                    timer,
                    at: add_secs(now, timeout_secs),
                });
                self.set_wait(call, Wait::MenuKey(timer));
            }
            Wait::MenuInvalid => {
                let step = c.step.clone().expect("in a menu");
                self.replay_menu(now, call, step, out);
            }
            Wait::PromptThenHangup => self.finish(call, Action::Hangup { call }, out),
            _ => {}
        }
    }

    fn replay_menu(&mut self, now: Timestamp, call: CallId, step: StepId, out: &mut Vec<Action>) {
        // Re-entering counts as a transition too (bounded by MAX_TRANSITIONS).
        self.enter(now, call, step, out);
    }

    fn digits(&mut self, now: Timestamp, call: CallId, digits: String, out: &mut Vec<Action>) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if !matches!(c.wait, Wait::MenuPrompt | Wait::MenuKey(_)) {
            return;
        }
        let Some(key) = digits.chars().next() else {
            return;
        };
        let menu = c.step.clone().expect("in a menu");
        let Some(Step::Menu { choices, .. }) = self.step_of(call, &menu) else {
            return;
        };
        let next = choices.get(&key.to_string()).cloned();
        out.push(Action::RecordChoice {
            call,
            menu: menu.clone(),
            digit: key,
            valid: next.is_some(),
        });
        match next {
            Some(n) => self.enter(now, call, n, out),
            None => self.menu_failed(now, call, menu, true, out),
        }
    }

    fn menu_failed(
        &mut self,
        now: Timestamp,
        call: CallId,
        menu: StepId,
        invalid: bool,
        out: &mut Vec<Action>,
    ) {
        let Some(Step::Menu {
            repeats,
            on_exhausted,
            invalid_prompt,
            language,
            ..
        }) = self.step_of(call, &menu)
        else {
            return;
        };
        let c = self.calls.get_mut(&call).expect("exists");
        let f = c.menu_failures.entry(menu.clone()).or_insert(0);
        *f += 1;
        if *f >= repeats {
            match on_exhausted {
                Some(n) => self.enter(now, call, n, out),
                None => self.finish(call, Action::Hangup { call }, out),
            }
            return;
        }
        match invalid_prompt.filter(|_| invalid) {
            Some(p) => {
                let language = language.unwrap_or_else(|| self.cfg.language.clone());
                out.push(Action::PlayPrompt {
                    call,
                    prompt: p,
                    language,
                });
                self.set_wait(call, Wait::MenuInvalid);
            }
            None => self.replay_menu(now, call, menu, out),
        }
    }

    fn timer(&mut self, now: Timestamp, call: CallId, timer: TimerId, out: &mut Vec<Action>) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        match c.wait.clone() {
            Wait::MenuKey(t) if t == timer => {
                let menu = c.step.clone().expect("in a menu");
                self.menu_failed(now, call, menu, false, out);
            }
            Wait::Hunt(h) if h.total_timer == Some(timer) => {
                if !h.ringing.is_empty() {
                    out.push(Action::CancelLegs {
                        call,
                        legs: h.ringing.iter().map(|l| l.leg).collect(),
                    });
                }
                self.hunt_no_answer(now, call, h, out);
            }
            Wait::Hunt(h) if h.ring_timer == timer => {
                if !h.ringing.is_empty() {
                    out.push(Action::CancelLegs {
                        call,
                        legs: h.ringing.iter().map(|l| l.leg).collect(),
                    });
                }
                let run = HuntRun {
                    ringing: vec![],
                    ..h
                };
                if run.deadline.is_some_and(|d| now >= d) {
                    // The ring timer was cut to the overall deadline: time is up.
                    self.hunt_no_answer(now, call, run, out);
                } else {
                    self.hunt_next(now, call, run, out);
                }
            }
            Wait::Direct(d) if d.timer == timer => {
                out.push(Action::CancelLegs {
                    call,
                    legs: vec![d.leg],
                });
                match d.on_no_answer {
                    Some(t) => self.finish(call, Action::Forward { call, target: t }, out),
                    None => self.user_unavailable(call, &d.user, out),
                }
            }
            _ => {}
        }
    }

    fn answered(&mut self, call: CallId, leg: LegId, out: &mut Vec<Action>) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        match c.wait.clone() {
            Wait::Hunt(h) => {
                let Some(l) = h.ringing.iter().find(|l| l.leg == leg) else {
                    return;
                };
                let others: Vec<LegId> = h
                    .ringing
                    .iter()
                    .filter(|o| o.leg != leg)
                    .map(|o| o.leg)
                    .collect();
                if !others.is_empty() {
                    out.push(Action::CancelLegs { call, legs: others });
                }
                self.groups
                    .entry(h.group.clone())
                    .or_default()
                    .last_answered = Some(l.user.clone());
                self.finish(call, Action::Bridge { call, leg }, out);
            }
            Wait::Direct(d) if d.leg == leg => self.finish(call, Action::Bridge { call, leg }, out),
            _ => {}
        }
    }

    fn failed(
        &mut self,
        now: Timestamp,
        call: CallId,
        leg: LegId,
        reason: LegFailure,
        out: &mut Vec<Action>,
    ) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        match c.wait.clone() {
            Wait::Hunt(mut h) => {
                let before = h.ringing.len();
                h.ringing.retain(|l| l.leg != leg);
                if h.ringing.len() == before {
                    return;
                }
                if h.ringing.is_empty() {
                    self.hunt_next(now, call, h, out);
                } else {
                    self.set_wait(call, Wait::Hunt(h));
                }
            }
            Wait::Direct(d) if d.leg == leg => {
                let user = self.cfg.user(&d.user).cloned();
                let busy_fwd = user.as_ref().and_then(|u| u.forwarding.busy.clone());
                match (reason, busy_fwd, d.on_no_answer) {
                    (LegFailure::Busy, Some(t), _) => {
                        self.finish(call, Action::Forward { call, target: t }, out)
                    }
                    (LegFailure::NoAnswer, _, Some(t)) => {
                        self.finish(call, Action::Forward { call, target: t }, out)
                    }
                    _ => self.user_unavailable(call, &d.user, out),
                }
            }
            _ => {}
        }
    }

    fn start_hunt(
        &mut self,
        now: Timestamp,
        call: CallId,
        group: String,
        no_answer: Option<StepId>,
        out: &mut Vec<Action>,
    ) {
        let Some(g) = self.cfg.groups.get(&group) else {
            self.finish(call, Action::Hangup { call }, out);
            return;
        };
        let caller = self.calls[&call].caller.clone();
        let display = hunt::caller_display(&caller, Some(g));
        let (deadline, total_timer) = match g.max_total_secs {
            Some(s) => {
                let t = self.id();
                let at = add_secs(now, s);
                out.push(Action::StartTimer { call, timer: t, at });
                (Some(at), Some(t))
            }
            None => (None, None),
        };
        let run = HuntRun {
            group,
            step_no_answer: no_answer,
            pass: 0,
            pending: vec![],
            ringing: vec![],
            ring_timer: 0,
            deadline,
            total_timer,
            display,
        };
        self.start_pass(now, call, run, out);
    }

    fn start_pass(
        &mut self,
        now: Timestamp,
        call: CallId,
        mut run: HuntRun,
        out: &mut Vec<Action>,
    ) {
        let g = self.cfg.groups[&run.group].clone();
        if run.pass >= g.attempts {
            return self.hunt_no_answer(now, call, run, out);
        }
        run.pass += 1;
        let gs = self.groups.get(&run.group).cloned().unwrap_or_default();
        run.pending = hunt::order(&g, &self.members, &gs, &mut self.rng);
        if run.pending.is_empty() {
            return self.hunt_no_answer(now, call, run, out);
        }
        self.hunt_next(now, call, run, out);
    }

    /// Ring the next member(s) of the pass, or start the next pass.
    fn hunt_next(&mut self, now: Timestamp, call: CallId, mut run: HuntRun, out: &mut Vec<Action>) {
        let g = self.cfg.groups[&run.group].clone();
        let mut batch = Vec::new();
        while let Some(u) = (!run.pending.is_empty()).then(|| run.pending.remove(0)) {
            // Re-check eligibility at ring time: a member may have become busy or absent.
            let Some(m) = g.members.iter().find(|m| m.user == u) else {
                continue;
            };
            if !hunt::eligible(&g, m, self.members.get(&u)) {
                continue;
            }
            batch.push(m.clone());
            if g.strategy != hunt::Strategy::Simultaneous {
                break;
            }
        }
        if batch.is_empty() {
            return self.start_pass(now, call, run, out);
        }
        let secs = if g.strategy == hunt::Strategy::Simultaneous {
            g.ring_secs
        } else {
            g.ring_secs_of(&batch[0])
        };
        let mut at = add_secs(now, secs);
        if let Some(d) = run.deadline {
            at = at.min(d);
        }
        let legs: Vec<Leg> = batch
            .into_iter()
            .map(|m| Leg {
                leg: self.id(),
                user: m.user,
            })
            .collect();
        run.ring_timer = self.id();
        out.push(Action::Ring {
            call,
            legs: legs.clone(),
            display: run.display.clone(),
        });
        out.push(Action::StartTimer {
            call,
            timer: run.ring_timer,
            at,
        });
        run.ringing = legs;
        self.set_wait(call, Wait::Hunt(run));
    }

    fn hunt_no_answer(
        &mut self,
        now: Timestamp,
        call: CallId,
        run: HuntRun,
        out: &mut Vec<Action>,
    ) {
        if let Some(step) = run.step_no_answer {
            return self.enter(now, call, step, out);
        }
        let g = &self.cfg.groups[&run.group];
        match g.no_answer.clone() {
            NoAnswer::Forward { target } => {
                self.finish(call, Action::Forward { call, target }, out)
            }
            NoAnswer::Voicemail { mailbox } => self.finish(
                call,
                Action::SendToVoicemail {
                    call,
                    mailbox,
                    greeting: Greeting::Standard,
                },
                out,
            ),
            NoAnswer::Prompt { prompt } => {
                out.push(Action::PlayPrompt {
                    call,
                    prompt,
                    language: self.cfg.language.clone(),
                });
                self.set_wait(call, Wait::PromptThenHangup);
            }
        }
    }
}

fn add_secs(now: Timestamp, secs: u32) -> Timestamp {
    now.saturating_add(SignedDuration::from_secs(i64::from(secs)))
        .expect("no calendar units")
}
