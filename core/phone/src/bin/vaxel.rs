//! `vaxel`: the Vaxel softphone on the command line, for people and scripts.
//!
//! Every subcommand prints the phone's [`Event`]s as JSON, one per line, on stdout;
//! diagnostics go to stderr. `run` also reads one command per line on stdin (see
//! [`vaxel_phone::api::parse_line`]). Exit status 0 means the requested thing happened:
//! the call was answered, the registration granted.

use std::io::{IsTerminal, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio::io::AsyncBufReadExt;
use vaxel_phone::account::{self as acct, NewAccount, Profile, parse_sip_uri, parse_transport};
use vaxel_phone::api::parse_line;
use vaxel_phone::{Command, Event, MediaFiles, Phone, PhoneConfig};
use vaxel_store::{KeyringStore, Secret, SecretError, SecretStore, Store};

#[derive(Parser, Debug)]
#[command(
    name = "vaxel",
    version,
    about = "The Vaxel softphone: accounts, registration and calls from the command line"
)]
struct Cli {
    /// Profile directory (its store.sqlite holds accounts, history and contacts; never
    /// passwords); default $VAXEL_PROFILE or ~/.config/vaxel.
    #[arg(long, global = true)]
    profile: Option<PathBuf>,
    /// SIP address to listen on (UDP and TCP), e.g. 127.0.0.1:5070. Default: the address
    /// that routes to the account's server (or 127.0.0.1), any free port.
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Trust this certificate authority (PEM) for TLS besides the OS's roots; may be
    /// repeated. Also from $VAXEL_TLS_CA.
    #[arg(long, global = true)]
    ca: Vec<PathBuf>,
    /// RTP port range, LOW-HIGH.
    #[arg(long, global = true, default_value = "16384-32767")]
    rtp_ports: String,
    #[command(subcommand)]
    command: Sub,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// Manage accounts.
    Account {
        #[command(subcommand)]
        action: AccountCmd,
    },
    /// Register an account, report, unregister (with --stay: keep it until Ctrl-C).
    Register {
        /// The account (default: the first).
        #[arg(long)]
        account: Option<String>,
        /// Stay registered until interrupted.
        #[arg(long)]
        stay: bool,
    },
    /// Place one call; exit 0 if it was answered.
    Call {
        /// Whom: sip:user@host[:port], user@host, or a user at the account's domain.
        uri: String,
        #[command(flatten)]
        opts: CallOpts,
        /// Send these DTMF digits once the call is up.
        #[arg(long)]
        dtmf: Option<String>,
        /// Give up if not answered within this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Wait for calls; exit 0 if the requested calls (see --count) were answered.
    Listen {
        #[command(flatten)]
        opts: CallOpts,
        /// Answer incoming calls by ourselves.
        #[arg(long)]
        auto_answer: bool,
        /// Exit after this many calls have ended.
        #[arg(long)]
        count: Option<u32>,
    },
    /// Publish your presence and keep it (refreshed) until interrupted; exit 0 if the
    /// presence server took it.
    Presence {
        #[command(subcommand)]
        action: PresenceCmd,
    },
    /// Send an instant message (SIP MESSAGE); exit 0 if it was accepted.
    Message {
        /// To whom: sip:user@host, user@host, or a user at the account's domain.
        uri: String,
        /// The text (several words are joined with spaces).
        #[arg(required = true)]
        text: Vec<String>,
        /// The account (default: the first).
        #[arg(long)]
        account: Option<String>,
    },
    /// Watch colleagues' presence and phone state (busy lamps) until interrupted.
    Watch {
        /// Whom: sip:user@host, user@host, or users at the account's domain.
        #[arg(required = true)]
        uris: Vec<String>,
        /// The account to subscribe from (default: the first).
        #[arg(long)]
        account: Option<String>,
        /// Only presence, not phone state.
        #[arg(long, conflicts_with = "dialog_only")]
        presence_only: bool,
        /// Only phone state, not presence.
        #[arg(long)]
        dialog_only: bool,
    },
    /// Line-oriented control: commands on stdin, JSON events on stdout.
    Run {
        /// The account to register (default: every account that registers).
        #[arg(long)]
        account: Option<String>,
        /// Answer incoming calls by ourselves.
        #[arg(long)]
        auto_answer: bool,
        /// Play this WAV file in every call instead of the microphone.
        #[arg(long)]
        play: Option<PathBuf>,
        /// Record every call to this WAV file instead of the speaker.
        #[arg(long)]
        record: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum PresenceCmd {
    /// Set your presence: available, offline, or an activity (busy, meeting, away, meal,
    /// vacation, on-the-phone, or any word such as lunch or sick).
    Set {
        /// The activity.
        activity: String,
        /// A note for people ("in a meeting").
        #[arg(long)]
        note: Option<String>,
        /// When it ends: RFC 3339 (2026-11-22T14:00:00Z) or HH:MM local time.
        #[arg(long)]
        until: Option<String>,
        /// The account (default: the first).
        #[arg(long)]
        account: Option<String>,
    },
}

#[derive(Args, Debug)]
struct CallOpts {
    /// The account (default: the first; none: a local account for direct calls).
    #[arg(long)]
    account: Option<String>,
    /// Play this WAV file (looped) instead of the microphone.
    #[arg(long)]
    play: Option<PathBuf>,
    /// Record the far end to this WAV file instead of the speaker.
    #[arg(long)]
    record: Option<PathBuf>,
    /// Hang up this many seconds after the call is answered.
    #[arg(long)]
    hangup_after: Option<f64>,
}

#[derive(Subcommand, Debug)]
enum AccountCmd {
    /// Add (or replace) an account.
    Add {
        /// A short name.
        #[arg(long)]
        name: String,
        /// sip:USER@DOMAIN
        #[arg(long)]
        uri: String,
        /// Outbound proxy URI.
        #[arg(long)]
        proxy: Option<String>,
        /// udp, tcp or tls.
        #[arg(long, default_value = "udp")]
        transport: String,
        /// Do not register (direct calls only).
        #[arg(long)]
        no_register: bool,
        /// Display name sent in From.
        #[arg(long)]
        display_name: Option<String>,
        /// Read the password from the first line of stdin and keep it in the OS keychain
        /// (never in the profile). Without a keychain, use VAXEL_PASSWORD instead.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts.
    List,
    /// Remove an account and its password in the keychain.
    Remove {
        /// Its name.
        name: String,
    },
}

fn die(msg: &str) -> ! {
    eprintln!("vaxel: {msg}");
    std::process::exit(2);
}

fn print(e: &Event) {
    // Meters and quality come ten times and once a second: a terminal would scroll away
    // everything else, so the command line prints them only when asked to.
    if matches!(e, Event::Levels { .. } | Event::Quality { .. })
        && std::env::var_os("VAXEL_PRINT_LEVELS").is_none()
    {
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, e);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// The local address that routes to `host` (no packet is sent), else 127.0.0.1.
fn route_source(host: Option<String>) -> IpAddr {
    host.and_then(|h| vaxel_phone::phone::local_address_for(&h))
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

fn host_of(uri: &str) -> Option<String> {
    parse_sip_uri(uri)
        .ok()
        .and_then(|u| u.as_sip().map(|s| s.host.to_string()))
}

/// The first line of stdin, read byte by byte so that the rest stays for commands.
fn first_line_of_stdin() -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    let mut stdin = std::io::stdin();
    while let Ok(1) = stdin.read(&mut b) {
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
    }
    String::from_utf8_lossy(&line)
        .trim_end_matches('\r')
        .to_owned()
}

struct Setup {
    config: PhoneConfig,
    /// The server host the listening address was chosen for (none with `--listen IP`).
    server_host: Option<String>,
}

fn open_store(cli: &Cli) -> (Profile, Store) {
    let profile = Profile::new(cli.profile.clone().unwrap_or_else(Profile::default_dir));
    let store = profile.open_store().unwrap_or_else(|e| die(&e.to_string()));
    (profile, store)
}

fn setup(cli: &Cli, account: Option<&str>, target: Option<&str>) -> Setup {
    let (_, store) = open_store(cli);
    let accounts = store.accounts().unwrap_or_else(|e| die(&e.to_string()));
    let first = match account {
        Some(name) => Some(
            accounts
                .iter()
                .find(|a| a.name == name)
                .unwrap_or_else(|| die(&format!("no account named {name:?}"))),
        ),
        None => accounts.first(),
    };
    let mut server_host = None;
    let (ip, port) = match &cli.listen {
        Some(l) => match l.parse::<SocketAddr>() {
            Ok(a) => (a.ip(), a.port()),
            Err(_) => match l.parse::<IpAddr>() {
                Ok(ip) => (ip, 0),
                Err(_) => die(&format!("--listen: not an address: {l}")),
            },
        },
        None => {
            let host = first
                .and_then(|a| {
                    acct::proxy(a)
                        .and_then(host_of)
                        .or_else(|| host_of(&a.sip_uri))
                })
                .or_else(|| target.and_then(host_of));
            server_host = host.clone();
            (route_source(host), 0)
        }
    };
    let rtp_ports = cli
        .rtp_ports
        .split_once('-')
        .and_then(|(a, b)| Some(a.parse::<u16>().ok()?..=b.parse::<u16>().ok()?))
        .unwrap_or_else(|| die("--rtp-ports: LOW-HIGH"));
    let mut config = PhoneConfig::new(ip);
    config.sip_port = port;
    config.default_account = account.map(str::to_owned);
    config.store = store;
    config.secrets = Arc::new(KeyringStore::new());
    config.rtp_ports = rtp_ports;
    config.tls_ca = cli.ca.clone();
    if config.tls_ca.is_empty()
        && let Some(ca) = std::env::var_os("VAXEL_TLS_CA").filter(|c| !c.is_empty())
    {
        config.tls_ca.push(PathBuf::from(ca));
    }
    Setup {
        config,
        server_host,
    }
}

/// Reads `run` commands from stdin until EOF (then quits).
fn spawn_stdin(phone: vaxel_phone::PhoneHandle, quit_on_eof: bool) {
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            match parse_line(&line) {
                Ok(c) => {
                    phone.send(c);
                }
                Err(e) => print(&Event::error(vaxel_phone::ErrorCode::BadCommand, e, None)),
            }
        }
        if quit_on_eof {
            phone.send(Command::Quit);
        }
    });
}

/// Follows the network: every 5 s, the local address that routes to the server;
/// when it is another than before (Wi-Fi to cable, VPN up or down), the phone moves there
/// and registers again. Only when the address was chosen this way (no `--listen IP`).
fn spawn_network_watch(phone: vaxel_phone::PhoneHandle, host: String, mut ip: IpAddr) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let h = host.clone();
            let now =
                tokio::task::spawn_blocking(move || vaxel_phone::phone::local_address_for(&h))
                    .await
                    .ok()
                    .flatten();
            if let Some(new) = now
                && new != ip
            {
                ip = new;
                if !phone.send(Command::NetworkChanged {
                    ip: Some(new.to_string()),
                }) {
                    break;
                }
            }
        }
    });
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let code = match &cli.command {
        Sub::Account { action } => account_cmd(&cli, action),
        Sub::Register { account, stay } => register(&cli, account.as_deref(), *stay).await,
        Sub::Call {
            uri,
            opts,
            dtmf,
            timeout,
        } => call(&cli, uri, opts, dtmf.as_deref(), *timeout).await,
        Sub::Listen {
            opts,
            auto_answer,
            count,
        } => listen(&cli, opts, *auto_answer, *count).await,
        Sub::Presence {
            action:
                PresenceCmd::Set {
                    activity,
                    note,
                    until,
                    account,
                },
        } => {
            let c = Command::SetPresence {
                activity: activity.clone(),
                note: note.clone(),
                until: until.clone(),
                account: account.clone(),
            };
            presence(&cli, account.as_deref(), vec![c]).await
        }
        Sub::Message { uri, text, account } => {
            message(&cli, uri, &text.join(" "), account.as_deref()).await
        }
        Sub::Watch {
            uris,
            account,
            presence_only,
            dialog_only,
        } => {
            let cs = uris
                .iter()
                .map(|u| Command::Watch {
                    uri: u.clone(),
                    account: account.clone(),
                    presence: !dialog_only,
                    dialog: !presence_only,
                })
                .collect();
            presence(&cli, account.as_deref(), cs).await
        }
        Sub::Run {
            account,
            auto_answer,
            play,
            record,
        } => {
            run(
                &cli,
                account.as_deref(),
                *auto_answer,
                MediaFiles {
                    play: play.clone(),
                    record: record.clone(),
                },
            )
            .await
        }
    };
    std::process::exit(code);
}

