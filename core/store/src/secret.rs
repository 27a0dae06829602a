//! Passwords, kept only in the OS keychain (R-101, ARCHITECTURE.md §3.7).
//!
//! [`SecretStore`] is the seam: [`KeyringStore`] is the real keychain (macOS
//! Keychain, Windows Credential Manager, Secret Service on Linux — gnome-keyring
//! or KWallet — with the kernel keyutils as a cache), [`MemoryStore`] the fake
//! for tests. [`Secret`] wipes itself on drop and never prints its value.
//! [`resolve_password`] adds `VAXEL_PASSWORD` for unattended use: read from
//! the environment, never written anywhere.
//!
//! Entries are keyed by [`Account::secret_key`](crate::Account::secret_key)
//! under the service name [`SERVICE`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use zeroize::Zeroizing;

/// Service name of Vaxel's entries in the OS keychain.
pub const SERVICE: &str = "vaxel";

/// Environment variable that supplies a password for unattended use
/// (headless phones, CI); see [`resolve_password`].
pub const PASSWORD_ENV: &str = "VAXEL_PASSWORD";

/// A password. Its memory is zeroed on drop; `Debug` and `Display` print
/// `Secret(***)`, so it cannot leak into logs by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a password.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(Zeroizing::new(value.into()))
    }

    /// The password itself, for computing a digest response. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret::new(s)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// An error of a [`SecretStore`]. Messages name the account, never the secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// No keychain is reachable (no Secret Service on the session bus, locked
    /// and no way to prompt): the environment's fault.
    #[error("the OS keychain is not available: {0}")]
    Unavailable(String),
    /// The keychain refused or failed this operation.
    #[error("the OS keychain failed for account {account:?}: {detail}")]
    Keychain {
        /// The account key.
        account: String,
        /// What the platform reported.
        detail: String,
    },
    /// The caller passed something the keychain cannot hold (empty password,
    /// over-long key).
    #[error("cannot store a password for account {account:?}: {reason}")]
    Invalid {
        /// The account key.
        account: String,
        /// Why.
        reason: String,
    },
}

impl SecretError {
    /// Whose fault this is.
    pub fn fault(&self) -> crate::Fault {
        match self {
            SecretError::Unavailable(_) | SecretError::Keychain { .. } => crate::Fault::Environment,
            SecretError::Invalid { .. } => crate::Fault::Caller,
        }
    }
}

/// Where account passwords are kept.
pub trait SecretStore: Send + Sync {
    /// The password of `account`, if one is stored.
    fn get(&self, account: &str) -> Result<Option<Secret>, SecretError>;
    /// Stores (or replaces) the password of `account`.
    fn set(&self, account: &str, secret: &Secret) -> Result<(), SecretError>;
    /// Deletes the password of `account`; `Ok(false)` if there was none.
    fn delete(&self, account: &str) -> Result<bool, SecretError>;
}

/// The OS keychain, through the `keyring` crate, under service [`SERVICE`].
#[derive(Clone, Debug)]
pub struct KeyringStore {
    service: String,
}

impl Default for KeyringStore {
    fn default() -> Self {
        KeyringStore::new()
    }
}

impl KeyringStore {
    /// The keychain with Vaxel's service name.
    pub fn new() -> KeyringStore {
        KeyringStore::with_service(SERVICE)
    }

    /// The keychain under another service name (tests that must not touch
    /// the user's real entries).
    pub fn with_service(service: impl Into<String>) -> KeyringStore {
        KeyringStore {
            service: service.into(),
        }
    }

    fn entry(&self, account: &str) -> Result<keyring::Entry, SecretError> {
        keyring::Entry::new(&self.service, account).map_err(|e| map_keyring(account, e))
    }
}

fn map_keyring(account: &str, e: keyring::Error) -> SecretError {
    use keyring::Error as K;
    match e {
        K::NoStorageAccess(inner) | K::PlatformFailure(inner) if is_unavailable(&*inner) => {
            SecretError::Unavailable(inner.to_string())
        }
        K::NoStorageAccess(inner) => SecretError::Unavailable(inner.to_string()),
        K::TooLong(what, max) => SecretError::Invalid {
            account: account.to_owned(),
            reason: format!("{what} is longer than {max}"),
        },
        K::Invalid(what, why) => SecretError::Invalid {
            account: account.to_owned(),
            reason: format!("{what}: {why}"),
        },
        // Platform failures, ambiguity, bad encoding of a stored entry…
        other => SecretError::Keychain {
            account: account.to_owned(),
            detail: other.to_string(),
        },
    }
}

/// A D-Bus failure to reach the Secret Service at all means there is no
/// keychain. `keyring` passes these up only as boxed errors, so this looks at
/// libdbus's messages: no bus (`Failed to connect to socket`, no
/// `DBUS_SESSION_BUS_ADDRESS`, no autolaunch) or no service on it.
fn is_unavailable(e: &(dyn std::error::Error + Send + Sync)) -> bool {
    const MARKERS: &[&str] = &[
        "Failed to connect to socket",
        "DBUS_SESSION_BUS_ADDRESS",
        "Unable to autolaunch",
        "org.freedesktop.DBus.Error.ServiceUnknown",
        "org.freedesktop.DBus.Error.NoServer",
        "org.freedesktop.DBus.Error.Spawn",
        "org.freedesktop.DBus.Error.FileNotFound",
    ];
    let s = e.to_string();
    MARKERS.iter().any(|m| s.contains(m))
}

