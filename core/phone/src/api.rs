//! The phone's one vocabulary: [`Command`]s in, [`Event`]s out (ARCHITECTURE.md §3.4).
//!
//! Both are plain serde types, tagged JSON in snake_case, so every transport speaks the
//! same words: the `vaxel run` line protocol (one JSON object or one short text command
//! per line in, one JSON event per line out), the desktop app's Tauri commands and
//! events, and tests.
//!
//! ```
//! use vaxel_phone::{Command, Event};
//! let c: Command = serde_json::from_str(r#"{"cmd":"dtmf","call":1,"digits":"123"}"#).unwrap();
//! assert_eq!(c, Command::Dtmf { call: Some(1), digits: "123".into(), method: None });
//! let e = Event::Ringing { call: 1 };
//! assert_eq!(serde_json::to_string(&e).unwrap(), r#"{"event":"ringing","call":1}"#);
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A call's handle: small, unique within one phone's lifetime (ARCHITECTURE.md §3.8).
pub type CallId = u64;

/// How to send DTMF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DtmfMethod {
    /// RFC 4733 telephone-events in the RTP stream (the default when negotiated).
    Rfc4733,
    /// SIP INFO with `application/dtmf-relay` (the fallback when the peer offered no
    /// telephone-event).
    Info,
}

/// How a received digit was signalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DtmfVia {
    /// RFC 4733 telephone-event.
    Rfc4733,
    /// Tones in the audio.
    Inband,
    /// SIP INFO.
    Info,
}

/// Who did something to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// This phone.
    Local,
    /// The far end.
    Remote,
}

/// Where a call's audio comes from and goes to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaFiles {
    /// Play this WAV file to the far end (looped) instead of the microphone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub play: Option<PathBuf>,
    /// Record what the far end sends to this WAV file instead of the speaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<PathBuf>,
}

impl MediaFiles {
    /// Whether neither file is given (then the sound devices are used).
    pub fn is_empty(&self) -> bool {
        self.play.is_none() && self.record.is_none()
    }
}

