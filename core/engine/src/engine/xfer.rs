//! Attended transfer executed by the engine, and INVITE with Replaces.
//!
//! - REFER whose Refer-To carries `Replaces` (RFC 5589 §7, RFC 3891): the referrer
//!   talks to party X in one call and to party Y in another, both anchored here. The
//!   engine joins X and Y itself: X gets a re-INVITE offering Y's media (made
//!   `sendrecv`, X was usually on hold) pointed at a fresh socket of Y's call relay,
//!   on the side the referrer had there; when X answers, X's leg moves into Y's call,
//!   the referrer gets NOTIFY `200 OK` (RFC 3515 §2.4.5) and BYE on both of its legs,
//!   and X's old call ends. Y's media never moves.
//! - INVITE with Replaces (RFC 3891 §3) from a registered user: the new dialog takes
//!   the place of the named leg (answered with the staying party's media pointed at a
//!   fresh relay socket) and the replaced party gets BYE.

use bytes::Bytes;
use tracing::debug;
use vaxel_sip::auth::ChallengeKind;
use vaxel_sip::dialog::Dialog;
use vaxel_sip::msg::{HeaderName, Method, Replaces, Request, Response, StatusCode, Uri};
use vaxel_sip::transaction::TxKey;
use vaxel_transport::{Peer, Target};

use super::{
    ALLOW, CallId, Engine, Leg, LegId, LegState, has_sdp, sdp_type, set_response_body, status,
    unix_now,
};
use crate::relay::{Side, sendrecv};

/// A re-INVITE moving a party into another call (attended transfer), waiting for its
/// answer.
#[derive(Debug)]
pub(super) struct Join {
    /// The leg that sent REFER (leaves).
    referrer: LegId,
    /// The referrer's leg in the other call, named by Replaces (leaves).
    replaced: LegId,
    /// The party who moves (the referrer's peer in the REFER's call).
    mover: LegId,
    /// The call the mover joins.
    into: CallId,
    /// The relay side the replaced leg had there, which the mover takes.
    side: Side,
    /// The re-INVITE sent to the mover.
    sent: Request,
    /// How many times it met glare (491) so far.
    glare: u8,
}

/// A re-INVITE telling a party who stayed in a call about its new peer's media
/// (that peer's SDP, with its SRTP key when `a=crypto` is end to end), waiting for
/// its answer.
#[derive(Debug)]
pub(super) struct Reoffer {
    leg: LegId,
    sent: Request,
    /// How many times it met glare (491) so far.
    glare: u8,
}

/// A re-INVITE of ours that met glare (491, RFC 3261 §14.1), waiting to be sent
/// again.
#[derive(Debug)]
pub(super) enum Glare {
    /// A join (attended transfer).
    Join(Join),
    /// A re-offer after a transfer.
    Reoffer(Reoffer),
}

/// Re-INVITEs are retried at most this often after 491 before the attempt fails.
const GLARE_RETRIES: u8 = 3;

/// The Replaces header embedded in a Refer-To URI (RFC 3891 §6.1, RFC 3261 §19.1.1).
pub(super) fn replaces_in(uri: &Uri) -> Option<Replaces> {
    let headers = uri.as_sip()?.headers.as_ref()?;
    headers.split('&').find_map(|part| {
        let (n, v) = part.split_once('=')?;
        if !n.eq_ignore_ascii_case("replaces") {
            return None;
        }
        let raw = vaxel_sip::msg::unescape(v);
        let text = std::str::from_utf8(&raw).ok()?.to_owned();
        Replaces::parse(&text.into()).ok()
    })
}

impl Engine {
    /// The leg a Replaces value names: our tag is its to-tag or its from-tag,
    /// depending on which side of the dialog the sender saw (RFC 3891 §3).
    fn replaced_leg(&self, r: &Replaces) -> Option<LegId> {
        let cid = r.call_id.to_string();
        [r.to_tag(), r.from_tag()]
            .into_iter()
            .flatten()
            .find_map(|t| self.dialogs.get(&(cid.clone(), t.to_owned())).copied())
    }

    /// The other answered leg of `leg`'s call.
    fn peer_of(&self, leg: LegId) -> Option<LegId> {
        let l = self.legs.get(&leg)?;
        let c = self.calls.get(&l.call)?;
        if c.a == leg {
            c.answered
        } else if c.answered == Some(leg) {
            Some(c.a)
        } else {
            None
        }
    }

