//! The presence service's state (SPEC R-314), pure: no IO, no clock (time comes in as
//! Unix seconds).
//!
//! - [`Compositor`]: the event state compositor of RFC 3903 — every user's published
//!   presence documents (one per device, each with its entity-tag and expiry), plus
//!   the presence set through the control API. The newest one says what the user
//!   is doing. It reports which users' publications changed
//!   ([`Compositor::take_changed`]) so the engine can keep them in its database and
//!   restore them after a restart ([`Compositor::restore`]): a device's refresh
//!   with `SIP-If-Match` still finds its entity-tag, and watchers still see it.
//! - [`compose`]: what watchers see, from the published state, the registration
//!   (no device → closed), the engine's own call state (in a call → `on-the-phone`,
//!   RFC 4480 §3.2) and an active `*24*` presence profile.
//! - [`pidf`] and [`dialog_info`]: the NOTIFY bodies (PIDF with RPID, RFC 3863 and
//!   RFC 4480; dialog-info, RFC 4235) and [`DialogTracker`], which reports a dialog
//!   that went away once as `terminated` (RFC 4235 §3.7.1) before forgetting it.
//! - [`may_subscribe`]: who may watch whom.
//!
//! The SIP side of subscriptions is vaxel-sip's [`Notifier`](vaxel_sip::usage::subscription::Notifier);
//! the engine task (`engine/presence.rs`) drives it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use vaxel_sip::usage::body::{DialogInfoState, Pidf, Rpid};

/// Longest publication and subscription lifetime we grant (RFC 3903 §6 step 5,
/// RFC 6665 §4.2.1.1: the notifier may shorten it).
pub const MAX_EXPIRES: u32 = 3600;
/// Lifetime of a publication that asks for none (RFC 3903 §4.1 leaves it to the ESC).
pub const DEFAULT_EXPIRES: u32 = 3600;
/// Shortest lifetime we accept; shorter gets 423 Interval Too Brief with this
/// Min-Expires (RFC 3903 §6 step 5, RFC 6665 §4.2.1.1).
pub const MIN_EXPIRES: u32 = 5;

/// What one publication says (PIDF basic status and the RPID person element).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// Basic status `open` (RFC 3863 §4.1.4).
    pub open: bool,
    /// The first activity (`meeting`, `busy`, `lunch`…, RFC 4480 §3.2); `None` is
    /// plainly available.
    pub activity: Option<String>,
    /// The note (RFC 4479 §3.2, else the tuple's).
    pub note: Option<String>,
    /// When the activity ends (RFC 3339).
    pub until: Option<String>,
}

impl Published {
    /// Reads a PIDF document (with RPID when present); `None` when it is no PIDF.
    pub fn from_pidf(xml: &[u8]) -> Option<Published> {
        let pidf = Pidf::parse(xml)?;
        let rpid = Rpid::parse(xml).unwrap_or_default();
        Some(Published {
            open: pidf.open,
            activity: rpid
                .activities
                .into_iter()
                .find(|a| a != "on-the-phone" && a != "unknown"),
            note: rpid.note.or(pidf.note).filter(|n| !n.is_empty()),
            until: rpid.until,
        })
    }
}

/// One publication as the engine stores it (RFC 3903 §6: the entity-tag, the state
/// and when it lapses), to survive a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPublication {
    /// The publishing user's extension.
    pub user: String,
    /// The entity-tag (`SIP-ETag`), or the control API's own.
    pub etag: String,
    /// What it says.
    pub state: Published,
    /// Unix seconds; `None` until changed (the control API's without an end).
    pub expires_at: Option<i64>,
    /// Order of publishing: the newest wins.
    pub seq: u64,
}

#[derive(Clone, Debug)]
struct Publication {
    etag: String,
    state: Published,
    /// Unix seconds; `None` never (the API's, until changed).
    expires_at: Option<i64>,
    /// Order of publishing: the newest wins.
    seq: u64,
}