/// What the phone is asked to do.
///
/// Commands that act on a call take `call`; when it is omitted the phone picks the
/// obvious one (the ringing call for `answer`, else the active call).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Reply with [`Event::Snapshot`]: accounts, registrations, calls.
    Snapshot,
    /// Register one account (or every account with a registrar).
    Register {
        /// The account's name; `None` for all.
        #[serde(default)]
        account: Option<String>,
    },
    /// Remove our binding at the registrar.
    Unregister {
        /// The account's name; `None` for all.
        #[serde(default)]
        account: Option<String>,
    },
    /// Place a call.
    Call {
        /// `sip:user@host[:port]`, `user@host`, or a bare user (then the account's domain).
        uri: String,
        /// The account to call from; `None` for the default.
        #[serde(default)]
        account: Option<String>,
        /// Files instead of the sound devices.
        #[serde(default, flatten)]
        media: MediaFiles,
    },
    /// Answer a ringing call.
    Answer {
        /// The call.
        #[serde(default)]
        call: Option<CallId>,
        /// Files instead of the sound devices.
        #[serde(default, flatten)]
        media: MediaFiles,
    },
    /// Reject a ringing call: 486 Busy Here (default) or 603 Decline.
    Reject {
        /// The call.
        #[serde(default)]
        call: Option<CallId>,
        /// The status (486, 603, 480…).
        #[serde(default)]
        code: Option<u16>,
    },
    /// Hang up: BYE when up, CANCEL when still ringing out, 486 when ringing in.
    Hangup {
        /// The call.
        #[serde(default)]
        call: Option<CallId>,
    },
    /// Put a call on hold (re-INVITE with `a=sendonly`).
    Hold {
        /// The call.
        #[serde(default)]
        call: Option<CallId>,
    },
    /// Resume a held call.
    Resume {
        /// The call.
        #[serde(default)]
        call: Option<CallId>,
    },
    /// Mute or unmute the microphone of a call (silence keeps flowing).
    Mute {
        /// The call.
        #[serde(default)]
        call: Option<CallId>,
        /// Mute (`true`) or unmute.
        #[serde(default = "yes")]
        muted: bool,
    },
    /// Send DTMF digits (`0-9 * # A-D`).
    Dtmf {
        /// The call.
        #[serde(default)]
        call: Option<CallId>,
        /// The digits.
        digits: String,
        /// RFC 4733 or INFO; `None` picks RFC 4733 when negotiated, else INFO.
        #[serde(default)]
        method: Option<DtmfMethod>,
    },
    /// Blind transfer: REFER the far end to `target`.
    Transfer {
        /// The call to transfer.
        #[serde(default)]
        call: Option<CallId>,
        /// Where to.
        target: String,
    },
    /// Attended transfer: REFER the far end of `call` to the far end of `to`, replacing
    /// the consultation call (RFC 3891).
    AttendedTransfer {
        /// The call to transfer (usually held).
        call: CallId,
        /// The consultation call.
        to: CallId,
    },
    /// Merge calls into a local three-party (or larger) conference: held ones are
    /// resumed, and each far end hears the microphone and every other far end, mixed in
    /// this phone (no conference server needed). Reported by [`Event::Conference`].
    /// A call leaves the conference when it ends; with one left the conference ends.
    Merge {
        /// The calls; empty for every call that is up (and the conference's members).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        calls: Vec<CallId>,
    },
    /// Send a ringing call to the account's voicemail: answer the INVITE with
    /// `302 Moved Temporarily` (RFC 3261 §21.3.3) and `Contact: <sip:*59*USER@domain>`
    /// (the Vaxel engine's "leave a message for USER" code), USER being the account's
    /// own user. The caller's server follows the redirect to the mailbox.
    SendToVoicemail {
        /// The ringing call.
        #[serde(default)]
        call: Option<CallId>,
    },
    /// Send an instant message (SIP MESSAGE).
    Message {
        /// To whom.
        to: String,
        /// The text.
        text: String,
        /// From which account.
        #[serde(default)]
        account: Option<String>,
    },
    /// Publish our presence (PUBLISH, RFC 3903, of a PIDF document, RFC 3863, with RPID
    /// activities, RFC 4480) at the account's presence server; refreshed until changed
    /// or until the phone stops (then removed). Reported by [`Event::PresencePublished`]
    /// or [`Event::PresenceFailed`].
    SetPresence {
        /// `available` (open, no activity), `offline` (closed), or an activity:
        /// `busy`, `meeting`, `away`, `meal`, `vacation`, `on-the-phone`… (RFC 4480
        /// §3.2), or any other word (`lunch`, `sick`), which travels as `<rpid:other>`.
        activity: String,
        /// A note for people ("in a meeting").
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        /// When it ends: an RFC 3339 time (`2026-11-22T14:00:00Z`), or `HH:MM` (the next
        /// such local time). Watchers see it (RPID `until`); when it comes the phone
        /// publishes `available` by itself.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<String>,
        /// The account; `None` for the default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        account: Option<String>,
    },
    /// Watch a colleague: subscribe to their presence (RFC 3856) and their dialog state
    /// (RFC 4235, the busy lamp), kept alive until [`Command::Unwatch`]. Reported by
    /// [`Event::Watching`], then [`Event::PresenceChanged`] and
    /// [`Event::DialogStateChanged`] on every change.
    Watch {
        /// Whom: `sip:user@host`, `user@host`, or a user at the account's domain.
        uri: String,
        /// The account to subscribe from; `None` for the default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        account: Option<String>,
        /// Subscribe to presence (default true).
        #[serde(default = "yes")]
        presence: bool,
        /// Subscribe to dialog state (default true).
        #[serde(default = "yes")]
        dialog: bool,
    },
    /// Stop watching (SUBSCRIBE with `Expires: 0`); reported by [`Event::WatchEnded`].
    Unwatch {
        /// As given to [`Command::Watch`].
        uri: String,
    },
    /// Reply with [`Event::History`]: the newest calls first.
    History {
        /// At most this many (default 50).
        #[serde(default)]
        limit: Option<u32>,
        /// Only missed calls.
        #[serde(default)]
        missed_only: bool,
    },
    /// Search the directory, contacts and history as you type; reply with
    /// [`Event::SearchResults`].
    Search {
        /// Words (each a prefix), a name or a number.
        query: String,
        /// At most this many hits (default 20).
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Add a personal contact; reply with [`Event::ContactAdded`].
    ContactAdd {
        /// The contact.
        #[serde(flatten)]
        contact: NewContact,
    },
    /// Change a personal contact: its name, numbers, SIP addresses, e-mails,
    /// organisation and favourite become these (other vCard fields are kept); reply with
    /// [`Event::ContactUpdated`].
    ContactUpdate {
        /// The contact's id.
        id: i64,
        /// What it becomes.
        #[serde(flatten)]
        contact: NewContact,
    },
    /// Reply with [`Event::Contacts`]: every personal contact.
    Contacts,
    /// Import the contacts of a vCard file (3.0 or 4.0); reply with
    /// [`Event::VcardImported`].
    VcardImport {
        /// The file.
        path: PathBuf,
    },
    /// Write every contact to a vCard 4.0 file; reply with [`Event::VcardExported`].
    VcardExport {
        /// The file.
        path: PathBuf,
    },
    /// The user has seen the missed calls: clear the badge; reply with
    /// [`Event::MissedSeen`].
    MarkMissedSeen,
    /// The network changed (the OS said so, or the address that reaches the server
    /// is another): SIP moves to `ip` (default: the local address that now routes to the
    /// first account's server), every account registers again from there — the old
    /// contact removed in the same REGISTER — and publications and watches are made again.
    /// Calls in progress are not moved. Reported by [`Event::AddressChanged`].
    NetworkChanged {
        /// The new local address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip: Option<String>,
    },
    /// Hang up every call, unregister, stop.
    Quit,
}

/// A contact to add.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewContact {
    /// The name shown.
    pub name: String,
    /// Phone numbers as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub numbers: Vec<String>,
    /// SIP addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sip_uris: Vec<String>,
    /// E-mail addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<String>,
    /// Company.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub organisation: String,
    /// A favourite (first in search results).
    #[serde(default)]
    pub favourite: bool,
}

fn yes() -> bool {
    true
}

/// Why a call ended, for people and scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// We hung up.
    LocalHangup,
    /// The far end hung up.
    RemoteHangup,
    /// We cancelled before the answer.
    Cancelled,
    /// The caller gave up before we answered (a missed call).
    RemoteCancelled,
    /// Another device of this account answered the call (a CANCEL with RFC 3326
    /// `Reason: SIP;cause=200`): not a missed call; history outcome
    /// `answered_elsewhere`.
    AnsweredElsewhere,
    /// The far end (or the network) refused or did not answer: see `status`.
    Rejected,
    /// We refused it: see `status`.
    LocalRejected,
    /// Our answer was never acknowledged.
    AckTimeout,
    /// The dialog is gone (408/481 to an in-dialog request).
    DialogLost,
    /// Replaced by another call (we were transferred, RFC 3891).
    Replaced,
    /// Transferred away by us (REFER accepted and completed).
    Transferred,
    /// The call's media could not be set up.
    MediaFailed,
}

