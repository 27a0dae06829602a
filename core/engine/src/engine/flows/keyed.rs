//! Codes keyed during a call: `#n#` moves the current incoming call to n, and
//! `*` takes it back while n is still ringing.
//!
//! What the operators' pages describe ("Överflytta pågående inkommande samtal"): only
//! the called party of an answered call can move it; `#<number>` starts the move, `*`
//! takes the call back. The engine carries it out as a direct transfer ("Direkt
//! överföring"): n's devices ring for the caller, who keeps talking with the one who
//! keyed the code until n answers; then n takes that party's place on the relay and
//! the mover gets BYE. If n does not answer, the call simply stays where it was.
//!
//! The keys come as SIP INFO (`application/dtmf-relay`, `application/dtmf`), as
//! softphones and desk phones send them in call.

use super::*;

/// Keys collected from one leg during a call.
#[derive(Debug, Default)]
pub(in crate::engine) struct Keyed {
    /// Keys since the last complete code, per leg.
    digits: HashMap<LegId, String>,
    /// Legs that started a transfer with `#n#` (no REFER subscription: no NOTIFY).
    movers: HashSet<LegId>,
}

impl Engine {
    /// Hook from in-dialog INFO: a key the called party of an answered ordinary call
    /// pressed. Returns whether it was taken (answered here, not passed on).
    pub(in crate::engine) async fn keyed_info(
        &mut self,
        tx: TxKey,
        req: &Request,
        call_id: CallId,
    ) -> bool {
        let Some(leg_id) = self.leg_of_request(req) else {
            return false;
        };
        let Some(call) = self.calls.get(&call_id) else {
            return false;
        };
        // Only the called party of an incoming call may move it ("endast inkommande
        // samtal kan kopplas"); calls the engine answers itself are the flows'.
        if call.answered != Some(leg_id) || self.flows.calls.contains_key(&call_id) {
            return false;
        }
        let ct = req
            .headers
            .content_type()
            .ok()
            .flatten()
            .map(|t| t.to_string())
            .unwrap_or_default();
        let Some(key) = crate::media_server::parse_info_dtmf(&ct, &req.body) else {
            return false;
        };
        let moving = call.transfer.is_some() && self.flows.keyed.movers.contains(&leg_id);
        let buf = self.flows.keyed.digits.entry(leg_id).or_default();
        if key == '*' && moving && buf.is_empty() {
            self.reply(tx, req, 200).await;
            self.take_back(call_id, leg_id).await;
            return true;
        }
        if buf.is_empty() && key != '#' {
            // Not the start of a code: an ordinary key for the caller.
            return false;
        }
        buf.push(key);
        let code = buf.clone();
        self.reply(tx, req, 200).await;
        if code.len() < 2 || !code.ends_with('#') {
            if code.len() > 24 {
                self.flows.keyed.digits.remove(&leg_id);
            }
            return true;
        }
        self.flows.keyed.digits.remove(&leg_id);
        let now = self.flows.now();
        match feature::parse(&code, Context::InCall, now, &jiff::tz::TimeZone::UTC) {
            Ok((FeatureCode::Transfer { number }, _)) => {
                self.move_call(call_id, leg_id, &number).await;
            }
            other => debug!("in-call code {code:?} from leg {leg_id}: {other:?}"),
        }
        true
    }

