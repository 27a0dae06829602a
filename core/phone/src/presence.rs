//! Presence on the phone's side: the documents we publish for [`Command::SetPresence`]
//! (PIDF, RFC 3863, with RPID activities, RFC 4480), and the colleagues we watch for
//! [`Command::Watch`] (SUBSCRIBE/NOTIFY, RFC 6665, to `presence`, RFC 3856, and
//! `dialog`, RFC 4235), turned into [`Event::PresenceChanged`] and
//! [`Event::DialogStateChanged`].
//!
//! The SIP state machines are vaxel-sip's ([`Publisher`](vaxel_sip::usage::publication::Publisher),
//! [`Subscriber`]); the phone task drives them like its other usages. What lives here is
//! the policy: what a document says, when a subscription the server ended is renewed
//! (RFC 6665 §4.1.3), and nothing reported twice.
//!
//! [`Command::SetPresence`]: crate::Command::SetPresence
//! [`Command::Watch`]: crate::Command::Watch

use std::time::{Duration, Instant};

use vaxel_sip::msg::Uri;
use vaxel_sip::usage::body::{DialogInfoState, Pidf, Rpid, dialog_states};
use vaxel_sip::usage::subscription::Subscriber;

use crate::api::Event;

/// What a watch subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchKind {
    /// `Event: presence` (RFC 3856).
    Presence,
    /// `Event: dialog` (RFC 4235).
    Dialog,
}

impl WatchKind {
    /// The event package name.
    pub(crate) fn event(self) -> &'static str {
        match self {
            WatchKind::Presence => "presence",
            WatchKind::Dialog => "dialog",
        }
    }

    /// The Accept header (RFC 3856 §6.7, RFC 4235 §3.5).
    pub(crate) fn accept(self) -> &'static str {
        match self {
            WatchKind::Presence => "application/pidf+xml",
            WatchKind::Dialog => "application/dialog-info+xml",
        }
    }
}

/// One subscription of a [`Command::Watch`](crate::Command::Watch).
pub(crate) struct Watch {
    /// As the user gave it (events name it so).
    pub uri: String,
    /// Whom we subscribe to.
    pub target: Uri,
    /// From which account.
    pub account: usize,
    pub kind: WatchKind,
    /// The subscription, while one is up or being made.
    pub sub: Option<Subscriber>,
    /// When to subscribe again after the server ended it.
    pub retry_at: Option<Instant>,
    /// Failed attempts in a row (back-off).
    pub failures: u32,
    /// Unwatched: the next end is final.
    pub stopping: bool,
    /// [`Event::Watching`] was reported for the current subscription.
    pub accepted: bool,
    /// The last state reported, so that unchanged NOTIFYs (refreshes) stay quiet.
    pub last: Option<Event>,
}

/// The presence document for an activity (see [`Command::SetPresence`](crate::Command::SetPresence)):
/// `available` is open without activity, `offline` closed, anything else open with
/// that activity.
pub(crate) fn document(
    entity: &str,
    activity: &str,
    note: Option<&str>,
    until: Option<&str>,
) -> String {
    let a = activity.trim().to_ascii_lowercase();
    let (open, activities) = match a.as_str() {
        "available" | "open" | "online" => (true, vec![]),
        "offline" | "closed" => (false, vec![]),
        _ => (true, vec![a.clone()]),
    };
    let pidf = Pidf {
        entity: entity.to_owned(),
        open,
        note: note.map(str::to_owned),
    };
    let rpid = Rpid {
        until: until.filter(|_| !activities.is_empty()).map(str::to_owned),
        activities,
        note: note.map(str::to_owned),
    };
    pidf.to_xml_with(&rpid)
}

