//! The registration client (RFC 3261 §10.2, with the back-off of RFC 5626 §4.5).
//!
//! A [`Registration`] keeps one Contact bound to an address-of-record at a
//! registrar: it sends REGISTER with Contact and Expires, answers digest
//! challenges (401 and 407, stale nonces silently, refused credentials
//! reported once and not retried), honours 423 Interval Too Brief by retrying
//! with Min-Expires, refreshes before the binding expires, backs off
//! exponentially with jitter after failures, re-registers on demand and
//! unregisters with `expires=0`.
//!
//! Policy chosen here:
//! - **Refresh** at the earlier of 90 % of the granted expiry and expiry − 5 s,
//!   but never before half of it (so short grants are not refreshed in a loop):
//!   see [`refresh_delay`].
//! - **Retry after failure**: `min(max, base · 2^(n−1))` scaled by a random
//!   factor in [0.5, 1] (RFC 5626 §4.5), or the server's Retry-After when it
//!   sent one (§20.33). Defaults: base 30 s, max 30 min.
//! - All REGISTERs of one registration share a Call-ID and From tag and count
//!   CSeq up (§10.2.4); our binding is found in the 2xx by URI comparison
//!   (§10.2.4, §19.1.4) and its `expires` taken.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::auth::{ChallengeError, DigestClient};
use crate::dialog::{new_call_id, new_tag};
use crate::msg::{HeaderName, Method, NameAddr, Request, Response, Uri};

use super::{
    Local, Output, Rng, RngRef, TxFailure, authorize, failure_response, out_of_dialog,
    take_challenge, top_branch,
};

/// How to register.
#[derive(Debug)]
pub struct RegistrationConfig {
    /// The registrar's Request-URI (§10.2: the domain, no user part).
    pub registrar: Uri,
    /// The address-of-record, for To and From (§10.2).
    pub aor: NameAddr,
    /// Via and Contact of this endpoint.
    pub local: Local,
    /// The expiry we ask for, in seconds (§10.2.1.1).
    pub expires: u32,
    /// Credentials for 401/407 (§22.2), if any.
    pub auth: Option<DigestClient>,
    /// First retry delay after a failure (RFC 5626 §4.5 base time).
    pub backoff_base: Duration,
    /// Longest retry delay (RFC 5626 §4.5 max time).
    pub backoff_max: Duration,
}

impl RegistrationConfig {
    /// A configuration with 3600 s expiry, no credentials and the default back-off.
    pub fn new(registrar: Uri, aor: NameAddr, local: Local) -> Self {
        RegistrationConfig {
            registrar,
            aor,
            local,
            expires: 3600,
            auth: None,
            backoff_base: Duration::from_secs(30),
            backoff_max: Duration::from_secs(1800),
        }
    }
}

/// Where the registration stands.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RegistrationState {
    /// Nothing sent yet, or stopped after unregistering.
    Idle,
    /// A REGISTER is outstanding and we hold no binding we know of.
    Registering,
    /// Bound until `until` (a refresh may be outstanding).
    Registered {
        /// Granted seconds.
        expires: u32,
        /// When the binding lapses.
        until: Instant,
    },
    /// The last attempt failed; a retry may be scheduled.
    Failed,
    /// An unregistering REGISTER (`expires=0`) is outstanding.
    Unregistering,
}

/// What the registration tells the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistrationEvent {
    /// The registrar holds our binding for `expires` seconds.
    Registered {
        /// Granted seconds.
        expires: u32,
    },
    /// A registration attempt failed.
    Failed {
        /// The final status (408 for a timeout, 503 for a transport error).
        status: u16,
        /// Why, for people.
        reason: String,
        /// When we try again by ourselves; `None` when we do not (refused
        /// credentials: the user must fix them, then call `register`).
        retry_in: Option<Duration>,
    },
    /// The binding was removed (or the unregistering REGISTER failed and we
    /// gave up on it).
    Unregistered,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Due {
    Refresh,
    Retry,
}

/// The registration client of one AOR and Contact (see the module documentation).
pub struct Registration {
    config: RegistrationConfig,
    rng: Rng,
    call_id: String,
    from_tag: String,
    seq: u32,
    state: RegistrationState,
    pending: Option<(String, Request)>,
    /// The expiry we ask for now (raised by 423).
    asked: u32,
    unregistering: bool,
    /// A Contact of ours to remove with the next REGISTER (the address before a
    /// network change).
    retiring: Option<Uri>,
    /// How many Contacts the last 2xx listed for the AOR (ours and other devices').
    bindings: usize,
    failures: u32,
    auth_rounds: u32,
    timer: Option<(Instant, Due)>,
    out: VecDeque<Output<RegistrationEvent>>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("aor", &self.config.aor.to_string())
            .field("state", &self.state)
            .field("timer", &self.timer)
            .finish()
    }
}

