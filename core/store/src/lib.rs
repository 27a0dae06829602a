//! The phone's local store: one SQLite file with the SIP accounts (their
//! non-secret part), call history, personal contacts and the company directory,
//! searched as you type; vCard import and export; and the OS keychain that
//! holds the passwords.
//!
//! # Using it
//!
//! [`Store::open`] opens (or creates) the file and brings its schema up to date;
//! [`Store::open_in_memory`] does the same for tests. Everything else is a
//! method on [`Store`]; reads take `&self`, writes `&mut self`, and every write
//! is one transaction, search index included.
//!
//! ```
//! use vaxel_store::{CallDirection, CallOutcome, CallUpdate, NewCall, Store};
//!
//! let mut store = Store::open_in_memory()?;
//! let call = store.insert_call(&NewCall {
//!     remote_name: "Anne Sällström".into(),
//!     number: "+46 70 123 45 67".into(),
//!     ..NewCall::new(CallDirection::Incoming, 1_700_000_000_000)
//! })?;
//! store.update_call(call, &CallUpdate {
//!     outcome: Some(CallOutcome::Missed),
//!     ended_at: Some(1_700_000_020_000),
//!     ..CallUpdate::default()
//! })?;
//! assert_eq!(store.unseen_missed_count()?, 1);
//!
//! // Every word must match as a prefix, accents folded, digits with or without spaces.
//! let hits = store.search("ann sall", 10)?;
//! assert_eq!(hits[0].display, "Anne Sällström");
//! assert_eq!(store.search("0701234", 10)?.len(), 1);
//! # Ok::<(), vaxel_store::StoreError>(())
//! ```
//!
//! # Design notes
//!
//! - Migrations are an ordered list applied by `PRAGMA user_version`
//!   ([`SCHEMA_VERSION`]); a file from a newer Vaxel is refused
//!   ([`StoreError::TooNew`]) and a damaged file is reported
//!   ([`StoreError::Corrupt`]) and never written to.
//! - The file runs in WAL mode with foreign keys on.
//! - Times are UTC milliseconds since the Unix epoch ([`UnixMillis`]).
//! - Search ([`Store::search`]) is one FTS5 index over the three sources; see
//!   [`search`] for how queries are escaped and ranked.
//! - Passwords never enter this file: they go to a [`SecretStore`]
//!   ([`KeyringStore`] in the app, [`MemoryStore`] in tests).
//! - The store is synchronous; a driver runs it on a blocking thread it owns.
//!
//! # Performance
//!
//! `examples/search_latency.rs` loads 100,000 directory entries, 1,000
//! contacts and 10,000 calls and times every keystroke of a few typed
//! queries: about 40–90 µs per keystroke for names and numbers and up to about
//! 1 ms for department words that match a tenth of the directory
//! (release build, 2 shared cores; scheduler preemption on the loaded machine
//! adds 4 ms spikes at the 99th percentile). Loading the 100,000 entries takes
//! 4–12 s depending on load and about 112 MB on disk, most of it the prefix
//! indexes that keep long number prefixes fast; reopening that file takes
//! about 20 ms.

mod account;
mod contact;
mod directory;
mod error;
mod history;
mod schema;
pub mod search;
pub mod secret;
pub mod vcard;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags};

pub use account::{Account, AccountId, NewAccount, Transport};
pub use contact::{Contact, ContactData, ContactId, Phone, PhoneKind};
pub use directory::{DirectoryEntry, DirectoryId};
pub use error::{Fault, Result, StoreError};
pub use history::{
    CallCursor, CallDirection, CallGroup, CallId, CallOutcome, CallQuery, CallRecord, CallUpdate,
    ImportSummary, NewCall, RemoteCall,
};
pub use schema::SCHEMA_VERSION;
pub use search::{HitKind, SearchHit};
pub use secret::{
    KeyringStore, MemoryStore, Secret, SecretError, SecretOrigin, SecretStore, resolve_password,
};
pub use vcard::{VcardError, VcardImport, VcardReport};

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type UnixMillis = i64;