/// `until` as RFC 3339 in UTC: a timestamp with offset, or `HH:MM` for the next such
/// local wall time after `now`.
pub(crate) fn normalize_until(text: &str, now: &jiff::Zoned) -> Result<String, String> {
    let t = text.trim();
    if let Ok(ts) = t.parse::<jiff::Timestamp>() {
        if ts <= now.timestamp() {
            return Err(format!("until: {t} has passed"));
        }
        return Ok(ts.to_string());
    }
    let bad = || format!("until: give an RFC 3339 time (2026-11-22T14:00:00Z) or HH:MM, not {t:?}");
    let (h, m) = t.split_once(':').ok_or_else(bad)?;
    let (h, m): (i8, i8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if !(0..24).contains(&h) || !(0..60).contains(&m) {
        return Err(bad());
    }
    let today = now
        .with()
        .hour(h)
        .minute(m)
        .second(0)
        .subsec_nanosecond(0)
        .build()
        .map_err(|e| e.to_string())?;
    let at = if today.timestamp() > now.timestamp() {
        today
    } else {
        today
            .checked_add(jiff::Span::new().days(1))
            .map_err(|e| e.to_string())?
    };
    Ok(at.timestamp().to_string())
}

/// [`Event::PresenceChanged`] from a presence NOTIFY's body (RFC 3856 §6.8: an empty
/// body means the server has no state to give).
pub(crate) fn presence_event(uri: &str, body: &[u8]) -> Event {
    let pidf = Pidf::parse(body);
    let rpid = Rpid::parse(body).unwrap_or_default();
    let status = match &pidf {
        Some(p) if p.open => "open",
        Some(_) => "closed",
        None => "unknown",
    };
    Event::PresenceChanged {
        uri: uri.to_owned(),
        status: status.into(),
        activity: rpid.activities.first().cloned(),
        note: rpid.note.or_else(|| pidf.and_then(|p| p.note)),
        until: rpid.until,
        activities: rpid.activities,
    }
}

/// [`Event::DialogStateChanged`] from a dialog NOTIFY's body; `None` when unreadable. An
/// empty body (no state yet) is idle.
pub(crate) fn dialog_event(uri: &str, body: &[u8]) -> Option<Event> {
    let dialogs = if body.iter().all(u8::is_ascii_whitespace) {
        Vec::new()
    } else {
        dialog_states(body)?
    };
    let rank = |s: DialogInfoState| match s {
        DialogInfoState::Confirmed => 4,
        DialogInfoState::Early => 3,
        DialogInfoState::Trying => 2,
        DialogInfoState::Terminated => 1,
    };
    let top = dialogs.iter().max_by_key(|d| rank(d.1));
    Some(Event::DialogStateChanged {
        uri: uri.to_owned(),
        state: top.map_or("idle", |d| d.1.as_str()).into(),
        direction: top.and_then(|d| d.2.clone()),
        dialogs: dialogs.len(),
    })
}

/// When to subscribe again after a subscription ended with `reason` (a
/// Subscription-State reason, or the failing status as text): RFC 6665 §4.1.3 —
/// `deactivated` and `timeout` at once, `probation` and `giveup` after Retry-After,
/// `rejected`, `noresource` and `invariant` never; a refused SUBSCRIBE (4xx but 408,
/// 481; 6xx) never; anything else after a back-off of 30 s doubling to 10 min.
pub(crate) fn resubscribe_in(
    reason: Option<&str>,
    retry_after: Option<u32>,
    failures: u32,
) -> Option<Duration> {
    let backoff = || {
        let n = failures.clamp(1, 6) - 1;
        Duration::from_secs(30 * (1u64 << n)).min(Duration::from_secs(600))
    };
    let after = retry_after.map(|s| Duration::from_secs(u64::from(s)));
    match reason {
        Some("deactivated" | "timeout") if failures <= 1 => Some(after.unwrap_or_default()),
        Some("rejected" | "noresource" | "invariant") => None,
        Some(code) if code.parse::<u16>().is_ok() => {
            let c: u16 = code.parse().unwrap_or(500);
            let refused = (400..500).contains(&c) && c != 408 && c != 481 || c >= 600;
            (!refused).then(|| after.unwrap_or_else(backoff))
        }
        _ => Some(after.unwrap_or_else(backoff)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_say_what_was_set() {
        let d = document(
            "sip:a@x",
            "busy",
            Some("in a meeting"),
            Some("2026-01-01T10:00:00Z"),
        );
        match presence_event("a", d.as_bytes()) {
            Event::PresenceChanged {
                status,
                activity,
                note,
                until,
                ..
            } => {
                assert_eq!(status, "open");
                assert_eq!(activity.as_deref(), Some("busy"));
                assert_eq!(note.as_deref(), Some("in a meeting"));
                assert_eq!(until.as_deref(), Some("2026-01-01T10:00:00Z"));
            }
            e => panic!("{e:?}"),
        }
        let d = document("sip:a@x", "offline", None, None);
        assert!(matches!(presence_event("a", d.as_bytes()),
            Event::PresenceChanged { status, activity: None, .. } if status == "closed"));
        assert!(matches!(presence_event("a", b""),
            Event::PresenceChanged { status, .. } if status == "unknown"));
    }

    #[test]
    fn until_is_rfc3339_utc() {
        let now: jiff::Zoned = "2026-11-22T10:30:00+01:00[Europe/Copenhagen]"
            .parse()
            .unwrap();
        assert_eq!(
            normalize_until("14:00", &now).unwrap(),
            "2026-11-22T13:00:00Z"
        );
        assert_eq!(
            normalize_until("09:00", &now).unwrap(),
            "2026-11-23T08:00:00Z"
        );
        assert_eq!(
            normalize_until("2026-11-22T14:00:00+01:00", &now).unwrap(),
            "2026-11-22T13:00:00Z"
        );
        assert!(normalize_until("tomorrow", &now).is_err());
        assert!(
            normalize_until("2026-11-22T09:00:00Z", &now).is_err(),
            "past"
        );
        assert!(normalize_until("25:00", &now).is_err());
    }

    #[test]
    fn busy_lamp_state_is_the_strongest_dialog() {
        let xml = br#"<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" entity="sip:b@x"><dialog id="1" direction="initiator"><state>terminated</state></dialog><dialog id="2" direction="recipient"><state>early</state></dialog></dialog-info>"#;
        assert_eq!(
            dialog_event("b", xml),
            Some(Event::DialogStateChanged {
                uri: "b".into(),
                state: "early".into(),
                direction: Some("recipient".into()),
                dialogs: 2
            })
        );
        assert!(matches!(dialog_event("b", b""),
            Some(Event::DialogStateChanged { state, .. }) if state == "idle"));
        assert_eq!(dialog_event("b", b"<garbage"), None);
    }

    #[test]
    fn when_to_subscribe_again() {
        assert_eq!(
            resubscribe_in(Some("timeout"), None, 1),
            Some(Duration::ZERO)
        );
        assert_eq!(
            resubscribe_in(Some("probation"), Some(5), 1),
            Some(Duration::from_secs(5))
        );
        assert_eq!(resubscribe_in(Some("rejected"), None, 1), None);
        assert_eq!(resubscribe_in(Some("404"), None, 1), None);
        assert_eq!(
            resubscribe_in(Some("503"), None, 2),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            resubscribe_in(Some("408"), None, 9),
            Some(Duration::from_secs(600))
        );
    }
}
