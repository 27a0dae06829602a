//! The engine's own SQLite database (WAL): office configuration, users with digest
//! HA1s (never passwords), registrar bindings, call records and presence
//! publications.
//!
//! Migrations run by `PRAGMA user_version`. Every change that touches more than one
//! row runs in one transaction, so a bad change never half-applies and a `kill -9`
//! leaves the last committed state (R-502).
//!
//! Bindings and call records, written on every REGISTER and call, go through a
//! writer thread that commits whatever is queued in one transaction ([`writer`]);
//! the registrar answers 200 only once its binding is committed
//! ([`Db::store_bindings`]). Reads of those tables first wait for the queue.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use vaxel_sip::auth::{DigestHash, ha1};

mod flows;
mod writer;
pub use flows::{IvrChoice, Message};
pub use writer::Done;

use crate::office::{Emergency, Office, OfficeInfo, Protection, Role, Trunk, User};

/// Schema migrations; entry `i` brings `user_version` from `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE office (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE users (
    extension      TEXT PRIMARY KEY,
    number         TEXT UNIQUE,
    name           TEXT NOT NULL,
    email          TEXT NOT NULL DEFAULT '',
    department     TEXT NOT NULL DEFAULT '',
    title          TEXT NOT NULL DEFAULT '',
    mobile         TEXT NOT NULL DEFAULT '',
    ha1_md5        TEXT NOT NULL,
    ha1_sha256     TEXT NOT NULL,
    role           TEXT NOT NULL DEFAULT 'user',
    external_calls INTEGER NOT NULL DEFAULT 0,
    present_numbers TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE trunks (
    name   TEXT PRIMARY KEY,
    config TEXT NOT NULL
);
CREATE TABLE bindings (
    extension  TEXT NOT NULL REFERENCES users(extension) ON DELETE CASCADE,
    contact    TEXT NOT NULL,
    transport  TEXT NOT NULL,
    source     TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    call_id    TEXT NOT NULL,
    cseq       INTEGER NOT NULL,
    user_agent TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (extension, contact)
);
CREATE TABLE calls (
    id          INTEGER PRIMARY KEY,
    caller      TEXT NOT NULL,
    callee      TEXT NOT NULL,
    direction   TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    answered_at INTEGER,
    ended_at    INTEGER,
    outcome     TEXT NOT NULL DEFAULT 'in progress',
    answered_by TEXT,
    -- RTP packets the relay carried each way (media health at a glance).
    packets_a_to_b INTEGER NOT NULL DEFAULT 0,
    packets_b_to_a INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX calls_caller ON calls(caller);
CREATE INDEX calls_callee ON calls(callee);
CREATE TABLE legs (
    id         INTEGER PRIMARY KEY,
    call       INTEGER NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    role       TEXT NOT NULL,
    party      TEXT NOT NULL,
    target     TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at   INTEGER,
    outcome    TEXT NOT NULL DEFAULT 'in progress'
);
"#,
    // Ending a call updates its legs: without this every call end scanned them all.
    "CREATE INDEX legs_call ON legs(call);",
    // Presence publications (RFC 3903 §6) kept across restarts: a device's refresh
    // with SIP-If-Match still finds its entity-tag. `state` is the JSON of
    // `presence::Published`; `expires_at` NULL lasts until changed (the control API's).
    r#"
CREATE TABLE publications (
    extension  TEXT NOT NULL REFERENCES users(extension) ON DELETE CASCADE,
    etag       TEXT NOT NULL,
    state      TEXT NOT NULL,
    expires_at INTEGER,
    seq        INTEGER NOT NULL,
    PRIMARY KEY (extension, etag)
);
"#,
];

/// A database error: ours (a bug or a broken disk), never the network's.
pub type DbError = rusqlite::Error;

/// A user as the engine keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserRow {
    /// Extension (SIP username).
    pub extension: String,
    /// Long number, if any.
    pub number: Option<String>,
    /// Name.
    pub name: String,
    /// E-mail.
    pub email: String,
    /// Department.
    pub department: String,
    /// Title.
    pub title: String,
    /// Mobile number.
    pub mobile: String,
    /// HA1 for MD5.
    #[serde(skip)]
    pub ha1_md5: String,
    /// HA1 for SHA-256.
    #[serde(skip)]
    pub ha1_sha256: String,
    /// API role.
    pub role: Role,
    /// May call external numbers.
    pub external_calls: bool,
    /// Other numbers this user may present.
    pub present_numbers: Vec<String>,
}

