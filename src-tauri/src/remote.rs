//! A Vaxel engine's control API (R-315) as the desktop uses it when "connect to a
//! server" names one: log in with the SIP credentials (`POST /api/login` → a bearer
//! token, kept in memory only), read the directory (`GET /api/directory`) and the
//! user's call history (`GET /api/me/calls`), and keep the directory live from the
//! WebSocket events (`/api/events`: registrations, calls, presence).
//!
//! Errors say whose fault they are: a refused login is the user's
//! ([`ErrorCode::BadCredentials`]), an engine that cannot be reached or answers
//! nonsense is the network's ([`ErrorCode::Network`]). The password and the token
//! never reach a log line.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;

use crate::dto::{ErrorCode, UiError};

/// How long one API request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A user as `GET /api/directory` lists it (the engine's `DirectoryEntry` with its
/// presence).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Entry {
    /// Extension.
    pub extension: String,
    /// Full name.
    pub name: String,
    /// External number.
    pub number: Option<String>,
    /// Mobile.
    pub mobile: String,
    /// E-mail.
    pub email: String,
    /// Department.
    pub department: String,
    /// Title.
    pub title: String,
    /// Registered devices.
    pub devices: usize,
    /// `idle`, `ringing` or `busy`.
    pub phone: String,
    /// The presence the engine composed.
    pub presence: Option<PresenceView>,
}

/// A user's presence as the engine reports it (`presence::View`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct PresenceView {
    /// `available`, `away`, `busy`, `offline`.
    pub state: String,
    /// The activity word; `None` is available.
    pub activity: Option<String>,
    /// The note.
    pub note: Option<String>,
    /// When the activity ends (RFC 3339).
    pub until: Option<String>,
    /// `idle`, `ringing`, `busy`.
    pub phone: String,
    /// Registered devices.
    pub devices: usize,
}

/// One call of the user's history at the engine (`GET /api/me/calls`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct CallRecord {
    /// The engine's id.
    pub id: i64,
    /// Caller (extension or number).
    pub caller: String,
    /// Dialled number.
    pub callee: String,
    /// Unix seconds.
    pub started_at: i64,
    /// Unix seconds.
    pub answered_at: Option<i64>,
    /// Unix seconds.
    pub ended_at: Option<i64>,
    /// `answered`, `cancelled`, `busy`, …
    pub outcome: String,
}

/// An event of `/api/events` (the engine's `EngineEvent`).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    Registration {
        extension: String,
        devices: usize,
    },
    Presence {
        extension: String,
        presence: PresenceView,
    },
    #[serde(other)]
    Other,
}

/// A logged-in session at an engine's control API.
pub struct Remote {
    base: String,
    token: String,
    http: reqwest::Client,
    /// When the token was issued.
    since: std::time::Instant,
    /// The directory as last read and updated by the events.
    entries: Mutex<Vec<Entry>>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Remote").field("base", &self.base).finish()
    }
}

fn unreachable(base: &str, e: impl std::fmt::Display) -> UiError {
    UiError::new(
        ErrorCode::Network,
        format!("the engine's control API at {base} cannot be reached: {e}"),
    )
}

/// The API's `{code, message}` error body, or the status.
async fn api_error(base: &str, r: reqwest::Response) -> UiError {
    let status = r.status();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    let message = body["message"].as_str().unwrap_or("").to_string();
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return UiError::new(
            ErrorCode::BadCredentials,
            format!("the engine at {base} refused the login: wrong username or password"),
        );
    }
    UiError::new(
        ErrorCode::Network,
        format!("the engine at {base} answered {status}: {message}"),
    )
}

/// `http://host:port` as typed: trimmed, without a trailing `/`, `http://` added when
/// no scheme is given.
pub fn normalise_base(api: &str) -> Result<String, UiError> {
    let api = api.trim();
    let (scheme, rest) = api.split_once("://").unwrap_or(("http", api));
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(UiError::new(
            ErrorCode::BadCommand,
            format!("the control API address must be http://host:port, not {api:?}"),
        ));
    }
    let host = rest.trim_end_matches('/');
    if host.is_empty() {
        return Err(UiError::new(
            ErrorCode::BadCommand,
            "the control API address has no host",
        ));
    }
    Ok(format!("http://{host}"))
}