    /// REFER with Replaces in Refer-To: the engine joins the referrer's two peers.
    pub(super) async fn attended_refer(
        &mut self,
        tx: TxKey,
        req: Request,
        leg_id: LegId,
        replaces: Replaces,
    ) {
        let Some(transport) = self.legs.get(&leg_id).map(|l| l.target.peer.transport) else {
            return self.reply(tx, &req, 481).await;
        };
        let mut ok = Response::from_request(&req, status(202));
        ok.headers.push(
            HeaderName::Contact,
            format!("<{}>", self.sip.contact_uri("vaxel", transport)),
        );
        self.respond(tx, ok).await;
        self.notify_referrer(leg_id, "SIP/2.0 100 Trying", false)
            .await;
        if let Err(code) = self.start_join(leg_id, &replaces).await {
            let frag = format!("SIP/2.0 {code} {}", status(code).canonical_reason());
            self.notify_referrer(leg_id, &frag, true).await;
        }
    }

    async fn start_join(&mut self, referrer: LegId, replaces: &Replaces) -> Result<(), u16> {
        let replaced = self.replaced_leg(replaces).ok_or(481u16)?;
        let (x_call, y_call, side) = {
            let x = self.legs.get(&referrer).ok_or(481u16)?;
            let r = self.legs.get(&replaced).ok_or(481u16)?;
            (x.call, r.call, r.side)
        };
        if x_call == y_call || replaced == referrer {
            return Err(400);
        }
        let mover = self.peer_of(referrer).ok_or(481u16)?;
        let y_peer = self.peer_of(replaced).ok_or(481u16)?;
        if self
            .calls
            .get(&y_call)
            .is_some_and(|c| c.transfer.is_some())
            || self
                .calls
                .get(&x_call)
                .is_some_and(|c| c.transfer.is_some())
        {
            return Err(491);
        }
        let y_sdp = self
            .legs
            .get(&y_peer)
            .and_then(|l| l.sdp.clone())
            .ok_or(488u16)?;
        let mover_sdp = self.legs.get(&mover).and_then(|l| l.sdp.clone());
        let relay = &mut self.calls.get_mut(&y_call).ok_or(481u16)?.relay;
        relay.prepare(side).await.map_err(|_| 503u16)?;
        // The mover's profile and crypto line as it last stated them, so the offer
        // keeps them (its answer then brings its keys).
        if let Some(m) = mover_sdp {
            relay.heard_prepared(side, &m);
        }
        let body = sendrecv(&y_sdp)
            .and_then(|b| relay.sdp_for_prepared(side, &b))
            .ok_or(488u16)?;
        let m = self.legs.get_mut(&mover).ok_or(481u16)?;
        let target = m.target.clone();
        let d = m.dialog.as_mut().ok_or(481u16)?;
        let mut invite = d.new_request(Method::Invite);
        invite.headers.insert_first(
            HeaderName::Via,
            self.sip.via(target.peer.transport).to_string(),
        );
        invite.headers.push(
            HeaderName::Contact,
            format!("<{}>", self.sip.contact_uri("vaxel", target.peer.transport)),
        );
        invite.headers.push(HeaderName::Allow, ALLOW);
        invite.set_body(&sdp_type(), Bytes::from(body));
        match self.sip.send_request(invite.clone(), target).await {
            Ok(key) => {
                self.joins.insert(
                    key,
                    Join {
                        referrer,
                        replaced,
                        mover,
                        into: y_call,
                        side,
                        sent: invite,
                        glare: 0,
                    },
                );
                Ok(())
            }
            Err(_) => {
                if let Some(c) = self.calls.get_mut(&y_call) {
                    c.relay.abandon(side);
                }
                Err(503)
            }
        }
    }

