//! `sip-answer`: a small SIP user agent server on vaxel-sip and vaxel-transport.
//!
//! It answers every INVITE with 180 Ringing, then (after `--ring-ms`) 200 OK
//! with a PCMU SDP answer; takes the ACK; answers BYE, OPTIONS and re-INVITE
//! with 200, CANCEL with 487 to the INVITE, requests for dialogs it does not
//! know with 481; malformed requests get 400 from the endpoint, and it keeps
//! serving. One line is printed per call.
//!
//! ```text
//! cargo run -p vaxel-transport --example sip-answer -- [--port 5060] [--udp ADDR]... [--tcp ADDR]...
//!     [--tls ADDR [--cert FILE --key FILE]] [--ring-ms 500] [--quiet]
//! ```

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytestring::ByteString;
use common::{ALLOW, Args, fail, offers_pcmu, response, sdp, sdp_type, socket_addr, token};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use vaxel_sip::dialog::Dialog;
use vaxel_sip::msg::{HeaderName, Message, Method, Request};
use vaxel_sip::transaction::{TxEvent, TxKey};
use vaxel_transport::{
    Endpoint, EndpointConfig, EndpointHandle, Peer, SocketsConfig, TransportKind,
};

const HELP: &str = "\
sip-answer: a SIP user agent that answers every call (Vaxel example)

USAGE: sip-answer [OPTIONS]

  --port N         listen on UDP and TCP 127.0.0.1:N (default 5060)
  --udp ADDR       listen on UDP at ADDR (repeatable; IP:PORT or a port)
  --tcp ADDR       listen on TCP at ADDR (repeatable)
  --tls ADDR       listen on TLS at ADDR (repeatable)
  --cert FILE      TLS certificate chain (PEM); without it a self-signed one is made
  --key FILE       TLS private key (PEM)
  --ring-ms N      ring this long before answering (default 500)
  --quiet          no line per call
";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Ringing,
    Answered,
    Confirmed,
}

struct Call {
    number: u64,
    /// The UAS side of the dialog (§12.1.1), created by our 180.
    dialog: Dialog,
    invite: Request,
    invite_tx: TxKey,
    peer: Peer,
    state: State,
    started: Instant,
    answered: Option<Instant>,
    sdp_version: u64,
}

/// Calls by (Call-ID, our To tag): the UAS half of a dialog id (§12).
type CallKey = (ByteString, String);

struct Uas {
    handle: EndpointHandle,
    calls: HashMap<CallKey, Call>,
    ring: Duration,
    quiet: bool,
    count: u64,
    media: SocketAddr,
    timers: mpsc::UnboundedSender<CallKey>,
    summary: Summary,
}

#[derive(Default, Debug)]
struct Summary {
    answered: u64,
    completed: u64,
    cancelled: u64,
    rejected: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = Args::from_env();
    if args.flag("--help") || args.flag("-h") {
        print!("{HELP}");
        return;
    }
    let quiet = args.flag("--quiet");
    let ring = Duration::from_millis(args.parsed("--ring-ms").unwrap_or(500));
    let port: Option<u16> = args.parsed("--port");
    let mut udp: Vec<SocketAddr> = args
        .values("--udp")
        .iter()
        .map(|s| socket_addr(s))
        .collect();
    let mut tcp: Vec<SocketAddr> = args
        .values("--tcp")
        .iter()
        .map(|s| socket_addr(s))
        .collect();
    let tls: Vec<SocketAddr> = args
        .values("--tls")
        .iter()
        .map(|s| socket_addr(s))
        .collect();
    let cert = args.value("--cert");
    let key = args.value("--key");
    if !args.rest().is_empty() {
        fail("unexpected arguments");
    }
    if udp.is_empty() && tcp.is_empty() && tls.is_empty() || port.is_some() {
        let p = port.unwrap_or(5060);
        udp.push(SocketAddr::from(([127, 0, 0, 1], p)));
        tcp.push(SocketAddr::from(([127, 0, 0, 1], p)));
    }
    let mut cert_note = None;
    let tls_server = if tls.is_empty() {
        None
    } else {
        match (cert, key) {
            (Some(c), Some(k)) => {
                let chain = vaxel_transport::tls::load_certs(c.as_ref())
                    .unwrap_or_else(|e| fail(&e.to_string()));
                let key = vaxel_transport::tls::load_key(k.as_ref())
                    .unwrap_or_else(|e| fail(&e.to_string()));
                Some(
                    vaxel_transport::tls::server_config(chain, key)
                        .unwrap_or_else(|e| fail(&e.to_string())),
                )
            }
            (None, None) => {
                let (config, path) = common::self_signed(&std::env::temp_dir());
                cert_note = Some(path);
                Some(config)
            }
            _ => fail("--cert and --key go together"),
        }
    };

