//! SIP accounts and where they are kept.
//!
//! An account is who we are at a SIP service: an address-of-record, an optional outbound
//! proxy, a transport, and whether to register. Accounts live in the profile directory
//! (`accounts.toml`) until `vaxel-store` holds them; passwords never do: they live in the
//! OS keychain behind [`SecretStore`] (ARCHITECTURE.md §3.7), or come from the
//! environment (`VAXEL_PASSWORD`) or stdin for unattended use, held in memory only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use vaxel_sip::msg::Uri;

/// The transport an account uses to reach its registrar and proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountTransport {
    /// UDP (the default).
    #[default]
    Udp,
    /// TCP.
    Tcp,
    /// TLS.
    Tls,
}

impl AccountTransport {
    /// `udp`, `tcp`, `tls`.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountTransport::Udp => "udp",
            AccountTransport::Tcp => "tcp",
            AccountTransport::Tls => "tls",
        }
    }
}

impl std::str::FromStr for AccountTransport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Ok(AccountTransport::Udp),
            "tcp" => Ok(AccountTransport::Tcp),
            "tls" => Ok(AccountTransport::Tls),
            _ => Err(format!("unknown transport {s:?} (udp, tcp or tls)")),
        }
    }
}

/// One SIP account (SPEC R-101).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountConfig {
    /// A short name to pick it by.
    pub name: String,
    /// The address-of-record, `sip:user@domain`.
    pub uri: String,
    /// Outbound proxy every request goes through, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// Transport to the registrar and proxy.
    #[serde(default)]
    pub transport: AccountTransport,
    /// Register with the domain (or proxy). `false` for direct peer-to-peer calls.
    #[serde(default = "yes")]
    pub register: bool,
    /// Digest user name when it differs from the AOR's user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_user: Option<String>,
    /// Registration expiry asked for, seconds.
    #[serde(default = "default_expires")]
    pub expires: u32,
}

fn yes() -> bool {
    true
}

fn default_expires() -> u32 {
    600
}

impl AccountConfig {
    /// An account for `uri` with defaults (UDP, registering).
    pub fn new(name: impl Into<String>, uri: impl Into<String>) -> Self {
        AccountConfig {
            name: name.into(),
            uri: uri.into(),
            proxy: None,
            transport: AccountTransport::Udp,
            register: true,
            auth_user: None,
            expires: default_expires(),
        }
    }

    /// Checks the URIs.
    pub fn validate(&self) -> Result<(), AccountError> {
        let aor = parse_sip_uri(&self.uri)?;
        if aor.as_sip().and_then(|s| s.user.as_ref()).is_none() {
            return Err(AccountError::BadUri(format!(
                "{}: an account needs sip:USER@DOMAIN",
                self.uri
            )));
        }
        if let Some(p) = &self.proxy {
            parse_sip_uri(p)?;
        }
        Ok(())
    }

    /// The user part of the AOR.
    pub fn user(&self) -> String {
        parse_sip_uri(&self.uri)
            .ok()
            .and_then(|u| {
                u.as_sip()
                    .and_then(|s| s.user.as_ref().map(|u| u.to_string()))
            })
            .unwrap_or_else(|| "vaxel".into())
    }

    /// The key of this account's password in a [`SecretStore`].
    pub fn secret_key(&self) -> String {
        format!("sip:{}", self.uri.trim_start_matches("sip:"))
    }
}

/// A `sip:` or `sips:` URI from text; `user@host` gets `sip:` in front.
pub fn parse_sip_uri(s: &str) -> Result<Uri, AccountError> {
    let s = s.trim();
    let text = if s.starts_with("sip:") || s.starts_with("sips:") {
        s.to_owned()
    } else {
        format!("sip:{s}")
    };
    let uri: Uri = text
        .parse()
        .map_err(|_| AccountError::BadUri(format!("not a SIP URI: {s}")))?;
    if uri.as_sip().is_none() {
        return Err(AccountError::BadUri(format!("not a SIP URI: {s}")));
    }
    Ok(uri)
}

/// What goes wrong with accounts (the caller's or the environment's fault).
#[derive(Debug, Error)]
pub enum AccountError {
    /// A URI that is not a SIP URI (caller).
    #[error("{0}")]
    BadUri(String),
    /// No account of that name (caller).
    #[error("no account named {0:?}")]
    Unknown(String),
    /// The profile could not be read or written (environment).
    #[error("{}: {reason}", path.display())]
    Profile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AccountsFile {
    #[serde(default, rename = "account")]
    accounts: Vec<AccountConfig>,
}

/// The profile directory: `accounts.toml` (no secrets in it).
#[derive(Debug, Clone)]
pub struct Profile {
    dir: PathBuf,
}

impl Profile {
    /// A profile in `dir` (created when first written).
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

    fn file(&self) -> PathBuf {
        self.dir.join("accounts.toml")
    }

