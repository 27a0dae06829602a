//! SIP accounts, without their passwords (those live in a [`SecretStore`](crate::SecretStore)).

use rusqlite::{OptionalExtension, Row, params};

use crate::error::{Result, StoreError};
use crate::{Store, UnixMillis};

/// Row id of an [`Account`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(pub i64);

/// SIP transport of an account (RFC 3261 §18).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP.
    #[default]
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP (a `sips:` account).
    Tls,
}

impl Transport {
    /// The lower-case name stored in the database and used in `transport=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    fn parse(s: &str) -> Option<Transport> {
        match s {
            "udp" => Some(Transport::Udp),
            "tcp" => Some(Transport::Tcp),
            "tls" => Some(Transport::Tls),
            _ => None,
        }
    }
}

/// The settings of an account, as given to [`Store::create_account`] and
/// [`Store::update_account`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewAccount {
    /// Unique name the user chose ("Work").
    pub name: String,
    /// Address of record as `user@domain` (a leading `sip:` is dropped).
    pub sip_uri: String,
    /// Display name sent in From; empty for none.
    pub display_name: String,
    /// Outbound proxy URI or `host[:port]`; empty to route by the domain.
    pub outbound_proxy: String,
    /// Transport to the registrar.
    pub transport: Transport,
    /// Whether to register.
    pub register: bool,
}

/// A stored account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Row id.
    pub id: AccountId,
    /// Unique name the user chose.
    pub name: String,
    /// Address of record as `user@domain`.
    pub sip_uri: String,
    /// Display name; empty for none.
    pub display_name: String,
    /// Outbound proxy; empty for none.
    pub outbound_proxy: String,
    /// Transport to the registrar.
    pub transport: Transport,
    /// Whether to register.
    pub register: bool,
    /// When it was created.
    pub created_at: UnixMillis,
    /// When it was last changed.
    pub updated_at: UnixMillis,
}

impl Account {
    /// The key of this account's password in a [`SecretStore`](crate::SecretStore):
    /// its address of record, which is what users recognise in their keychain
    /// app and which, unlike the row id, survives re-creating the database.
    pub fn secret_key(&self) -> String {
        format!("sip:{}", self.sip_uri)
    }
}

const COLUMNS: &str = "id, name, sip_uri, display_name, outbound_proxy, transport, register, \
                       created_at, updated_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Account> {
    let transport: String = r.get(5)?;
    Ok(Account {
        id: AccountId(r.get(0)?),
        name: r.get(1)?,
        sip_uri: r.get(2)?,
        display_name: r.get(3)?,
        outbound_proxy: r.get(4)?,
        // The CHECK constraint admits only the three names.
        transport: Transport::parse(&transport).unwrap_or_default(),
        register: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

/// Trims and validates; returns the normalised settings.
fn validate(a: &NewAccount) -> Result<NewAccount> {
    let name = a.name.trim().to_owned();
    if name.is_empty() {
        return Err(StoreError::invalid("account name", "must not be empty"));
    }
    let uri = a.sip_uri.trim();
    let uri = uri
        .strip_prefix("sips:")
        .or_else(|| uri.strip_prefix("sip:"))
        .unwrap_or(uri);
    match uri.split_once('@') {
        Some((user, domain))
            if !user.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !uri.chars().any(char::is_whitespace) => {}
        _ => {
            return Err(StoreError::invalid(
                "SIP URI",
                format!("{uri:?} is not user@domain"),
            ));
        }
    }
    Ok(NewAccount {
        name,
        sip_uri: uri.to_owned(),
        display_name: a.display_name.trim().to_owned(),
        outbound_proxy: a.outbound_proxy.trim().to_owned(),
        transport: a.transport,
        register: a.register,
    })
}

fn map_unique(e: rusqlite::Error, name: &str) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => {
            StoreError::DuplicateAccountName(name.to_owned())
        }
        _ => e.into(),
    }
}

