//! The phone's side of `vaxel-store`: one thread that owns the profile's [`Store`] and
//! carries out the phone's history, contact, search and vCard work in order.
//!
//! The store is synchronous (SQLite); the phone's task must never wait for a disk
//! (`vaxel-store` crate docs: "a driver runs it on a blocking thread it owns"). The core
//! sends [`Job`]s; each runs on this thread against the [`Records`] state and emits its
//! own [`Event`]s, so answers come out in the order the commands went in, after every
//! history write queued before them.

use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use vaxel_store::{
    AccountId, CallDirection, CallGroup, CallOutcome, CallQuery, CallRecord, CallUpdate, Contact,
    ContactData, HitKind, NewCall, Phone as StorePhone, PhoneKind, SearchHit, Store, StoreError,
};

use crate::api::{CallId, ContactEntry, ErrorCode, Event, HistoryEntry, NewContact, SearchResult};

/// Work for the store thread.
pub(crate) type Job = Box<dyn FnOnce(&mut Records) + Send>;

/// What the store thread owns.
pub(crate) struct Records {
    store: Store,
    /// Our calls' rows in the history.
    rows: HashMap<CallId, vaxel_store::CallId>,
    events: mpsc::UnboundedSender<Event>,
}

/// The handle the phone core keeps.
pub(crate) struct RecordsThread {
    jobs: Option<std_mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Wall time in ms since the epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl RecordsThread {
    pub(crate) fn start(store: Store, events: mpsc::UnboundedSender<Event>) -> RecordsThread {
        let (tx, rx) = std_mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("vaxel-store".into())
            .spawn(move || {
                let mut r = Records {
                    store,
                    rows: HashMap::new(),
                    events,
                };
                while let Ok(job) = rx.recv() {
                    job(&mut r);
                }
            })
            .ok();
        RecordsThread {
            jobs: Some(tx),
            thread,
        }
    }

    /// Queues `job`.
    pub(crate) fn run(&self, job: impl FnOnce(&mut Records) + Send + 'static) {
        if let Some(j) = &self.jobs {
            let _ = j.send(Box::new(job));
        }
    }

    /// Finishes the queued jobs and closes the store.
    pub(crate) async fn stop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

fn code_of(e: &StoreError) -> ErrorCode {
    match e.fault() {
        vaxel_store::Fault::Caller => ErrorCode::BadCommand,
        vaxel_store::Fault::Data | vaxel_store::Fault::Environment => ErrorCode::Environment,
    }
}

/// How a finished call goes into the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Finished {
    pub outgoing: bool,
    pub answered: bool,
    /// We hung up before it was answered (outgoing) or refused it (incoming).
    pub by_us: bool,
    /// Incoming, cancelled because another device of ours answered it (RFC 3326
    /// `Reason: SIP;cause=200`).
    pub elsewhere: bool,
}

impl Finished {
    pub(crate) fn outcome(self) -> CallOutcome {
        match (self.outgoing, self.answered, self.by_us) {
            (_, true, _) => CallOutcome::Answered,
            (false, false, false) if self.elsewhere => CallOutcome::AnsweredElsewhere,
            (true, false, true) => CallOutcome::Cancelled,
            (true, false, false) => CallOutcome::Failed,
            (false, false, true) => CallOutcome::Declined,
            (false, false, false) => CallOutcome::Missed,
        }
    }
}

impl Records {
    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    fn fail(&self, e: StoreError) {
        tracing::warn!("store: {e}");
        self.emit(Event::error(code_of(&e), format!("store: {e}"), None));
    }

    /// The unseen missed calls (the badge); 0 when the store cannot tell.
    pub(crate) fn unseen_missed(&self) -> u64 {
        self.store.unseen_missed_count().unwrap_or(0)
    }

    /// A call started: a history row in progress.
    pub(crate) fn call_started(
        &mut self,
        call: CallId,
        outgoing: bool,
        account: AccountId,
        remote_uri: String,
        remote_name: String,
    ) {
        self.call_started_via(call, outgoing, account, remote_uri, remote_name, None);
    }

    /// A call started that came through a group: the number is the caller's plain
    /// number (without the `#groupId` of the From URI), kept with the group.
    pub(crate) fn call_started_via(
        &mut self,
        call: CallId,
        outgoing: bool,
        account: AccountId,
        remote_uri: String,
        remote_name: String,
        via: Option<(String, crate::api::ViaGroup)>,
    ) {
        let mut row = NewCall::new(
            if outgoing {
                CallDirection::Outgoing
            } else {
                CallDirection::Incoming
            },
            now_ms(),
        );
        row.account = (account.0 > 0).then_some(account);
        row.number = number_of(&remote_uri);
        row.remote_uri = remote_uri;
        row.remote_name = remote_name;
        if let Some((number, g)) = via {
            row.number = number;
            row.group = Some(CallGroup {
                id: g.id,
                name: g.name,
            });
        }
        match self.store.insert_call(&row) {
            Ok(id) => {
                self.rows.insert(call, id);
            }
            Err(e) => self.fail(e),
        }
    }