    /// Every account, in the order they were added.
    pub fn accounts(&self) -> Result<Vec<AccountConfig>, AccountError> {
        let path = self.file();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(AccountError::Profile {
                    path,
                    reason: e.to_string(),
                });
            }
        };
        let f: AccountsFile = toml::from_str(&text).map_err(|e| AccountError::Profile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(f.accounts)
    }

    /// Adds an account or replaces the one with the same name.
    pub fn save_account(&self, account: &AccountConfig) -> Result<(), AccountError> {
        account.validate()?;
        let mut all = self.accounts()?;
        match all.iter_mut().find(|a| a.name == account.name) {
            Some(a) => *a = account.clone(),
            None => all.push(account.clone()),
        }
        let path = self.file();
        let err = |e: String| AccountError::Profile {
            path: path.clone(),
            reason: e,
        };
        std::fs::create_dir_all(&self.dir).map_err(|e| err(e.to_string()))?;
        let text =
            toml::to_string(&AccountsFile { accounts: all }).map_err(|e| err(e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| err(e.to_string()))
    }

    /// Removes an account; `false` when there was none of that name.
    pub fn remove_account(&self, name: &str) -> Result<bool, AccountError> {
        let mut all = self.accounts()?;
        let before = all.len();
        all.retain(|a| a.name != name);
        if all.len() == before {
            return Ok(false);
        }
        let path = self.file();
        let text = toml::to_string(&AccountsFile { accounts: all }).map_err(|e| {
            AccountError::Profile {
                path: path.clone(),
                reason: e.to_string(),
            }
        })?;
        std::fs::write(&path, text).map_err(|e| AccountError::Profile {
            path,
            reason: e.to_string(),
        })?;
        Ok(true)
    }
}

/// Where passwords are kept (ARCHITECTURE.md §3.7). The real one is the OS keychain
/// (from `vaxel-store`); [`MemorySecrets`] holds them for one process only.
pub trait SecretStore: Send + Sync {
    /// The password stored under `key`, if any.
    fn get(&self, key: &str) -> Option<String>;
    /// Stores a password; `Err` says why it cannot be kept.
    fn set(&self, key: &str, secret: &str) -> Result<(), String>;
    /// Forgets it.
    fn delete(&self, key: &str);
}

/// Passwords held in memory for this process only (tests, `VAXEL_PASSWORD`,
/// `--password-stdin`). Never written anywhere.
#[derive(Default)]
pub struct MemorySecrets {
    map: Mutex<HashMap<String, String>>,
    fallback: Option<String>,
}

impl std::fmt::Debug for MemorySecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemorySecrets(<redacted>)")
    }
}

impl MemorySecrets {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that answers every key with `password` unless set otherwise (one password
    /// for every account, as `VAXEL_PASSWORD` gives).
    pub fn with_fallback(password: Option<String>) -> Self {
        MemorySecrets {
            map: Mutex::new(HashMap::new()),
            fallback: password,
        }
    }
}

impl SecretStore for MemorySecrets {
    fn get(&self, key: &str) -> Option<String> {
        self.map
            .lock()
            .ok()
            .and_then(|m| m.get(key).cloned())
            .or_else(|| self.fallback.clone())
    }
    fn set(&self, key: &str, secret: &str) -> Result<(), String> {
        self.map
            .lock()
            .map_err(|_| "poisoned".to_string())?
            .insert(key.to_owned(), secret.to_owned());
        Ok(())
    }
    fn delete(&self, key: &str) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_round_trip_through_the_profile_without_secrets() {
        let dir = std::env::temp_dir().join(format!("vaxel-profile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let p = Profile::new(&dir);
        assert!(p.accounts().unwrap().is_empty());
        let mut a = AccountConfig::new("work", "sip:alice@example.com");
        a.proxy = Some("sip:127.0.0.1:5070".into());
        a.transport = AccountTransport::Tcp;
        p.save_account(&a).unwrap();
        p.save_account(&AccountConfig::new("home", "bob@example.org"))
            .unwrap();
        let all = p.accounts().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], a);
        assert_eq!(all[1].user(), "bob");
        let text = std::fs::read_to_string(dir.join("accounts.toml")).unwrap();
        assert!(!text.to_lowercase().contains("password"));
        assert!(p.remove_account("home").unwrap());
        assert_eq!(p.accounts().unwrap().len(), 1);
        assert!(
            p.save_account(&AccountConfig::new("x", "sip:example.com"))
                .is_err(),
            "no user part"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn memory_secrets_fall_back_and_never_debug_print() {
        let s = MemorySecrets::with_fallback(Some("pw".into()));
        assert_eq!(s.get("sip:a@b").as_deref(), Some("pw"));
        s.set("sip:a@b", "other").unwrap();
        assert_eq!(s.get("sip:a@b").as_deref(), Some("other"));
        assert!(!format!("{s:?}").contains("pw"));
    }
}
