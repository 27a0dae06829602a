//! The phone core: one tokio task that owns the SIP endpoint, the accounts' usages
//! (registration, pager) and every call (session, offer/answer, media), and turns
//! [`Command`]s into SIP and SIP into [`Event`]s.
//!
//! # Run loop
//!
//! The task waits for the next of: a command, a transaction event from the endpoint, a
//! call-media event, or the earliest usage timer. It feeds that input to the usage it
//! belongs to (vaxel-sip's run loop, `core/sip/src/usage/mod.rs`), then *flushes*:
//! drains every usage's `poll_output()` — requests are resolved (RFC 3263) and sent,
//! responses and ACKs sent, CANCELs started, and usage events turned into phone
//! actions (start media, answer the offer, place the transfer call...) and
//! [`Event`]s — until no usage has anything left to say.
//!
//! Calls, accounts and transactions are addressed by small ids into maps this task owns
//! (ARCHITECTURE.md §3.8); nothing is shared behind locks.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::SeedableRng;
use tokio::sync::mpsc;
use vaxel_media::codec::CodecKind;
use vaxel_media::sdp::{self, MediaPolicy, NegotiatedAudio, OfferAnswer};
use vaxel_sip::auth::{DigestClient, Secret};
use vaxel_sip::dialog::{error_response, no_dialog_response};
use vaxel_sip::msg::{
    HeaderName, Host, Message, Method, NameAddr, Request, Response, SipUri, StatusCode, Transport,
    Uri,
};
use vaxel_sip::transaction::{TxEvent, TxKey};
use vaxel_sip::usage::message::{Pager, PagerEvent};
use vaxel_sip::usage::publication::{Publisher, PublisherConfig, PublisherEvent};
use vaxel_sip::usage::registration::{
    Registration, RegistrationConfig, RegistrationEvent, RegistrationState,
};
use vaxel_sip::usage::session::{
    EndCause, ReplacesMatch, Session, SessionConfig, SessionEvent, SessionState,
};
use vaxel_sip::usage::subscription::{SubState, Subscriber, SubscriberConfig, SubscriberEvent};
use vaxel_sip::usage::{ClientTxs, Local, Output, Rng, TxFailure, top_branch};
use vaxel_transport::{
    Endpoint, EndpointConfig, EndpointHandle, SocketsConfig, Target, TransportKind,
};

use vaxel_store::{
    MemoryStore, SecretError, SecretOrigin, SecretStore, Store, StoreError,
    Transport as AccountTransport, resolve_password,
};

use crate::account::{self as acct, Account, parse_sip_uri};
use crate::api::{
    AccountState, CallId, CallState, Command, DtmfMethod, DtmfVia, EndReason, ErrorCode, Event,
    MediaFiles, Side, WatchState,
};
use crate::media::{
    AudioIo, CallMedia, CallMediaConfig, CallMediaEvent, CallMediaHandle, DtmfSource, MediaPorts,
    NullSink, PlayMode, SilentSource, WavFileSink, WavFileSource,
};
use crate::presence::{Watch, WatchKind};
use crate::records::{Finished, RecordsThread};

/// How a phone starts.
pub struct PhoneConfig {
    /// The local address for SIP and RTP (a concrete address: it goes into Via, Contact
    /// and SDP).
    pub ip: IpAddr,
    /// The SIP port for UDP and TCP; 0 picks a free one.
    pub sip_port: u16,
    /// The profile's store: the accounts are read from it when the phone starts, and the
    /// call history, contacts and search live in it. With no account in it, a local
    /// account `sip:vaxel@IP:PORT` that does not register is made up, for direct calls.
    pub store: Store,
    /// The account to use when a command names none (default: the store's first).
    pub default_account: Option<String>,
    /// Where the accounts' passwords are (the OS keychain in the program); the
    /// `VAXEL_PASSWORD` environment variable wins over it ([`resolve_password`]).
    pub secrets: Arc<dyn SecretStore>,
    /// Audio files for every call that does not name its own; empty: sound devices.
    pub media: MediaFiles,
    /// The sound devices (host API, microphone, speaker, ringing device) when no files
    /// are given.
    pub audio: vaxel_audio::AudioConfig,
    /// Answer incoming calls by ourselves.
    pub auto_answer: bool,
    /// RTP port range (pairs).
    pub rtp_ports: RangeInclusive<u16>,
    /// Codecs in order of preference; `None` for vaxel-media's default order.
    pub codecs: Option<Vec<CodecKind>>,
    /// The User-Agent header.
    pub user_agent: String,
    /// Whose ringing tone the caller hears while the far end rings without sending
    /// audio (local ringback): Denmark's by default (425 Hz, 1 s on, 4 s off).
    pub tones: vaxel_media::tones::Country,
    /// PEM files of certificate authorities trusted for TLS besides the OS's roots
    /// (a company CA, a test CA). TLS accounts and `sips:` targets check the server's
    /// certificate against these and the OS's roots (RFC 5922 name checks).
    pub tls_ca: Vec<std::path::PathBuf>,
    /// Cancel the speaker's echo in the microphone on calls with sound devices (on by
    /// default; only in builds with vaxel-audio's `aec` feature, see
    /// [`vaxel_audio::CallEcho`]).
    pub echo_cancellation: bool,
}

impl std::fmt::Debug for PhoneConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhoneConfig")
            .field("ip", &self.ip)
            .field("sip_port", &self.sip_port)
            .field("store", &self.store)
            .field("default_account", &self.default_account)
            .field("media", &self.media)
            .finish_non_exhaustive()
    }
}

impl PhoneConfig {
    /// A configuration on `ip` with defaults: any SIP port, an empty store in memory
    /// (no accounts, no history), passwords in memory, sound devices, RTP ports
    /// 16384–32767.
    pub fn new(ip: IpAddr) -> Self {
        PhoneConfig {
            ip,
            sip_port: 0,
            // An in-memory SQLite database only fails to open when memory is exhausted.
            store: Store::open_in_memory().expect("in-memory store"),
            default_account: None,
            secrets: Arc::new(MemoryStore::new()),
            media: MediaFiles::default(),
            audio: vaxel_audio::AudioConfig::default(),
            auto_answer: false,
            rtp_ports: 16384..=32767,
            codecs: None,
            user_agent: format!("Vaxel/{}", env!("CARGO_PKG_VERSION")),
            tls_ca: Vec::new(),
            tones: vaxel_media::tones::Country::Dk,
            echo_cancellation: true,
        }
    }
}

/// Why the phone could not start (the environment's or the caller's fault).
#[derive(Debug, thiserror::Error)]
pub enum PhoneError {
    /// The SIP sockets could not be bound.
    #[error("cannot listen for SIP on {addr}: {reason}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// An account is unusable (caller), or no account has the name asked for.
    #[error("account {name:?}: {reason}")]
    Account {
        /// The account.
        name: String,
        /// Why.
        reason: String,
    },
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A TLS certificate authority file could not be used.
    #[error("TLS: {0}")]
    Tls(String),
}

/// Whether a CANCEL says the call was answered elsewhere: a `Reason: SIP;cause=200`
/// (RFC 3326 §2; forking proxies cancel the other branches so, "Call completed
/// elsewhere").
fn completed_elsewhere(cancel: &Request) -> bool {
    cancel
        .headers
        .get_all(&HeaderName::Reason)
        .flat_map(|v| v.split(','))
        .any(|r| {
            let mut parts = r.split(';').map(str::trim);
            parts.next().is_some_and(|p| p.eq_ignore_ascii_case("SIP"))
                && parts.any(|p| {
                    p.split_once('=').is_some_and(|(k, v)| {
                        k.trim().eq_ignore_ascii_case("cause") && v.trim() == "200"
                    })
                })
        })
}

/// SIP on UDP and TCP at `addr`, TLS as a client with `tls`.
fn endpoint_config(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> EndpointConfig {
    EndpointConfig {
        sockets: SocketsConfig {
            udp: vec![addr],
            tcp: vec![addr],
            tls_client: Some(tls),
            // The connection to the registrar is the way back to us (TLS: the only one):
            // kept while the registration lives, not closed for idleness between refreshes.
            idle_timeout: Duration::from_secs(3600),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The local address the OS would send from to reach `host` (no packet is sent): the
/// address to listen on, and after a network change the new one.
pub fn local_address_for(host: &str) -> Option<IpAddr> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let dest = std::net::ToSocketAddrs::to_socket_addrs(&(host, 5060))
        .ok()?
        .find(|a| a.is_ipv4())?;
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect(dest).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

/// The TLS client configuration: the OS's roots and `extra` CA files.
fn tls_client(
    extra: &[std::path::PathBuf],
) -> Result<(Arc<rustls::ClientConfig>, Vec<String>), PhoneError> {
    let mut warnings = Vec::new();
    let native = rustls_native_certs::load_native_certs();
    if !native.errors.is_empty() && native.certs.is_empty() {
        warnings.push(format!(
            "TLS: the OS's root certificates could not be read ({}); only --ca is trusted",
            native.errors[0]
        ));
    }
    let mut roots: Vec<rustls_pki_types::CertificateDer<'static>> = native.certs;
    for path in extra {
        let certs =
            vaxel_transport::tls::load_certs(path).map_err(|e| PhoneError::Tls(e.to_string()))?;
        roots.extend(certs);
    }
    // One bad OS root must not stop the phone: keep those rustls accepts.
    let mut good = Vec::new();
    for r in roots {
        let mut probe = rustls::RootCertStore::empty();
        if probe.add(r.clone()).is_ok() {
            good.push(r);
        }
    }
    let config =
        vaxel_transport::tls::client_config(good).map_err(|e| PhoneError::Tls(e.to_string()))?;
    Ok((config, warnings))
}

/// Sends commands to a running phone. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PhoneHandle {
    commands: mpsc::UnboundedSender<Command>,
    sip_addr: SocketAddr,
}

impl PhoneHandle {
    /// Queues a command; `false` when the phone has stopped.
    pub fn send(&self, command: Command) -> bool {
        self.commands.send(command).is_ok()
    }

    /// The address the phone listens for SIP on (UDP and TCP).
    pub fn sip_addr(&self) -> SocketAddr {
        self.sip_addr
    }
}

/// The stream of a phone's events; it ends after [`Event::Stopped`].
pub type PhoneEvents = mpsc::UnboundedReceiver<Event>;

/// The softphone core (see the module documentation).
#[derive(Debug)]
pub struct Phone;

impl Phone {
    /// Binds the SIP sockets and starts the phone's task on the current tokio runtime.
    pub async fn start(config: PhoneConfig) -> Result<(PhoneHandle, PhoneEvents), PhoneError> {
        let (accounts, mut warnings) = load_accounts(&config)?;
        let (tls, tls_warnings) = tls_client(&config.tls_ca)?;
        warnings.extend(tls_warnings);
        let port = if config.sip_port == 0 {
            free_port(config.ip)
        } else {
            config.sip_port
        };
        let addr = SocketAddr::new(config.ip, port);
        let (sip, tx_events) = Endpoint::start(endpoint_config(addr, tls))
            .await
            .map_err(|e| PhoneError::Bind {
                addr,
                reason: e.to_string(),
            })?;
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (media_tx, media_rx) = mpsc::unbounded_channel();
        let mut core = Core::new(config, accounts, sip, addr, ev_tx, media_tx);
        tokio::spawn(async move { core.run(cmd_rx, tx_events, media_rx, warnings).await });
        Ok((
            PhoneHandle {
                commands: cmd_tx,
                sip_addr: addr,
            },
            ev_rx,
        ))
    }
}

/// The store's accounts (the default one first) with their passwords, and warnings for
/// the user (no keychain, no password).
#[allow(clippy::type_complexity)]
fn load_accounts(
    config: &PhoneConfig,
) -> Result<(Vec<(Account, Option<vaxel_store::Secret>)>, Vec<String>), PhoneError> {
    let mut accounts = config.store.accounts()?;
    if let Some(name) = &config.default_account {
        let pos = accounts
            .iter()
            .position(|a| &a.name == name)
            .ok_or_else(|| PhoneError::Account {
                name: name.clone(),
                reason: "no such account".into(),
            })?;
        let a = accounts.remove(pos);
        accounts.insert(0, a);
    }
    let mut warnings = Vec::new();
    let mut out = Vec::new();
    for a in accounts {
        acct::aor(&a).map_err(|reason| PhoneError::Account {
            name: a.name.clone(),
            reason,
        })?;
        if let Some(p) = acct::proxy(&a) {
            parse_sip_uri(p).map_err(|reason| PhoneError::Account {
                name: a.name.clone(),
                reason,
            })?;
        }
        let password = match resolve_password(&*config.secrets, &a.secret_key()) {
            Ok(Some((secret, origin))) => {
                if origin == SecretOrigin::Environment {
                    tracing::debug!("account {}: password from VAXEL_PASSWORD", a.name);
                }
                Some(secret)
            }
            Ok(None) => {
                if a.register {
                    warnings.push(format!(
                        "account {:?}: no password in the keychain (store one with `vaxel \
                         account add --password-stdin`, or set VAXEL_PASSWORD)",
                        a.name
                    ));
                }
                None
            }
            Err(e @ SecretError::Unavailable(_)) => {
                warnings.push(format!(
                    "account {:?}: {e}; set VAXEL_PASSWORD to give the password without one",
                    a.name
                ));
                None
            }
            Err(e) => {
                warnings.push(format!("account {:?}: {e}", a.name));
                None
            }
        };
        out.push((a, password));
    }
    Ok((out, warnings))
}

/// A port free for both UDP and TCP right now (the endpoint binds both to one port, so
/// Contact is right for either transport).
fn free_port(ip: IpAddr) -> u16 {
    for _ in 0..20 {
        if let Ok(u) = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))
            && let Ok(a) = u.local_addr()
            && std::net::TcpListener::bind(a).is_ok()
        {
            return a.port();
        }
    }
    0
}

fn new_rng() -> Rng {
    Box::new(rand::rngs::StdRng::from_rng(&mut rand::rng()))
}

/// Who started a client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Reg(usize),
    Pager(usize),
    /// The account's presence publication.
    Pub(usize),
    /// A watch's subscription.
    Sub(u64),
    Call(CallId),
}

