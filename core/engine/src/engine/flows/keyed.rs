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
//! The keys come as SIP INFO (`application/dtmf-relay`, `application/dtmf`) or as
//! RFC 4733 events in the called party's RTP (seen by the relay, still passed on).

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
        if !self.keyed_wants(leg_id, key) {
            return false;
        }
        self.reply(tx, req, 200).await;
        self.keyed_key(call_id, leg_id, key).await;
        true
    }

    /// Hook from `b_answered` for an ordinary call: the relay reports the keys the
    /// called party presses as RFC 4733 events (its SDP's telephone-event type).
    pub(in crate::engine) fn keyed_watch(&mut self, call_id: CallId, callee_sdp: &[u8]) {
        if self.flows.calls.contains_key(&call_id) {
            return;
        }
        let Ok(sd) = vaxel_media::sdp::parse(callee_sdp) else {
            return;
        };
        let pt = sd.media.iter().filter(|m| m.kind == "audio").find_map(|m| {
            m.attributes.iter().find_map(|a| {
                let v = a.value.as_deref()?;
                let (pt, enc) = v.split_once(' ')?;
                (a.name.eq_ignore_ascii_case("rtpmap")
                    && enc.to_ascii_lowercase().starts_with("telephone-event/"))
                .then(|| pt.parse::<u8>().ok())
                .flatten()
            })
        });
        let (Some(pt), Some(call)) = (pt, self.calls.get(&call_id)) else {
            return;
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        call.relay.watch_b_keys(Some((pt, tx)));
        let notes = self.flows.notes_tx.clone();
        tokio::spawn(async move {
            while let Some(k) = rx.recv().await {
                if notes.send((call_id, MediaNote::CalleeKey(k))).is_err() {
                    break;
                }
            }
        });
    }

    /// A key from the relay (RFC 4733) of the party now answering `call_id`.
    pub(in crate::engine) async fn keyed_rtp(&mut self, call_id: CallId, key: char) {
        let Some(leg_id) = self.calls.get(&call_id).and_then(|c| c.answered) else {
            return;
        };
        if self.keyed_wants(leg_id, key) {
            self.keyed_key(call_id, leg_id, key).await;
        }
    }

    /// Whether `key` from `leg_id` belongs to a code (starts or continues one, or is
    /// `*` while the leg's move rings); other keys are the far party's.
    fn keyed_wants(&self, leg_id: LegId, key: char) -> bool {
        let buf = self.flows.keyed.digits.get(&leg_id);
        let moving = self.flows.keyed.movers.contains(&leg_id);
        key == '#' || buf.is_some_and(|b| !b.is_empty()) || (key == '*' && moving)
    }

    /// One key of a code from the called party.
    async fn keyed_key(&mut self, call_id: CallId, leg_id: LegId, key: char) {
        let moving = self
            .calls
            .get(&call_id)
            .is_some_and(|c| c.transfer.is_some())
            && self.flows.keyed.movers.contains(&leg_id);
        let buf = self.flows.keyed.digits.entry(leg_id).or_default();
        if key == '*' && moving && buf.is_empty() {
            self.take_back(call_id, leg_id).await;
            return;
        }
        buf.push(key);
        let code = buf.clone();
        if code.len() < 2 || !code.ends_with('#') {
            if code.len() > 24 {
                self.flows.keyed.digits.remove(&leg_id);
            }
            return;
        }
        self.flows.keyed.digits.remove(&leg_id);
        let now = self.flows.now();
        match feature::parse(&code, Context::InCall, now, &jiff::tz::TimeZone::UTC) {
            Ok((FeatureCode::Transfer { number }, _)) => {
                self.move_call(call_id, leg_id, &number).await;
            }
            other => debug!("in-call code {code:?} from leg {leg_id}: {other:?}"),
        }
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
        if prepared.is_err() {
            return;
        }
        // The target's SDP carries the engine's key for it (SRTP per leg, see `relay`).
        let body = sdp.and_then(|b| {
            self.calls
                .get(&call_id)
                .and_then(|c| c.relay.sdp_for_prepared(Side::B, &b))
        });
        let legs = self
            .ring_transfer_target(call_id, Side::B, record, &party, &ext, body)
            .await;
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