/// A PUBLISH as the compositor needs it (RFC 3903 §6).
#[derive(Clone, Debug, Default)]
pub struct PublishRequest<'a> {
    /// `SIP-If-Match`: the entity-tag of the publication refreshed, modified or removed.
    pub if_match: Option<&'a str>,
    /// `Expires`, if given.
    pub expires: Option<u32>,
    /// The body, if any (a PIDF document).
    pub body: Option<&'a [u8]>,
}

/// Why a PUBLISH was refused: the publisher's fault, with the status to answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// 412 Conditional Request Failed: the entity-tag is unknown or expired (§6 step 3).
    #[error("412 no publication with that entity-tag")]
    UnknownEtag,
    /// 423 Interval Too Brief (§6 step 5).
    #[error("423 expiry shorter than {MIN_EXPIRES} s")]
    TooBrief,
    /// 400: an initial PUBLISH without a body (§6 step 4), or a body that is no PIDF.
    #[error("400 {0}")]
    BadBody(&'static str),
}

impl PublishError {
    /// The status to answer.
    pub fn status(&self) -> u16 {
        match self {
            PublishError::UnknownEtag => 412,
            PublishError::TooBrief => 423,
            PublishError::BadBody(_) => 400,
        }
    }
}

/// What a PUBLISH did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published2xx {
    /// The new entity-tag (`SIP-ETag`, §6 step 7); empty when the publication was removed.
    pub etag: String,
    /// The granted lifetime (`Expires` of the 200).
    pub expires: u32,
}

/// Entity-tag of the presence set through the control API.
const API_ETAG: &str = "api";

/// The presence compositor (RFC 3903 ESC) of every user.
#[derive(Debug, Default)]
pub struct Compositor {
    pubs: HashMap<String, Vec<Publication>>,
    seq: u64,
    /// Users whose publications changed since [`Compositor::take_changed`].
    changed: std::collections::BTreeSet<String>,
}

impl Compositor {
    /// An empty compositor.
    pub fn new() -> Compositor {
        Compositor::default()
    }

    /// Handles a PUBLISH for `user`'s presence at `now` (RFC 3903 §6): initial (body,
    /// no `SIP-If-Match`), refresh (no body), modify (body) or remove (`Expires: 0`).
    /// `new_etag` is a fresh random entity-tag (the caller's randomness).
    pub fn publish(
        &mut self,
        now: i64,
        user: &str,
        req: &PublishRequest<'_>,
        new_etag: String,
    ) -> Result<Published2xx, PublishError> {
        let expires = req.expires.unwrap_or(DEFAULT_EXPIRES).min(MAX_EXPIRES);
        if expires != 0 && expires < MIN_EXPIRES {
            return Err(PublishError::TooBrief);
        }
        let state = match req.body.filter(|b| !b.iter().all(u8::is_ascii_whitespace)) {
            Some(b) => {
                Some(Published::from_pidf(b).ok_or(PublishError::BadBody("the body is no PIDF"))?)
            }
            None => None,
        };
        self.seq += 1;
        let seq = self.seq;
        let list = self.pubs.entry(user.to_owned()).or_default();
        let before = list.len();
        list.retain(|p| p.expires_at.is_none_or(|t| t > now));
        if list.len() != before {
            self.changed.insert(user.to_owned());
        }
        let result = Self::apply(list, now, req, state, expires, new_etag, seq);
        if result.is_ok() {
            self.changed.insert(user.to_owned());
        }
        result
    }

