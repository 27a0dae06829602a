//! Session timers (RFC 4028) in the B2BUA, negotiated per leg.
//!
//! - A leg (the engine is UAS): an INVITE with `Session-Expires` below the engine's
//!   Min-SE gets 422 with `Min-SE` (§8.1.1). Otherwise the 2xx carries
//!   `Session-Expires` with the refresher: the caller (`uac`) when it supports
//!   `timer`, else the engine (`uas`) (§9).
//! - B leg (the engine is UAC): the INVITE asks for a session (`Supported: timer`,
//!   `Session-Expires` of [`REQUESTED_INTERVAL`] with the engine as refresher,
//!   `Min-SE`, §7.1); when the callee's 2xx carries `Session-Expires`, the interval
//!   and refresher it names are honoured (§7.2).
//! - The refresher of a leg is expected to refresh (re-INVITE or UPDATE) within the
//!   interval; when no refresh came by `interval − min(32, interval/3)` seconds
//!   (§10), both legs get BYE and the call ends. Where the engine is the refresher it
//!   refreshes at half the interval: with UPDATE when the party allows it (its
//!   `Allow`), else with a re-INVITE offering the SDP it last got from the engine
//!   unchanged (§7.4, RFC 3264 §8); 481, 408 or no answer ends the call.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::debug;
use vaxel_sip::msg::{HeaderName, Method, Request, Response};

use super::{CallId, Engine, LegId, has_sdp, sdp_type};

/// The session interval the engine asks a callee for (RFC 4028 §4 recommends 1800 s);
/// never below the engine's Min-SE.
pub(super) const REQUESTED_INTERVAL: u32 = 1800;

/// The timer of one leg.
#[derive(Debug)]
pub(super) struct SessionTimer {
    /// The negotiated interval in seconds.
    interval: u32,
    /// Whether the engine refreshes this leg (else the party does).
    we_refresh: bool,
    /// The last refresh (either direction).
    refreshed: Instant,
    /// A refresh of ours is on its way.
    pending: bool,
    /// The party accepts UPDATE (RFC 3311), so refreshes need no offer.
    update_ok: bool,
    /// Our refreshing re-INVITE waiting for its answer (to acknowledge a 2xx).
    sent: Option<Request>,
}

impl SessionTimer {
    /// §10: when the session expires without a refresh.
    fn expires_at(&self) -> Instant {
        let i = self.interval;
        self.refreshed + Duration::from_secs(u64::from(i - (i / 3).min(32)))
    }

    fn refresh_at(&self) -> Instant {
        self.refreshed + Duration::from_secs(u64::from(self.interval / 2))
    }
}

/// Whether a request's or response's `Allow` lists UPDATE.
fn allows_update(headers: &vaxel_sip::msg::Headers) -> bool {
    headers.allow().is_ok_and(|m| m.contains(&Method::Update))
}

fn supports_timer(req_or_resp_supported: &[bytestring::ByteString]) -> bool {
    req_or_resp_supported
        .iter()
        .any(|s| s.eq_ignore_ascii_case("timer"))
}

impl Engine {
    /// §8.1.1: an INVITE whose Session-Expires is below our Min-SE gets 422 with
    /// our Min-SE. Returns `true` when it was refused.
    pub(super) async fn session_too_small(
        &mut self,
        tx: vaxel_sip::transaction::TxKey,
        req: &Request,
    ) -> bool {
        let Ok(Some(se)) = req.headers.session_expires() else {
            return false;
        };
        if se.seconds >= self.min_se {
            return false;
        }
        let mut r = Response::from_request(req, super::status(422));
        let _ = r.set_to_tag(&self.tag_for(req));
        r.headers.push(HeaderName::MinSe, self.min_se.to_string());
        self.respond(tx, r).await;
        true
    }