fn account_cmd(cli: &Cli, action: &AccountCmd) -> i32 {
    let (profile, mut store) = open_store(cli);
    let keychain = KeyringStore::new();
    match action {
        AccountCmd::Add {
            name,
            uri,
            proxy,
            transport,
            no_register,
            display_name,
            password_stdin,
        } => {
            let new = NewAccount {
                name: name.clone(),
                sip_uri: uri.clone(),
                display_name: display_name.clone().unwrap_or_default(),
                outbound_proxy: proxy.clone().unwrap_or_default(),
                transport: parse_transport(transport).unwrap_or_else(|e| die(&e)),
                register: !no_register,
            };
            if let Some(p) = proxy {
                parse_sip_uri(p).unwrap_or_else(|e| die(&format!("--proxy: {e}")));
            }
            // Read the password before touching anything, so a failure leaves no half-made
            // account behind.
            let password = password_stdin.then(|| Secret::new(first_line_of_stdin()));
            let existing = store
                .account_by_name(name)
                .unwrap_or_else(|e| die(&e.to_string()));
            let account = match existing {
                Some(a) => store.update_account(a.id, &new),
                None => store.create_account(&new),
            }
            .unwrap_or_else(|e| die(&e.to_string()));
            acct::aor(&account).unwrap_or_else(|e| die(&e));
            if let Some(pw) = password {
                if pw.expose().is_empty() {
                    die("--password-stdin: the first line of stdin is empty");
                }
                match keychain.set(&account.secret_key(), &pw) {
                    Ok(()) => eprintln!(
                        "vaxel: password of {} stored in the OS keychain",
                        account.secret_key()
                    ),
                    Err(e @ SecretError::Unavailable(_)) => {
                        eprintln!(
                            "vaxel: account {name} saved in {}, but its password was not \
                             stored: {e}.\nvaxel: no OS keychain is reachable (a Secret Service \
                             such as gnome-keyring on the session D-Bus); pass the password in \
                             the VAXEL_PASSWORD environment variable when registering or calling",
                            profile.store_path().display()
                        );
                        return 3;
                    }
                    Err(e) => die(&format!(
                        "account {name} saved, but its password was not stored: {e}"
                    )),
                }
            }
            eprintln!(
                "vaxel: account {name} saved in {}",
                profile.store_path().display()
            );
            0
        }
        AccountCmd::List => {
            for a in store.accounts().unwrap_or_else(|e| die(&e.to_string())) {
                println!(
                    "{}\tsip:{}\t{}{}",
                    a.name,
                    a.sip_uri,
                    a.transport.as_str(),
                    acct::proxy(&a)
                        .map(|p| format!("\tproxy {p}"))
                        .unwrap_or_default()
                );
            }
            0
        }
        AccountCmd::Remove { name } => {
            let a = match store.account_by_name(name) {
                Ok(Some(a)) => a,
                Ok(None) => die(&format!("no account named {name:?}")),
                Err(e) => die(&e.to_string()),
            };
            if let Err(e) = store.delete_account(a.id) {
                die(&e.to_string());
            }
            match keychain.delete(&a.secret_key()) {
                Ok(_) => {}
                Err(SecretError::Unavailable(_)) => {}
                Err(e) => eprintln!("vaxel: the keychain entry stays: {e}"),
            }
            0
        }
    }
}