    /// [`Compositor::publish`] on one user's live publications.
    fn apply(
        list: &mut Vec<Publication>,
        now: i64,
        req: &PublishRequest<'_>,
        state: Option<Published>,
        expires: u32,
        new_etag: String,
        seq: u64,
    ) -> Result<Published2xx, PublishError> {
        let Some(tag) = req.if_match else {
            let state = state.ok_or(PublishError::BadBody("an initial PUBLISH needs a body"))?;
            if expires == 0 {
                return Ok(Published2xx {
                    etag: String::new(),
                    expires: 0,
                });
            }
            list.push(Publication {
                etag: new_etag.clone(),
                state,
                expires_at: Some(now + i64::from(expires)),
                seq,
            });
            return Ok(Published2xx {
                etag: new_etag,
                expires,
            });
        };
        let i = list
            .iter()
            .position(|p| p.etag == tag && tag != API_ETAG)
            .ok_or(PublishError::UnknownEtag)?;
        if expires == 0 {
            list.remove(i);
            return Ok(Published2xx {
                etag: String::new(),
                expires: 0,
            });
        }
        let p = &mut list[i];
        p.etag = new_etag.clone();
        p.expires_at = Some(now + i64::from(expires));
        if let Some(s) = state {
            // A modification is the user's latest word; a refresh keeps its place.
            p.state = s;
            p.seq = seq;
        }
        Ok(Published2xx {
            etag: new_etag,
            expires,
        })
    }

    /// Sets `user`'s presence from the control API (the newest word, like a
    /// PUBLISH); it lasts until `expires_at` (Unix seconds) or until changed.
    pub fn set_api(&mut self, user: &str, state: Published, expires_at: Option<i64>) {
        self.seq += 1;
        self.changed.insert(user.to_owned());
        let list = self.pubs.entry(user.to_owned()).or_default();
        list.retain(|p| p.etag != API_ETAG);
        list.push(Publication {
            etag: API_ETAG.into(),
            state,
            expires_at,
            seq: self.seq,
        });
    }

    /// Drops lapsed publications (RFC 3903 §6: the ESC removes expired state); the
    /// users whose state changed.
    pub fn expire(&mut self, now: i64) -> Vec<String> {
        let mut changed = Vec::new();
        for (user, list) in self.pubs.iter_mut() {
            let before = list.len();
            list.retain(|p| p.expires_at.is_none_or(|t| t > now));
            if list.len() != before {
                changed.push(user.clone());
            }
        }
        self.pubs.retain(|_, l| !l.is_empty());
        self.changed.extend(changed.iter().cloned());
        changed
    }

    /// The users whose publications changed since the last call (published,
    /// refreshed, removed, lapsed, set through the API), for the engine to store
    /// their [`Compositor::stored`] publications.
    pub fn take_changed(&mut self) -> Vec<String> {
        std::mem::take(&mut self.changed).into_iter().collect()
    }

    /// A user's publications as the engine stores them (none: delete theirs).
    pub fn stored(&self, user: &str) -> Vec<StoredPublication> {
        self.pubs
            .get(user)
            .into_iter()
            .flatten()
            .map(|p| StoredPublication {
                user: user.to_owned(),
                etag: p.etag.clone(),
                state: p.state.clone(),
                expires_at: p.expires_at,
                seq: p.seq,
            })
            .collect()
    }

    /// Takes back stored publications at start (RFC 3903 §6: state the ESC still
    /// holds), dropping those lapsed by `now`; later publications are newer than all
    /// of them.
    pub fn restore(&mut self, now: i64, stored: Vec<StoredPublication>) {
        for p in stored {
            if p.expires_at.is_some_and(|t| t <= now) {
                self.changed.insert(p.user.clone());
                continue;
            }
            self.seq = self.seq.max(p.seq);
            let list = self.pubs.entry(p.user).or_default();
            list.retain(|q| q.etag != p.etag);
            list.push(Publication {
                etag: p.etag,
                state: p.state,
                expires_at: p.expires_at,
                seq: p.seq,
            });
        }
    }

    /// The user's newest publication, if any.
    pub fn current(&self, user: &str) -> Option<&Published> {
        self.pubs
            .get(user)?
            .iter()
            .max_by_key(|p| p.seq)
            .map(|p| &p.state)
    }