    /// The mover's answer to the joining re-INVITE.
    pub(super) async fn join_response(&mut self, key: TxKey, resp: Response) {
        if resp.status.is_provisional() {
            return;
        }
        let Some(j) = self.joins.remove(&key) else {
            return;
        };
        let ok = resp.status.is_success();
        if let Some(m) = self.legs.get_mut(&j.mover) {
            let target = m.target.clone();
            if let Some(d) = m.dialog.as_mut() {
                d.handle_response(&j.sent, &resp);
                if ok {
                    let mut ack = d.new_ack(&j.sent);
                    ack.headers.insert_first(
                        HeaderName::Via,
                        self.sip.via(target.peer.transport).to_string(),
                    );
                    let _ = self.sip.send_ack(ack, target).await;
                }
            }
        }
        if resp.status.as_u16() == 491 && j.glare < GLARE_RETRIES {
            let at = self.glare_at(j.mover);
            self.glare.push((at, Glare::Join(j)));
            return;
        }
        if !ok {
            return self.join_failed(j, resp.status.as_u16()).await;
        }
        let Some(x_call) = self.legs.get(&j.mover).map(|l| l.call) else {
            return self.join_failed(j, 481).await;
        };
        let Some(y) = self.calls.get_mut(&j.into) else {
            return self.join_failed(j, 481).await;
        };
        let remote = if has_sdp(&resp.headers, &resp.body) {
            y.relay.heard_prepared(j.side, &resp.body)
        } else {
            None
        };
        y.relay.commit(j.side, remote);
        match j.side {
            Side::A => y.a = j.mover,
            Side::B => y.answered = Some(j.mover),
        }
        let y_record = y.record;
        let now = unix_now();
        if let Some(x) = self.calls.get_mut(&x_call) {
            // The mover leaves the old call without being hung up with it.
            if x.a == j.mover {
                x.a = j.referrer;
            } else if x.answered == Some(j.mover) {
                x.answered = Some(j.referrer);
            }
            x.forks.retain(|l| *l != j.mover);
        }
        let mover_record = {
            let mut db = self.db.get();
            let m = self.legs.get(&j.mover);
            if let Some(m) = m {
                let _ = db.end_leg(m.record, "transferred", now);
            }
            let (party, uri) = m
                .map(|m| (m.party.clone(), m.invite.uri.to_string()))
                .unwrap_or_default();
            for l in [j.referrer, j.replaced] {
                if let Some(l) = self.legs.get(&l) {
                    let _ = db.end_leg(l.record, "transferred", now);
                }
            }
            db.add_leg(y_record, "transfer", &party, &uri, now)
                .unwrap_or(0)
        };
        if let Some(m) = self.legs.get_mut(&j.mover) {
            m.call = j.into;
            m.side = j.side;
            m.record = mover_record;
            if has_sdp(&resp.headers, &resp.body) {
                m.sdp = Some(resp.body.clone());
            }
        }
        self.notify_referrer(j.referrer, "SIP/2.0 200 OK", true)
            .await;
        self.hang_up_leg(j.referrer).await;
        self.hang_up_leg(j.replaced).await;
        // The party who stayed in the joined call learns the mover's media.
        if has_sdp(&resp.headers, &resp.body)
            && let Some(stays) = self.peer_of(j.mover)
        {
            self.reoffer(stays, &resp.body).await;
        }
        self.end_call(x_call, "transferred");
        debug!(
            "attended transfer: call {x_call} joined into call {}",
            j.into
        );
    }

    /// Re-INVITEs `leg` (who stays) with its new peer's `sdp`, made `sendrecv` and
    /// pointed at `leg`'s own relay socket, so its media does not move but it learns
    /// the new peer's codecs and keys (RFC 3264 §8; RFC 4568 keys are end to end).
    pub(super) async fn reoffer(&mut self, leg: LegId, sdp: &[u8]) {
        let Some(l) = self.legs.get(&leg) else { return };
        let side = l.side;
        let Some(call) = self.calls.get(&l.call) else {
            return;
        };
        let Some(body) = sendrecv(sdp).and_then(|b| call.relay.sdp_for(side, &b)) else {
            return;
        };
        let Some(l) = self.legs.get_mut(&leg) else {
            return;
        };
        let target = l.target.clone();
        let Some(d) = l.dialog.as_mut() else { return };
        let mut invite = d.new_request(Method::Invite);
        invite.headers.insert_first(
            HeaderName::Via,
            self.sip.via(target.peer.transport).to_string(),
        );
        invite.headers.push(
            HeaderName::Contact,
            format!("<{}>", self.sip.contact_uri("vaxel", target.peer.transport)),
        );
        invite.headers.push(HeaderName::Allow, ALLOW);
        invite.set_body(&sdp_type(), Bytes::from(body));
        if let Ok(key) = self.sip.send_request(invite.clone(), target).await {
            self.reoffers.insert(
                key,
                Reoffer {
                    leg,
                    sent: invite,
                    glare: 0,
                },
            );
        }
    }