/// How often the phone looks whether a registration's TCP or TLS connection to the
/// registrar is still open (a local look, no packet; the transport's RFC 5626 §4.4.1
/// pings find a silently dead one). A connection found closed (server restarted, network
/// gone) makes the account register again at once, with back-off while that fails.
const FLOW_CHECK: Duration = Duration::from_secs(2);

/// Presence publication expiry asked for, seconds.
const PRESENCE_EXPIRES: u32 = 600;
/// Watch subscription expiry asked for, seconds.
const WATCH_EXPIRES: u32 = 600;

/// What [`Command::SetPresence`] last set, for the events.
#[derive(Debug, Clone)]
struct PresenceSet {
    activity: String,
    note: Option<String>,
    until: Option<String>,
}

struct AccountRt {
    config: Account,
    aor: NameAddr,
    password: Option<vaxel_store::Secret>,
    registration: Option<Registration>,
    pager: Pager,
    local: Local,
    /// Messages in flight: to whom.
    sent: HashMap<vaxel_sip::usage::message::MessageId, String>,
    /// Our presence publication, once set.
    presence: Option<Publisher>,
    presence_set: Option<PresenceSet>,
    /// When the activity set ends (its `until`): the phone goes back to available.
    presence_until: Option<Instant>,
}

impl AccountRt {
    fn auth(&self) -> Option<DigestClient> {
        let pw = self.password.as_ref()?.expose().to_owned();
        Some(DigestClient::new(
            acct::user(&self.config),
            Secret::Password(pw),
        ))
    }
}

struct Call {
    id: CallId,
    account: usize,
    session: Session,
    oa: OfferAnswer,
    ports: Option<MediaPorts>,
    media: Option<CallMediaHandle>,
    files: MediaFiles,
    outgoing: bool,
    remote: String,
    /// Our answer and the negotiated audio to an incoming offer, until we answer.
    pending_answer: Option<(String, NegotiatedAudio)>,
    held: bool,
    muted: bool,
    /// A re-INVITE of ours for hold (`true`) or resume is in flight.
    pending_hold: Option<bool>,
    /// This call was placed for a REFER received in that call (RFC 3515 §2.4.5).
    transfer_of: Option<CallId>,
    /// This incoming call replaces that one (RFC 3891): answer it ourselves.
    replaces: Option<CallId>,
    /// We transferred this call away (REFER succeeded).
    transferred: bool,
    established: bool,
    /// We held the call before a transfer that may fail.
    resume_on_transfer_failure: bool,
    progress_reported: u16,
    /// Local ringback playing into the call's sink until its media starts.
    ringback: Option<crate::media::Ringback>,
    /// The ring tone on the ringing device while the call comes in.
    ringtone: Option<crate::media::Ringtone>,
    /// The caller cancelled because another device of this account answered (RFC 3326
    /// `Reason: SIP;cause=200`): not a missed call.
    answered_elsewhere: bool,
}

struct Core {
    config: PhoneConfig,
    sip: EndpointHandle,
    sip_addr: SocketAddr,
    events: mpsc::UnboundedSender<Event>,
    media_tx: mpsc::UnboundedSender<(CallId, CallMediaEvent)>,
    accounts: Vec<AccountRt>,
    calls: BTreeMap<CallId, Call>,
    next_call: CallId,
    clients: ClientTxs<Owner>,
    audio: Option<vaxel_audio::Audio>,
    quitting: Option<Instant>,
    stats_bad_requests: u64,
    /// Where the last in-dialog request of a call went (reused for its ACKs when a
    /// resolution fails).
    hops: HashMap<CallId, Target>,
    /// The store's thread: history, contacts, search.
    records: RecordsThread,
    /// Where each account's last REGISTER went (its flow to the registrar).
    reg_hops: HashMap<usize, Target>,
    /// When the registrations' stream connections are next checked.
    next_flow_check: Instant,
    /// The new endpoint's events after a network change, for the run loop to take.
    new_events: Option<vaxel_transport::Events>,
    /// Colleagues watched (one entry per subscription).
    watches: BTreeMap<u64, Watch>,
    next_watch: u64,
    /// The local conference ([`Command::Merge`]): its bus and members.
    conference: Option<(
        vaxel_audio::mix::ConferenceBus,
        std::collections::BTreeSet<CallId>,
    )>,
}

impl Core {
    fn new(
        mut config: PhoneConfig,
        accounts: Vec<(Account, Option<vaxel_store::Secret>)>,
        sip: EndpointHandle,
        sip_addr: SocketAddr,
        events: mpsc::UnboundedSender<Event>,
        media_tx: mpsc::UnboundedSender<(CallId, CallMediaEvent)>,
    ) -> Core {
        let mut accounts = accounts;
        if accounts.is_empty() {
            accounts.push((
                acct::unsaved("local", &format!("vaxel@{sip_addr}"), false),
                None,
            ));
        }
        // The store moves to its own thread; the config keeps an empty one.
        let store = std::mem::replace(
            &mut config.store,
            Store::open_in_memory().expect("in-memory store"),
        );
        let records = RecordsThread::start(store, events.clone());
        let mut core = Core {
            config,
            sip,
            sip_addr,
            events,
            media_tx,
            accounts: Vec::new(),
            calls: BTreeMap::new(),
            next_call: 1,
            clients: ClientTxs::new(),
            audio: None,
            quitting: None,
            stats_bad_requests: 0,
            hops: HashMap::new(),
            records,
            reg_hops: HashMap::new(),
            new_events: None,
            next_flow_check: Instant::now() + FLOW_CHECK,
            watches: BTreeMap::new(),
            next_watch: 1,
            conference: None,
        };
        for (c, password) in accounts {
            let local = core.local_for(&acct::user(&c), c.transport);
            let aor = NameAddr::new(acct::aor(&c).unwrap_or_else(|_| local.contact.clone()));
            let mut a = AccountRt {
                config: c,
                aor: aor.clone(),
                password,
                registration: None,
                pager: Pager::new(local.clone(), aor, None, new_rng()),
                local,
                presence: None,
                presence_set: None,
                presence_until: None,
                sent: HashMap::new(),
            };
            a.pager = Pager::new(a.local.clone(), a.aor.clone(), a.auth(), new_rng());
            core.accounts.push(a);
        }
        core
    }

    fn local_for(&self, user: &str, transport: AccountTransport) -> Local {
        let host = Host::from(self.sip_addr.ip());
        let mut uri = SipUri::new(host.clone())
            .with_port(self.sip_addr.port())
            .with_user(user);
        let t = match transport {
            AccountTransport::Udp => Transport::Udp,
            AccountTransport::Tcp => {
                uri = uri.with_param("transport", Some("tcp"));
                Transport::Tcp
            }
            AccountTransport::Tls => {
                uri = uri.with_param("transport", Some("tls"));
                Transport::Tls
            }
        };
        Local {
            transport: t,
            host,
            port: Some(self.sip_addr.port()),
            contact: Uri::Sip(uri),
            user_agent: Some(self.config.user_agent.clone()),
        }
    }

    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    fn fail(&self, code: ErrorCode, message: impl Into<String>, call: Option<CallId>) {
        self.emit(Event::error(code, message, call));
    }

    async fn run(
        &mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut tx_events: vaxel_transport::Events,
        mut media_rx: mpsc::UnboundedReceiver<(CallId, CallMediaEvent)>,
        warnings: Vec<String>,
    ) {
        self.emit(Event::Started {
            listening: vec![
                format!("udp:{}", self.sip_addr),
                format!("tcp:{}", self.sip_addr),
            ],
        });
        for w in warnings {
            self.fail(ErrorCode::Environment, w, None);
        }
        let mut commands_open = true;
        loop {
            self.flush().await;
            if let Some(deadline) = self.quitting
                && (self.calls.is_empty() && !self.unregistering() && !self.presence_busy()
                    || Instant::now() >= deadline)
            {
                break;
            }
            let wake = self.next_timeout();
            tokio::select! {
                c = commands.recv(), if commands_open => match c {
                    Some(c) => self.command(c).await,
                    None => { commands_open = false; self.quit(); }
                },
                ev = tx_events.recv() => match ev {
                    Some(ev) => self.tx_event(ev),
                    None => break,
                },
                Some((id, ev)) = media_rx.recv() => self.media_event(id, ev),
                _ = tokio::time::sleep_until(wake.into()) => {
                    self.timeouts();
                    self.check_flows().await;
                }
            }
            // After a network change the new endpoint's events replace the old one's
            // (whose stream has ended).
            if let Some(rx) = self.new_events.take() {
                tx_events = rx;
            }
        }
        for (_, c) in std::mem::take(&mut self.calls) {
            if let Some(m) = c.media {
                let _ = m.stop().await;
            }
        }
        self.sip.stop().await;
        self.records.stop().await;
        self.emit(Event::Stopped);
    }

    fn unregistering(&self) -> bool {
        self.accounts.iter().any(|a| {
            a.registration
                .as_ref()
                .is_some_and(|r| r.state() == RegistrationState::Unregistering)
        })
    }

    /// Presence still being removed or unsubscribed (on the way out).
    fn presence_busy(&self) -> bool {
        self.accounts
            .iter()
            .any(|a| a.presence.as_ref().is_some_and(|p| !p.is_idle()))
            || self.watches.values().any(|w| {
                w.sub
                    .as_ref()
                    .is_some_and(|s| *s.state() != SubState::Terminated)
            })
    }

    /// RFC 5626 §4.4: looks at the stream connection of every registered account; one
    /// that is gone means the registrar may have lost our binding (restart) or the network
    /// changed, so the account registers again now (the registration backs off while the
    /// server stays away).
    async fn check_flows(&mut self) {
        let now = Instant::now();
        if now < self.next_flow_check {
            return;
        }
        self.next_flow_check = now + FLOW_CHECK;
        for i in 0..self.accounts.len() {
            let Some(hop) = self.reg_hops.get(&i).cloned() else {
                continue;
            };
            let registered = self.accounts[i]
                .registration
                .as_ref()
                .is_some_and(|r| matches!(r.state(), RegistrationState::Registered { .. }));
            if !registered || hop.peer.transport == TransportKind::Udp {
                continue;
            }
            if !self.sip.is_connected(hop.peer).await {
                tracing::info!(
                    "account {}: connection to the registrar lost; registering again",
                    self.accounts[i].config.name
                );
                self.reg_hops.remove(&i);
                if let Some(r) = self.accounts[i].registration.as_mut() {
                    r.refresh_now(now);
                }
            }
        }
    }