/// Whose fault an error is (ARCHITECTURE.md §3.5), as the UI sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A command that cannot work: unknown call or account, bad URI, wrong state.
    BadCommand,
    /// The network or the far end misbehaved.
    Network,
    /// The machine refused: ports, files, sound devices.
    Environment,
}

/// One account in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountState {
    /// The account's name.
    pub name: String,
    /// Its address-of-record.
    pub uri: String,
    /// `idle`, `registering`, `registered`, `failed`, `unregistering`, or `none`
    /// (no registrar).
    pub registration: String,
    /// The activity last set with [`Command::SetPresence`], if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<String>,
}

/// One subscription of [`Command::Watch`] in a snapshot, with the last state it gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchState {
    /// As given to [`Command::Watch`].
    pub uri: String,
    /// `presence` or `dialog`.
    pub package: String,
    /// The server accepted the subscription (not ended, not waiting to retry).
    pub active: bool,
    /// The last [`Event::PresenceChanged`] or [`Event::DialogStateChanged`] of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Box<Event>>,
}

/// One call in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallState {
    /// The call.
    pub call: CallId,
    /// The account.
    pub account: String,
    /// The far end.
    pub remote: String,
    /// `outgoing` or `incoming`.
    pub direction: String,
    /// `calling`, `ringing`, `early`, `established`, `terminating`, `ended`.
    pub state: String,
    /// We hold it.
    pub held: bool,
    /// We muted it.
    pub muted: bool,
    /// The audio is encrypted (SRTP with SDES keys, RFC 4568; the keys travel in the SDP,
    /// so they are only private over TLS).
    #[serde(default)]
    pub srtp: bool,
}

/// The group (hunt group, queue, main number) a call came in through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViaGroup {
    /// The engine's id of the group (after `#` in the From user part).
    pub id: String,
    /// Its name as shown ("Sales"): the From display name.
    pub name: String,
}

/// Who is calling, read from an incoming INVITE's From header (RFC 3261 §20.20).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Caller {
    /// The caller's own display name (empty when unknown or when it was the group's).
    pub name: String,
    /// The caller's plain number (the user part, percent-decoded, without `#groupId`).
    pub number: String,
    /// The group it came through, if any.
    pub group: Option<ViaGroup>,
}

/// Reads the caller from the From header's display name and URI. The Vaxel engine
/// presents a call through a group as `"Sales" <sip:4001%231@domain>`: display name =
/// group name, user part = `A-number#groupId` (`#` escaped as `%23`, RFC 3261 §25.1).
/// A user part with `#` but an empty number or group id, or no display name, is taken
/// as a plain number (feature codes like `*21*4003#` end in `#` too).
pub fn caller_of(display: &str, uri: &str) -> Caller {
    let s = uri.trim().trim_start_matches('<');
    let s = s
        .strip_prefix("sips:")
        .or_else(|| s.strip_prefix("sip:"))
        .or_else(|| s.strip_prefix("tel:"))
        .unwrap_or(s);
    // The user part ends at `@`; a URI without `@` has no user part, except tel:.
    let user = match s.find('@') {
        Some(at) => &s[..at],
        None if uri.trim().trim_start_matches('<').starts_with("tel:") => s,
        None => "",
    };
    let user = user.split([';', '?', '>']).next().unwrap_or("");
    let user = percent_decode(user);
    let display = display.trim().to_string();
    if let Some((number, id)) = user.rsplit_once('#')
        && !number.is_empty()
        && !id.is_empty()
        && !display.is_empty()
    {
        return Caller {
            name: String::new(),
            number: number.to_string(),
            group: Some(ViaGroup {
                id: id.to_string(),
                name: display,
            }),
        };
    }
    Caller {
        name: display,
        number: user,
        group: None,
    }
}

/// `%XX` escapes decoded (RFC 3986 §2.1); a bad escape is kept as it is.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One call of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Its row in the store.
    pub id: i64,
    /// `outgoing` or `incoming`.
    pub direction: String,
    /// `in_progress`, `answered`, `missed`, `declined`, `failed`, `cancelled`…
    pub outcome: String,
    /// The far end's URI.
    pub remote: String,
    /// The far end's name, when known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The far end's number (the URI's user part).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub number: String,
    /// When it started, ms since the Unix epoch (UTC).
    pub started_at: i64,
    /// When it was answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<i64>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<i64>,
    /// Why it ended (an [`EndReason`] in snake_case, with the SIP status if any).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cause: String,
    /// A missed call the user has seen.
    pub seen: bool,
    /// The group it came in through ("Sales"), when it did. Added later: absent when
    /// empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
}

/// One search hit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchResult {
    /// `contact`, `history` or `directory`.
    pub kind: String,
    /// The record's id in its source.
    pub id: i64,
    /// The name shown.
    pub display: String,
    /// A second line (department, organisation, when).
    pub detail: String,
    /// What to dial.
    pub number: String,
    /// A favourite contact.
    pub favourite: bool,
}

/// One personal contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactEntry {
    /// Its id.
    pub id: i64,
    /// The name shown.
    pub name: String,
    /// Company.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub organisation: String,
    /// Phone numbers.
    pub numbers: Vec<String>,
    /// SIP addresses.
    pub sip_uris: Vec<String>,
    /// E-mail addresses.
    pub emails: Vec<String>,
    /// A favourite.
    pub favourite: bool,
}

