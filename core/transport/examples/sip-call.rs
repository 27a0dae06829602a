//! `sip-call`: a small SIP user agent client on vaxel-sip and vaxel-transport.
//!
//! Places N calls (optionally several at once) to a SIP URI or address:
//! INVITE with a PCMU offer, ACK for the 2xx (built by the dialog), hold,
//! BYE. Prints one line per call and exits 0 only if every call succeeded.
//!
//! ```text
//! cargo run -p vaxel-transport --example sip-call -- TARGET [-n 1] [-c 1] [--hold-ms 1000]
//!     [--udp | --tcp | --tls] [--ca FILE] [--bind IP] [--timeout-s 40] [--quiet]
//! ```

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytestring::ByteString;
use common::{Args, fail, sdp, sdp_type};
use tokio::sync::mpsc;
use vaxel_sip::dialog::{Dialog, new_call_id, new_tag};
use vaxel_sip::msg::{HeaderName, Message, Method, NameAddr, Request, Response, SipUri, Uri};
use vaxel_sip::transaction::{TxEvent, TxKey};
use vaxel_transport::{
    Endpoint, EndpointConfig, EndpointHandle, SocketsConfig, Target, TransportKind,
};

const HELP: &str = "\
sip-call: places SIP calls and reports how they went (Vaxel example)

USAGE: sip-call TARGET [OPTIONS]

  TARGET           a SIP URI (sip:service@127.0.0.1:5060;transport=tcp) or IP:PORT
  -n N             number of calls (default 1)
  -c N             calls at the same time (default 1)
  --hold-ms N      time between the ACK and the BYE (default 1000)
  --udp | --tcp | --tls   transport (default: from the URI, else UDP)
  --ca FILE        trust this certificate (PEM) for TLS
  --bind IP        local address (default: the one that routes to the target)
  --timeout-s N    give up on a call after this long (default 40)
  --linger-ms N    keep connections open this long after the last call (default 0)
  --quiet          only the summary
Exit status 0 only if every call succeeded.
";

/// Routes the endpoint's events to the call they belong to: responses and
/// in-dialog requests by Call-ID, transaction timeouts and errors by key.
struct Router {
    by_call: HashMap<ByteString, mpsc::UnboundedSender<TxEvent>>,
    by_tx: HashMap<TxKey, mpsc::UnboundedSender<TxEvent>>,
    /// Timeout/TransportError events for keys not registered yet (the event
    /// can beat `send_request`'s reply).
    early: HashMap<TxKey, Vec<TxEvent>>,
}

enum Control {
    Call(ByteString, mpsc::UnboundedSender<TxEvent>),
    Tx(TxKey, mpsc::UnboundedSender<TxEvent>),
    Done(ByteString),
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = Args::from_env();
    if args.flag("--help") || args.flag("-h") {
        print!("{HELP}");
        return;
    }
    let calls: u64 = args.parsed("-n").unwrap_or(1);
    let concurrent: u64 = args.parsed::<u64>("-c").unwrap_or(1).max(1);
    let hold = Duration::from_millis(args.parsed("--hold-ms").unwrap_or(1000));
    let timeout = Duration::from_secs(args.parsed("--timeout-s").unwrap_or(40));
    let quiet = args.flag("--quiet");
    let linger = Duration::from_millis(args.parsed("--linger-ms").unwrap_or(0));
    let forced = [
        ("--udp", TransportKind::Udp),
        ("--tcp", TransportKind::Tcp),
        ("--tls", TransportKind::Tls),
    ]
    .into_iter()
    .filter(|(f, _)| args.flag(f))
    .map(|(_, t)| t)
    .last();
    let ca = args.value("--ca");
    let bind: Option<IpAddr> = args.parsed("--bind");
    let rest = args.rest();
    let [target] = rest.as_slice() else {
        fail("give one TARGET");
    };

    // The target URI; a bare address becomes sip:IP:PORT.
    let text = if target.starts_with("sip:") || target.starts_with("sips:") {
        target.clone()
    } else {
        format!("sip:{target}")
    };
    let mut uri: Uri = text
        .parse()
        .unwrap_or_else(|_| fail(&format!("not a SIP URI: {text}")));
    if let (Some(t), Uri::Sip(sip)) = (forced, &mut uri) {
        sip.params
            .set("transport", Some(&t.via_token().to_ascii_lowercase()));
    }