async fn start(config: PhoneConfig) -> (vaxel_phone::PhoneHandle, vaxel_phone::PhoneEvents) {
    Phone::start(config)
        .await
        .unwrap_or_else(|e| die(&e.to_string()))
}

fn first_account(config: &PhoneConfig) -> Option<vaxel_phone::account::Account> {
    let accounts = config.store.accounts().ok()?;
    match &config.default_account {
        Some(n) => accounts.into_iter().find(|a| &a.name == n),
        None => accounts.into_iter().next(),
    }
}

fn wants_register(config: &PhoneConfig) -> bool {
    first_account(config).is_some_and(|a| a.register)
}

async fn register(cli: &Cli, account: Option<&str>, stay: bool) -> i32 {
    let s = setup(cli, account, None);
    let Some(first) = first_account(&s.config) else {
        die("no account: add one with `vaxel account add`");
    };
    let name = first.name;
    let (phone, mut events) = start(s.config).await;
    phone.send(Command::Register {
        account: Some(name),
    });
    let mut ok = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    loop {
        tokio::select! {
            e = events.recv() => {
                let Some(e) = e else { break };
                print(&e);
                match e {
                    Event::Registered { .. } => {
                        ok = true;
                        if !stay { phone.send(Command::Quit); }
                    }
                    Event::RegistrationFailed { .. } if !stay => { phone.send(Command::Quit); }
                    Event::Stopped => break,
                    _ => {}
                }
            }
            // A finished future must not be polled again: once interrupted, stop selecting it.
            _ = &mut ctrl_c, if !interrupted => { interrupted = true; phone.send(Command::Quit); }
        }
    }
    if ok { 0 } else { 1 }
}

