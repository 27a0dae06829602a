//! Call history: calls placed, received and missed, including calls
//! the engine handled while the app was closed and group calls a colleague took.

use rusqlite::{OptionalExtension, Row, Transaction, params};

use crate::error::{Result, StoreError};
use crate::search::{self, HitKind, IndexRow};
use crate::{AccountId, Store, UnixMillis};

/// Row id of a [`CallRecord`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub i64);

/// Who started the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallDirection {
    /// Placed by this user.
    Outgoing,
    /// Received (or missed) by this user.
    Incoming,
}

/// How a call went (or is going).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    /// Not over yet (ringing or talking).
    #[default]
    InProgress,
    /// Answered here, in either direction.
    Answered,
    /// Incoming, rang here, nobody answered: counts towards the badge.
    Missed,
    /// Incoming, rejected by this user.
    Declined,
    /// Outgoing, the far end or the network refused (busy, unreachable); see `cause`.
    Failed,
    /// Outgoing, hung up by this user before it was answered.
    Cancelled,
    /// Incoming, answered on another device of this user (mobile, desk phone).
    AnsweredElsewhere,
    /// Incoming through a group, answered by a colleague (see `taken_by`).
    TakenByColleague,
}

impl CallDirection {
    fn as_str(self) -> &'static str {
        match self {
            CallDirection::Outgoing => "outgoing",
            CallDirection::Incoming => "incoming",
        }
    }

    fn parse(s: &str) -> CallDirection {
        if s == "outgoing" {
            CallDirection::Outgoing
        } else {
            CallDirection::Incoming
        }
    }
}

impl CallOutcome {
    fn as_str(self) -> &'static str {
        match self {
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

    fn parse(s: &str) -> CallOutcome {
        match s {
            "answered" => CallOutcome::Answered,
            "missed" => CallOutcome::Missed,
            "declined" => CallOutcome::Declined,
            "failed" => CallOutcome::Failed,
            "cancelled" => CallOutcome::Cancelled,
            "answered_elsewhere" => CallOutcome::AnsweredElsewhere,
            "taken_by_colleague" => CallOutcome::TakenByColleague,
            _ => CallOutcome::InProgress,
        }
    }
}

/// The group (hunt group, queue, main number) a call came in through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallGroup {
    /// The engine's id of the group.
    pub id: String,
    /// Its name as shown ("Sales").
    pub name: String,
}

/// A call as it starts; see [`Store::insert_call`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCall {
    /// Who started it.
    pub direction: CallDirection,
    /// The account it runs on.
    pub account: Option<AccountId>,
    /// The far end's SIP URI.
    pub remote_uri: String,
    /// The far end's display name, if known.
    pub remote_name: String,
    /// The far end's number as shown (may be empty for SIP-only parties).
    pub number: String,
    /// When it started (INVITE sent or received).
    pub started_at: UnixMillis,
    /// The engine's id of the call, when known, for de-duplication with
    /// [`Store::import_remote`].
    pub engine_call_id: Option<String>,
    /// The group it came in through.
    pub group: Option<CallGroup>,
}

impl NewCall {
    /// A call in `direction` starting at `started_at`, everything else empty.
    pub fn new(direction: CallDirection, started_at: UnixMillis) -> NewCall {
        NewCall {
            direction,
            account: None,
            remote_uri: String::new(),
            remote_name: String::new(),
            number: String::new(),
            started_at,
            engine_call_id: None,
            group: None,
        }
    }
}

/// Changes as a call progresses; `None` fields stay as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallUpdate {
    /// The new outcome.
    pub outcome: Option<CallOutcome>,
    /// When it was answered.
    pub answered_at: Option<UnixMillis>,
    /// When it ended.
    pub ended_at: Option<UnixMillis>,
    /// Why it ended or failed ("486 Busy Here", a Reason header).
    pub cause: Option<String>,
    /// Who answered it instead (for [`CallOutcome::TakenByColleague`]).
    pub taken_by: Option<String>,
    /// A display name learnt later (from a contact or the far end's answer).
    pub remote_name: Option<String>,
    /// The engine's id of the call, once known.
    pub engine_call_id: Option<String>,
}