    let tls_client = match ca {
        Some(path) => {
            let roots = vaxel_transport::tls::load_certs(path.as_ref())
                .unwrap_or_else(|e| fail(&e.to_string()));
            Some(
                vaxel_transport::tls::client_config(roots).unwrap_or_else(|e| fail(&e.to_string())),
            )
        }
        None => None,
    };
    let local_ip = match bind {
        Some(ip) => ip,
        None => route_source(&uri).await,
    };
    let any = SocketAddr::new(local_ip, 0);
    let config = EndpointConfig {
        sockets: SocketsConfig {
            udp: vec![any],
            tcp: vec![any],
            tls_client,
            ..Default::default()
        },
        ..Default::default()
    };
    let (handle, mut events) = Endpoint::start(config)
        .await
        .unwrap_or_else(|e| fail(&format!("cannot bind: {e}")));
    let targets = handle
        .resolve(&uri)
        .await
        .unwrap_or_else(|e| fail(&format!("cannot resolve {uri}: {e}")));
    // A UDP target needs a UDP socket of its address family.
    let has_udp = |a: SocketAddr| {
        handle
            .local_addrs()
            .iter()
            .any(|l| l.transport == TransportKind::Udp && l.addr.is_ipv4() == a.is_ipv4())
    };
    let targets: Vec<Target> = targets
        .into_iter()
        .filter(|t| t.peer.transport != TransportKind::Udp || has_udp(t.peer.addr))
        .collect();
    if targets.is_empty() {
        fail(&format!("no target of {uri} is reachable from {local_ip}"));
    }
    if !quiet {
        println!(
            "sip-call: {calls} call(s) to {uri} via {}, {concurrent} at a time, hold {} ms",
            targets[0],
            hold.as_millis()
        );
    }

    // The router task.
    let (control, mut control_rx) = mpsc::unbounded_channel::<Control>();
    let router_handle = handle.clone();
    tokio::spawn(async move {
        let mut r = Router {
            by_call: HashMap::new(),
            by_tx: HashMap::new(),
            early: HashMap::new(),
        };
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => r.route(&router_handle, ev).await,
                    None => break,
                },
                Some(c) = control_rx.recv() => match c {
                    Control::Call(id, tx) => { r.by_call.insert(id, tx); }
                    Control::Tx(key, tx) => {
                        for ev in r.early.remove(&key).unwrap_or_default() {
                            let _ = tx.send(ev);
                        }
                        r.by_tx.insert(key, tx);
                    }
                    Control::Done(id) => {
                        if let Some(tx) = r.by_call.remove(&id) {
                            r.by_tx.retain(|_, t| !t.same_channel(&tx));
                        }
                    }
                },
            }
        }
    });

    let next = Arc::new(AtomicU64::new(1));
    let ok = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrent.min(calls.max(1)) {
        let (handle, control, targets, uri) = (
            handle.clone(),
            control.clone(),
            targets.clone(),
            uri.clone(),
        );
        let (next, ok) = (next.clone(), ok.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n > calls {
                    break;
                }
                let t0 = Instant::now();
                let call = Call {
                    handle: &handle,
                    control: &control,
                    targets: &targets,
                    uri: &uri,
                    hold,
                };
                match tokio::time::timeout(timeout, call.run()).await {
                    Ok(Ok(setup)) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        if !quiet {
                            println!(
                                "call {n:>4}: ok, answered in {:.3} s, {:.3} s in all",
                                setup.as_secs_f32(),
                                t0.elapsed().as_secs_f32()
                            );
                        }
                    }
                    Ok(Err(why)) => println!("call {n:>4}: FAILED: {why}"),
                    Err(_) => println!(
                        "call {n:>4}: FAILED: no outcome after {} s",
                        timeout.as_secs()
                    ),
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let ok = ok.load(Ordering::Relaxed);
    let s = handle.stats();
    println!(
        "sip-call: {calls} calls, {ok} succeeded, {} failed in {:.1} s ({} messages out, {} in, {} retransmissions)",
        calls - ok,
        started.elapsed().as_secs_f32(),
        s.messages_sent,
        s.messages_received,
        s.retransmissions
    );
    // A peer may still be busy with the last calls (SIPp's uas pauses 4 s after
    // each BYE and counts a closed connection as a failed call).
    tokio::time::sleep(linger).await;
    handle.stop().await;
    std::process::exit(if ok == calls { 0 } else { 1 });
}

impl Router {
    async fn route(&mut self, handle: &EndpointHandle, ev: TxEvent) {
        let call_id = |m: &Message| m.headers().call_id().ok();
        let dest = match &ev {
            TxEvent::Response { response, .. } => response
                .headers
                .call_id()
                .ok()
                .and_then(|c| self.by_call.get(&c)),
            TxEvent::Stray { message, .. } => call_id(message).and_then(|c| self.by_call.get(&c)),
            TxEvent::Request { request, tx, .. } => {
                let found = request
                    .headers
                    .call_id()
                    .ok()
                    .and_then(|c| self.by_call.get(&c));
                if found.is_none() {
                    // Nothing of ours: no dialog (§12.2.2).
                    let r = vaxel_sip::dialog::no_dialog_response(request);
                    let _ = handle.send_response(*tx, r).await;
                    return;
                }
                found
            }
            TxEvent::Timeout { tx } | TxEvent::TransportError { tx } => match self.by_tx.get(tx) {
                Some(d) => Some(d),
                None => {
                    self.early.entry(*tx).or_default().push(ev);
                    return;
                }
            },
            TxEvent::Terminated { tx } => {
                self.by_tx.remove(tx);
                self.early.remove(tx);
                return;
            }
            _ => None,
        };
        if let Some(d) = dest {
            let _ = d.send(ev);
        }
    }
}

/// How a call failed: before reaching the target (try the next one) or after.
enum Failure {
    Unreachable(String),
    Other(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::Other(s)
    }
}

impl From<&str> for Failure {
    fn from(s: &str) -> Self {
        Failure::Other(s.to_owned())
    }
}

struct Call<'a> {
    handle: &'a EndpointHandle,
    control: &'a mpsc::UnboundedSender<Control>,
    targets: &'a [Target],
    uri: &'a Uri,
    hold: Duration,
}

