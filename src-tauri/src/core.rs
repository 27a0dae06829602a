//! The app without Tauri: the phone, the embedded engine, settings and the state the UI
//! mirrors. Tauri commands ([`crate::commands`]) are a thin transport over
//! [`AppCore`]; events leave through a [`Sink`], which is Tauri's event bus in the app
//! and a recorder in tests.
//!
//! Requests that the phone answers with an event (history, search, contacts) are sent as
//! [`vaxel_phone::Command`]s; the reply is picked out of the phone's one event stream by
//! a waiter (ARCHITECTURE.md §3.4: the Tauri commands are only a transport over the
//! phone's vocabulary).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use vaxel_engine::engine::{EngineConfig, EngineHandle};
use vaxel_phone::api::{ContactEntry, HistoryEntry, NewContact};
use vaxel_phone::{Command, EndReason, Event, Phone, PhoneConfig, PhoneHandle, Profile};
use vaxel_store::{MemoryStore, NewAccount, Secret, SecretError, SecretStore, Transport};

use crate::dto::*;

/// The demo office every "host" install starts from (assets/demo-office.toml).
pub const DEMO_OFFICE: &str = include_str!("../../assets/demo-office.toml");

/// How often a lost control API session is tried again.
const REMOTE_RETRY: Duration = Duration::from_secs(30);

/// How long a request waits for the phone's reply event.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Where events for the UI go.
pub trait Sink: Send + Sync + 'static {
    /// A state change (the `vaxel://event` Tauri event).
    fn event(&self, e: UiEvent);
    /// Levels and quality (a Tauri channel: ten a second).
    fn media(&self, m: MediaUpdate);
    /// An OS notification (incoming call).
    fn notify(&self, title: &str, body: &str);
}

/// How the core starts.
pub struct CoreOptions {
    /// Settings and the phone's profile (store) live here.
    pub config_dir: PathBuf,
    /// The embedded engine's data live here.
    pub data_dir: PathBuf,
    /// Where the embedded engine listens for SIP (`VAXEL_ENGINE_SIP`, default
    /// `0.0.0.0:5060` so the office's other phones can register; a free loopback port
    /// when 5060 is taken).
    pub engine_sip: Option<SocketAddr>,
    /// The demo user the host signs in as (`VAXEL_DEMO_USER`, default 4001).
    pub demo_user: String,
    /// The OS keychain (a memory store in tests).
    pub keychain: Arc<dyn SecretStore>,
}

impl CoreOptions {
    /// Options from the environment, with the given folders and the OS keychain.
    pub fn from_env(config_dir: PathBuf, data_dir: PathBuf) -> CoreOptions {
        CoreOptions {
            config_dir,
            data_dir,
            engine_sip: std::env::var("VAXEL_ENGINE_SIP")
                .ok()
                .and_then(|s| s.parse().ok()),
            demo_user: std::env::var("VAXEL_DEMO_USER").unwrap_or_else(|_| "4001".into()),
            keychain: Arc::new(vaxel_store::KeyringStore::new()),
        }
    }
}

/// Passwords: this session's (the demo user's, from the public demo office file) first,
/// then the OS keychain. A missing keychain reads as "no password" so the demo still
/// works on a machine without one; storing into it reports the error.
struct Secrets {
    session: MemoryStore,
    keychain: Arc<dyn SecretStore>,
}

impl SecretStore for Secrets {
    fn get(&self, account: &str) -> Result<Option<Secret>, SecretError> {
        if let Some(s) = self.session.get(account)? {
            return Ok(Some(s));
        }
        match self.keychain.get(account) {
            Err(SecretError::Unavailable(why)) => {
                tracing::warn!("keychain unavailable: {why}");
                Ok(None)
            }
            r => r,
        }
    }
    fn set(&self, account: &str, secret: &Secret) -> Result<(), SecretError> {
        self.keychain.set(account, secret)
    }
    fn delete(&self, account: &str) -> Result<bool, SecretError> {
        let a = self.session.delete(account)?;
        Ok(self.keychain.delete(account)? || a)
    }
}

/// What `settings.json` holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct SettingsFile {
    mode: Mode,
    settings: Settings,
    presence: Presence,
    /// The Vaxel engine's control API of the server connected to (`http://host:port`),
    /// empty for none. Not secret: the token is asked for at each start.
    control_api: String,
}

type Predicate = Box<dyn Fn(&Event) -> bool + Send>;

struct Waiter {
    wants: Predicate,
    reply: oneshot::Sender<Event>,
}

#[derive(Default)]
struct State {
    file: SettingsFile,
    phone: Option<PhoneHandle>,
    /// Bumped at every phone start, so a stopped phone's late events are ignored.
    generation: u64,
    engine: Option<(EngineHandle, EngineInfo)>,
    /// Extension → name, from the office directory, for caller names.
    names: HashMap<String, String>,
    me: Option<Me>,
    accounts: BTreeMap<String, AccountView>,
    calls: BTreeMap<u64, CallView>,
    unseen_missed: u64,
    waiters: Vec<Waiter>,
    /// The sound devices changed during a call: restart the phone when the calls end.
    restart_when_idle: bool,
    /// Colleagues' presence from the engine's NOTIFYs (extension → presence), while the
    /// phone watches them (RFC 3856).
    office_presence: HashMap<String, Presence>,
    /// Colleagues' phones from the engine's dialog NOTIFYs (extension → `idle`,
    /// `ringing`, `busy`; RFC 4235).
    office_phone: HashMap<String, String>,
    /// The next outgoing call consults about this call (announced transfer).
    pending_consult: Option<u64>,
    /// The notifications' words in the UI's language.
    notification_text: NotificationText,
    /// The remote engine's control API, logged in, when connected to one.
    remote: Option<Arc<crate::remote::Remote>>,
    /// The microphone test running, if any: set to stop it.
    mic_test: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// The app's core (see the module documentation).
pub struct AppCore {
    this: std::sync::Weak<AppCore>,
    opts: CoreOptions,
    secrets: Arc<Secrets>,
    state: Mutex<State>,
    sink: Arc<dyn Sink>,
}

fn env_err(e: impl std::fmt::Display) -> UiError {
    UiError::new(ErrorCode::Environment, e.to_string())
}

fn bad(e: impl std::fmt::Display) -> UiError {
    UiError::new(ErrorCode::BadCommand, e.to_string())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The user part of a SIP URI (`sip:4002@x;tag` → `4002`).
pub fn uri_user(uri: &str) -> String {
    let s = uri.trim().trim_start_matches('<');
    let s = s
        .strip_prefix("sips:")
        .or_else(|| s.strip_prefix("sip:"))
        .or_else(|| s.strip_prefix("tel:"))
        .unwrap_or(s);
    let end = s.find(['@', ';', '>', '?']).unwrap_or(s.len());
    s[..end].to_string()
}

/// What to dial for a `tel:` or `sip:` link: `tel:+45 7010-4002` → `+4570104002`.
pub fn dial_target(link: &str) -> Option<String> {
    let link = link.trim();
    if let Some(rest) = link.strip_prefix("tel:") {
        let n: String = rest
            .split(';')
            .next()
            .unwrap_or("")
            .chars()
            .filter(|c| c.is_ascii_digit() || matches!(c, '+' | '*' | '#'))
            .collect();
        return (!n.is_empty()).then_some(n);
    }
    if link.starts_with("sip:") || link.starts_with("sips:") {
        return Some(link.split('?').next().unwrap_or(link).to_string());
    }
    None
}

/// The phone's command publishing `p` (RFC 3903): the activity's word, the note, and
/// the end time as the UI gives it (`HH:MM` or RFC 3339).
fn publish_command(p: &Presence) -> Command {
    let activity = match p.activity {
        Activity::Unknown => "available".to_string(),
        a => serde_json::to_value(a)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "available".into()),
    };
    let until = p.until.trim();
    Command::SetPresence {
        until: (!until.is_empty() && activity != "available").then(|| until.to_string()),
        activity,
        note: Some(p.note.trim().to_string()).filter(|n| !n.is_empty()),
        account: None,
    }
}

/// A colleague's activity as published (RPID token or our own word) in the UI's
/// vocabulary; words it has none for read as away (yellow) or busy (red).
fn activity_of(word: Option<&str>) -> Activity {
    let Some(w) = word else {
        return Activity::Available;
    };
    let w = w.trim().to_ascii_lowercase().replace('-', "_");
    if let Ok(a) = serde_json::from_value::<Activity>(serde_json::Value::String(w.clone())) {
        return a;
    }
    match w.as_str() {
        "on_the_phone" | "available" | "working" | "online" => Activity::Available,
        "meal" | "breakfast" | "dinner" => Activity::Lunch,
        "holiday" | "travel" => Activity::Vacation,
        "appointment" | "presentation" => Activity::Meeting,
        "dnd" | "do_not_disturb" => Activity::Busy,
        _ => Activity::Off,
    }
}

/// An RFC 3339 end time as local `HH:MM` (what the UI shows and takes); other text as
/// it is.
fn local_hhmm(until: &str) -> String {
    match until.parse::<jiff::Timestamp>() {
        Ok(t) => t
            .to_zoned(jiff::tz::TimeZone::system())
            .strftime("%H:%M")
            .to_string(),
        Err(_) => until.to_string(),
    }
}

impl AppCore {
    /// A core that has not started anything yet; [`AppCore::start`] starts what the
    /// saved settings ask for.
    pub fn new(opts: CoreOptions, sink: Arc<dyn Sink>) -> Arc<AppCore> {
        let file = std::fs::read_to_string(opts.config_dir.join("settings.json"))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        let secrets = Arc::new(Secrets {
            session: MemoryStore::new(),
            keychain: opts.keychain.clone(),
        });
        Arc::new_cyclic(|this| AppCore {
            this: this.clone(),
            opts,
            secrets,
            state: Mutex::new(State {
                file,
                ..State::default()
            }),
            sink,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, file: &SettingsFile) -> Result<(), UiError> {
        std::fs::create_dir_all(&self.opts.config_dir).map_err(env_err)?;
        let text = serde_json::to_string_pretty(file).map_err(env_err)?;
        let path = self.opts.config_dir.join("settings.json");
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(env_err)?;
        std::fs::rename(&tmp, &path).map_err(env_err)
    }

    fn profile(&self) -> Profile {
        Profile::new(self.opts.config_dir.join("profile"))
    }

    /// Starts what the saved first-run choice asks for (nothing before the choice).
    pub async fn start(self: &Arc<Self>) -> Result<(), UiError> {
        let mode = self.lock().file.mode;
        match mode {
            Mode::Unset => Ok(()),
            Mode::Host => self.start_host().await,
            Mode::Server => {
                // The engine's API is a bonus: the phone starts even when it is down.
                if let Err(e) = self.connect_remote().await {
                    tracing::warn!("control API: {}", e.message);
                }
                self.start_phone(None).await?;
                self.keep_remote();
                Ok(())
            }
        }
    }

    /// Logs in to the saved control API with the first account's SIP credentials
    /// (the password from the keychain), reads the directory and follows its events.
    async fn connect_remote(self: &Arc<Self>) -> Result<(), UiError> {
        let api = self.lock().file.control_api.clone();
        if api.trim().is_empty() {
            return Ok(());
        }
        let store = self.profile().open_store().map_err(env_err)?;
        let account = store
            .accounts()
            .map_err(env_err)?
            .into_iter()
            .next()
            .ok_or_else(|| bad("no account to log in to the control API with"))?;
        drop(store);
        let password = self
            .secrets
            .get(&account.secret_key())
            .map_err(env_err)?
            .ok_or_else(|| {
                UiError::new(
                    ErrorCode::BadCredentials,
                    "no password stored for the account: enter it again",
                )
            })?;
        let remote =
            crate::remote::Remote::login(&api, &uri_user(&account.sip_uri), password.expose())
                .await?;
        self.use_remote(remote).await
    }

    /// Keeps the control API session while the phone runs: logs in again every
    /// [`REMOTE_RETRY`] while the engine could not be reached, and before the token's
    /// 12 hours are up.
    fn keep_remote(self: &Arc<Self>) {
        if self.lock().file.control_api.trim().is_empty() {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REMOTE_RETRY).await;
                let Some(core) = weak.upgrade() else { return };
                let stale = {
                    let st = core.lock();
                    if st.phone.is_none() || st.file.mode != Mode::Server {
                        return;
                    }
                    st.remote
                        .as_ref()
                        .is_none_or(|r| r.age() > Duration::from_secs(11 * 3600))
                };
                if stale && let Err(e) = core.connect_remote().await {
                    tracing::warn!("control API: {}", e.message);
                }
            }
        });
    }