    /// The answer to [`Engine::reoffer`]: acknowledged; its media address goes to
    /// the relay. A refusal leaves the leg as it was.
    pub(super) async fn reoffer_response(&mut self, key: TxKey, resp: Response) {
        if resp.status.is_provisional() {
            return;
        }
        let Some(r) = self.reoffers.remove(&key) else {
            return;
        };
        let Some(l) = self.legs.get_mut(&r.leg) else {
            return;
        };
        let (side, call_id, target) = (l.side, l.call, l.target.clone());
        let Some(d) = l.dialog.as_mut() else { return };
        d.handle_response(&r.sent, &resp);
        if resp.status.as_u16() == 491 && r.glare < GLARE_RETRIES {
            let at = self.glare_at(r.leg);
            self.glare.push((at, Glare::Reoffer(r)));
            return;
        }
        if !resp.status.is_success() {
            debug!(
                "re-INVITE after a transfer refused: {}",
                resp.status.as_u16()
            );
            return;
        }
        let ack = d.new_ack(&r.sent);
        let mut ack = ack;
        ack.headers.insert_first(
            HeaderName::Via,
            self.sip.via(target.peer.transport).to_string(),
        );
        let _ = self.sip.send_ack(ack, target).await;
        if has_sdp(&resp.headers, &resp.body) {
            l.sdp = Some(resp.body.clone());
            if let Some(c) = self.calls.get(&call_id) {
                let _ = c.relay.heard(side, &resp.body);
            }
        }
    }

    /// §14.1: when a re-INVITE on `leg` that met 491 may be sent again: after 2.1 to
    /// 4 s (in 10 ms steps) when the engine chose the dialog's Call-ID (it sent the
    /// initial INVITE), else after 0 to 2 s.
    fn glare_at(&self, leg: LegId) -> std::time::Instant {
        use rand::Rng;
        let ours = self.legs.get(&leg).is_some_and(|l| {
            l.invite
                .headers
                .from()
                .ok()
                .and_then(|f| f.tag().map(|t| t == l.local_tag.as_str()))
                .unwrap_or(false)
        });
        let steps = if ours {
            rand::rng().random_range(210..=400u64)
        } else {
            rand::rng().random_range(0..=200u64)
        };
        std::time::Instant::now() + std::time::Duration::from_millis(steps * 10)
    }

    /// Sends the re-INVITEs whose glare delay is over again (new CSeq and branch,
    /// same offer).
    pub(super) async fn glare_tick(&mut self) {
        let now = std::time::Instant::now();
        let (due, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.glare)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.glare = wait;
        for (_, g) in due {
            let (leg, sent) = match &g {
                Glare::Join(j) => (j.mover, &j.sent),
                Glare::Reoffer(r) => (r.leg, &r.sent),
            };
            let Some(l) = self.legs.get_mut(&leg) else {
                if let Glare::Join(j) = g {
                    self.join_failed(j, 481).await;
                }
                continue;
            };
            let target = l.target.clone();
            let Some(d) = l.dialog.as_mut() else { continue };
            let mut invite = d.new_request(Method::Invite);
            invite.headers.insert_first(
                HeaderName::Via,
                self.sip.via(target.peer.transport).to_string(),
            );
            invite.headers.push(
                HeaderName::Contact,
                format!("<{}>", self.sip.contact_uri("vaxel", target.peer.transport)),
            );
            invite.headers.push(HeaderName::Allow, ALLOW);
            invite.set_body(&sdp_type(), sent.body.clone());
            debug!("leg {leg}: re-INVITE again after 491");
            match (self.sip.send_request(invite.clone(), target).await, g) {
                (Ok(key), Glare::Join(mut j)) => {
                    j.sent = invite;
                    j.glare += 1;
                    self.joins.insert(key, j);
                }
                (Ok(key), Glare::Reoffer(mut r)) => {
                    r.sent = invite;
                    r.glare += 1;
                    self.reoffers.insert(key, r);
                }
                (Err(_), Glare::Join(j)) => self.join_failed(j, 503).await,
                (Err(_), Glare::Reoffer(_)) => {}
            }
        }
    }

    /// The join did not happen: both calls stay as they were.
    pub(super) async fn join_failed(&mut self, j: Join, code: u16) {
        if let Some(c) = self.calls.get_mut(&j.into) {
            c.relay.abandon(j.side);
        }
        let frag = format!("SIP/2.0 {code} {}", status(code).canonical_reason());
        self.notify_referrer(j.referrer, &frag, true).await;
    }