impl UserRow {
    /// The stored HA1 for `hash`.
    pub fn ha1(&self, hash: DigestHash) -> Option<&str> {
        match hash {
            DigestHash::Md5 => Some(&self.ha1_md5),
            DigestHash::Sha256 => Some(&self.ha1_sha256),
            _ => None,
        }
    }
}

/// A registrar binding (RFC 3261 §10.3) with where the REGISTER really came from,
/// which is where requests for it go (NAT: rport and connection reuse).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Binding {
    /// The user's extension (the address of record).
    pub extension: String,
    /// The Contact URI.
    pub contact: String,
    /// `UDP`, `TCP` or `TLS`.
    pub transport: String,
    /// Source `ip:port` of the REGISTER.
    pub source: String,
    /// Unix seconds when it expires.
    pub expires_at: i64,
    /// Call-ID of the REGISTER (§10.3 step 7 ordering).
    pub call_id: String,
    /// CSeq of the REGISTER.
    pub cseq: u32,
    /// User-Agent of the device.
    pub user_agent: String,
}

/// One call record (R-401).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CallRecord {
    /// Id.
    pub id: i64,
    /// Caller (extension or external number).
    pub caller: String,
    /// Dialled number.
    pub callee: String,
    /// `internal`, `inbound` or `outbound`.
    pub direction: String,
    /// Unix seconds.
    pub started_at: i64,
    /// Unix seconds.
    pub answered_at: Option<i64>,
    /// Unix seconds.
    pub ended_at: Option<i64>,
    /// `answered`, `cancelled`, `busy`, `no answer`, `failed`, …
    pub outcome: String,
    /// Extension that answered.
    pub answered_by: Option<String>,
    /// RTP packets relayed from caller to callee.
    pub packets_a_to_b: i64,
    /// RTP packets relayed from callee to caller.
    pub packets_b_to_a: i64,
}

/// The engine's database connection. Owned by the engine task (one writer).
#[derive(Debug)]
pub struct Db {
    conn: Connection,
    /// Write-behind for bindings and call records (`None`: in memory, written directly).
    writer: Option<writer::Writer>,
    /// Ids of the next call record and leg: given out at once, the rows follow.
    next_call: i64,
    next_leg: i64,
}

/// A change to the registrar's bindings (see [`Db::store_bindings`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingChange {
    /// Store or refresh a binding.
    Put(Binding),
    /// Remove the binding of `extension` for `contact`.
    Delete {
        /// The user.
        extension: String,
        /// The Contact URI.
        contact: String,
    },
}

fn user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRow> {
    let role: String = r.get(9)?;
    let present: String = r.get(11)?;
    Ok(UserRow {
        extension: r.get(0)?,
        number: r.get(1)?,
        name: r.get(2)?,
        email: r.get(3)?,
        department: r.get(4)?,
        title: r.get(5)?,
        mobile: r.get(6)?,
        ha1_md5: r.get(7)?,
        ha1_sha256: r.get(8)?,
        role: Role::parse(&role).unwrap_or_default(),
        external_calls: r.get(10)?,
        present_numbers: serde_json::from_str(&present).unwrap_or_default(),
    })
}

const USER_COLS: &str = "extension, number, name, email, department, title, mobile, ha1_md5, ha1_sha256, role, external_calls, present_numbers";

impl Db {
    /// Opens (creating) `engine.sqlite` in `dir` in WAL mode and migrates it.
    pub fn open(dir: &Path) -> Result<Db, DbError> {
        let path = dir.join("engine.sqlite");
        let mut db = Db::from_connection(Connection::open(&path)?)?;
        db.writer = writer::Writer::start(path)?;
        Ok(db)
    }

    /// A private in-memory database (tests); writes go straight to it.
    pub fn in_memory() -> Result<Db, DbError> {
        Db::from_connection(Connection::open_in_memory()?)
    }