/// When to refresh a binding granted for `expires` seconds: the earlier of
/// 90 % and `expires − 5 s`, but at least half of `expires`.
pub fn refresh_delay(expires: u32) -> Duration {
    let e = Duration::from_secs(u64::from(expires));
    let ninety = e.mul_f64(0.9);
    let minus5 = e.saturating_sub(Duration::from_secs(5));
    ninety.min(minus5).max(e / 2)
}

impl Registration {
    /// A registration, idle until [`Registration::register`].
    pub fn new(config: RegistrationConfig, mut rng: Rng) -> Self {
        let host = config.local.host.to_string();
        let call_id = new_call_id(&mut RngRef(&mut *rng), &host);
        let from_tag = new_tag(&mut RngRef(&mut *rng));
        let asked = config.expires;
        Registration {
            config,
            rng,
            call_id,
            from_tag,
            seq: 0,
            state: RegistrationState::Idle,
            pending: None,
            asked,
            unregistering: false,
            retiring: None,
            bindings: 0,
            failures: 0,
            auth_rounds: 0,
            timer: None,
            out: VecDeque::new(),
        }
    }

    /// The state.
    pub fn state(&self) -> RegistrationState {
        self.state
    }

    /// The Call-ID shared by all REGISTERs (§10.2.4).
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Replaces the credentials (after a refusal) — call `register` next.
    pub fn set_auth(&mut self, auth: Option<DigestClient>) {
        self.config.auth = auth;
    }

    /// How many Contacts the registrar listed for the AOR in its last 2xx (§10.3 step 8:
    /// every current binding, ours and the other devices' of the same AOR).
    pub fn bindings(&self) -> usize {
        self.bindings
    }

    /// Replaces Via/Contact (the network changed) — call `refresh_now` next. The old
    /// Contact, if it differs, is removed in the same REGISTER (`;expires=0` beside the new
    /// one, §10.2.1, §10.2.2), so calls stop forking to an address that is gone.
    pub fn set_local(&mut self, local: Local) {
        if local.contact != self.config.local.contact {
            self.retiring = Some(self.config.local.contact.clone());
        }
        self.config.local = local;
    }

    /// Registers (or refreshes) now. A REGISTER already outstanding is left
    /// to finish (§10.2: one at a time per Call-ID).
    pub fn register(&mut self, now: Instant) {
        self.unregistering = false;
        self.failures = 0;
        self.send(now);
    }

    /// Re-registers at once: after a network change or when the registrar
    /// may have lost our binding (server restart). Same as `register`.
    pub fn refresh_now(&mut self, now: Instant) {
        self.register(now);
    }

    /// Removes our binding (REGISTER with `expires=0`, §10.2.2).
    pub fn unregister(&mut self, now: Instant) {
        self.unregistering = true;
        self.timer = None;
        self.send(now);
    }

    fn send(&mut self, _now: Instant) {
        if self.pending.is_some() {
            return;
        }
        self.timer = None;
        self.auth_rounds = 0;
        self.build_and_send();
    }

    fn build_and_send(&mut self) {
        self.seq += 1;
        let cfg = &self.config;
        let expires = if self.unregistering { 0 } else { self.asked };
        let mut r = out_of_dialog(
            Method::Register,
            cfg.registrar.clone(),
            &cfg.aor,
            &cfg.aor,
            &self.from_tag,
            &self.call_id,
            self.seq,
        );
        r.headers.push(
            HeaderName::Contact,
            format!("{};expires={expires}", cfg.local.contact_value()),
        );
        if let Some(old) = &self.retiring {
            r.headers
                .push(HeaderName::Contact, format!("<{old}>;expires=0"));
        }
        r.headers.push(HeaderName::Expires, expires.to_string());
        cfg.local.decorate(&mut r);
        let branch = cfg.local.stamp(&mut r, &mut *self.rng);
        if let Some(auth) = self.config.auth.as_mut() {
            authorize(auth, &mut r, &mut *self.rng);
        }
        if !matches!(self.state, RegistrationState::Registered { .. }) {
            self.state = if self.unregistering {
                RegistrationState::Unregistering
            } else {
                RegistrationState::Registering
            };
        }
        if self.unregistering {
            self.state = RegistrationState::Unregistering;
        }
        self.pending = Some((branch, r.clone()));
        self.out.push_back(Output::Request(r));
    }