/// The phone's local database. See the [crate docs](crate).
pub struct Store {
    conn: Connection,
    path: Option<PathBuf>,
    clock: fn() -> UnixMillis,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn system_clock() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Tables whose damage `Store::open` looks for (the user's own data).
const USER_TABLES: &[&str] = &[
    "accounts",
    "calls",
    "contacts",
    "contact_phones",
    "contact_emails",
    "contact_sip_uris",
];

impl Store {
    /// Opens the database at `path`, creating it if missing, and migrates it
    /// to [`SCHEMA_VERSION`].
    ///
    /// A file that is not a database (or another program's), or whose
    /// accounts, history or contacts fail SQLite's quick integrity check,
    /// gives [`StoreError::Corrupt`]; one from a newer Vaxel gives
    /// [`StoreError::TooNew`]. In both cases nothing has been written to it.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        Self::init(conn, Some(path))
    }

    /// Opens a fresh database in memory (for tests and previews).
    pub fn open_in_memory() -> Result<Store> {
        Self::init(Connection::open_in_memory()?, None)
    }

    fn init(mut conn: Connection, path: Option<PathBuf>) -> Result<Store> {
        let with_path = |e: StoreError| match e {
            StoreError::Corrupt { detail, .. } => StoreError::Corrupt {
                path: path.clone(),
                detail,
            },
            StoreError::TooNew { found, known, .. } => StoreError::TooNew {
                path: path.clone(),
                found,
                known,
            },
            e => e,
        };
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Read-only checks first: the header (user_version) and the pages. Only
        // when both pass do we write anything (WAL switch, migrations).
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| with_path(e.into()))?;
        if version > SCHEMA_VERSION {
            return Err(with_path(StoreError::TooNew {
                path: None,
                found: version,
                known: SCHEMA_VERSION,
            }));
        }
        if version == 0 {
            // Version 0 is a new file, unless it already has tables: then it is
            // some other program's database, and migrating would write into it.
            let tables: i64 = conn
                .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
                .map_err(|e| with_path(e.into()))?;
            if tables > 0 {
                return Err(with_path(StoreError::Corrupt {
                    path: None,
                    detail: "not a Vaxel database: it has tables but no schema version".into(),
                }));
            }
        } else {
            // Check the tables holding the user's own data. Not the search
            // index or the directory: they are most of the file (a whole-file
            // quick_check of a 100,000-entry directory takes over a second)
            // and can be rebuilt; damage there still surfaces as `Corrupt`
            // when it is read, and `check_integrity` checks everything.
            for table in USER_TABLES {
                let verdict: String = conn
                    .query_row(&format!("PRAGMA quick_check({table})"), [], |r| r.get(0))
                    .map_err(|e| with_path(e.into()))?;
                if verdict != "ok" {
                    return Err(with_path(StoreError::Corrupt {
                        path: None,
                        detail: format!("{table}: {verdict}"),
                    }));
                }
            }
        }
        if path.is_some() {
            let mode: String = conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                .map_err(|e| with_path(e.into()))?;
            debug_assert_eq!(mode.to_ascii_lowercase(), "wal");
            // WAL + NORMAL: durable at checkpoints, never corrupt; the usual choice.
            conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        conn.pragma_update(None, "foreign_keys", true)?;
        schema::migrate(&mut conn).map_err(with_path)?;
        Ok(Store {
            conn,
            path,
            clock: system_clock,
        })
    }

    /// The file this store lives in, or `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Replaces the wall clock used for `created_at`/`updated_at` (tests).
    pub fn set_clock(&mut self, clock: fn() -> UnixMillis) {
        self.clock = clock;
    }

    /// Runs SQLite's full integrity check; `Ok(())` or [`StoreError::Corrupt`].
    pub fn check_integrity(&self) -> Result<()> {
        let verdict: String = self
            .conn
            .query_row("PRAGMA integrity_check(1)", [], |r| r.get(0))
            .map_err(|e| self.locate(e.into()))?;
        if verdict == "ok" {
            Ok(())
        } else {
            Err(self.locate(StoreError::Corrupt {
                path: None,
                detail: verdict,
            }))
        }
    }

    fn now(&self) -> UnixMillis {
        (self.clock)()
    }

    /// Attaches the file name to a corruption error found after opening.
    fn locate(&self, e: StoreError) -> StoreError {
        match e {
            StoreError::Corrupt { path: None, detail } => StoreError::Corrupt {
                path: self.path.clone(),
                detail,
            },
            e => e,
        }
    }
}

#[cfg(test)]
mod tests {
    /// The driver moves the store onto its own blocking thread.
    #[test]
    fn store_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<super::Store>();
        assert_send::<super::KeyringStore>();
    }
}
