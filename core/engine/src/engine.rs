//! The engine task: registrar and back-to-back user agent over one SIP endpoint.
//!
//! One tokio task owns the [`EndpointHandle`], the database, the digest servers,
//! the protection counters, the bindings and every call. Calls and legs are small
//! ids in maps this task owns (ARCHITECTURE.md §3.8); the control API and tests talk
//! to it through an [`EngineHandle`] (commands with one-shot replies) and a
//! broadcast of [`EngineEvent`]s.
//!
//! # A call
//!
//! An INVITE from a registered user (challenged with 407 first) or from a trunk is
//! the *A leg*. The engine resolves the dialled number: a user's extension or long
//! number rings every device bound to that user at once (one *B leg* per binding,
//! each its own dialog with its own Call-ID), an outbound prefix or an emergency
//! number goes to a trunk. The first B leg to answer wins; the others are
//! cancelled (or, when their 2xx crossed our CANCEL, acknowledged and hung up).
//! Media is anchored: each leg's SDP is rewritten to point at the call's
//! [`Relay`]. BYE and CANCEL propagate; re-INVITEs (hold) and other in-dialog
//! requests are passed to the other leg with the SDP rewritten.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, info, warn};
use vaxel_sip::auth::{
    Algorithm, ChallengeKind, DigestHash, DigestServer, RequestParts, ServerConfig, StoredUser,
    Verification, ha1,
};
use vaxel_sip::dialog::{Dialog, new_call_id, new_tag};
use vaxel_sip::msg::{
    Contact, HeaderName, MediaType, Message, Method, Request, Response, SipUri, StatusCode, Uri,
};
use vaxel_sip::transaction::{TxEvent, TxKey};
use vaxel_transport::{
    Endpoint, EndpointConfig, EndpointHandle, Peer, SocketsConfig, Target, TransportKind,
};

use crate::db::{Binding, BindingChange, CallRecord, Db, DbError, Done, UserRow};
use crate::office::{Office, Trunk, User};
use crate::protect::{Guard, Verdict};
use crate::relay::{Relay, Side, SocketPool, rewrite_sdp};

mod flows;
mod media;
mod presence;
mod timers;
mod xfer;
pub use flows::{FlowOptions, GreetingKind, default_prompts_dir};
pub use presence::SetPresence;

const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, REFER, REGISTER, SUBSCRIBE, PUBLISH";
/// Registration lifetimes (RFC 3261 §10.3 step 7): default, floor and ceiling.
const DEFAULT_EXPIRES: u32 = 3600;
const MIN_EXPIRES: u32 = 60;
const MAX_EXPIRES: u32 = 3600;
/// How often UDP contacts get an OPTIONS keep-alive (their NAT bindings stay open).
const KEEP_ALIVE: Duration = Duration::from_secs(25);

/// How to start the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The data directory (database, recordings, voicemail).
    pub data: PathBuf,
    /// SIP listen address (UDP and TCP).
    pub sip: SocketAddr,
    /// An office file to import at start (idempotent).
    pub office: Option<PathBuf>,
    /// How often both legs of every answered call are probed with an in-dialog
    /// OPTIONS; a leg that answers 481 or 408 or not at all ends the call, so calls
    /// whose phone died do not stay up (what session timers, RFC 4028, are for).
    pub session_check: Duration,
    /// Call flows: prompt directory and the test clock offset.
    pub flows: FlowOptions,
    /// Our Min-SE (RFC 4028 §5): callers asking for a shorter session interval get
    /// 422. The RFC's floor is 90 s; tests use less to stay short.
    pub session_min_se: u32,
    /// SIP over TLS (RFC 3261 §26.2): where to listen and the certificate to show.
    pub tls: Option<TlsListener>,
    /// Serve SIP over UDP from threads of its own (see
    /// `vaxel_transport::sockets::SocketsConfig::udp_threads`): the daemon does, so
    /// a busy engine uses a second core; an engine inside the desktop app does not.
    pub udp_threads: bool,
}

/// A TLS listener of the engine.
#[derive(Debug, Clone)]
pub struct TlsListener {
    /// Address (phones use `;transport=tls`, usually port 5061).
    pub addr: SocketAddr,
    /// Certificate chain, PEM, leaf first.
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
}

/// Something the control API or a test can watch.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EngineEvent {
    /// A user's set of registered devices changed.
    Registration {
        /// Extension.
        extension: String,
        /// Devices now registered.
        devices: usize,
    },
    /// A call changed state.
    Call {
        /// Call record id.
        call: i64,
        /// Caller.
        caller: String,
        /// Dialled number.
        callee: String,
        /// `ringing`, `answered`, `ended`.
        state: String,
    },
    /// A user's presence changed (R-314; see [`crate::presence::compose`]).
    Presence {
        /// Extension.
        extension: String,
        /// The presence now.
        presence: crate::presence::View,
    },
}

/// A user in the directory, with registration and phone state.
#[derive(Debug, Clone, Serialize)]
pub struct DirectoryEntry {
    /// The user.
    #[serde(flatten)]
    pub user: UserRow,
    /// Registered devices.
    pub devices: usize,
    /// `idle`, `ringing` or `busy`.
    pub phone: &'static str,
}

/// A misuse of the engine's command API: the caller's fault, reported to it.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The database refused (the engine's fault; logged).
    #[error("database: {0}")]
    Db(#[from] DbError),
    /// The change is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The engine has stopped.
    #[error("the engine has stopped")]
    Stopped,
}

type Reply<T> = oneshot::Sender<Result<T, CommandError>>;

enum Command {
    Login {
        username: String,
        password: String,
        reply: Reply<Option<UserRow>>,
    },
    User {
        extension: String,
        reply: Reply<Option<UserRow>>,
    },
    Directory {
        reply: Reply<Vec<DirectoryEntry>>,
    },
    History {
        extension: String,
        reply: Reply<Vec<CallRecord>>,
    },
    PutUser {
        user: Box<User>,
        reply: Reply<()>,
    },
    DeleteUser {
        extension: String,
        reply: Reply<bool>,
    },
    Trunks {
        reply: Reply<Vec<Trunk>>,
    },
    PutTrunk {
        trunk: Box<Trunk>,
        reply: Reply<()>,
    },
    DeleteTrunk {
        name: String,
        reply: Reply<bool>,
    },
    Export {
        reply: Reply<String>,
    },
    Bindings {
        reply: Reply<Vec<Binding>>,
    },
    Calls {
        reply: Reply<Vec<CallRecord>>,
    },
    /// Call flows and voicemail (`flows`): runs on the engine task.
    Flow(Box<dyn FnOnce(&mut Engine) + Send>),
}

/// The control side of a running engine: cheap to clone.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    commands: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<EngineEvent>,
    sip: SocketAddr,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

impl EngineHandle {
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, CommandError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .map_err(|_| CommandError::Stopped)?;
        rx.await.map_err(|_| CommandError::Stopped)?
    }

    /// The SIP address the engine listens on.
    pub fn sip_addr(&self) -> SocketAddr {
        self.sip
    }

    /// Live events.
    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.events.subscribe()
    }

    /// Checks SIP credentials (the API's login): the user when the password is right.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<UserRow>, CommandError> {
        let (username, password) = (username.to_owned(), password.to_owned());
        self.ask(|reply| Command::Login {
            username,
            password,
            reply,
        })
        .await
    }

    /// One user.
    pub async fn user(&self, extension: &str) -> Result<Option<UserRow>, CommandError> {
        let extension = extension.to_owned();
        self.ask(|reply| Command::User { extension, reply }).await
    }

    /// The directory with registration and phone state.
    pub async fn directory(&self) -> Result<Vec<DirectoryEntry>, CommandError> {
        self.ask(|reply| Command::Directory { reply }).await
    }

    /// A user's calls, newest first.
    pub async fn history(&self, extension: &str) -> Result<Vec<CallRecord>, CommandError> {
        let extension = extension.to_owned();
        self.ask(|reply| Command::History { extension, reply })
            .await
    }

    /// Adds or replaces a user.
    pub async fn put_user(&self, user: User) -> Result<(), CommandError> {
        self.ask(|reply| Command::PutUser {
            user: Box::new(user),
            reply,
        })
        .await
    }

    /// Removes a user.
    pub async fn delete_user(&self, extension: &str) -> Result<bool, CommandError> {
        let extension = extension.to_owned();
        self.ask(|reply| Command::DeleteUser { extension, reply })
            .await
    }

    /// The trunks.
    pub async fn trunks(&self) -> Result<Vec<Trunk>, CommandError> {
        self.ask(|reply| Command::Trunks { reply }).await
    }

    /// Adds or replaces a trunk.
    pub async fn put_trunk(&self, trunk: Trunk) -> Result<(), CommandError> {
        self.ask(|reply| Command::PutTrunk {
            trunk: Box::new(trunk),
            reply,
        })
        .await
    }

    /// Removes a trunk.
    pub async fn delete_trunk(&self, name: &str) -> Result<bool, CommandError> {
        let name = name.to_owned();
        self.ask(|reply| Command::DeleteTrunk { name, reply }).await
    }

    /// The office as TOML.
    pub async fn export(&self) -> Result<String, CommandError> {
        self.ask(|reply| Command::Export { reply }).await
    }

    /// Current bindings.
    pub async fn bindings(&self) -> Result<Vec<Binding>, CommandError> {
        self.ask(|reply| Command::Bindings { reply }).await
    }

    /// All call records, newest first.
    pub async fn calls(&self) -> Result<Vec<CallRecord>, CommandError> {
        self.ask(|reply| Command::Calls { reply }).await
    }
}