    /// Takes a logged-in control API: reads the directory, follows its events.
    async fn use_remote(self: &Arc<Self>, remote: crate::remote::Remote) -> Result<(), UiError> {
        let remote = Arc::new(remote);
        let entries = remote.refresh().await?;
        {
            let mut st = self.lock();
            st.names = entries
                .iter()
                .map(|e| (e.extension.clone(), e.name.clone()))
                .collect();
            st.remote = Some(remote.clone());
        }
        let weak = Arc::downgrade(self);
        remote.follow(move || {
            if let Some(core) = weak.upgrade() {
                core.sink.event(UiEvent::Directory);
            }
        });
        self.sink.event(UiEvent::Directory);
        Ok(())
    }

    /// First run, "host this office's switchboard": the engine in-process with the
    /// demo office, signed in as the demo user.
    pub async fn setup_host(self: &Arc<Self>) -> Result<Snapshot, UiError> {
        let mut file = self.lock().file.clone();
        file.mode = Mode::Host;
        self.save(&file)?;
        self.lock().file.mode = Mode::Host;
        self.start_host().await?;
        Ok(self.snapshot())
    }

    /// First run, "connect to a server": any SIP account, or a Vaxel engine and its
    /// control API (`form.api`): then the directory, colleagues' presence and the call
    /// history come from the engine. The password goes to the keychain; the
    /// API's token stays in memory.
    pub async fn setup_server(self: &Arc<Self>, form: AccountForm) -> Result<Snapshot, UiError> {
        // A control API is checked first: a wrong password or an unreachable engine
        // is reported before anything is saved.
        let remote = if form.api.trim().is_empty() {
            None
        } else {
            let uri = vaxel_phone::account::parse_sip_uri(&form.uri).map_err(bad)?;
            Some(
                crate::remote::Remote::login(
                    &form.api,
                    &uri_user(&uri.to_string()),
                    &form.password,
                )
                .await?,
            )
        };
        let api = remote
            .as_ref()
            .map(|r| r.base().to_string())
            .unwrap_or_default();
        self.save_account(form).await?;
        let mut file = self.lock().file.clone();
        file.mode = Mode::Server;
        file.control_api = api.clone();
        self.save(&file)?;
        {
            let mut st = self.lock();
            st.file.mode = Mode::Server;
            st.file.control_api = api;
        }
        if let Some(remote) = remote {
            self.use_remote(remote).await?;
        }
        self.start_phone(None).await?;
        self.keep_remote();
        Ok(self.snapshot())
    }

