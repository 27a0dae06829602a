//! Errors of the store, classified by whose fault they are (ARCHITECTURE.md §3.5).

use std::path::PathBuf;

/// Whose fault an error is, so the caller knows what to do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The caller misused the API (unknown id, duplicate name, invalid value):
    /// fix the request; the store is unchanged.
    Caller,
    /// The data on disk is damaged or from a newer Vaxel: tell the user; the
    /// file has not been touched, so nothing is lost.
    Data,
    /// The environment failed (permissions, disk full, file locked): retrying
    /// later or elsewhere may work.
    Environment,
}

/// An error from [`Store`](crate::Store).
///
/// Messages never contain passwords; they may contain account names.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file is not an SQLite database, or its pages are damaged. Vaxel
    /// never writes to such a file; the user can move it aside.
    #[error("the database{} is unreadable or corrupt ({detail}); it has been left as it is", display_path(.path))]
    Corrupt {
        /// The file, when known.
        path: Option<PathBuf>,
        /// What SQLite reported.
        detail: String,
    },
    /// The database was written by a newer Vaxel with a schema this build does
    /// not know. It is refused rather than downgraded so the newer data stays.
    #[error("the database{} has schema version {found}, newer than the {known} this Vaxel knows; update Vaxel to open it", display_path(.path))]
    TooNew {
        /// The file, when known.
        path: Option<PathBuf>,
        /// `PRAGMA user_version` of the file.
        found: i64,
        /// The newest version this build migrates to.
        known: i64,
    },
    /// The file could not be opened or created (missing directory,
    /// permissions, locked by another process).
    #[error("cannot open the database {}: {source}", .path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// What SQLite reported.
        source: rusqlite::Error,
    },
    /// No row with this id.
    #[error("{what} {id} does not exist")]
    NotFound {
        /// The kind of record ("account", "call", "contact").
        what: &'static str,
        /// The id asked for.
        id: i64,
    },
    /// An account with this name already exists (names are unique).
    #[error("an account named {0:?} already exists")]
    DuplicateAccountName(String),
    /// A field failed validation.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// Any other SQLite failure (disk full, I/O error, locked).
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
}

fn display_path(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map_or_else(String::new, |p| format!(" {}", p.display()))
}

impl StoreError {
    /// Whose fault this is.
    pub fn fault(&self) -> Fault {
        match self {
            StoreError::Corrupt { .. } | StoreError::TooNew { .. } => Fault::Data,
            StoreError::NotFound { .. }
            | StoreError::DuplicateAccountName(_)
            | StoreError::Invalid { .. } => Fault::Caller,
            StoreError::Open { .. } | StoreError::Sqlite(_) => Fault::Environment,
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        StoreError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// True when SQLite says the file is damaged or not a database at all.
pub(crate) fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        if is_corruption(&e) {
            StoreError::Corrupt {
                path: None,
                detail: e.to_string(),
            }
        } else {
            StoreError::Sqlite(e)
        }
    }
}

/// Shorthand for results of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