/// A call the engine knows about, for [`Store::import_remote`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteCall {
    /// The engine's id of the call (the de-duplication key).
    pub engine_call_id: String,
    /// Who started it.
    pub direction: CallDirection,
    /// How it went.
    pub outcome: CallOutcome,
    /// The local account it belongs to.
    pub account: Option<AccountId>,
    /// The far end's SIP URI.
    pub remote_uri: String,
    /// The far end's display name.
    pub remote_name: String,
    /// The far end's number.
    pub number: String,
    /// When it started.
    pub started_at: UnixMillis,
    /// When it was answered.
    pub answered_at: Option<UnixMillis>,
    /// When it ended.
    pub ended_at: Option<UnixMillis>,
    /// The group it came in through.
    pub group: Option<CallGroup>,
    /// Why it ended.
    pub cause: String,
    /// The colleague who took it.
    pub taken_by: String,
}

/// A stored call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRecord {
    /// Row id.
    pub id: CallId,
    /// Who started it.
    pub direction: CallDirection,
    /// How it went.
    pub outcome: CallOutcome,
    /// The account it ran on (`None` once that account is deleted).
    pub account: Option<AccountId>,
    /// The far end's SIP URI.
    pub remote_uri: String,
    /// The far end's display name.
    pub remote_name: String,
    /// The far end's number.
    pub number: String,
    /// When it started.
    pub started_at: UnixMillis,
    /// When it was answered.
    pub answered_at: Option<UnixMillis>,
    /// When it ended.
    pub ended_at: Option<UnixMillis>,
    /// The group it came in through.
    pub group: Option<CallGroup>,
    /// Why it ended.
    pub cause: String,
    /// The colleague who took it.
    pub taken_by: String,
    /// The engine's id.
    pub engine_call_id: Option<String>,
    /// For a missed call: whether the user has seen it.
    pub seen: bool,
}

impl CallRecord {
    /// Talk time: from answer to end, when both are known.
    pub fn duration_ms(&self) -> Option<i64> {
        match (self.answered_at, self.ended_at) {
            (Some(a), Some(e)) => Some((e - a).max(0)),
            _ => None,
        }
    }

    /// An incoming call that rang here unanswered.
    pub fn is_missed(&self) -> bool {
        self.outcome == CallOutcome::Missed
    }

    /// The position after this record, for the next page of [`Store::calls`].
    pub fn cursor(&self) -> CallCursor {
        CallCursor {
            started_at: self.started_at,
            id: self.id,
        }
    }
}

/// A position in the newest-first history (keyset paging: stable while new
/// calls arrive, unlike an offset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallCursor {
    /// `started_at` of the last call already shown.
    pub started_at: UnixMillis,
    /// Its id (breaks ties between calls started in the same millisecond).
    pub id: CallId,
}

/// Which calls [`Store::calls`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallQuery {
    /// Only missed calls.
    pub missed_only: bool,
    /// At most this many.
    pub limit: u32,
    /// Only calls older than this position.
    pub before: Option<CallCursor>,
}

impl Default for CallQuery {
    fn default() -> Self {
        CallQuery {
            missed_only: false,
            limit: 50,
            before: None,
        }
    }
}

/// What [`Store::import_remote`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// New calls added.
    pub inserted: usize,
    /// Calls already stored that were still "in progress" here (the app
    /// closed during the call) and now carry the engine's outcome.
    pub completed: usize,
    /// Calls already stored and left as they are.
    pub duplicates: usize,
}

const COLUMNS: &str = "id, direction, outcome, account_id, remote_uri, remote_name, number, \
    started_at, answered_at, ended_at, group_id, group_name, cause, taken_by, engine_call_id, seen";

fn from_row(r: &Row<'_>) -> rusqlite::Result<CallRecord> {
    let direction: String = r.get(1)?;
    let outcome: String = r.get(2)?;
    let group_id: Option<String> = r.get(10)?;
    let group_name: Option<String> = r.get(11)?;
    Ok(CallRecord {
        id: CallId(r.get(0)?),
        direction: CallDirection::parse(&direction),
        outcome: CallOutcome::parse(&outcome),
        account: r.get::<_, Option<i64>>(3)?.map(AccountId),
        remote_uri: r.get(4)?,
        remote_name: r.get(5)?,
        number: r.get(6)?,
        started_at: r.get(7)?,
        answered_at: r.get(8)?,
        ended_at: r.get(9)?,
        group: match (group_id, group_name) {
            (None, None) => None,
            (id, name) => Some(CallGroup {
                id: id.unwrap_or_default(),
                name: name.unwrap_or_default(),
            }),
        },
        cause: r.get(12)?,
        taken_by: r.get(13)?,
        engine_call_id: r.get(14)?,
        seen: r.get(15)?,
    })
}