    /// Adds the session timer to the caller's 2xx (§9) and starts the A leg's timer.
    pub(super) fn session_timer_answer(
        &mut self,
        a_leg: LegId,
        invite: &Request,
        ok: &mut Response,
    ) {
        let Ok(Some(se)) = invite.headers.session_expires() else {
            return;
        };
        let interval = se.seconds.max(self.min_se);
        let uac_supports = supports_timer(&invite.headers.supported());
        // The caller refreshes when it can (it asked for it, or did not say).
        let refresher = match se.refresher() {
            Some(r) if r.eq_ignore_ascii_case("uas") => "uas",
            _ if uac_supports => "uac",
            _ => "uas",
        };
        ok.headers.push(
            HeaderName::SessionExpires,
            format!("{interval};refresher={refresher}"),
        );
        if uac_supports {
            ok.headers.push(HeaderName::Require, "timer");
        }
        self.session_timers.insert(
            a_leg,
            SessionTimer {
                interval,
                we_refresh: refresher == "uas",
                refreshed: Instant::now(),
                pending: false,
                update_ok: allows_update(&invite.headers),
                sent: None,
            },
        );
    }

    /// §7.1: the headers of an INVITE the engine sends a callee, asking for a
    /// session timer with the engine as refresher.
    pub(super) fn session_timer_request(&self, invite: &mut Request) {
        invite.headers.push(HeaderName::Supported, "timer");
        invite.headers.push(
            HeaderName::SessionExpires,
            format!("{};refresher=uac", REQUESTED_INTERVAL.max(self.min_se)),
        );
        invite
            .headers
            .push(HeaderName::MinSe, self.min_se.to_string());
    }

    /// A B leg's 2xx: when it carries Session-Expires, the leg's timer starts with
    /// the refresher it names (§7.2; we are the UAC of that dialog).
    pub(super) fn session_timer_answered(&mut self, b_leg: LegId, resp: &Response) {
        let Ok(Some(se)) = resp.headers.session_expires() else {
            return;
        };
        let we_refresh = !se
            .refresher()
            .is_some_and(|r| r.eq_ignore_ascii_case("uas"));
        self.session_timers.insert(
            b_leg,
            SessionTimer {
                interval: se.seconds.max(1),
                we_refresh,
                refreshed: Instant::now(),
                pending: false,
                update_ok: allows_update(&resp.headers),
                sent: None,
            },
        );
    }

    /// A re-INVITE or UPDATE arrived on `leg`: that is a refresh (§10).
    pub(super) fn session_refreshed(&mut self, leg: LegId, req: &Request) {
        if matches!(req.method, Method::Invite | Method::Update)
            && let Some(t) = self.session_timers.get_mut(&leg)
        {
            t.refreshed = Instant::now();
        }
    }

    /// Answers a refreshing UPDATE without a body on a leg with a timer ourselves
    /// (§9: with Session-Expires); `false` when it is not one (it is passed on).
    pub(super) async fn answer_refresh(
        &mut self,
        tx: vaxel_sip::transaction::TxKey,
        leg: LegId,
        req: &Request,
    ) -> bool {
        if req.method != Method::Update || !req.body.is_empty() {
            return false;
        }
        let Some(t) = self.session_timers.get(&leg) else {
            return false;
        };
        let refresher = if t.we_refresh { "uas" } else { "uac" };
        let interval = t.interval;
        let mut ok = Response::from_request(req, vaxel_sip::msg::StatusCode::OK);
        ok.headers.push(
            HeaderName::SessionExpires,
            format!("{interval};refresher={refresher}"),
        );
        if supports_timer(&req.headers.supported()) {
            ok.headers.push(HeaderName::Require, "timer");
        }
        self.respond(tx, ok).await;
        true
    }

    /// Once a second: calls whose refresh did not come end; the refreshes that are
    /// ours are sent.
    pub(super) async fn session_timers_tick(&mut self) {
        let now = Instant::now();
        let mut expired: Vec<CallId> = Vec::new();
        let mut due: Vec<LegId> = Vec::new();
        for (leg, t) in &self.session_timers {
            if now >= t.expires_at() {
                if let Some(l) = self.legs.get(leg) {
                    expired.push(l.call);
                }
            } else if t.we_refresh && !t.pending && now >= t.refresh_at() {
                due.push(*leg);
            }
        }
        for call in expired {
            debug!("call {call}: session timer expired without a refresh (RFC 4028 §10)");
            self.drop_dead_call(call).await;
        }
        for leg in due {
            self.send_refresh(leg).await;
        }
    }

