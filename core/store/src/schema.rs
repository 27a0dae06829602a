//! The schema as an ordered list of migrations, applied by `PRAGMA user_version`.
//!
//! Migration `i` (0-based) takes the database from version `i` to `i + 1`. Each
//! runs in its own transaction together with the `user_version` bump, so a crash
//! leaves the file at a version boundary. Never edit a released migration:
//! append a new one.

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Result, StoreError};

/// The migrations, oldest first.
const MIGRATIONS: &[&str] = &[
    // 1: accounts, call history, personal contacts, company directory, search index.
    r#"
CREATE TABLE accounts (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    sip_uri        TEXT NOT NULL,
    display_name   TEXT NOT NULL DEFAULT '',
    outbound_proxy TEXT NOT NULL DEFAULT '',
    transport      TEXT NOT NULL CHECK (transport IN ('udp', 'tcp', 'tls')),
    register       INTEGER NOT NULL CHECK (register IN (0, 1)),
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) STRICT;

CREATE TABLE calls (
    id             INTEGER PRIMARY KEY,
    direction      TEXT NOT NULL CHECK (direction IN ('outgoing', 'incoming')),
    outcome        TEXT NOT NULL CHECK (outcome IN ('in_progress', 'answered', 'missed',
                       'declined', 'failed', 'cancelled', 'answered_elsewhere',
                       'taken_by_colleague')),
    account_id     INTEGER REFERENCES accounts(id) ON DELETE SET NULL,
    remote_uri     TEXT NOT NULL DEFAULT '',
    remote_name    TEXT NOT NULL DEFAULT '',
    number         TEXT NOT NULL DEFAULT '',
    started_at     INTEGER NOT NULL,
    answered_at    INTEGER,
    ended_at       INTEGER,
    group_id       TEXT,
    group_name     TEXT,
    cause          TEXT NOT NULL DEFAULT '',
    taken_by       TEXT NOT NULL DEFAULT '',
    engine_call_id TEXT UNIQUE,
    seen           INTEGER NOT NULL DEFAULT 1 CHECK (seen IN (0, 1)),
    CHECK (outcome <> 'missed' OR direction = 'incoming')
) STRICT;
CREATE INDEX calls_newest ON calls (started_at DESC, id DESC);
CREATE INDEX calls_missed ON calls (started_at DESC, id DESC) WHERE outcome = 'missed';
CREATE INDEX calls_unseen ON calls (seen) WHERE outcome = 'missed' AND seen = 0;
CREATE INDEX calls_account ON calls (account_id);

CREATE TABLE contacts (
    id           INTEGER PRIMARY KEY,
    given_name   TEXT NOT NULL DEFAULT '',
    family_name  TEXT NOT NULL DEFAULT '',
    display_name TEXT NOT NULL DEFAULT '',
    organisation TEXT NOT NULL DEFAULT '',
    title        TEXT NOT NULL DEFAULT '',
    department   TEXT NOT NULL DEFAULT '',
    note         TEXT NOT NULL DEFAULT '',
    favourite    INTEGER NOT NULL DEFAULT 0 CHECK (favourite IN (0, 1)),
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
) STRICT;
CREATE TABLE contact_phones (
    contact_id INTEGER NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('work', 'mobile', 'home', 'other')),
    number     TEXT NOT NULL,
    PRIMARY KEY (contact_id, position)
) STRICT, WITHOUT ROWID;
CREATE TABLE contact_emails (
    contact_id INTEGER NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    address    TEXT NOT NULL,
    PRIMARY KEY (contact_id, position)
) STRICT, WITHOUT ROWID;
CREATE TABLE contact_sip_uris (
    contact_id INTEGER NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    uri        TEXT NOT NULL,
    PRIMARY KEY (contact_id, position)
) STRICT, WITHOUT ROWID;

CREATE TABLE directory (
    id         INTEGER PRIMARY KEY,
    engine_id  TEXT NOT NULL DEFAULT '',
    name       TEXT NOT NULL DEFAULT '',
    extension  TEXT NOT NULL DEFAULT '',
    number     TEXT NOT NULL DEFAULT '',
    mobile     TEXT NOT NULL DEFAULT '',
    email      TEXT NOT NULL DEFAULT '',
    department TEXT NOT NULL DEFAULT '',
    title      TEXT NOT NULL DEFAULT '',
    location   TEXT NOT NULL DEFAULT ''
) STRICT;

-- One search index over contacts, history and directory. The rowid encodes
-- (kind, id) -- see search.rs -- so a record's row is replaced without a lookup.
-- `name` is weighted above `other`; `digits` holds digits-only forms of every
-- number so "070 123" and "+4670123" both find "+46 70-123 45 67". The
-- UNINDEXED columns carry what a hit shows, so a search is one query.
CREATE VIRTUAL TABLE search_fts USING fts5 (
    name, other, digits,
    display UNINDEXED, detail UNINDEXED, number UNINDEXED, favourite UNINDEXED,
    tokenize = "unicode61 remove_diacritics 2",
    prefix = '1 2 3 4 5 6 7 8'
);
"#,
];

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Reads `user_version`; refuses a newer file; applies the missing migrations.
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: None,
            found,
            known: SCHEMA_VERSION,
        });
    }
    if found < 0 {
        return Err(StoreError::Corrupt {
            path: None,
            detail: format!("negative schema version {found}"),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        // IMMEDIATE: take the write lock first, so two processes opening an old
        // file at once cannot both run the same migration.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if current > i as i64 {
            // Someone else migrated meanwhile.
            continue;
        }
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
