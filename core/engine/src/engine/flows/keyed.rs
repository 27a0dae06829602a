//! Codes keyed during a call: `#n#` (softphone form) or `#n` followed by a
//! pause (mobile form) moves the current incoming call to n, and `*` takes it back.
//!
//! What the operators' pages describe ("Överflytta pågående inkommande samtal"): only
//! the called party of an answered call can move it; `#<number>` starts the move, `*`
//! takes the call back, hanging up completes the move ("Lägg på luren för att
//! genomföra överflyttningen"). The user's "Samtalsflytt" setting
//! ([`crate::callflow::CallMove`]) picks how:
//! - direct ("Direkt överföring"): n's devices ring for the caller, who keeps
//!   talking with the mover until n answers; then n takes the mover's place on the
//!   relay and the mover gets BYE;
//! - announced ("Aviserad överföring"): when n answers, the mover talks with n while
//!   the caller hears music on hold (the relay's consultation); the mover hangs up
//!   to complete the move (caller and n are joined), or keys `*` to take the call
//!   back (n gets BYE); if n hangs up first, the mover has the caller back;
//! - none ("Inga"): calls are not moved.
//!
//! In both modes a mover who hangs up while n still rings completes the move: the
//! caller hears music until n answers (and is let go if n does not).
//!
//! n is a user of the office or, for a mover with the external-calls permission, a
//! number outside reached through the trunk whose prefix matches.
//!
//! The keys come as SIP INFO (`application/dtmf-relay`, `application/dtmf`) or as
//! RFC 4733 events in the called party's RTP (seen by the relay, still passed on).

use std::time::Instant;

use super::*;
use crate::callflow::CallMove;

/// A pause this long after `#n` ends the mobile form of the code.
pub(in crate::engine) const INTER_DIGIT: Duration = Duration::from_secs(3);

/// Keys collected from one leg during a call.
#[derive(Debug, Default)]
pub(in crate::engine) struct Keyed {
    /// Keys since the last complete code, per leg: (call, keys, last key at).
    digits: HashMap<LegId, (CallId, String, Instant)>,
    /// Moves in progress, per call.
    moves: HashMap<CallId, Move>,
}

/// One move started with `#n`.
struct Move {
    /// Who keyed it (the called party; it leaves the call).
    mover: LegId,
    announced: bool,
    /// The mover hung up while n rang: n gets the caller when it answers.
    mover_gone: bool,
    /// Announced: n's leg once it answered (the mover and n talk).
    consult: Option<LegId>,
    /// Music on hold for the caller (the relay's A side is tapped while it plays).
    music: Option<MediaSession>,
}