    /// `#n#`: ring n's devices for the caller; the first to answer takes the mover's
    /// place (the REFER machinery's [`Transfer`], without NOTIFY).
    async fn move_call(&mut self, call_id: CallId, mover: LegId, number: &str) {
        let Some(ext) = self.user_for(number) else {
            debug!("{number}: no such user to move a call to");
            return;
        };
        let Some(call) = self.calls.get(&call_id) else {
            return;
        };
        if call.transfer.is_some() {
            return;
        }
        let (stays, record) = (call.a, call.record);
        let Some(stays) = self.legs.get(&stays) else {
            return;
        };
        let (party, sdp) = (stays.party.clone(), stays.sdp.clone());
        let prepared = match self.calls.get_mut(&call_id) {
            Some(c) => c.relay.prepare(Side::B).await,
            None => return,
        };
        let Ok(local) = prepared else {
            return;
        };
        let body = sdp.and_then(|b| rewrite_sdp(&b, local)).map(|(b, _)| b);
        let devices = self.bindings.get(&ext).cloned().unwrap_or_default();
        let mut legs = Vec::new();
        let now = unix_now();
        for b in devices {
            let (Ok(uri), Some(target)) =
                (Uri::parse(&b.contact.clone().into()), binding_target(&b))
            else {
                continue;
            };
            let leg = self.new_id();
            let tag = token();
            let cid = new_call_id(&mut rand::rng(), &self.realm);
            let mut invite = Request::new(Method::Invite, uri.clone());
            invite
                .headers
                .push_value(HeaderName::Via, &self.sip.via(target.peer.transport));
            invite.headers.push(HeaderName::MaxForwards, "70");
            invite.headers.push(
                HeaderName::From,
                format!("<sip:{party}@{}>;tag={tag}", self.realm),
            );
            invite
                .headers
                .push(HeaderName::To, format!("<sip:{ext}@{}>", self.realm));
            invite.headers.push(HeaderName::CallId, cid.clone());
            invite.headers.push(HeaderName::CSeq, "1 INVITE");
            invite.headers.push(
                HeaderName::Contact,
                format!("<{}>", self.sip.contact_uri("vaxel", target.peer.transport)),
            );
            invite.headers.push(HeaderName::Allow, ALLOW);
            if let Some(body) = &body {
                invite.set_body(&sdp_type(), Bytes::from(body.clone()));
            }
            let leg_record = self
                .db
                .get()
                .add_leg(record, "transfer", &ext, &uri.to_string(), now)
                .unwrap_or(0);
            if let Ok(key) = self.sip.send_request(invite.clone(), target.clone()).await {
                self.invite_txs.insert(key, leg);
                self.dialogs.insert((cid, tag.clone()), leg);
                self.legs.insert(
                    leg,
                    Leg {
                        call: call_id,
                        side: Side::B,
                        invite,
                        invite_tx: Some(key),
                        local_tag: tag,
                        dialog: None,
                        target,
                        state: LegState::Calling,
                        record: leg_record,
                        party: ext.clone(),
                        sdp: None,
                    },
                );
                legs.push(leg);
            }
        }
        let Some(c) = self.calls.get_mut(&call_id) else {
            return;
        };
        if legs.is_empty() {
            debug!("{ext} has no device to move the call to");
            c.relay.abandon(Side::B);
            return;
        }
        debug!("call {call_id}: moving to {ext} (#{number}#)");
        c.transfer = Some(Transfer {
            referrer: mover,
            side: Side::B,
            legs,
        });
        self.flows.keyed.movers.insert(mover);
    }

    /// Hook from `notify_referrer`: a move started with `#n#` has no REFER
    /// subscription, so nothing is sent (true); forgets the mover after the last.
    pub(in crate::engine) fn keyed_mover(&mut self, leg_id: LegId, last: bool) -> bool {
        let moving = self.flows.keyed.movers.contains(&leg_id);
        if moving && last {
            self.flows.keyed.movers.remove(&leg_id);
        }
        moving
    }

    /// `*` while n rings: stop ringing n, the call stays with the mover.
    async fn take_back(&mut self, call_id: CallId, mover: LegId) {
        let Some(t) = self.calls.get_mut(&call_id).and_then(|c| c.transfer.take()) else {
            return;
        };
        if let Some(c) = self.calls.get_mut(&call_id) {
            c.relay.abandon(t.side);
        }
        for l in t.legs {
            self.cancel_leg(l, "taken back").await;
        }
        self.flows.keyed.movers.remove(&mover);
        debug!("call {call_id}: taken back");
    }
}