    /// A session refresh (§7.4 as the refresher), UPDATE or re-INVITE, answered via
    /// `probes`: 481 or 408 or no answer ends the call; a 2xx restarts the timer.
    async fn send_refresh(&mut self, leg_id: LegId) {
        let Some((interval, update_ok)) = self
            .session_timers
            .get(&leg_id)
            .map(|t| (t.interval, t.update_ok))
        else {
            return;
        };
        // A re-INVITE offers what the party last got from us, unchanged.
        let offer = match (update_ok, self.legs.get(&leg_id)) {
            (false, Some(l)) => self
                .calls
                .get(&l.call)
                .and_then(|c| c.relay.last_sdp(l.side))
                .or_else(|| {
                    has_sdp(&l.invite.headers, &l.invite.body)
                        .then(|| String::from_utf8_lossy(&l.invite.body).into_owned())
                }),
            _ => None,
        };
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            self.session_timers.remove(&leg_id);
            return;
        };
        let call = leg.call;
        let target = leg.target.clone();
        let Some(d) = leg.dialog.as_mut() else { return };
        let method = if offer.is_some() {
            Method::Invite
        } else {
            Method::Update
        };
        let mut u = d.new_request(method);
        u.headers.insert_first(
            HeaderName::Via,
            self.sip.via(target.peer.transport).to_string(),
        );
        u.headers.push(
            HeaderName::Contact,
            format!("<{}>", self.sip.contact_uri("vaxel", target.peer.transport)),
        );
        u.headers.push(HeaderName::Supported, "timer");
        u.headers.push(
            HeaderName::SessionExpires,
            format!("{interval};refresher=uac"),
        );
        if let Some(o) = offer {
            u.headers.push(HeaderName::Allow, super::ALLOW);
            u.set_body(&sdp_type(), Bytes::from(o));
        }
        if let Ok(key) = self.sip.send_request(u.clone(), target).await {
            self.probes.insert(key, call);
            self.refreshing.insert(key, leg_id);
            if let Some(t) = self.session_timers.get_mut(&leg_id) {
                t.pending = true;
                t.sent = (u.method == Method::Invite).then_some(u);
            }
        }
    }

    /// The answer to our refresh (the call-ending answers are handled as probes). A
    /// 2xx restarts the timer (a re-INVITE's is acknowledged, its SDP goes to the
    /// relay); another refusal (405/501, 488, 491) makes the timer the party's
    /// problem: we stop refreshing and rely on the OPTIONS probes.
    pub(super) async fn refresh_answered(
        &mut self,
        key: vaxel_sip::transaction::TxKey,
        resp: &Response,
    ) {
        let Some(leg) = self.refreshing.remove(&key) else {
            return;
        };
        if !resp.status.is_success() {
            self.session_timers.remove(&leg);
            return;
        }
        let sent = self.session_timers.get_mut(&leg).and_then(|t| {
            t.refreshed = Instant::now();
            t.pending = false;
            t.sent.take()
        });
        let Some(sent) = sent else { return };
        let Some(l) = self.legs.get_mut(&leg) else {
            return;
        };
        let (side, call, target) = (l.side, l.call, l.target.clone());
        if let Some(d) = l.dialog.as_mut() {
            d.handle_response(&sent, resp);
            let mut ack = d.new_ack(&sent);
            ack.headers.insert_first(
                HeaderName::Via,
                self.sip.via(target.peer.transport).to_string(),
            );
            let _ = self.sip.send_ack(ack, target).await;
        }
        if has_sdp(&resp.headers, &resp.body)
            && let Some(c) = self.calls.get(&call)
        {
            let _ = c.relay.heard(side, &resp.body);
        }
    }
}