/// What happened, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The phone is up and listening on these SIP addresses (`udp:127.0.0.1:5060`).
    Started {
        /// Transport-prefixed addresses.
        listening: Vec<String>,
    },
    /// The phone moved to another local address ([`Command::NetworkChanged`]); every
    /// account registers again from there.
    AddressChanged {
        /// Transport-prefixed addresses, as in [`Event::Started`].
        listening: Vec<String>,
    },
    /// The answer to [`Command::Snapshot`].
    Snapshot {
        /// Accounts and their registration.
        accounts: Vec<AccountState>,
        /// Calls in progress.
        calls: Vec<CallState>,
        /// Missed calls the user has not seen (the badge).
        unseen_missed: u64,
        /// Colleagues watched ([`Command::Watch`]) and what was last heard of them.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        watches: Vec<WatchState>,
    },
    /// The registrar holds our binding.
    Registered {
        /// The account.
        account: String,
        /// Granted seconds.
        expires: u32,
        /// How many contacts the registrar holds for the account: this phone's and the
        /// account's other devices' (RFC 3261 §10.3).
        #[serde(default)]
        contacts: usize,
    },
    /// A registration attempt failed.
    RegistrationFailed {
        /// The account.
        account: String,
        /// Final status (408 timeout, 503 unreachable, 403 refused...).
        status: u16,
        /// Why, for people.
        reason: String,
        /// Seconds until we try again by ourselves; `None`: we do not.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_in_s: Option<u64>,
    },
    /// Our binding is gone.
    Unregistered {
        /// The account.
        account: String,
    },
    /// We are calling out.
    Outgoing {
        /// The new call.
        call: CallId,
        /// From this account.
        account: String,
        /// To whom.
        uri: String,
    },
    /// A call is coming in.
    Incoming {
        /// The new call.
        call: CallId,
        /// For this account.
        account: String,
        /// The caller (From).
        from: String,
        /// The Request-URI it was sent to.
        to: String,
        /// It replaces this call of ours (RFC 3891): we answer it by ourselves.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replaces: Option<CallId>,
        /// The caller's display name from the From header (RFC 3261 §20.20), when
        /// given and the call did not come through a group (then the display name is
        /// the group's, see `group`). Added later: absent when empty.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        name: String,
        /// The caller's plain number: the From URI's user part, percent-decoded, without
        /// the `#groupId` suffix. Absent when the From URI has no user part.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        number: String,
        /// The group the call came through, when the engine presented it that way: it
        /// sends From `"Sales" <sip:4001%231@domain>`, i.e. the display name is the
        /// group's name and the user part is `A-number#groupId`. See [`caller_of`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<ViaGroup>,
    },
    /// The far end is ringing (180). Until it sends audio (early media) or answers, the
    /// phone plays its own ringback tone to the call's speaker or recording.
    Ringing {
        /// The call.
        call: CallId,
    },
    /// Early media (183 with SDP): we hear the far end's ringback or announcement.
    EarlyMedia {
        /// The call.
        call: CallId,
    },
    /// The call is up, with media.
    Established {
        /// The call.
        call: CallId,
        /// The codec (`PCMU`, `opus`...).
        codec: String,
    },
    /// The far end pressed a key.
    Dtmf {
        /// The call.
        call: CallId,
        /// The digit.
        digit: char,
        /// How it came.
        via: DtmfVia,
    },
    /// Audio levels for meters, about ten times a second while the call has media: RMS
    /// in dBFS over the last 100 ms (−100 for digital silence). High rate: transports
    /// may thin it out.
    Levels {
        /// The call.
        call: CallId,
        /// What the microphone (or played file) gave, before mute.
        input_dbfs: f32,
        /// What went to the speaker (or recorded file).
        output_dbfs: f32,
    },
    /// Call quality, once a second while the call has media (RFC 3550 §6.4 figures).
    Quality {
        /// The call.
        call: CallId,
        /// The codec.
        codec: String,
        /// Received packets lost, percent of expected (RFC 3550 A.3).
        loss_percent: f32,
        /// Interarrival jitter, ms (RFC 3550 A.8).
        jitter_ms: f32,
        /// Round-trip time, ms, once RTCP reports carried it (RFC 3550 §6.4.1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rtt_ms: Option<f32>,
    },
    /// A call went on hold.
    Held {
        /// The call.
        call: CallId,
        /// Who held it.
        by: Side,
    },
    /// A held call resumed.
    Resumed {
        /// The call.
        call: CallId,
        /// Who resumed it.
        by: Side,
    },
    /// Mute changed.
    Muted {
        /// The call.
        call: CallId,
        /// Muted now.
        muted: bool,
    },
    /// The far end asks us to call someone else (we got a REFER).
    TransferRequested {
        /// The call that is being transferred.
        call: CallId,
        /// Whom we call.
        target: String,
        /// The new call we placed for it.
        new_call: CallId,
    },
    /// Our transfer: the target's progress (sipfrag 1xx).
    TransferProgress {
        /// The transferred call.
        call: CallId,
        /// The status.
        status: u16,
    },
    /// The local conference's members changed ([`Command::Merge`]): these calls hear
    /// each other now; empty when the conference ended.
    Conference {
        /// The members.
        calls: Vec<CallId>,
    },
    /// Our transfer worked; the call ends.
    Transferred {
        /// The transferred call.
        call: CallId,
    },
    /// Our transfer failed; the call is ours again (resumed if we held it).
    TransferFailed {
        /// The call.
        call: CallId,
        /// The status, when one was given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
    },
    /// An instant message arrived.
    MessageReceived {
        /// The account.
        account: String,
        /// From whom.
        from: String,
        /// The text.
        text: String,
    },
    /// Our message was accepted (2xx) or failed.
    MessageSent {
        /// Accepted by the far end or its server.
        delivered: bool,
        /// The final status.
        status: u16,
        /// To whom (the Request-URI it was sent to).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        to: String,
    },
    /// Our presence was taken by the presence server (RFC 3903 2xx).
    PresencePublished {
        /// The account.
        account: String,
        /// As set.
        activity: String,
        /// As set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        /// As set, RFC 3339.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<String>,
        /// Granted seconds (refreshed by the phone).
        expires: u32,
    },
    /// Publishing our presence failed.
    PresenceFailed {
        /// The account.
        account: String,
        /// The final status (408 timeout, 503 unreachable).
        status: u16,
        /// When the phone tries again by itself, if it does.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_in_s: Option<u64>,
    },
    /// A subscription of [`Command::Watch`] was accepted (2xx to SUBSCRIBE).
    Watching {
        /// As given to [`Command::Watch`].
        uri: String,
        /// The event package: `presence` or `dialog`.
        package: String,
    },
    /// A watched colleague's presence (RFC 3863 basic status, RFC 4480 activities).
    PresenceChanged {
        /// As given to [`Command::Watch`].
        uri: String,
        /// `open`, `closed`, or `unknown` (the server has no published state).
        status: String,
        /// The first activity (`busy`, `meeting`, `lunch`…), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        activity: Option<String>,
        /// Every activity.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        activities: Vec<String>,
        /// The note (the person's, else the tuple's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        /// When the activities end, as published.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<String>,
    },
    /// A watched colleague's phone state (RFC 4235), summed over their dialogs for a
    /// busy lamp: `confirmed` if any call is up, else `early` if one rings, else
    /// `trying`, else `terminated` (the last call just ended), else `idle`.
    DialogStateChanged {
        /// As given to [`Command::Watch`].
        uri: String,
        /// `idle`, `trying`, `early`, `confirmed` or `terminated`.
        state: String,
        /// The deciding dialog's direction: `initiator` (they called) or `recipient`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        direction: Option<String>,
        /// How many dialogs the document listed.
        dialogs: usize,
    },
    /// A subscription of [`Command::Watch`] ended (unwatched, refused, or ended by the
    /// server); when `retry_in_s` is given the phone subscribes again by itself.
    WatchEnded {
        /// As given to [`Command::Watch`].
        uri: String,
        /// The event package: `presence` or `dialog`.
        package: String,
        /// `unwatched`, the Subscription-State reason (`deactivated`, `timeout`,
        /// `rejected`, `noresource`…), or the failing status (`404`).
        reason: String,
        /// When the phone subscribes again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_in_s: Option<u64>,
    },
    /// A call ended.
    Ended {
        /// The call.
        call: CallId,
        /// Why.
        cause: EndReason,
        /// The SIP status, when a status was the reason.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
    },
    /// Something went wrong.
    Error {
        /// Whose fault.
        code: ErrorCode,
        /// For people.
        message: String,
        /// The call it concerns.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call: Option<CallId>,
    },
    /// The answer to [`Command::History`].
    History {
        /// Newest first.
        calls: Vec<HistoryEntry>,
        /// Missed calls the user has not seen.
        unseen_missed: u64,
    },
    /// The answer to [`Command::Search`].
    SearchResults {
        /// The query.
        query: String,
        /// Contacts first (favourites first), then history, then the directory.
        hits: Vec<SearchResult>,
    },
    /// A contact was added.
    ContactAdded {
        /// Its id.
        id: i64,
        /// Its name.
        name: String,
    },
    /// A contact was changed ([`Command::ContactUpdate`]).
    ContactUpdated {
        /// Its id.
        id: i64,
        /// Its name now.
        name: String,
    },
    /// The answer to [`Command::Contacts`].
    Contacts {
        /// Every personal contact.
        contacts: Vec<ContactEntry>,
    },
    /// A vCard file was imported.
    VcardImported {
        /// The file.
        path: PathBuf,
        /// How many contacts were added.
        imported: usize,
        /// Cards that could not be read, for people.
        errors: Vec<String>,
    },
    /// The contacts were written to a vCard file.
    VcardExported {
        /// The file.
        path: PathBuf,
        /// How many contacts.
        contacts: usize,
    },
    /// The missed calls are seen; the badge is 0.
    MissedSeen {
        /// How many calls changed.
        marked: usize,
    },
    /// The phone stopped (after [`Command::Quit`]).
    Stopped,
}