    async fn start_host(self: &Arc<Self>) -> Result<(), UiError> {
        let office_path = self.opts.data_dir.join("demo-office.toml");
        std::fs::create_dir_all(&self.opts.data_dir).map_err(env_err)?;
        if !office_path.exists() {
            std::fs::write(&office_path, DEMO_OFFICE).map_err(env_err)?;
        }
        let office = vaxel_engine::office::Office::load(&office_path).map_err(env_err)?;
        if self.lock().engine.is_none() {
            let engine = self.start_engine(&office_path).await?;
            let info = EngineInfo {
                sip: engine.sip_addr().to_string(),
                domain: office.office.domain.clone(),
                name: office.office.name.clone(),
            };
            self.lock().engine = Some((engine.clone(), info));
            self.watch_engine(engine);
        }
        // The demo user: its password comes from the public demo file and stays in this
        // session's memory; the account row (no secret) goes into the profile's store.
        let user = office
            .users
            .iter()
            .find(|u| *u.extension.get_ref() == self.opts.demo_user)
            .or(office.users.first())
            .ok_or_else(|| bad("the demo office has no users"))?;
        let ext = user.extension.get_ref().clone();
        let domain = office.office.domain.clone();
        let sip = self.lock().engine.as_ref().map(|e| e.0.sip_addr());
        let sip = sip.ok_or_else(|| env_err("engine not running"))?;
        let proxy_ip = if sip.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            sip.ip()
        };
        let account = NewAccount {
            name: "office".into(),
            sip_uri: format!("{ext}@{domain}"),
            display_name: user.name.clone(),
            outbound_proxy: format!("sip:{}", SocketAddr::new(proxy_ip, sip.port())),
            transport: Transport::Udp,
            register: true,
        };
        let mut store = self.profile().open_store().map_err(env_err)?;
        let created = upsert_account(&mut store, &account)?;
        if let Some(pw) = &user.password {
            self.secrets
                .session
                .set(&created.secret_key(), &Secret::new(pw.get_ref().clone()))
                .map_err(env_err)?;
        }
        drop(store);
        self.lock().me = Some(Me {
            extension: ext,
            name: user.name.clone(),
            uri: format!("sip:{}", account.sip_uri),
        });
        self.start_phone(Some(proxy_ip)).await
    }

    async fn start_engine(&self, office: &Path) -> Result<EngineHandle, UiError> {
        let data = self.opts.data_dir.join("engine");
        let start = |sip: SocketAddr| EngineConfig {
            data: data.clone(),
            sip,
            office: Some(office.to_path_buf()),
            session_check: Duration::from_secs(90),
            flows: Default::default(),
            session_min_se: 90,
            tls: None,
            udp_threads: false,
        };
        match self.opts.engine_sip {
            Some(sip) => vaxel_engine::engine::start(start(sip))
                .await
                .map_err(env_err),
            None => {
                let default = SocketAddr::from(([0, 0, 0, 0], 5060));
                match vaxel_engine::engine::start(start(default)).await {
                    Ok(e) => Ok(e),
                    Err(e) => {
                        tracing::warn!("engine cannot use {default} ({e}); using a free port");
                        vaxel_engine::engine::start(start(SocketAddr::from(([127, 0, 0, 1], 0))))
                            .await
                            .map_err(env_err)
                    }
                }
            }
        }
    }

    /// Registrations and calls in the engine change the directory's phone state.
    fn watch_engine(self: &Arc<Self>, engine: EngineHandle) {
        let mut rx = engine.subscribe();
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                }
                let Some(core) = weak.upgrade() else { break };
                core.sink.event(UiEvent::Directory);
            }
        });
    }

    /// (Re)starts the phone over the profile's accounts.
    async fn start_phone(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<(), UiError> {
        let old = self.lock().phone.take();
        if let Some(old) = old {
            old.send(Command::Quit);
        }
        let mut store = self.profile().open_store().map_err(env_err)?;
        let accounts = store.accounts().map_err(env_err)?;
        // The office directory goes into the phone's store for search-as-you-type.
        let engine = self.lock().engine.clone();
        if let Some((engine, _)) = &engine {
            let dir = engine.directory().await.map_err(env_err)?;
            let entries: Vec<vaxel_store::DirectoryEntry> = dir
                .iter()
                .map(|d| vaxel_store::DirectoryEntry {
                    engine_id: d.user.extension.clone(),
                    name: d.user.name.clone(),
                    extension: d.user.extension.clone(),
                    number: d.user.number.clone().unwrap_or_default(),
                    mobile: d.user.mobile.clone(),
                    email: d.user.email.clone(),
                    department: d.user.department.clone(),
                    title: d.user.title.clone(),
                    location: String::new(),
                })
                .collect();
            store.replace_directory(&entries).map_err(env_err)?;
            self.lock().names = dir
                .iter()
                .map(|d| (d.user.extension.clone(), d.user.name.clone()))
                .collect();
        } else if let Some(remote) = self.lock().remote.clone() {
            let entries: Vec<vaxel_store::DirectoryEntry> = remote
                .entries()
                .into_iter()
                .map(|d| vaxel_store::DirectoryEntry {
                    engine_id: d.extension.clone(),
                    name: d.name,
                    extension: d.extension,
                    number: d.number.unwrap_or_default(),
                    mobile: d.mobile,
                    email: d.email,
                    department: d.department,
                    title: d.title,
                    location: String::new(),
                })
                .collect();
            store.replace_directory(&entries).map_err(env_err)?;
        }
        let ip = ip.unwrap_or_else(|| {
            let proxy = accounts.first().map(|a| {
                let p = if a.outbound_proxy.trim().is_empty() {
                    a.sip_uri.clone()
                } else {
                    a.outbound_proxy.clone()
                };
                uri_host(&p)
            });
            route_source(proxy)
        });
        let has_me = self.lock().me.is_some();
        if !has_me && let Some(a) = accounts.first() {
            self.lock().me = Some(Me {
                extension: uri_user(&a.sip_uri),
                name: a.display_name.clone(),
                uri: format!("sip:{}", a.sip_uri.trim_start_matches("sip:")),
            });
        }
        let mut config = PhoneConfig::new(ip);
        config.store = store;
        config.secrets = self.secrets.clone();
        config.audio = audio_config(&self.lock().file.settings);
        // The settings' switch, applied to every call with sound devices.
        config.echo_cancellation = self.lock().file.settings.echo_cancellation;
        let (phone, mut events) = Phone::start(config).await.map_err(env_err)?;
        phone.send(Command::Register { account: None });
        phone.send(Command::Snapshot);
        // Our presence to the server (PUBLISH, RFC 3903); the colleagues of the
        // directory watched through it (SUBSCRIBE presence + dialog).
        let (presence, me, colleagues) = {
            let st = self.lock();
            let me = st.me.as_ref().map(|m| m.extension.clone());
            let mut c: Vec<String> = st.names.keys().cloned().collect();
            c.retain(|e| Some(e) != me.as_ref());
            c.sort();
            (st.file.presence.clone(), me, c)
        };
        if !accounts.is_empty() {
            phone.send(publish_command(&presence));
        }
        if me.is_some() {
            for ext in colleagues {
                phone.send(Command::Watch {
                    uri: ext,
                    account: None,
                    presence: true,
                    dialog: true,
                });
            }
        }
        let generation = {
            let mut st = self.lock();
            st.generation += 1;
            st.phone = Some(phone);
            st.calls.clear();
            st.office_presence.clear();
            st.office_phone.clear();
            st.accounts = accounts
                .iter()
                .map(|a| {
                    (
                        a.name.clone(),
                        AccountView {
                            name: a.name.clone(),
                            uri: format!("sip:{}", a.sip_uri.trim_start_matches("sip:")),
                            proxy: a.outbound_proxy.clone(),
                            registration: "registering".into(),
                            reason: String::new(),
                        },
                    )
                })
                .collect();
            st.generation
        };
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                let Some(core) = weak.upgrade() else { break };
                if core.lock().generation != generation {
                    continue;
                }
                core.phone_event(e);
            }
        });
        self.sink.event(UiEvent::Reset);
        Ok(())
    }

    fn name_of(&self, st: &State, remote: &str) -> String {
        st.names.get(&uri_user(remote)).cloned().unwrap_or_default()
    }

    /// Applies one phone event to the state and tells the UI.
    fn phone_event(&self, e: Event) {
        let mut st = self.lock();
        // Replies to requests first.
        if let Some(i) = st.waiters.iter().position(|w| (w.wants)(&e)) {
            let w = st.waiters.remove(i);
            let _ = w.reply.send(e.clone());
        }
        let mut out = Vec::new();
        let mut restart = false;
        match e {
            Event::Snapshot {
                accounts,
                unseen_missed,
                ..
            } => {
                for a in accounts {
                    let v = st.accounts.entry(a.name.clone()).or_insert(AccountView {
                        name: a.name.clone(),
                        uri: a.uri.clone(),
                        proxy: String::new(),
                        registration: String::new(),
                        reason: String::new(),
                    });
                    v.registration = a.registration;
                    out.push(UiEvent::Account { account: v.clone() });
                }
                st.unseen_missed = unseen_missed;
                out.push(UiEvent::History { unseen_missed });
            }
            Event::Registered { account, .. } => {
                if let Some(v) = st.accounts.get_mut(&account) {
                    v.registration = "registered".into();
                    v.reason.clear();
                    out.push(UiEvent::Account { account: v.clone() });
                }
            }
            Event::RegistrationFailed {
                account,
                status,
                reason,
                ..
            } => {
                if let Some(v) = st.accounts.get_mut(&account) {
                    v.registration = "failed".into();
                    v.reason = format!("{status} {reason}");
                    out.push(UiEvent::Account { account: v.clone() });
                }
            }
            Event::Unregistered { account } => {
                if let Some(v) = st.accounts.get_mut(&account) {
                    v.registration = "idle".into();
                    out.push(UiEvent::Account { account: v.clone() });
                }
            }
            Event::Outgoing { call, uri, .. } => {
                let v = CallView {
                    call,
                    remote_name: self.name_of(&st, &uri),
                    remote: uri,
                    direction: "outgoing".into(),
                    state: "calling".into(),
                    held: false,
                    remote_held: false,
                    muted: false,
                    codec: String::new(),
                    answered_at: None,
                    consult_of: st.pending_consult.take(),
                    conference: false,
                };
                st.calls.insert(call, v.clone());
                out.push(UiEvent::Call { call: v });
            }
            Event::Incoming {
                call,
                from,
                replaces,
                name,
                number,
                group,
                ..
            } => {
                // Through a group the From display name is the group's: the caller's
                // own name comes from the directory by the plain number.
                let known = if number.is_empty() {
                    self.name_of(&st, &from)
                } else {
                    st.names.get(&number).cloned().unwrap_or_default()
                };
                let v = CallView {
                    call,
                    remote_name: if known.is_empty() { name } else { known },
                    // Call back the caller, not the group: drop `#groupId`.
                    remote: match (&group, from.split_once('@')) {
                        (Some(_), Some((_, host))) if !number.is_empty() => {
                            let scheme = if from.starts_with("sips:") {
                                "sips"
                            } else {
                                "sip"
                            };
                            format!("{scheme}:{number}@{host}")
                        }
                        _ => from,
                    },
                    direction: "incoming".into(),
                    state: "ringing".into(),
                    held: false,
                    remote_held: false,
                    muted: false,
                    codec: String::new(),
                    answered_at: None,
                    consult_of: None,
                    conference: false,
                };
                st.calls.insert(call, v.clone());
                if replaces.is_none() {
                    let via = group.map(|g| g.name).unwrap_or_default();
                    if st.file.settings.notifications {
                        let mut who = if v.remote_name.is_empty() {
                            uri_user(&v.remote)
                        } else {
                            format!("{} ({})", v.remote_name, uri_user(&v.remote))
                        };
                        let words = &st.notification_text;
                        if !via.is_empty() {
                            who = format!("{who} {} {via}", words.via);
                        }
                        self.sink.notify(&words.incoming_call, &who);
                    }
                    out.push(UiEvent::Incoming { call: v, via });
                } else {
                    out.push(UiEvent::Call { call: v });
                }
            }
            Event::Ringing { call } | Event::EarlyMedia { call } => {
                if let Some(v) = st.calls.get_mut(&call) {
                    v.state = "ringing".into();
                    out.push(UiEvent::Call { call: v.clone() });
                }
            }
            Event::Established { call, codec } => {
                if let Some(v) = st.calls.get_mut(&call) {
                    v.state = "established".into();
                    v.codec = codec;
                    v.answered_at = Some(now_ms());
                    out.push(UiEvent::Call { call: v.clone() });
                }
            }
            Event::Held { call, by } | Event::Resumed { call, by } => {
                let held = matches!(e, Event::Held { .. });
                if let Some(v) = st.calls.get_mut(&call) {
                    match by {
                        vaxel_phone::Side::Local => v.held = held,
                        vaxel_phone::Side::Remote => v.remote_held = held,
                    }
                    out.push(UiEvent::Call { call: v.clone() });
                }
            }
            Event::Muted { call, muted } => {
                if let Some(v) = st.calls.get_mut(&call) {
                    v.muted = muted;
                    out.push(UiEvent::Call { call: v.clone() });
                }
            }
            Event::Ended {
                call,
                cause,
                status,
            } => {
                st.calls.remove(&call);
                // A consultation about a call that is gone is an ordinary call.
                for v in st.calls.values_mut() {
                    if v.consult_of == Some(call) {
                        v.consult_of = None;
                        out.push(UiEvent::Call { call: v.clone() });
                    }
                }
                let mut c = serde_json::to_value(cause)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                if let Some(s) = status {
                    c = format!("{c} {s}");
                }
                if cause == EndReason::RemoteCancelled {
                    st.unseen_missed += 1;
                }
                out.push(UiEvent::Ended { call, cause: c });
                if st.calls.is_empty() && st.restart_when_idle {
                    st.restart_when_idle = false;
                    restart = true;
                }
                out.push(UiEvent::History {
                    unseen_missed: st.unseen_missed,
                });
            }
            Event::Conference { calls } => {
                for v in st.calls.values_mut() {
                    let now_in = calls.contains(&v.call);
                    if v.conference != now_in {
                        v.conference = now_in;
                        // A merged consultation is no longer one.
                        if now_in {
                            v.consult_of = None;
                        }
                        out.push(UiEvent::Call { call: v.clone() });
                    }
                }
            }
            Event::Dtmf { call, digit, .. } => out.push(UiEvent::Dtmf {
                call,
                digit: digit.to_string(),
            }),
            Event::MessageReceived { from, text, .. } => {
                out.push(UiEvent::Message { from, text });
            }
            Event::Levels {
                call,
                input_dbfs,
                output_dbfs,
            } => self.sink.media(MediaUpdate::Levels {
                call,
                input: input_dbfs,
                output: output_dbfs,
            }),
            Event::Quality {
                call,
                codec,
                loss_percent,
                jitter_ms,
                rtt_ms,
            } => self.sink.media(MediaUpdate::Quality {
                call,
                codec,
                loss_percent,
                jitter_ms,
                rtt_ms,
            }),
            Event::TransferFailed { call, status } => out.push(UiEvent::Error {
                error: UiError::new(
                    ErrorCode::Network,
                    format!(
                        "transfer of call {call} failed{}",
                        status.map(|s| format!(" ({s})")).unwrap_or_default()
                    ),
                ),
            }),
            Event::Error { code, message, .. } => {
                // Errors that answer a request are the request's; the rest go to the UI.
                out.push(UiEvent::Error {
                    error: UiError::new(
                        match code {
                            vaxel_phone::ErrorCode::BadCommand => ErrorCode::BadCommand,
                            vaxel_phone::ErrorCode::Network => ErrorCode::Network,
                            vaxel_phone::ErrorCode::Environment => ErrorCode::Environment,
                        },
                        message,
                    ),
                })
            }
            Event::PresenceChanged {
                uri,
                status,
                activity,
                note,
                until,
                ..
            } => {
                // Closed without an activity is unknown (grey); an activity stays
                // readable while they are offline ("vacation until Monday").
                let p = Presence {
                    activity: if status == "open" || activity.is_some() {
                        activity_of(activity.as_deref())
                    } else {
                        Activity::Unknown
                    },
                    until: until.map(|u| local_hhmm(&u)).unwrap_or_default(),
                    note: note.unwrap_or_default(),
                };
                st.office_presence.insert(uri_user(&uri), p);
                out.push(UiEvent::Directory);
            }
            Event::DialogStateChanged { uri, state, .. } => {
                let phone = match state.as_str() {
                    "confirmed" => "busy",
                    "early" | "trying" => "ringing",
                    _ => "idle",
                };
                st.office_phone.insert(uri_user(&uri), phone.into());
                out.push(UiEvent::Directory);
            }
            Event::MissedSeen { .. } => {
                st.unseen_missed = 0;
                out.push(UiEvent::History { unseen_missed: 0 });
            }
            _ => {}
        }
        drop(st);
        for e in out {
            self.sink.event(e);
        }
        if restart && let Some(core) = self.me_arc() {
            tokio::spawn(async move {
                if let Err(e) = core.restart_phone().await {
                    core.sink.event(UiEvent::Error { error: e });
                }
            });
        }
    }

    fn me_arc(&self) -> Option<Arc<AppCore>> {
        self.this.upgrade()
    }

    fn phone(&self) -> Result<PhoneHandle, UiError> {
        self.lock()
            .phone
            .clone()
            .ok_or_else(|| UiError::new(ErrorCode::NotReady, "the phone is not running"))
    }

    /// Sends a command and waits for the event `wants` picks.
    async fn ask(&self, command: Command, wants: Predicate) -> Result<Event, UiError> {
        let phone = self.phone()?;
        let (tx, rx) = oneshot::channel();
        self.lock().waiters.push(Waiter { wants, reply: tx });
        phone.send(command);
        match tokio::time::timeout(REPLY_TIMEOUT, rx).await {
            Ok(Ok(e)) => Ok(e),
            _ => Err(UiError::new(ErrorCode::Timeout, "the phone did not answer")),
        }
    }

    fn send(&self, command: Command) -> Result<(), UiError> {
        if self.phone()?.send(command) {
            Ok(())
        } else {
            Err(UiError::new(ErrorCode::NotReady, "the phone has stopped"))
        }
    }

    /// The embedded engine while hosting the office.
    pub fn engine(&self) -> Option<EngineHandle> {
        self.lock().engine.as_ref().map(|e| e.0.clone())
    }

    /// Everything the UI draws from.
    pub fn snapshot(&self) -> Snapshot {
        let st = self.lock();
        Snapshot {
            mode: st.file.mode,
            me: st.me.clone(),
            accounts: st.accounts.values().cloned().collect(),
            calls: st.calls.values().cloned().collect(),
            unseen_missed: st.unseen_missed,
            presence: st.file.presence.clone(),
            settings: st.file.settings.clone(),
            engine: st.engine.as_ref().map(|e| e.1.clone()),
            control_api: st
                .remote
                .as_ref()
                .map(|r| r.base().to_string())
                .unwrap_or_default(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// Places a call to a number, extension, name hit or URI.
    pub fn call(&self, target: &str) -> Result<(), UiError> {
        let target = dial_target(target).unwrap_or_else(|| target.trim().to_string());
        if target.is_empty() {
            return Err(bad("nothing to call"));
        }
        // A second call: the one in progress waits on hold.
        self.hold_others(None)?;
        self.send(Command::Call {
            uri: target,
            account: None,
            media: Default::default(),
        })
    }

    /// Holds every call that is up, not held and not `except` (the conference's
    /// members go on hold together).
    fn hold_others(&self, except: Option<u64>) -> Result<(), UiError> {
        let talking: Vec<u64> = self
            .lock()
            .calls
            .values()
            .filter(|c| c.state == "established" && !c.held && Some(c.call) != except)
            .map(|c| c.call)
            .collect();
        for id in talking {
            self.send(Command::Hold { call: Some(id) })?;
        }
        Ok(())
    }

    /// Announced transfer, first step: holds `call` and calls `target` to consult them
    /// (the new call's `consult_of` is `call`).
    pub fn consult(&self, call: u64, target: &str) -> Result<(), UiError> {
        self.known_call(call)?;
        let target = dial_target(target).unwrap_or_else(|| target.trim().to_string());
        if target.is_empty() {
            return Err(bad("consult whom?"));
        }
        self.hold_others(None)?;
        self.lock().pending_consult = Some(call);
        self.send(Command::Call {
            uri: target,
            account: None,
            media: Default::default(),
        })
        .inspect_err(|_| self.lock().pending_consult = None)
    }

    /// Announced transfer, done: the consulted colleague gets the held call (REFER with
    /// Replaces, RFC 3891 / RFC 5589 §7); `call` is the consultation.
    pub fn complete_transfer(&self, call: u64) -> Result<(), UiError> {
        let of = self
            .lock()
            .calls
            .get(&call)
            .ok_or_else(|| bad(format!("no call {call}")))?
            .consult_of
            .ok_or_else(|| bad(format!("call {call} is no consultation")))?;
        self.send(Command::AttendedTransfer { call: of, to: call })
    }

    /// Announced transfer, given up: hangs up the consultation and takes the held call
    /// back.
    pub fn cancel_consult(&self, call: u64) -> Result<(), UiError> {
        let of = self
            .lock()
            .calls
            .get(&call)
            .ok_or_else(|| bad(format!("no call {call}")))?
            .consult_of
            .ok_or_else(|| bad(format!("call {call} is no consultation")))?;
        self.send(Command::Hangup { call: Some(call) })?;
        self.send(Command::Resume { call: Some(of) })
    }

    /// Swaps to `call`: the other calls go on hold, `call` resumes.
    pub fn swap(&self, call: u64) -> Result<(), UiError> {
        self.known_call(call)?;
        self.hold_others(Some(call))?;
        if self.lock().calls.get(&call).is_some_and(|c| c.held) {
            self.send(Command::Resume { call: Some(call) })?;
        }
        Ok(())
    }

    /// Merges every call that is up into a local conference.
    pub fn merge(&self) -> Result<(), UiError> {
        let up = self
            .lock()
            .calls
            .values()
            .filter(|c| c.state == "established")
            .count();
        if up < 2 {
            return Err(bad("merge needs two calls that are up"));
        }
        self.send(Command::Merge { calls: Vec::new() })
    }

    /// Plays a one-second test tone on the chosen speaker (`ringing`: on the ringing
    /// device); returns when it has played.
    pub async fn test_tone(&self, ringing: bool) -> Result<(), UiError> {
        let config = audio_config(&self.lock().file.settings);
        let role = if ringing {
            vaxel_audio::DeviceRole::Ringing
        } else {
            vaxel_audio::DeviceRole::Output
        };
        tokio::task::spawn_blocking(move || crate::soundcheck::play_tone(config, role, 1.0))
            .await
            .map_err(env_err)?
    }

    /// Starts (or stops) the microphone test: the chosen microphone's level goes to the
    /// UI as [`MediaUpdate::MicLevel`] ten times a second, for at most a minute.
    pub fn mic_test(&self, on: bool) -> Result<(), UiError> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let mut st = self.lock();
        if let Some(stop) = st.mic_test.take() {
            stop.store(true, Ordering::Relaxed);
        }
        if !on {
            return Ok(());
        }
        let stop = Arc::new(AtomicBool::new(false));
        st.mic_test = Some(stop.clone());
        let config = audio_config(&st.file.settings);
        drop(st);
        let sink = self.sink.clone();
        std::thread::Builder::new()
            .name("vaxel-mic-test".into())
            .spawn(move || {
                let r =
                    crate::soundcheck::mic_levels(config, stop, Duration::from_secs(60), |dbfs| {
                        sink.media(MediaUpdate::MicLevel { dbfs })
                    });
                if let Err(error) = r {
                    sink.event(UiEvent::Error { error });
                }
                // The meter falls back when the test ends.
                sink.media(MediaUpdate::MicLevel { dbfs: -100.0 });
            })
            .map_err(env_err)?;
        Ok(())
    }

    /// A global hotkey was pressed: `answer` the ringing call, `hangup` or `mute` (toggle)
    /// the call in progress (the newest one not on hold). Nothing to act on is no error.
    pub fn hotkey(&self, action: &str) -> Result<(), UiError> {
        let (ringing, current) = {
            let st = self.lock();
            let ringing = st
                .calls
                .values()
                .find(|c| c.direction == "incoming" && c.state == "ringing")
                .map(|c| c.call);
            let live: Vec<&CallView> = st
                .calls
                .values()
                .filter(|c| !(c.direction == "incoming" && c.state == "ringing"))
                .collect();
            let current = live
                .iter()
                .rev()
                .find(|c| !c.held)
                .or(live.last())
                .map(|c| (c.call, c.muted));
            (ringing, current)
        };
        match (action, ringing, current) {
            ("answer", Some(call), _) => self.answer(call),
            ("hangup", _, Some((call, _))) => self.hangup(call),
            ("mute", _, Some((call, muted))) => self.mute(call, !muted),
            ("answer" | "hangup" | "mute", _, _) => Ok(()),
            _ => Err(bad(format!("no hotkey action {action:?}"))),
        }
    }

    /// The notifications' words, in the language the UI shows (its i18n table).
    pub fn set_notification_text(&self, text: NotificationText) {
        self.lock().notification_text = text;
    }

    /// Sends a ringing call to the user's voicemail (302 to `*59*` + the extension).
    pub fn send_to_voicemail(&self, call: u64) -> Result<(), UiError> {
        self.known_call(call)?;
        self.send(Command::SendToVoicemail { call: Some(call) })
    }

    /// Opens a `tel:`/`sip:` link: tells the UI and places the call.
    pub fn open_link(&self, link: &str) -> Result<(), UiError> {
        let target = dial_target(link).ok_or_else(|| bad(format!("not a call link: {link}")))?;
        self.sink.event(UiEvent::Dial {
            uri: target.clone(),
        });
        self.call(&target)
    }

    fn known_call(&self, call: u64) -> Result<(), UiError> {
        if self.lock().calls.contains_key(&call) {
            Ok(())
        } else {
            Err(bad(format!("no call {call}")))
        }
    }

    /// Answers a ringing call.
    pub fn answer(&self, call: u64) -> Result<(), UiError> {
        self.known_call(call)?;
        // Call waiting: the call in progress waits on hold.
        self.hold_others(Some(call))?;
        self.send(Command::Answer {
            call: Some(call),
            media: Default::default(),
        })
    }

    /// Declines a ringing call (603 Decline, RFC 3261 §21.6.2).
    pub fn decline(&self, call: u64) -> Result<(), UiError> {
        self.known_call(call)?;
        self.send(Command::Reject {
            call: Some(call),
            code: Some(603),
        })
    }

    /// Hangs up.
    pub fn hangup(&self, call: u64) -> Result<(), UiError> {
        self.known_call(call)?;
        self.send(Command::Hangup { call: Some(call) })
    }

    /// Holds or resumes.
    pub fn hold(&self, call: u64, hold: bool) -> Result<(), UiError> {
        self.known_call(call)?;
        self.send(if hold {
            Command::Hold { call: Some(call) }
        } else {
            Command::Resume { call: Some(call) }
        })
    }

    /// Mutes or unmutes.
    pub fn mute(&self, call: u64, muted: bool) -> Result<(), UiError> {
        self.known_call(call)?;
        self.send(Command::Mute {
            call: Some(call),
            muted,
        })
    }

    /// Sends DTMF digits.
    pub fn dtmf(&self, call: u64, digits: &str) -> Result<(), UiError> {
        self.known_call(call)?;
        if digits.is_empty()
            || !digits
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D'))
        {
            return Err(bad(format!("not DTMF digits: {digits:?}")));
        }
        self.send(Command::Dtmf {
            call: Some(call),
            digits: digits.into(),
            method: None,
        })
    }

    /// Blind transfer (REFER, RFC 3515).
    pub fn transfer(&self, call: u64, target: &str) -> Result<(), UiError> {
        self.known_call(call)?;
        let target = dial_target(target).unwrap_or_else(|| target.trim().to_string());
        if target.is_empty() {
            return Err(bad("transfer to whom?"));
        }
        self.send(Command::Transfer {
            call: Some(call),
            target,
        })
    }

    /// The history, newest first.
    pub async fn history(&self, limit: u32) -> Result<HistoryPage, UiError> {
        let e = self
            .ask(
                Command::History {
                    limit: Some(limit),
                    missed_only: false,
                },
                Box::new(|e| matches!(e, Event::History { .. })),
            )
            .await?;
        let Event::History {
            calls,
            unseen_missed,
        } = e
        else {
            unreachable!("the waiter only takes history")
        };
        let remote = self.lock().remote.clone();
        // Connected to a Vaxel engine: the calls it recorded for the user (from any of
        // their phones) join the local ones; the engine's trouble only costs those.
        let engine_calls = match &remote {
            Some(r) => r.my_calls().await.unwrap_or_else(|e| {
                tracing::warn!("call history from the control API: {}", e.message);
                Vec::new()
            }),
            None => Vec::new(),
        };
        let st = self.lock();
        let local: Vec<HistoryItem> = calls.into_iter().map(|h| history_item(&st, h)).collect();
        let calls = match &st.me {
            Some(me) if remote.is_some() => {
                merge_history(local, engine_calls, me, &st.names, limit as usize)
            }
            _ => local,
        };
        Ok(HistoryPage {
            calls,
            unseen_missed,
        })
    }

    /// Clears the missed-call badge.
    pub async fn mark_missed_seen(&self) -> Result<(), UiError> {
        self.ask(
            Command::MarkMissedSeen,
            Box::new(|e| matches!(e, Event::MissedSeen { .. })),
        )
        .await
        .map(|_| ())
    }

    /// Search as you type over directory, contacts and history: every word must match.
    pub async fn search(&self, query: &str) -> Result<Vec<SearchHit>, UiError> {
        if query.trim().is_empty() {
            return Ok(Vec::new());
        }
        let q = query.to_string();
        let e = self
            .ask(
                Command::Search {
                    query: q.clone(),
                    limit: Some(20),
                },
                Box::new(move |e| matches!(e, Event::SearchResults { query, .. } if *query == q)),
            )
            .await?;
        let Event::SearchResults { hits, .. } = e else {
            unreachable!("the waiter only takes search results")
        };
        Ok(hits
            .into_iter()
            .map(|h| SearchHit {
                kind: h.kind,
                id: h.id,
                display: h.display,
                detail: h.detail,
                number: h.number,
                favourite: h.favourite,
            })
            .collect())
    }

    /// Personal contacts.
    pub async fn contacts(&self) -> Result<Vec<ContactView>, UiError> {
        let e = self
            .ask(
                Command::Contacts,
                Box::new(|e| matches!(e, Event::Contacts { .. })),
            )
            .await?;
        let Event::Contacts { contacts } = e else {
            unreachable!("the waiter only takes contacts")
        };
        Ok(contacts.into_iter().map(contact_view).collect())
    }

    /// Adds a contact, or changes one (`id` set). The phone's vocabulary has no
    /// "update contact" yet, so a change goes to the profile's store directly (SQLite,
    /// WAL: the phone's connection sees it at once).
    pub async fn save_contact(&self, c: ContactView) -> Result<ContactView, UiError> {
        if c.name.trim().is_empty() {
            return Err(bad("a contact needs a name"));
        }
        match c.id {
            None => {
                let new = NewContact {
                    name: c.name.trim().into(),
                    numbers: c.numbers.clone(),
                    sip_uris: c.sip_uris.clone(),
                    emails: c.emails.clone(),
                    organisation: c.organisation.clone(),
                    favourite: c.favourite,
                };
                let e = self
                    .ask(
                        Command::ContactAdd { contact: new },
                        Box::new(|e| matches!(e, Event::ContactAdded { .. })),
                    )
                    .await?;
                let Event::ContactAdded { id, .. } = e else {
                    unreachable!("the waiter only takes ContactAdded")
                };
                Ok(ContactView { id: Some(id), ..c })
            }
            Some(id) => {
                // Through the phone, like adding: one writer of the store.
                let contact = NewContact {
                    name: c.name.trim().into(),
                    numbers: c.numbers.clone(),
                    sip_uris: c.sip_uris.clone(),
                    emails: c.emails.clone(),
                    organisation: c.organisation.clone(),
                    favourite: c.favourite,
                };
                let e = self
                    .ask(
                        Command::ContactUpdate { id, contact },
                        Box::new(move |e| {
                            matches!(e, Event::ContactUpdated { id: i, .. } if *i == id)
                                || matches!(e, Event::Error { message, .. }
                                    if message == &format!("no contact {id}"))
                        }),
                    )
                    .await?;
                match e {
                    Event::ContactUpdated { .. } => Ok(c),
                    _ => Err(bad(format!("no contact {id}"))),
                }
            }
        }
    }

    /// Imports a vCard file.
    pub async fn vcard_import(&self, path: &str) -> Result<VcardReport, UiError> {
        let e = self
            .ask(
                Command::VcardImport { path: path.into() },
                Box::new(|e| {
                    matches!(
                        e,
                        Event::VcardImported { .. } | Event::Error { call: None, .. }
                    )
                }),
            )
            .await?;
        match e {
            Event::VcardImported {
                path,
                imported,
                errors,
            } => Ok(VcardReport {
                path: path.display().to_string(),
                contacts: imported as u32,
                errors,
            }),
            Event::Error { message, .. } => Err(env_err(message)),
            _ => unreachable!("the waiter only takes these"),
        }
    }

    /// Exports every contact to a vCard 4.0 file.
    pub async fn vcard_export(&self, path: &str) -> Result<VcardReport, UiError> {
        let e = self
            .ask(
                Command::VcardExport { path: path.into() },
                Box::new(|e| {
                    matches!(
                        e,
                        Event::VcardExported { .. } | Event::Error { call: None, .. }
                    )
                }),
            )
            .await?;
        match e {
            Event::VcardExported { path, contacts } => Ok(VcardReport {
                path: path.display().to_string(),
                contacts: contacts as u32,
                errors: Vec::new(),
            }),
            Event::Error { message, .. } => Err(env_err(message)),
            _ => unreachable!("the waiter only takes these"),
        }
    }

    /// The office directory with phone state and presence (empty when not hosting).
    pub async fn directory(&self) -> Result<Vec<Person>, UiError> {
        let engine = self.lock().engine.clone();
        let Some((engine, _)) = engine else {
            return Ok(self.remote_directory());
        };
        let dir = engine.directory().await.map_err(env_err)?;
        let st = self.lock();
        let me = st.me.as_ref().map(|m| m.extension.clone());
        Ok(dir
            .into_iter()
            .map(|d| {
                let ext = d.user.extension.clone();
                // Colleagues as the engine's NOTIFYs say; before the first one, from
                // their registration.
                let presence = if Some(&ext) == me.as_ref() {
                    st.file.presence.clone()
                } else {
                    st.office_presence.get(&ext).cloned().unwrap_or(Presence {
                        activity: if d.devices > 0 {
                            Activity::Available
                        } else {
                            Activity::Unknown
                        },
                        ..Presence::default()
                    })
                };
                let watched_phone = st.office_phone.get(&ext).cloned();
                Person {
                    extension: ext,
                    name: d.user.name,
                    number: d.user.number.unwrap_or_default(),
                    mobile: d.user.mobile,
                    email: d.user.email,
                    department: d.user.department,
                    title: d.user.title,
                    phone: if d.devices == 0 {
                        "offline".into()
                    } else {
                        watched_phone.unwrap_or_else(|| d.phone.into())
                    },
                    presence,
                }
            })
            .collect())
    }

    /// The remote engine's directory as its control API reported it (empty when not
    /// connected to one).
    fn remote_directory(&self) -> Vec<Person> {
        let st = self.lock();
        let Some(remote) = &st.remote else {
            return Vec::new();
        };
        let me = st.me.as_ref().map(|m| m.extension.clone());
        remote
            .entries()
            .into_iter()
            .map(|d| {
                let presence = if Some(&d.extension) == me.as_ref() {
                    st.file.presence.clone()
                } else {
                    match &d.presence {
                        Some(p) => Presence {
                            // Offline without an activity is unknown (grey).
                            activity: if p.state != "offline" || p.activity.is_some() {
                                activity_of(p.activity.as_deref())
                            } else {
                                Activity::Unknown
                            },
                            until: p.until.as_deref().map(local_hhmm).unwrap_or_default(),
                            note: p.note.clone().unwrap_or_default(),
                        },
                        None if d.devices > 0 => Presence {
                            activity: Activity::Available,
                            ..Presence::default()
                        },
                        None => Presence {
                            activity: Activity::Unknown,
                            ..Presence::default()
                        },
                    }
                };
                Person {
                    phone: if d.devices == 0 {
                        "offline".into()
                    } else if d.phone.is_empty() {
                        "idle".into()
                    } else {
                        d.phone
                    },
                    extension: d.extension,
                    name: d.name,
                    number: d.number.unwrap_or_default(),
                    mobile: d.mobile,
                    email: d.email,
                    department: d.department,
                    title: d.title,
                    presence,
                }
            })
            .collect()
    }

    /// Sets the user's presence: saved, and published to the server (the embedded
    /// engine or the account's) so colleagues see it.
    pub fn set_presence(&self, presence: Presence) -> Result<(), UiError> {
        let file = {
            let mut st = self.lock();
            st.file.presence = presence.clone();
            st.file.clone()
        };
        self.save(&file)?;
        let phone = self.lock().phone.clone();
        if let Some(phone) = phone {
            phone.send(publish_command(&presence));
        }
        self.sink.event(UiEvent::Presence { presence });
        self.sink.event(UiEvent::Directory);
        Ok(())
    }

    /// Changes the settings. A new choice of sound devices applies from the next call:
    /// the phone restarts at once when no call is in progress, else when the last ends.
    pub async fn set_settings(self: &Arc<Self>, settings: Settings) -> Result<Settings, UiError> {
        if !["en", "da", "sv", "nb", "fi"].contains(&settings.language.as_str()) {
            return Err(bad(format!("no language {:?}", settings.language)));
        }
        let (file, devices_changed, idle) = {
            let mut st = self.lock();
            // Devices and echo cancellation take effect in a restarted phone.
            let changed = audio_config(&st.file.settings) != audio_config(&settings)
                || st.file.settings.echo_cancellation != settings.echo_cancellation;
            st.file.settings = settings.clone();
            (
                st.file.clone(),
                changed,
                st.calls.is_empty() && st.phone.is_some(),
            )
        };
        self.save(&file)?;
        if devices_changed {
            if idle {
                self.restart_phone().await?;
            } else {
                self.lock().restart_when_idle = true;
            }
        }
        Ok(settings)
    }

    async fn restart_phone(self: &Arc<Self>) -> Result<(), UiError> {
        let mode = self.lock().file.mode;
        match mode {
            Mode::Host => self.start_host().await,
            Mode::Server => self.start_phone(None).await,
            Mode::Unset => Ok(()),
        }
    }

    /// The profile's accounts.
    pub fn accounts(&self) -> Vec<AccountView> {
        self.lock().accounts.values().cloned().collect()
    }

    /// Adds or changes a SIP account: the row in the store, the password in the OS
    /// keychain. The phone restarts over the new accounts when it runs.
    pub async fn save_account(self: &Arc<Self>, form: AccountForm) -> Result<AccountView, UiError> {
        let name = form.name.trim();
        if name.is_empty() {
            return Err(bad("an account needs a name"));
        }
        let uri = vaxel_phone::account::parse_sip_uri(&form.uri).map_err(bad)?;
        if !form.proxy.trim().is_empty() {
            vaxel_phone::account::parse_sip_uri(&form.proxy).map_err(bad)?;
        }
        let transport = if form.transport.is_empty() {
            Transport::Udp
        } else {
            vaxel_phone::account::parse_transport(&form.transport).map_err(bad)?
        };
        let new = NewAccount {
            name: name.into(),
            sip_uri: uri.to_string().trim_start_matches("sip:").into(),
            display_name: String::new(),
            outbound_proxy: form.proxy.trim().into(),
            transport,
            register: true,
        };
        let mut store = self.profile().open_store().map_err(env_err)?;
        let a = upsert_account(&mut store, &new)?;
        if !form.password.is_empty() {
            self.secrets
                .set(&a.secret_key(), &Secret::new(form.password.clone()))
                .map_err(|e| {
                    UiError::new(
                        ErrorCode::Environment,
                        format!("the password could not be stored in the OS keychain: {e}"),
                    )
                })?;
        }
        drop(store);
        let view = AccountView {
            name: a.name.clone(),
            uri: format!("sip:{}", a.sip_uri),
            proxy: a.outbound_proxy.clone(),
            registration: "idle".into(),
            reason: String::new(),
        };
        if self.lock().phone.is_some() {
            self.restart_phone().await?;
        }
        Ok(view)
    }

    /// Stops the phone (unregisters, hangs up) and lets the engine go.
    pub fn shutdown(&self) {
        let mut st = self.lock();
        if let Some(p) = st.phone.take() {
            p.send(Command::Quit);
        }
        st.engine = None;
        st.remote = None;
    }
}

/// The local history with the engine's records of the user's calls (R-315 `GET
/// /api/me/calls`) that it lacks: a record is the same call as a local one when the
/// other party matches and they started within ten seconds. Engine-only calls get
/// negative ids (the engine's, negated) so they never clash with the phone's; they
/// count as seen (the badge is the phone's). Newest first, at most `limit`.
fn merge_history(
    mut local: Vec<HistoryItem>,
    engine: Vec<crate::remote::CallRecord>,
    me: &Me,
    names: &HashMap<String, String>,
    limit: usize,
) -> Vec<HistoryItem> {
    let domain = me.uri.split_once('@').map(|(_, d)| d).unwrap_or("");
    let mut extra = Vec::new();
    for r in engine {
        let outgoing = r.caller == me.extension;
        let other = if outgoing { &r.callee } else { &r.caller };
        let started_at = r.started_at * 1000;
        let known = local.iter().any(|h| {
            (h.started_at - started_at).abs() <= 10_000
                && (h.number == *other || uri_user(&h.remote) == *other)
        });
        if known {
            continue;
        }
        let outcome = match (r.answered_at, outgoing, r.outcome.as_str()) {
            (Some(_), _, _) => "answered",
            (None, false, _) => "missed",
            (None, true, "busy" | "failed") => "failed",
            (None, true, _) => "cancelled",
        };
        extra.push(HistoryItem {
            id: -r.id,
            direction: if outgoing { "outgoing" } else { "incoming" }.into(),
            outcome: outcome.into(),
            remote: if domain.is_empty() {
                format!("sip:{other}")
            } else {
                format!("sip:{other}@{domain}")
            },
            name: names.get(other).cloned().unwrap_or_default(),
            number: other.clone(),
            started_at,
            duration_s: match (r.answered_at, r.ended_at) {
                (Some(a), Some(e)) => Some((e - a).max(0)),
                _ => None,
            },
            seen: true,
            via: String::new(),
        });
    }
    local.extend(extra);
    local.sort_by_key(|h| std::cmp::Reverse(h.started_at));
    local.truncate(limit);
    local
}

fn history_item(st: &State, h: HistoryEntry) -> HistoryItem {
    let name = if h.name.is_empty() {
        st.names.get(&h.number).cloned().unwrap_or_default()
    } else {
        h.name
    };
    HistoryItem {
        id: h.id,
        direction: h.direction,
        outcome: h.outcome,
        number: if h.number.is_empty() {
            uri_user(&h.remote)
        } else {
            h.number
        },
        remote: h.remote,
        name,
        started_at: h.started_at,
        duration_s: match (h.answered_at, h.ended_at) {
            (Some(a), Some(e)) => Some((e - a).max(0) / 1000),
            _ => None,
        },
        seen: h.seen,
        via: h.group,
    }
}

fn contact_view(c: ContactEntry) -> ContactView {
    ContactView {
        id: Some(c.id),
        name: c.name,
        organisation: c.organisation,
        numbers: c.numbers,
        sip_uris: c.sip_uris,
        emails: c.emails,
        favourite: c.favourite,
    }
}

/// The host of a SIP URI or `host:port`.
fn uri_host(s: &str) -> String {
    let s = s
        .trim()
        .trim_start_matches("sips:")
        .trim_start_matches("sip:");
    let s = s.rsplit('@').next().unwrap_or(s);
    let s = s.split([';', '?', '>']).next().unwrap_or(s);
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest).to_string();
    }
    s.split(':').next().unwrap_or(s).to_string()
}