    fn from_connection(conn: Connection) -> Result<Db, DbError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL under WAL: a committed transaction survives a process crash (kill -9);
        // only a power cut may lose the last ones.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(64);
        let mut db = Db {
            conn,
            writer: None,
            next_call: 0,
            next_leg: 0,
        };
        db.migrate()?;
        db.flow_tables()?;
        let max = |table: &str| -> Result<i64, DbError> {
            db.conn.query_row(
                &format!("SELECT COALESCE(MAX(id), 0) FROM {table}"),
                [],
                |r| r.get(0),
            )
        };
        db.next_call = max("calls")? + 1;
        db.next_leg = max("legs")? + 1;
        Ok(db)
    }

    /// Runs `op` on the writer thread (in its next batch), or at once in its own
    /// transaction without one; `done` is told the outcome after the commit.
    fn queue(&mut self, op: writer::Op, done: Option<Done>) -> Result<(), DbError> {
        let (op, done) = match &self.writer {
            Some(w) => match w.write(op, done) {
                Ok(()) => return Ok(()),
                Err(back) => back,
            },
            None => (op, done),
        };
        let result = (|| {
            let tx = self.conn.unchecked_transaction()?;
            op(&tx)?;
            tx.commit()
        })();
        if let Some(done) = done {
            done(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        }
        result
    }

    /// Waits until every queued write is committed, so reads on this connection see
    /// them.
    pub fn sync(&self) {
        if let Some(w) = &self.writer {
            w.sync();
        }
    }

    fn migrate(&mut self) -> Result<(), DbError> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Imports an office in one transaction: the office keys, users (by extension),
    /// trunks (by name) and emergency numbers are set to the file's; users and trunks
    /// not in the file are removed. Importing the same file twice changes nothing.
    pub fn import_office(&mut self, office: &Office) -> Result<(), DbError> {
        let realm = office.office.domain.clone();
        let tx = self.conn.transaction()?;
        set_key(&tx, "domain", &realm)?;
        set_key(&tx, "name", &office.office.name)?;
        set_key(
            &tx,
            "digest",
            &serde_json::to_string(&office.office.digest).unwrap_or_default(),
        )?;
        set_key(
            &tx,
            "emergency",
            &serde_json::to_string(&office.emergency.numbers).unwrap_or_default(),
        )?;
        set_key(
            &tx,
            "protection",
            &serde_json::to_string(&office.protection).unwrap_or_default(),
        )?;
        match &office.routing {
            Some(r) => {
                // PINs are stored hashed, like the users' passwords.
                let mut r = r.clone();
                r.hash_pins();
                set_key(
                    &tx,
                    "routing",
                    &serde_json::to_string(&r).unwrap_or_default(),
                )?
            }
            None => {
                tx.execute("DELETE FROM office WHERE key = 'routing'", [])?;
            }
        }
        let keep: Vec<String> = office
            .users
            .iter()
            .map(|u| u.extension.get_ref().clone())
            .collect();
        {
            let existing: Vec<String> = tx
                .prepare("SELECT extension FROM users")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for e in existing.iter().filter(|e| !keep.contains(e)) {
                tx.execute("DELETE FROM users WHERE extension = ?1", [e])?;
            }
        }
        for u in &office.users {
            let row = user_row(u, &realm);
            upsert_user(&tx, &row)?;
        }
        tx.execute("DELETE FROM trunks", [])?;
        for t in &office.trunks {
            // The provider password is kept: the engine must answer the provider's challenge.
            tx.execute(
                "INSERT INTO trunks (name, config) VALUES (?1, ?2)",
                params![
                    t.name,
                    serde_json::to_string(&trunk_json(t)).unwrap_or_default()
                ],
            )?;
        }
        tx.commit()
    }

    /// Whether an office has been imported.
    pub fn has_office(&self) -> Result<bool, DbError> {
        Ok(self.key("domain")?.is_some())
    }

    fn key(&self, key: &str) -> Result<Option<String>, DbError> {
        self.conn
            .query_row("SELECT value FROM office WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
    }

    /// The office as stored, for export (HA1s instead of passwords).
    pub fn export_office(&self) -> Result<Office, DbError> {
        let domain = self.key("domain")?.unwrap_or_default();
        let name = self.key("name")?.unwrap_or_default();
        let emergency: Vec<String> = self
            .key("emergency")?
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_else(|| vec!["112".into()]);
        let protection: Protection = self
            .key("protection")?
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        let users = self
            .users()?
            .into_iter()
            .map(|u| User {
                extension: spanned(u.extension),
                number: u.number.map(spanned),
                name: u.name,
                email: u.email,
                department: u.department,
                title: u.title,
                mobile: u.mobile,
                password: None,
                ha1_md5: Some(u.ha1_md5),
                ha1_sha256: Some(u.ha1_sha256),
                role: u.role,
                external_calls: u.external_calls,
                present_numbers: u.present_numbers.into_iter().map(spanned).collect(),
            })
            .collect();
        let routing = self
            .key("routing")?
            .and_then(|s| serde_json::from_str(&s).ok());
        Ok(Office {
            routing,
            office: OfficeInfo {
                domain,
                name,
                digest: self.digest()?,
            },
            users,
            trunks: self.trunks()?,
            emergency: Emergency { numbers: emergency },
            protection,
        })
    }

    /// The SIP domain (digest realm).
    pub fn domain(&self) -> Result<String, DbError> {
        Ok(self.key("domain")?.unwrap_or_else(|| "vaxel.local".into()))
    }

    /// The digest algorithms to offer, most preferred first.
    pub fn digest(&self) -> Result<Vec<String>, DbError> {
        Ok(self
            .key("digest")?
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_else(|| vec!["SHA-256".into(), "MD5".into()]))
    }

    /// The protection limits.
    pub fn protection(&self) -> Result<Protection, DbError> {
        Ok(self
            .key("protection")?
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default())
    }

    /// The emergency numbers.
    pub fn emergency(&self) -> Result<Vec<String>, DbError> {
        Ok(self
            .key("emergency")?
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_else(|| vec!["112".into()]))
    }

    /// Every user, by extension.
    pub fn users(&self) -> Result<Vec<UserRow>, DbError> {
        let mut st = self
            .conn
            .prepare(&format!("SELECT {USER_COLS} FROM users ORDER BY extension"))?;
        st.query_map([], user_from_row)?.collect()
    }

    /// Adds or replaces one user (control API). The password, if given, is hashed
    /// with the office's realm.
    pub fn put_user(&mut self, user: &User) -> Result<(), DbError> {
        let realm = self.domain()?;
        let row = user_row(user, &realm);
        let tx = self.conn.transaction()?;
        upsert_user(&tx, &row)?;
        tx.commit()
    }

    /// Removes a user and their bindings; whether they existed.
    pub fn delete_user(&mut self, extension: &str) -> Result<bool, DbError> {
        self.sync();
        Ok(self
            .conn
            .execute("DELETE FROM users WHERE extension = ?1", [extension])?
            > 0)
    }

    /// Every trunk.
    pub fn trunks(&self) -> Result<Vec<Trunk>, DbError> {
        let mut st = self
            .conn
            .prepare("SELECT config FROM trunks ORDER BY name")?;
        let rows: Vec<String> = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(rows
            .iter()
            .filter_map(|s| serde_json::from_str::<serde_json::Value>(s).ok())
            .filter_map(|v| trunk_from_json(&v))
            .collect())
    }

    /// Adds or replaces a trunk (control API).
    pub fn put_trunk(&mut self, trunk: &Trunk) -> Result<(), DbError> {
        self.conn.execute(
            "INSERT INTO trunks (name, config) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET config = excluded.config",
            params![
                trunk.name,
                serde_json::to_string(&trunk_json(trunk)).unwrap_or_default()
            ],
        )?;
        Ok(())
    }

    /// Removes a trunk; whether it existed.
    pub fn delete_trunk(&mut self, name: &str) -> Result<bool, DbError> {
        Ok(self
            .conn
            .execute("DELETE FROM trunks WHERE name = ?1", [name])?
            > 0)
    }

    /// Applies registrar changes in one transaction (RFC 3261 §10.3: a REGISTER's
    /// bindings change together); `done` is told the outcome once they are committed,
    /// so the 200 sent from it promises bindings that survive a crash.
    pub fn store_bindings(
        &mut self,
        changes: Vec<BindingChange>,
        done: Option<Done>,
    ) -> Result<(), DbError> {
        self.queue(
            Box::new(move |c| {
                for change in &changes {
                    match change {
                        BindingChange::Put(b) => {
                            c.prepare_cached(
                                "INSERT INTO bindings (extension, contact, transport, source, expires_at, call_id, cseq, user_agent)
                                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                                 ON CONFLICT(extension, contact) DO UPDATE SET transport = excluded.transport,
                                   source = excluded.source, expires_at = excluded.expires_at,
                                   call_id = excluded.call_id, cseq = excluded.cseq, user_agent = excluded.user_agent",
                            )?
                            .execute(params![
                                b.extension,
                                b.contact,
                                b.transport,
                                b.source,
                                b.expires_at,
                                b.call_id,
                                b.cseq,
                                b.user_agent
                            ])?;
                        }
                        BindingChange::Delete { extension, contact } => {
                            c.prepare_cached(
                                "DELETE FROM bindings WHERE extension = ?1 AND contact = ?2",
                            )?
                            .execute([extension, contact])?;
                        }
                    }
                }
                Ok(())
            }),
            done,
        )
    }

    /// Stores (or refreshes) a binding.
    pub fn put_binding(&mut self, b: &Binding) -> Result<(), DbError> {
        self.store_bindings(vec![BindingChange::Put(b.clone())], None)
    }

    /// Removes one binding.
    pub fn delete_binding(&mut self, extension: &str, contact: &str) -> Result<(), DbError> {
        self.store_bindings(
            vec![BindingChange::Delete {
                extension: extension.to_owned(),
                contact: contact.to_owned(),
            }],
            None,
        )
    }

    /// Removes bindings that expired at or before `now` (unix seconds).
    pub fn expire_bindings(&mut self, now: i64) -> Result<(), DbError> {
        self.queue(
            Box::new(move |c| {
                c.prepare_cached("DELETE FROM bindings WHERE expires_at <= ?1")?
                    .execute([now])?;
                Ok(())
            }),
            None,
        )
    }

    /// Every binding not yet expired at `now`.
    pub fn bindings(&self, now: i64) -> Result<Vec<Binding>, DbError> {
        self.sync();
        let mut st = self.conn.prepare(
            "SELECT extension, contact, transport, source, expires_at, call_id, cseq, user_agent
             FROM bindings WHERE expires_at > ?1 ORDER BY extension, contact",
        )?;
        st.query_map([now], |r| {
            Ok(Binding {
                extension: r.get(0)?,
                contact: r.get(1)?,
                transport: r.get(2)?,
                source: r.get(3)?,
                expires_at: r.get(4)?,
                call_id: r.get(5)?,
                cseq: r.get(6)?,
                user_agent: r.get(7)?,
            })
        })?
        .collect()
    }

    /// Replaces `user`'s stored presence publications with `pubs` (none: deletes
    /// theirs), behind the writer queue like the bindings.
    pub fn store_publications(
        &mut self,
        user: &str,
        pubs: Vec<crate::presence::StoredPublication>,
    ) -> Result<(), DbError> {
        let user = user.to_owned();
        self.queue(
            Box::new(move |c| {
                c.prepare_cached("DELETE FROM publications WHERE extension = ?1")?
                    .execute([&user])?;
                for p in &pubs {
                    c.prepare_cached(
                        "INSERT OR IGNORE INTO publications (extension, etag, state, expires_at, seq)
                         SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM users WHERE extension = ?1)",
                    )?
                    .execute(params![
                        p.user,
                        p.etag,
                        serde_json::to_string(&p.state).unwrap_or_default(),
                        p.expires_at,
                        p.seq as i64
                    ])?;
                }
                Ok(())
            }),
            None,
        )
    }

    /// The stored presence publications still in force at `now` (Unix seconds); a
    /// row whose state cannot be read is skipped.
    pub fn publications(
        &self,
        now: i64,
    ) -> Result<Vec<crate::presence::StoredPublication>, DbError> {
        self.sync();
        let mut st = self.conn.prepare(
            "SELECT extension, etag, state, expires_at, seq FROM publications
             WHERE expires_at IS NULL OR expires_at > ?1 ORDER BY seq",
        )?;
        let rows = st.query_map([now], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (user, etag, state, expires_at, seq) = row?;
            match serde_json::from_str(&state) {
                Ok(state) => out.push(crate::presence::StoredPublication {
                    user,
                    etag,
                    state,
                    expires_at,
                    seq: seq.max(0) as u64,
                }),
                Err(e) => tracing::warn!("a stored presence publication is unreadable: {e}"),
            }
        }
        Ok(out)
    }

    /// Starts a call record; its id.
    pub fn start_call(
        &mut self,
        caller: &str,
        callee: &str,
        direction: &str,
        now: i64,
    ) -> Result<i64, DbError> {
        let id = self.next_call;
        self.next_call += 1;
        let (caller, callee, direction) =
            (caller.to_owned(), callee.to_owned(), direction.to_owned());
        self.queue(
            Box::new(move |c| {
                c.prepare_cached(
                    "INSERT INTO calls (id, caller, callee, direction, started_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![id, caller, callee, direction, now])?;
                Ok(())
            }),
            None,
        )?;
        Ok(id)
    }

    /// Records a leg of a call; its id.
    pub fn add_leg(
        &mut self,
        call: i64,
        role: &str,
        party: &str,
        target: &str,
        now: i64,
    ) -> Result<i64, DbError> {
        let id = self.next_leg;
        self.next_leg += 1;
        let (role, party, target) = (role.to_owned(), party.to_owned(), target.to_owned());
        self.queue(
            Box::new(move |c| {
                c.prepare_cached(
                    "INSERT INTO legs (id, call, role, party, target, started_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![id, call, role, party, target, now])?;
                Ok(())
            }),
            None,
        )?;
        Ok(id)
    }

    /// Ends a leg.
    pub fn end_leg(&mut self, leg: i64, outcome: &str, now: i64) -> Result<(), DbError> {
        let outcome = outcome.to_owned();
        self.queue(
            Box::new(move |c| {
                c.prepare_cached(
                    "UPDATE legs SET ended_at = ?2, outcome = ?3 WHERE id = ?1 AND ended_at IS NULL",
                )?
                .execute(params![leg, now, outcome])?;
                Ok(())
            }),
            None,
        )
    }

    /// Marks a call answered.
    pub fn answer_call(&mut self, call: i64, by: &str, now: i64) -> Result<(), DbError> {
        let by = by.to_owned();
        self.queue(
            Box::new(move |c| {
                c.prepare_cached(
                    "UPDATE calls SET answered_at = ?2, answered_by = ?3, outcome = 'answered' WHERE id = ?1",
                )?
                .execute(params![call, now, by])?;
                Ok(())
            }),
            None,
        )
    }

    /// Ends a call with `outcome` (kept as `answered` when it was answered).
    pub fn end_call(&mut self, call: i64, outcome: &str, now: i64) -> Result<(), DbError> {
        let outcome = outcome.to_owned();
        self.queue(
            Box::new(move |c| {
                c.prepare_cached(
                    "UPDATE calls SET ended_at = ?2,
                       outcome = CASE WHEN answered_at IS NULL THEN ?3 ELSE 'answered' END
                     WHERE id = ?1 AND ended_at IS NULL",
                )?
                .execute(params![call, now, outcome])?;
                c.prepare_cached(
                    "UPDATE legs SET ended_at = ?2, outcome = ?3 WHERE call = ?1 AND ended_at IS NULL",
                )?
                .execute(params![call, now, outcome])?;
                Ok(())
            }),
            None,
        )
    }

    /// Stores the relay's packet counts of a call.
    pub fn call_packets(&mut self, call: i64, a_to_b: u64, b_to_a: u64) -> Result<(), DbError> {
        self.queue(
            Box::new(move |c| {
                c.prepare_cached(
                    "UPDATE calls SET packets_a_to_b = ?2, packets_b_to_a = ?3 WHERE id = ?1",
                )?
                .execute(params![call, a_to_b as i64, b_to_a as i64])?;
                Ok(())
            }),
            None,
        )
    }

    /// Calls still open (the engine stopped during them): closed as `interrupted`.
    pub fn close_interrupted_calls(&mut self, now: i64) -> Result<usize, DbError> {
        self.sync();
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "UPDATE calls SET ended_at = ?1,
               outcome = CASE WHEN answered_at IS NULL THEN 'interrupted' ELSE 'answered' END
             WHERE ended_at IS NULL",
            [now],
        )?;
        tx.execute(
            "UPDATE legs SET ended_at = ?1, outcome = 'interrupted' WHERE ended_at IS NULL",
            [now],
        )?;
        tx.commit()?;
        Ok(n)
    }

    /// Calls `party` (extension or number) made or received, newest first.
    pub fn calls_of(&self, party: &[&str], limit: u32) -> Result<Vec<CallRecord>, DbError> {
        self.sync();
        let mut out = Vec::new();
        let mut st = self.conn.prepare(
            "SELECT id, caller, callee, direction, started_at, answered_at, ended_at, outcome, answered_by, packets_a_to_b, packets_b_to_a
             FROM calls WHERE caller = ?1 OR callee = ?1 OR answered_by = ?1
             ORDER BY id DESC LIMIT ?2",
        )?;
        for p in party {
            let rows = st.query_map(params![p, limit], call_from_row)?;
            for r in rows {
                let r = r?;
                if !out.iter().any(|c: &CallRecord| c.id == r.id) {
                    out.push(r);
                }
            }
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.id));
        out.truncate(limit as usize);
        Ok(out)
    }

    /// Every call, newest first.
    pub fn calls(&self, limit: u32) -> Result<Vec<CallRecord>, DbError> {
        self.sync();
        let mut st = self.conn.prepare(
            "SELECT id, caller, callee, direction, started_at, answered_at, ended_at, outcome, answered_by, packets_a_to_b, packets_b_to_a
             FROM calls ORDER BY id DESC LIMIT ?1",
        )?;
        st.query_map([limit], call_from_row)?.collect()
    }

    /// The outcome of each leg of a call, in order.
    pub fn leg_outcomes(&self, call: i64) -> Result<Vec<String>, DbError> {
        self.sync();
        let mut st = self
            .conn
            .prepare("SELECT outcome FROM legs WHERE call = ?1 ORDER BY id")?;
        st.query_map([call], |r| r.get(0))?.collect()
    }

    /// The number of legs a call had.
    pub fn leg_count(&self, call: i64) -> Result<i64, DbError> {
        self.sync();
        self.conn
            .query_row("SELECT COUNT(*) FROM legs WHERE call = ?1", [call], |r| {
                r.get(0)
            })
    }
}