    /// How many publications a user has (devices and the API).
    pub fn count(&self, user: &str) -> usize {
        self.pubs.get(user).map_or(0, Vec::len)
    }

    /// Forgets a user (removed from the office).
    pub fn remove_user(&mut self, user: &str) {
        self.changed.insert(user.to_owned());
        self.pubs.remove(user);
    }
}

/// A user's phone as the engine's calls show it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phone {
    /// No call.
    #[default]
    Idle,
    /// Ringing or calling out, nobody answered yet.
    Ringing,
    /// On an answered call.
    Busy,
}

/// What goes into a user's presence.
#[derive(Clone, Debug, Default)]
pub struct Inputs<'a> {
    /// The newest publication.
    pub published: Option<&'a Published>,
    /// Registered devices.
    pub devices: usize,
    /// Call state.
    pub phone: Phone,
    /// An active `*24*` presence profile: its number and when it ends (Unix seconds,
    /// `None` until `#24#`).
    pub profile: Option<(u32, Option<i64>)>,
}

/// A user's presence as watchers and the directory see it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct View {
    /// The summary for colours: `available` (green), `away` (yellow: meeting, lunch,
    /// remote…), `busy` (red: busy or in a call), `offline` (grey: no device).
    pub state: &'static str,
    /// PIDF basic status: open while a device is registered and the user has not
    /// published `closed` (either way the state is then `offline`).
    pub open: bool,
    /// The activity (RPID token or the office's own word); `None` is available.
    pub activity: Option<String>,
    /// The note.
    pub note: Option<String>,
    /// When the activity ends (RFC 3339).
    pub until: Option<String>,
    /// `idle`, `ringing` or `busy`.
    pub phone: Phone,
    /// Registered devices.
    pub devices: usize,
}

/// Activities that mean "reachable" (green).
const AVAILABLE: &[&str] = &["available", "in_office", "in-office", "working", "online"];
/// Activities that mean "do not disturb" (red).
const BUSY: &[&str] = &["busy", "on-the-phone", "dnd", "do-not-disturb"];

/// The activity of `*24*` presence profile `p`, as the voicemail greetings
/// read them (`callflow::Routing::profile_greeting`): 1 lunch, 2 meeting, 3 away,
/// 4 vacation; others away.
pub fn profile_activity(p: u32) -> &'static str {
    match p {
        1 => "lunch",
        2 => "meeting",
        4 => "vacation",
        _ => "away",
    }
}

/// Composes a user's presence (see the module documentation).
pub fn compose(i: &Inputs<'_>) -> View {
    let mut activity = i.published.and_then(|p| p.activity.clone());
    let note = i.published.and_then(|p| p.note.clone());
    let mut until = i.published.and_then(|p| p.until.clone());
    if activity.is_none()
        && let Some((profile, end)) = i.profile
    {
        // *24*p with no other word from the user: the profile's activity.
        activity = Some(profile_activity(profile).into());
        until = end.and_then(|t| jiff::Timestamp::from_second(t).ok().map(|t| t.to_string()));
    }
    let open = i.devices > 0 && i.published.is_none_or(|p| p.open);
    let a = activity.as_deref().unwrap_or("available");
    let state = if !open {
        "offline"
    } else if i.phone != Phone::Idle || BUSY.contains(&a) {
        "busy"
    } else if AVAILABLE.contains(&a) {
        "available"
    } else {
        "away"
    };
    View {
        state,
        open,
        activity,
        note,
        until,
        phone: i.phone,
        devices: i.devices,
    }
}