/// The local address that routes to `host` (no packet is sent), else 127.0.0.1.
fn route_source(host: Option<String>) -> IpAddr {
    let fallback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let Some(host) = host else { return fallback };
    let target = format!("{host}:5060");
    let Ok(sock) = UdpSocket::bind("0.0.0.0:0") else {
        return fallback;
    };
    if sock.connect(&target).is_err() {
        return fallback;
    }
    sock.local_addr().map(|a| a.ip()).unwrap_or(fallback)
}

/// Changes the account of that name, or adds it (its call history stays with it).
fn upsert_account(
    store: &mut vaxel_store::Store,
    account: &NewAccount,
) -> Result<vaxel_store::Account, UiError> {
    match store.account_by_name(&account.name).map_err(env_err)? {
        Some(a) => store.update_account(a.id, account).map_err(env_err),
        None => store.create_account(account).map_err(env_err),
    }
}

/// The phone's sound devices from the settings (empty: follow the OS default).
fn audio_config(s: &Settings) -> vaxel_audio::AudioConfig {
    let choice = |id: &str| {
        if id.is_empty() {
            vaxel_audio::DeviceChoice::SystemDefault
        } else {
            vaxel_audio::DeviceChoice::Id(id.to_string())
        }
    };
    let output = choice(&s.output_device);
    vaxel_audio::AudioConfig {
        input: choice(&s.input_device),
        ringing: if s.ring_device.is_empty() {
            output.clone()
        } else {
            choice(&s.ring_device)
        },
        output,
        ..vaxel_audio::AudioConfig::default()
    }
}

