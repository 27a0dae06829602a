//! "Send to voicemail" and other redirects from a ringing device (RFC 3261 §8.1.3.4,
//! §16.5): a device answers a ringing INVITE from the engine with a 3xx whose Contact
//! is `*59*<its own user>` (the user's voicemail), an internal number of the office
//! (ring that user), or a number outside (only when the called user may call out).
//! The engine redirects the call itself — the caller never sees the 3xx — and
//! cancels the user's other ringing devices. A member asked by a hunt group declines
//! with a 3xx like with any other failure: the group goes on.

use super::*;

/// Where a redirect sends the call.
enum Redirect {
    Voicemail(String),
    User(String),
    Outside(String, String),
}

impl Engine {
    /// Hook from a B leg's 3xx on a call not yet answered. Returns whether the call
    /// was redirected (else the leg failed as usual).
    pub(in crate::engine) async fn flow_redirect(
        &mut self,
        call_id: CallId,
        leg_id: LegId,
        resp: &Response,
    ) -> bool {
        let Some(user) = self.legs.get(&leg_id).map(|l| l.party.clone()) else {
            return false;
        };
        if !self.users.contains_key(&user) {
            return false;
        }
        let Some(call) = self.calls.get(&call_id) else {
            return false;
        };
        if call.answered.is_some() {
            return false;
        }
        // A hunt group's member: a decline, the group goes on.
        if matches!(self.flows.legs.get(&leg_id), Some((_, Some(_)))) {
            return false;
        }
        let contact = resp.headers.contacts().ok().and_then(|c| {
            c.into_iter().find_map(|c| match c {
                vaxel_sip::msg::Contact::Address(a) => uri_user(&a.uri),
                vaxel_sip::msg::Contact::Wildcard => None,
            })
        });
        let Some(number) = contact.map(|u| dialled(&unescape_user(&u))) else {
            debug!("{user} redirected without a Contact we can use");
            return false;
        };
        let now = self.flows.now();
        let to = match feature::parse(&number, Context::Dialing, now, &jiff::tz::TimeZone::UTC) {
            Ok((FeatureCode::Voicemail { number: n }, _)) => {
                self.user_for(&n).map(Redirect::Voicemail)
            }
            _ => match self.user_for(&number) {
                Some(ext) if ext != user => Some(Redirect::User(ext)),
                Some(_) => None,
                None => match self.flow_trunk_for(&number) {
                    Some(t) if self.users.get(&user).is_some_and(|u| u.external_calls) => {
                        Some(Redirect::Outside(t, number.clone()))
                    }
                    _ => None,
                },
            },
        };
        let Some(to) = to else {
            debug!("{user} redirected to {number:?}: not followed");
            // Not the caller's business: the device simply did not take the call.
            self.b_failed(call_id, leg_id, 480).await;
            return true;
        };
        // The redirecting leg is done; the user's other devices stop ringing.
        if let Some(l) = self.legs.get_mut(&leg_id) {
            l.state = LegState::Ended;
            let _ = self.db.get().end_leg(l.record, "redirected", unix_now());
        }
        self.forget_leg(leg_id);
        self.flows.legs.remove(&leg_id);
        let forks = self
            .calls
            .get_mut(&call_id)
            .map(|c| {
                c.forks.retain(|l| *l != leg_id);
                c.forks.clone()
            })
            .unwrap_or_default();
        for f in forks {
            if self
                .legs
                .get(&f)
                .is_some_and(|l| matches!(l.state, LegState::Calling | LegState::Early))
            {
                self.flows.legs.remove(&f);
                self.cancel_leg(f, "redirected").await;
            }
        }
        if let Some(c) = self.calls.get_mut(&call_id) {
            c.forks.clear();
        }
        self.flow_adopt(call_id);
        match to {
            Redirect::Voicemail(mailbox) => {
                debug!("call {call_id}: {user} sent it to {mailbox}'s voicemail");
                self.flow_deposit(call_id, mailbox, Greeting::Standard)
                    .await;
            }
            Redirect::User(ext) => {
                debug!("call {call_id}: {user} redirected it to {ext}");
                if let Some(f) = self.flows.calls.get_mut(&call_id) {
                    f.mode = Mode::Direct;
                }
                if self
                    .flow_ring(call_id, &ext, None, Some((&user, "deflection")))
                    .await
                    == 0
                {
                    self.flow_hangup(call_id).await;
                }
            }
            Redirect::Outside(trunk, n) => {
                debug!("call {call_id}: {user} redirected it out to {n}");
                if let Some(f) = self.flows.calls.get_mut(&call_id) {
                    f.mode = Mode::Direct;
                }
                let long = self
                    .users
                    .get(&user)
                    .and_then(|u| u.number.clone())
                    .unwrap_or(user);
                if self
                    .flow_ring(
                        call_id,
                        &format!("trunk:{trunk}:{n}"),
                        None,
                        Some((&long, "deflection")),
                    )
                    .await
                    == 0
                {
                    self.flow_hangup(call_id).await;
                }
            }
        }
        true
    }
}
