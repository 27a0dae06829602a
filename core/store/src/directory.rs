//! The company directory, a local copy of what the engine publishes, kept for
//! instant search and for working offline.

use rusqlite::{OptionalExtension, Row, params};

use crate::Store;
use crate::error::Result;
use crate::search::{self, HitKind, IndexRow};

/// Row id of a directory entry. Local, in name order, and new on every
/// [`Store::replace_directory`]: use `engine_id` to follow a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DirectoryId(pub i64);

/// One person (or shared number) of the company. Empty strings mean "not set".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectoryEntry {
    /// The engine's id of the user.
    pub engine_id: String,
    /// Full name.
    pub name: String,
    /// Short internal number ("4001").
    pub extension: String,
    /// Long (E.164) office number.
    pub number: String,
    /// Mobile number.
    pub mobile: String,
    /// E-mail address.
    pub email: String,
    /// Department.
    pub department: String,
    /// Job title.
    pub title: String,
    /// Office or site.
    pub location: String,
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<(DirectoryId, DirectoryEntry)> {
    Ok((
        DirectoryId(r.get(0)?),
        DirectoryEntry {
            engine_id: r.get(1)?,
            name: r.get(2)?,
            extension: r.get(3)?,
            number: r.get(4)?,
            mobile: r.get(5)?,
            email: r.get(6)?,
            department: r.get(7)?,
            title: r.get(8)?,
            location: r.get(9)?,
        },
    ))
}

const COLUMNS: &str =
    "id, engine_id, name, extension, number, mobile, email, department, title, location";

impl Store {
    /// Replaces the whole directory with `entries`, in one transaction, so a
    /// search sees either the old or the new directory. Returns how many were
    /// stored.
    pub fn replace_directory(&mut self, entries: &[DirectoryEntry]) -> Result<usize> {
        // FTS5 flushes its pending terms through the page cache; a larger
        // cache for the bulk load saves about a fifth of the time. Restored
        // afterwards so the phone's steady-state memory stays small.
        let cache: i64 = self.conn.query_row("PRAGMA cache_size", [], |r| r.get(0))?;
        self.conn.pragma_update(None, "cache_size", -32_768)?;
        let result = self.load_directory(entries);
        self.conn.pragma_update(None, "cache_size", cache)?;
        result
    }

    fn load_directory(&mut self, entries: &[DirectoryEntry]) -> Result<usize> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM directory", [])?;
        search::unindex_all(&tx, HitKind::Directory)?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO directory (engine_id, name, extension, number, mobile, email, \
                 department, title, location) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            // Insert in name order: row ids, and with them the search index's
            // rowids, become alphabetical, which is the order search returns
            // directory hits in without sorting them (see `search`).
            let mut sorted: Vec<&DirectoryEntry> = entries.iter().collect();
            sorted.sort_by_cached_key(|e| (e.name.trim().to_lowercase(), e.extension.clone()));
            for e in sorted {
                insert.execute(params![
                    e.engine_id.trim(),
                    e.name.trim(),
                    e.extension.trim(),
                    e.number.trim(),
                    e.mobile.trim(),
                    e.email.trim(),
                    e.department.trim(),
                    e.title.trim(),
                    e.location.trim()
                ])?;
                let id = tx.last_insert_rowid();
                let detail = [e.department.trim(), e.title.trim()]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(", ");
                let number = [&e.extension, &e.number, &e.mobile]
                    .into_iter()
                    .map(|s| s.trim())
                    .find(|s| !s.is_empty())
                    .unwrap_or("")
                    .to_owned();
                search::index_new(
                    &tx,
                    HitKind::Directory,
                    id,
                    &IndexRow {
                        name: vec![&e.name],
                        other: vec![&e.email, &e.department, &e.title, &e.location],
                        numbers: vec![&e.extension, &e.number, &e.mobile],
                        display: e.name.trim().to_owned(),
                        detail,
                        number,
                        favourite: false,
                    },
                )?;
            }
        }
        // Merge the index segments the bulk insert left behind, so the first
        // keystrokes read one b-tree per term instead of dozens.
        tx.execute(
            "INSERT INTO search_fts (search_fts) VALUES ('optimize')",
            [],
        )?;
        tx.commit()?;
        // The bulk write left a WAL as large as the index; fold it back into
        // the database now rather than keep it on disk until some later
        // checkpoint. Best effort: a reader holding the WAL only delays this.
        if self.path.is_some() {
            let _: rusqlite::Result<(i64, i64, i64)> =
                self.conn
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    });
        }
        Ok(entries.len())
    }

    /// One directory entry.
    pub fn directory_entry(&self, id: DirectoryId) -> Result<Option<DirectoryEntry>> {
        Ok(self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM directory WHERE id = ?1"))?
            .query_row([id.0], from_row)
            .optional()?
            .map(|(_, e)| e))
    }

    /// The whole directory, by name.
    pub fn directory(&self) -> Result<Vec<(DirectoryId, DirectoryEntry)>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM directory ORDER BY name COLLATE NOCASE, id"
            ))?
            .query_map([], from_row)?
            .collect::<rusqlite::Result<_>>()?)
    }

    /// How many directory entries there are.
    pub fn directory_len(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM directory", [], |r| r.get::<_, i64>(0))?
            .max(0) as u64)
    }
}