fn check_outcome(direction: CallDirection, outcome: CallOutcome) -> Result<()> {
    use CallOutcome::*;
    let ok = match direction {
        CallDirection::Outgoing => matches!(outcome, InProgress | Answered | Failed | Cancelled),
        CallDirection::Incoming => !matches!(outcome, Failed | Cancelled),
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::invalid(
            "call outcome",
            format!("{outcome:?} is not possible for an {direction:?} call"),
        ))
    }
}

fn load(tx: &Transaction<'_>, id: CallId) -> Result<Option<CallRecord>> {
    Ok(tx
        .prepare_cached(&format!("SELECT {COLUMNS} FROM calls WHERE id = ?1"))?
        .query_row([id.0], from_row)
        .optional()?)
}

fn reindex(tx: &Transaction<'_>, c: &CallRecord) -> Result<()> {
    let display = [&c.remote_name, &c.number, &c.remote_uri]
        .into_iter()
        .find(|s| !s.is_empty())
        .cloned()
        .unwrap_or_default();
    let number = if c.number.is_empty() {
        c.remote_uri.clone()
    } else {
        c.number.clone()
    };
    let uri_user = c
        .remote_uri
        .trim_start_matches("sips:")
        .trim_start_matches("sip:")
        .trim_start_matches("tel:")
        .split(['@', ';'])
        .next()
        .unwrap_or("");
    let mut other = vec![c.remote_uri.as_str()];
    if let Some(g) = &c.group {
        other.push(&g.name);
    }
    search::index(
        tx,
        HitKind::History,
        c.id.0,
        &IndexRow {
            name: vec![&c.remote_name],
            other,
            numbers: vec![&c.number, uri_user],
            display,
            detail: c.group.as_ref().map(|g| g.name.clone()).unwrap_or_default(),
            number,
            favourite: false,
        },
    )
}

