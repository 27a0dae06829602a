//! Media negotiation steps of the engine around the relay (see `crate::relay`): a
//! callee that refuses the engine's SRTP offer for its transport profile gets the
//! other profile once.

use bytes::Bytes;
use tracing::debug;
use vaxel_sip::msg::{HeaderName, Response};
use vaxel_sip::transaction::TxKey;

use super::{Engine, LegState, sdp_type};
use crate::relay::other_profile;

impl Engine {
    /// A 488 Not Acceptable Here (RFC 3261 §21.4.26) to the first INVITE of a leg the
    /// engine called, whose offer carried the engine's `a=crypto`: sends the INVITE
    /// again (CSeq + 1, a new transaction, §8.1.3.5 allows a retry) with the other
    /// transport profile — RTP/AVP with `a=crypto` for a phone that has no SRTP and
    /// refused RTP/SAVP, RTP/SAVP for one that requires SRTP. True if sent; the leg
    /// then waits for the new transaction's answer.
    pub(super) async fn retry_other_profile(&mut self, old: TxKey, resp: &Response) -> bool {
        if resp.status.as_u16() != 488 {
            return false;
        }
        let Some(&leg_id) = self.invite_txs.get(&old) else {
            return false;
        };
        let Some(leg) = self.legs.get(&leg_id) else {
            return false;
        };
        let first = leg.invite.headers.cseq().is_ok_and(|c| c.seq == 1);
        if !first || leg.state == LegState::Confirmed || leg.dialog.is_some() {
            return false;
        }
        let Some(body) = other_profile(&leg.invite.body) else {
            return false;
        };
        if let Some(c) = self.calls.get(&leg.call) {
            c.relay.sent_instead(leg.side, &body);
        }
        let mut invite = leg.invite.clone();
        let target = leg.target.clone();
        invite.headers.remove(&HeaderName::Via);
        invite.headers.insert_first(
            HeaderName::Via,
            self.sip.via(target.peer.transport).to_string(),
        );
        invite.headers.set(HeaderName::CSeq, "2 INVITE");
        invite.set_body(&sdp_type(), Bytes::from(body));
        match self.sip.send_request(invite.clone(), target).await {
            Ok(key) => {
                debug!("leg {leg_id}: 488 to the SRTP offer, offering the other profile");
                self.invite_txs.remove(&old);
                self.invite_txs.insert(key, leg_id);
                if let Some(l) = self.legs.get_mut(&leg_id) {
                    l.invite = invite;
                    l.invite_tx = Some(key);
                }
                true
            }
            Err(_) => false,
        }
    }
}
