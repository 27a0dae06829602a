//! What call flows keep in the database: the `[routing]` section as changed through
//! the API (flow versions, the active one), each user's forwarding (set by feature
//! codes), the IVR choices callers made, and the voicemail index (the WAV files
//! themselves live in `<data>/voicemail/`).
//!
//! These tables are created with `IF NOT EXISTS` on open rather than as a numbered
//! migration, so they never collide with the core schema's migration numbers.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use vaxel_routing::forwarding::Forwarding;

use super::{Db, DbError};
use crate::callflow::Routing;

const TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS forwarding (
    extension TEXT PRIMARY KEY,
    config    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ivr_choices (
    id      INTEGER PRIMARY KEY,
    call    INTEGER NOT NULL,
    menu    TEXT NOT NULL,
    digit   TEXT NOT NULL,
    valid   INTEGER NOT NULL,
    at      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ivr_choices_call ON ivr_choices(call);
CREATE TABLE IF NOT EXISTS voicemail (
    id         INTEGER PRIMARY KEY,
    mailbox    TEXT NOT NULL,
    caller     TEXT NOT NULL,
    call       INTEGER,
    file       TEXT NOT NULL,
    secs       REAL NOT NULL,
    created_at INTEGER NOT NULL,
    heard      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS voicemail_mailbox ON voicemail(mailbox);
"#;

/// A voicemail message (R-312).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// Id.
    pub id: i64,
    /// The box: an extension or a shared box's name.
    pub mailbox: String,
    /// Who left it.
    pub caller: String,
    /// The call record it came from.
    pub call: Option<i64>,
    /// File name in `<data>/voicemail/`.
    pub file: String,
    /// Length in seconds.
    pub secs: f64,
    /// Unix time.
    pub created_at: i64,
    /// Listened to.
    pub heard: bool,
}

/// A key a caller pressed in an IVR menu (R-311: every choice is recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IvrChoice {
    /// The call record.
    pub call: i64,
    /// The menu step.
    pub menu: String,
    /// The key.
    pub digit: String,
    /// Whether it was one of the menu's choices.
    pub valid: bool,
}

fn message_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        id: r.get(0)?,
        mailbox: r.get(1)?,
        caller: r.get(2)?,
        call: r.get(3)?,
        file: r.get(4)?,
        secs: r.get(5)?,
        created_at: r.get(6)?,
        heard: r.get(7)?,
    })
}

const MSG_COLS: &str = "id, mailbox, caller, call, file, secs, created_at, heard";

impl Db {
    pub(super) fn flow_tables(&mut self) -> Result<(), DbError> {
        self.conn.execute_batch(TABLES)
    }

    /// The `[routing]` section in force (the office file's, or as changed since
    /// through the API).
    pub fn routing(&self) -> Result<Option<Routing>, DbError> {
        Ok(self
            .key("routing")?
            .and_then(|s| serde_json::from_str(&s).ok()))
    }

    /// Replaces the `[routing]` section (validated by the caller).
    pub fn set_routing(&mut self, r: &Routing) -> Result<(), DbError> {
        let tx = self.conn.transaction()?;
        super::set_key(
            &tx,
            "routing",
            &serde_json::to_string(r).unwrap_or_default(),
        )?;
        tx.commit()
    }

    /// Every user's forwarding.
    pub fn forwarding(&self) -> Result<BTreeMap<String, Forwarding>, DbError> {
        let mut st = self
            .conn
            .prepare("SELECT extension, config FROM forwarding")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = BTreeMap::new();
        for r in rows {
            let (e, c) = r?;
            if let Ok(f) = serde_json::from_str(&c) {
                out.insert(e, f);
            }
        }
        Ok(out)
    }

    /// Sets one user's forwarding.
    pub fn set_forwarding(&mut self, extension: &str, f: &Forwarding) -> Result<(), DbError> {
        self.conn.execute(
            "INSERT INTO forwarding (extension, config) VALUES (?1, ?2)
             ON CONFLICT(extension) DO UPDATE SET config = excluded.config",
            params![extension, serde_json::to_string(f).unwrap_or_default()],
        )?;
        Ok(())
    }

    /// Records an IVR key press with its call.
    pub fn add_ivr_choice(&mut self, c: &IvrChoice, at: i64) -> Result<(), DbError> {
        self.conn.execute(
            "INSERT INTO ivr_choices (call, menu, digit, valid, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![c.call, c.menu, c.digit, c.valid, at],
        )?;
        Ok(())
    }

    /// The IVR choices of a call, in order.
    pub fn ivr_choices(&self, call: i64) -> Result<Vec<IvrChoice>, DbError> {
        let mut st = self.conn.prepare(
            "SELECT call, menu, digit, valid FROM ivr_choices WHERE call = ?1 ORDER BY id",
        )?;
        st.query_map([call], |r| {
            Ok(IvrChoice {
                call: r.get(0)?,
                menu: r.get(1)?,
                digit: r.get(2)?,
                valid: r.get(3)?,
            })
        })?
        .collect()
    }

    /// Adds a message to the index.
    pub fn add_message(
        &mut self,
        mailbox: &str,
        caller: &str,
        call: Option<i64>,
        file: &str,
        secs: f64,
        now: i64,
    ) -> Result<i64, DbError> {
        self.conn.execute(
            "INSERT INTO voicemail (mailbox, caller, call, file, secs, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![mailbox, caller, call, file, secs, now],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// A box's messages, oldest first.
    pub fn messages(&self, mailbox: &str) -> Result<Vec<Message>, DbError> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {MSG_COLS} FROM voicemail WHERE mailbox = ?1 ORDER BY id"
        ))?;
        st.query_map([mailbox], message_from_row)?.collect()
    }

    /// One message.
    pub fn message(&self, id: i64) -> Result<Option<Message>, DbError> {
        self.conn
            .query_row(
                &format!("SELECT {MSG_COLS} FROM voicemail WHERE id = ?1"),
                [id],
                message_from_row,
            )
            .optional()
    }

    /// Marks a message heard.
    pub fn mark_heard(&mut self, id: i64) -> Result<bool, DbError> {
        Ok(self
            .conn
            .execute("UPDATE voicemail SET heard = 1 WHERE id = ?1", [id])?
            > 0)
    }

    /// Removes a message from the index (the caller deletes the file).
    pub fn delete_message(&mut self, id: i64) -> Result<bool, DbError> {
        Ok(self
            .conn
            .execute("DELETE FROM voicemail WHERE id = ?1", [id])?
            > 0)
    }
}