    fn next_timeout(&self) -> Instant {
        let mut t = Instant::now() + Duration::from_secs(3600);
        if !self.reg_hops.is_empty() {
            t = t.min(self.next_flow_check);
        }
        if let Some(q) = self.quitting {
            t = t.min(q);
        }
        for a in &self.accounts {
            for x in [
                a.registration.as_ref().and_then(|r| r.poll_timeout()),
                a.pager.poll_timeout(),
                a.presence.as_ref().and_then(|p| p.poll_timeout()),
                a.presence_until,
            ]
            .into_iter()
            .flatten()
            {
                t = t.min(x);
            }
        }
        for c in self.calls.values() {
            if let Some(x) = c.session.poll_timeout() {
                t = t.min(x);
            }
        }
        for w in self.watches.values() {
            for x in [w.retry_at, w.sub.as_ref().and_then(|s| s.poll_timeout())]
                .into_iter()
                .flatten()
            {
                t = t.min(x);
            }
        }
        t
    }

    fn timeouts(&mut self) {
        let now = Instant::now();
        for a in &mut self.accounts {
            if let Some(r) = a.registration.as_mut()
                && r.poll_timeout().is_some_and(|t| t <= now)
            {
                r.handle_timeout(now);
            }
            if let Some(p) = a.presence.as_mut()
                && p.poll_timeout().is_some_and(|t| t <= now)
            {
                p.handle_timeout(now);
            }
        }
        // An activity whose end time has come (R-110): back to available.
        let ended: Vec<usize> = (0..self.accounts.len())
            .filter(|&i| self.accounts[i].presence_until.is_some_and(|t| t <= now))
            .collect();
        for i in ended {
            self.set_presence(i, "available".into(), None, None, now);
        }
        let due: Vec<u64> = self
            .watches
            .iter()
            .filter(|(_, w)| w.retry_at.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.subscribe(id, now);
        }
        for w in self.watches.values_mut() {
            if let Some(s) = w.sub.as_mut()
                && s.poll_timeout().is_some_and(|t| t <= now)
            {
                s.handle_timeout(now);
            }
        }
        for c in self.calls.values_mut() {
            if c.session.poll_timeout().is_some_and(|t| t <= now) {
                c.session.handle_timeout(now);
            }
        }
    }

    // ------------------------------------------------------------------
    // Commands

    fn account_index(&self, name: Option<&str>) -> Result<usize, String> {
        match name {
            None => Ok(0),
            Some(n) => self
                .accounts
                .iter()
                .position(|a| a.config.name == n)
                .ok_or_else(|| format!("no account named {n:?}")),
        }
    }

    /// The call a command means: the given one, else (for `answer`) the ringing one,
    /// else the only or most recent established one.
    fn pick_call(&self, call: Option<CallId>, ringing: bool) -> Result<CallId, String> {
        if let Some(id) = call {
            return if self.calls.contains_key(&id) {
                Ok(id)
            } else {
                Err(format!("no call {id}"))
            };
        }
        if ringing {
            return self
                .calls
                .values()
                .find(|c| {
                    !c.outgoing
                        && matches!(
                            c.session.state(),
                            SessionState::Incoming | SessionState::Ringing | SessionState::Early
                        )
                })
                .map(|c| c.id)
                .ok_or_else(|| "no ringing call".into());
        }
        // The newest call that is not held, else the newest call.
        self.calls
            .values()
            .rev()
            .find(|c| !c.held && !matches!(c.session.state(), SessionState::Terminated(_)))
            .or_else(|| self.calls.values().next_back())
            .map(|c| c.id)
            .ok_or_else(|| "no call".into())
    }

    /// A URI from what the user typed: a bare user gets the account's domain.
    fn target_uri(&self, account: usize, text: &str) -> Result<Uri, String> {
        let t = text.trim();
        let full = if t.contains('@') || t.starts_with("sip:") || t.starts_with("sips:") {
            t.to_owned()
        } else {
            let domain = self.accounts[account]
                .aor
                .uri
                .as_sip()
                .map(|s| match s.port {
                    Some(p) => format!("{}:{p}", s.host),
                    None => s.host.to_string(),
                })
                .unwrap_or_default();
            format!("{t}@{domain}")
        };
        parse_sip_uri(&full).map_err(|e| e.to_string())
    }

    async fn command(&mut self, c: Command) {
        let now = Instant::now();
        let r: Result<(), (ErrorCode, String, Option<CallId>)> = async {
            let bad = |m: String| (ErrorCode::BadCommand, m, None);
            match c {
                Command::Snapshot => {
                    let snapshot = self.snapshot();
                    self.records.run(move |r| r.snapshot(snapshot));
                    Ok(())
                }
                Command::History { limit, missed_only } => {
                    self.records.run(move |r| r.history(limit, missed_only));
                    Ok(())
                }
                Command::Search { query, limit } => {
                    self.records.run(move |r| r.search(query, limit));
                    Ok(())
                }
                Command::ContactAdd { contact } => {
                    if contact.name.trim().is_empty() {
                        return Err(bad("contact_add: give a name".into()));
                    }
                    self.records.run(move |r| r.contact_add(contact));
                    Ok(())
                }
                Command::ContactUpdate { id, contact } => {
                    if contact.name.trim().is_empty() {
                        return Err(bad("contact_update: give a name".into()));
                    }
                    self.records.run(move |r| r.contact_update(id, contact));
                    Ok(())
                }
                Command::Contacts => {
                    self.records.run(|r| r.contacts());
                    Ok(())
                }
                Command::VcardImport { path } => {
                    self.records.run(move |r| r.vcard_import(path));
                    Ok(())
                }
                Command::VcardExport { path } => {
                    self.records.run(move |r| r.vcard_export(path));
                    Ok(())
                }
                Command::MarkMissedSeen => {
                    self.records.run(|r| r.mark_missed_seen());
                    Ok(())
                }
                Command::Register { account } => {
                    let idx: Vec<usize> = match account {
                        Some(n) => vec![self.account_index(Some(&n)).map_err(bad)?],
                        None => (0..self.accounts.len())
                            .filter(|&i| self.accounts[i].config.register)
                            .collect(),
                    };
                    for i in idx {
                        self.register(i, now);
                    }
                    Ok(())
                }
                Command::Unregister { account } => {
                    let idx: Vec<usize> = match account {
                        Some(n) => vec![self.account_index(Some(&n)).map_err(bad)?],
                        None => (0..self.accounts.len()).collect(),
                    };
                    for i in idx {
                        if let Some(r) = self.accounts[i].registration.as_mut() {
                            r.unregister(now);
                        }
                    }
                    Ok(())
                }
                Command::Call {
                    uri,
                    account,
                    media,
                } => {
                    let a = self.account_index(account.as_deref()).map_err(bad)?;
                    let target = self.target_uri(a, &uri).map_err(bad)?;
                    self.place_call(a, target, media, Vec::new(), None)
                        .await
                        .map(|_| ())
                        .map_err(|e| (ErrorCode::Environment, e, None))
                }
                Command::Answer { call, media } => {
                    let id = self.pick_call(call, true).map_err(bad)?;
                    self.answer(id, media, now).await
                }
                Command::Reject { call, code } => {
                    let id = self.pick_call(call, true).map_err(bad)?;
                    let c = self.calls.get_mut(&id).ok_or_else(|| bad("gone".into()))?;
                    c.ringtone = None;
                    c.session
                        .reject(now, code.unwrap_or(486))
                        .map_err(|e| (ErrorCode::BadCommand, e.to_string(), Some(id)))
                }
                Command::Hangup { call } => {
                    let id = self.pick_call(call, false).map_err(bad)?;
                    if let Some(c) = self.calls.get_mut(&id) {
                        c.session.hangup(now);
                    }
                    Ok(())
                }
                Command::Hold { call } => {
                    let id = self.pick_call(call, false).map_err(bad)?;
                    self.set_hold(id, true, now)
                }
                Command::Resume { call } => {
                    let id = match call {
                        Some(i) => i,
                        None => self
                            .calls
                            .values()
                            .rev()
                            .find(|c| c.held)
                            .map(|c| c.id)
                            .ok_or_else(|| bad("no held call".into()))?,
                    };
                    self.set_hold(id, false, now)
                }
                Command::Mute { call, muted } => {
                    let id = self.pick_call(call, false).map_err(bad)?;
                    let c = self.calls.get_mut(&id).ok_or_else(|| bad("gone".into()))?;
                    match &c.media {
                        Some(m) => m
                            .set_mute(muted)
                            .map_err(|e| (ErrorCode::BadCommand, e.to_string(), Some(id)))?,
                        None => {
                            return Err((ErrorCode::BadCommand, "no media yet".into(), Some(id)));
                        }
                    }
                    c.muted = muted;
                    self.emit(Event::Muted { call: id, muted });
                    Ok(())
                }
                Command::Dtmf {
                    call,
                    digits,
                    method,
                } => {
                    let id = self.pick_call(call, false).map_err(bad)?;
                    self.send_dtmf(id, &digits, method, now)
                }
                Command::Transfer { call, target } => {
                    let id = self.pick_call(call, false).map_err(bad)?;
                    let a = self.calls[&id].account;
                    let uri = self.target_uri(a, &target).map_err(bad)?;
                    let c = self.calls.get_mut(&id).ok_or_else(|| bad("gone".into()))?;
                    // Held for the transfer: take it back if the transfer fails (R-105).
                    c.resume_on_transfer_failure = c.held || c.pending_hold == Some(true);
                    c.session
                        .refer(now, uri)
                        .map_err(|e| (ErrorCode::BadCommand, e.to_string(), Some(id)))
                }
                Command::AttendedTransfer { call, to } => {
                    let consult = self
                        .calls
                        .get(&to)
                        .ok_or_else(|| bad(format!("no call {to}")))?;
                    let dialog = consult.session.dialog().ok_or_else(|| {
                        (
                            ErrorCode::BadCommand,
                            "the consultation call is not up".into(),
                            Some(to),
                        )
                    })?;
                    let target = dialog.remote_target().clone();
                    let replaces = consult.session.replaces_value();
                    let c = self
                        .calls
                        .get_mut(&call)
                        .ok_or_else(|| bad(format!("no call {call}")))?;
                    c.resume_on_transfer_failure = c.held || c.pending_hold == Some(true);
                    c.session
                        .refer_replacing(now, target, replaces.as_ref())
                        .map_err(|e| (ErrorCode::BadCommand, e.to_string(), Some(call)))
                }
                Command::Merge { calls } => self.merge(calls, now),
                Command::SendToVoicemail { call } => {
                    let id = self.pick_call(call, true).map_err(bad)?;
                    let c = self.calls.get_mut(&id).ok_or_else(|| bad("gone".into()))?;
                    let aor = self.accounts[c.account].aor.uri.as_sip().cloned();
                    let Some(aor) = aor else {
                        return Err(bad("voicemail: the account has no SIP address".into()));
                    };
                    let user = aor.user.as_deref().unwrap_or_default();
                    let host = match aor.port {
                        Some(p) => format!("{}:{p}", aor.host),
                        None => aor.host.to_string(),
                    };
                    let scheme = if aor.secure { "sips" } else { "sip" };
                    let target = parse_sip_uri(&format!("{scheme}:*59*{user}@{host}"))
                        .map_err(|e| bad(e.to_string()))?;
                    c.ringtone = None;
                    c.session
                        .redirect(now, 302, &target)
                        .map_err(|e| (ErrorCode::BadCommand, e.to_string(), Some(id)))
                }
                Command::Message { to, text, account } => {
                    let a = self.account_index(account.as_deref()).map_err(bad)?;
                    let uri = self.target_uri(a, &to).map_err(bad)?;
                    let shown = uri.to_string();
                    let acc = &mut self.accounts[a];
                    let id =
                        acc.pager
                            .send(now, uri, "text/plain;charset=UTF-8", Bytes::from(text));
                    acc.sent.insert(id, shown);
                    Ok(())
                }
                Command::SetPresence {
                    activity,
                    note,
                    until,
                    account,
                } => {
                    let a = self.account_index(account.as_deref()).map_err(bad)?;
                    if activity.trim().is_empty() || activity.contains(char::is_whitespace) {
                        return Err(bad(format!(
                            "presence: the activity is one word, not {activity:?}"
                        )));
                    }
                    let until = match until {
                        Some(u) => Some(
                            crate::presence::normalize_until(&u, &jiff::Zoned::now())
                                .map_err(bad)?,
                        ),
                        None => None,
                    };
                    self.set_presence(a, activity, note, until, now);
                    Ok(())
                }
                Command::Watch {
                    uri,
                    account,
                    presence,
                    dialog,
                } => {
                    let a = self.account_index(account.as_deref()).map_err(bad)?;
                    let target = self.target_uri(a, &uri).map_err(bad)?;
                    if !presence && !dialog {
                        return Err(bad("watch: presence, dialog or both".into()));
                    }
                    for (on, kind) in [(presence, WatchKind::Presence), (dialog, WatchKind::Dialog)]
                    {
                        let dup = self
                            .watches
                            .values()
                            .any(|w| w.uri == uri && w.kind == kind && !w.stopping);
                        if !on || dup {
                            continue;
                        }
                        let id = self.next_watch;
                        self.next_watch += 1;
                        self.watches.insert(
                            id,
                            Watch {
                                uri: uri.clone(),
                                target: target.clone(),
                                account: a,
                                kind,
                                sub: None,
                                retry_at: None,
                                failures: 0,
                                stopping: false,
                                accepted: false,
                                last: None,
                            },
                        );
                        self.subscribe(id, now);
                    }
                    Ok(())
                }
                Command::Unwatch { uri } => {
                    let ids: Vec<u64> = self
                        .watches
                        .iter()
                        .filter(|(_, w)| w.uri == uri && !w.stopping)
                        .map(|(id, _)| *id)
                        .collect();
                    if ids.is_empty() {
                        return Err(bad(format!("not watching {uri}")));
                    }
                    for id in ids {
                        self.unwatch(id, now);
                    }
                    Ok(())
                }
                Command::NetworkChanged { ip } => {
                    let ip = match ip {
                        Some(text) => text
                            .trim()
                            .parse::<IpAddr>()
                            .map_err(|_| bad(format!("network_changed: not an address: {text}")))?,
                        None => self.route_source().unwrap_or(self.config.ip),
                    };
                    self.network_changed(ip, now)
                        .await
                        .map_err(|e| (ErrorCode::Environment, e, None))
                }
                Command::Quit => {
                    self.quit();
                    Ok(())
                }
            }
        }
        .await;
        if let Err((code, message, call)) = r {
            self.fail(code, message, call);
        }
    }