impl Remote {
    /// Logs in at the control API `base` (`http://host:port`) with the SIP
    /// credentials.
    pub async fn login(base: &str, username: &str, password: &str) -> Result<Remote, UiError> {
        let base = normalise_base(base)?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| unreachable(&base, e))?;
        let r = http
            .post(format!("{base}/api/login"))
            .json(&serde_json::json!({ "username": username, "password": password }))
            .send()
            .await
            .map_err(|e| unreachable(&base, e))?;
        if !r.status().is_success() {
            return Err(api_error(&base, r).await);
        }
        #[derive(Deserialize)]
        struct Login {
            token: String,
        }
        let login: Login = r.json().await.map_err(|e| unreachable(&base, e))?;
        tracing::info!("logged in to the control API at {base} as {username}");
        Ok(Remote {
            base,
            token: login.token,
            http,
            since: std::time::Instant::now(),
            entries: Mutex::new(Vec::new()),
        })
    }

    /// How long ago the token was issued (the engine's last 12 hours).
    pub fn age(&self) -> Duration {
        self.since.elapsed()
    }

    /// The API's address.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, UiError> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| unreachable(&self.base, e))?;
        if !r.status().is_success() {
            return Err(api_error(&self.base, r).await);
        }
        r.json().await.map_err(|e| unreachable(&self.base, e))
    }

    /// Reads the directory afresh and keeps it.
    pub async fn refresh(&self) -> Result<Vec<Entry>, UiError> {
        let entries: Vec<Entry> = self.get("/api/directory").await?;
        *self.entries.lock().unwrap_or_else(|p| p.into_inner()) = entries.clone();
        Ok(entries)
    }

    /// The directory as last read and updated by the events.
    pub fn entries(&self) -> Vec<Entry> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The user's calls at the engine, newest first.
    pub async fn my_calls(&self) -> Result<Vec<CallRecord>, UiError> {
        self.get("/api/me/calls").await
    }

    /// Applies one event text; whether the directory must be read again (a call
    /// changed someone's phone state, or events were missed).
    fn apply(&self, text: &str) -> bool {
        let Ok(ev) = serde_json::from_str::<WireEvent>(text) else {
            return true;
        };
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match ev {
            WireEvent::Registration { extension, devices } => {
                match entries.iter_mut().find(|e| e.extension == extension) {
                    Some(e) => {
                        e.devices = devices;
                        false
                    }
                    None => true,
                }
            }
            WireEvent::Presence {
                extension,
                presence,
            } => match entries.iter_mut().find(|e| e.extension == extension) {
                Some(e) => {
                    e.devices = presence.devices;
                    e.phone = presence.phone.clone();
                    e.presence = Some(presence);
                    false
                }
                None => true,
            },
            WireEvent::Other => true,
        }
    }

    /// Follows `/api/events` until the socket closes or `self` is dropped, calling
    /// `changed` after each change to the directory. Reconnects (and re-reads the
    /// directory) after a lost connection, every few seconds.
    pub fn follow(self: &Arc<Self>, changed: impl Fn() + Send + Sync + 'static) {
        let weak = Arc::downgrade(self);
        let ws_base = self.base.replacen("http://", "ws://", 1);
        tokio::spawn(async move {
            loop {
                let Some(me) = weak.upgrade() else { return };
                let url = format!("{ws_base}/api/events?token={}", me.token);
                drop(me);
                match tokio_tungstenite::connect_async(url.as_str()).await {
                    Ok((mut ws, _)) => {
                        // Changes between the first read and the subscription.
                        if let Some(me) = weak.upgrade()
                            && me.refresh().await.is_ok()
                        {
                            changed();
                        }
                        while let Some(msg) = ws.next().await {
                            let Some(me) = weak.upgrade() else { return };
                            let text = match msg {
                                Ok(tokio_tungstenite::tungstenite::Message::Text(t)) => t,
                                Ok(tokio_tungstenite::tungstenite::Message::Close(_)) | Err(_) => {
                                    break;
                                }
                                Ok(_) => continue,
                            };
                            if me.apply(&text) {
                                let _ = me.refresh().await;
                            }
                            changed();
                        }
                        tracing::warn!("the control API's event stream closed; reconnecting");
                    }
                    // The URL carries the token: only the error goes to the log.
                    Err(e) => tracing::warn!("control API events: {e}"),
                }
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_addresses_are_normalised() {
        assert_eq!(
            normalise_base(" 10.0.0.5:8080/ ").unwrap(),
            "http://10.0.0.5:8080"
        );
        assert_eq!(
            normalise_base("http://pbx.example:8080").unwrap(),
            "http://pbx.example:8080"
        );
        assert_eq!(
            normalise_base("https://pbx.example").unwrap_err().code,
            ErrorCode::BadCommand
        );
        assert_eq!(
            normalise_base("http://").unwrap_err().code,
            ErrorCode::BadCommand
        );
    }
}