/// Why the engine could not start: the operator's configuration or the machine.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A bad office file.
    #[error(transparent)]
    Office(#[from] crate::office::OfficeError),
    /// The database.
    #[error("database: {0}")]
    Db(#[from] DbError),
    /// Sockets.
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS certificate or key.
    #[error("TLS: {0}")]
    Tls(#[from] vaxel_transport::tls::TlsError),
}

type LegId = u64;
type CallId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LegState {
    Calling,
    Early,
    Confirmed,
    Ended,
}

#[derive(Debug)]
struct Leg {
    call: CallId,
    side: Side,
    /// The INVITE we received (A) or sent (B).
    invite: Request,
    /// The INVITE's transaction while it has no final response.
    invite_tx: Option<TxKey>,
    /// Our tag in this dialog.
    local_tag: String,
    dialog: Option<Dialog>,
    /// Where requests for this leg go: the source of what it sent (NAT-friendly).
    target: Target,
    state: LegState,
    record: i64,
    /// The extension or number of the party on this leg.
    party: String,
    /// The last SDP this leg's party sent (offered to a transfer target).
    sdp: Option<Bytes>,
}

/// A new outgoing leg of a call, for [`Engine::start_leg`].
struct Outgoing<'a> {
    call: CallId,
    side: Side,
    /// The leg's role in the call record ("b", "transfer").
    role: &'static str,
    /// The call record's row.
    record: i64,
    party: &'a str,
    invite: Request,
    /// Our From tag and the INVITE's Call-ID: the dialog's key.
    tag: String,
    call_id: String,
    target: Target,
}

#[derive(Debug)]
struct Call {
    record: i64,
    a: LegId,
    forks: Vec<LegId>,
    answered: Option<LegId>,
    relay: Relay,
    caller: String,
    callee: String,
    /// Final statuses of failed forks.
    failures: Vec<u16>,
    /// A blind transfer the engine is carrying out (RFC 3515, RFC 5589 §6).
    transfer: Option<Transfer>,
}

/// A REFER being executed: new legs ring the transfer target for the party who
/// stays; the first to answer takes the referrer's place on the relay.
#[derive(Debug)]
struct Transfer {
    /// The leg that sent REFER (it leaves the call).
    referrer: LegId,
    /// The relay side the referrer had, which the new leg takes over.
    side: Side,
    /// The legs ringing the target.
    legs: Vec<LegId>,
}

/// An in-dialog request passed from one leg to the other, waiting for its answer.
#[derive(Debug)]
struct Passed {
    server_tx: TxKey,
    request: Request,
    from_leg: LegId,
    to_leg: LegId,
    sent: Request,
}

/// The database behind a mutex only because rusqlite's connection is not `Sync` and
/// the engine task's future must be `Send`; only that task locks it, never across an
/// await, so it is never contended.
struct Locked(std::sync::Mutex<Db>);

impl Locked {
    fn get(&self) -> std::sync::MutexGuard<'_, Db> {
        // A panic while holding it would have ended the task anyway.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Our registration at a provider (a trunk with `register = true`): a REGISTER
/// client with digest, refreshed at half the granted lifetime.
struct TrunkRegistration {
    trunk: Trunk,
    client: vaxel_sip::auth::DigestClient,
    call_id: String,
    tag: String,
    cseq: u32,
    next_at: Instant,
    pending: Option<TxKey>,
    /// Challenges answered in a row without a 2xx (stops a loop on bad credentials).
    challenges: u32,
    registered: bool,
}

enum Tick {
    Second,
}

struct Engine {
    sip: EndpointHandle,
    /// Behind a mutex only because rusqlite's connection is not `Sync` and the task's
    /// future must be `Send`; only this task ever locks it, so it is never contended.
    db: Locked,
    realm: String,
    users: HashMap<String, UserRow>,
    /// Long number → extension.
    numbers: HashMap<String, String>,
    bindings: HashMap<String, Vec<Binding>>,
    trunks: Vec<Trunk>,
    trunk_ips: Vec<IpAddr>,
    emergency: Vec<String>,
    registrar_auth: DigestServer,
    proxy_auth: DigestServer,
    guard: Guard,
    calls: HashMap<CallId, Call>,
    legs: HashMap<LegId, Leg>,
    /// (Call-ID, our tag) → leg.
    dialogs: HashMap<(String, String), LegId>,
    /// INVITE server transaction of an A leg, INVITE client transaction of a B leg.
    invite_txs: HashMap<TxKey, LegId>,
    passed: HashMap<TxKey, Passed>,
    /// In-dialog OPTIONS probing that a call's legs are alive.
    probes: HashMap<TxKey, CallId>,
    /// Re-INVITEs joining a party into another call (attended transfer).
    joins: HashMap<TxKey, xfer::Join>,
    /// Re-INVITEs telling a party who stayed about its new peer's media.
    reoffers: HashMap<TxKey, xfer::Reoffer>,
    /// Re-INVITEs that met glare (491), with when to send them again.
    glare: Vec<(Instant, xfer::Glare)>,
    /// Session timers (RFC 4028) of the legs that negotiated one.
    session_timers: HashMap<LegId, timers::SessionTimer>,
    /// Our refreshing UPDATEs waiting for an answer.
    refreshing: HashMap<TxKey, LegId>,
    min_se: u32,
    session_check: Duration,
    last_session_check: Instant,
    trunk_registrations: Vec<TrunkRegistration>,
    next_id: u64,
    /// Keys the To tags of our answers to requests outside a dialog.
    tag_key: std::collections::hash_map::RandomState,
    /// The relays' sockets on the media address, reused across calls.
    relay_pool: std::sync::Arc<SocketPool>,
    events: broadcast::Sender<EngineEvent>,
    last_keep_alive: Instant,
    /// Call flows, voicemail and feature codes (see `flows`).
    flows: flows::Flows,
    /// The presence server (see `presence`).
    presence: presence::PresenceServer,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn status(code: u16) -> StatusCode {
    StatusCode::new(code).unwrap_or(StatusCode::SERVER_INTERNAL_ERROR)
}

fn sdp_type() -> MediaType {
    MediaType::new("application", "sdp").expect("a valid media type")
}

fn has_sdp(headers: &vaxel_sip::msg::Headers, body: &Bytes) -> bool {
    !body.is_empty()
        && headers
            .content_type()
            .ok()
            .flatten()
            .is_some_and(|t| t.is("application", "sdp"))
}

fn uri_user(uri: &Uri) -> Option<String> {
    match uri {
        Uri::Sip(s) => s.user.as_ref().map(|u| u.to_string()),
        Uri::Tel(t) => Some(t.number.to_string()),
        _ => None,
    }
}

/// The number a caller asks to present (RFC 3325 §9.2 P-Preferred-Identity): the
/// user part of the first identity's SIP URI, or its tel number.
fn preferred_number(req: &Request) -> Option<String> {
    let value = req.headers.get(&HeaderName::PPreferredIdentity)?;
    let first = value.split(',').next()?.trim();
    let identity = vaxel_sip::msg::NameAddr::parse(&bytestring::ByteString::from(first)).ok()?;
    let number = match &identity.uri {
        Uri::Tel(t) if t.global => format!("+{}", t.number),
        other => uri_user(other)?,
    };
    Some(dialled(&number)).filter(|n| !n.is_empty())
}

/// Digits and a leading `+` of a dialled string (visual separators dropped).
fn dialled(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_digit() || *c == '+' || *c == '*' || *c == '#')
        .collect()
}

/// Starts the engine: opens the database in `config.data`, imports the office file
/// (if given), restores bindings, binds SIP and starts the task.
pub async fn start(config: EngineConfig) -> Result<EngineHandle, StartError> {
    std::fs::create_dir_all(&config.data)?;
    let mut db = Db::open(&config.data)?;
    if let Some(path) = &config.office {
        let office = Office::load(path)?;
        db.import_office(&office)?;
        info!("office {} imported", path.display());
    }
    let closed = db.close_interrupted_calls(unix_now())?;
    if closed > 0 {
        info!("{closed} calls from before the restart closed as interrupted");
    }
    let (tls, tls_server) = match &config.tls {
        Some(t) => {
            let chain = vaxel_transport::tls::load_certs(&t.cert)?;
            let key = vaxel_transport::tls::load_key(&t.key)?;
            (
                vec![t.addr],
                Some(vaxel_transport::tls::server_config(chain, key)?),
            )
        }
        None => (Vec::new(), None),
    };
    let (sip, events_rx) = Endpoint::start(EndpointConfig {
        sockets: SocketsConfig {
            udp: vec![config.sip],
            tcp: vec![config.sip],
            tls,
            tls_server,
            udp_threads: config.udp_threads,
            ..Default::default()
        },
        ..Default::default()
    })
    .await?;
    let sip_addr = sip.local_addr(TransportKind::Udp).unwrap_or(config.sip);
    let media_ip = vaxel_transport::sockets::advertised_ip(sip_addr);
    let realm = db.domain()?;
    // The nonce key is random per run: nonces from before a restart come back stale
    // and phones retry silently (RFC 7616 §3.3).
    let mut key = vec![0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
    let algorithms: Vec<Algorithm> = db
        .digest()?
        .iter()
        .filter_map(|a| Algorithm::from_name(a))
        .collect();
    let auth_config = |kind| {
        let mut c = ServerConfig::new(kind, realm.clone());
        // Devices that put the next hop instead of the Request-URI in the digest `uri`
        // (SIPp always does; so do phones behind some proxies) would get 400. The
        // digest still covers method and nonce, and replays are stopped by the
        // nonce-count window, so the exact-URI rule of RFC 7616 §3.4.6 is relaxed.
        c.check_uri = false;
        // Every REGISTER and INVITE from outside gets its own nonce. With the default
        // 4096 tracked nonces, more than ~4000 challenges a second forgot nonces
        // issued in the same second, and their (correct) answers got stale=true: that,
        // not CPU, capped REGISTER/s at ~4000. 65536 (a few MB) keeps replay
        // protection exact up to tens of thousands of challenges a second.
        c.max_tracked_nonces = 65536;
        if !algorithms.is_empty() {
            c.algorithms = algorithms.clone();
        }
        c
    };
    let registrar_auth = DigestServer::new(auth_config(ChallengeKind::Www), key.clone())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let proxy_auth = DigestServer::new(auth_config(ChallengeKind::Proxy), key)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let flows = flows::Flows::new(&config.flows, config.data.clone(), &db)?;
    let (events, _) = broadcast::channel(256);
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let mut engine = Engine {
        sip,
        guard: Guard::new(db.protection()?, []),
        db: Locked(std::sync::Mutex::new(db)),
        realm,
        users: HashMap::new(),
        numbers: HashMap::new(),
        bindings: HashMap::new(),
        trunks: Vec::new(),
        trunk_ips: Vec::new(),
        emergency: Vec::new(),
        registrar_auth,
        proxy_auth,
        calls: HashMap::new(),
        legs: HashMap::new(),
        dialogs: HashMap::new(),
        invite_txs: HashMap::new(),
        passed: HashMap::new(),
        probes: HashMap::new(),
        joins: HashMap::new(),
        reoffers: HashMap::new(),
        glare: Vec::new(),
        session_timers: HashMap::new(),
        refreshing: HashMap::new(),
        min_se: config.session_min_se.max(1),
        session_check: config.session_check,
        last_session_check: Instant::now(),
        trunk_registrations: Vec::new(),
        next_id: 1,
        tag_key: std::collections::hash_map::RandomState::new(),
        relay_pool: SocketPool::new(media_ip),
        events: events.clone(),
        last_keep_alive: Instant::now(),
        flows,
        presence: presence::PresenceServer::new(),
    };
    engine.reload()?;
    let restored: usize = engine.bindings.values().map(Vec::len).sum();
    let publications = engine.presence_restore();
    info!(
        "SIP on {sip_addr} (udp, tcp), realm {}, {} users, {restored} bindings and {publications} presence publications restored",
        engine.realm,
        engine.users.len()
    );
    tokio::spawn(engine.run(events_rx, cmd_rx));
    Ok(EngineHandle {
        commands: cmd_tx,
        events,
        sip: sip_addr,
    })
}

impl Engine {
    /// Reloads users, trunks, emergency numbers and bindings from the database.
    fn reload(&mut self) -> Result<(), DbError> {
        self.users = self
            .db
            .get()
            .users()?
            .into_iter()
            .map(|u| (u.extension.clone(), u))
            .collect();
        self.numbers = self
            .users
            .values()
            .filter_map(|u| u.number.clone().map(|n| (n, u.extension.clone())))
            .collect();
        self.trunks = self.db.get().trunks()?;
        self.trunk_ips = self
            .trunks
            .iter()
            .filter_map(|t| t.host.parse().ok())
            .collect();
        self.emergency = self.db.get().emergency()?;
        self.trunk_registrations = self
            .trunks
            .iter()
            .filter(|t| t.register)
            .map(|t| TrunkRegistration {
                trunk: t.clone(),
                client: vaxel_sip::auth::DigestClient::new(
                    t.username.clone(),
                    vaxel_sip::auth::Secret::Password(t.password.clone()),
                ),
                call_id: new_call_id(&mut rand::rng(), &self.realm),
                tag: token(),
                cseq: 0,
                next_at: Instant::now(),
                pending: None,
                challenges: 0,
                registered: false,
            })
            .collect();
        let mut limits = self.db.get().protection()?;
        limits
            .allow
            .extend(self.trunk_ips.iter().map(|ip| ip.to_string()));
        self.guard = Guard::new(limits, self.trunk_ips.clone());
        self.flow_reload();
        let now = unix_now();
        self.db.get().expire_bindings(now)?;
        self.bindings.clear();
        for b in self.db.get().bindings(now)? {
            if self.users.contains_key(&b.extension) {
                self.bindings
                    .entry(b.extension.clone())
                    .or_default()
                    .push(b);
            }
        }
        Ok(())
    }

    async fn run(
        mut self,
        mut sip_events: vaxel_transport::Events,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut flow_notes = self.flows.take_notes();
        loop {
            let flow_timer = self.flows.next_timer();
            tokio::select! {
                Some((call, note)) = flow_notes.recv() => self.flow_note(call, note).await,
                _ = tokio::time::sleep(flow_timer) => self.flow_tick().await,
                ev = sip_events.recv() => match ev {
                    Some(ev) => self.sip_event(ev).await,
                    None => break,
                },
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    // Every handle is gone: keep serving SIP (the daemon drops none).
                    None => commands = mpsc::unbounded_channel().1,
                },
                _ = tick.tick() => self.timer(Tick::Second).await,
            }
            self.presence_sync().await;
        }
    }

    fn emit(&self, e: EngineEvent) {
        let _ = self.events.send(e);
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Flow(f) => f(self),
            Command::Login {
                username,
                password,
                reply,
            } => {
                let ok = self.users.get(&username).filter(|u| {
                    let h = ha1(DigestHash::Sha256, &u.extension, &self.realm, &password);
                    // Constant-time enough for hex of equal length: compare all bytes.
                    h.len() == u.ha1_sha256.len()
                        && h.bytes()
                            .zip(u.ha1_sha256.bytes())
                            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                            == 0
                });
                let _ = reply.send(Ok(ok.cloned()));
            }
            Command::User { extension, reply } => {
                let _ = reply.send(Ok(self.users.get(&extension).cloned()));
            }
            Command::Directory { reply } => {
                let mut list: Vec<DirectoryEntry> = self
                    .users
                    .values()
                    .map(|u| DirectoryEntry {
                        user: u.clone(),
                        devices: self.bindings.get(&u.extension).map_or(0, Vec::len),
                        phone: self.phone_state(&u.extension),
                    })
                    .collect();
                list.sort_by(|a, b| a.user.extension.cmp(&b.user.extension));
                let _ = reply.send(Ok(list));
            }
            Command::History { extension, reply } => {
                let mut parties = vec![extension.as_str()];
                let number = self.users.get(&extension).and_then(|u| u.number.clone());
                if let Some(n) = &number {
                    parties.push(n);
                }
                let _ = reply.send(self.db.get().calls_of(&parties, 200).map_err(Into::into));
            }
            Command::PutUser { user, reply } => {
                let r = self.put_user(&user);
                let _ = reply.send(r);
            }
            Command::DeleteUser { extension, reply } => {
                let deleted = self.db.get().delete_user(&extension);
                let r = deleted
                    .and_then(|d| self.reload().map(|_| d))
                    .map_err(Into::into);
                let _ = reply.send(r);
            }
            Command::Trunks { reply } => {
                let _ = reply.send(Ok(self.trunks.clone()));
            }
            Command::PutTrunk { trunk, reply } => {
                let r = self.put_trunk(&trunk);
                let _ = reply.send(r);
            }
            Command::DeleteTrunk { name, reply } => {
                let deleted = self.db.get().delete_trunk(&name);
                let r = deleted
                    .and_then(|d| self.reload().map(|_| d))
                    .map_err(Into::into);
                let _ = reply.send(r);
            }
            Command::Export { reply } => {
                let _ = reply.send(
                    self.db
                        .get()
                        .export_office()
                        .map(|o| o.to_toml())
                        .map_err(Into::into),
                );
            }
            Command::Bindings { reply } => {
                let _ = reply.send(Ok(self.bindings.values().flatten().cloned().collect()));
            }
            Command::Calls { reply } => {
                let _ = reply.send(self.db.get().calls(1000).map_err(Into::into));
            }
        }
    }

    /// Validates a user change against the whole office (the same rules as the file),
    /// then stores it; nothing changes when it is refused.
    fn put_user(&mut self, user: &User) -> Result<(), CommandError> {
        let mut office = self.db.get().export_office()?;
        office
            .users
            .retain(|u| u.extension.get_ref() != user.extension.get_ref());
        office.users.push(user.clone());
        let text = office.to_toml();
        Office::parse("change", &text).map_err(|e| CommandError::Invalid(e.reason))?;
        self.db.get().put_user(user)?;
        self.reload()?;
        Ok(())
    }

    fn put_trunk(&mut self, trunk: &Trunk) -> Result<(), CommandError> {
        let mut office = self.db.get().export_office()?;
        office.trunks.retain(|t| t.name != trunk.name);
        office.trunks.push(trunk.clone());
        Office::parse("change", &office.to_toml()).map_err(|e| CommandError::Invalid(e.reason))?;
        self.db.get().put_trunk(trunk)?;
        self.reload()?;
        Ok(())
    }

    fn phone_state(&self, extension: &str) -> &'static str {
        let mut state = "idle";
        for leg in self.legs.values() {
            if leg.party == extension {
                match leg.state {
                    LegState::Confirmed => return "busy",
                    LegState::Calling | LegState::Early => state = "ringing",
                    LegState::Ended => {}
                }
            }
        }
        state
    }

    /// The To tag for our answers to an out-of-dialog request: the same for the
    /// challenge and the final answer of one caller's request (as Kamailio's `sl`
    /// does), because some UAs (SIPp) keep the first To tag they see.
    fn tag_for(&self, req: &Request) -> String {
        use std::hash::{BuildHasher, Hash, Hasher};
        let mut h = self.tag_key.build_hasher();
        req.headers.call_id().ok().hash(&mut h);
        req.headers
            .from()
            .ok()
            .and_then(|f| f.tag().map(str::to_owned))
            .hash(&mut h);
        format!("{:016x}", h.finish())
    }

    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    async fn timer(&mut self, _t: Tick) {
        self.flow_tick().await;
        let now = unix_now();
        let mut changed = Vec::new();
        for (ext, list) in self.bindings.iter_mut() {
            let before = list.len();
            list.retain(|b| b.expires_at > now);
            if list.len() != before {
                changed.push((ext.clone(), list.len()));
            }
        }
        if !changed.is_empty() {
            if let Err(e) = self.db.get().expire_bindings(now) {
                warn!("cannot expire bindings: {e}");
            }
            for (extension, devices) in changed {
                self.emit(EngineEvent::Registration { extension, devices });
            }
        }
        self.guard.purge(Instant::now());
        for i in 0..self.trunk_registrations.len() {
            let r = &self.trunk_registrations[i];
            if r.pending.is_none() && r.next_at <= Instant::now() {
                self.send_trunk_register(i).await;
            }
        }
        if self.last_session_check.elapsed() >= self.session_check {
            self.last_session_check = Instant::now();
            self.probe_calls().await;
        }
        self.session_timers_tick().await;
        self.glare_tick().await;
        if self.last_keep_alive.elapsed() >= KEEP_ALIVE {
            self.last_keep_alive = Instant::now();
            self.keep_alive().await;
        }
    }

    /// OPTIONS to every UDP contact, sent to where its REGISTER came from, so NAT
    /// bindings stay open; the answers are not needed.
    async fn keep_alive(&mut self) {
        let targets: Vec<(String, Target)> = self
            .bindings
            .values()
            .flatten()
            .filter(|b| b.transport == "UDP")
            .filter_map(|b| Some((b.contact.clone(), binding_target(b)?)))
            .collect();
        for (contact, target) in targets {
            let Ok(uri) = Uri::parse(&contact.into()) else {
                continue;
            };
            let mut r = Request::new(Method::Options, uri.clone());
            r.headers
                .push_value(HeaderName::Via, &self.sip.via(target.peer.transport));
            r.headers.push(HeaderName::MaxForwards, "70");
            r.headers.push(HeaderName::To, format!("<{uri}>"));
            r.headers.push(
                HeaderName::From,
                format!("<sip:keepalive@{}>;tag={}", self.realm, token()),
            );
            r.headers.push(HeaderName::CallId, token());
            r.headers.push(HeaderName::CSeq, "1 OPTIONS");
            let _ = self.sip.send_request(r, target).await;
        }
    }

    async fn sip_event(&mut self, ev: TxEvent) {
        match ev {
            TxEvent::Request { tx, request, from } => self.request(tx, request, from).await,
            TxEvent::Response { tx, response } => self.response(tx, response).await,
            TxEvent::Cancelled { invite, .. } => self.cancelled(invite).await,
            TxEvent::Stray {
                message: Message::Request(ack),
                ..
            } if ack.method == Method::Ack => self.ack(&ack).await,
            TxEvent::Stray {
                message: Message::Response(ok),
                ..
            } => self.stray_ok(ok).await,
            TxEvent::Timeout { tx } | TxEvent::TransportError { tx } => self.tx_failed(tx).await,
            TxEvent::Terminated { tx } => {
                if let Some(leg) = self.invite_txs.remove(&tx)
                    && let Some(l) = self.legs.get_mut(&leg)
                    && l.invite_tx == Some(tx)
                {
                    l.invite_tx = None;
                }
                self.passed.remove(&tx);
            }
            _ => {}
        }
    }

    async fn respond(&self, tx: TxKey, response: Response) {
        // Nothing to do about a failure but log it, which the endpoint does: no need
        // to wait for its answer.
        self.sip.respond(tx, response);
    }

    async fn reply(&self, tx: TxKey, req: &Request, code: u16) {
        let mut r = Response::from_request(req, status(code));
        if code != 100 && !is_in_dialog(req) {
            let _ = r.set_to_tag(&self.tag_for(req));
        }
        if code == 405 {
            r.headers.push(HeaderName::Allow, ALLOW);
        }
        self.respond(tx, r).await;
    }

    async fn request(&mut self, tx: TxKey, req: Request, from: Peer) {
        match self.guard.request(from.addr.ip(), Instant::now()) {
            Verdict::Allow => {}
            Verdict::Drop => return,
            Verdict::Banned => {
                info!(
                    "source {} banned: request rate over the limit",
                    from.addr.ip()
                );
                return;
            }
        }
        if is_in_dialog(&req) {
            return self.in_dialog(tx, req).await;
        }
        match req.method {
            Method::Register => self.register(tx, req, from).await,
            Method::Invite => self.invite(tx, req, from).await,
            Method::Options => {
                let mut ok = Response::from_request(&req, StatusCode::OK);
                let _ = ok.set_to_tag(&self.tag_for(&req));
                ok.headers.push(HeaderName::Allow, ALLOW);
                ok.headers.push(HeaderName::Accept, "application/sdp");
                self.respond(tx, ok).await;
            }
            Method::Subscribe | Method::Publish => self.presence_request(tx, req, from).await,
            Method::Message | Method::Notify => {
                // Challenged like everything from outside (R-503), then refused: these
                // services are not offered yet.
                if self
                    .authenticate(tx, &req, from, ChallengeKind::Proxy)
                    .await
                    .is_some()
                {
                    self.reply(tx, &req, 405).await;
                }
            }
            Method::Bye | Method::Info | Method::Update | Method::Prack | Method::Refer => {
                self.reply(tx, &req, 481).await
            }
            _ => self.reply(tx, &req, 405).await,
        }
    }

    /// Digest authentication (RFC 3261 §22): the user, or `None` after answering
    /// 401/407 (or 400 for unreadable credentials). Unknown users and wrong passwords
    /// get the same fresh challenge; each counts against the source (R-503).
    async fn authenticate(
        &mut self,
        tx: TxKey,
        req: &Request,
        from: Peer,
        kind: ChallengeKind,
    ) -> Option<UserRow> {
        let header = match kind {
            ChallengeKind::Www => HeaderName::Authorization,
            ChallengeKind::Proxy => HeaderName::ProxyAuthorization,
        };
        let values: Vec<String> = req
            .headers
            .get_all(&header)
            .map(|v| v.to_string())
            .collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let uri = req.uri.to_string();
        let parts = RequestParts {
            method: req.method.as_str(),
            request_uri: &uri,
            body: &req.body,
        };
        let now = unix_now() as u64;
        let users = &self.users;
        let server = match kind {
            ChallengeKind::Www => &mut self.registrar_auth,
            ChallengeKind::Proxy => &mut self.proxy_auth,
        };
        let verdict = server.verify(&parts, &refs, now, |q| {
            // A plain username is the key; only a userhash (RFC 7616 §3.4.4) needs
            // every user hashed.
            let found = if q.is_userhash {
                users.values().find(|u| q.matches(&u.extension))
            } else {
                users.get(q.username)
            };
            found.and_then(|u| {
                Some(StoredUser {
                    username: u.extension.clone(),
                    ha1: u.ha1(q.hash)?.to_owned(),
                })
            })
        });
        match verdict {
            Verification::Authenticated(u) => return self.users.get(u.username()).cloned(),
            Verification::Malformed(e) => {
                debug!("unreadable credentials from {}: {e}", from.addr);
                self.reply(tx, req, 400).await;
                return None;
            }
            Verification::Rejected(reason) => {
                debug!("authentication from {} refused: {reason:?}", from.addr);
                if self.guard.auth_failed(from.addr.ip(), Instant::now()) {
                    info!(
                        "source {} banned: too many failed authentications",
                        from.addr.ip()
                    );
                    return None;
                }
            }
            _ => {}
        }
        let mut random = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut random);
        let server = match kind {
            ChallengeKind::Www => &self.registrar_auth,
            ChallengeKind::Proxy => &self.proxy_auth,
        };
        let challenges = server.challenge(now, random, verdict.is_stale());
        let mut r = Response::from_request(req, status(kind.status_code()));
        let _ = r.set_to_tag(&self.tag_for(req));
        let name = match kind {
            ChallengeKind::Www => HeaderName::WwwAuthenticate,
            ChallengeKind::Proxy => HeaderName::ProxyAuthenticate,
        };
        for c in challenges {
            r.headers.push(name.clone(), c.to_string());
        }
        self.respond(tx, r).await;
        None
    }

    // ---- Registrar (RFC 3261 §10.3) ----

    async fn register(&mut self, tx: TxKey, req: Request, from: Peer) {
        let Some(user) = self.authenticate(tx, &req, from, ChallengeKind::Www).await else {
            return;
        };
        // §10.3 step 6: the authenticated user may only register their own AOR.
        let aor = req.headers.to().ok().and_then(|t| uri_user(&t.uri));
        if aor.as_deref() != Some(user.extension.as_str()) && aor != user.number {
            return self.reply(tx, &req, 403).await;
        }
        let ext = user.extension.clone();
        let contacts = match req.headers.contacts() {
            Ok(c) => c,
            Err(_) => return self.reply(tx, &req, 400).await,
        };
        let header_expires = req.headers.expires().ok().flatten();
        let call_id = req
            .headers
            .call_id()
            .map(|c| c.to_string())
            .unwrap_or_default();
        let cseq = req.headers.cseq().map(|c| c.seq).unwrap_or(0);
        let ua = req
            .headers
            .user_agent()
            .map(|u| u.to_string())
            .unwrap_or_default();
        let now = unix_now();
        let before = self.bindings.get(&ext).map_or(0, Vec::len);
        let mut changes = Vec::new();
        if contacts.iter().any(|c| matches!(c, Contact::Wildcard)) {
            // §10.3 step 6: `*` only alone and with Expires: 0.
            if contacts.len() != 1 || header_expires != Some(0) {
                return self.reply(tx, &req, 400).await;
            }
            for b in self.bindings.remove(&ext).unwrap_or_default() {
                changes.push(BindingChange::Delete {
                    extension: ext.clone(),
                    contact: b.contact,
                });
            }
        } else {
            for c in &contacts {
                let Some(addr) = c.address() else { continue };
                let expires = c.expires().or(header_expires).unwrap_or(DEFAULT_EXPIRES);
                if expires != 0 && expires < MIN_EXPIRES {
                    let mut r = Response::from_request(&req, status(423));
                    let _ = r.set_to_tag(&self.tag_for(&req));
                    r.headers
                        .push(HeaderName::MinExpires, MIN_EXPIRES.to_string());
                    return self.respond(tx, r).await;
                }
                let contact = addr.uri.to_string();
                let list = self.bindings.entry(ext.clone()).or_default();
                // §10.3 step 7: an older request for the same Call-ID is out of order.
                if let Some(old) = list.iter().find(|b| b.contact == contact)
                    && old.call_id == call_id
                    && old.cseq > cseq
                {
                    return self.reply(tx, &req, 500).await;
                }
                list.retain(|b| b.contact != contact);
                if expires == 0 {
                    changes.push(BindingChange::Delete {
                        extension: ext.clone(),
                        contact,
                    });
                    continue;
                }
                let b = Binding {
                    extension: ext.clone(),
                    contact,
                    transport: from.transport.via_token().to_owned(),
                    source: from.addr.to_string(),
                    expires_at: now + i64::from(expires.min(MAX_EXPIRES)),
                    call_id: call_id.clone(),
                    cseq,
                    user_agent: ua.clone(),
                };
                changes.push(BindingChange::Put(b.clone()));
                list.push(b);
            }
        }
        let tag = self.tag_for(&req);
        let mut ok = Response::from_request(&req, StatusCode::OK);
        let _ = ok.set_to_tag(&tag);
        let list = self.bindings.get(&ext).map_or(&[][..], Vec::as_slice);
        let devices = list.len();
        for b in list {
            ok.headers.push(
                HeaderName::Contact,
                format!("<{}>;expires={}", b.contact, (b.expires_at - now).max(0)),
            );
        }
        if changes.is_empty() {
            self.respond(tx, ok).await;
        } else {
            // The 200 goes out once the bindings are committed (they survive a
            // kill -9 from then on); the SIP task goes on meanwhile.
            let mut failed = Response::from_request(&req, status(500));
            let _ = failed.set_to_tag(&tag);
            let sip = self.sip.clone();
            let done: Done = Box::new(move |stored| match stored {
                Ok(()) => sip.respond(tx, ok),
                Err(e) => {
                    warn!("cannot store a binding: {e}");
                    sip.respond(tx, failed);
                }
            });
            // On failure `done` has answered already.
            let _ = self.db.get().store_bindings(changes, Some(done));
        }
        if devices != before {
            debug!("{ext}: {devices} devices registered");
            self.emit(EngineEvent::Registration {
                extension: ext,
                devices,
            });
        }
    }

    // ---- B2BUA ----

    async fn invite(&mut self, tx: TxKey, req: Request, from: Peer) {
        if req.headers.contains(&HeaderName::Replaces) {
            return self.invite_replaces(tx, req, from).await;
        }
        let from_trunk = self
            .trunks
            .iter()
            .find(|t| t.host.parse::<IpAddr>().ok() == Some(from.addr.ip()))
            .cloned();
        let dialled_number = dialled(&uri_user(&req.uri).unwrap_or_default());
        let (caller_id, caller_name, caller_party, direction, targets): (
            String,
            String,
            String,
            &str,
            Targets,
        ) = if let Some(trunk) = from_trunk {
            // Inbound: the provider's number (Request-URI, else To) names the user.
            let to_user = req
                .headers
                .to()
                .ok()
                .and_then(|t| uri_user(&t.uri))
                .map(|u| dialled(&u))
                .unwrap_or_default();
            let target = trunk
                .inbound
                .iter()
                .find(|i| i.number == dialled_number || i.number == to_user)
                .map(|i| i.target.get_ref().clone())
                .or_else(|| self.user_for(&dialled_number));
            if self.flow_invite(tx, &req, from, None).await {
                return;
            }
            let Some(ext) = target else {
                return self.reply(tx, &req, 404).await;
            };
            let caller = req
                .headers
                .from()
                .ok()
                .and_then(|f| uri_user(&f.uri))
                .unwrap_or_else(|| "anonymous".into());
            (
                caller.clone(),
                String::new(),
                caller,
                "inbound",
                Targets::User(ext),
            )
        } else {
            let Some(user) = self
                .authenticate(tx, &req, from, ChallengeKind::Proxy)
                .await
            else {
                return;
            };
            if self.flow_invite(tx, &req, from, Some(&user)).await {
                return;
            }
            let targets = if let Some(ext) = self.user_for(&dialled_number) {
                Targets::User(ext)
            } else if self.emergency.contains(&dialled_number) {
                // Emergency numbers are always allowed (R-313, R-503).
                match self.trunks.first() {
                    Some(t) => Targets::Trunk(t.clone(), dialled_number.clone()),
                    None => return self.reply(tx, &req, 503).await,
                }
            } else if let Some(t) = self
                .trunks
                .iter()
                .find(|t| {
                    t.outbound_prefixes
                        .iter()
                        .any(|p| !p.is_empty() && dialled_number.starts_with(p.as_str()))
                })
                .cloned()
            {
                if !user.external_calls {
                    debug!("{}: external call refused (not permitted)", user.extension);
                    return self.reply(tx, &req, 403).await;
                }
                Targets::Trunk(t, dialled_number.clone())
            } else {
                return self.reply(tx, &req, 404).await;
            };
            let outward = matches!(targets, Targets::Trunk(..));
            // Inside the office the caller shows as the short number; outward as the
            // long number (R-302).
            // A user may present another number of the plan it is permitted (R-302),
            // asked for with P-Preferred-Identity (RFC 3325 §9.2); a number it is not
            // permitted is ignored.
            let own = || {
                user.number.clone().unwrap_or_else(|| match &targets {
                    Targets::Trunk(t, _) => t.caller_id.clone(),
                    Targets::User(_) => String::new(),
                })
            };
            let shown = if outward {
                match preferred_number(&req) {
                    Some(n) if user.present_numbers.iter().any(|p| dialled(p) == n) => n,
                    Some(_) => {
                        debug!(
                            "{}: presenting another number is not permitted",
                            user.extension
                        );
                        own()
                    }
                    None => own(),
                }
            } else {
                user.extension.clone()
            };
            (
                shown,
                user.name.clone(),
                user.extension.clone(),
                if outward { "outbound" } else { "internal" },
                targets,
            )
        };
        let max_forwards = req.headers.max_forwards().ok().flatten().unwrap_or(70);
        if max_forwards == 0 {
            return self.reply(tx, &req, 483).await;
        }
        if self.session_too_small(tx, &req).await {
            return;
        }
        let offer = has_sdp(&req.headers, &req.body);
        let b_targets: Vec<(Uri, Target, String)> = match &targets {
            Targets::User(ext) => {
                let list = self.bindings.get(ext).cloned().unwrap_or_default();
                list.iter()
                    .filter_map(|b| {
                        Some((
                            Uri::parse(&b.contact.clone().into()).ok()?,
                            binding_target(b)?,
                            ext.clone(),
                        ))
                    })
                    .collect()
            }
            Targets::Trunk(t, number) => {
                let Some(target) = self.trunk_target(t).await else {
                    return self.reply(tx, &req, 503).await;
                };
                let mut uri = SipUri::new(vaxel_sip::msg::Host::from(target.peer.addr.ip()))
                    .with_port(target.peer.addr.port())
                    .with_user(number);
                if t.transport == "tcp" {
                    uri = uri.with_param("transport", Some("tcp"));
                }
                vec![(Uri::Sip(uri), target, number.clone())]
            }
        };
        if b_targets.is_empty() {
            return self.reply(tx, &req, 480).await;
        }
        let relay = match Relay::start(&self.relay_pool).await {
            Ok(r) => r,
            Err(e) => {
                warn!("no media relay: {e}");
                return self.reply(tx, &req, 503).await;
            }
        };
        let now = unix_now();
        let callee = match &targets {
            Targets::User(ext) => ext.clone(),
            Targets::Trunk(_, n) => n.clone(),
        };
        let started = self
            .db
            .get()
            .start_call(&caller_party, &callee, direction, now);
        let record = match started {
            Ok(r) => r,
            Err(e) => {
                warn!("cannot record a call: {e}");
                return self.reply(tx, &req, 500).await;
            }
        };
        // SRTP is terminated per leg on routed calls (see `relay`).
        relay.terminate();
        let b_body = if offer {
            match relay.pass(Side::A, &req.body) {
                Some(body) => Some(body),
                None => return self.reply(tx, &req, 400).await,
            }
        } else {
            None
        };
        let call_id = self.new_id();
        let a_leg = self.new_id();
        let a_tag = self.tag_for(&req);
        let a_record = self
            .db
            .get()
            .add_leg(record, "a", &caller_party, &req.uri.to_string(), now)
            .unwrap_or(0);
        let sip_call_id = req
            .headers
            .call_id()
            .map(|c| c.to_string())
            .unwrap_or_default();
        self.dialogs.insert((sip_call_id, a_tag.clone()), a_leg);
        self.invite_txs.insert(tx, a_leg);
        self.legs.insert(
            a_leg,
            Leg {
                call: call_id,
                side: Side::A,
                invite: req.clone(),
                invite_tx: Some(tx),
                local_tag: a_tag,
                dialog: None,
                target: Target::new(from.transport, from.addr),
                state: LegState::Calling,
                record: a_record,
                party: caller_party.clone(),
                sdp: offer.then(|| req.body.clone()),
            },
        );
        let mut forks = Vec::new();
        for (uri, target, party) in b_targets {
            let leg = self.new_id();
            let tag = token();
            let cid = new_call_id(&mut rand::rng(), &self.realm);
            let mut invite = Request::new(Method::Invite, uri.clone());
            invite
                .headers
                .push_value(HeaderName::Via, &self.sip.via(target.peer.transport));
            invite
                .headers
                .push(HeaderName::MaxForwards, (max_forwards - 1).to_string());
            let from_uri = format!("sip:{caller_id}@{}", self.realm);
            let from_hdr = if caller_name.is_empty() {
                format!("<{from_uri}>;tag={tag}")
            } else {
                format!(
                    "\"{}\" <{from_uri}>;tag={tag}",
                    caller_name.replace('"', "")
                )
            };
            invite.headers.push(HeaderName::From, from_hdr);
            let to_uri = match &targets {
                Targets::User(_) => format!("<sip:{party}@{}>", self.realm),
                Targets::Trunk(..) => format!("<{uri}>"),
            };
            invite.headers.push(HeaderName::To, to_uri);
            invite.headers.push(HeaderName::CallId, cid.clone());
            invite.headers.push(HeaderName::CSeq, "1 INVITE");
            invite.headers.push(
                HeaderName::Contact,
                format!("<{}>", self.sip.contact_uri("vaxel", target.peer.transport)),
            );
            invite.headers.push(HeaderName::Allow, ALLOW);
            self.session_timer_request(&mut invite);
            if matches!(targets, Targets::Trunk(..)) {
                invite.headers.push(
                    HeaderName::PAssertedIdentity,
                    format!("<sip:{caller_id}@{}>", self.realm),
                );
            }
            if let Some(body) = &b_body {
                invite.set_body(&sdp_type(), Bytes::from(body.clone()));
            }
            let out = Outgoing {
                call: call_id,
                side: Side::B,
                role: "b",
                record,
                party: &party,
                invite,
                tag,
                call_id: cid,
                target,
            };
            if self.start_leg(leg, out, now).await {
                forks.push(leg);
            }
        }
        self.calls.insert(
            call_id,
            Call {
                record,
                a: a_leg,
                forks: forks.clone(),
                answered: None,
                relay,
                caller: caller_party.clone(),
                callee: callee.clone(),
                failures: Vec::new(),
                transfer: None,
            },
        );
        if forks.is_empty() {
            return self.fail_call(call_id, 480).await;
        }
        debug!(
            "call {record}: {caller_party} → {callee}, {} legs",
            forks.len()
        );
        self.emit(EngineEvent::Call {
            call: record,
            caller: caller_party,
            callee,
            state: "ringing".into(),
        });
    }

    fn user_for(&self, number: &str) -> Option<String> {
        if self.users.contains_key(number) {
            return Some(number.to_owned());
        }
        self.numbers.get(number).cloned()
    }

    async fn trunk_target(&self, t: &Trunk) -> Option<Target> {
        let kind = if t.transport == "tcp" {
            TransportKind::Tcp
        } else {
            TransportKind::Udp
        };
        if let Ok(ip) = t.host.parse::<IpAddr>() {
            return Some(Target::new(kind, SocketAddr::new(ip, t.port)));
        }
        let uri = Uri::parse(&format!("sip:{}:{}", t.host, t.port).into()).ok()?;
        self.sip.resolve(&uri).await.ok()?.into_iter().next()
    }

    /// A response to an INVITE we sent on a B leg, or to a request passed between legs.
    async fn response(&mut self, tx: TxKey, resp: Response) {
        if self.presence.owns_tx(tx) {
            return self.presence_response(tx, resp).await;
        }
        if self.passed.contains_key(&tx) {
            return self.passed_response(tx, resp).await;
        }
        if self.joins.contains_key(&tx) {
            return self.join_response(tx, resp).await;
        }
        if self.reoffers.contains_key(&tx) {
            return self.reoffer_response(tx, resp).await;
        }
        if let Some(i) = self
            .trunk_registrations
            .iter()
            .position(|r| r.pending == Some(tx))
        {
            return self.trunk_register_response(i, resp).await;
        }
        if self.probes.contains_key(&tx) && resp.status.is_provisional() {
            return;
        }
        if let Some(call) = self.probes.remove(&tx) {
            self.refresh_answered(tx, &resp).await;
            // Only "no such dialog" and timeouts mean dead; 405/501 are alive phones.
            if matches!(resp.status.as_u16(), 481 | 408) {
                self.drop_dead_call(call).await;
            }
            return;
        }
        let Some(&leg_id) = self.invite_txs.get(&tx) else {
            return;
        };
        let Some(leg) = self.legs.get(&leg_id) else {
            return;
        };
        let call_id = leg.call;
        let code = resp.status.as_u16();
        if code == 100 || self.retry_other_profile(tx, &resp).await {
            return;
        }
        if self
            .calls
            .get(&call_id)
            .and_then(|c| c.transfer.as_ref())
            .is_some_and(|t| t.legs.contains(&leg_id))
        {
            return self.transfer_response(call_id, leg_id, resp).await;
        }
        let Some(leg) = self.legs.get(&leg_id) else {
            return;
        };
        if leg.side != Side::B || leg.state == LegState::Confirmed && !resp.status.is_success() {
            return;
        }
        if resp.status.is_provisional() {
            self.b_provisional(call_id, leg_id, resp).await;
        } else if resp.status.is_success() {
            self.b_answered(call_id, leg_id, resp).await;
        } else if !((300..400).contains(&code) && self.flow_redirect(call_id, leg_id, &resp).await)
        {
            self.b_failed(call_id, leg_id, code).await;
        }
    }

    async fn b_provisional(&mut self, call_id: CallId, leg_id: LegId, resp: Response) {
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            return;
        };
        if leg.state == LegState::Calling {
            leg.state = LegState::Early;
        }
        let Some(call) = self.calls.get(&call_id) else {
            return;
        };
        if call.answered.is_some() {
            return;
        }
        let Some(a) = self.legs.get(&call.a) else {
            return;
        };
        let (Some(a_tx), a_tag) = (a.invite_tx, a.local_tag.clone()) else {
            return;
        };
        let mut r = Response::from_request(&a.invite, resp.status);
        let _ = r.set_to_tag(&a_tag);
        r.headers.push(
            HeaderName::Contact,
            format!(
                "<{}>",
                self.sip.contact_uri("vaxel", a.target.peer.transport)
            ),
        );
        // Early media (183 with SDP) goes through the relay too.
        if has_sdp(&resp.headers, &resp.body)
            && let Some(body) = call.relay.pass(Side::B, &resp.body)
        {
            set_response_body(&mut r, &sdp_type(), Bytes::from(body));
        }
        if let Some(a) = self.legs.get_mut(&call.a) {
            a.state = LegState::Early;
        }
        self.respond(a_tx, r).await;
    }

    async fn b_answered(&mut self, call_id: CallId, leg_id: LegId, resp: Response) {
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            return;
        };
        let first_for_leg = leg.dialog.is_none() || leg.state != LegState::Confirmed;
        if leg.dialog.is_none() {
            match Dialog::from_uac(&leg.invite, &resp) {
                Ok(d) => leg.dialog = Some(d),
                Err(e) => {
                    debug!("2xx without a usable dialog: {e}");
                    return;
                }
            }
        } else if let Some(d) = leg.dialog.as_mut() {
            d.handle_response(&leg.invite, &resp);
        }
        // §13.2.2.4: every 2xx (also a retransmission) is acknowledged. With a late
        // offer (the caller's INVITE had no SDP) the answer comes in the caller's
        // ACK, so the winner's ACK waits for it (see `ack`).
        let late_offer = self
            .legs
            .get(&leg_id)
            .is_some_and(|l| !has_sdp(&l.invite.headers, &l.invite.body));
        if !late_offer {
            self.send_ack(leg_id).await;
        } else if self
            .calls
            .get(&call_id)
            .is_some_and(|c| c.answered.is_some_and(|w| w != leg_id))
        {
            // A losing fork's late 2xx: acknowledge it (no answer needed) and hang up.
            self.send_ack(leg_id).await;
        }
        let Some(call) = self.calls.get_mut(&call_id) else {
            self.hang_up_leg(leg_id).await;
            return;
        };
        match call.answered {
            Some(winner) if winner == leg_id => return,
            Some(_) => {
                // Another device answered too late: its 2xx crossed our CANCEL.
                self.hang_up_leg(leg_id).await;
                return;
            }
            None => {}
        }
        if !first_for_leg {
            return;
        }
        if !self.flow_may_answer(call_id, leg_id) {
            self.hang_up_leg(leg_id).await;
            return;
        }
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        call.answered = Some(leg_id);
        let record = call.record;
        let a_id = call.a;
        let others: Vec<LegId> = call
            .forks
            .iter()
            .copied()
            .filter(|l| *l != leg_id)
            .collect();
        let mut a_body = None;
        if has_sdp(&resp.headers, &resp.body)
            && let Some(body) = call.relay.pass(Side::B, &resp.body)
        {
            a_body = Some(body);
        }
        let (caller, callee) = (call.caller.clone(), call.callee.clone());
        let now = unix_now();
        if let Some(leg) = self.legs.get_mut(&leg_id) {
            leg.state = LegState::Confirmed;
            if has_sdp(&resp.headers, &resp.body) {
                leg.sdp = Some(resp.body.clone());
            }
            let _ = self.db.get().answer_call(record, &leg.party, now);
        }
        // Cancel the other devices (RFC 3261 §16.7 step 10 does the same for a proxy).
        for other in others {
            self.cancel_leg(other, "answered elsewhere").await;
        }
        if self.flow_answered(call_id, leg_id).await {
            return;
        }
        let Some(a) = self.legs.get_mut(&a_id) else {
            return;
        };
        let Some(a_tx) = a.invite_tx else { return };
        let mut ok = Response::from_request(&a.invite, StatusCode::OK);
        let _ = ok.set_to_tag(&a.local_tag);
        ok.headers.push(
            HeaderName::Contact,
            format!(
                "<{}>",
                self.sip.contact_uri("vaxel", a.target.peer.transport)
            ),
        );
        ok.headers.push(HeaderName::Allow, ALLOW);
        if let Some(body) = a_body {
            set_response_body(&mut ok, &sdp_type(), Bytes::from(body));
        }
        match Dialog::from_uas(&a.invite, &ok) {
            Ok(d) => a.dialog = Some(d),
            Err(e) => debug!("A dialog: {e}"),
        }
        a.state = LegState::Confirmed;
        let a_invite = a.invite.clone();
        self.session_timer_answered(leg_id, &resp);
        self.session_timer_answer(a_id, &a_invite, &mut ok);
        self.respond(a_tx, ok).await;
        let parties: Vec<String> = [a_id, leg_id]
            .iter()
            .filter_map(|l| self.legs.get(l).map(|l| l.party.clone()))
            .collect();
        self.flow_members(&parties);
        self.keyed_watch(call_id, &resp.body);
        self.emit(EngineEvent::Call {
            call: record,
            caller,
            callee,
            state: "answered".into(),
        });
    }

    async fn send_ack(&mut self, leg_id: LegId) {
        let Some(leg) = self.legs.get(&leg_id) else {
            return;
        };
        let Some(d) = &leg.dialog else { return };
        let mut ack = d.new_ack(&leg.invite);
        ack.headers.insert_first(
            HeaderName::Via,
            self.sip.via(leg.target.peer.transport).to_string(),
        );
        if !ack.headers.contains(&HeaderName::MaxForwards) {
            ack.headers.push(HeaderName::MaxForwards, "70");
        }
        let _ = self.sip.send_ack(ack, leg.target.clone()).await;
    }

    async fn b_failed(&mut self, call_id: CallId, leg_id: LegId, code: u16) {
        let now = unix_now();
        if let Some(leg) = self.legs.get_mut(&leg_id) {
            leg.state = LegState::Ended;
            let _ = self.db.get().end_leg(leg.record, &format!("{code}"), now);
        }
        self.forget_leg(leg_id);
        if self.flow_leg_failed(call_id, leg_id, code).await {
            return;
        }
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        call.forks.retain(|l| *l != leg_id);
        call.failures.push(code);
        if call.answered.is_some() || !call.forks.is_empty() {
            return;
        }
        // RFC 3261 §16.7 step 6, simplified: a 6xx wins, then busy, then the lowest.
        let best = call
            .failures
            .iter()
            .copied()
            .find(|c| *c >= 600)
            .or_else(|| call.failures.iter().copied().find(|c| *c == 486))
            .or_else(|| call.failures.iter().copied().filter(|c| *c != 487).min())
            .unwrap_or(480);
        // Our challenge failures at the far end are not the caller's to answer.
        let best = if matches!(best, 401 | 407) { 480 } else { best };
        self.fail_call(call_id, best).await;
    }

    /// Ends an unanswered call with `code` to the caller.
    async fn fail_call(&mut self, call_id: CallId, code: u16) {
        let Some(call) = self.calls.get(&call_id) else {
            return;
        };
        let a_id = call.a;
        if let Some(a) = self.legs.get(&a_id)
            && let Some(tx) = a.invite_tx
        {
            let mut r = Response::from_request(&a.invite, status(code));
            let _ = r.set_to_tag(&a.local_tag);
            self.respond(tx, r).await;
        }
        let outcome = match code {
            486 | 600 => "busy",
            480 | 408 => "no answer",
            487 => "cancelled",
            _ => "failed",
        };
        self.end_call(call_id, outcome);
    }

    fn end_call(&mut self, call_id: CallId, outcome: &str) {
        self.flow_ended(call_id);
        let Some(call) = self.calls.remove(&call_id) else {
            return;
        };
        let stats = call.relay.stats();
        let (ab, ba) = (
            stats.a_to_b.load(std::sync::atomic::Ordering::Relaxed),
            stats.b_to_a.load(std::sync::atomic::Ordering::Relaxed),
        );
        {
            let mut db = self.db.get();
            let _ = db.call_packets(call.record, ab, ba);
            let _ = db.end_call(call.record, outcome, unix_now());
        }
        let mut legs = vec![call.a];
        legs.extend(call.forks.iter().copied());
        legs.extend(call.answered);
        legs.extend(call.transfer.iter().flat_map(|t| t.legs.iter().copied()));
        for l in legs {
            self.forget_leg(l);
        }
        debug!("call {} ended: {outcome}", call.record);
        self.emit(EngineEvent::Call {
            call: call.record,
            caller: call.caller,
            callee: call.callee,
            state: "ended".into(),
        });
    }

    fn forget_leg(&mut self, leg_id: LegId) {
        self.session_timers.remove(&leg_id);
        if let Some(leg) = self.legs.remove(&leg_id) {
            let cid = leg
                .invite
                .headers
                .call_id()
                .map(|c| c.to_string())
                .unwrap_or_default();
            self.dialogs.remove(&(cid, leg.local_tag));
            self.flow_members(&[leg.party]);
        }
    }

    /// Cancels a B leg still ringing (§9.1).
    async fn cancel_leg(&mut self, leg_id: LegId, why: &str) {
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            return;
        };
        leg.state = LegState::Ended;
        let _ = self.db.get().end_leg(leg.record, why, unix_now());
        if let Some(tx) = leg.invite_tx {
            let _ = self.sip.cancel(tx).await;
        }
        // The leg stays known until its 487 (or a crossing 2xx) arrives.
    }

    /// Sends BYE on a confirmed leg and forgets it.
    async fn hang_up_leg(&mut self, leg_id: LegId) {
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            return;
        };
        leg.state = LegState::Ended;
        let target = leg.target.clone();
        if let Some(d) = leg.dialog.as_mut() {
            let mut bye = d.new_request(Method::Bye);
            bye.headers.insert_first(
                HeaderName::Via,
                self.sip.via(target.peer.transport).to_string(),
            );
            if !bye.headers.contains(&HeaderName::MaxForwards) {
                bye.headers.push(HeaderName::MaxForwards, "70");
            }
            let _ = self.sip.send_request(bye, target).await;
        }
        self.forget_leg(leg_id);
    }

    /// The caller cancelled (§9.2): 487 to the INVITE, CANCEL to every device.
    async fn cancelled(&mut self, invite: TxKey) {
        let Some(&a_id) = self.invite_txs.get(&invite) else {
            return;
        };
        let Some(a) = self.legs.get(&a_id) else {
            return;
        };
        if a.side != Side::A {
            return;
        }
        let call_id = a.call;
        let forks = self
            .calls
            .get(&call_id)
            .map(|c| c.forks.clone())
            .unwrap_or_default();
        for f in forks {
            self.cancel_leg(f, "cancelled").await;
        }
        self.fail_call(call_id, 487).await;
    }

    /// An ACK for a 2xx we sent (the initial answer or a passed re-INVITE).
    async fn ack(&mut self, ack: &Request) {
        let Some(leg) = self.leg_of_request(ack) else {
            return;
        };
        if let Some(l) = self.legs.get_mut(&leg)
            && let Some(d) = l.dialog.as_mut()
        {
            let _ = d.handle_request(ack);
        }
        // Late offer: the caller's answer arrives here; pass it on in the callee's ACK.
        let Some(l) = self.legs.get(&leg) else { return };
        let cseq = |r: &Request| r.headers.cseq().map(|c| c.seq).ok();
        if l.side != Side::A
            || has_sdp(&l.invite.headers, &l.invite.body)
            || cseq(ack) != cseq(&l.invite)
        {
            return;
        }
        if self.flow_ack(l.call, ack) {
            return;
        }
        let Some(l) = self.legs.get(&leg) else { return };
        let Some(call) = self.calls.get(&l.call) else {
            return;
        };
        let Some(b) = call.answered.and_then(|b| self.legs.get(&b)) else {
            return;
        };
        let Some(d) = &b.dialog else { return };
        let mut out = d.new_ack(&b.invite);
        out.headers.insert_first(
            HeaderName::Via,
            self.sip.via(b.target.peer.transport).to_string(),
        );
        if has_sdp(&ack.headers, &ack.body)
            && let Some(body) = call.relay.pass(Side::A, &ack.body)
        {
            out.set_body(&sdp_type(), Bytes::from(body));
        }
        let _ = self.sip.send_ack(out, b.target.clone()).await;
    }

    /// A 2xx retransmission after the INVITE transaction ended: ACK it again.
    async fn stray_ok(&mut self, resp: Response) {
        if !resp.status.is_success() {
            return;
        }
        let key = (
            resp.headers
                .call_id()
                .map(|c| c.to_string())
                .unwrap_or_default(),
            resp.headers
                .from()
                .ok()
                .and_then(|f| f.tag().map(str::to_owned))
                .unwrap_or_default(),
        );
        if let Some(&leg) = self.dialogs.get(&key) {
            self.send_ack(leg).await;
        }
    }

    async fn tx_failed(&mut self, tx: TxKey) {
        if self.presence.owns_tx(tx) {
            return self.presence_tx_failed(tx).await;
        }
        if let Some(call) = self.probes.remove(&tx) {
            self.refreshing.remove(&tx);
            return self.drop_dead_call(call).await;
        }
        if let Some(r) = self
            .trunk_registrations
            .iter_mut()
            .find(|r| r.pending == Some(tx))
        {
            warn!(
                "trunk {}: the provider does not answer REGISTER",
                r.trunk.name
            );
            r.pending = None;
            r.registered = false;
            r.next_at = Instant::now() + Duration::from_secs(30);
            return;
        }
        if let Some(p) = self.passed.remove(&tx) {
            let r = Response::from_request(&p.request, status(408));
            self.respond(p.server_tx, r).await;
            return;
        }
        if let Some(j) = self.joins.remove(&tx) {
            return self.join_failed(j, 408).await;
        }
        if self.reoffers.remove(&tx).is_some() {
            return;
        }
        let Some(&leg_id) = self.invite_txs.get(&tx) else {
            return;
        };
        let Some(leg) = self.legs.get(&leg_id) else {
            return;
        };
        let call_id = leg.call;
        if self
            .calls
            .get(&call_id)
            .and_then(|c| c.transfer.as_ref())
            .is_some_and(|t| t.legs.contains(&leg_id))
        {
            let mut r = Response::new(status(408));
            r.headers.push(HeaderName::CSeq, "1 INVITE");
            return self.transfer_response(call_id, leg_id, r).await;
        }
        let Some(leg) = self.legs.get(&leg_id) else {
            return;
        };
        match leg.side {
            Side::B if leg.state != LegState::Confirmed => {
                self.b_failed(call_id, leg_id, 408).await
            }
            Side::A => {
                // Timer H/L: the caller never acknowledged our 2xx (§13.3.1.4).
                if let Some(b) = self.calls.get(&call_id).and_then(|c| c.answered) {
                    self.hang_up_leg(b).await;
                }
                self.end_call(call_id, "failed");
            }
            _ => {}
        }
    }

    fn leg_of_request(&self, req: &Request) -> Option<LegId> {
        let cid = req.headers.call_id().ok()?.to_string();
        let tag = req.headers.to().ok()?.tag()?.to_owned();
        self.dialogs.get(&(cid, tag)).copied()
    }

    async fn in_dialog(&mut self, tx: TxKey, req: Request) {
        if req.method == Method::Subscribe && self.presence_in_dialog(tx, &req).await {
            return;
        }
        let Some(leg_id) = self.leg_of_request(&req) else {
            debug!(
                "{} for no dialog we know: {:?} {:?} known {:?}",
                req.method,
                req.headers.call_id(),
                req.headers
                    .to()
                    .ok()
                    .and_then(|t| t.tag().map(str::to_owned)),
                self.dialogs.keys().collect::<Vec<_>>()
            );
            return self.reply(tx, &req, 481).await;
        };
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            return self.reply(tx, &req, 481).await;
        };
        let Some(dialog) = leg.dialog.as_mut() else {
            debug!("{} for a leg without dialog", req.method);
            return self.reply(tx, &req, 481).await;
        };
        if let Err(e) = dialog.handle_request(&req) {
            debug!("{} refused by the dialog: {e}", req.method);
            let code = e.status().map_or(500, |s| s.as_u16());
            return self.reply(tx, &req, code).await;
        }
        let call_id = leg.call;
        let side = leg.side;
        self.session_refreshed(leg_id, &req);
        if self.answer_refresh(tx, leg_id, &req).await {
            return;
        }
        let Some(call) = self.calls.get(&call_id) else {
            return self.reply(tx, &req, 481).await;
        };
        let current = call.a == leg_id || call.answered == Some(leg_id);
        let other = match side {
            Side::A => call.answered,
            Side::B => Some(call.a),
        };
        if req.method == Method::Bye && self.keyed_bye(tx, &req, leg_id, call_id).await {
            return;
        }
        if req.method == Method::Bye && !current {
            // A leg that already left the call (a transferor hanging up late).
            self.reply(tx, &req, 200).await;
            self.forget_leg(leg_id);
            return;
        }
        if req.method == Method::Refer {
            return self.refer(tx, req, leg_id).await;
        }
        if req.method == Method::Bye {
            let mut ok = Response::from_request(&req, StatusCode::OK);
            ok.headers.push(HeaderName::Allow, ALLOW);
            self.respond(tx, ok).await;
            if let Some(o) = other {
                self.hang_up_leg(o).await;
            }
            self.flow_caller_gone(call_id).await;
            self.end_call(call_id, "answered");
            return;
        }
        if req.method == Method::Info && self.flow_info(tx, &req, call_id).await {
            return;
        }
        if self.flow_reinvite(tx, &req, call_id).await {
            return;
        }
        let Some(other) = other else {
            return self.reply(tx, &req, 491).await;
        };
        self.pass(tx, req, leg_id, other).await;
    }

    /// Passes an in-dialog request (re-INVITE for hold, UPDATE, INFO DTMF…) to the
    /// other leg, with SDP pointed at that leg's relay port.
    async fn pass(&mut self, tx: TxKey, req: Request, from_leg: LegId, to_leg: LegId) {
        let Some(from_side) = self.legs.get(&from_leg).map(|l| l.side) else {
            return;
        };
        let Some(call_id) = self.legs.get(&from_leg).map(|l| l.call) else {
            return;
        };
        let mut body = None;
        if has_sdp(&req.headers, &req.body)
            && let Some(call) = self.calls.get(&call_id)
        {
            match call.relay.pass(from_side, &req.body) {
                Some(b) => body = Some(b),
                None => return self.reply(tx, &req, 400).await,
            }
            if let Some(l) = self.legs.get_mut(&from_leg) {
                l.sdp = Some(req.body.clone());
            }
        }
        let Some(to) = self.legs.get_mut(&to_leg) else {
            return self.reply(tx, &req, 481).await;
        };
        let target = to.target.clone();
        let Some(d) = to.dialog.as_mut() else {
            return self.reply(tx, &req, 491).await;
        };
        let mut out = d.new_request(req.method.clone());
        out.headers.insert_first(
            HeaderName::Via,
            self.sip.via(target.peer.transport).to_string(),
        );
        if !out.headers.contains(&HeaderName::MaxForwards) {
            out.headers.push(HeaderName::MaxForwards, "70");
        }
        out.headers.push(
            HeaderName::Contact,
            format!("<{}>", self.sip.contact_uri("vaxel", target.peer.transport)),
        );
        for h in [HeaderName::Event, HeaderName::ContentDisposition] {
            if let Some(v) = req.headers.get(&h) {
                out.headers.push(h, v.clone());
            }
        }
        match body {
            Some(b) => out.set_body(&sdp_type(), Bytes::from(b)),
            None if !req.body.is_empty() => {
                if let Ok(Some(ct)) = req.headers.content_type() {
                    out.set_body(&ct, req.body.clone());
                }
            }
            None => {}
        }
        match self.sip.send_request(out.clone(), target).await {
            Ok(key) => {
                self.passed.insert(
                    key,
                    Passed {
                        server_tx: tx,
                        request: req,
                        from_leg,
                        to_leg,
                        sent: out,
                    },
                );
            }
            Err(_) => self.reply(tx, &req, 503).await,
        }
    }

    /// Sends an in-dialog OPTIONS to both legs of every answered call.
    async fn probe_calls(&mut self) {
        let legs: Vec<(CallId, LegId)> = self
            .calls
            .iter()
            .filter_map(|(id, c)| c.answered.map(|b| [(*id, c.a), (*id, b)]))
            .flatten()
            .collect();
        for (call, leg_id) in legs {
            let Some(leg) = self.legs.get_mut(&leg_id) else {
                continue;
            };
            let target = leg.target.clone();
            let Some(d) = leg.dialog.as_mut() else {
                continue;
            };
            let mut o = d.new_request(Method::Options);
            o.headers.insert_first(
                HeaderName::Via,
                self.sip.via(target.peer.transport).to_string(),
            );
            if let Ok(key) = self.sip.send_request(o, target).await {
                self.probes.insert(key, call);
            }
        }
    }

    /// A leg of an answered call is gone: BYE to the legs, the call ends.
    async fn drop_dead_call(&mut self, call_id: CallId) {
        let Some(call) = self.calls.get(&call_id) else {
            return;
        };
        let legs: Vec<LegId> = std::iter::once(call.a).chain(call.answered).collect();
        for l in legs {
            self.hang_up_leg(l).await;
        }
        debug!("call {call_id}: a leg stopped answering; ended");
        self.end_call(call_id, "dropped");
    }

    /// Sends (or refreshes) our REGISTER at trunk `i`'s provider (RFC 3261 §10.2),
    /// with credentials once it has challenged us.
    async fn send_trunk_register(&mut self, i: usize) {
        let Some(target) = self
            .trunk_target(&self.trunk_registrations[i].trunk.clone())
            .await
        else {
            self.trunk_registrations[i].next_at = Instant::now() + Duration::from_secs(30);
            return;
        };
        let contact = self.sip.contact_uri(
            &self.trunk_registrations[i].trunk.username,
            target.peer.transport,
        );
        let via = self.sip.via(target.peer.transport);
        let r = &mut self.trunk_registrations[i];
        r.cseq += 1;
        let host = format!("{}:{}", r.trunk.host, r.trunk.port);
        let uri_text = format!("sip:{host}");
        let Ok(uri) = Uri::parse(&uri_text.clone().into()) else {
            r.next_at = Instant::now() + Duration::from_secs(300);
            return;
        };
        let aor = format!("<sip:{}@{}>", r.trunk.username, r.trunk.host);
        let mut req = Request::new(Method::Register, uri);
        req.headers.push_value(HeaderName::Via, &via);
        req.headers.push(HeaderName::MaxForwards, "70");
        req.headers
            .push(HeaderName::From, format!("{aor};tag={}", r.tag));
        req.headers.push(HeaderName::To, aor);
        req.headers.push(HeaderName::CallId, r.call_id.clone());
        req.headers
            .push(HeaderName::CSeq, format!("{} REGISTER", r.cseq));
        req.headers
            .push(HeaderName::Contact, format!("<{contact}>"));
        req.headers.push(HeaderName::Expires, "3600");
        if r.client.has_credentials() {
            let cnonce = token();
            for a in r.client.authorize("REGISTER", &uri_text, b"", &cnonce) {
                let name = match a.kind {
                    ChallengeKind::Www => HeaderName::Authorization,
                    ChallengeKind::Proxy => HeaderName::ProxyAuthorization,
                };
                req.headers.push(name, a.credentials.to_string());
            }
        }
        match self.sip.send_request(req, target).await {
            Ok(key) => r.pending = Some(key),
            Err(e) => {
                debug!("trunk REGISTER not sent: {e}");
                r.next_at = Instant::now() + Duration::from_secs(30);
            }
        }
    }

    async fn trunk_register_response(&mut self, i: usize, resp: Response) {
        if resp.status.is_provisional() {
            return;
        }
        let r = &mut self.trunk_registrations[i];
        r.pending = None;
        let code = resp.status.as_u16();
        if let Some(kind) = ChallengeKind::from_status(code) {
            let name = match kind {
                ChallengeKind::Www => HeaderName::WwwAuthenticate,
                ChallengeKind::Proxy => HeaderName::ProxyAuthenticate,
            };
            let values: Vec<String> = resp.headers.get_all(&name).map(|v| v.to_string()).collect();
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            r.challenges += 1;
            if r.challenges <= 2 && r.client.handle_challenge(kind, &refs).is_ok() {
                return self.send_trunk_register(i).await;
            }
            warn!(
                "trunk {}: the provider refuses our credentials",
                r.trunk.name
            );
            r.registered = false;
            r.next_at = Instant::now() + Duration::from_secs(300);
            return;
        }
        r.challenges = 0;
        if resp.status.is_success() {
            // The lifetime granted: our Contact's expires, else Expires, else ours.
            let granted = resp
                .headers
                .contacts()
                .ok()
                .and_then(|c| c.iter().find_map(Contact::expires))
                .or_else(|| resp.headers.expires().ok().flatten())
                .unwrap_or(3600)
                .max(60);
            if !r.registered {
                info!("trunk {}: registered at the provider", r.trunk.name);
            }
            r.registered = true;
            r.next_at = Instant::now() + Duration::from_secs(u64::from(granted / 2));
        } else {
            warn!("trunk {}: REGISTER answered {code}", r.trunk.name);
            r.registered = false;
            r.next_at = Instant::now() + Duration::from_secs(60);
        }
    }

    /// REFER (RFC 3515) executed by the engine, so blind transfer works with any
    /// phone: 202, then new legs ring the target for the party who stays; the first
    /// answer takes the referrer's place on the relay (the staying party's media does
    /// not move, so it needs no re-INVITE), the referrer gets NOTIFY with the outcome
    /// (RFC 3515 §2.4.5) and BYE.
    async fn refer(&mut self, tx: TxKey, req: Request, leg_id: LegId) {
        let refer_to = match req.headers.refer_to() {
            Ok(Some(r)) => r,
            _ => return self.reply(tx, &req, 400).await,
        };
        if let Some(replaces) = xfer::replaces_in(&refer_to.uri) {
            // Attended transfer: the engine joins the referrer's two peers.
            return self.attended_refer(tx, req, leg_id, replaces).await;
        }
        let number = dialled(&uri_user(&refer_to.uri).unwrap_or_default());
        let Some(ext) = self.user_for(&number) else {
            return self.reply(tx, &req, 404).await;
        };
        let Some(x) = self.legs.get(&leg_id) else {
            return self.reply(tx, &req, 481).await;
        };
        let (call_id, side) = (x.call, x.side);
        let Some(call) = self.calls.get(&call_id) else {
            return self.reply(tx, &req, 481).await;
        };
        if call.transfer.is_some() {
            return self.reply(tx, &req, 491).await;
        }
        let stays = if side == Side::A {
            call.answered
        } else {
            Some(call.a)
        };
        let Some(stays) = stays.and_then(|s| self.legs.get(&s)) else {
            return self.reply(tx, &req, 481).await;
        };
        let (party, sdp, record) = (stays.party.clone(), stays.sdp.clone(), call.record);
        let transport = x.target.peer.transport;
        // The target gets a fresh relay socket; it takes over the referrer's side
        // only when the target answers (see `Relay::prepare`).
        let prepared = match self.calls.get_mut(&call_id) {
            Some(c) => c.relay.prepare(side).await,
            None => return self.reply(tx, &req, 481).await,
        };
        if prepared.is_err() {
            return self.reply(tx, &req, 503).await;
        }
        let mut ok = Response::from_request(&req, status(202));
        ok.headers.push(
            HeaderName::Contact,
            format!("<{}>", self.sip.contact_uri("vaxel", transport)),
        );
        self.respond(tx, ok).await;
        self.notify_referrer(leg_id, "SIP/2.0 100 Trying", false)
            .await;
        let body = sdp.and_then(|b| {
            self.calls
                .get(&call_id)
                .and_then(|c| c.relay.sdp_for_prepared(side, &b))
        });
        let legs = self
            .ring_transfer_target(call_id, side, record, &party, &ext, body)
            .await;
        if legs.is_empty() {
            if let Some(c) = self.calls.get_mut(&call_id) {
                c.relay.abandon(side);
            }
            self.notify_referrer(leg_id, "SIP/2.0 480 Temporarily Unavailable", true)
                .await;
            return;
        }
        if let Some(call) = self.calls.get_mut(&call_id) {
            call.transfer = Some(Transfer {
                referrer: leg_id,
                side,
                legs,
            });
        }
    }

    /// Rings every registered device of `ext` for a transfer (REFER, RFC 3515, or a
    /// keyed `#n#` move): one new B2BUA leg per binding on `side` of `call_id`, shown
    /// as coming from `party`, offering `body` (the staying party's SDP rewritten to
    /// the prepared relay socket). Returns the legs that were sent; none means the
    /// target cannot be reached now.
    pub(in crate::engine) async fn ring_transfer_target(
        &mut self,
        call_id: CallId,
        side: Side,
        record: i64,
        party: &str,
        ext: &str,
        body: Option<String>,
    ) -> Vec<LegId> {
        let devices = self.bindings.get(ext).cloned().unwrap_or_default();
        let mut legs = Vec::new();
        let now = unix_now();
        for b in devices {
            let (Ok(uri), Some(target)) =
                (Uri::parse(&b.contact.clone().into()), binding_target(&b))
            else {
                continue;
            };
            let leg = self.new_id();
            let tag = token();
            let cid = new_call_id(&mut rand::rng(), &self.realm);
            let mut invite = Request::new(Method::Invite, uri.clone());
            invite
                .headers
                .push_value(HeaderName::Via, &self.sip.via(target.peer.transport));
            invite.headers.push(HeaderName::MaxForwards, "70");
            invite.headers.push(
                HeaderName::From,
                format!("<sip:{party}@{}>;tag={tag}", self.realm),
            );
            invite
                .headers
                .push(HeaderName::To, format!("<sip:{ext}@{}>", self.realm));
            invite.headers.push(HeaderName::CallId, cid.clone());
            invite.headers.push(HeaderName::CSeq, "1 INVITE");
            invite.headers.push(
                HeaderName::Contact,
                format!("<{}>", self.sip.contact_uri("vaxel", target.peer.transport)),
            );
            invite.headers.push(HeaderName::Allow, ALLOW);
            if let Some(body) = &body {
                invite.set_body(&sdp_type(), Bytes::from(body.clone()));
            }
            let out = Outgoing {
                call: call_id,
                side,
                role: "transfer",
                record,
                party: ext,
                invite,
                tag,
                call_id: cid,
                target,
            };
            if self.start_leg(leg, out, now).await {
                legs.push(leg);
            }
        }
        legs
    }

    /// Records leg `leg` of the call, sends its INVITE and tracks it: the INVITE
    /// transaction, the dialog key (Call-ID, our tag) and the leg in `Calling`.
    /// False, with the leg's row ended `failed`, when the INVITE could not be sent.
    async fn start_leg(&mut self, leg: LegId, out: Outgoing<'_>, now: i64) -> bool {
        let row = self
            .db
            .get()
            .add_leg(
                out.record,
                out.role,
                out.party,
                &out.invite.uri.to_string(),
                now,
            )
            .unwrap_or(0);
        match self
            .sip
            .send_request(out.invite.clone(), out.target.clone())
            .await
        {
            Ok(key) => {
                self.invite_txs.insert(key, leg);
                self.dialogs.insert((out.call_id, out.tag.clone()), leg);
                self.legs.insert(
                    leg,
                    Leg {
                        call: out.call,
                        side: out.side,
                        invite: out.invite,
                        invite_tx: Some(key),
                        local_tag: out.tag,
                        dialog: None,
                        target: out.target,
                        state: LegState::Calling,
                        record: row,
                        party: out.party.to_owned(),
                        sdp: None,
                    },
                );
                true
            }
            Err(e) => {
                debug!("cannot send INVITE: {e}");
                let _ = self.db.get().end_leg(row, "failed", now);
                false
            }
        }
    }

    /// NOTIFY with a sipfrag of the transfer's progress (RFC 3515 §2.4.4).
    async fn notify_referrer(&mut self, leg_id: LegId, frag: &str, last: bool) {
        if self.keyed_mover(leg_id, frag, last).await {
            return;
        }
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            return;
        };
        let target = leg.target.clone();
        let Some(d) = leg.dialog.as_mut() else { return };
        let mut n = d.new_request(Method::Notify);
        n.headers.insert_first(
            HeaderName::Via,
            self.sip.via(target.peer.transport).to_string(),
        );
        n.headers.push(
            HeaderName::Contact,
            format!("<{}>", self.sip.contact_uri("vaxel", target.peer.transport)),
        );
        n.headers.push(HeaderName::Event, "refer");
        n.headers.push(
            HeaderName::SubscriptionState,
            if last {
                "terminated;reason=noresource"
            } else {
                "active;expires=60"
            },
        );
        let ct =
            MediaType::parse(&"message/sipfrag;version=2.0".into()).unwrap_or_else(|_| sdp_type());
        n.set_body(&ct, Bytes::from(format!("{frag}\r\n")));
        let _ = self.sip.send_request(n, target).await;
    }

    async fn transfer_response(&mut self, call_id: CallId, leg_id: LegId, resp: Response) {
        if resp.status.is_provisional() {
            if let Some(l) = self.legs.get_mut(&leg_id) {
                l.state = LegState::Early;
            }
            return;
        }
        if resp.status.is_success() && self.keyed_consult(call_id, leg_id, &resp).await {
            return;
        }
        let Some(t) = self.calls.get(&call_id).and_then(|c| c.transfer.as_ref()) else {
            return;
        };
        let (referrer, side) = (t.referrer, t.side);
        if !resp.status.is_success() {
            if let Some(l) = self.legs.get(&leg_id) {
                let _ =
                    self.db
                        .get()
                        .end_leg(l.record, &resp.status.as_u16().to_string(), unix_now());
            }
            self.forget_leg(leg_id);
            let Some(t) = self
                .calls
                .get_mut(&call_id)
                .and_then(|c| c.transfer.as_mut())
            else {
                return;
            };
            t.legs.retain(|l| *l != leg_id);
            if t.legs.is_empty() {
                if let Some(c) = self.calls.get_mut(&call_id) {
                    c.transfer = None;
                    c.relay.abandon(side);
                }
                let frag = format!(
                    "SIP/2.0 {} {}",
                    resp.status.as_u16(),
                    resp.status.canonical_reason()
                );
                self.notify_referrer(referrer, &frag, true).await;
            }
            return;
        }
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            return;
        };
        if leg.dialog.is_none() {
            match Dialog::from_uac(&leg.invite, &resp) {
                Ok(d) => leg.dialog = Some(d),
                Err(_) => return,
            }
        }
        leg.state = LegState::Confirmed;
        if has_sdp(&resp.headers, &resp.body) {
            leg.sdp = Some(resp.body.clone());
        }
        self.send_ack(leg_id).await;
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        let others: Vec<LegId> = call
            .transfer
            .take()
            .map(|t| t.legs.into_iter().filter(|l| *l != leg_id).collect())
            .unwrap_or_default();
        let remote = if has_sdp(&resp.headers, &resp.body) {
            call.relay.heard_prepared(side, &resp.body)
        } else {
            None
        };
        call.relay.commit(side, remote);
        match side {
            Side::A => call.a = leg_id,
            Side::B => call.answered = Some(leg_id),
        }
        for o in others {
            self.cancel_leg(o, "answered elsewhere").await;
        }
        self.notify_referrer(referrer, "SIP/2.0 200 OK", true).await;
        if let Some(l) = self.legs.get(&referrer) {
            let _ = self.db.get().end_leg(l.record, "transferred", unix_now());
        }
        self.hang_up_leg(referrer).await;
        // The party who stays learns the target's media (codec, SRTP key).
        let stays = match side {
            Side::A => self.calls.get(&call_id).and_then(|c| c.answered),
            Side::B => self.calls.get(&call_id).map(|c| c.a),
        };
        if let Some(stays) = stays
            && has_sdp(&resp.headers, &resp.body)
        {
            self.reoffer(stays, &resp.body).await;
        }
        debug!("call {call_id}: transferred");
    }

    async fn passed_response(&mut self, key: TxKey, resp: Response) {
        if resp.status.is_provisional() {
            return;
        }
        let Some(p) = self.passed.remove(&key) else {
            return;
        };
        let Some(to_leg) = self.legs.get_mut(&p.to_leg) else {
            return;
        };
        let to_side = to_leg.side;
        let call_id = to_leg.call;
        let target = to_leg.target.clone();
        if let Some(d) = to_leg.dialog.as_mut() {
            d.handle_response(&p.sent, &resp);
            if p.sent.method == Method::Invite && resp.status.is_success() {
                // We acknowledge the far leg's 2xx ourselves; the near leg's ACK ends
                // at the engine.
                let mut ack = d.new_ack(&p.sent);
                ack.headers.insert_first(
                    HeaderName::Via,
                    self.sip.via(target.peer.transport).to_string(),
                );
                let _ = self.sip.send_ack(ack, target.clone()).await;
            }
        }
        let mut r = Response::from_request(&p.request, resp.status);
        if let Some(from) = self.legs.get(&p.from_leg) {
            r.headers.push(
                HeaderName::Contact,
                format!(
                    "<{}>",
                    self.sip.contact_uri("vaxel", from.target.peer.transport)
                ),
            );
        }
        if has_sdp(&resp.headers, &resp.body)
            && let Some(call) = self.calls.get(&call_id)
        {
            if let Some(b) = call.relay.pass(to_side, &resp.body) {
                set_response_body(&mut r, &sdp_type(), Bytes::from(b));
            }
            if let Some(l) = self.legs.get_mut(&p.to_leg) {
                l.sdp = Some(resp.body.clone());
            }
        } else if !resp.body.is_empty()
            && let Ok(Some(ct)) = resp.headers.content_type()
        {
            set_response_body(&mut r, &ct, resp.body.clone());
        }
        self.respond(p.server_tx, r).await;
    }
}

enum Targets {
    User(String),
    Trunk(Trunk, String),
}

fn is_in_dialog(req: &Request) -> bool {
    req.headers
        .to()
        .ok()
        .is_some_and(|t| t.tag().is_some_and(|t| !t.is_empty()))
}

fn set_response_body(r: &mut Response, ct: &MediaType, body: Bytes) {
    r.headers.set(HeaderName::ContentType, ct.to_string());
    r.body = body;
}

fn binding_target(b: &Binding) -> Option<Target> {
    Some(Target::new(
        TransportKind::from_via_token(&b.transport)?,
        b.source.parse().ok()?,
    ))
}

fn token() -> String {
    new_tag(&mut rand::rng())
}