impl SecretStore for KeyringStore {
    fn get(&self, account: &str) -> Result<Option<Secret>, SecretError> {
        match self.entry(account)?.get_password() {
            Ok(p) => Ok(Some(Secret::new(p))),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(map_keyring(account, e)),
        }
    }

    fn set(&self, account: &str, secret: &Secret) -> Result<(), SecretError> {
        if secret.expose().is_empty() {
            // keyutils cannot hold an empty secret; an empty password is a
            // mistake anyway: delete instead.
            return Err(SecretError::Invalid {
                account: account.to_owned(),
                reason: "empty password".into(),
            });
        }
        self.entry(account)?
            .set_password(secret.expose())
            .map_err(|e| map_keyring(account, e))
    }

    fn delete(&self, account: &str) -> Result<bool, SecretError> {
        match self.entry(account)?.delete_credential() {
            Ok(()) => Ok(true),
            Err(keyring::Error::NoEntry) => Ok(false),
            Err(e) => Err(map_keyring(account, e)),
        }
    }
}

/// An in-memory [`SecretStore`] for tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<String, Secret>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Secret>> {
        // A panic while holding the lock cannot leave the map half-updated
        // (every operation is one call), so a poisoned lock is still usable.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl SecretStore for MemoryStore {
    fn get(&self, account: &str) -> Result<Option<Secret>, SecretError> {
        Ok(self.lock().get(account).cloned())
    }

    fn set(&self, account: &str, secret: &Secret) -> Result<(), SecretError> {
        if secret.expose().is_empty() {
            return Err(SecretError::Invalid {
                account: account.to_owned(),
                reason: "empty password".into(),
            });
        }
        self.lock().insert(account.to_owned(), secret.clone());
        Ok(())
    }

    fn delete(&self, account: &str) -> Result<bool, SecretError> {
        Ok(self.lock().remove(account).is_some())
    }
}

/// Where [`resolve_password`] found the password.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretOrigin {
    /// `VAXEL_PASSWORD`: use it, never save it.
    Environment,
    /// The [`SecretStore`].
    Store,
}

/// The password to use for `account`: `VAXEL_PASSWORD` when it is set and
/// not empty (unattended use; it is read, never written to the store),
/// otherwise the store's.
pub fn resolve_password(
    store: &dyn SecretStore,
    account: &str,
) -> Result<Option<(Secret, SecretOrigin)>, SecretError> {
    resolve_with(std::env::var(PASSWORD_ENV).ok(), store, account)
}

fn resolve_with(
    env: Option<String>,
    store: &dyn SecretStore,
    account: &str,
) -> Result<Option<(Secret, SecretOrigin)>, SecretError> {
    let env = env.map(Secret::new);
    if let Some(s) = env.filter(|s| !s.expose().is_empty()) {
        return Ok(Some((s, SecretOrigin::Environment)));
    }
    Ok(store.get(account)?.map(|s| (s, SecretOrigin::Store)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
        assert_eq!(s.expose(), "hunter2");
        let e = SecretError::Invalid {
            account: "sip:a@b".into(),
            reason: "x".into(),
        };
        assert!(!e.to_string().contains("hunter2"));
    }

    #[test]
    fn memory_store_round_trip() {
        let m = MemoryStore::new();
        assert_eq!(m.get("sip:a@b").unwrap(), None);
        m.set("sip:a@b", &Secret::new("pw")).unwrap();
        assert_eq!(m.get("sip:a@b").unwrap().unwrap().expose(), "pw");
        m.set("sip:a@b", &Secret::new("pw2")).unwrap();
        assert_eq!(m.get("sip:a@b").unwrap().unwrap().expose(), "pw2");
        assert!(m.delete("sip:a@b").unwrap());
        assert!(!m.delete("sip:a@b").unwrap());
        assert!(m.set("sip:a@b", &Secret::new("")).is_err());
    }

    #[test]
    fn environment_wins_and_is_never_stored() {
        let m = MemoryStore::new();
        m.set("sip:a@b", &Secret::new("stored")).unwrap();
        let (s, origin) = resolve_with(Some("from-env".into()), &m, "sip:a@b")
            .unwrap()
            .unwrap();
        assert_eq!(
            (s.expose(), origin),
            ("from-env", SecretOrigin::Environment)
        );
        assert_eq!(m.get("sip:a@b").unwrap().unwrap().expose(), "stored");
        let (s, origin) = resolve_with(Some(String::new()), &m, "sip:a@b")
            .unwrap()
            .unwrap();
        assert_eq!((s.expose(), origin), ("stored", SecretOrigin::Store));
        assert!(resolve_with(None, &m, "sip:x@y").unwrap().is_none());
    }
}