/// `message`: send one MESSAGE, print events, exit 0 if it was accepted (2xx).
async fn message(cli: &Cli, uri: &str, text: &str, account: Option<&str>) -> i32 {
    let s = setup(cli, account, Some(uri));
    let (phone, mut events) = start(s.config).await;
    phone.send(Command::Message {
        to: uri.to_owned(),
        text: text.to_owned(),
        account: account.map(str::to_owned),
    });
    let mut delivered = false;
    while let Some(e) = events.recv().await {
        print(&e);
        match e {
            Event::MessageSent { delivered: d, .. } => {
                delivered = d;
                phone.send(Command::Quit);
            }
            Event::Error {
                code: vaxel_phone::ErrorCode::BadCommand,
                ..
            } => {
                phone.send(Command::Quit);
            }
            Event::Stopped => break,
            _ => {}
        }
    }
    if delivered { 0 } else { 1 }
}

/// `presence set` and `watch`: send the commands, print events until interrupted; exit
/// 0 if the presence was published or every watch was accepted.
async fn presence(cli: &Cli, account: Option<&str>, commands: Vec<Command>) -> i32 {
    let s = setup(cli, account, None);
    if first_account(&s.config).is_none() {
        die("no account: add one with `vaxel account add`");
    }
    let (phone, mut events) = start(s.config).await;
    let mut wanted = commands
        .iter()
        .map(|c| match c {
            Command::Watch {
                presence, dialog, ..
            } => usize::from(*presence) + usize::from(*dialog),
            _ => 1,
        })
        .sum::<usize>();
    for c in commands {
        phone.send(c);
    }
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    let mut failed = false;
    loop {
        tokio::select! {
            e = events.recv() => {
                let Some(e) = e else { break };
                print(&e);
                match e {
                    Event::PresencePublished { .. } | Event::Watching { .. } => {
                        wanted = wanted.saturating_sub(1);
                    }
                    Event::WatchEnded { retry_in_s: None, ref reason, .. } if reason != "unwatched" => {
                        failed = true;
                        phone.send(Command::Quit);
                    }
                    Event::PresenceFailed { retry_in_s: None, .. }
                    | Event::Error { code: vaxel_phone::ErrorCode::BadCommand, .. } => {
                        failed = true;
                        phone.send(Command::Quit);
                    }
                    Event::Stopped => break,
                    _ => {}
                }
            }
            // A finished future must not be polled again: once interrupted, stop selecting it.
            _ = &mut ctrl_c, if !interrupted => { interrupted = true; phone.send(Command::Quit); }
        }
    }
    if wanted == 0 && !failed { 0 } else { 1 }
}