    /// [`Command::Merge`]: a local conference of the given calls (or every call that is
    /// up), held ones resumed; each call's media joins the mixing bus.
    fn merge(
        &mut self,
        calls: Vec<CallId>,
        now: Instant,
    ) -> Result<(), (ErrorCode, String, Option<CallId>)> {
        let mut ids: std::collections::BTreeSet<CallId> = if calls.is_empty() {
            self.calls
                .values()
                .filter(|c| {
                    c.established
                        && !c.transferred
                        && c.session.state() == &SessionState::Established
                })
                .map(|c| c.id)
                .collect()
        } else {
            calls.into_iter().collect()
        };
        if let Some((_, members)) = &self.conference {
            ids.extend(members.iter().copied());
        }
        for id in &ids {
            let up = self
                .calls
                .get(id)
                .is_some_and(|c| c.established && c.media.is_some());
            if !up {
                return Err((
                    ErrorCode::BadCommand,
                    format!("merge: call {id} is not up"),
                    Some(*id),
                ));
            }
        }
        if ids.len() < 2 {
            return Err((
                ErrorCode::BadCommand,
                "merge: needs two calls that are up".into(),
                None,
            ));
        }
        let (bus, members) = self
            .conference
            .get_or_insert_with(|| (vaxel_audio::mix::ConferenceBus::new(), Default::default()));
        let bus = bus.clone();
        let new: Vec<CallId> = ids
            .iter()
            .filter(|id| !members.contains(id))
            .copied()
            .collect();
        members.extend(new.iter().copied());
        for id in new {
            if let Some(m) = self.calls.get(&id).and_then(|c| c.media.as_ref()) {
                let _ = m.set_conference(Some(bus.join(id)));
            }
        }
        for id in &ids {
            let held = self.calls.get(id).is_some_and(|c| {
                (c.held && c.pending_hold != Some(false)) || c.pending_hold == Some(true)
            });
            if held {
                self.set_hold(*id, false, now)?;
            }
        }
        self.emit(Event::Conference {
            calls: ids.into_iter().collect(),
        });
        Ok(())
    }

    /// A call ended: it leaves the conference; with one member left the conference ends.
    fn leave_conference(&mut self, id: CallId) {
        let Some((_, members)) = self.conference.as_mut() else {
            return;
        };
        if !members.remove(&id) {
            return;
        }
        if members.len() >= 2 {
            let calls = members.iter().copied().collect();
            self.emit(Event::Conference { calls });
            return;
        }
        let rest: Vec<CallId> = members.iter().copied().collect();
        self.conference = None;
        for other in rest {
            if let Some(m) = self.calls.get(&other).and_then(|c| c.media.as_ref()) {
                let _ = m.set_conference(None);
            }
        }
        self.emit(Event::Conference { calls: Vec::new() });
    }

    fn snapshot(&self) -> Event {
        Event::Snapshot {
            accounts: self
                .accounts
                .iter()
                .map(|a| AccountState {
                    name: a.config.name.clone(),
                    uri: a.aor.uri.to_string(),
                    registration: match a.registration.as_ref().map(|r| r.state()) {
                        None => "none".into(),
                        Some(RegistrationState::Idle) => "idle".into(),
                        Some(RegistrationState::Registering) => "registering".into(),
                        Some(RegistrationState::Registered { .. }) => "registered".into(),
                        Some(RegistrationState::Failed) => "failed".into(),
                        Some(RegistrationState::Unregistering) => "unregistering".into(),
                    },
                    presence: a.presence_set.as_ref().map(|p| p.activity.clone()),
                })
                .collect(),
            calls: self
                .calls
                .values()
                .map(|c| CallState {
                    call: c.id,
                    account: self.accounts[c.account].config.name.clone(),
                    remote: c.remote.clone(),
                    direction: if c.outgoing { "outgoing" } else { "incoming" }.into(),
                    state: match c.session.state() {
                        SessionState::Calling | SessionState::Proceeding => "calling",
                        SessionState::Incoming | SessionState::Ringing => "ringing",
                        SessionState::Early => "early",
                        SessionState::Established => "established",
                        SessionState::Terminating => "terminating",
                        SessionState::Terminated(_) => "ended",
                    }
                    .into(),
                    held: c.held,
                    muted: c.muted,
                    srtp: c.oa.current().is_some_and(|a| a.srtp.is_some()),
                })
                .collect(),
            // Filled in by the store's thread.
            unseen_missed: 0,
            watches: self
                .watches
                .values()
                .map(|w| WatchState {
                    uri: w.uri.clone(),
                    package: w.kind.event().into(),
                    active: w.accepted
                        && w.retry_at.is_none()
                        && w.sub
                            .as_ref()
                            .is_some_and(|s| *s.state() != SubState::Terminated),
                    last: w.last.clone().map(Box::new),
                })
                .collect(),
        }
    }

    fn register(&mut self, i: usize, now: Instant) {
        let a = &mut self.accounts[i];
        if a.registration.is_none() {
            let registrar = a
                .aor
                .uri
                .as_sip()
                .map(|s| {
                    let mut r = SipUri::new(s.host.clone());
                    r.port = s.port;
                    Uri::Sip(r)
                })
                .unwrap_or_else(|| a.aor.uri.clone());
            let mut rc = RegistrationConfig::new(registrar, a.aor.clone(), a.local.clone());
            rc.expires = acct::DEFAULT_EXPIRES;
            rc.auth = a.auth();
            rc.backoff_base = Duration::from_secs(5);
            rc.backoff_max = Duration::from_secs(300);
            a.registration = Some(Registration::new(rc, new_rng()));
        }
        if let Some(r) = a.registration.as_mut() {
            r.register(now);
        }
    }

    /// The local address that routes to the first account's server (outbound proxy, else
    /// its domain), if the OS has a route.
    fn route_source(&self) -> Option<IpAddr> {
        let a = self.accounts.first()?;
        let uri = match acct::proxy(&a.config) {
            Some(p) => parse_sip_uri(p).ok()?,
            None => a.aor.uri.clone(),
        };
        let host = uri.as_sip()?.host.to_string();
        local_address_for(&host)
    }