    /// INVITE with Replaces (RFC 3891 §3): a registered user's new dialog takes the
    /// place of an answered leg; the party on the other side stays and does not
    /// notice (its media stays on its relay socket).
    pub(super) async fn invite_replaces(&mut self, tx: TxKey, req: Request, from: Peer) {
        let Some(user) = self
            .authenticate(tx, &req, from, ChallengeKind::Proxy)
            .await
        else {
            return;
        };
        let Ok(Some(replaces)) = req.headers.replaces() else {
            return self.reply(tx, &req, 400).await;
        };
        let Some(r_id) = self.replaced_leg(&replaces) else {
            // §3: no matching dialog.
            return self.reply(tx, &req, 481).await;
        };
        let Some(r) = self.legs.get(&r_id) else {
            return self.reply(tx, &req, 481).await;
        };
        if r.state != LegState::Confirmed {
            // Replacing a ringing leg (call pickup) is not offered.
            return self.reply(tx, &req, 481).await;
        }
        if replaces.early_only() {
            // §3: early-only and the dialog is confirmed.
            return self.reply(tx, &req, 486).await;
        }
        let (call_id, side, r_record) = (r.call, r.side, r.record);
        let Some(stays) = self.peer_of(r_id) else {
            return self.reply(tx, &req, 481).await;
        };
        let Some(stays_sdp) = self.legs.get(&stays).and_then(|l| l.sdp.clone()) else {
            return self.reply(tx, &req, 488).await;
        };
        let Some(call) = self.calls.get_mut(&call_id) else {
            return self.reply(tx, &req, 481).await;
        };
        if call.relay.prepare(side).await.is_err() {
            return self.reply(tx, &req, 503).await;
        }
        // The new party's offer first, so the answer echoes its crypto line.
        let offer = has_sdp(&req.headers, &req.body);
        let remote = if offer {
            call.relay.heard_prepared(side, &req.body)
        } else {
            None
        };
        let Some(answer) = sendrecv(&stays_sdp).and_then(|b| call.relay.sdp_for_prepared(side, &b))
        else {
            return self.reply(tx, &req, 488).await;
        };
        let tag = self.tag_for(&req);
        let mut ok = Response::from_request(&req, StatusCode::OK);
        let _ = ok.set_to_tag(&tag);
        ok.headers.push(
            HeaderName::Contact,
            format!("<{}>", self.sip.contact_uri("vaxel", from.transport)),
        );
        ok.headers.push(HeaderName::Allow, ALLOW);
        set_response_body(&mut ok, &sdp_type(), Bytes::from(answer));
        let dialog = match Dialog::from_uas(&req, &ok) {
            Ok(d) => d,
            Err(_) => return self.reply(tx, &req, 400).await,
        };
        let Some(call) = self.calls.get_mut(&call_id) else {
            return self.reply(tx, &req, 481).await;
        };
        call.relay.commit(side, remote);
        let record = call.record;
        let leg = self.new_id();
        let now = unix_now();
        let leg_record = {
            let mut db = self.db.get();
            let _ = db.end_leg(r_record, "replaced", now);
            db.add_leg(
                record,
                "replaces",
                &user.extension,
                &req.uri.to_string(),
                now,
            )
            .unwrap_or(0)
        };
        let cid = req
            .headers
            .call_id()
            .map(|c| c.to_string())
            .unwrap_or_default();
        self.dialogs.insert((cid, tag.clone()), leg);
        self.invite_txs.insert(tx, leg);
        self.legs.insert(
            leg,
            Leg {
                call: call_id,
                side,
                invite: req.clone(),
                invite_tx: Some(tx),
                local_tag: tag,
                dialog: Some(dialog),
                target: Target::new(from.transport, from.addr),
                state: LegState::Confirmed,
                record: leg_record,
                party: user.extension.clone(),
                sdp: offer.then(|| req.body.clone()),
            },
        );
        if let Some(call) = self.calls.get_mut(&call_id) {
            match side {
                Side::A => call.a = leg,
                Side::B => call.answered = Some(leg),
            }
        }
        self.respond(tx, ok).await;
        self.hang_up_leg(r_id).await;
        debug!("call {call_id}: leg replaced by {}", user.extension);
    }
}