/// The `application/pidf+xml` NOTIFY body for `entity` (RFC 3863 with RPID, RFC
/// 4480): the activity, and `on-the-phone` while in a call (RFC 4480 §3.2).
pub fn pidf(entity: &str, v: &View) -> String {
    let mut activities: Vec<String> = v.activity.iter().cloned().collect();
    if v.phone == Phone::Busy && !activities.iter().any(|a| a == "on-the-phone") {
        activities.push("on-the-phone".into());
    }
    let p = Pidf {
        entity: entity.to_owned(),
        open: v.open,
        note: v.note.clone(),
    };
    let r = Rpid {
        until: v.until.clone().filter(|_| !activities.is_empty()),
        activities,
        note: v.note.clone(),
    };
    p.to_xml_with(&r)
}

/// Direction of a dialog from the watched user's side (RFC 4235 §4.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The user called.
    Initiator,
    /// The user is called.
    Recipient,
}

/// One of a user's dialogs for the `dialog` package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DialogView {
    /// Stable id within the document.
    pub id: String,
    /// State (RFC 4235 §3.7.1).
    pub state: DialogInfoState,
    /// Direction.
    pub direction: Direction,
    /// The other party (extension or number), if known.
    pub remote: Option<String>,
}

/// Keeps what a `dialog` subscription was last told, so that a dialog that ended is
/// reported once as `terminated` and then dropped (RFC 4235 §3.7.1), and the
/// document version increases with every NOTIFY (§4.1.1).
#[derive(Clone, Debug, Default)]
pub struct DialogTracker {
    last: Vec<DialogView>,
    version: u32,
    sent_once: bool,
}

impl DialogTracker {
    /// The dialogs to report when the current ones are `now`; `None` when nothing
    /// changed since the last document.
    pub fn update(&mut self, now: Vec<DialogView>) -> Option<Vec<DialogView>> {
        let live = |d: &&DialogView| d.state != DialogInfoState::Terminated;
        let mut doc = now.clone();
        for old in self.last.iter().filter(live) {
            if !now.iter().any(|d| d.id == old.id) {
                doc.push(DialogView {
                    state: DialogInfoState::Terminated,
                    ..old.clone()
                });
            }
        }
        let same = self.last.iter().filter(live).eq(now.iter());
        if self.sent_once && same {
            return None;
        }
        self.sent_once = true;
        self.last = doc.clone();
        Some(doc)
    }

    /// The next document version (RFC 4235 §4.1.1).
    pub fn next_version(&mut self) -> u32 {
        let v = self.version;
        self.version += 1;
        v
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The `application/dialog-info+xml` body (RFC 4235 §4): full state, every dialog
/// with its direction, state and remote identity.
pub fn dialog_info(entity: &str, version: u32, dialogs: &[DialogView], domain: &str) -> String {
    let mut s = format!(
        "<?xml version=\"1.0\"?>\n<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" \
         version=\"{version}\" state=\"full\" entity=\"{}\">\n",
        xml_escape(entity)
    );
    for d in dialogs {
        let dir = match d.direction {
            Direction::Initiator => "initiator",
            Direction::Recipient => "recipient",
        };
        s.push_str(&format!(
            "<dialog id=\"{}\" direction=\"{dir}\"><state>{}</state>",
            xml_escape(&d.id),
            d.state.as_str()
        ));
        if let Some(r) = &d.remote {
            s.push_str(&format!(
                "<remote><identity>sip:{}@{}</identity></remote>",
                xml_escape(r),
                xml_escape(domain)
            ));
        }
        s.push_str("</dialog>\n");
    }
    s.push_str("</dialog-info>\n");
    s
}

/// The event packages we serve (RFC 3856, RFC 4235).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Package {
    /// `presence`.
    Presence,
    /// `dialog`.
    Dialog,
}

impl Package {
    /// From an Event header value (`presence`, `dialog;sla`…); `None` for packages we
    /// do not serve (489 Bad Event, RFC 6665 §4.2.1.1).
    pub fn from_event(event: &str) -> Option<Package> {
        match event
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "presence" => Some(Package::Presence),
            "dialog" => Some(Package::Dialog),
            _ => None,
        }
    }