    /// Moves SIP to `ip` and makes every registration, publication and watch again from
    /// there (see [`Command::NetworkChanged`]).
    async fn network_changed(&mut self, ip: IpAddr, now: Instant) -> Result<(), String> {
        if ip != self.sip_addr.ip() {
            let tls = tls_client(&self.config.tls_ca)
                .map_err(|e| e.to_string())?
                .0;
            let port =
                if std::net::UdpSocket::bind(SocketAddr::new(ip, self.sip_addr.port())).is_ok() {
                    self.sip_addr.port()
                } else {
                    free_port(ip)
                };
            let addr = SocketAddr::new(ip, port);
            let (sip, events) = Endpoint::start(endpoint_config(addr, tls))
                .await
                .map_err(|e| format!("cannot listen for SIP on {addr}: {e}"))?;
            let old = std::mem::replace(&mut self.sip, sip);
            old.stop().await;
            self.new_events = Some(events);
            self.sip_addr = addr;
            self.config.ip = ip;
            // The old endpoint's transactions are gone with it.
            self.clients = ClientTxs::new();
            self.reg_hops.clear();
            self.emit(Event::AddressChanged {
                listening: vec![format!("udp:{addr}"), format!("tcp:{addr}")],
            });
        }
        for i in 0..self.accounts.len() {
            let user = acct::user(&self.accounts[i].config);
            let local = self.local_for(&user, self.accounts[i].config.transport);
            let a = &mut self.accounts[i];
            a.local = local.clone();
            a.pager = Pager::new(local.clone(), a.aor.clone(), a.auth(), new_rng());
            if let Some(r) = a.registration.as_mut() {
                r.set_local(local);
                if !matches!(r.state(), RegistrationState::Idle) {
                    r.refresh_now(now);
                }
            }
            if a.presence.take().is_some()
                && let Some(set) = a.presence_set.clone()
            {
                self.set_presence(i, set.activity, set.note, set.until, now);
            }
        }
        let ids: Vec<u64> = self
            .watches
            .iter()
            .filter(|(_, w)| !w.stopping)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.subscribe(id, now);
        }
        Ok(())
    }

    /// Publishes (or changes) an account's presence.
    fn set_presence(
        &mut self,
        i: usize,
        activity: String,
        note: Option<String>,
        until: Option<String>,
        now: Instant,
    ) {
        let a = &mut self.accounts[i];
        let entity = a.aor.uri.to_string();
        let doc = crate::presence::document(&entity, &activity, note.as_deref(), until.as_deref());
        if a.presence.is_none() {
            a.presence = Some(Publisher::new(
                PublisherConfig {
                    local: a.local.clone(),
                    resource: a.aor.clone(),
                    auth: a.auth(),
                    event: "presence".into(),
                    content_type: "application/pidf+xml".into(),
                    expires: PRESENCE_EXPIRES,
                },
                new_rng(),
            ));
        }
        a.presence_until = until
            .as_deref()
            .and_then(|u| u.parse::<jiff::Timestamp>().ok())
            .map(|ts| {
                let left = ts.duration_since(jiff::Timestamp::now());
                now + Duration::try_from(left).unwrap_or(Duration::ZERO)
            });
        a.presence_set = Some(PresenceSet {
            activity,
            note,
            until,
        });
        if let Some(p) = a.presence.as_mut() {
            p.publish(now, Bytes::from(doc));
        }
    }

    /// Starts (or restarts) a watch's subscription.
    fn subscribe(&mut self, id: u64, now: Instant) {
        let Some(w) = self.watches.get_mut(&id) else {
            return;
        };
        w.retry_at = None;
        w.accepted = false;
        let a = &self.accounts[w.account];
        let cfg = SubscriberConfig {
            local: a.local.clone(),
            from: a.aor.clone(),
            auth: a.auth(),
            event: w.kind.event().into(),
            accept: w.kind.accept().into(),
            expires: WATCH_EXPIRES,
        };
        w.sub = Some(Subscriber::subscribe(
            now,
            cfg,
            new_rng(),
            w.target.clone(),
            NameAddr::new(w.target.clone()),
        ));
    }

    /// Ends a watch: unsubscribes, or drops it when no subscription is up.
    fn unwatch(&mut self, id: u64, now: Instant) {
        let Some(w) = self.watches.get_mut(&id) else {
            return;
        };
        w.stopping = true;
        w.retry_at = None;
        match w.sub.as_mut() {
            Some(s) if *s.state() != SubState::Terminated => s.unsubscribe(now),
            _ => {
                let w = self.watches.remove(&id).expect("present");
                self.emit(Event::WatchEnded {
                    uri: w.uri,
                    package: w.kind.event().into(),
                    reason: "unwatched".into(),
                    retry_in_s: None,
                });
            }
        }
    }

    fn quit(&mut self) {
        if self.quitting.is_some() {
            return;
        }
        let now = Instant::now();
        self.quitting = Some(now + Duration::from_secs(4));
        for a in &mut self.accounts {
            if let Some(p) = a.presence.as_mut()
                && p.has_state()
            {
                p.remove(now);
            }
        }
        let ids: Vec<u64> = self.watches.keys().copied().collect();
        for id in ids {
            self.unwatch(id, now);
        }
        for c in self.calls.values_mut() {
            c.session.hangup(now);
        }
        for a in &mut self.accounts {
            if let Some(r) = a.registration.as_mut()
                && matches!(r.state(), RegistrationState::Registered { .. })
            {
                r.unregister(now);
            }
        }
    }

    fn policy(&self) -> MediaPolicy {
        let mut p = MediaPolicy::default();
        if let Some(c) = &self.config.codecs {
            p.codecs = c.clone();
        }
        p
    }

    async fn new_call(&mut self) -> Result<(CallId, MediaPorts, OfferAnswer), String> {
        let ports = MediaPorts::bind(self.config.ip, self.config.rtp_ports.clone())
            .await
            .map_err(|e| e.to_string())?;
        let oa = OfferAnswer::new(self.policy(), ports.rtp_addr(), &mut rand::rng());
        let id = self.next_call;
        self.next_call += 1;
        Ok((id, ports, oa))
    }

    async fn place_call(
        &mut self,
        account: usize,
        target: Uri,
        files: MediaFiles,
        extra: Vec<(HeaderName, String)>,
        transfer_of: Option<CallId>,
    ) -> Result<CallId, String> {
        let remote = target.to_string();
        let (id, ports, mut oa) = self.new_call().await?;
        let offer = oa.create_offer().to_string();
        let a = &self.accounts[account];
        let session = Session::invite(
            Instant::now(),
            SessionConfig {
                local: a.local.clone(),
                from: a.aor.clone(),
                auth: a.auth(),
            },
            new_rng(),
            target.clone(),
            NameAddr::new(target),
            Bytes::from(offer),
            extra,
        );
        let account_name = a.config.name.clone();
        self.calls.insert(
            id,
            Call {
                id,
                account,
                session,
                oa,
                ports: Some(ports),
                media: None,
                files,
                outgoing: true,
                remote: remote.clone(),
                pending_answer: None,
                held: false,
                muted: false,
                pending_hold: None,
                transfer_of,
                replaces: None,
                transferred: false,
                established: false,
                resume_on_transfer_failure: false,
                progress_reported: 0,
                ringback: None,
                ringtone: None,
                answered_elsewhere: false,
            },
        );
        let account_id = self.accounts[account].config.id;
        let shown = remote.clone();
        self.records
            .run(move |r| r.call_started(id, true, account_id, shown, String::new()));
        self.emit(Event::Outgoing {
            call: id,
            account: account_name,
            uri: remote,
        });
        Ok(id)
    }

    async fn answer(
        &mut self,
        id: CallId,
        media: MediaFiles,
        now: Instant,
    ) -> Result<(), (ErrorCode, String, Option<CallId>)> {
        let Some(c) = self.calls.get_mut(&id) else {
            return Err((ErrorCode::BadCommand, format!("no call {id}"), None));
        };
        if !media.is_empty() {
            c.files = media;
        }
        c.ringtone = None;
        if let Some((answer, audio)) = c.pending_answer.take() {
            c.session
                .answer(now, Bytes::from(answer))
                .map_err(|e| (ErrorCode::BadCommand, e.to_string(), Some(id)))?;
            self.start_media(id, audio);
        } else {
            // An INVITE without offer: we offer in the 200, the answer comes in the ACK.
            let offer = c.oa.create_offer().to_string();
            c.session
                .answer(now, Bytes::from(offer))
                .map_err(|e| (ErrorCode::BadCommand, e.to_string(), Some(id)))?;
        }
        Ok(())
    }

    fn set_hold(
        &mut self,
        id: CallId,
        hold: bool,
        now: Instant,
    ) -> Result<(), (ErrorCode, String, Option<CallId>)> {
        let Some(c) = self.calls.get_mut(&id) else {
            return Err((ErrorCode::BadCommand, format!("no call {id}"), None));
        };
        if c.held == hold {
            return Err((
                ErrorCode::BadCommand,
                format!("call is {}", if hold { "already held" } else { "not held" }),
                Some(id),
            ));
        }
        c.oa.set_hold(hold);
        let offer = c.oa.create_offer().to_string();
        match c.session.reinvite(now, Bytes::from(offer)) {
            Ok(()) => {
                c.pending_hold = Some(hold);
                Ok(())
            }
            Err(e) => {
                c.oa.set_hold(c.held);
                Err((ErrorCode::BadCommand, e.to_string(), Some(id)))
            }
        }
    }

    fn send_dtmf(
        &mut self,
        id: CallId,
        digits: &str,
        method: Option<DtmfMethod>,
        now: Instant,
    ) -> Result<(), (ErrorCode, String, Option<CallId>)> {
        let Some(c) = self.calls.get_mut(&id) else {
            return Err((ErrorCode::BadCommand, format!("no call {id}"), None));
        };
        let has_te = c.oa.current().is_some_and(|a| a.telephone_event.is_some());
        let method = method.unwrap_or(if has_te {
            DtmfMethod::Rfc4733
        } else {
            DtmfMethod::Info
        });
        let err = |e: String| (ErrorCode::BadCommand, e, Some(id));
        match method {
            DtmfMethod::Rfc4733 => match &c.media {
                Some(m) => m.send_dtmf(digits).map_err(|e| err(e.to_string())),
                None => Err(err("no media yet".into())),
            },
            DtmfMethod::Info => {
                for d in digits.chars() {
                    if vaxel_media::dtmf::event_code(d).is_err() {
                        return Err(err(format!("not a DTMF digit: {d:?}")));
                    }
                }
                for d in digits.chars() {
                    c.session
                        .send_dtmf(now, d, 160)
                        .map_err(|e| err(e.to_string()))?;
                }
                Ok(())
            }
        }
    }

    // ------------------------------------------------------------------
    // Media

    fn audio_io(&mut self, files: &MediaFiles) -> Result<AudioIo, String> {
        let files = if files.is_empty() {
            self.config.media.clone()
        } else {
            files.clone()
        };
        if files.is_empty() {
            if self.audio.is_none() {
                self.audio = Some(
                    vaxel_audio::Audio::start(self.config.audio.clone())
                        .map_err(|e| format!("sound devices: {e}"))?,
                );
            }
            let audio = self.audio.as_ref().ok_or("no audio")?;
            let capture = audio
                .open_capture(crate::media::call_stream_options())
                .map_err(|e| format!("microphone: {e}"))?;
            let playback = audio
                .open_playback(
                    vaxel_audio::DeviceRole::Output,
                    crate::media::call_stream_options(),
                )
                .map_err(|e| format!("speaker: {e}"))?;
            return Ok(AudioIo::Devices { capture, playback });
        }
        let source: Box<dyn crate::media::AudioSource> = match &files.play {
            Some(p) => Box::new(WavFileSource::open(p, PlayMode::Loop).map_err(|e| e.to_string())?),
            None => Box::new(SilentSource),
        };
        let sink: Box<dyn crate::media::AudioSink> = match &files.record {
            Some(p) => Box::new(WavFileSink::create(p).map_err(|e| e.to_string())?),
            None => Box::new(NullSink),
        };
        Ok(AudioIo::Endpoints { source, sink })
    }

    /// Starts a call's media with what was negotiated, or updates it when running.
    fn start_media(&mut self, id: CallId, audio: NegotiatedAudio) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if let Some(m) = &c.media {
            if let Err(e) = m.update(audio) {
                self.fail(ErrorCode::Environment, e.to_string(), Some(id));
            }
            return;
        }
        let Some(ports) = c.ports.take() else {
            return;
        };
        let files = c.files.clone();
        // The ringback's audio goes on as the call's: the same speaker, the same file.
        let from_ringback = c.ringback.take().and_then(|r| r.stop());
        let io = match from_ringback.map_or_else(|| self.audio_io(&files), Ok) {
            Ok(io) => io,
            Err(e) => {
                self.fail(ErrorCode::Environment, e, Some(id));
                if let Some(c) = self.calls.get_mut(&id) {
                    c.session.hangup(Instant::now());
                }
                return;
            }
        };
        let mut media_config = CallMediaConfig::new(ports, audio, io);
        media_config.tuning.echo_cancellation = self.config.echo_cancellation;
        match CallMedia::start(media_config) {
            Ok((handle, mut events)) => {
                let tx = self.media_tx.clone();
                tokio::spawn(async move {
                    while let Some(e) = events.recv().await {
                        if matches!(
                            e,
                            CallMediaEvent::Dtmf { .. }
                                | CallMediaEvent::Error(_)
                                | CallMediaEvent::Levels { .. }
                                | CallMediaEvent::Stats(_)
                        ) && tx.send((id, e)).is_err()
                        {
                            break;
                        }
                    }
                });
                if let Some(c) = self.calls.get_mut(&id) {
                    c.media = Some(handle);
                }
            }
            Err(e) => {
                self.fail(ErrorCode::Environment, e.to_string(), Some(id));
                if let Some(c) = self.calls.get_mut(&id) {
                    c.session.hangup(Instant::now());
                }
            }
        }
    }

    fn media_event(&mut self, id: CallId, e: CallMediaEvent) {
        match e {
            CallMediaEvent::Dtmf { digit, source } => self.emit(Event::Dtmf {
                call: id,
                digit,
                via: match source {
                    DtmfSource::Rfc4733 => DtmfVia::Rfc4733,
                    DtmfSource::InBand => DtmfVia::Inband,
                },
            }),
            CallMediaEvent::Error(e) => self.fail(ErrorCode::Environment, e.to_string(), Some(id)),
            CallMediaEvent::Levels {
                input_dbfs,
                output_dbfs,
            } => self.emit(Event::Levels {
                call: id,
                input_dbfs,
                output_dbfs,
            }),
            CallMediaEvent::Stats(s) => self.emit(Event::Quality {
                call: id,
                codec: s.call.codec.clone(),
                loss_percent: s.call.loss_percent,
                jitter_ms: s.call.jitter_ms,
                rtt_ms: s.call.rtt_ms,
            }),
            _ => {}
        }
    }

    // ------------------------------------------------------------------
    // SIP in

    fn tx_event(&mut self, ev: TxEvent) {
        let now = Instant::now();
        match ev {
            TxEvent::Request { tx, request, .. } => self.request(now, tx, request),
            TxEvent::Response { tx, response } => match self.clients.get(tx).map(|o| o.0) {
                Some(Owner::Reg(i)) => {
                    if let Some(r) = self.accounts[i].registration.as_mut() {
                        r.handle_response(now, &response);
                    }
                }
                Some(Owner::Pager(i)) => self.accounts[i].pager.handle_response(now, &response),
                Some(Owner::Pub(i)) => {
                    if let Some(p) = self.accounts[i].presence.as_mut() {
                        p.handle_response(now, &response);
                    }
                }
                Some(Owner::Sub(id)) => {
                    if let Some(s) = self.watches.get_mut(&id).and_then(|w| w.sub.as_mut()) {
                        s.handle_response(now, &response);
                    }
                }
                Some(Owner::Call(id)) => {
                    if let Some(c) = self.calls.get_mut(&id) {
                        c.session.handle_response(now, &response);
                    }
                }
                None => {}
            },
            TxEvent::Cancelled { invite, request } => {
                if let Some(c) = self
                    .calls
                    .values_mut()
                    .find(|c| c.session.server_tx() == Some(invite))
                {
                    c.answered_elsewhere = completed_elsewhere(&request);
                    c.session.handle_cancelled(now);
                }
            }
            TxEvent::Stray { message, .. } => match message {
                Message::Request(r) => {
                    if let Some(c) = self.calls.values_mut().find(|c| c.session.owns_request(&r)) {
                        c.session.handle_ack(now, &r);
                    }
                }
                Message::Response(r) => {
                    if let Some(c) = self
                        .calls
                        .values_mut()
                        .find(|c| c.session.owns_response(&r))
                    {
                        c.session.handle_response(now, &r);
                    }
                }
            },
            TxEvent::Timeout { tx } => self.tx_failed(now, tx, TxFailure::Timeout),
            TxEvent::TransportError { tx } => self.tx_failed(now, tx, TxFailure::Transport),
            TxEvent::Terminated { tx } => {
                self.clients.remove(tx);
            }
        }
    }

    fn tx_failed(&mut self, now: Instant, tx: TxKey, failure: TxFailure) {
        if let Some((owner, branch)) = self.clients.get(tx).cloned() {
            self.owner_failed(now, owner, &branch, failure);
            return;
        }
        // A server transaction: Timer H (our 2xx never acknowledged).
        if let Some(c) = self
            .calls
            .values_mut()
            .find(|c| c.session.server_tx() == Some(tx))
        {
            c.session.handle_server_timeout(now, tx);
        }
    }

    fn owner_failed(&mut self, now: Instant, owner: Owner, branch: &str, failure: TxFailure) {
        // A request outside a dialog went unanswered or could not be sent: it went the
        // registration's way (registrar, outbound proxy), so the binding may be gone too
        // (server restart, network change). Register again now; the registration backs
        // off while the server stays away.
        let account = match owner {
            Owner::Pager(i) | Owner::Pub(i) => Some(i),
            Owner::Sub(id) => self.watches.get(&id).map(|w| w.account),
            Owner::Call(id) => self
                .calls
                .get(&id)
                .filter(|c| {
                    c.outgoing
                        && matches!(
                            c.session.state(),
                            SessionState::Calling | SessionState::Proceeding
                        )
                })
                .map(|c| c.account),
            Owner::Reg(_) => None,
        };
        if let Some(r) = account.and_then(|i| self.accounts[i].registration.as_mut())
            && matches!(r.state(), RegistrationState::Registered { .. })
        {
            tracing::info!("a request failed ({failure:?}); registering again");
            r.refresh_now(now);
        }
        match owner {
            Owner::Reg(i) => {
                if let Some(r) = self.accounts[i].registration.as_mut() {
                    r.handle_failure(now, branch, failure);
                }
            }
            Owner::Pager(i) => self.accounts[i].pager.handle_failure(now, branch, failure),
            Owner::Pub(i) => {
                if let Some(p) = self.accounts[i].presence.as_mut() {
                    p.handle_failure(now, branch, failure);
                }
            }
            Owner::Sub(id) => {
                if let Some(s) = self.watches.get_mut(&id).and_then(|w| w.sub.as_mut()) {
                    s.handle_failure(now, branch, failure);
                }
            }
            Owner::Call(id) => {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.session.handle_failure(now, branch, failure);
                }
            }
        }
    }

    /// The account a request is for: by the Request-URI's user, else the first.
    fn account_for(&self, request: &Request) -> usize {
        let user = request
            .uri
            .as_sip()
            .and_then(|s| s.user.as_ref())
            .map(|u| u.to_string());
        user.and_then(|u| {
            self.accounts
                .iter()
                .position(|a| acct::user(&a.config) == u)
        })
        .unwrap_or(0)
    }

    fn request(&mut self, now: Instant, tx: TxKey, request: Request) {
        // A NOTIFY of one of our watches (RFC 6665 §4.1.3).
        if request.method == Method::Notify
            && let Some(s) = self
                .watches
                .values_mut()
                .filter_map(|w| w.sub.as_mut())
                .find(|s| s.owns_request(&request))
        {
            s.handle_request(now, tx, &request);
            return;
        }
        if let Some(c) = self
            .calls
            .values_mut()
            .find(|c| c.session.owns_request(&request))
        {
            c.session.handle_request(now, tx, &request);
            return;
        }
        let in_dialog = request.headers.to().ok().is_some_and(|t| t.tag().is_some());
        let reply = |core: &Core, r: Response| {
            let sip = core.sip.clone();
            tokio::spawn(async move {
                let _ = sip.send_response(tx, r).await;
            });
        };
        if in_dialog {
            // §12.2.2: a request in a dialog we do not have.
            reply(self, no_dialog_response(&request));
            return;
        }
        match request.method {
            Method::Invite => self.incoming(now, tx, request),
            Method::Message => {
                let i = self.account_for(&request);
                self.accounts[i].pager.handle_request(now, tx, &request);
            }
            Method::Options => {
                let mut r = Response::from_request(&request, StatusCode::OK);
                r.headers
                    .push(HeaderName::Allow, vaxel_sip::usage::session::ALLOW);
                reply(self, r);
            }
            Method::Bye | Method::Notify | Method::Info | Method::Refer | Method::Update => {
                reply(self, no_dialog_response(&request));
            }
            _ => {
                self.stats_bad_requests += 1;
                let status = StatusCode::new(405).unwrap_or(StatusCode::SERVER_INTERNAL_ERROR);
                let mut r = error_response(&request, status);
                r.headers
                    .push(HeaderName::Allow, vaxel_sip::usage::session::ALLOW);
                reply(self, r);
            }
        }
    }

    fn incoming(&mut self, now: Instant, tx: TxKey, request: Request) {
        let account = self.account_for(&request);
        let a = &self.accounts[account];
        let session = Session::incoming(
            now,
            SessionConfig {
                local: a.local.clone(),
                from: a.aor.clone(),
                auth: a.auth(),
            },
            new_rng(),
            tx,
            request,
        );
        // Media ports are bound when the Incoming event is handled (it is async).
        let id = self.next_call;
        self.next_call += 1;
        let oa = OfferAnswer::new(
            self.policy(),
            SocketAddr::new(self.config.ip, 9),
            &mut rand::rng(),
        );
        self.calls.insert(
            id,
            Call {
                id,
                account,
                session,
                oa,
                ports: None,
                media: None,
                files: MediaFiles::default(),
                outgoing: false,
                remote: String::new(),
                pending_answer: None,
                held: false,
                muted: false,
                pending_hold: None,
                transfer_of: None,
                replaces: None,
                transferred: false,
                established: false,
                resume_on_transfer_failure: false,
                progress_reported: 0,
                ringback: None,
                ringtone: None,
                answered_elsewhere: false,
            },
        );
    }

    // ------------------------------------------------------------------
    // Output

    /// Drains every usage until none has output left.
    async fn flush(&mut self) {
        loop {
            let mut work = false;
            for i in 0..self.accounts.len() {
                while let Some(o) = self.accounts[i]
                    .registration
                    .as_mut()
                    .and_then(|r| r.poll_output())
                {
                    work = true;
                    if let Some(e) = self.carry_out(Owner::Reg(i), o).await {
                        self.registration_event(i, e);
                    }
                }
                while let Some(o) = self.accounts[i].pager.poll_output() {
                    work = true;
                    if let Some(e) = self.carry_out(Owner::Pager(i), o).await {
                        self.pager_event(i, e);
                    }
                }
                while let Some(o) = self.accounts[i]
                    .presence
                    .as_mut()
                    .and_then(|p| p.poll_output())
                {
                    work = true;
                    if let Some(e) = self.carry_out(Owner::Pub(i), o).await {
                        self.publisher_event(i, e);
                    }
                }
            }
            let ids: Vec<u64> = self.watches.keys().copied().collect();
            for id in ids {
                while let Some(o) = self
                    .watches
                    .get_mut(&id)
                    .and_then(|w| w.sub.as_mut())
                    .and_then(|s| s.poll_output())
                {
                    work = true;
                    if let Some(e) = self.carry_out(Owner::Sub(id), o).await {
                        self.subscriber_event(id, e);
                    }
                }
            }
            let ids: Vec<CallId> = self.calls.keys().copied().collect();
            for id in ids {
                while let Some(o) = self
                    .calls
                    .get_mut(&id)
                    .and_then(|c| c.session.poll_output())
                {
                    work = true;
                    if let Some(e) = self.carry_out(Owner::Call(id), o).await {
                        self.session_event(id, e).await;
                    }
                }
            }
            // Ended calls go once their output is drained.
            let done: Vec<CallId> = self
                .calls
                .values()
                .filter(|c| matches!(c.session.state(), SessionState::Terminated(_)))
                .map(|c| c.id)
                .collect();
            for id in done {
                if let Some(mut c) = self.calls.remove(&id) {
                    self.hops.remove(&id);
                    // Rang out without media: the ringback's recording is finished here.
                    if let Some(crate::media::AudioIo::Endpoints { mut sink, .. }) =
                        c.ringback.take().and_then(|r| r.stop())
                        && let Err(e) = sink.finish()
                    {
                        self.fail(ErrorCode::Environment, e.to_string(), Some(id));
                    }
                    if let Some(m) = c.media
                        && let Err(e) = m.stop().await
                    {
                        self.fail(ErrorCode::Environment, e.to_string(), Some(id));
                    }
                }
            }
            if !work {
                break;
            }
        }
    }

    /// Carries out a usage's output; returns its event, if it was one.
    async fn carry_out<E>(&mut self, owner: Owner, o: Output<E>) -> Option<E> {
        match o {
            Output::Event(e) => return Some(e),
            Output::Request(r) => {
                let branch = top_branch(&r.headers).unwrap_or_default();
                let sent = match self.next_hop(owner, &r).await {
                    Ok(target) => self
                        .sip
                        .send_request(r, target)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e),
                };
                match sent {
                    Ok(key) => self.clients.insert(key, owner, branch),
                    Err(e) => {
                        tracing::debug!("cannot send request: {e}");
                        self.owner_failed(Instant::now(), owner, &branch, TxFailure::Transport);
                    }
                }
            }
            Output::Ack(r) => {
                if let Ok(target) = self.next_hop(owner, &r).await {
                    let _ = self.sip.send_ack(r, target).await;
                }
            }
            Output::Cancel { branch } => {
                if let Some(key) = self.clients.key_of(&branch) {
                    let _ = self.sip.cancel(key).await;
                }
            }
            Output::Response { tx, response } => {
                let _ = self.sip.send_response(tx, response).await;
            }
        }
        None
    }

    /// Where a request goes (RFC 3261 §8.1.2, §12.2.1.1; RFC 3263): the first Route,
    /// else the account's outbound proxy for requests outside a dialog, else the
    /// Request-URI.
    async fn next_hop(&mut self, owner: Owner, r: &Request) -> Result<Target, String> {
        let account = match owner {
            Owner::Reg(i) | Owner::Pager(i) | Owner::Pub(i) => i,
            Owner::Sub(id) => self.watches.get(&id).map_or(0, |w| w.account),
            Owner::Call(id) => self.calls.get(&id).map_or(0, |c| c.account),
        };
        let cfg = &self.accounts[account].config;
        let in_dialog = r.headers.to().ok().is_some_and(|t| t.tag().is_some());
        let mut uri = match r.headers.routes().ok().and_then(|v| v.into_iter().next()) {
            Some(route) => route.uri,
            None => match (acct::proxy(cfg), in_dialog) {
                (Some(p), false) => parse_sip_uri(p)?,
                _ => r.uri.clone(),
            },
        };
        if let Uri::Sip(s) = &mut uri {
            s.headers = None;
            if s.transport().is_none() && cfg.transport != AccountTransport::Udp {
                s.params.set("transport", Some(cfg.transport.as_str()));
            }
        }
        let targets = self.sip.resolve(&uri).await.map_err(|e| e.to_string());
        let have: Vec<TransportKind> = self.sip.transports();
        let found = targets.ok().and_then(|ts| {
            ts.into_iter().find(|t| {
                have.contains(&t.peer.transport) && t.peer.addr.is_ipv4() == self.sip_addr.is_ipv4()
            })
        });
        match (found, owner) {
            (Some(t), Owner::Call(id)) => {
                self.hops.insert(id, t.clone());
                Ok(t)
            }
            (Some(t), Owner::Reg(i)) => {
                self.reg_hops.insert(i, t.clone());
                Ok(t)
            }
            (Some(t), _) => Ok(t),
            (None, Owner::Call(id)) => self
                .hops
                .get(&id)
                .cloned()
                .ok_or_else(|| format!("cannot reach {uri}")),
            (None, _) => Err(format!("cannot reach {uri}")),
        }
    }

    // ------------------------------------------------------------------
    // Usage events

    fn registration_event(&mut self, i: usize, e: RegistrationEvent) {
        let account = self.accounts[i].config.name.clone();
        self.emit(match e {
            RegistrationEvent::Registered { expires } => Event::Registered {
                account,
                expires,
                contacts: self.accounts[i]
                    .registration
                    .as_ref()
                    .map_or(0, |r| r.bindings()),
            },
            RegistrationEvent::Failed {
                status,
                reason,
                retry_in,
            } => Event::RegistrationFailed {
                account,
                status,
                reason,
                retry_in_s: retry_in.map(|d| d.as_secs()),
            },
            RegistrationEvent::Unregistered => Event::Unregistered { account },
        });
    }

    fn pager_event(&mut self, i: usize, e: PagerEvent) {
        match e {
            PagerEvent::Delivered { id } => {
                let to = self.accounts[i].sent.remove(&id).unwrap_or_default();
                self.emit(Event::MessageSent {
                    delivered: true,
                    status: 200,
                    to,
                })
            }
            PagerEvent::Failed { id, status } => {
                let to = self.accounts[i].sent.remove(&id).unwrap_or_default();
                self.emit(Event::MessageSent {
                    delivered: false,
                    status,
                    to,
                })
            }
            PagerEvent::Received { from, body, .. } => self.emit(Event::MessageReceived {
                account: self.accounts[i].config.name.clone(),
                from: from.uri.to_string(),
                text: String::from_utf8_lossy(&body).into_owned(),
            }),
        }
    }

    fn publisher_event(&mut self, i: usize, e: PublisherEvent) {
        let a = &self.accounts[i];
        let account = a.config.name.clone();
        match e {
            PublisherEvent::Published { expires } => {
                if let Some(set) = a.presence_set.clone() {
                    self.emit(Event::PresencePublished {
                        account,
                        activity: set.activity,
                        note: set.note,
                        until: set.until,
                        expires,
                    });
                }
            }
            PublisherEvent::Failed { status, retry_in } => self.emit(Event::PresenceFailed {
                account,
                status,
                retry_in_s: retry_in.map(|d| d.as_secs()),
            }),
            PublisherEvent::Removed => {}
        }
    }

    fn subscriber_event(&mut self, id: u64, e: SubscriberEvent) {
        let now = Instant::now();
        let Some(w) = self.watches.get_mut(&id) else {
            return;
        };
        match e {
            SubscriberEvent::Accepted { .. } => {
                w.failures = 0;
                if !w.accepted && !w.stopping {
                    w.accepted = true;
                    let ev = Event::Watching {
                        uri: w.uri.clone(),
                        package: w.kind.event().into(),
                    };
                    self.emit(ev);
                }
            }
            SubscriberEvent::Notify { state, body, .. } => {
                w.failures = 0;
                // A pending subscription's NOTIFY carries no state (RFC 6665 §4.2.1.2);
                // the final NOTIFY of an unwatch neither.
                if w.stopping || state.eq_ignore_ascii_case("pending") {
                    return;
                }
                let terminated = state.eq_ignore_ascii_case("terminated");
                let ev = match w.kind {
                    WatchKind::Presence => {
                        if terminated && body.is_empty() {
                            return;
                        }
                        Some(crate::presence::presence_event(&w.uri, &body))
                    }
                    WatchKind::Dialog => {
                        if terminated && body.is_empty() {
                            return;
                        }
                        crate::presence::dialog_event(&w.uri, &body)
                    }
                };
                match ev {
                    Some(ev) if w.last.as_ref() != Some(&ev) => {
                        w.last = Some(ev.clone());
                        self.emit(ev);
                    }
                    Some(_) => {}
                    None => tracing::debug!("unreadable {} document", w.kind.event()),
                }
            }
            SubscriberEvent::Terminated {
                reason,
                retry_after,
            } => {
                let (uri, kind) = (w.uri.clone(), w.kind);
                if w.stopping {
                    self.watches.remove(&id);
                    self.emit(Event::WatchEnded {
                        uri,
                        package: kind.event().into(),
                        reason: "unwatched".into(),
                        retry_in_s: None,
                    });
                    return;
                }
                w.failures += 1;
                let again =
                    crate::presence::resubscribe_in(reason.as_deref(), retry_after, w.failures);
                // The old subscription is over (its last outputs still drain); a new one
                // starts at `retry_at`.
                w.retry_at = again.map(|d| now + d);
                if again.is_none() {
                    self.watches.remove(&id);
                }
                self.emit(Event::WatchEnded {
                    uri,
                    package: kind.event().into(),
                    reason: reason.unwrap_or_else(|| "ended".into()),
                    retry_in_s: again.map(|d| d.as_secs()),
                });
            }
        }
    }

    /// Reports a transfer call's status to the call whose REFER it carries out.
    fn report_transfer(&mut self, id: CallId, code: u16) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(old) = c.transfer_of else { return };
        if c.progress_reported >= 200 || (code < 200 && c.progress_reported >= code) {
            return;
        }
        c.progress_reported = code;
        if let Some(o) = self.calls.get_mut(&old) {
            let _ = o.session.transfer_progress(Instant::now(), code);
        }
    }

    async fn session_event(&mut self, id: CallId, e: SessionEvent) {
        let now = Instant::now();
        match e {
            SessionEvent::Incoming {
                from,
                offer,
                replaces,
            } => self.on_incoming(id, from, offer, replaces).await,
            SessionEvent::Ringing => {
                self.start_ringback(id);
                self.emit(Event::Ringing { call: id });
                self.report_transfer(id, 180);
            }
            SessionEvent::EarlyMedia { sdp } => {
                if self.take_answer(id, &sdp) {
                    self.emit(Event::EarlyMedia { call: id });
                }
                self.report_transfer(id, 183);
            }
            SessionEvent::Established { remote_sdp } => {
                let Some(c) = self.calls.get(&id) else { return };
                if c.outgoing {
                    match remote_sdp {
                        Some(sdp) if c.media.is_none() || c.oa.current().is_none() => {
                            self.take_answer(id, &sdp);
                        }
                        Some(sdp) => {
                            // After early media the 2xx repeats the answer (§13.2.1); a
                            // different one is applied.
                            if let Ok(parsed) = sdp::parse(&sdp)
                                && let Some(c) = self.calls.get_mut(&id)
                                && let Ok(audio) = c.oa.handle_answer(&parsed)
                            {
                                self.start_media(id, audio);
                            }
                        }
                        None => {
                            self.fail(ErrorCode::Network, "answer without SDP", Some(id));
                            if let Some(c) = self.calls.get_mut(&id) {
                                c.session.hangup(now);
                            }
                            return;
                        }
                    }
                }
                let Some(c) = self.calls.get_mut(&id) else {
                    return;
                };
                c.established = true;
                let codec =
                    c.oa.current()
                        .map(|a| a.codec.encoding_name().to_owned())
                        .unwrap_or_default();
                self.records.run(move |r| r.call_answered(id));
                self.emit(Event::Established { call: id, codec });
                self.report_transfer(id, 200);
                // RFC 3891: the call this one replaces ends now.
                if let Some(old) = self.calls.get(&id).and_then(|c| c.replaces)
                    && let Some(o) = self.calls.get_mut(&old)
                {
                    o.session.end_replaced(now);
                }
            }
            SessionEvent::Offer { offer } => {
                let Some(c) = self.calls.get_mut(&id) else {
                    return;
                };
                if offer.is_empty() {
                    let o = c.oa.create_offer().to_string();
                    let _ = c.session.accept_offer(now, Bytes::from(o));
                    return;
                }
                let parsed = match sdp::parse(&offer) {
                    Ok(p) => p,
                    Err(_) => {
                        let _ = c.session.reject_offer(now, 400);
                        return;
                    }
                };
                match c.oa.handle_offer(&parsed) {
                    Ok((answer, audio)) => {
                        let _ = c.session.accept_offer(now, Bytes::from(answer.to_string()));
                        self.start_media(id, audio);
                    }
                    Err(e) => {
                        let _ = c.session.reject_offer(now, e.sip_status());
                    }
                }
            }
            SessionEvent::RemoteHold(h) => self.emit(if h {
                Event::Held {
                    call: id,
                    by: Side::Remote,
                }
            } else {
                Event::Resumed {
                    call: id,
                    by: Side::Remote,
                }
            }),
            SessionEvent::RemoteSdp { sdp } => {
                let Some(c) = self.calls.get_mut(&id) else {
                    return;
                };
                let applied = sdp::parse(&sdp)
                    .ok()
                    .and_then(|p| c.oa.handle_answer(&p).ok());
                let hold = c.pending_hold.take();
                if let Some(audio) = applied {
                    self.start_media(id, audio);
                }
                if let Some(h) = hold
                    && let Some(c) = self.calls.get_mut(&id)
                {
                    c.held = h;
                    self.emit(if h {
                        Event::Held {
                            call: id,
                            by: Side::Local,
                        }
                    } else {
                        Event::Resumed {
                            call: id,
                            by: Side::Local,
                        }
                    });
                }
            }
            SessionEvent::ReinviteFailed { status } => {
                if let Some(c) = self.calls.get_mut(&id)
                    && c.pending_hold.take().is_some()
                {
                    c.oa.set_hold(c.held);
                }
                self.fail(
                    ErrorCode::Network,
                    format!("re-INVITE refused with {status}"),
                    Some(id),
                );
            }
            SessionEvent::Dtmf { digit, .. } => self.emit(Event::Dtmf {
                call: id,
                digit,
                via: DtmfVia::Info,
            }),
            SessionEvent::TransferRequested {
                target,
                replaces,
                referred_by,
            } => {
                let Some(c) = self.calls.get(&id) else { return };
                let account = c.account;
                let files = c.files.clone();
                let mut extra = Vec::new();
                if let Some(r) = replaces {
                    extra.push((HeaderName::Replaces, r.to_string()));
                }
                if let Some(b) = referred_by {
                    extra.push((HeaderName::ReferredBy, b.to_string()));
                }
                let shown = target.to_string();
                match self
                    .place_call(account, target, files, extra, Some(id))
                    .await
                {
                    Ok(new_call) => self.emit(Event::TransferRequested {
                        call: id,
                        target: shown,
                        new_call,
                    }),
                    Err(e) => {
                        if let Some(c) = self.calls.get_mut(&id) {
                            let _ = c.session.transfer_progress(now, 503);
                        }
                        self.fail(ErrorCode::Environment, e, Some(id));
                    }
                }
            }
            SessionEvent::TransferProgress { status } => {
                self.emit(Event::TransferProgress { call: id, status })
            }
            SessionEvent::TransferSucceeded => {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.transferred = true;
                    c.resume_on_transfer_failure = false;
                    c.session.hangup(now);
                }
                self.emit(Event::Transferred { call: id });
            }
            SessionEvent::TransferFailed { status } => {
                self.emit(Event::TransferFailed { call: id, status });
                // Take the call back (SPEC R-105): `resumed` follows when the re-INVITE
                // is answered.
                let resume = self
                    .calls
                    .get_mut(&id)
                    .is_some_and(|c| std::mem::take(&mut c.resume_on_transfer_failure) && c.held);
                if resume && let Err((code, m, call)) = self.set_hold(id, false, now) {
                    self.fail(code, m, call);
                }
            }
            SessionEvent::Ended { cause } => self.on_ended(id, cause),
        }
    }

    /// The ring tone on the ringing device for an incoming call, when the phone uses
    /// sound devices (not files). A device that cannot open is no reason to refuse the
    /// call: the tone is left out and the UI still shows the call.
    fn start_ringtone(&mut self, id: CallId) {
        let Some(c) = self.calls.get(&id) else { return };
        if !self.config.media.is_empty() || !c.files.is_empty() || c.ringtone.is_some() {
            return;
        }
        if self.audio.is_none() {
            match vaxel_audio::Audio::start(self.config.audio.clone()) {
                Ok(a) => self.audio = Some(a),
                Err(e) => {
                    tracing::debug!("no ring tone: sound devices: {e}");
                    return;
                }
            }
        }
        let Some(audio) = self.audio.as_ref() else {
            return;
        };
        let started = audio
            .open_playback(
                vaxel_audio::DeviceRole::Ringing,
                crate::media::call_stream_options(),
            )
            .map_err(|e| e.to_string())
            .and_then(|p| {
                crate::media::Ringtone::start(p, crate::media::Ringtone::tone())
                    .map_err(|e| e.to_string())
            });
        match started {
            Ok(r) => {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.ringtone = Some(r);
                }
            }
            Err(e) => tracing::debug!("no ring tone: {e}"),
        }
    }

    /// Local ringback for an outgoing call that rings without media of its own yet.
    fn start_ringback(&mut self, id: CallId) {
        let Some(c) = self.calls.get(&id) else { return };
        if !c.outgoing || c.media.is_some() || c.ringback.is_some() || c.ports.is_none() {
            return;
        }
        let files = c.files.clone();
        let tone = vaxel_media::tones::Tone::for_country(
            self.config.tones,
            vaxel_media::tones::ToneKind::Ringback,
        );
        match self
            .audio_io(&files)
            .and_then(|io| crate::media::Ringback::start(io, tone).map_err(|e| e.to_string()))
        {
            Ok(r) => {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.ringback = Some(r);
                }
            }
            Err(e) => tracing::debug!("no local ringback: {e}"),
        }
    }

    /// Applies the peer's SDP answer (UAC) and starts the media; `false` when unusable.
    fn take_answer(&mut self, id: CallId, sdp_body: &Bytes) -> bool {
        let Some(c) = self.calls.get_mut(&id) else {
            return false;
        };
        let result = sdp::parse(sdp_body)
            .map_err(|e| e.to_string())
            .and_then(|p| c.oa.handle_answer(&p).map_err(|e| e.to_string()));
        match result {
            Ok(audio) => {
                self.start_media(id, audio);
                true
            }
            Err(e) => {
                self.fail(
                    ErrorCode::Network,
                    format!("unusable SDP answer: {e}"),
                    Some(id),
                );
                if let Some(c) = self.calls.get_mut(&id) {
                    c.session.hangup(Instant::now());
                }
                false
            }
        }
    }

    async fn on_incoming(
        &mut self,
        id: CallId,
        from: NameAddr,
        offer: Option<Bytes>,
        replaces: Option<vaxel_sip::msg::Replaces>,
    ) {
        let now = Instant::now();
        let reject = |core: &mut Core, code: u16| {
            if let Some(c) = core.calls.get_mut(&id) {
                let _ = c.session.reject(now, code);
            }
        };
        // RFC 3891 §3: find the call it replaces.
        let mut replaced = None;
        if let Some(r) = &replaces {
            let mut early_only = false;
            for c in self.calls.values() {
                if c.id == id {
                    continue;
                }
                match c.session.replaces_match(r) {
                    ReplacesMatch::Match => replaced = Some(c.id),
                    ReplacesMatch::EarlyOnly => early_only = true,
                    ReplacesMatch::NoMatch => {}
                }
            }
            if replaced.is_none() {
                reject(self, if early_only { 486 } else { 481 });
                return;
            }
        }
        let ports = match MediaPorts::bind(self.config.ip, self.config.rtp_ports.clone()).await {
            Ok(p) => p,
            Err(e) => {
                self.fail(ErrorCode::Environment, e.to_string(), Some(id));
                reject(self, 500);
                return;
            }
        };
        let policy = self.policy();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.oa = OfferAnswer::new(policy, ports.rtp_addr(), &mut rand::rng());
        c.ports = Some(ports);
        c.remote = from.uri.to_string();
        c.replaces = replaced;
        // Check the offer now: 488 when nothing matches (RFC 3261 §13.3.1.3).
        if let Some(o) = offer {
            let r = sdp::parse(&o)
                .map_err(|e| (400, e.to_string()))
                .and_then(|p| {
                    c.oa.handle_offer(&p)
                        .map_err(|e| (e.sip_status(), e.to_string()))
                });
            match r {
                Ok((answer, audio)) => c.pending_answer = Some((answer.to_string(), audio)),
                Err((code, why)) => {
                    tracing::debug!("incoming offer refused: {why}");
                    reject(self, code);
                    return;
                }
            }
        }
        let to = c
            .session
            .dialog()
            .map(|d| d.local_uri().uri.to_string())
            .unwrap_or_default();
        let account = self.accounts[c.account].config.name.clone();
        let _ = c.session.ring(now);
        let to = if to.is_empty() {
            self.accounts[c.account].aor.uri.to_string()
        } else {
            to
        };
        let account_id = self.accounts[c.account].config.id;
        let display = from
            .display_name()
            .map(|n| n.into_owned())
            .unwrap_or_default();
        let caller = crate::api::caller_of(&display, &from.uri.to_string());
        let (remote, name, number, group) = (
            from.uri.to_string(),
            caller.name.clone(),
            caller.number.clone(),
            caller.group.clone(),
        );
        let via = group.map(|g| (number, g));
        self.records
            .run(move |r| r.call_started_via(id, false, account_id, remote, name, via));
        self.emit(Event::Incoming {
            call: id,
            account,
            from: from.uri.to_string(),
            to,
            replaces: replaced,
            name: caller.name,
            number: caller.number,
            group: caller.group,
        });
        if self.config.auto_answer || replaced.is_some() {
            if let Err((code, m, call)) = self.answer(id, MediaFiles::default(), now).await {
                self.fail(code, m, call);
            }
        } else {
            self.start_ringtone(id);
        }
    }

    fn on_ended(&mut self, id: CallId, cause: EndCause) {
        if let Some(c) = self.calls.get_mut(&id) {
            c.ringtone = None;
        }
        let Some(c) = self.calls.get(&id) else { return };
        let transferred = c.transferred;
        let established = c.established;
        let (reason, status) = match cause {
            _ if transferred => (EndReason::Transferred, None),
            EndCause::LocalHangup => (EndReason::LocalHangup, None),
            EndCause::RemoteHangup => (EndReason::RemoteHangup, None),
            EndCause::Cancelled => (EndReason::Cancelled, None),
            EndCause::RemoteCancelled if c.answered_elsewhere => {
                (EndReason::AnsweredElsewhere, None)
            }
            EndCause::RemoteCancelled => (EndReason::RemoteCancelled, None),
            EndCause::Rejected(s) => (EndReason::Rejected, Some(s)),
            EndCause::LocalRejected(s) => (EndReason::LocalRejected, Some(s)),
            EndCause::AckTimeout => (EndReason::AckTimeout, None),
            EndCause::DialogLost(s) => (EndReason::DialogLost, Some(s)),
            EndCause::Replaced => (EndReason::Replaced, None),
        };
        let how = Finished {
            outgoing: c.outgoing,
            answered: established,
            by_us: matches!(
                cause,
                EndCause::Cancelled | EndCause::LocalRejected(_) | EndCause::LocalHangup
            ),
            elsewhere: c.answered_elsewhere,
        };
        let mut why = serde_json::to_value(reason)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        if let Some(s) = status {
            why = format!("{why} {s}");
        }
        self.records.run(move |r| r.call_ended(id, how, why));
        if !established {
            // The transfer call failed: tell the referrer (RFC 3515 §2.4.5).
            let code = status.unwrap_or(487).max(300);
            self.report_transfer(id, code);
        }
        self.emit(Event::Ended {
            call: id,
            cause: reason,
            status,
        });
        self.leave_conference(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vaxel_store::{NewAccount, Secret};

    fn config_with(accounts: &[(&str, &str, bool)]) -> (PhoneConfig, Arc<MemoryStore>) {
        let mut config = PhoneConfig::new("127.0.0.1".parse().unwrap());
        for (name, uri, register) in accounts {
            config
                .store
                .create_account(&NewAccount {
                    name: (*name).into(),
                    sip_uri: (*uri).into(),
                    register: *register,
                    ..NewAccount::default()
                })
                .unwrap();
        }
        let secrets = Arc::new(MemoryStore::new());
        config.secrets = secrets.clone();
        (config, secrets)
    }

    #[test]
    fn accounts_come_from_the_store_with_passwords_from_the_secret_store() {
        if std::env::var_os(vaxel_store::secret::PASSWORD_ENV).is_some() {
            return; // VAXEL_PASSWORD would win over the store (tested in vaxel-store).
        }
        let (mut config, secrets) = config_with(&[
            ("home", "bob@example.org", true),
            ("work", "alice@example.com", true),
            ("peer", "me@127.0.0.1", false),
        ]);
        secrets
            .set("sip:alice@example.com", &Secret::new("pw"))
            .unwrap();
        config.default_account = Some("work".into());
        let (accounts, warnings) = load_accounts(&config).unwrap();
        let names: Vec<&str> = accounts.iter().map(|(a, _)| a.name.as_str()).collect();
        assert_eq!(names, ["work", "home", "peer"], "the default first");
        assert_eq!(accounts[0].1.as_ref().map(|s| s.expose()), Some("pw"));
        assert!(accounts[1].1.is_none());
        // A registering account without a password is reported; one that does not
        // register needs none.
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("home") && warnings[0].contains("VAXEL_PASSWORD"));
        assert!(!warnings[0].contains("pw"));
    }

    #[test]
    fn a_cancel_for_a_call_completed_elsewhere_is_recognised() {
        let cancel = |reason: Option<&str>| {
            let mut r = Request::new(Method::Cancel, "sip:a@x".parse::<Uri>().unwrap());
            if let Some(v) = reason {
                r.headers.push(HeaderName::Reason, v.to_owned());
            }
            r
        };
        assert!(completed_elsewhere(&cancel(Some(
            "SIP;cause=200;text=\"Call completed elsewhere\""
        ))));
        assert!(completed_elsewhere(&cancel(Some(
            "Q.850;cause=16, SIP ; cause = 200"
        ))));
        assert!(!completed_elsewhere(&cancel(Some("SIP;cause=487"))));
        assert!(!completed_elsewhere(&cancel(Some("Q.850;cause=200"))));
        assert!(!completed_elsewhere(&cancel(None)));
    }

    #[test]
    fn an_unknown_default_account_is_the_callers_error() {
        let (mut config, _) = config_with(&[("work", "alice@example.com", true)]);
        config.default_account = Some("nope".into());
        assert!(matches!(
            load_accounts(&config),
            Err(PhoneError::Account { name, .. }) if name == "nope"
        ));
    }
}
