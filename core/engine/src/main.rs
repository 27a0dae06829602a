//! `vaxel-engine`: the Vaxel routing engine as a daemon.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// The Vaxel routing engine: registrar, B2BUA with anchored media, trunks and a
/// control API. Everything it stores lives in the data directory.
#[derive(Parser, Debug)]
#[command(name = "vaxel-engine", version)]
struct Args {
    /// Data directory: the SQLite database (WAL), recordings and voicemail.
    #[arg(long)]
    data: PathBuf,
    /// Office file (TOML) to import at start; importing is idempotent.
    #[arg(long)]
    office: Option<PathBuf>,
    /// SIP address (UDP and TCP).
    #[arg(long, default_value = "0.0.0.0:5060")]
    sip: SocketAddr,
    /// Control API address (HTTP + WebSocket).
    #[arg(long, default_value = "127.0.0.1:8080")]
    api: SocketAddr,
    /// Seconds between liveness probes (in-dialog OPTIONS) of answered calls; a call
    /// whose phone stopped answering is ended.
    #[arg(long, default_value_t = 90)]
    session_check_secs: u64,
    /// Directory of the shipped prompts (`<lang>/<name>.wav`); default: the
    /// repository's `assets/prompts`.
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// Seconds added to the clock for opening hours and feature-code times (for
    /// tests and demos: make the office open or closed now).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    clock_offset_secs: i64,
    /// Our Min-SE for session timers (RFC 4028): a caller asking for a shorter
    /// session interval gets 422. The RFC floor is 90.
    #[arg(long, default_value_t = 90)]
    session_min_se: u32,
    /// SIP over TLS on this address too (needs --cert and --key).
    #[arg(long, requires_all = ["cert", "key"])]
    tls: Option<SocketAddr>,
    /// TLS certificate chain (PEM, leaf first).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Print the stored office as TOML and exit.
    #[arg(long)]
    export: bool,
}

/// One thread runs everything (SIP, RTP relays, API): on the 2-core machine the
/// wake-ups between a multi-thread runtime's workers cost more than the second
/// worker gained (CPU per call +30 % in `scripts/bench-engine.sh --profile calls`),
/// and one core relays ~425 calls (`examples/relay_bench.rs`). Call records and
/// bindings are written by their own thread (`db::writer`).
fn main() {
    // One thread for the engine (a multi-thread runtime cost +30 % CPU per call on two
    // cores); SIP over UDP is served by threads of its own, whose batches of outgoing
    // datagrams are handed over whenever this thread is about to wait.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(vaxel_transport::sockets::flush_udp)
        .build();
    match runtime {
        Ok(rt) => rt.block_on(run()),
        Err(e) => {
            eprintln!("vaxel-engine: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    }
}

async fn run() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VAXEL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.export {
        match vaxel_engine::db::Db::open(&args.data).and_then(|db| db.export_office()) {
            Ok(o) => print!("{}", o.to_toml()),
            Err(e) => {
                eprintln!("vaxel-engine: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let config = vaxel_engine::engine::EngineConfig {
        data: args.data,
        sip: args.sip,
        office: args.office,
        session_check: std::time::Duration::from_secs(args.session_check_secs.max(1)),
        flows: vaxel_engine::engine::FlowOptions {
            prompts: args.prompts,
            clock_offset_secs: args.clock_offset_secs,
        },
        session_min_se: args.session_min_se,
        tls: match (args.tls, args.cert, args.key) {
            (Some(addr), Some(cert), Some(key)) => {
                Some(vaxel_engine::engine::TlsListener { addr, cert, key })
            }
            _ => None,
        },
        udp_threads: true,
    };
    let engine = match vaxel_engine::engine::start(config).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("vaxel-engine: {e}");
            std::process::exit(2);
        }
    };
    match vaxel_engine::api::serve(engine.clone(), args.api).await {
        Ok(addr) => tracing::info!("control API on http://{addr}/ (OpenAPI at /openapi.json)"),
        Err(e) => {
            eprintln!("vaxel-engine: cannot listen on {}: {e}", args.api);
            std::process::exit(2);
        }
    }
    // Machine-readable readiness line for scripts and tests.
    println!("vaxel-engine ready sip={}", engine.sip_addr());
    let _ = tokio::signal::ctrl_c().await;
}