impl std::fmt::Debug for Move {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Move")
            .field("mover", &self.mover)
            .field("announced", &self.announced)
            .field("mover_gone", &self.mover_gone)
            .field("consult", &self.consult)
            .field("music", &self.music.is_some())
            .finish()
    }
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
        if !self.keyed_wants(call_id, leg_id, key) {
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
        let Some(pt) = telephone_event_pt(&sd) else {
            return;
        };
        let Some(call) = self.calls.get(&call_id) else {
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

    /// A key from the relay (RFC 4733) of the party on B's side of `call_id` (the
    /// answering party, or the mover while it talks with n).
    pub(in crate::engine) async fn keyed_rtp(&mut self, call_id: CallId, key: char) {
        let leg_id = match self.flows.keyed.moves.get(&call_id) {
            Some(m) => Some(m.mover),
            None => self.calls.get(&call_id).and_then(|c| c.answered),
        };
        let Some(leg_id) = leg_id else {
            return;
        };
        if self.keyed_wants(call_id, leg_id, key) {
            self.keyed_key(call_id, leg_id, key).await;
        }
    }

    /// Whether `key` from `leg_id` belongs to a code (starts or continues one, or is
    /// `*` while the leg's move is under way); other keys are the far party's.
    fn keyed_wants(&self, call_id: CallId, leg_id: LegId, key: char) -> bool {
        let typing = self
            .flows
            .keyed
            .digits
            .get(&leg_id)
            .is_some_and(|(_, b, _)| !b.is_empty());
        let moving = self.keyed_moving(call_id, leg_id);
        key == '#' || typing || (key == '*' && moving)
    }

    fn keyed_moving(&self, call_id: CallId, leg_id: LegId) -> bool {
        self.flows
            .keyed
            .moves
            .get(&call_id)
            .is_some_and(|m| m.mover == leg_id && !m.mover_gone)
    }

    /// One key of a code from the called party.
    async fn keyed_key(&mut self, call_id: CallId, leg_id: LegId, key: char) {
        let moving = self.keyed_moving(call_id, leg_id);
        let (_, buf, at) = self
            .flows
            .keyed
            .digits
            .entry(leg_id)
            .or_insert_with(|| (call_id, String::new(), Instant::now()));
        if key == '*' && moving && buf.is_empty() {
            self.take_back(call_id).await;
            return;
        }
        buf.push(key);
        *at = Instant::now();
        let code = buf.clone();
        if code.len() < 2 || !code.ends_with('#') {
            if code.len() > 24 {
                self.flows.keyed.digits.remove(&leg_id);
            }
            return;
        }
        self.flows.keyed.digits.remove(&leg_id);
        self.keyed_code(call_id, leg_id, &code).await;
    }

    /// A complete code (`#n#`, or `#n` after the pause).
    async fn keyed_code(&mut self, call_id: CallId, leg_id: LegId, code: &str) {
        let now = self.flows.now();
        match feature::parse(code, Context::InCall, now, &jiff::tz::TimeZone::UTC) {
            Ok((FeatureCode::Transfer { number }, form)) => {
                debug!("call {call_id}: {code:?} keyed ({form:?} form)");
                self.move_call(call_id, leg_id, &number).await;
            }
            other => debug!("in-call code {code:?} from leg {leg_id}: {other:?}"),
        }
    }

    /// From the one-second tick: `#n` with no key for [`INTER_DIGIT`] is the mobile
    /// form of `#n#` (the operators' pages list `#<nummer>` for mobiles).
    pub(in crate::engine) async fn keyed_tick(&mut self) {
        let due: Vec<(LegId, CallId, String)> = self
            .flows
            .keyed
            .digits
            .iter()
            .filter(|(_, (_, b, at))| !b.is_empty() && at.elapsed() >= INTER_DIGIT)
            .map(|(l, (c, b, _))| (*l, *c, b.clone()))
            .collect();
        for (leg, call, code) in due {
            self.flows.keyed.digits.remove(&leg);
            let live = self
                .calls
                .get(&call)
                .is_some_and(|c| c.answered == Some(leg) || self.keyed_moving(call, leg));
            if live && code.len() > 1 && code.starts_with('#') {
                self.keyed_code(call, leg, &code).await;
            }
        }
    }

    /// `#n#`: ring n for the caller (the REFER machinery's [`Transfer`], without
    /// NOTIFY); how it goes on depends on the mover's "Samtalsflytt" setting.
    async fn move_call(&mut self, call_id: CallId, mover: LegId, number: &str) {
        let Some(mover_party) = self.legs.get(&mover).map(|l| l.party.clone()) else {
            return;
        };
        let mode = self.flows.routing.call_move_of(&mover_party);
        if mode == CallMove::None {
            debug!("{mover_party} may not move calls (call_move = none)");
            return;
        }
        let Some(call) = self.calls.get(&call_id) else {
            return;
        };
        if call.transfer.is_some() || self.flows.keyed.moves.contains_key(&call_id) {
            return;
        }
        let (stays, record) = (call.a, call.record);
        let Some(stays) = self.legs.get(&stays) else {
            return;
        };
        let (party, sdp) = (stays.party.clone(), stays.sdp.clone());
        let outside = match self.user_for(number) {
            Some(ext) => Err(ext),
            None => {
                let may = self
                    .users
                    .get(&mover_party)
                    .is_some_and(|u| u.external_calls);
                let trunk = self
                    .trunks
                    .iter()
                    .find(|t| {
                        t.outbound_prefixes
                            .iter()
                            .any(|p| !p.is_empty() && number.starts_with(p.as_str()))
                    })
                    .cloned();
                match trunk {
                    Some(t) if may => Ok(t),
                    Some(_) => {
                        debug!("{mover_party} may not move a call outside (external_calls)");
                        return;
                    }
                    None => {
                        debug!("{number}: no user and no trunk route to move a call to");
                        return;
                    }
                }
            }
        };
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
        let legs = match outside {
            Err(ext) => {
                self.ring_transfer_target(call_id, Side::B, record, &party, &ext, body)
                    .await
            }
            Ok(trunk) => {
                self.keyed_ring_outside(call_id, record, &party, &trunk, number, body)
                    .await
            }
        };
        let Some(c) = self.calls.get_mut(&call_id) else {
            return;
        };
        if legs.is_empty() {
            debug!("{number} cannot be reached to move the call to");
            c.relay.abandon(Side::B);
            return;
        }
        debug!("call {call_id}: moving to {number} ({mode:?})");
        c.transfer = Some(Transfer {
            referrer: mover,
            side: Side::B,
            legs,
        });
        self.flows.keyed.moves.insert(
            call_id,
            Move {
                mover,
                announced: mode == CallMove::Announced,
                mover_gone: false,
                consult: None,
                music: None,
            },
        );
    }

    /// Rings `number` outside through `trunk` for a move: one leg on side B, shown
    /// as the caller's long number (or the trunk's), like any outbound call.
    async fn keyed_ring_outside(
        &mut self,
        call_id: CallId,
        record: i64,
        party: &str,
        trunk: &Trunk,
        number: &str,
        body: Option<String>,
    ) -> Vec<LegId> {
        let Some(target) = self.trunk_target(trunk).await else {
            return Vec::new();
        };
        let mut uri = SipUri::new(vaxel_sip::msg::Host::from(target.peer.addr.ip()))
            .with_port(target.peer.addr.port())
            .with_user(number);
        if trunk.transport == "tcp" {
            uri = uri.with_param("transport", Some("tcp"));
        }
        let uri = Uri::Sip(uri);
        let shown = self
            .users
            .get(party)
            .and_then(|u| u.number.clone())
            .or_else(|| party.starts_with('+').then(|| party.to_owned()))
            .unwrap_or_else(|| trunk.caller_id.clone());
        let (leg, tag, cid) = (
            self.new_id(),
            token(),
            new_call_id(&mut rand::rng(), &self.realm),
        );
        let mut invite = Request::new(Method::Invite, uri.clone());
        invite
            .headers
            .push_value(HeaderName::Via, &self.sip.via(target.peer.transport));
        invite.headers.push(HeaderName::MaxForwards, "70");
        invite.headers.push(
            HeaderName::From,
            format!("<sip:{}@{}>;tag={tag}", escape_user(&shown), self.realm),
        );
        invite.headers.push(HeaderName::To, format!("<{uri}>"));
        invite.headers.push(
            HeaderName::PAssertedIdentity,
            format!("<sip:{}@{}>", escape_user(&shown), self.realm),
        );
        invite.headers.push(HeaderName::CallId, cid.clone());
        invite.headers.push(HeaderName::CSeq, "1 INVITE");
        invite.headers.push(
            HeaderName::Contact,
            format!("<{}>", self.sip.contact_uri("vaxel", target.peer.transport)),
        );
        invite.headers.push(HeaderName::Allow, ALLOW);
        if let Some(body) = body {
            invite.set_body(&sdp_type(), Bytes::from(body));
        }
        let out = Outgoing {
            call: call_id,
            side: Side::B,
            role: "transfer",
            record,
            party: number,
            invite,
            tag,
            call_id: cid,
            target,
        };
        if self.start_leg(leg, out, unix_now()).await {
            vec![leg]
        } else {
            Vec::new()
        }
    }

    /// Hook from `notify_referrer`: a move started with `#n#` has no REFER
    /// subscription, so nothing is sent (true). The last notice ends the move: on
    /// success the caller's music stops (n now has the relay's B side); on failure
    /// the caller gets the mover back, or is let go if the mover hung up.
    pub(in crate::engine) async fn keyed_mover(
        &mut self,
        leg_id: LegId,
        frag: &str,
        last: bool,
    ) -> bool {
        let Some(call_id) = self
            .flows
            .keyed
            .moves
            .iter()
            .find(|(_, m)| m.mover == leg_id)
            .map(|(c, _)| *c)
        else {
            return false;
        };
        if !last {
            return true;
        }
        let Some(m) = self.flows.keyed.moves.remove(&call_id) else {
            return true;
        };
        let had_music = m.music.is_some();
        drop(m.music);
        if had_music && let Some(c) = self.calls.get(&call_id) {
            c.relay.tap(None);
        }
        if !frag.starts_with("SIP/2.0 2") && m.mover_gone {
            debug!("call {call_id}: n did not answer and the mover has gone");
            if let Some(a) = self.calls.get(&call_id).map(|c| c.a) {
                self.hang_up_leg(a).await;
            }
            self.end_call(call_id, "answered");
        }
        true
    }

    /// Hook from `transfer_response` when n answers: for an announced move (the
    /// mover still there) the mover and n talk while the caller hears music; the
    /// move is not done yet. Returns whether it was taken.
    pub(in crate::engine) async fn keyed_consult(
        &mut self,
        call_id: CallId,
        leg_id: LegId,
        resp: &Response,
    ) -> bool {
        if !self
            .flows
            .keyed
            .moves
            .get(&call_id)
            .is_some_and(|m| m.announced && !m.mover_gone && m.consult.is_none())
        {
            return false;
        }
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            return false;
        };
        if leg.dialog.is_none() {
            match Dialog::from_uac(&leg.invite, resp) {
                Ok(d) => leg.dialog = Some(d),
                Err(_) => return false,
            }
        }
        leg.state = LegState::Confirmed;
        leg.invite_tx = None;
        if has_sdp(&resp.headers, &resp.body) {
            leg.sdp = Some(resp.body.clone());
        }
        self.send_ack(leg_id).await;
        let others: Vec<LegId> = match self
            .calls
            .get_mut(&call_id)
            .and_then(|c| c.transfer.as_mut())
        {
            Some(t) => {
                let o = t.legs.iter().copied().filter(|l| *l != leg_id).collect();
                t.legs = vec![leg_id];
                o
            }
            None => Vec::new(),
        };
        for o in others {
            self.cancel_leg(o, "answered elsewhere").await;
        }
        let n_addr = rewrite_sdp(&resp.body, SocketAddr::from(([127, 0, 0, 1], 9)))
            .and_then(|(_, r)| r)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let music = self.keyed_music(call_id);
        if let Some(c) = self.calls.get(&call_id) {
            c.relay.consult(n_addr);
        }
        if let Some(m) = self.flows.keyed.moves.get_mut(&call_id) {
            m.consult = Some(leg_id);
            m.music = music;
        }
        debug!("call {call_id}: announced move, the mover talks with n");
        true
    }

    /// Taps the caller's side of `call_id` and plays music on hold to it, in the
    /// codec the caller and the mover agreed on (silence for one other than G.711).
    fn keyed_music(&mut self, call_id: CallId) -> Option<MediaSession> {
        let call = self.calls.get(&call_id)?;
        let caller_sdp = self.legs.get(&call.a).and_then(|l| l.sdp.clone());
        let callee_sdp = call
            .answered
            .and_then(|b| self.legs.get(&b))
            .and_then(|l| l.sdp.clone());
        let (tap_tx, tap_rx) = mpsc::unbounded_channel();
        call.relay.tap(Some(tap_tx));
        let remote = caller_sdp
            .as_ref()
            .and_then(|b| rewrite_sdp(b, call.relay.local(Side::A)))
            .and_then(|(_, r)| r);
        let answer = callee_sdp.and_then(|b| vaxel_media::sdp::parse(&b).ok());
        let pt = answer
            .as_ref()
            .and_then(|sd| sd.media.iter().find(|m| m.kind == "audio"))
            .and_then(|m| m.formats.first())
            .and_then(|f| f.parse::<u8>().ok());
        let te_pt = caller_sdp
            .and_then(|b| vaxel_media::sdp::parse(&b).ok())
            .and_then(|sd| telephone_event_pt(&sd));
        let format = match pt {
            Some(8) => MediaFormat {
                codec: vaxel_media::CodecKind::Pcma,
                pt: 8,
                te_pt,
            },
            Some(0) => MediaFormat {
                codec: vaxel_media::CodecKind::Pcmu,
                pt: 0,
                te_pt,
            },
            _ => return None,
        };
        let session = MediaSession::start(
            call_id,
            tap_rx,
            call.relay.to_caller(),
            remote,
            format,
            self.flows.notes_tx.clone(),
        );
        let music = self.flows.prompt("music", "");
        session.send(MediaCmd::Play {
            prompts: vec![music],
            looped: true,
        });
        Some(session)
    }

    /// Hook from an in-dialog BYE on `call_id` while a move runs. The mover hanging
    /// up completes the move (joined with n in an announced move; while n rings, n
    /// gets the caller on answering); n hanging up during the consultation gives the
    /// mover the caller back; the caller hanging up stops n's ringing or
    /// consultation (then the ordinary BYE path ends the call). Returns whether the
    /// BYE was answered here.
    pub(in crate::engine) async fn keyed_bye(
        &mut self,
        tx: TxKey,
        req: &Request,
        leg_id: LegId,
        call_id: CallId,
    ) -> bool {
        let Some(m) = self.flows.keyed.moves.get(&call_id) else {
            return false;
        };
        let (mover, consult, gone) = (m.mover, m.consult, m.mover_gone);
        let caller = self.calls.get(&call_id).map(|c| c.a);
        if leg_id == mover && !gone {
            self.reply(tx, req, 200).await;
            if let Some(l) = self.legs.get(&mover) {
                let _ = self.db.get().end_leg(l.record, "transferred", unix_now());
            }
            if let Some(n) = consult {
                self.keyed_join(call_id, mover, n).await;
            } else {
                // n still rings: the caller waits with music.
                let music = self.keyed_music(call_id);
                if let Some(m) = self.flows.keyed.moves.get_mut(&call_id) {
                    m.mover_gone = true;
                    m.music = music;
                }
                self.forget_leg(mover);
                debug!("call {call_id}: the mover hung up, the caller waits for n");
            }
            return true;
        }
        if consult == Some(leg_id) {
            self.reply(tx, req, 200).await;
            if let Some(l) = self.legs.get(&leg_id) {
                let _ = self.db.get().end_leg(l.record, "hung up", unix_now());
            }
            self.forget_leg(leg_id);
            if let Some(c) = self.calls.get_mut(&call_id)
                && let Some(t) = c.transfer.as_mut()
            {
                t.legs.clear();
            }
            self.take_back(call_id).await;
            return true;
        }
        if Some(leg_id) == caller {
            let legs = self
                .calls
                .get_mut(&call_id)
                .and_then(|c| c.transfer.take())
                .map(|t| t.legs)
                .unwrap_or_default();
            if let Some(m) = self.flows.keyed.moves.remove(&call_id) {
                drop(m.music);
            }
            for l in legs {
                if self
                    .legs
                    .get(&l)
                    .is_some_and(|l| l.state == LegState::Confirmed)
                {
                    self.hang_up_leg(l).await;
                } else {
                    self.cancel_leg(l, "caller hung up").await;
                }
            }
        }
        false
    }

    /// Completes an announced move: n takes the mover's place on the relay's B side,
    /// the caller's music stops, and the caller learns n's media.
    async fn keyed_join(&mut self, call_id: CallId, mover: LegId, n: LegId) {
        let Some(m) = self.flows.keyed.moves.remove(&call_id) else {
            return;
        };
        drop(m.music);
        let n_sdp = self.legs.get(&n).and_then(|l| l.sdp.clone());
        let Some(c) = self.calls.get_mut(&call_id) else {
            return;
        };
        let remote = n_sdp
            .as_ref()
            .and_then(|b| rewrite_sdp(b, c.relay.local(Side::B)))
            .and_then(|(_, r)| r);
        c.relay.commit(Side::B, remote);
        c.relay.tap(None);
        c.answered = Some(n);
        c.transfer = None;
        let a = c.a;
        self.forget_leg(mover);
        if let Some(sdp) = n_sdp {
            self.reoffer(a, &sdp).await;
        }
        debug!("call {call_id}: announced move completed");
    }

    /// `*` while n rings or while the mover talks with n (or n hung up): n's legs are
    /// cancelled or hung up, the call stays with the mover.
    async fn take_back(&mut self, call_id: CallId) {
        let m = self.flows.keyed.moves.remove(&call_id);
        let Some(t) = self.calls.get_mut(&call_id).and_then(|c| c.transfer.take()) else {
            return;
        };
        if let Some(c) = self.calls.get_mut(&call_id) {
            c.relay.abandon(t.side);
            if m.as_ref().is_some_and(|m| m.music.is_some()) {
                c.relay.tap(None);
            }
        }
        drop(m);
        for l in t.legs {
            if self
                .legs
                .get(&l)
                .is_some_and(|l| l.state == LegState::Confirmed)
            {
                if let Some(x) = self.legs.get(&l) {
                    let _ = self.db.get().end_leg(x.record, "taken back", unix_now());
                }
                self.hang_up_leg(l).await;
            } else {
                self.cancel_leg(l, "taken back").await;
            }
        }
        debug!("call {call_id}: taken back");
    }
}

/// The `telephone-event` payload type of the first audio stream (RFC 4733 §7.1.1).
fn telephone_event_pt(sd: &vaxel_media::sdp::SessionDescription) -> Option<u8> {
    sd.media.iter().filter(|m| m.kind == "audio").find_map(|m| {
        m.attributes.iter().find_map(|a| {
            let v = a.value.as_deref()?;
            let (pt, enc) = v.split_once(' ')?;
            (a.name.eq_ignore_ascii_case("rtpmap")
                && enc.to_ascii_lowercase().starts_with("telephone-event/"))
            .then(|| pt.parse::<u8>().ok())
            .flatten()
        })
    })
}