    let config = EndpointConfig {
        sockets: SocketsConfig {
            udp,
            tcp,
            tls,
            tls_server,
            ..Default::default()
        },
        ..Default::default()
    };
    let (handle, mut events) = match Endpoint::start(config).await {
        Ok(x) => x,
        Err(e) => fail(&format!("cannot listen: {e}")),
    };
    // Where the SDP answer says to send media: a socket that drains it (this
    // demo plays no audio).
    let media_ip = handle
        .local_addrs()
        .first()
        .map_or(IpAddr::from([127, 0, 0, 1]), |l| {
            vaxel_transport::sockets::advertised_ip(l.addr)
        });
    let media = UdpSocket::bind(SocketAddr::new(media_ip, 0))
        .await
        .unwrap_or_else(|e| fail(&e.to_string()));
    let media_addr = media.local_addr().unwrap_or_else(|e| fail(&e.to_string()));
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while media.recv_from(&mut buf).await.is_ok() {}
    });

    banner(&handle, ring, cert_note.as_deref());

    let (timers, mut timer_rx) = mpsc::unbounded_channel();
    let mut uas = Uas {
        handle: handle.clone(),
        calls: HashMap::new(),
        ring,
        quiet,
        count: 0,
        media: media_addr,
        timers,
        summary: Summary::default(),
    };
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(ev) => uas.event(ev).await,
                None => break,
            },
            Some(key) = timer_rx.recv() => uas.answer(&key).await,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    let s = handle.stats();
    println!(
        "sip-answer: {} calls answered, {} completed, {} cancelled, {} rejected; {} messages in, {} out, {} malformed",
        uas.summary.answered,
        uas.summary.completed,
        uas.summary.cancelled,
        uas.summary.rejected,
        s.messages_received,
        s.messages_sent,
        s.malformed
    );
    handle.stop().await;
}

fn banner(handle: &EndpointHandle, ring: Duration, cert: Option<&std::path::Path>) {
    println!(
        "Vaxel sip-answer: a SIP user agent that answers every call (vaxel-sip + vaxel-transport)"
    );
    for l in handle.local_addrs() {
        println!(
            "  listening on {} {}",
            l.transport.via_token().to_lowercase(),
            l.addr
        );
    }
    println!(
        "  answers INVITE with 180, then 200 OK + PCMU SDP after {} ms; BYE, OPTIONS, CANCEL handled",
        ring.as_millis()
    );
    let udp = handle.local_addr(TransportKind::Udp);
    let tcp = handle.local_addr(TransportKind::Tcp);
    let tls = handle.local_addr(TransportKind::Tls);
    println!("Call it:");
    if let Some(a) = udp {
        println!("  sipp -sn uac {a} -m 10                  # 10 calls over UDP with SIPp");
    }
    if let Some(a) = tcp {
        println!("  sipp -sn uac {a} -m 10 -t t1            # over TCP");
    }
    if let Some(a) = udp.or(tcp) {
        let t = if udp.is_some() { "" } else { " --tcp" };
        println!("  cargo run -p vaxel-transport --example sip-call -- sip:{a}{t} -n 10");
    }
    if let Some(a) = tls {
        let ca = cert.map_or_else(|| "CERT.pem".to_owned(), |p| p.display().to_string());
        println!(
            "  cargo run -p vaxel-transport --example sip-call -- sip:localhost:{} --tls --ca {ca} -n 10",
            a.port()
        );
    }
    println!("Ctrl-C stops it.");
}