/// What a `call` or `listen` does as events come.
struct Script {
    hangup_after: Option<Duration>,
    dtmf: Option<String>,
    /// Exit after this many calls ended.
    count: Option<u32>,
    /// `call`: the call we placed.
    placing: bool,
}

async fn drive(
    phone: vaxel_phone::PhoneHandle,
    mut events: vaxel_phone::PhoneEvents,
    script: Script,
    register_first: bool,
    first: Option<Command>,
    timeout: Option<Duration>,
) -> i32 {
    let mut established = 0u32;
    let mut ended = 0u32;
    let mut pending_first = first;
    if register_first {
        phone.send(Command::Register { account: None });
    } else if let Some(c) = pending_first.take() {
        phone.send(c);
    }
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let never = tokio::time::Instant::now() + Duration::from_secs(86400 * 365);
    let mut answered_any = false;
    loop {
        tokio::select! {
            e = events.recv() => {
                let Some(e) = e else { break };
                print(&e);
                match &e {
                    Event::Registered { .. } => {
                        if let Some(c) = pending_first.take() { phone.send(c); }
                    }
                    Event::RegistrationFailed { .. } if pending_first.is_some() => {
                        eprintln!("vaxel: registration failed");
                        if script.placing { phone.send(Command::Quit); }
                    }
                    Event::Established { call, .. } => {
                        established += 1;
                        answered_any = true;
                        let call = *call;
                        if let Some(d) = script.dtmf.clone() {
                            let p = phone.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(Duration::from_millis(700)).await;
                                p.send(Command::Dtmf { call: Some(call), digits: d, method: None });
                            });
                        }
                        if let Some(after) = script.hangup_after {
                            let p = phone.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(after).await;
                                p.send(Command::Hangup { call: Some(call) });
                            });
                        }
                    }
                    Event::Ended { .. } => {
                        ended += 1;
                        if script.placing || script.count.is_some_and(|n| ended >= n) {
                            phone.send(Command::Quit);
                        }
                    }
                    Event::Error { code: vaxel_phone::ErrorCode::Environment, call: None, .. } if script.placing && established == 0 => {
                        phone.send(Command::Quit);
                    }
                    Event::Stopped => break,
                    _ => {}
                }
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or(never)), if !answered_any && deadline.is_some() => {
                eprintln!("vaxel: no answer in time");
                phone.send(Command::Quit);
                answered_any = true; // stop the timer
            }
            // A finished future must not be polled again: once interrupted, stop selecting it.
            _ = &mut ctrl_c, if !interrupted => { interrupted = true; phone.send(Command::Quit); }
        }
    }
    let wanted = if script.placing {
        1
    } else {
        script.count.unwrap_or(1)
    };
    if established >= wanted { 0 } else { 1 }
}