    /// The call was answered.
    pub(crate) fn call_answered(&mut self, call: CallId) {
        let Some(&id) = self.rows.get(&call) else {
            return;
        };
        let u = CallUpdate {
            outcome: Some(CallOutcome::Answered),
            answered_at: Some(now_ms()),
            ..CallUpdate::default()
        };
        if let Err(e) = self.store.update_call(id, &u) {
            self.fail(e);
        }
    }

    /// The call ended.
    pub(crate) fn call_ended(&mut self, call: CallId, how: Finished, cause: String) {
        let Some(id) = self.rows.remove(&call) else {
            return;
        };
        let u = CallUpdate {
            outcome: Some(how.outcome()),
            ended_at: Some(now_ms()),
            cause: Some(cause),
            ..CallUpdate::default()
        };
        if let Err(e) = self.store.update_call(id, &u) {
            self.fail(e);
        }
    }

    pub(crate) fn history(&mut self, limit: Option<u32>, missed_only: bool) {
        let q = CallQuery {
            missed_only,
            limit: limit.unwrap_or(50),
            before: None,
        };
        match self.store.calls(&q) {
            Ok(calls) => self.emit(Event::History {
                calls: calls.iter().map(history_entry).collect(),
                unseen_missed: self.unseen_missed(),
            }),
            Err(e) => self.fail(e),
        }
    }

    pub(crate) fn search(&mut self, query: String, limit: Option<u32>) {
        match self.store.search(&query, limit.unwrap_or(20) as usize) {
            Ok(hits) => self.emit(Event::SearchResults {
                query,
                hits: hits.iter().map(search_result).collect(),
            }),
            Err(e) => self.fail(e),
        }
    }

    pub(crate) fn contact_add(&mut self, c: NewContact) {
        let data = ContactData {
            display_name: c.name.clone(),
            organisation: c.organisation,
            phones: c
                .numbers
                .into_iter()
                .map(|n| StorePhone::new(PhoneKind::Other, n))
                .collect(),
            emails: c.emails,
            sip_uris: c.sip_uris,
            favourite: c.favourite,
            ..ContactData::default()
        };
        match self.store.create_contact(&data) {
            Ok(id) => self.emit(Event::ContactAdded {
                id: id.0,
                name: data.display(),
            }),
            Err(e) => self.fail(e),
        }
    }

    pub(crate) fn contact_update(&mut self, id: i64, c: NewContact) {
        let cid = vaxel_store::ContactId(id);
        let mut data = match self.store.contact(cid) {
            Ok(Some(existing)) => existing.data,
            Ok(None) => {
                self.emit(Event::error(
                    crate::api::ErrorCode::BadCommand,
                    format!("no contact {id}"),
                    None,
                ));
                return;
            }
            Err(e) => return self.fail(e),
        };
        // The name as given: given and family names would otherwise make another one.
        data.display_name = c.name.trim().to_string();
        data.given_name.clear();
        data.family_name.clear();
        data.organisation = c.organisation;
        data.phones = c
            .numbers
            .into_iter()
            .map(|n| StorePhone::new(PhoneKind::Other, n))
            .collect();
        data.sip_uris = c.sip_uris;
        data.emails = c.emails;
        data.favourite = c.favourite;
        match self.store.update_contact(cid, &data) {
            Ok(_) => self.emit(Event::ContactUpdated {
                id,
                name: data.display(),
            }),
            Err(e) => self.fail(e),
        }
    }

    pub(crate) fn contacts(&mut self) {
        match self.store.contacts() {
            Ok(all) => self.emit(Event::Contacts {
                contacts: all.iter().map(contact_entry).collect(),
            }),
            Err(e) => self.fail(e),
        }
    }