    /// The Content-Type of its NOTIFY bodies.
    pub fn content_type(self) -> &'static str {
        match self {
            Package::Presence => "application/pidf+xml",
            Package::Dialog => "application/dialog-info+xml",
        }
    }
}

/// Whether a SUBSCRIBE may be accepted (RFC 6665 §4.2.1.1, RFC 3856 §5.1.2): the
/// target must be an office user (else 404), the subscriber an authenticated office
/// user (else 403). Office users may watch each other.
pub fn may_subscribe(subscriber_is_user: bool, target_is_user: bool) -> Result<(), u16> {
    if !target_is_user {
        return Err(404);
    }
    if !subscriber_is_user {
        return Err(403);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(activity: &str, note: Option<&str>) -> String {
        let p = Pidf {
            entity: "sip:4001@office.test".into(),
            open: true,
            note: note.map(str::to_owned),
        };
        let r = Rpid {
            activities: if activity.is_empty() {
                vec![]
            } else {
                vec![activity.into()]
            },
            until: None,
            note: note.map(str::to_owned),
        };
        p.to_xml_with(&r)
    }

    /// What a restart keeps (RFC 3903 §6): stored publications come back with their
    /// entity-tags (a refresh finds them), lapsed ones do not, the newest still wins,
    /// and every change is reported for storing.
    #[test]
    fn publications_are_stored_and_restored() {
        let mut c = Compositor::new();
        fn pub_req(body: &str, expires: u32) -> PublishRequest<'_> {
            PublishRequest {
                expires: Some(expires),
                body: Some(body.as_bytes()),
                ..Default::default()
            }
        }
        let (meeting, lunch) = (doc("meeting", Some("weekly")), doc("lunch", None));
        let (meeting, lunch) = (meeting.as_str(), lunch.as_str());
        c.publish(100, "4001", &pub_req(lunch, 3600), "phone".into())
            .unwrap();
        c.publish(101, "4001", &pub_req(meeting, 3600), "desk".into())
            .unwrap();
        c.publish(100, "4002", &pub_req(lunch, 60), "short".into())
            .unwrap();
        c.set_api("4003", Published::default(), None);
        assert_eq!(c.take_changed(), ["4001", "4002", "4003"]);
        assert!(c.take_changed().is_empty());
        let stored: Vec<StoredPublication> = ["4001", "4002", "4003"]
            .iter()
            .flat_map(|u| c.stored(u))
            .collect();
        assert_eq!(stored.len(), 4);

        // After the restart (4002's lapsed at 160).
        let mut r = Compositor::new();
        r.restore(200, stored);
        assert_eq!(
            r.current("4001").unwrap().activity.as_deref(),
            Some("meeting")
        );
        assert_eq!(r.count("4001"), 2);
        assert_eq!(r.current("4002"), None);
        assert_eq!(r.current("4003"), Some(&Published::default()));
        // 4002's stale rows are to be deleted.
        assert_eq!(r.take_changed(), ["4002"]);
        // A refresh of a restored tag is accepted; a lapsed one is not.
        let refresh = |tag| PublishRequest {
            if_match: Some(tag),
            expires: Some(3600),
            body: None,
        };
        assert!(
            r.publish(210, "4001", &refresh("phone"), "p2".into())
                .is_ok()
        );
        assert_eq!(
            r.publish(210, "4002", &refresh("short"), "x".into()),
            Err(PublishError::UnknownEtag)
        );
        // A refresh keeps its place: the desk's meeting is still the newest word; a
        // new publication after the restart is newer than all restored ones.
        assert_eq!(
            r.current("4001").unwrap().activity.as_deref(),
            Some("meeting")
        );
        r.publish(220, "4001", &pub_req(lunch, 3600), "p3".into())
            .unwrap();
        assert_eq!(
            r.current("4001").unwrap().activity.as_deref(),
            Some("lunch")
        );
        assert_eq!(r.take_changed(), ["4001"]);
        let after = r.stored("4001");
        assert!(
            after
                .iter()
                .any(|p| p.etag == "p2" && p.expires_at == Some(3810))
        );
        r.remove_user("4001");
        assert_eq!(r.take_changed(), ["4001"]);
        assert!(r.stored("4001").is_empty());
    }

    #[test]
    fn publish_refresh_modify_remove_and_expiry() {
        let mut c = Compositor::new();
        let meeting = doc("meeting", Some("weekly"));
        // RFC 3903 §6 step 4: an initial PUBLISH needs a body.
        assert_eq!(
            c.publish(0, "4001", &PublishRequest::default(), "e0".into()),
            Err(PublishError::BadBody("an initial PUBLISH needs a body"))
        );
        let r = c
            .publish(
                100,
                "4001",
                &PublishRequest {
                    expires: Some(60),
                    body: Some(meeting.as_bytes()),
                    ..Default::default()
                },
                "e1".into(),
            )
            .unwrap();
        assert_eq!((r.etag.as_str(), r.expires), ("e1", 60));
        assert_eq!(
            c.current("4001").unwrap().activity.as_deref(),
            Some("meeting")
        );
        assert_eq!(c.current("4001").unwrap().note.as_deref(), Some("weekly"));
        // Refresh with the entity-tag: a new tag, the same state.
        let r = c
            .publish(
                150,
                "4001",
                &PublishRequest {
                    if_match: Some("e1"),
                    expires: Some(60),
                    body: None,
                },
                "e2".into(),
            )
            .unwrap();
        assert_eq!(r.etag, "e2");
        // The old tag is gone (412), and so is an unknown one.
        assert_eq!(
            c.publish(
                151,
                "4001",
                &PublishRequest {
                    if_match: Some("e1"),
                    ..Default::default()
                },
                "x".into()
            ),
            Err(PublishError::UnknownEtag)
        );
        // Too short: 423.
        assert_eq!(
            c.publish(
                151,
                "4001",
                &PublishRequest {
                    if_match: Some("e2"),
                    expires: Some(1),
                    body: None
                },
                "x".into()
            ),
            Err(PublishError::TooBrief)
        );
        // Not PIDF: 400.
        assert!(matches!(
            c.publish(
                151,
                "4001",
                &PublishRequest {
                    body: Some(b"<x/>"),
                    ..Default::default()
                },
                "x".into()
            ),
            Err(PublishError::BadBody(_))
        ));
        // A second device publishes later: its word wins; its removal brings back the first.
        let busy = doc("busy", None);
        c.publish(
            160,
            "4001",
            &PublishRequest {
                expires: Some(600),
                body: Some(busy.as_bytes()),
                ..Default::default()
            },
            "d2".into(),
        )
        .unwrap();
        assert_eq!(c.current("4001").unwrap().activity.as_deref(), Some("busy"));
        assert_eq!(c.count("4001"), 2);
        let r = c
            .publish(
                161,
                "4001",
                &PublishRequest {
                    if_match: Some("d2"),
                    expires: Some(0),
                    body: None,
                },
                "x".into(),
            )
            .unwrap();
        assert_eq!(r.expires, 0);
        assert_eq!(
            c.current("4001").unwrap().activity.as_deref(),
            Some("meeting")
        );
        // Expiry (RFC 3903 §6): the first publication lapses at 150 + 60.
        assert!(c.expire(209).is_empty());
        assert_eq!(c.expire(210), vec!["4001".to_string()]);
        assert!(c.current("4001").is_none());
        // The API's presence never lapses by itself and cannot be refreshed over SIP.
        c.set_api(
            "4002",
            Published {
                open: true,
                activity: Some("lunch".into()),
                ..Default::default()
            },
            None,
        );
        assert!(c.expire(1_000_000).is_empty());
        assert_eq!(
            c.publish(
                1,
                "4002",
                &PublishRequest {
                    if_match: Some("api"),
                    ..Default::default()
                },
                "x".into()
            ),
            Err(PublishError::UnknownEtag)
        );
    }

    #[test]
    fn composition_follows_registration_calls_and_profiles() {
        let meeting = Published {
            open: true,
            activity: Some("meeting".into()),
            note: Some("weekly".into()),
            until: Some("2026-11-22T14:00:00Z".into()),
        };
        let v = compose(&Inputs {
            published: Some(&meeting),
            devices: 1,
            ..Default::default()
        });
        assert_eq!((v.state, v.open), ("away", true));
        // No device: offline and closed, whatever was published.
        let v = compose(&Inputs {
            published: Some(&meeting),
            devices: 0,
            ..Default::default()
        });
        assert_eq!((v.state, v.open), ("offline", false));
        // Nothing published, registered: available; in a call: busy, on the phone.
        let idle = compose(&Inputs {
            devices: 2,
            ..Default::default()
        });
        assert_eq!((idle.state, idle.activity.as_deref()), ("available", None));
        let call = compose(&Inputs {
            devices: 1,
            phone: Phone::Busy,
            ..Default::default()
        });
        assert_eq!(call.state, "busy");
        let xml = pidf("sip:4001@office.test", &call);
        assert!(xml.contains("<rpid:on-the-phone/>"), "{xml}");
        assert_eq!(
            Rpid::parse(xml.as_bytes()).unwrap().activities,
            vec!["on-the-phone".to_string()]
        );
        // A *24* profile without a published activity: its activity until its end.
        let v = compose(&Inputs {
            devices: 1,
            profile: Some((3, Some(1_795_000_000))),
            ..Default::default()
        });
        assert_eq!(v.state, "away");
        assert_eq!(v.activity.as_deref(), Some("away"));
        assert!(v.until.unwrap().starts_with("2026-"));
        // The document round-trips through the phone's reader.
        let v = compose(&Inputs {
            published: Some(&meeting),
            devices: 1,
            ..Default::default()
        });
        let back = Published::from_pidf(pidf("sip:a@b", &v).as_bytes()).unwrap();
        assert_eq!(back, meeting);
    }

    #[test]
    fn a_dialog_that_ends_is_reported_once_as_terminated() {
        let mut t = DialogTracker::default();
        assert_eq!(t.update(vec![]), Some(vec![]), "the first NOTIFY: idle");
        assert_eq!(t.update(vec![]), None);
        let ringing = DialogView {
            id: "d1".into(),
            state: DialogInfoState::Early,
            direction: Direction::Recipient,
            remote: Some("4001".into()),
        };
        assert_eq!(t.update(vec![ringing.clone()]), Some(vec![ringing.clone()]));
        let up = DialogView {
            state: DialogInfoState::Confirmed,
            ..ringing.clone()
        };
        assert_eq!(t.update(vec![up.clone()]), Some(vec![up.clone()]));
        let ended = DialogView {
            state: DialogInfoState::Terminated,
            ..up
        };
        assert_eq!(t.update(vec![]), Some(vec![ended]));
        assert_eq!(t.update(vec![]), None, "reported once, then quiet");
        assert_eq!((t.next_version(), t.next_version()), (0, 1));
        let xml = dialog_info("sip:4002@x", 3, &[ringing], "x");
        let states = vaxel_sip::usage::body::dialog_states(xml.as_bytes()).unwrap();
        assert_eq!(
            states,
            vec![(
                "d1".to_string(),
                DialogInfoState::Early,
                Some("recipient".to_string())
            )]
        );
    }

    #[test]
    fn who_may_subscribe() {
        assert_eq!(may_subscribe(true, true), Ok(()));
        assert_eq!(may_subscribe(true, false), Err(404));
        assert_eq!(may_subscribe(false, true), Err(403));
        assert_eq!(Package::from_event("Dialog;sla"), Some(Package::Dialog));
        assert_eq!(Package::from_event("message-summary"), None);
    }
}