async fn call(cli: &Cli, uri: &str, opts: &CallOpts, dtmf: Option<&str>, timeout: u64) -> i32 {
    let mut s = setup(cli, opts.account.as_deref(), Some(uri));
    s.config.media = MediaFiles {
        play: opts.play.clone(),
        record: opts.record.clone(),
    };
    let reg = wants_register(&s.config);
    let (phone, events) = start(s.config).await;
    if !std::io::stdin().is_terminal() {
        spawn_stdin(phone.clone(), false);
    }
    let script = Script {
        hangup_after: opts.hangup_after.map(Duration::from_secs_f64),
        dtmf: dtmf.map(str::to_owned),
        count: None,
        placing: true,
    };
    let first = Command::Call {
        uri: uri.to_owned(),
        account: None,
        media: MediaFiles::default(),
    };
    drive(
        phone,
        events,
        script,
        reg,
        Some(first),
        Some(Duration::from_secs(timeout)),
    )
    .await
}

async fn listen(cli: &Cli, opts: &CallOpts, auto_answer: bool, count: Option<u32>) -> i32 {
    let mut s = setup(cli, opts.account.as_deref(), None);
    if cli.listen.is_none() && !wants_register(&s.config) {
        s.config.sip_port = 5060;
    }
    s.config.media = MediaFiles {
        play: opts.play.clone(),
        record: opts.record.clone(),
    };
    s.config.auto_answer = auto_answer;
    let reg = wants_register(&s.config);
    let (phone, events) = start(s.config).await;
    spawn_stdin(phone.clone(), false);
    let script = Script {
        hangup_after: opts.hangup_after.map(Duration::from_secs_f64),
        dtmf: None,
        count,
        placing: false,
    };
    drive(phone, events, script, reg, None, None).await
}

async fn run(cli: &Cli, account: Option<&str>, auto_answer: bool, media: MediaFiles) -> i32 {
    let mut s = setup(cli, account, None);
    s.config.media = media;
    s.config.auto_answer = auto_answer;
    let reg = s
        .config
        .store
        .accounts()
        .is_ok_and(|all| all.iter().any(|a| a.register));
    let ip = s.config.ip;
    let (phone, mut events) = start(s.config).await;
    spawn_stdin(phone.clone(), true);
    if let Some(host) = s.server_host {
        spawn_network_watch(phone.clone(), host, ip);
    }
    if reg {
        phone.send(Command::Register {
            account: account.map(str::to_owned),
        });
    }
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    loop {
        tokio::select! {
            e = events.recv() => {
                let Some(e) = e else { break };
                print(&e);
                if matches!(e, Event::Stopped) { break; }
            }
            // A finished future must not be polled again: once interrupted, stop selecting it.
            _ = &mut ctrl_c, if !interrupted => { interrupted = true; phone.send(Command::Quit); }
        }
    }
    0
}