    pub(crate) fn vcard_import(&mut self, path: std::path::PathBuf) {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                self.emit(Event::error(
                    ErrorCode::Environment,
                    format!("{}: {e}", path.display()),
                    None,
                ));
                return;
            }
        };
        match self.store.import_vcards(&text) {
            Ok(r) => self.emit(Event::VcardImported {
                path,
                imported: r.imported.len(),
                errors: r.errors.iter().map(|e| e.to_string()).collect(),
            }),
            Err(e) => self.fail(e),
        }
    }

    pub(crate) fn vcard_export(&mut self, path: std::path::PathBuf) {
        let (text, count) = match self.store.export_vcards().and_then(|t| {
            let n = self.store.contacts()?.len();
            Ok((t, n))
        }) {
            Ok(x) => x,
            Err(e) => return self.fail(e),
        };
        match std::fs::write(&path, text) {
            Ok(()) => self.emit(Event::VcardExported {
                path,
                contacts: count,
            }),
            Err(e) => self.emit(Event::error(
                ErrorCode::Environment,
                format!("{}: {e}", path.display()),
                None,
            )),
        }
    }

    pub(crate) fn mark_missed_seen(&mut self) {
        match self.store.mark_missed_seen() {
            Ok(n) => self.emit(Event::MissedSeen { marked: n }),
            Err(e) => self.fail(e),
        }
    }

    /// Emits `snapshot` with the unseen-missed count filled in.
    pub(crate) fn snapshot(&mut self, mut snapshot: Event) {
        if let Event::Snapshot { unseen_missed, .. } = &mut snapshot {
            *unseen_missed = self.unseen_missed();
        }
        self.emit(snapshot);
    }
}

/// The number shown for a SIP URI: its user part (`sip:+4670123@x` → `+4670123`).
fn number_of(uri: &str) -> String {
    crate::account::parse_sip_uri(uri)
        .ok()
        .and_then(|u| {
            u.as_sip()
                .and_then(|s| s.user.as_ref().map(|u| u.to_string()))
        })
        .unwrap_or_default()
}

fn direction_str(d: CallDirection) -> &'static str {
    match d {
        CallDirection::Outgoing => "outgoing",
        CallDirection::Incoming => "incoming",
    }
}

fn outcome_str(o: CallOutcome) -> &'static str {
    match o {
        CallOutcome::InProgress => "in_progress",
        CallOutcome::Answered => "answered",
        CallOutcome::Missed => "missed",
        CallOutcome::Declined => "declined",
        CallOutcome::Failed => "failed",
        CallOutcome::Cancelled => "cancelled",
        CallOutcome::AnsweredElsewhere => "answered_elsewhere",
        CallOutcome::TakenByColleague => "taken_by_colleague",
    }
}

fn history_entry(c: &CallRecord) -> HistoryEntry {
    HistoryEntry {
        id: c.id.0,
        direction: direction_str(c.direction).into(),
        outcome: outcome_str(c.outcome).into(),
        remote: c.remote_uri.clone(),
        name: c.remote_name.clone(),
        number: c.number.clone(),
        started_at: c.started_at,
        answered_at: c.answered_at,
        ended_at: c.ended_at,
        cause: c.cause.clone(),
        seen: c.seen,
        group: c.group.as_ref().map(|g| g.name.clone()).unwrap_or_default(),
    }
}

fn search_result(h: &SearchHit) -> SearchResult {
    SearchResult {
        kind: match h.kind {
            HitKind::Directory => "directory",
            HitKind::Contact => "contact",
            HitKind::History => "history",
        }
        .into(),
        id: h.id,
        display: h.display.clone(),
        detail: h.detail.clone(),
        number: h.number.clone(),
        favourite: h.favourite,
    }
}

fn contact_entry(c: &Contact) -> ContactEntry {
    ContactEntry {
        id: c.id.0,
        name: c.data.display(),
        organisation: c.data.organisation.clone(),
        numbers: c.data.phones.iter().map(|p| p.number.clone()).collect(),
        sip_uris: c.data.sip_uris.clone(),
        emails: c.data.emails.clone(),
        favourite: c.data.favourite,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_by_direction_answer_and_who_ended_it() {
        let f = |outgoing, answered, by_us| {
            Finished {
                outgoing,
                answered,
                by_us,
                elsewhere: false,
            }
            .outcome()
        };
        assert_eq!(f(true, true, false), CallOutcome::Answered);
        assert_eq!(f(false, true, true), CallOutcome::Answered);
        assert_eq!(f(true, false, true), CallOutcome::Cancelled);
        assert_eq!(f(true, false, false), CallOutcome::Failed);
        assert_eq!(f(false, false, true), CallOutcome::Declined);
        assert_eq!(f(false, false, false), CallOutcome::Missed);
        let elsewhere = Finished {
            outgoing: false,
            answered: false,
            by_us: false,
            elsewhere: true,
        };
        assert_eq!(elsewhere.outcome(), CallOutcome::AnsweredElsewhere);
    }

    #[test]
    fn number_is_the_user_part() {
        assert_eq!(number_of("sip:+4670123@example.com"), "+4670123");
        assert_eq!(number_of("sip:example.com"), "");
    }
}