impl Call<'_> {
    /// One call: INVITE → 2xx → ACK → hold → BYE → 200. Returns the time to answer.
    /// RFC 3263 §4.3: a target that fails at the transport level before any
    /// response is replaced by the next one, in a new transaction.
    async fn run(&self) -> Result<Duration, String> {
        let mut last = String::new();
        for target in self.targets {
            let transport = target.peer.transport;
            let local = self.handle.contact_uri("call", transport);
            let call_id = ByteString::from(new_call_id(&mut rand::rng(), &local.host.to_string()));
            let (tx, mut rx) = mpsc::unbounded_channel();
            let _ = self
                .control
                .send(Control::Call(call_id.clone(), tx.clone()));
            let result = self.dialog(target, &call_id, &local, &tx, &mut rx).await;
            let _ = self.control.send(Control::Done(call_id));
            match result {
                Err(Failure::Unreachable(why)) => last = why,
                Err(Failure::Other(why)) => return Err(why),
                Ok(setup) => return Ok(setup),
            }
        }
        Err(last)
    }

    async fn dialog(
        &self,
        target: &Target,
        call_id: &ByteString,
        local: &SipUri,
        tx: &mpsc::UnboundedSender<TxEvent>,
        rx: &mut mpsc::UnboundedReceiver<TxEvent>,
    ) -> Result<Duration, Failure> {
        let transport = target.peer.transport;
        let mut invite = Request::new(Method::Invite, self.uri.clone());
        let h = &mut invite.headers;
        h.push_value(HeaderName::Via, &self.handle.via(transport));
        h.push(HeaderName::MaxForwards, "70");
        let from_uri = SipUri::new(local.host.clone()).with_user("vaxel");
        h.push_value(
            HeaderName::From,
            &NameAddr::new(from_uri).with_tag(&new_tag(&mut rand::rng())),
        );
        h.push_value(HeaderName::To, &NameAddr::new(self.uri.clone()));
        h.push(HeaderName::CallId, call_id.clone());
        h.push(HeaderName::CSeq, "1 INVITE");
        h.push(HeaderName::Contact, format!("<{local}>"));
        h.push(HeaderName::Allow, common::ALLOW);
        let ip = self
            .handle
            .local_addrs()
            .first()
            .map_or(IpAddr::from([127, 0, 0, 1]), |l| l.addr.ip());
        invite.set_body(&sdp_type(), sdp(ip, 4000, 1, 1));

        let t0 = Instant::now();
        let key = self
            .handle
            .send_request(invite.clone(), target.clone())
            .await
            .map_err(|e| Failure::Unreachable(e.to_string()))?;
        let _ = self.control.send(Control::Tx(key, tx.clone()));

        // Wait for the final response.
        let ok: Response = loop {
            match rx.recv().await.ok_or("endpoint stopped")? {
                TxEvent::Response { response, .. }
                    if response
                        .headers
                        .cseq()
                        .is_ok_and(|c| c.method == Method::Invite) =>
                {
                    let code = response.status.as_u16();
                    if code < 200 {
                        continue;
                    }
                    if code >= 300 {
                        return Err(format!("INVITE answered {code} {}", response.reason).into());
                    }
                    break response;
                }
                TxEvent::Timeout { .. } => return Err("INVITE timed out (Timer B)".into()),
                TxEvent::TransportError { .. } => {
                    return Err(Failure::Unreachable(format!(
                        "transport error on INVITE to {target}"
                    )));
                }
                _ => {}
            }
        };
        let setup = t0.elapsed();
        let mut dialog = Dialog::from_uac(&invite, &ok).map_err(|e| format!("bad 2xx: {e}"))?;
        let dialog_target = self.in_dialog_target(&dialog, target).await;
        // §13.2.2.4: ACK the 2xx, end to end, with a new branch.
        let mut ack = dialog.new_ack(&invite);
        ack.headers
            .insert_first(HeaderName::Via, self.handle.via(transport).to_string());
        self.handle
            .send_ack(ack.clone(), dialog_target.clone())
            .await
            .map_err(|e| e.to_string())?;

        // Hold, ACKing any retransmitted 2xx (our ACK was lost).
        let until = tokio::time::Instant::now() + self.hold;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                ev = rx.recv() => match ev.ok_or("endpoint stopped")? {
                    TxEvent::Response { response, .. } | TxEvent::Stray { message: Message::Response(response), .. }
                        if response.status.is_success() =>
                    {
                        let _ = self.handle.send_ack(ack.clone(), dialog_target.clone()).await;
                    }
                    TxEvent::Request { tx, request, .. } if request.method == Method::Bye => {
                        let _ = self.handle.send_response(tx, Response::from_request(&request, common::status(200))).await;
                        return Err("the far end hung up first".into());
                    }
                    _ => {}
                },
            }
        }

        let mut bye = dialog.new_request(Method::Bye);
        bye.headers
            .insert_first(HeaderName::Via, self.handle.via(transport).to_string());
        let key = self
            .handle
            .send_request(bye, dialog_target)
            .await
            .map_err(|e| e.to_string())?;
        let _ = self.control.send(Control::Tx(key, tx.clone()));
        loop {
            match rx.recv().await.ok_or("endpoint stopped")? {
                TxEvent::Response { response, .. }
                    if response
                        .headers
                        .cseq()
                        .is_ok_and(|c| c.method == Method::Bye) =>
                {
                    let code = response.status.as_u16();
                    if code < 200 {
                        continue;
                    }
                    if code >= 300 {
                        return Err(format!("BYE answered {code} {}", response.reason).into());
                    }
                    return Ok(setup);
                }
                TxEvent::Timeout { tx } if tx == key => return Err("BYE timed out".into()),
                TxEvent::TransportError { tx } if tx == key => {
                    return Err("transport error on BYE".into());
                }
                _ => {}
            }
        }
    }

    /// Where in-dialog requests go (§12.2.1.1, RFC 3263): the first route, or
    /// the remote target; the INVITE's target when that cannot be resolved.
    async fn in_dialog_target(&self, dialog: &Dialog, first: &Target) -> Target {
        let next_hop = match dialog.route_set().first() {
            Some(route) => route.uri.clone(),
            None => dialog.remote_target().clone(),
        };
        match self.handle.resolve(&next_hop).await {
            Ok(t) => t
                .into_iter()
                .find(|t| t.peer.transport == first.peer.transport)
                .unwrap_or_else(|| first.clone()),
            Err(_) => first.clone(),
        }
    }
}

/// The local address that routes to the URI's host (no packet is sent).
async fn route_source(uri: &Uri) -> IpAddr {
    let fallback = IpAddr::from([127, 0, 0, 1]);
    let Uri::Sip(sip) = uri else { return fallback };
    let port = sip.port.unwrap_or(5060);
    let host = sip.host.to_string();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let Ok(mut addrs) = tokio::net::lookup_host((host, port)).await else {
        return fallback;
    };
    let Some(dest) = addrs.next() else {
        return fallback;
    };
    let any: SocketAddr = if dest.is_ipv4() {
        "0.0.0.0:0".parse().unwrap_or_else(|_| unreachable!())
    } else {
        "[::]:0".parse().unwrap_or_else(|_| unreachable!())
    };
    match tokio::net::UdpSocket::bind(any).await {
        Ok(s) if s.connect(dest).await.is_ok() => s.local_addr().map_or(fallback, |a| a.ip()),
        _ => fallback,
    }
}