fn call_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CallRecord> {
    Ok(CallRecord {
        id: r.get(0)?,
        caller: r.get(1)?,
        callee: r.get(2)?,
        direction: r.get(3)?,
        started_at: r.get(4)?,
        answered_at: r.get(5)?,
        ended_at: r.get(6)?,
        outcome: r.get(7)?,
        answered_by: r.get(8)?,
        packets_a_to_b: r.get(9)?,
        packets_b_to_a: r.get(10)?,
    })
}

fn spanned(s: String) -> toml::Spanned<String> {
    toml::Spanned::new(0..0, s)
}

fn set_key(tx: &rusqlite::Transaction<'_>, key: &str, value: &str) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO office (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}

/// The stored form of a user: a password becomes its two HA1s (RFC 7616 §3.4.2).
fn user_row(u: &User, realm: &str) -> UserRow {
    let ext = u.extension.get_ref().clone();
    let (md5, sha) = match &u.password {
        Some(p) => (
            ha1(DigestHash::Md5, &ext, realm, p.get_ref()),
            ha1(DigestHash::Sha256, &ext, realm, p.get_ref()),
        ),
        None => (
            u.ha1_md5.clone().unwrap_or_default().to_ascii_lowercase(),
            u.ha1_sha256
                .clone()
                .unwrap_or_default()
                .to_ascii_lowercase(),
        ),
    };
    UserRow {
        extension: ext,
        number: u.number.as_ref().map(|n| n.get_ref().clone()),
        name: u.name.clone(),
        email: u.email.clone(),
        department: u.department.clone(),
        title: u.title.clone(),
        mobile: u.mobile.clone(),
        ha1_md5: md5,
        ha1_sha256: sha,
        role: u.role,
        external_calls: u.external_calls,
        present_numbers: u
            .present_numbers
            .iter()
            .map(|p| p.get_ref().clone())
            .collect(),
    }
}

fn upsert_user(tx: &rusqlite::Transaction<'_>, u: &UserRow) -> Result<(), DbError> {
    tx.execute(
        &format!(
            "INSERT INTO users ({USER_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT(extension) DO UPDATE SET number = excluded.number, name = excluded.name,
               email = excluded.email, department = excluded.department, title = excluded.title,
               mobile = excluded.mobile, ha1_md5 = excluded.ha1_md5, ha1_sha256 = excluded.ha1_sha256,
               role = excluded.role, external_calls = excluded.external_calls,
               present_numbers = excluded.present_numbers"
        ),
        params![
            u.extension,
            u.number,
            u.name,
            u.email,
            u.department,
            u.title,
            u.mobile,
            u.ha1_md5,
            u.ha1_sha256,
            u.role.as_str(),
            u.external_calls,
            serde_json::to_string(&u.present_numbers).unwrap_or_default()
        ],
    )?;
    Ok(())
}

/// A trunk as JSON without toml spans.
fn trunk_json(t: &Trunk) -> serde_json::Value {
    serde_json::json!({
        "name": t.name, "host": t.host, "port": t.port, "transport": t.transport,
        "register": t.register, "username": t.username, "password": t.password,
        "inbound": t.inbound.iter().map(|i| serde_json::json!({"number": i.number, "target": i.target.get_ref()})).collect::<Vec<_>>(),
        "outbound_prefixes": t.outbound_prefixes, "caller_id": t.caller_id,
    })
}

fn trunk_from_json(v: &serde_json::Value) -> Option<Trunk> {
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
    Some(Trunk {
        name: v.get("name")?.as_str()?.to_owned(),
        host: s("host"),
        port: v.get("port").and_then(|p| p.as_u64()).unwrap_or(5060) as u16,
        transport: s("transport"),
        register: v.get("register").and_then(|r| r.as_bool()).unwrap_or(false),
        username: s("username"),
        password: s("password"),
        inbound: v
            .get("inbound")
            .and_then(|i| i.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|i| {
                        Some(crate::office::Inbound {
                            number: i.get("number")?.as_str()?.to_owned(),
                            target: spanned(i.get("target")?.as_str()?.to_owned()),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default(),
        outbound_prefixes: v
            .get("outbound_prefixes")
            .and_then(|p| serde_json::from_value(p.clone()).ok())
            .unwrap_or_default(),
        caller_id: s("caller_id"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFICE: &str = r#"
[office]
domain = "office.test"
[[users]]
extension = "4001"
number = "+4570104001"
name = "Alice"
password = "alice-secret"
[[users]]
extension = "4002"
name = "Bob"
password = "bob-secret"
[[trunks]]
name = "provider"
host = "127.0.0.1"
inbound = [{ number = "+4570100000", target = "4001" }]
outbound_prefixes = ["00"]
"#;

    #[test]
    fn import_is_idempotent_and_stores_no_password() {
        let office = Office::parse("t", OFFICE).unwrap();
        let mut db = Db::in_memory().unwrap();
        db.import_office(&office).unwrap();
        let first = db.export_office().unwrap();
        db.import_office(&office).unwrap();
        assert_eq!(db.export_office().unwrap(), first);
        let users = db.users().unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(
            users[0].ha1_sha256,
            ha1(DigestHash::Sha256, "4001", "office.test", "alice-secret")
        );
        let toml = first.to_toml();
        assert!(!toml.contains("alice-secret"), "{toml}");
        // The export reads back as an office file and imports to the same state.
        let again = Office::parse("export", &toml).unwrap();
        let mut db2 = Db::in_memory().unwrap();
        db2.import_office(&again).unwrap();
        assert_eq!(db2.users().unwrap(), users);
        assert_eq!(db2.trunks().unwrap().len(), 1);
    }

    #[test]
    fn bindings_and_calls_round_trip() {
        let office = Office::parse("t", OFFICE).unwrap();
        let mut db = Db::in_memory().unwrap();
        db.import_office(&office).unwrap();
        let b = Binding {
            extension: "4001".into(),
            contact: "sip:4001@10.0.0.1:5062".into(),
            transport: "UDP".into(),
            source: "10.0.0.1:5062".into(),
            expires_at: 1000,
            call_id: "c".into(),
            cseq: 1,
            user_agent: "x".into(),
        };
        db.put_binding(&b).unwrap();
        assert_eq!(db.bindings(999).unwrap(), vec![b]);
        assert!(db.bindings(1000).unwrap().is_empty());
        let c = db.start_call("4001", "4002", "internal", 10).unwrap();
        db.add_leg(c, "a", "4001", "x", 10).unwrap();
        db.answer_call(c, "4002", 12).unwrap();
        db.end_call(c, "bye", 20).unwrap();
        let calls = db.calls_of(&["4002"], 10).unwrap();
        assert_eq!(calls[0].outcome, "answered");
        assert_eq!(calls[0].ended_at, Some(20));
    }

    /// On disk the hot writes go through the writer thread: a binding is committed
    /// when `done` hears so (another connection, like a restarted engine, sees it),
    /// call records are readable after `sync`, and a reopened database goes on with
    /// fresh record ids.
    #[test]
    fn queued_writes_are_committed_before_done_and_ids_survive_a_reopen() {
        let dir = std::env::temp_dir().join(format!("vaxel-db-writer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let office = Office::parse("t", OFFICE).unwrap();
        let mut db = Db::open(&dir).unwrap();
        db.import_office(&office).unwrap();
        let b = Binding {
            extension: "4001".into(),
            contact: "sip:4001@10.0.0.1:5062".into(),
            transport: "UDP".into(),
            source: "10.0.0.1:5062".into(),
            expires_at: 1000,
            call_id: "c".into(),
            cseq: 1,
            user_agent: "x".into(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let other = dir.join("engine.sqlite");
        db.store_bindings(
            vec![BindingChange::Put(b.clone())],
            Some(Box::new(move |r| {
                // Read from a separate connection inside the callback: the row must
                // already be committed.
                let c = Connection::open(other).unwrap();
                let n: i64 = c
                    .query_row("SELECT COUNT(*) FROM bindings", [], |r| r.get(0))
                    .unwrap();
                tx.send((r, n)).unwrap();
            })),
        )
        .unwrap();
        let (r, n) = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        assert_eq!((r, n), (Ok(()), 1));
        let first = db.start_call("4001", "4002", "internal", 10).unwrap();
        let leg = db.add_leg(first, "a", "4001", "x", 10).unwrap();
        db.end_call(first, "cancelled", 11).unwrap();
        assert_eq!(db.calls(10).unwrap()[0].outcome, "cancelled");
        assert_eq!(
            db.leg_outcomes(first).unwrap(),
            vec!["cancelled".to_owned()]
        );
        drop(db);
        let mut db = Db::open(&dir).unwrap();
        assert_eq!(db.bindings(999).unwrap(), vec![b]);
        let second = db.start_call("4002", "4001", "internal", 20).unwrap();
        assert!(second > first);
        assert!(db.add_leg(second, "a", "4002", "x", 20).unwrap() > leg);
        assert_eq!(db.calls(10).unwrap().len(), 2);
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