/// The sound devices for the settings screen.
pub fn audio_devices() -> Result<Vec<AudioDevice>, UiError> {
    let host = vaxel_audio::AudioHost::open(vaxel_audio::HostChoice::Auto).map_err(env_err)?;
    Ok(host
        .devices()
        .map_err(env_err)?
        .into_iter()
        .map(|d| AudioDevice {
            id: d.id,
            name: d.name,
            direction: match d.direction {
                vaxel_audio::Direction::Input => "input".into(),
                vaxel_audio::Direction::Output => "output".into(),
            },
            is_default: d.is_default,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_words_between_the_ui_and_the_engine() {
        // What the UI sets goes out as the phone's PUBLISH command.
        let p = Presence {
            activity: Activity::InOffice,
            until: "14:00".into(),
            note: " desk 3 ".into(),
        };
        match publish_command(&p) {
            Command::SetPresence {
                activity,
                note,
                until,
                ..
            } => {
                assert_eq!(activity, "in_office");
                assert_eq!(note.as_deref(), Some("desk 3"));
                assert_eq!(until.as_deref(), Some("14:00"));
            }
            c => panic!("{c:?}"),
        }
        // Available has no end time.
        let p = Presence {
            until: "14:00".into(),
            ..Presence::default()
        };
        assert!(matches!(
            publish_command(&p),
            Command::SetPresence { until: None, .. }
        ));
        // What colleagues published comes back in the UI's words.
        assert_eq!(activity_of(None), Activity::Available);
        assert_eq!(activity_of(Some("meeting")), Activity::Meeting);
        assert_eq!(activity_of(Some("in_office")), Activity::InOffice);
        assert_eq!(activity_of(Some("on-the-phone")), Activity::Available);
        assert_eq!(activity_of(Some("meal")), Activity::Lunch);
        assert_eq!(activity_of(Some("away")), Activity::Off);
        assert_eq!(local_hhmm("soon"), "soon");
        assert_eq!(local_hhmm("2026-11-22T14:05:00Z").len(), 5);
    }

    #[test]
    fn the_engines_call_records_join_the_local_history_once() {
        let me = Me {
            extension: "4001".into(),
            name: "Alice Andersen".into(),
            uri: "sip:4001@demo.vaxel.test".into(),
        };
        let names: HashMap<String, String> = [("4002".to_string(), "Bo Berg".to_string())].into();
        let local = vec![HistoryItem {
            id: 7,
            direction: "outgoing".into(),
            outcome: "answered".into(),
            remote: "sip:4002@demo.vaxel.test".into(),
            name: "Bo Berg".into(),
            number: "4002".into(),
            started_at: 1_000_000_000,
            duration_s: Some(30),
            seen: true,
            via: String::new(),
        }];
        let record = |id, caller: &str, callee: &str, at: i64, answered: Option<i64>| {
            crate::remote::CallRecord {
                id,
                caller: caller.into(),
                callee: callee.into(),
                started_at: at,
                answered_at: answered,
                ended_at: answered.map(|a| a + 12),
                outcome: if answered.is_some() {
                    "answered"
                } else {
                    "no answer"
                }
                .into(),
            }
        };
        let merged = merge_history(
            local,
            vec![
                // The same call as the local one (the engine's clock, 2 s apart).
                record(1, "4001", "4002", 1_000_002, Some(1_000_004)),
                // A call Bo made to Alice's desk phone, unanswered.
                record(2, "4002", "4001", 1_000_100, None),
                // An older call from the desk phone, answered.
                record(3, "4001", "+4512345678", 999_000, Some(999_010)),
            ],
            &me,
            &names,
            10,
        );
        assert_eq!(merged.len(), 3, "{merged:?}");
        assert_eq!(merged[0].id, -2);
        assert_eq!(merged[0].outcome, "missed");
        assert_eq!(merged[0].direction, "incoming");
        assert_eq!(merged[0].name, "Bo Berg");
        assert_eq!(merged[0].remote, "sip:4002@demo.vaxel.test");
        assert_eq!(merged[1].id, 7);
        assert_eq!(merged[2].number, "+4512345678");
        assert_eq!(merged[2].duration_s, Some(12));
        assert_eq!(merged[2].outcome, "answered");
    }

    #[test]
    fn links_become_dial_targets() {
        assert_eq!(
            dial_target("tel:+45 7010-4002").as_deref(),
            Some("+4570104002")
        );
        assert_eq!(
            dial_target("sip:4002@demo.vaxel.test?subject=x").as_deref(),
            Some("sip:4002@demo.vaxel.test")
        );
        assert_eq!(dial_target("tel:;x"), None);
        assert_eq!(dial_target("http://x"), None);
        assert_eq!(uri_user("<sip:4002@demo.vaxel.test>;tag=1"), "4002");
        assert_eq!(uri_host("sip:127.0.0.1:5060"), "127.0.0.1");
        assert_eq!(uri_host("4001@demo.vaxel.test"), "demo.vaxel.test");
    }

    #[derive(Default)]
    /// Events, notification bodies; notification titles.
    struct Seen(Mutex<(Vec<UiEvent>, Vec<String>)>, Mutex<Vec<String>>);
    impl Sink for Seen {
        fn event(&self, e: UiEvent) {
            self.0.lock().unwrap().0.push(e);
        }
        fn media(&self, _: MediaUpdate) {}
        fn notify(&self, title: &str, body: &str) {
            self.0.lock().unwrap().1.push(body.to_string());
            self.1.lock().unwrap().push(title.to_string());
        }
    }

    #[test]
    fn a_call_through_a_group_shows_via_and_the_callers_own_name() {
        let seen = Arc::new(Seen::default());
        let dir = std::env::temp_dir().join(format!("vaxel-desktop-via-{}", std::process::id()));
        let core = AppCore::new(
            CoreOptions {
                config_dir: dir.join("config"),
                data_dir: dir.join("data"),
                engine_sip: None,
                demo_user: "4001".into(),
                keychain: Arc::new(MemoryStore::new()),
            },
            seen.clone(),
        );
        core.lock()
            .names
            .insert("4005".into(), "Eva Eriksen".into());
        core.phone_event(Event::Incoming {
            call: 7,
            account: "demo".into(),
            from: "sip:4005%231@demo.vaxel.test".into(),
            to: "sip:4001@demo.vaxel.test".into(),
            replaces: None,
            name: String::new(),
            number: "4005".into(),
            group: Some(vaxel_phone::api::ViaGroup {
                id: "1".into(),
                name: "Sales".into(),
            }),
        });
        let (events, notes) = &*seen.0.lock().unwrap();
        let Some(UiEvent::Incoming { call, via }) = events.last() else {
            panic!("no incoming event: {events:?}");
        };
        assert_eq!(via, "Sales");
        assert_eq!(call.remote_name, "Eva Eriksen");
        // Calling back dials the caller, not the group.
        assert_eq!(call.remote, "sip:4005@demo.vaxel.test");
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0], "Eva Eriksen (4005) via Sales");
    }

    #[test]
    fn notifications_use_the_words_the_ui_gave() {
        let seen = Arc::new(Seen::default());
        let dir = std::env::temp_dir().join(format!("vaxel-desktop-note-{}", std::process::id()));
        let core = AppCore::new(
            CoreOptions {
                config_dir: dir.join("config"),
                data_dir: dir.join("data"),
                engine_sip: None,
                demo_user: "4001".into(),
                keychain: Arc::new(MemoryStore::new()),
            },
            seen.clone(),
        );
        core.set_notification_text(NotificationText {
            incoming_call: "Indgående opkald".into(),
            via: "via".into(),
        });
        core.phone_event(Event::Incoming {
            call: 3,
            account: "demo".into(),
            from: "sip:4003@demo.vaxel.test".into(),
            to: "sip:4001@demo.vaxel.test".into(),
            replaces: None,
            name: "Carla Christensen".into(),
            number: "4003".into(),
            group: None,
        });
        let (_, notes) = &*seen.0.lock().unwrap();
        assert_eq!(notes[0], "Carla Christensen (4003)");
        assert_eq!(seen.1.lock().unwrap()[0], "Indgående opkald");
    }

    #[test]
    fn a_consultation_is_marked_merged_calls_flagged_and_both_cleared_at_the_end() {
        let seen = Arc::new(Seen::default());
        let dir = std::env::temp_dir().join(format!("vaxel-desktop-conf-{}", std::process::id()));
        let core = AppCore::new(
            CoreOptions {
                config_dir: dir.join("config"),
                data_dir: dir.join("data"),
                engine_sip: None,
                demo_user: "4001".into(),
                keychain: Arc::new(MemoryStore::new()),
            },
            seen.clone(),
        );
        let outgoing = |call: u64, ext: &str| Event::Outgoing {
            call,
            account: "demo".into(),
            uri: format!("sip:{ext}@demo.vaxel.test"),
        };
        core.phone_event(outgoing(1, "4002"));
        // `consult` marks the next outgoing call as the consultation about call 1.
        core.lock().pending_consult = Some(1);
        core.phone_event(outgoing(2, "4004"));
        assert_eq!(core.lock().calls[&2].consult_of, Some(1));
        assert_eq!(core.lock().calls[&1].consult_of, None);
        // Without the phone running, the announced-transfer commands say so.
        assert_eq!(
            core.complete_transfer(2).unwrap_err().code,
            ErrorCode::NotReady
        );
        assert_eq!(
            core.complete_transfer(1).unwrap_err().code,
            ErrorCode::BadCommand,
            "call 1 is no consultation"
        );
        // Hotkeys act on the newest call not on hold (here the consultation, 2); without
        // the phone that is "not ready", and an unknown action is the caller's fault.
        assert_eq!(core.hotkey("mute").unwrap_err().code, ErrorCode::NotReady);
        assert_eq!(
            core.hotkey("answer").map_err(|e| e.code),
            Ok(()),
            "nothing rings"
        );
        assert_eq!(
            core.hotkey("dance").unwrap_err().code,
            ErrorCode::BadCommand
        );
        core.phone_event(Event::Conference { calls: vec![1, 2] });
        {
            let st = core.lock();
            assert!(st.calls[&1].conference && st.calls[&2].conference);
            assert_eq!(
                st.calls[&2].consult_of, None,
                "merged: no longer a consultation"
            );
        }
        core.phone_event(Event::Conference { calls: vec![] });
        assert!(!core.lock().calls[&1].conference);
        // The consulted call ending makes a pending consultation an ordinary call.
        core.lock().calls.get_mut(&2).unwrap().consult_of = Some(1);
        core.phone_event(Event::Ended {
            call: 1,
            cause: EndReason::Transferred,
            status: None,
        });
        assert_eq!(core.lock().calls[&2].consult_of, None);
        let (events, _) = &*seen.0.lock().unwrap();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, UiEvent::Call { call } if call.call == 2 && call.conference))
        );
    }
}