impl Store {
    /// Creates an account. Names are unique:
    /// [`StoreError::DuplicateAccountName`] otherwise.
    pub fn create_account(&mut self, account: &NewAccount) -> Result<Account> {
        let a = validate(account)?;
        let now = self.now();
        self.conn
            .execute(
                "INSERT INTO accounts (name, sip_uri, display_name, outbound_proxy, transport, \
                 register, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                params![
                    a.name,
                    a.sip_uri,
                    a.display_name,
                    a.outbound_proxy,
                    a.transport.as_str(),
                    a.register,
                    now
                ],
            )
            .map_err(|e| map_unique(e, &a.name))?;
        let id = AccountId(self.conn.last_insert_rowid());
        self.account(id)?.ok_or(StoreError::NotFound {
            what: "account",
            id: id.0,
        })
    }

    /// The account with this id, if any.
    pub fn account(&self, id: AccountId) -> Result<Option<Account>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM accounts WHERE id = ?1"),
                [id.0],
                from_row,
            )
            .optional()?)
    }

    /// The account with this name, if any.
    pub fn account_by_name(&self, name: &str) -> Result<Option<Account>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM accounts WHERE name = ?1"),
                [name.trim()],
                from_row,
            )
            .optional()?)
    }

    /// All accounts, in creation order.
    pub fn accounts(&self) -> Result<Vec<Account>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM accounts ORDER BY id"))?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Replaces the settings of an account; returns the stored result.
    pub fn update_account(&mut self, id: AccountId, account: &NewAccount) -> Result<Account> {
        let a = validate(account)?;
        let now = self.now();
        let n = self
            .conn
            .execute(
                "UPDATE accounts SET name = ?2, sip_uri = ?3, display_name = ?4, \
                 outbound_proxy = ?5, transport = ?6, register = ?7, updated_at = ?8 \
                 WHERE id = ?1",
                params![
                    id.0,
                    a.name,
                    a.sip_uri,
                    a.display_name,
                    a.outbound_proxy,
                    a.transport.as_str(),
                    a.register,
                    now
                ],
            )
            .map_err(|e| map_unique(e, &a.name))?;
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "account",
                id: id.0,
            });
        }
        self.account(id)?.ok_or(StoreError::NotFound {
            what: "account",
            id: id.0,
        })
    }

    /// Deletes an account. Its calls stay in the history, without an account.
    /// The caller also deletes its password from the [`SecretStore`](crate::SecretStore).
    pub fn delete_account(&mut self, id: AccountId) -> Result<()> {
        let n = self
            .conn
            .execute("DELETE FROM accounts WHERE id = ?1", [id.0])?;
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "account",
                id: id.0,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Fault;

    fn work() -> NewAccount {
        NewAccount {
            name: "Work".into(),
            sip_uri: "sip:alice@example.com".into(),
            display_name: "Alice".into(),
            outbound_proxy: "proxy.example.com:5061".into(),
            transport: Transport::Tls,
            register: true,
        }
    }

    #[test]
    fn account_crud() {
        let mut s = Store::open_in_memory().unwrap();
        s.set_clock(|| 1000);
        let a = s.create_account(&work()).unwrap();
        assert_eq!(a.sip_uri, "alice@example.com");
        assert_eq!(a.secret_key(), "sip:alice@example.com");
        assert_eq!((a.created_at, a.updated_at), (1000, 1000));
        assert_eq!(s.account_by_name("Work").unwrap().unwrap(), a);
        s.set_clock(|| 2000);
        let b = s
            .update_account(
                a.id,
                &NewAccount {
                    transport: Transport::Udp,
                    register: false,
                    ..work()
                },
            )
            .unwrap();
        assert_eq!(
            (b.transport, b.register, b.updated_at),
            (Transport::Udp, false, 2000)
        );
        assert_eq!(s.accounts().unwrap(), vec![b]);
        s.delete_account(a.id).unwrap();
        assert!(s.account(a.id).unwrap().is_none());
        let e = s.delete_account(a.id).unwrap_err();
        assert_eq!(e.fault(), Fault::Caller);
    }

    #[test]
    fn names_are_unique_and_uris_validated() {
        let mut s = Store::open_in_memory().unwrap();
        s.create_account(&work()).unwrap();
        let e = s.create_account(&work()).unwrap_err();
        assert!(
            matches!(e, StoreError::DuplicateAccountName(ref n) if n == "Work"),
            "{e}"
        );
        let other = s
            .create_account(&NewAccount {
                name: "Home".into(),
                ..work()
            })
            .unwrap();
        let e = s.update_account(other.id, &work()).unwrap_err();
        assert!(matches!(e, StoreError::DuplicateAccountName(_)));
        for bad in [
            "alice",
            "@example.com",
            "alice@",
            "a b@example.com",
            "a@b@c",
        ] {
            let e = s
                .create_account(&NewAccount {
                    name: "X".into(),
                    sip_uri: bad.into(),
                    ..work()
                })
                .unwrap_err();
            assert!(matches!(e, StoreError::Invalid { .. }), "{bad}: {e}");
        }
        let e = s
            .create_account(&NewAccount {
                name: "  ".into(),
                ..work()
            })
            .unwrap_err();
        assert_eq!(e.fault(), Fault::Caller);
    }
}
