//! SIP accounts and where they are kept.
//!
//! An account is who we are at a SIP service: an address-of-record, an optional outbound
//! proxy, a transport, and whether to register. Accounts are rows of the profile's
//! [`vaxel_store::Store`] (`PROFILE/store.sqlite`, next to the call history and the
//! contacts); their passwords never are: they live in the OS keychain behind
//! [`vaxel_store::SecretStore`] ([`vaxel_store::KeyringStore`] in the program,
//! [`vaxel_store::MemoryStore`] in tests), or come from `VAXEL_PASSWORD` for unattended
//! use ([`vaxel_store::resolve_password`]), read and never stored (ARCHITECTURE.md §3.7).

use std::path::{Path, PathBuf};

use vaxel_sip::msg::Uri;
pub use vaxel_store::{Account, AccountId, NewAccount, Transport};
use vaxel_store::{Store, StoreError};

/// Registration expiry asked for, seconds.
pub const DEFAULT_EXPIRES: u32 = 600;

/// A `sip:` or `sips:` URI from text; `user@host` gets `sip:` in front.
pub fn parse_sip_uri(s: &str) -> Result<Uri, String> {
    let s = s.trim();
    let text = if s.starts_with("sip:") || s.starts_with("sips:") {
        s.to_owned()
    } else {
        format!("sip:{s}")
    };
    let uri: Uri = text.parse().map_err(|_| format!("not a SIP URI: {s}"))?;
    if uri.as_sip().is_none() {
        return Err(format!("not a SIP URI: {s}"));
    }
    Ok(uri)
}

/// The account's address-of-record as a URI (`sip:` + its `user@domain`).
pub fn aor(account: &Account) -> Result<Uri, String> {
    parse_sip_uri(&account.sip_uri)
}

/// The user part of the account's AOR (also the digest user name).
pub fn user(account: &Account) -> String {
    aor(account)
        .ok()
        .and_then(|u| {
            u.as_sip()
                .and_then(|s| s.user.as_ref().map(|u| u.to_string()))
        })
        .unwrap_or_else(|| "vaxel".into())
}

/// The account's outbound proxy, if it has one.
pub fn proxy(account: &Account) -> Option<&str> {
    Some(account.outbound_proxy.as_str()).filter(|p| !p.trim().is_empty())
}

/// An account that is not in any store: the made-up `local` account of a phone with
/// none (direct calls), and tests.
pub fn unsaved(name: &str, sip_uri: &str, register: bool) -> Account {
    Account {
        id: AccountId(0),
        name: name.into(),
        sip_uri: sip_uri.trim_start_matches("sip:").into(),
        display_name: String::new(),
        outbound_proxy: String::new(),
        transport: Transport::Udp,
        register,
        created_at: 0,
        updated_at: 0,
    }
}

/// `udp`, `tcp` or `tls`.
pub fn parse_transport(s: &str) -> Result<Transport, String> {
    match s.to_ascii_lowercase().as_str() {
        "udp" => Ok(Transport::Udp),
        "tcp" => Ok(Transport::Tcp),
        "tls" => Ok(Transport::Tls),
        _ => Err(format!("unknown transport {s:?} (udp, tcp or tls)")),
    }
}

/// The profile directory. It holds the store (`store.sqlite`): accounts, call history,
/// contacts, directory. No secrets.
#[derive(Debug, Clone)]
pub struct Profile {
    dir: PathBuf,
}

impl Profile {
    /// The store's file name inside the profile.
    pub const STORE_FILE: &'static str = "store.sqlite";

    /// A profile in `dir` (created when the store is first opened).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Profile { dir: dir.into() }
    }

    /// The default profile: `$VAXEL_PROFILE`, else `$XDG_CONFIG_HOME/vaxel`, else
    /// `~/.config/vaxel`.
    pub fn default_dir() -> PathBuf {
        if let Some(p) = std::env::var_os("VAXEL_PROFILE") {
            return p.into();
        }
        if let Some(x) = std::env::var_os("XDG_CONFIG_HOME") {
            return Path::new(&x).join("vaxel");
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
        Path::new(&home).join(".config").join("vaxel")
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `PROFILE/store.sqlite`.
    pub fn store_path(&self) -> PathBuf {
        self.dir.join(Self::STORE_FILE)
    }

    /// Opens (creating the directory and file if needed) the profile's store.
    pub fn open_store(&self) -> Result<Store, ProfileError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| ProfileError::Dir {
            path: self.dir.clone(),
            source,
        })?;
        Ok(Store::open(self.store_path())?)
    }
}

/// Why the profile's store cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The profile directory cannot be created (environment).
    #[error("{}: {source}", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The store refused to open (see [`StoreError::fault`]).
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_live_in_the_profile_store_without_secrets() {
        let dir = std::env::temp_dir().join(format!("vaxel-profile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let p = Profile::new(&dir);
        let mut store = p.open_store().unwrap();
        assert!(store.accounts().unwrap().is_empty());
        let a = store
            .create_account(&NewAccount {
                name: "work".into(),
                sip_uri: "sip:alice@example.com".into(),
                outbound_proxy: "sip:127.0.0.1:5070".into(),
                transport: Transport::Tcp,
                register: true,
                ..NewAccount::default()
            })
            .unwrap();
        assert_eq!(user(&a), "alice");
        assert_eq!(proxy(&a), Some("sip:127.0.0.1:5070"));
        assert_eq!(aor(&a).unwrap().to_string(), "sip:alice@example.com");
        drop(store);
        let store = Profile::new(&dir).open_store().unwrap();
        assert_eq!(store.accounts().unwrap(), vec![a]);
        assert!(dir.join("store.sqlite").is_file());
        assert!(!dir.join("accounts.toml").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