impl Event {
    /// An error event.
    pub fn error(code: ErrorCode, message: impl Into<String>, call: Option<CallId>) -> Event {
        Event::Error {
            code,
            message: message.into(),
            call,
        }
    }
}

/// Parses one line of the `vaxel run` protocol: a JSON [`Command`], or words:
/// `call URI [--play F] [--record F]`, `answer [ID]`, `reject [ID] [CODE]`,
/// `hangup [ID]`, `hold [ID]`, `resume [ID]`, `mute [ID]`, `unmute [ID]`,
/// `dtmf [ID] DIGITS`, `info [ID] DIGITS`, `transfer [ID] TARGET`,
/// `attended-transfer ID TO_ID`, `merge [ID…]`, `voicemail [ID]`, `message TO TEXT…`, `register [ACCOUNT]`,
/// `unregister [ACCOUNT]`, `presence [set] ACTIVITY [--note TEXT…] [--until TIME]`,
/// `watch URI [--presence-only|--dialog-only]`, `unwatch URI`,
/// `network-changed [IP]`, `snapshot`, `history [N] [--missed]`, `missed [N]`,
/// `search WORDS…`, `contact-add NAME [NUMBER|SIP-URI|EMAIL]…`, `contacts`,
/// `vcard-import PATH`, `vcard-export PATH`, `mark-missed-seen`, `quit`.
pub fn parse_line(line: &str) -> Result<Command, String> {
    let line = line.trim();
    if line.starts_with('{') {
        return serde_json::from_str(line).map_err(|e| format!("bad JSON command: {e}"));
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some((&verb, rest)) = words.split_first() else {
        return Err("empty command".into());
    };
    // An optional leading call id.
    let id_then = |rest: &[&str]| -> (Option<CallId>, Vec<String>) {
        match rest.first().and_then(|w| w.parse::<CallId>().ok()) {
            Some(id) if rest.len() > 1 || !matches!(verb, "dtmf" | "info" | "transfer") => {
                (Some(id), rest[1..].iter().map(|s| s.to_string()).collect())
            }
            _ => (None, rest.iter().map(|s| s.to_string()).collect()),
        }
    };
    let (call, args) = id_then(rest);
    let one = |what: &str| -> Result<String, String> {
        match args.as_slice() {
            [a] => Ok(a.clone()),
            _ => Err(format!("{verb}: give {what}")),
        }
    };
    Ok(match verb {
        "snapshot" | "status" => Command::Snapshot,
        "register" => Command::Register {
            account: rest.first().map(|s| s.to_string()),
        },
        "unregister" => Command::Unregister {
            account: rest.first().map(|s| s.to_string()),
        },
        "call" | "dial" => {
            let mut media = MediaFiles::default();
            let mut uri = None;
            let mut account = None;
            let mut it = rest.iter();
            while let Some(w) = it.next() {
                match *w {
                    "--play" => media.play = it.next().map(PathBuf::from),
                    "--record" => media.record = it.next().map(PathBuf::from),
                    "--account" => account = it.next().map(|s| s.to_string()),
                    u => uri = Some(u.to_string()),
                }
            }
            Command::Call {
                uri: uri.ok_or("call: give a URI")?,
                account,
                media,
            }
        }
        "answer" | "accept" => Command::Answer {
            call,
            media: MediaFiles::default(),
        },
        "reject" | "busy" | "decline" => Command::Reject {
            call,
            code: match verb {
                "busy" => Some(486),
                "decline" => Some(603),
                _ => args.first().and_then(|c| c.parse().ok()),
            },
        },
        "hangup" | "bye" | "cancel" => Command::Hangup { call },
        "hold" => Command::Hold { call },
        "resume" | "unhold" => Command::Resume { call },
        "mute" => Command::Mute { call, muted: true },
        "unmute" => Command::Mute { call, muted: false },
        "dtmf" | "info" => Command::Dtmf {
            call,
            digits: one("DIGITS")?,
            method: (verb == "info").then_some(DtmfMethod::Info),
        },
        "transfer" => Command::Transfer {
            call,
            target: one("TARGET")?,
        },
        "attended-transfer" | "attended_transfer" | "atransfer" => match rest {
            [a, b] => Command::AttendedTransfer {
                call: a
                    .parse()
                    .map_err(|_| "attended-transfer: CALL TO".to_string())?,
                to: b
                    .parse()
                    .map_err(|_| "attended-transfer: CALL TO".to_string())?,
            },
            _ => return Err("attended-transfer: give CALL and TO call ids".into()),
        },
        "merge" | "conference" => Command::Merge {
            calls: rest
                .iter()
                .map(|w| w.parse().map_err(|_| format!("merge: not a call id: {w}")))
                .collect::<Result<_, _>>()?,
        },
        "voicemail" | "send-to-voicemail" => Command::SendToVoicemail { call },
        "message" | "msg" => match rest {
            [to, text @ ..] if !text.is_empty() => Command::Message {
                to: to.to_string(),
                text: text.join(" "),
                account: None,
            },
            _ => return Err("message: give TO and TEXT".into()),
        },
        "presence" => {
            // presence [set] ACTIVITY [--note TEXT…] [--until TIME] [--account NAME]
            let mut words = rest;
            if words.first() == Some(&"set") {
                words = &words[1..];
            }
            let Some((activity, opts)) = words.split_first() else {
                return Err("presence: give ACTIVITY [--note TEXT] [--until TIME]".into());
            };
            let (mut note, mut until, mut account) = (None, None, None);
            let mut i = 0;
            while i < opts.len() {
                match opts[i] {
                    "--until" => {
                        until = opts.get(i + 1).map(|s| s.to_string());
                        i += 2;
                    }
                    "--account" => {
                        account = opts.get(i + 1).map(|s| s.to_string());
                        i += 2;
                    }
                    "--note" => {
                        let end = opts[i + 1..]
                            .iter()
                            .position(|w| w.starts_with("--"))
                            .map_or(opts.len(), |p| i + 1 + p);
                        note = Some(opts[i + 1..end].join(" ")).filter(|n| !n.is_empty());
                        i = end;
                    }
                    w => return Err(format!("presence: unexpected {w:?}")),
                }
            }
            Command::SetPresence {
                activity: activity.to_string(),
                note,
                until,
                account,
            }
        }
        "watch" | "unwatch" => {
            let mut uri = None;
            let (mut presence, mut dialog, mut account) = (true, true, None);
            let mut it = rest.iter();
            while let Some(w) = it.next() {
                match *w {
                    "--presence-only" => dialog = false,
                    "--dialog-only" => presence = false,
                    "--account" => account = it.next().map(|s| s.to_string()),
                    u => uri = Some(u.to_string()),
                }
            }
            let uri = uri.ok_or_else(|| format!("{verb}: give a URI"))?;
            if verb == "unwatch" {
                Command::Unwatch { uri }
            } else {
                Command::Watch {
                    uri,
                    account,
                    presence,
                    dialog,
                }
            }
        }
        "history" | "missed" => {
            let mut limit = None;
            let mut missed_only = verb == "missed";
            for w in rest {
                match *w {
                    "--missed" | "missed" => missed_only = true,
                    n => {
                        limit = Some(
                            n.parse()
                                .map_err(|_| format!("{verb}: [N] [--missed], not {n:?}"))?,
                        )
                    }
                }
            }
            Command::History { limit, missed_only }
        }
        "search" | "find" => {
            if rest.is_empty() {
                return Err("search: give WORDS".into());
            }
            Command::Search {
                query: rest.join(" "),
                limit: None,
            }
        }
        "contact-add" | "contact_add" | "contact-update" | "contact_update" => {
            let update = verb.starts_with("contact-u") || verb.starts_with("contact_u");
            let (id, rest) = match (update, rest.split_first()) {
                (true, Some((id, rest))) => (
                    Some(
                        id.parse::<i64>()
                            .map_err(|_| format!("{verb}: give ID NAME [NUMBER|SIP-URI|EMAIL]…"))?,
                    ),
                    rest,
                ),
                (true, None) => {
                    return Err(format!("{verb}: give ID NAME [NUMBER|SIP-URI|EMAIL]…"));
                }
                (false, _) => (None, rest),
            };
            let mut c = NewContact::default();
            let mut name = Vec::new();
            for w in rest {
                if w.starts_with("sip:") || w.starts_with("sips:") {
                    c.sip_uris.push(w.to_string());
                } else if w.contains('@') {
                    c.emails.push(w.to_string());
                } else if w.starts_with('+') || w.chars().all(|ch| ch.is_ascii_digit()) {
                    c.numbers.push(w.to_string());
                } else {
                    name.push(*w);
                }
            }
            if name.is_empty() {
                return Err("contact-add: give NAME [NUMBER|SIP-URI|EMAIL]…".into());
            }
            c.name = name.join(" ");
            match id {
                Some(id) => Command::ContactUpdate { id, contact: c },
                None => Command::ContactAdd { contact: c },
            }
        }
        "contacts" => Command::Contacts,
        "vcard-import" | "vcard_import" | "import" => Command::VcardImport {
            path: PathBuf::from(one("PATH")?),
        },
        "vcard-export" | "vcard_export" | "export" => Command::VcardExport {
            path: PathBuf::from(one("PATH")?),
        },
        "mark-missed-seen" | "mark_missed_seen" | "seen" => Command::MarkMissedSeen,
        "network-changed" | "network_changed" => Command::NetworkChanged {
            ip: rest.first().map(|s| s.to_string()),
        },
        "quit" | "exit" => Command::Quit,
        other => return Err(format!("unknown command {other:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_through_a_group_gives_number_and_group() {
        let c = caller_of("Sales", "sip:4001%231@office.example");
        assert_eq!(c.number, "4001");
        assert_eq!(c.name, "");
        assert_eq!(
            c.group,
            Some(ViaGroup {
                id: "1".into(),
                name: "Sales".into()
            })
        );
        // Unescaped `#` and parameters after the user part.
        let c = caller_of(" Support ", "<sip:+4570104001#g7@h;transport=tcp>");
        assert_eq!(c.number, "+4570104001");
        assert_eq!(c.group.unwrap().name, "Support");
    }

    #[test]
    fn plain_caller_keeps_name_and_number() {
        let c = caller_of("Alice", "sip:4001@office.example");
        assert_eq!((c.name.as_str(), c.number.as_str()), ("Alice", "4001"));
        assert_eq!(c.group, None);
        // A `#` with nothing after it, or no display name, is no group.
        assert_eq!(caller_of("X", "sip:*21*4003%23@h").group, None);
        assert_eq!(caller_of("X", "sip:*21*4003%23@h").number, "*21*4003#");
        assert_eq!(caller_of("", "sip:4001%231@h").group, None);
        assert_eq!(caller_of("", "sip:h.example").number, "");
        assert_eq!(caller_of("", "tel:+4512345678").number, "+4512345678");
        // Bad escapes and non-ASCII do not panic.
        assert_eq!(caller_of("", "sip:a%2@h").number, "a%2");
        assert_eq!(caller_of("", "sip:æ%é@h").number, "æ%é");
    }

    #[test]
    fn incoming_without_the_new_fields_still_parses() {
        let e: Event = serde_json::from_str(
            r#"{"event":"incoming","call":1,"account":"a","from":"sip:x@h","to":"sip:y@h"}"#,
        )
        .unwrap();
        assert!(matches!(e, Event::Incoming { group: None, .. }));
    }

    #[test]
    fn json_round_trips_in_snake_case() {
        let c = Command::Call {
            uri: "sip:bob@example.com".into(),
            account: None,
            media: MediaFiles {
                play: Some("a.wav".into()),
                record: None,
            },
        };
        let j = serde_json::to_string(&c).unwrap();
        assert_eq!(
            j,
            r#"{"cmd":"call","uri":"sip:bob@example.com","account":null,"play":"a.wav"}"#
        );
        assert_eq!(serde_json::from_str::<Command>(&j).unwrap(), c);
        let e = Event::Ended {
            call: 3,
            cause: EndReason::Rejected,
            status: Some(486),
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"ended","call":3,"cause":"rejected","status":486}"#
        );
        let e = Event::Dtmf {
            call: 1,
            digit: '#',
            via: DtmfVia::Rfc4733,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r##"{"event":"dtmf","call":1,"digit":"#","via":"rfc4733"}"##
        );
    }

    #[test]
    fn text_lines_parse() {
        assert_eq!(
            parse_line("hangup").unwrap(),
            Command::Hangup { call: None }
        );
        assert_eq!(
            parse_line("hold 2").unwrap(),
            Command::Hold { call: Some(2) }
        );
        assert_eq!(
            parse_line("dtmf 123").unwrap(),
            Command::Dtmf {
                call: None,
                digits: "123".into(),
                method: None
            }
        );
        assert_eq!(
            parse_line("dtmf 4 123#").unwrap(),
            Command::Dtmf {
                call: Some(4),
                digits: "123#".into(),
                method: None
            }
        );
        assert_eq!(
            parse_line("transfer sip:c@x").unwrap(),
            Command::Transfer {
                call: None,
                target: "sip:c@x".into()
            }
        );
        assert_eq!(
            parse_line("attended-transfer 1 2").unwrap(),
            Command::AttendedTransfer { call: 1, to: 2 }
        );
        assert_eq!(
            parse_line("contact-update 7 Anne Berg +4512345678").unwrap(),
            Command::ContactUpdate {
                id: 7,
                contact: NewContact {
                    name: "Anne Berg".into(),
                    numbers: vec!["+4512345678".into()],
                    ..NewContact::default()
                }
            }
        );
        assert!(parse_line("contact-update Anne").is_err());
        assert_eq!(
            parse_line("merge").unwrap(),
            Command::Merge { calls: vec![] }
        );
        assert_eq!(
            parse_line("merge 1 3").unwrap(),
            Command::Merge { calls: vec![1, 3] }
        );
        assert!(parse_line("merge x").is_err());
        assert_eq!(
            parse_line("voicemail 2").unwrap(),
            Command::SendToVoicemail { call: Some(2) }
        );
        assert_eq!(
            parse_line(r#"{"cmd":"send_to_voicemail"}"#).unwrap(),
            Command::SendToVoicemail { call: None }
        );
        assert_eq!(
            parse_line("message sip:a@b hello there").unwrap(),
            Command::Message {
                to: "sip:a@b".into(),
                text: "hello there".into(),
                account: None
            }
        );
        assert_eq!(
            parse_line(r#"{"cmd":"answer","call":7}"#).unwrap(),
            Command::Answer {
                call: Some(7),
                media: MediaFiles::default()
            }
        );
        assert_eq!(
            parse_line("history 5 --missed").unwrap(),
            Command::History {
                limit: Some(5),
                missed_only: true
            }
        );
        assert_eq!(
            parse_line("missed").unwrap(),
            Command::History {
                limit: None,
                missed_only: true
            }
        );
        assert_eq!(
            parse_line("search ann sall").unwrap(),
            Command::Search {
                query: "ann sall".into(),
                limit: None
            }
        );
        assert_eq!(
            parse_line("contact-add Anne Sällström +46701234567 sip:anne@x anne@x.se").unwrap(),
            Command::ContactAdd {
                contact: NewContact {
                    name: "Anne Sällström".into(),
                    numbers: vec!["+46701234567".into()],
                    sip_uris: vec!["sip:anne@x".into()],
                    emails: vec!["anne@x.se".into()],
                    ..NewContact::default()
                }
            }
        );
        assert_eq!(
            parse_line(r#"{"cmd":"contact_add","name":"Bo","numbers":["123"]}"#).unwrap(),
            Command::ContactAdd {
                contact: NewContact {
                    name: "Bo".into(),
                    numbers: vec!["123".into()],
                    ..NewContact::default()
                }
            }
        );
        assert_eq!(
            parse_line("vcard-export /tmp/a.vcf").unwrap(),
            Command::VcardExport {
                path: "/tmp/a.vcf".into()
            }
        );
        assert_eq!(
            parse_line(r#"{"cmd":"vcard_import","path":"a.vcf"}"#).unwrap(),
            Command::VcardImport {
                path: "a.vcf".into()
            }
        );
        assert_eq!(
            parse_line("mark-missed-seen").unwrap(),
            Command::MarkMissedSeen
        );
        assert_eq!(
            parse_line("presence set busy --note in a meeting --until 14:00").unwrap(),
            Command::SetPresence {
                activity: "busy".into(),
                note: Some("in a meeting".into()),
                until: Some("14:00".into()),
                account: None
            }
        );
        assert_eq!(
            parse_line("watch sip:bob@x --dialog-only").unwrap(),
            Command::Watch {
                uri: "sip:bob@x".into(),
                account: None,
                presence: false,
                dialog: true
            }
        );
        assert_eq!(
            parse_line(r#"{"cmd":"watch","uri":"bob"}"#).unwrap(),
            Command::Watch {
                uri: "bob".into(),
                account: None,
                presence: true,
                dialog: true
            }
        );
        assert_eq!(
            parse_line("unwatch bob").unwrap(),
            Command::Unwatch { uri: "bob".into() }
        );
        assert!(parse_line("presence").is_err());
        assert_eq!(parse_line("contacts").unwrap(), Command::Contacts);
        assert!(parse_line("search").is_err());
        assert!(parse_line("frobnicate").is_err());
        assert!(parse_line("{nope").is_err());
    }
}