    /// A response to one of our REGISTERs (others are ignored).
    pub fn handle_response(&mut self, now: Instant, response: &Response) {
        let Some(branch) = top_branch(&response.headers) else {
            return;
        };
        if self.pending.as_ref().map(|p| &p.0) != Some(&branch) || !response.status.is_final() {
            return;
        }
        self.pending = None;
        let code = response.status.as_u16();
        if response.status.is_success() {
            self.on_success(now, response);
            return;
        }
        if code == 401 || code == 407 {
            let Some(auth) = self.config.auth.as_mut() else {
                self.fail(
                    now,
                    code,
                    "authentication required, no credentials".into(),
                    false,
                    None,
                );
                return;
            };
            self.auth_rounds += 1;
            match take_challenge(auth, response) {
                Ok(()) if self.auth_rounds <= 3 => self.build_and_send(),
                Ok(()) => self.fail(now, code, "too many challenges".into(), true, None),
                Err(ChallengeError::Rejected { realm }) => self.fail(
                    now,
                    code,
                    format!("credentials refused by {realm}"),
                    false,
                    None,
                ),
                Err(e) => self.fail(now, code, e.to_string(), false, None),
            }
            return;
        }
        if code == 423 && !self.unregistering {
            // §10.2.8: retry with at least Min-Expires.
            match response.headers.min_expires().ok().flatten() {
                Some(min) if min > self.asked => {
                    self.asked = min;
                    self.build_and_send();
                }
                _ => self.fail(now, code, "interval too brief".into(), true, None),
            }
            return;
        }
        let retry_after = response.headers.retry_after().ok().flatten();
        self.fail(now, code, response.reason.to_string(), true, retry_after);
    }

    /// A REGISTER of ours got no response (§8.1.3.1).
    pub fn handle_failure(&mut self, now: Instant, branch: &str, failure: TxFailure) {
        if let Some((b, r)) = &self.pending
            && b == branch
        {
            let resp = failure_response(r, failure);
            self.handle_response(now, &resp);
        }
    }

    fn on_success(&mut self, now: Instant, response: &Response) {
        if self.unregistering {
            self.unregistering = false;
            self.state = RegistrationState::Idle;
            self.timer = None;
            self.out
                .push_back(Output::Event(RegistrationEvent::Unregistered));
            return;
        }
        let ours = response.headers.contacts().ok().and_then(|list| {
            list.into_iter().find(|c| {
                c.address()
                    .is_some_and(|a| a.uri.equivalent(&self.config.local.contact))
            })
        });
        self.bindings = response.headers.contacts().map_or(0, |l| l.len());
        let Some(contact) = ours else {
            // The registrar did not bind us: count as a failure (server policy or lost state).
            self.fail(now, 200, "binding missing from 200".into(), true, None);
            return;
        };
        let expires = contact
            .expires()
            .or_else(|| response.headers.expires().ok().flatten())
            .unwrap_or(self.asked);
        if expires == 0 {
            self.fail(
                now,
                200,
                "binding granted with expires=0".into(),
                true,
                None,
            );
            return;
        }
        self.failures = 0;
        self.retiring = None;
        self.state = RegistrationState::Registered {
            expires,
            until: now + Duration::from_secs(u64::from(expires)),
        };
        self.timer = Some((now + refresh_delay(expires), Due::Refresh));
        self.out
            .push_back(Output::Event(RegistrationEvent::Registered { expires }));
    }

    fn fail(&mut self, now: Instant, status: u16, reason: String, retry: bool, after: Option<u32>) {
        if self.unregistering {
            self.unregistering = false;
            self.state = RegistrationState::Idle;
            self.timer = None;
            self.out
                .push_back(Output::Event(RegistrationEvent::Unregistered));
            return;
        }
        self.state = RegistrationState::Failed;
        let retry_in = retry.then(|| {
            self.failures = self.failures.saturating_add(1);
            match after {
                Some(s) => Duration::from_secs(u64::from(s)),
                None => self.backoff(),
            }
        });
        self.timer = retry_in.map(|d| (now + d, Due::Retry));
        self.out.push_back(Output::Event(RegistrationEvent::Failed {
            status,
            reason,
            retry_in,
        }));
    }

    /// RFC 5626 §4.5: `min(max, base·2^(n−1))`, times a random factor in [0.5, 1].
    fn backoff(&mut self) -> Duration {
        let exp = self.failures.saturating_sub(1).min(20);
        let full = self
            .config
            .backoff_base
            .saturating_mul(1 << exp)
            .min(self.config.backoff_max);
        let frac = 0.5 + 0.5 * (f64::from(self.rng.next_u32()) / f64::from(u32::MAX));
        full.mul_f64(frac)
    }

    /// Runs the refresh and retry timers (call at [`Registration::poll_timeout`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((at, due)) = self.timer
            && at <= now
        {
            self.timer = None;
            let _ = due;
            self.send(now);
        }
    }

    /// When [`Registration::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer.map(|t| t.0)
    }

    /// The next thing to do; call until `None` after every input.
    pub fn poll_output(&mut self) -> Option<Output<RegistrationEvent>> {
        self.out.pop_front()
    }
}