impl Store {
    /// Records a call as it starts ([`CallOutcome::InProgress`]).
    pub fn insert_call(&mut self, call: &NewCall) -> Result<CallId> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO calls (direction, outcome, account_id, remote_uri, remote_name, number, \
             started_at, engine_call_id, group_id, group_name) \
             VALUES (?1, 'in_progress', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                call.direction.as_str(),
                call.account.map(|a| a.0),
                call.remote_uri,
                call.remote_name,
                call.number,
                call.started_at,
                call.engine_call_id,
                call.group.as_ref().map(|g| &g.id),
                call.group.as_ref().map(|g| &g.name),
            ],
        )
        .map_err(|e| foreign_key(e, "account", call.account))?;
        let id = CallId(tx.last_insert_rowid());
        if let Some(rec) = load(&tx, id)? {
            reindex(&tx, &rec)?;
        }
        tx.commit()?;
        Ok(id)
    }

    /// Applies progress to a call; returns the stored result. A call that
    /// becomes [`CallOutcome::Missed`] is unseen until
    /// [`Store::mark_missed_seen`].
    pub fn update_call(&mut self, id: CallId, update: &CallUpdate) -> Result<CallRecord> {
        let tx = self.conn.transaction()?;
        let Some(mut c) = load(&tx, id)? else {
            return Err(StoreError::NotFound {
                what: "call",
                id: id.0,
            });
        };
        if let Some(o) = update.outcome {
            check_outcome(c.direction, o)?;
            if o == CallOutcome::Missed && c.outcome != CallOutcome::Missed {
                c.seen = false;
            }
            c.outcome = o;
        }
        c.answered_at = update.answered_at.or(c.answered_at);
        c.ended_at = update.ended_at.or(c.ended_at);
        if let Some(v) = &update.cause {
            c.cause.clone_from(v);
        }
        if let Some(v) = &update.taken_by {
            c.taken_by.clone_from(v);
        }
        if let Some(v) = &update.remote_name {
            c.remote_name.clone_from(v);
        }
        if update.engine_call_id.is_some() {
            c.engine_call_id.clone_from(&update.engine_call_id);
        }
        tx.execute(
            "UPDATE calls SET outcome = ?2, answered_at = ?3, ended_at = ?4, cause = ?5, \
             taken_by = ?6, remote_name = ?7, engine_call_id = ?8, seen = ?9 WHERE id = ?1",
            params![
                id.0,
                c.outcome.as_str(),
                c.answered_at,
                c.ended_at,
                c.cause,
                c.taken_by,
                c.remote_name,
                c.engine_call_id,
                c.seen
            ],
        )
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::ConstraintViolation) => {
                StoreError::invalid("engine call id", "already recorded for another call")
            }
            _ => e.into(),
        })?;
        reindex(&tx, &c)?;
        tx.commit()?;
        Ok(c)
    }

    /// One call.
    pub fn call(&self, id: CallId) -> Result<Option<CallRecord>> {
        Ok(self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM calls WHERE id = ?1"))?
            .query_row([id.0], from_row)
            .optional()?)
    }

    /// Calls newest first, one page at a time: pass the last record's
    /// [`CallRecord::cursor`] as `before` for the next page.
    pub fn calls(&self, q: &CallQuery) -> Result<Vec<CallRecord>> {
        let (before_at, before_id) = q
            .before
            .map_or((i64::MAX, i64::MAX), |c| (c.started_at, c.id.0));
        let filter = if q.missed_only {
            "outcome = 'missed' AND "
        } else {
            ""
        };
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM calls WHERE {filter}(started_at, id) < (?1, ?2) \
             ORDER BY started_at DESC, id DESC LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![before_at, before_id, q.limit], from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// How many missed calls the user has not seen yet (the badge).
    pub fn unseen_missed_count(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row(
                "SELECT count(*) FROM calls WHERE outcome = 'missed' AND seen = 0",
                [],
                |r| r.get::<_, i64>(0),
            )?
            .max(0) as u64)
    }

    /// Marks every missed call as seen; returns how many changed.
    pub fn mark_missed_seen(&mut self) -> Result<usize> {
        Ok(self.conn.execute(
            "UPDATE calls SET seen = 1 WHERE outcome = 'missed' AND seen = 0",
            [],
        )?)
    }

    /// Deletes one call.
    pub fn delete_call(&mut self, id: CallId) -> Result<()> {
        let tx = self.conn.transaction()?;
        if tx.execute("DELETE FROM calls WHERE id = ?1", [id.0])? == 0 {
            return Err(StoreError::NotFound {
                what: "call",
                id: id.0,
            });
        }
        search::unindex(&tx, HitKind::History, id.0)?;
        tx.commit()?;
        Ok(())
    }

    /// Deletes the whole history; returns how many calls there were.
    pub fn clear_history(&mut self) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let n = tx.execute("DELETE FROM calls", [])?;
        search::unindex_all(&tx, HitKind::History)?;
        tx.commit()?;
        Ok(n)
    }

    /// Adds calls the engine handled while this app was not running (missed
    /// calls, calls answered on another device or by a colleague), in one
    /// transaction. A call whose `engine_call_id` is already stored is not added
    /// again; if it is still in progress here (the app closed mid-call) it takes
    /// the engine's outcome and times.
    pub fn import_remote(&mut self, calls: &[RemoteCall]) -> Result<ImportSummary> {
        let tx = self.conn.transaction()?;
        let mut summary = ImportSummary::default();
        for c in calls {
            if c.engine_call_id.is_empty() {
                return Err(StoreError::invalid("engine call id", "must not be empty"));
            }
            check_outcome(c.direction, c.outcome)?;
            let existing: Option<(i64, String)> = tx
                .prepare_cached("SELECT id, outcome FROM calls WHERE engine_call_id = ?1")?
                .query_row([&c.engine_call_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let id = match existing {
                Some((id, outcome)) if outcome == CallOutcome::InProgress.as_str() => {
                    tx.prepare_cached(
                        "UPDATE calls SET outcome = ?2, answered_at = ?3, ended_at = ?4, \
                         cause = ?5, taken_by = ?6, seen = ?7 WHERE id = ?1",
                    )?
                    .execute(params![
                        id,
                        c.outcome.as_str(),
                        c.answered_at,
                        c.ended_at,
                        c.cause,
                        c.taken_by,
                        c.outcome != CallOutcome::Missed
                    ])?;
                    summary.completed += 1;
                    id
                }
                Some(_) => {
                    summary.duplicates += 1;
                    continue;
                }
                None => {
                    tx.prepare_cached(
                        "INSERT INTO calls (direction, outcome, account_id, remote_uri, \
                         remote_name, number, started_at, answered_at, ended_at, group_id, \
                         group_name, cause, taken_by, engine_call_id, seen) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                    )?
                    .execute(params![
                        c.direction.as_str(),
                        c.outcome.as_str(),
                        c.account.map(|a| a.0),
                        c.remote_uri,
                        c.remote_name,
                        c.number,
                        c.started_at,
                        c.answered_at,
                        c.ended_at,
                        c.group.as_ref().map(|g| &g.id),
                        c.group.as_ref().map(|g| &g.name),
                        c.cause,
                        c.taken_by,
                        c.engine_call_id,
                        c.outcome != CallOutcome::Missed
                    ])
                    .map_err(|e| foreign_key(e, "account", c.account))?;
                    summary.inserted += 1;
                    tx.last_insert_rowid()
                }
            };
            if let Some(rec) = load(&tx, CallId(id))? {
                reindex(&tx, &rec)?;
            }
        }
        tx.commit()?;
        Ok(summary)
    }
}

/// A foreign-key failure on insert means the caller named a missing account.
fn foreign_key(e: rusqlite::Error, what: &'static str, id: Option<AccountId>) -> StoreError {
    match (e.sqlite_error_code(), id) {
        (Some(rusqlite::ErrorCode::ConstraintViolation), Some(id)) => {
            StoreError::NotFound { what, id: id.0 }
        }
        _ => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NewAccount, Transport};

    fn incoming(at: UnixMillis, name: &str, number: &str) -> NewCall {
        NewCall {
            remote_name: name.into(),
            number: number.into(),
            remote_uri: format!("sip:{}@example.com", number.replace(' ', "")),
            ..NewCall::new(CallDirection::Incoming, at)
        }
    }

    #[test]
    fn a_call_progresses_and_derives_its_duration() {
        let mut s = Store::open_in_memory().unwrap();
        let acc = s
            .create_account(&NewAccount {
                name: "Work".into(),
                sip_uri: "me@example.com".into(),
                transport: Transport::Udp,
                register: true,
                ..NewAccount::default()
            })
            .unwrap();
        let id = s
            .insert_call(&NewCall {
                account: Some(acc.id),
                ..incoming(1_000, "Bo", "4001")
            })
            .unwrap();
        let c = s.call(id).unwrap().unwrap();
        assert_eq!(
            (c.outcome, c.duration_ms()),
            (CallOutcome::InProgress, None)
        );
        s.update_call(
            id,
            &CallUpdate {
                outcome: Some(CallOutcome::Answered),
                answered_at: Some(3_000),
                ..CallUpdate::default()
            },
        )
        .unwrap();
        let c = s
            .update_call(
                id,
                &CallUpdate {
                    ended_at: Some(63_000),
                    cause: Some("BYE".into()),
                    ..CallUpdate::default()
                },
            )
            .unwrap();
        assert_eq!(c.duration_ms(), Some(60_000));
        assert_eq!(c.outcome, CallOutcome::Answered);
        assert_eq!(c.account, Some(acc.id));
        // Deleting the account keeps the call.
        s.delete_account(acc.id).unwrap();
        assert_eq!(s.call(id).unwrap().unwrap().account, None);
        // Outgoing calls cannot be missed.
        let out = s
            .insert_call(&NewCall::new(CallDirection::Outgoing, 5))
            .unwrap();
        let e = s
            .update_call(
                out,
                &CallUpdate {
                    outcome: Some(CallOutcome::Missed),
                    ..CallUpdate::default()
                },
            )
            .unwrap_err();
        assert!(matches!(e, StoreError::Invalid { .. }));
        let e = s
            .insert_call(&NewCall {
                account: Some(AccountId(99)),
                ..NewCall::new(CallDirection::Outgoing, 5)
            })
            .unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::NotFound {
                    what: "account",
                    id: 99
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn history_pages_newest_first_and_filters_missed() {
        let mut s = Store::open_in_memory().unwrap();
        let mut ids = Vec::new();
        for i in 0..25 {
            let id = s
                .insert_call(&incoming(1_000 * (i / 2), "X", "123"))
                .unwrap();
            if i % 3 == 0 {
                s.update_call(
                    id,
                    &CallUpdate {
                        outcome: Some(CallOutcome::Missed),
                        ..CallUpdate::default()
                    },
                )
                .unwrap();
            }
            ids.push(id);
        }
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = s
                .calls(&CallQuery {
                    limit: 10,
                    before,
                    ..CallQuery::default()
                })
                .unwrap();
            if page.is_empty() {
                break;
            }
            before = Some(page.last().unwrap().cursor());
            seen.extend(page.into_iter().map(|c| c.id));
        }
        ids.reverse();
        assert_eq!(seen, ids, "every call once, newest first, ties by id");
        let missed = s
            .calls(&CallQuery {
                missed_only: true,
                limit: 100,
                before: None,
            })
            .unwrap();
        assert_eq!(missed.len(), 9);
        assert!(missed.iter().all(CallRecord::is_missed));
        assert_eq!(s.unseen_missed_count().unwrap(), 9);
        assert_eq!(s.mark_missed_seen().unwrap(), 9);
        assert_eq!(s.unseen_missed_count().unwrap(), 0);
        s.delete_call(ids[0]).unwrap();
        assert!(matches!(
            s.delete_call(ids[0]),
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(s.clear_history().unwrap(), 24);
        assert!(s.calls(&CallQuery::default()).unwrap().is_empty());
        assert!(s.search("123", 10).unwrap().is_empty());
    }

    fn remote(id: &str, outcome: CallOutcome, at: UnixMillis) -> RemoteCall {
        RemoteCall {
            engine_call_id: id.into(),
            direction: CallDirection::Incoming,
            outcome,
            account: None,
            remote_uri: "sip:+46701234567@pstn".into(),
            remote_name: "Customer".into(),
            number: "+46701234567".into(),
            started_at: at,
            answered_at: None,
            ended_at: Some(at + 20_000),
            group: Some(CallGroup {
                id: "g1".into(),
                name: "Sales".into(),
            }),
            cause: String::new(),
            taken_by: String::new(),
        }
    }

    #[test]
    fn import_remote_deduplicates_by_engine_call_id() {
        let mut s = Store::open_in_memory().unwrap();
        // A call the app saw start, then the app closed.
        let local = s
            .insert_call(&NewCall {
                engine_call_id: Some("e3".into()),
                ..incoming(3_000, "Customer", "+46701234567")
            })
            .unwrap();
        let taken = RemoteCall {
            taken_by: "Bo Ek".into(),
            answered_at: Some(4_000),
            ..remote("e2", CallOutcome::TakenByColleague, 2_000)
        };
        let batch = [
            remote("e1", CallOutcome::Missed, 1_000),
            taken,
            remote("e3", CallOutcome::Missed, 3_000),
        ];
        let sum = s.import_remote(&batch).unwrap();
        assert_eq!(
            sum,
            ImportSummary {
                inserted: 2,
                completed: 1,
                duplicates: 0
            }
        );
        let again = s.import_remote(&batch).unwrap();
        assert_eq!(again.duplicates, 3);
        let all = s.calls(&CallQuery::default()).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].id, local);
        assert_eq!(all[0].outcome, CallOutcome::Missed);
        assert_eq!(all[1].outcome, CallOutcome::TakenByColleague);
        assert_eq!(all[1].taken_by, "Bo Ek");
        assert_eq!(all[1].group.as_ref().unwrap().name, "Sales");
        assert_eq!(s.unseen_missed_count().unwrap(), 2);
        // Search collapses the party's calls into one hit.
        let hits = s.search("070 123", 10).unwrap();
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(hits[0].kind, HitKind::History);
        assert_eq!(hits[0].id, 3, "the party's most recently recorded call");
        assert!(
            s.import_remote(&[remote("", CallOutcome::Missed, 1)])
                .is_err()
        );
    }
}