impl Uas {
    async fn event(&mut self, ev: TxEvent) {
        match ev {
            TxEvent::Request { tx, request, from } => self.request(tx, request, from).await,
            TxEvent::Cancelled { invite, .. } => self.cancelled(invite).await,
            TxEvent::Stray {
                message: Message::Request(ack),
                ..
            } if ack.method == Method::Ack => {
                if let Some(call) = call_key(&ack).and_then(|k| self.calls.get_mut(&k))
                    && call.state == State::Answered
                    && call.dialog.handle_request(&ack).is_ok()
                {
                    call.state = State::Confirmed;
                }
            }
            TxEvent::Timeout { tx } | TxEvent::TransportError { tx } => {
                // The 2xx was never acknowledged (Timer L/H) or the caller is gone: end the call.
                let key = self
                    .calls
                    .iter()
                    .find(|(_, c)| c.invite_tx == tx && c.state != State::Confirmed)
                    .map(|(k, _)| k.clone());
                if let Some(c) = key.and_then(|k| self.calls.remove(&k)) {
                    self.line(&c, "failed: no ACK or transport error");
                }
            }
            _ => {}
        }
    }

    async fn request(&mut self, tx: TxKey, req: Request, from: Peer) {
        let in_dialog = req
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_owned))
            .is_some();
        if in_dialog {
            return self.in_dialog(tx, req).await;
        }
        match req.method {
            Method::Invite => self.invite(tx, req, from).await,
            Method::Options => self.options(tx, &req).await,
            // BYE and friends need a dialog (§12.2.2).
            Method::Bye | Method::Info | Method::Update | Method::Prack => {
                self.send(tx, response(&req, 481, &token(10), None)).await
            }
            _ => {
                let mut r = response(&req, 405, &token(10), None);
                r.headers.push(HeaderName::Allow, ALLOW);
                self.send(tx, r).await
            }
        }
    }

    async fn invite(&mut self, tx: TxKey, req: Request, from: Peer) {
        let tag = token(10);
        if !req.body.is_empty() && !offers_pcmu(&req.body) {
            // §13.3.1.3 / RFC 3264 §6: nothing we can answer.
            self.summary.rejected += 1;
            return self.send(tx, response(&req, 488, &tag, None)).await;
        }
        let Ok(call_id) = req.headers.call_id() else {
            return;
        };
        self.count += 1;
        let contact = self
            .handle
            .contact_uri("answer", from.transport)
            .to_string();
        let ringing = response(&req, 180, &tag, Some(&contact));
        let dialog = match Dialog::from_uas(&req, &ringing) {
            Ok(d) => d,
            Err(e) => {
                let code = e.status().map_or(400, |s| s.as_u16());
                return self.send(tx, response(&req, code, &tag, None)).await;
            }
        };
        self.send(tx, ringing).await;
        let key = (call_id, tag);
        self.calls.insert(
            key.clone(),
            Call {
                number: self.count,
                dialog,
                invite: req,
                invite_tx: tx,
                peer: from,
                state: State::Ringing,
                started: Instant::now(),
                answered: None,
                sdp_version: 1,
            },
        );
        if self.ring.is_zero() {
            self.answer(&key).await;
        } else {
            let timers = self.timers.clone();
            let ring = self.ring;
            tokio::spawn(async move {
                tokio::time::sleep(ring).await;
                let _ = timers.send(key);
            });
        }
    }

    /// The ring time is over: 200 OK with the SDP answer (§13.3.1.4).
    async fn answer(&mut self, key: &CallKey) {
        let Some(call) = self.calls.get_mut(key) else {
            return;
        };
        if call.state != State::Ringing {
            return;
        }
        let contact = self
            .handle
            .contact_uri("answer", call.peer.transport)
            .to_string();
        let mut ok = response(&call.invite, 200, &key.1, Some(&contact));
        ok.headers.push(HeaderName::Allow, ALLOW);
        ok.headers
            .push(HeaderName::ContentType, sdp_type().to_string());
        ok.body = sdp(
            self.media.ip(),
            self.media.port(),
            call.number,
            call.sdp_version,
        );
        call.state = State::Answered;
        call.answered = Some(Instant::now());
        let tx = call.invite_tx;
        self.summary.answered += 1;
        self.send(tx, ok).await;
    }

    async fn cancelled(&mut self, invite: TxKey) {
        let key = self
            .calls
            .iter()
            .find(|(_, c)| c.invite_tx == invite)
            .map(|(k, _)| k.clone());
        let Some(key) = key else { return };
        let Some(call) = self.calls.remove(&key) else {
            return;
        };
        // §9.2: the INVITE is answered 487 Request Terminated.
        self.send(invite, response(&call.invite, 487, &key.1, None))
            .await;
        self.summary.cancelled += 1;
        self.line(&call, "cancelled by the caller");
    }

    async fn in_dialog(&mut self, tx: TxKey, req: Request) {
        let key = call_key(&req);
        let known = key.as_ref().is_some_and(|k| self.calls.contains_key(k));
        let tag = key.as_ref().map_or_else(|| token(10), |k| k.1.clone());
        if !known {
            // §12.2.2: a request for a dialog we do not have.
            return self.send(tx, response(&req, 481, &tag, None)).await;
        }
        let key = key.unwrap_or_default();
        // §12.2.2: the dialog checks the remote CSeq order and refreshes the target.
        if let Some(call) = self.calls.get_mut(&key)
            && let Err(e) = call.dialog.handle_request(&req)
        {
            let code = e.status().map_or(500, |s| s.as_u16());
            return self.send(tx, response(&req, code, &tag, None)).await;
        }
        match req.method {
            Method::Bye => {
                self.send(tx, response(&req, 200, &tag, None)).await;
                if let Some(call) = self.calls.remove(&key) {
                    self.summary.completed += 1;
                    self.line(&call, "ended by BYE");
                }
            }
            Method::Invite => {
                // A re-INVITE: same media, new SDP version (RFC 3264 §8).
                let Some(call) = self.calls.get_mut(&key) else {
                    return;
                };
                call.sdp_version += 1;
                let (transport, number, version) =
                    (call.peer.transport, call.number, call.sdp_version);
                let contact = self.handle.contact_uri("answer", transport).to_string();
                let mut ok = response(&req, 200, &tag, Some(&contact));
                ok.headers
                    .push(HeaderName::ContentType, sdp_type().to_string());
                ok.body = sdp(self.media.ip(), self.media.port(), number, version);
                self.send(tx, ok).await;
            }
            Method::Options => self.options(tx, &req).await,
            _ => {
                let mut r = response(&req, 405, &tag, None);
                r.headers.push(HeaderName::Allow, ALLOW);
                self.send(tx, r).await
            }
        }
    }

    async fn options(&mut self, tx: TxKey, req: &Request) {
        let mut ok = response(req, 200, &token(10), None);
        ok.headers.push(HeaderName::Allow, ALLOW);
        ok.headers.push(HeaderName::Accept, "application/sdp");
        self.send(tx, ok).await;
    }

    async fn send(&self, tx: TxKey, r: vaxel_sip::msg::Response) {
        if let Err(e) = self.handle.send_response(tx, r).await {
            eprintln!("sip-answer: cannot respond: {e}");
        }
    }

    fn line(&self, call: &Call, what: &str) {
        if self.quiet {
            return;
        }
        let ring = call.answered.map_or_else(
            || "not answered".to_owned(),
            |a| format!("answered after {:.1} s", (a - call.started).as_secs_f32()),
        );
        println!(
            "call {:>4}  {} {:<21} {ring}, {what} after {:.1} s",
            call.number,
            call.peer.transport.via_token().to_lowercase(),
            call.peer.addr.to_string(),
            call.started.elapsed().as_secs_f32()
        );
    }
}

/// (Call-ID, To tag) of an in-dialog request: our side of the dialog id.
fn call_key(req: &Request) -> Option<CallKey> {
    let call_id = req.headers.call_id().ok()?;
    let tag = req.headers.to().ok()?.tag()?.to_owned();
    Some((call_id, tag))
}
