//! Call flows carried out by the engine (R-303…R-312): the pure [`vaxel_routing::Router`]
//! decides, this module does what it says with SIP legs and the [`MediaSession`].
//!
//! A call is a flow call when the dialled number is a main number (its active call
//! flow runs), a feature code (`*21*n#`…), the voicemail number, the echo-test number,
//! a shared mailbox's number, or a user with forwarding set (the router applies it).
//! Such a call is an ordinary [`Call`] of the engine (relay, A leg, B legs in
//! `forks`) plus a [`FlowCall`] here. The engine answers the caller itself only when
//! media is needed (a prompt, a menu, voicemail): then the relay is *tapped* and the
//! media server talks to the caller over the relay's A socket; when a hunt-group
//! member answers, the tap is removed and the relay bridges caller and member. When
//! no media was needed before a member answered, the engine's ordinary answer path
//! answers the caller with the member's SDP.
//!
//! Hooks in `engine.rs` call in here from `invite` (where a call goes), the B-leg
//! response paths (`b_answered`, `b_failed`), the caller's BYE and INFO, the
//! one-second tick, and the media server's notes.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use rand::SeedableRng;
use rand::rngs::StdRng;
use vaxel_media::wav::Prompt;
use vaxel_routing::feature::{self, Context, FeatureCode, FeatureError, ForwardKind};
use vaxel_routing::flow::{Greeting, MailboxRef, Target as FlowTarget};
use vaxel_routing::forwarding::{Forwarding, NoAnswerForward};
use vaxel_routing::{Action, CallerDisplay, Event, LegFailure, MemberState, Router};

use super::*;
use crate::callflow::{OfficeUser, Routing};
use crate::db::{IvrChoice, Message as VmMessage};
use crate::media_server::{MediaCmd, MediaFormat, MediaNote, MediaSession, beep};

mod keyed;
mod redirect;

/// A router leg id (one user; all the user's devices ring as engine legs).
type RLeg = u64;

/// What the flows need to start.
#[derive(Debug, Clone, Default)]
pub struct FlowOptions {
    /// Where the shipped prompts are (`assets/prompts`); default: the repository's.
    pub prompts: Option<PathBuf>,
    /// Added to the wall clock for opening hours and feature-code times (tests make
    /// the office open or closed with it).
    pub clock_offset_secs: i64,
}

/// Where the shipped prompts are when no directory is given.
pub fn default_prompts_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/prompts"))
}

/// The flows' state, owned by the engine task.
pub(super) struct Flows {
    router: Router<StdRng>,
    routing: Routing,
    prompts_dir: PathBuf,
    data: PathBuf,
    prompt_cache: HashMap<(String, String), Arc<Prompt>>,
    offset: SignedDuration,
    calls: HashMap<CallId, FlowCall>,
    /// Engine B leg → (call, router leg; `None` for a forward or bypass leg).
    legs: HashMap<LegId, (CallId, Option<RLeg>)>,
    /// Router leg → its engine legs still ringing.
    rlegs: HashMap<RLeg, Vec<LegId>>,
    timers: Vec<(Timestamp, CallId, u64)>,
    forwarding: BTreeMap<String, Forwarding>,
    /// Messages being recorded whose call may end first (keyed by call).
    deposits: HashMap<CallId, Deposit>,
    /// Users whose presence profile (`*24*`) keeps them out of group calls.
    /// … and until when (`None`: until `#24#`).
    excluded: BTreeMap<String, Option<Timestamp>>,
    /// The profile number of each user in `excluded`.
    profiles: BTreeMap<String, u32>,
    /// Codes keyed during calls (`#n#`, `*`).
    keyed: keyed::Keyed,
    /// Users the router was last told are on a call (R-305 skip busy).
    on_call: HashSet<String>,
    /// When each user's last call ended (R-305 longest idle).
    idle_since: HashMap<String, Timestamp>,
    notes_tx: mpsc::UnboundedSender<(u64, MediaNote)>,
    notes_rx: Option<mpsc::UnboundedReceiver<(u64, MediaNote)>>,
}

#[derive(Debug, Clone)]
struct Deposit {
    mailbox: String,
    caller: String,
    record: i64,
}

#[derive(Debug)]
enum Mode {
    /// The router drives prompts, menus and legs.
    Router,
    /// Voicemail: greeting playing, then recording.
    Greeting(Deposit),
    Recording,
    /// Listening to one's box: entering the PIN.
    AccessPin {
        mailbox: String,
        digits: String,
    },
    /// Listening: message `index` playing or its menu waiting.
    AccessPlay {
        mailbox: String,
        messages: Vec<VmMessage>,
        index: usize,
    },
    /// A prompt, then hang up.
    PromptThenBye,
    /// Echo test.
    Echo,
    /// Ringing one user outside the router (forward, `*60*`, `*31*`).
    Direct,
}

struct FlowCall {
    record: i64,
    caller: String,
    media: Option<MediaSession>,
    /// Our SDP answer to the caller, offered to the members we ring after it.
    answer: Option<String>,
    /// Our offer to a caller whose INVITE had none, until its answer in the ACK.
    late: Option<vaxel_media::sdp::OfferAnswer>,
    mode: Mode,
    /// Shown as the caller to the legs we ring.
    display: CallerDisplay,
    hidden: bool,
    language: String,
    /// Legs were rung for this call, and whether the last one failed busy (why a
    /// forward happened, for Diversion).
    rang: bool,
    busy: bool,
}

impl Flows {
    pub(super) fn new(opts: &FlowOptions, data: PathBuf, db: &Db) -> Result<Flows, DbError> {
        let (notes_tx, notes_rx) = mpsc::unbounded_channel();
        let mut f = Flows {
            router: Router::new(vaxel_routing::Config::default(), StdRng::from_os_rng()),
            routing: Routing::default(),
            prompts_dir: opts.prompts.clone().unwrap_or_else(default_prompts_dir),
            data,
            prompt_cache: HashMap::new(),
            offset: SignedDuration::from_secs(opts.clock_offset_secs),
            calls: HashMap::new(),
            legs: HashMap::new(),
            rlegs: HashMap::new(),
            timers: Vec::new(),
            forwarding: db.forwarding()?,
            deposits: HashMap::new(),
            excluded: Default::default(),
            profiles: Default::default(),
            keyed: Default::default(),
            on_call: Default::default(),
            idle_since: Default::default(),
            notes_tx,
            notes_rx: Some(notes_rx),
        };
        f.routing = db.routing()?.unwrap_or_default();
        Ok(f)
    }

    /// The notes of every media session (taken once by the engine's loop).
    pub(super) fn take_notes(&mut self) -> mpsc::UnboundedReceiver<(u64, MediaNote)> {
        self.notes_rx
            .take()
            .unwrap_or_else(|| mpsc::unbounded_channel().1)
    }

    /// How long until the next router timer is due (an hour when none is set), so
    /// ring times and menu timeouts fire on time rather than on the next tick.
    pub(super) fn next_timer(&self) -> Duration {
        let now = self.now();
        self.timers
            .iter()
            .map(|(at, _, _)| {
                let d = at.duration_since(now);
                Duration::try_from(d).unwrap_or(Duration::ZERO)
            })
            .min()
            .unwrap_or(Duration::from_secs(3600))
    }

    fn now(&self) -> Timestamp {
        Timestamp::now()
            .saturating_add(self.offset)
            .unwrap_or_else(|_| Timestamp::now())
    }

    /// Rebuilds the router's configuration (users, routing section, forwarding);
    /// calls in progress, member states and group rotation keep their state.
    pub(super) fn reconfigure(&mut self, users: &HashMap<String, UserRow>, routing: Routing) {
        let list: Vec<OfficeUser> = users
            .values()
            .map(|u| OfficeUser {
                extension: u.extension.clone(),
                number: u.number.clone(),
            })
            .collect();
        let cfg = routing.to_config(&list, &self.forwarding);
        self.routing = routing;
        // Calls in progress, member states and rotation carry over.
        self.router.set_config(cfg);
        self.prompt_cache.clear();
    }

    fn prompt(&mut self, name: &str, language: &str) -> Arc<Prompt> {
        let key = (language.to_owned(), name.to_owned());
        if let Some(p) = self.prompt_cache.get(&key) {
            return p.clone();
        }
        // An uploaded prompt replaces the shipped one; English is the fallback.
        let candidates = [
            self.data
                .join("prompts")
                .join(language)
                .join(format!("{name}.wav")),
            self.prompts_dir.join(language).join(format!("{name}.wav")),
            self.prompts_dir.join("en").join(format!("{name}.wav")),
            self.prompts_dir.join(format!("{name}.wav")),
        ];
        let p = candidates
            .iter()
            .find_map(|path| {
                let f = std::fs::File::open(path).ok()?;
                match Prompt::from_wav(std::io::BufReader::new(f), crate::media_server::RATE) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        warn!("prompt {}: {e}", path.display());
                        None
                    }
                }
            })
            .unwrap_or_else(|| {
                warn!("prompt {name} ({language}) not found; playing silence");
                Prompt::from_samples(vec![0; 4000], crate::media_server::RATE)
            });
        let p = Arc::new(p);
        self.prompt_cache.insert(key, p.clone());
        p
    }

    fn voicemail_dir(&self) -> PathBuf {
        self.data.join("voicemail")
    }
}

/// What a dialled number reaches when it is a flow call.
enum Kind {
    Flow(String),
    Direct(String),
    Feature(String),
    Access,
    Echo,
    Deposit(String),
}

fn is_empty_forwarding(f: &Forwarding) -> bool {
    f.unconditional.is_none() && f.busy.is_none() && f.no_answer.is_none() && f.timed.is_none()
}

/// A SIP URI user part with its `%XX` escapes decoded (RFC 3261 §19.1.2): feature
/// codes arrive as `*21*4003%23`.
fn unescape_user(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the media server offers and accepts: G.711 first (the prompts are
/// 8 kHz), Opus for callers who offer only that; RFC 4733 events; plain RTP.
fn media_policy() -> vaxel_media::sdp::MediaPolicy {
    vaxel_media::sdp::MediaPolicy {
        codecs: vec![
            vaxel_media::CodecKind::Pcma,
            vaxel_media::CodecKind::Pcmu,
            vaxel_media::CodecKind::Opus,
        ],
        ptime_ms: 20,
        telephone_event: true,
        srtp: vaxel_media::sdp::SrtpPolicy::Disabled,
        rtcp_mux: false,
    }
}

/// Whether an offer is RTP/SAVP without an `a=crypto` line the engine can use
/// (RFC 4568 §6.1): such an offer gets 488.
fn srtp_without_key(body: &[u8]) -> bool {
    let Ok(sd) = vaxel_media::sdp::parse(body) else {
        return false;
    };
    sd.media
        .iter()
        .find(|m| m.kind == "audio" && m.port != 0)
        .is_some_and(|m| {
            m.protocol.eq_ignore_ascii_case("RTP/SAVP")
                && !m
                    .attribute_values("crypto")
                    .any(|v| vaxel_media::srtp::CryptoAttribute::parse(v).is_ok())
        })
}

/// The media server's format for a negotiated stream.
fn format_of(neg: &vaxel_media::sdp::NegotiatedAudio) -> MediaFormat {
    MediaFormat {
        codec: neg.codec,
        pt: neg.send_pt,
        te_pt: neg.telephone_event.map(|t| t.recv_pt),
    }
}

/// `#` and other characters outside the SIP URI user grammar, escaped (RFC 3261 §25.1).
fn escape_user(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '#' => "%23".to_owned(),
            ' ' => "%20".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

impl Engine {
    /// Loads the routing section and forwarding into the router (at start and after
    /// an office import or an API change).
    pub(super) fn flow_reload(&mut self) {
        let routing = match self.db.get().routing() {
            Ok(r) => r.unwrap_or_default(),
            Err(e) => {
                warn!("cannot read the routing section: {e}");
                return;
            }
        };
        self.flows.reconfigure(&self.users, routing);
    }

    /// Hook from `invite`: takes the call if the dialled number is a flow call.
    /// `caller` is the authenticated user (`None` from a trunk). Returns whether
    /// the INVITE was handled.
    pub(super) async fn flow_invite(
        &mut self,
        tx: TxKey,
        req: &Request,
        from: Peer,
        caller: Option<&UserRow>,
    ) -> bool {
        let dialed = dialled(&unescape_user(&uri_user(&req.uri).unwrap_or_default()));
        let to_user = req
            .headers
            .to()
            .ok()
            .and_then(|t| uri_user(&t.uri))
            .map(|u| dialled(&unescape_user(&u)))
            .unwrap_or_default();
        let routing = &self.flows.routing;
        let cfg = self.flows.router.config();
        let internal = caller.is_some();
        let kind = if internal && (dialed.starts_with('*') || dialed.starts_with('#')) {
            Kind::Feature(dialed.clone())
        } else if internal && routing.voicemail_number.as_deref() == Some(dialed.as_str()) {
            Kind::Access
        } else if routing.echo_number.as_deref() == Some(dialed.as_str()) {
            Kind::Echo
        } else if let Some(n) = [&dialed, &to_user]
            .into_iter()
            .find(|n| !n.is_empty() && cfg.flow_for(n).is_some())
        {
            Kind::Flow(n.clone())
        } else if let Some(m) = routing
            .mailboxes
            .iter()
            .find(|m| m.number.as_deref() == Some(dialed.as_str()))
        {
            Kind::Deposit(m.name.clone())
        } else if let Some(ext) = self.user_for(&dialed)
            && self
                .flows
                .forwarding
                .get(&ext)
                .is_some_and(|f| !is_empty_forwarding(f))
            && caller.is_none_or(|c| c.extension != ext)
        {
            Kind::Direct(ext)
        } else {
            return false;
        };
        let caller_party = match caller {
            Some(u) => u.extension.clone(),
            None => req
                .headers
                .from()
                .ok()
                .and_then(|f| uri_user(&f.uri))
                .unwrap_or_else(|| "anonymous".into()),
        };
        let callee = match &kind {
            Kind::Flow(n) | Kind::Direct(n) | Kind::Feature(n) => n.clone(),
            Kind::Deposit(b) => b.clone(),
            Kind::Access | Kind::Echo => dialed.clone(),
        };
        let direction = if internal { "internal" } else { "inbound" };
        let Some(call_id) = self
            .flow_new_call(tx, req, from, &caller_party, &callee, direction)
            .await
        else {
            return true;
        };
        match kind {
            Kind::Flow(n) | Kind::Direct(n) => {
                self.flow_route(
                    call_id,
                    Event::CallArrived {
                        call: call_id,
                        dialed: n,
                        caller: caller_party,
                    },
                )
                .await
            }
            Kind::Feature(code) => self.flow_feature(call_id, &caller_party, &code).await,
            Kind::Access => {
                if self.flow_answer(call_id).await {
                    let mailbox = caller_party.clone();
                    self.flow_play(
                        call_id,
                        &["vm_pin"],
                        Mode::AccessPin {
                            mailbox,
                            digits: String::new(),
                        },
                    );
                }
            }
            Kind::Echo => {
                if self.flow_answer(call_id).await {
                    self.flow_play(call_id, &["echo"], Mode::Echo);
                }
            }
            Kind::Deposit(b) => {
                self.flow_deposit(call_id, b, Greeting::Standard).await;
            }
        }
        true
    }

    /// Creates the engine's call (relay, record, A leg) for a flow call; answers the
    /// INVITE itself on failure.
    async fn flow_new_call(
        &mut self,
        tx: TxKey,
        req: &Request,
        from: Peer,
        caller_party: &str,
        callee: &str,
        direction: &str,
    ) -> Option<CallId> {
        let relay = match Relay::start(&self.relay_pool).await {
            Ok(r) => r,
            Err(e) => {
                warn!("no media relay: {e}");
                self.reply(tx, req, 503).await;
                return None;
            }
        };
        let now = unix_now();
        let started = self
            .db
            .get()
            .start_call(caller_party, callee, direction, now);
        let record = match started {
            Ok(r) => r,
            Err(e) => {
                warn!("cannot record a call: {e}");
                self.reply(tx, req, 500).await;
                return None;
            }
        };
        // SRTP is terminated per leg, as on routed calls (see `relay`): the caller's
        // keys and address go to the relay.
        relay.terminate();
        match relay.heard(Side::A, &req.body) {
            Some(_) if srtp_without_key(&req.body) => {
                // RFC 4568 §7.1.2 / RFC 3264 §6: RTP/SAVP with no usable `a=crypto`
                // line (absent, garbled or an unknown suite) cannot be answered.
                debug!("flow call: RTP/SAVP offer without a usable a=crypto line");
                self.reply(tx, req, 488).await;
                let _ = self.db.get().end_call(record, "failed", now);
                return None;
            }
            Some(_) => {}
            // A late offer: the caller's address comes with its answer in the ACK.
            None if req.body.is_empty() => {}
            None => {
                self.reply(tx, req, 400).await;
                let _ = self.db.get().end_call(record, "failed", now);
                return None;
            }
        }
        let call_id = self.new_id();
        let a_leg = self.new_id();
        let a_tag = self.tag_for(req);
        let a_record = self
            .db
            .get()
            .add_leg(record, "a", caller_party, &req.uri.to_string(), now)
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
                party: caller_party.to_owned(),
                sdp: Some(req.body.clone()),
            },
        );
        self.calls.insert(
            call_id,
            Call {
                record,
                a: a_leg,
                forks: Vec::new(),
                answered: None,
                relay,
                caller: caller_party.to_owned(),
                callee: callee.to_owned(),
                failures: Vec::new(),
                transfer: None,
            },
        );
        let language = self.flows.routing.language.clone();
        self.flows.calls.insert(
            call_id,
            FlowCall {
                record,
                caller: caller_party.to_owned(),
                media: None,
                answer: None,
                late: None,
                mode: Mode::Router,
                display: vaxel_routing::caller_display(caller_party, None),
                hidden: false,
                language,
                rang: false,
                busy: false,
            },
        );
        self.emit(EngineEvent::Call {
            call: record,
            caller: caller_party.to_owned(),
            callee: callee.to_owned(),
            state: "ringing".into(),
        });
        Some(call_id)
    }

    /// Makes an ordinary call of the engine a flow call (a redirect from a ringing
    /// device), so the flows can ring, forward or take it to voicemail.
    fn flow_adopt(&mut self, call_id: CallId) {
        if self.flows.calls.contains_key(&call_id) {
            return;
        }
        let Some(c) = self.calls.get(&call_id) else {
            return;
        };
        let language = self.flows.routing.language.clone();
        self.flows.calls.insert(
            call_id,
            FlowCall {
                record: c.record,
                caller: c.caller.clone(),
                media: None,
                answer: None,
                late: None,
                mode: Mode::Direct,
                display: vaxel_routing::caller_display(&c.caller, None),
                hidden: false,
                language,
                rang: true,
                busy: false,
            },
        );
    }

    /// Answers the caller with the engine's own media (G.711 or Opus, telephone-event)
    /// and starts the media session. Returns false (and ends the call) when the
    /// caller's offer has no common codec. An INVITE without SDP (late offer, RFC 3261
    /// §13.2.1) gets our offer in the 200; the caller's answer comes in the ACK
    /// ([`Engine::flow_ack`]).
    async fn flow_answer(&mut self, call_id: CallId) -> bool {
        if self
            .flows
            .calls
            .get(&call_id)
            .is_some_and(|f| f.media.is_some())
        {
            return true;
        }
        let Some(call) = self.calls.get(&call_id) else {
            return false;
        };
        let a_id = call.a;
        let local = call.relay.local(Side::A);
        let Some(a) = self.legs.get(&a_id) else {
            return false;
        };
        let Some(a_tx) = a.invite_tx else {
            return false;
        };
        let late = a.invite.body.is_empty();
        // A caller's offer may use SRTP (SDES): accepted, and the relay puts the
        // engine's own key in the answer (see `Relay::answer_for`). Our own offer
        // (late offer) stays plain RTP.
        let policy = if late {
            media_policy()
        } else {
            vaxel_media::sdp::MediaPolicy {
                srtp: vaxel_media::sdp::SrtpPolicy::Optional,
                ..media_policy()
            }
        };
        let mut oa = vaxel_media::sdp::OfferAnswer::new(policy, local, &mut rand::rng());
        let (sdp, format, remote) = if late {
            let offer = oa.create_offer();
            // Until the ACK says otherwise: our first choice.
            let format = MediaFormat {
                codec: vaxel_media::CodecKind::Pcma,
                pt: 8,
                te_pt: None,
            };
            (offer.to_string(), format, None)
        } else {
            let negotiated = vaxel_media::sdp::parse(&a.invite.body)
                .map_err(|e| e.to_string())
                .and_then(|offer| oa.handle_offer(&offer).map_err(|e| e.to_string()));
            let (answer, neg) = match negotiated {
                Ok(x) => x,
                Err(e) => {
                    debug!("flow call: cannot answer the caller's offer: {e}");
                    self.fail_call(call_id, 488).await;
                    return false;
                }
            };
            let Some(answer) = call
                .relay
                .answer_for(Side::A, answer.to_string().as_bytes())
            else {
                self.fail_call(call_id, 488).await;
                return false;
            };
            (answer, format_of(&neg), neg.remote_rtp)
        };
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
        set_response_body(&mut ok, &sdp_type(), Bytes::from(sdp.clone()));
        let dialog = Dialog::from_uas(&a.invite, &ok).ok();
        let (tap_tx, tap_rx) = mpsc::unbounded_channel();
        let session = MediaSession::start(
            call_id,
            tap_rx,
            call.relay.to_caller(),
            remote,
            format,
            self.flows.notes_tx.clone(),
        );
        call.relay.tap(Some(tap_tx));
        if let Some(a) = self.legs.get_mut(&a_id) {
            a.dialog = dialog;
            a.state = LegState::Confirmed;
            // Answered: the ordinary paths must not answer this INVITE again.
            a.invite_tx = None;
        }
        self.respond(a_tx, ok).await;
        if let Some(f) = self.flows.calls.get_mut(&call_id) {
            f.media = Some(session);
            f.answer = Some(sdp);
            f.late = late.then_some(oa);
        }
        if let Some(p) = self.legs.get(&a_id).map(|a| a.party.clone()) {
            self.flow_members(&[p]);
        }
        true
    }

    /// Hook from the ACK of an INVITE without SDP that the engine answered itself:
    /// the caller's answer to our offer (RFC 3264 §6) sets the media session's codec
    /// and address; what later legs are offered becomes that one codec. Returns
    /// whether it was taken.
    pub(super) fn flow_ack(&mut self, call_id: CallId, ack: &Request) -> bool {
        let Some(f) = self.flows.calls.get_mut(&call_id) else {
            return false;
        };
        let Some(mut oa) = f.late.take() else {
            return false;
        };
        let neg = vaxel_media::sdp::parse(&ack.body)
            .map_err(|e| e.to_string())
            .and_then(|sd| oa.handle_answer(&sd).map_err(|e| e.to_string()));
        let neg = match neg {
            Ok(n) => n,
            Err(e) => {
                // RFC 3261 §13.2.1: nothing to do but carry on with our first choice.
                debug!("late offer: the caller's answer in the ACK is unusable: {e}");
                return true;
            }
        };
        if let Some(m) = &f.media {
            m.send(MediaCmd::Format {
                format: format_of(&neg),
                remote: neg.remote_rtp,
            });
        }
        let Some(call) = self.calls.get(&call_id) else {
            return true;
        };
        // What members are offered from now on: our side with the agreed codec only.
        let policy = vaxel_media::sdp::MediaPolicy {
            codecs: vec![neg.codec],
            telephone_event: neg.telephone_event.is_some(),
            ..media_policy()
        };
        let ours =
            vaxel_media::sdp::OfferAnswer::new(policy, call.relay.local(Side::A), &mut rand::rng())
                .create_offer()
                .to_string();
        f.answer = Some(ours);
        // The caller's format and address (its answer, plain RTP: our offer was).
        let _ = call.relay.heard(Side::A, &ack.body);
        if let Some(a) = self.legs.get_mut(&call.a) {
            a.sdp = Some(ack.body.clone());
        }
        debug!("call {call_id}: late offer answered with {:?}", neg.codec);
        true
    }

    fn flow_play(&mut self, call_id: CallId, names: &[&str], mode: Mode) {
        let lang = self
            .flows
            .calls
            .get(&call_id)
            .map(|f| f.language.clone())
            .unwrap_or_else(|| self.flows.routing.language.clone());
        let prompts: Vec<Arc<Prompt>> = names
            .iter()
            .map(|n| {
                if *n == "beep" {
                    beep()
                } else {
                    self.flows.prompt(n, &lang)
                }
            })
            .collect();
        if let Some(f) = self.flows.calls.get_mut(&call_id) {
            f.mode = mode;
            if let Some(m) = &f.media {
                m.send(MediaCmd::Play {
                    prompts,
                    looped: false,
                });
            }
        }
    }

    /// Feeds the router and carries out what it decides, until it has nothing more.
    async fn flow_route(&mut self, _call_id: CallId, first: Event) {
        let mut events = VecDeque::from([first]);
        while let Some(ev) = events.pop_front() {
            let now = self.flows.now();
            let actions = self.flows.router.handle(now, ev);
            for a in actions {
                self.flow_do(a, &mut events).await;
            }
        }
    }

    async fn flow_do(&mut self, action: Action, events: &mut VecDeque<Event>) {
        debug!("flow: {action:?}");
        match action {
            Action::Ring {
                call,
                legs,
                display,
            } => {
                if let Some(f) = self.flows.calls.get_mut(&call) {
                    f.display = display.clone();
                }
                // While members ring, a caller the engine answered hears music.
                let music = self.flows.prompt("music", "");
                if let Some(m) = self.flows.calls.get(&call).and_then(|f| f.media.as_ref()) {
                    m.send(MediaCmd::Play {
                        prompts: vec![music],
                        looped: true,
                    });
                }
                for l in legs {
                    let rung = self.flow_ring(call, &l.user, Some(l.leg), None).await;
                    if rung == 0 {
                        events.push_back(Event::LegFailed {
                            call,
                            leg: l.leg,
                            reason: LegFailure::Unreachable,
                        });
                    }
                }
            }
            Action::CancelLegs { legs, .. } => {
                for r in legs {
                    for leg in self.flows.rlegs.remove(&r).unwrap_or_default() {
                        self.flows.legs.remove(&leg);
                        if self
                            .legs
                            .get(&leg)
                            .is_some_and(|l| l.state != LegState::Ended)
                        {
                            self.cancel_leg(leg, "cancelled by the hunt group").await;
                        }
                    }
                }
            }
            Action::Bridge { call, .. } => self.flow_bridge(call),
            Action::PlayPrompt {
                call,
                prompt,
                language,
            } => {
                if self.flow_answer(call).await {
                    let p = self.flows.prompt(&prompt, &language);
                    if let Some(f) = self.flows.calls.get_mut(&call) {
                        f.mode = Mode::Router;
                        // The flow's language carries on to voicemail and other
                        // prompts of this call.
                        f.language = language;
                        if let Some(m) = &f.media {
                            m.send(MediaCmd::Play {
                                prompts: vec![p],
                                looped: false,
                            });
                        }
                    }
                }
            }
            Action::CollectDigits { call, .. } => {
                self.flow_answer(call).await;
            }
            Action::StartTimer { call, timer, at } => self.flows.timers.push((at, call, timer)),
            Action::SendToVoicemail {
                call,
                mailbox,
                greeting,
            } => {
                let name = match mailbox {
                    MailboxRef::Personal(u) => u,
                    MailboxRef::Shared(s) => s,
                };
                self.flow_deposit(call, name, greeting).await;
            }
            Action::Forward { call, target } => self.flow_forward(call, target).await,
            Action::Queue { call, .. } => {
                // Queues come later: the caller hears the placeholder and is let go.
                if self.flow_answer(call).await {
                    self.flow_play(call, &["queue", "no_answer"], Mode::PromptThenBye);
                }
            }
            Action::Hangup { call } => self.flow_hangup(call).await,
            Action::RecordChoice {
                call,
                menu,
                digit,
                valid,
            } => {
                if let Some(f) = self.flows.calls.get(&call) {
                    let c = IvrChoice {
                        call: f.record,
                        menu,
                        digit: digit.to_string(),
                        valid,
                    };
                    if let Err(e) = self.db.get().add_ivr_choice(&c, unix_now()) {
                        warn!("cannot record an IVR choice: {e}");
                    }
                }
            }
        }
    }

    /// Rings every device of `ext` for `call`; returns how many legs were sent.
    async fn flow_ring(
        &mut self,
        call_id: CallId,
        ext: &str,
        rleg: Option<RLeg>,
        diversion: Option<(&str, &str)>,
    ) -> usize {
        // A caller without an offer (late offer) is answered by the engine first:
        // the legs we ring get our offer.
        let late = self
            .calls
            .get(&call_id)
            .and_then(|c| self.legs.get(&c.a))
            .is_some_and(|a| a.invite.body.is_empty());
        if late && !self.flow_answer(call_id).await {
            return 0;
        }
        let Some(f) = self.flows.calls.get(&call_id) else {
            return 0;
        };
        let (display, hidden, answer) = (f.display.clone(), f.hidden, f.answer.clone());
        let Some(call) = self.calls.get(&call_id) else {
            return 0;
        };
        let record = call.record;
        // Members are offered SRTP with the engine's own key for them (or plain RTP,
        // as their phone answers), never the caller's key: see `relay`.
        let offer = match answer {
            // The caller was answered by us: members get the format we agreed on.
            Some(a) => call.relay.sdp_for(Side::B, a.as_bytes()),
            None => self
                .legs
                .get(&call.a)
                .and_then(|a| call.relay.sdp_for(Side::B, &a.invite.body)),
        };
        let Some(offer) = offer else { return 0 };
        let caller_name = self
            .users
            .get(&display.number)
            .map(|u| u.name.clone())
            .unwrap_or_default();
        let shown_name = display.group_name.clone().unwrap_or(caller_name);
        // `ext` is a user, or `trunk:NAME:NUMBER` for a number outside.
        let outside = ext
            .strip_prefix("trunk:")
            .and_then(|r| r.split_once(':'))
            .and_then(|(t, n)| {
                Some((
                    self.trunks.iter().find(|x| x.name == t)?.clone(),
                    n.to_owned(),
                ))
            });
        let targets: Vec<(Uri, Target)> = match &outside {
            Some((t, number)) => {
                let Some(target) = self.trunk_target(t).await else {
                    return 0;
                };
                let mut uri = SipUri::new(vaxel_sip::msg::Host::from(target.peer.addr.ip()))
                    .with_port(target.peer.addr.port())
                    .with_user(number);
                if t.transport == "tcp" {
                    uri = uri.with_param("transport", Some("tcp"));
                }
                vec![(Uri::Sip(uri), target)]
            }
            None => self
                .bindings
                .get(ext)
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|b| {
                    Some((
                        Uri::parse(&b.contact.clone().into()).ok()?,
                        binding_target(b)?,
                    ))
                })
                .collect(),
        };
        // Outward the caller shows as a long number (theirs, else the trunk's).
        let (display, shown_name) = match &outside {
            Some((t, _)) => {
                let long = self
                    .users
                    .get(&display.number)
                    .and_then(|u| u.number.clone())
                    .or_else(|| {
                        display
                            .number
                            .starts_with('+')
                            .then(|| display.number.clone())
                    })
                    .unwrap_or_else(|| t.caller_id.clone());
                (vaxel_routing::caller_display(&long, None), String::new())
            }
            None => (display, shown_name),
        };
        let party = outside
            .as_ref()
            .map_or_else(|| ext.to_owned(), |(_, n)| n.clone());
        let now = unix_now();
        let mut sent = 0;
        for (uri, target) in targets {
            let leg = self.new_id();
            let tag = token();
            let cid = new_call_id(&mut rand::rng(), &self.realm);
            let mut invite = Request::new(Method::Invite, uri.clone());
            invite
                .headers
                .push_value(HeaderName::Via, &self.sip.via(target.peer.transport));
            invite.headers.push(HeaderName::MaxForwards, "69");
            let from_hdr = if hidden {
                // RFC 3323 §4.1.1.3: the anonymous From.
                format!("\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag={tag}")
            } else {
                let from_uri = format!("sip:{}@{}", escape_user(&display.number), self.realm);
                if shown_name.is_empty() {
                    format!("<{from_uri}>;tag={tag}")
                } else {
                    format!("\"{}\" <{from_uri}>;tag={tag}", shown_name.replace('"', ""))
                }
            };
            invite.headers.push(HeaderName::From, from_hdr);
            let to_hdr = match &outside {
                Some(_) => format!("<{uri}>"),
                None => format!("<sip:{ext}@{}>", self.realm),
            };
            invite.headers.push(HeaderName::To, to_hdr);
            if outside.is_some() && !hidden {
                invite.headers.push(
                    HeaderName::PAssertedIdentity,
                    format!("<sip:{}@{}>", display.number, self.realm),
                );
            }
            invite.headers.push(HeaderName::CallId, cid.clone());
            invite.headers.push(HeaderName::CSeq, "1 INVITE");
            invite.headers.push(
                HeaderName::Contact,
                format!("<{}>", self.sip.contact_uri("vaxel", target.peer.transport)),
            );
            invite.headers.push(HeaderName::Allow, ALLOW);
            if hidden {
                invite
                    .headers
                    .push(HeaderName::new("Privacy").expect("a header name"), "id");
            }
            if let Some((orig, reason)) = diversion {
                // RFC 5806 §4: who forwarded the call, and why.
                invite.headers.push(
                    HeaderName::new("Diversion").expect("a header name"),
                    format!("<sip:{orig}@{}>;reason={reason};counter=1", self.realm),
                );
            }
            invite.set_body(&sdp_type(), Bytes::from(offer.clone()));
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
                if let Some(c) = self.calls.get_mut(&call_id) {
                    c.forks.push(leg);
                }
                self.flows.legs.insert(leg, (call_id, rleg));
                if let Some(f) = self.flows.calls.get_mut(&call_id) {
                    f.rang = true;
                }
                if let Some(r) = rleg {
                    self.flows.rlegs.entry(r).or_default().push(leg);
                }
                sent += 1;
            }
        }
        sent
    }

    fn flow_bridge(&mut self, call_id: CallId) {
        if let Some(f) = self.flows.calls.get_mut(&call_id) {
            f.media = None;
            f.mode = Mode::Direct;
        }
        if let Some(c) = self.calls.get(&call_id) {
            c.relay.tap(None);
        }
    }

    /// Ends a flow call: BYE to a caller we answered, a final response otherwise.
    async fn flow_hangup(&mut self, call_id: CallId) {
        let forks = self
            .calls
            .get(&call_id)
            .map(|c| c.forks.clone())
            .unwrap_or_default();
        for f in forks {
            if self
                .legs
                .get(&f)
                .is_some_and(|l| l.state != LegState::Ended)
            {
                self.cancel_leg(f, "call ended").await;
            }
        }
        let Some(call) = self.calls.get(&call_id) else {
            return;
        };
        let a = call.a;
        let answered_by_us = self
            .flows
            .calls
            .get(&call_id)
            .is_some_and(|f| f.media.is_some() || f.answer.is_some());
        if answered_by_us {
            self.hang_up_leg(a).await;
            self.end_call(call_id, "answered");
        } else {
            self.fail_call(call_id, 480).await;
        }
    }

    /// Why a call is forwarded (RFC 5806 §4 reasons): before any phone rang it was
    /// unconditional (or the time of day); after, busy or no answer.
    fn flow_forward_reason(&self, call_id: CallId, orig: &str) -> &'static str {
        let f = self.flows.calls.get(&call_id);
        let fwd = self.flows.forwarding.get(orig);
        match f {
            Some(f) if f.rang && f.busy => "user-busy",
            Some(f) if f.rang => "no-answer",
            _ if fwd.is_some_and(|x| x.unconditional.is_none() && x.timed.is_some()) => {
                "time-of-day"
            }
            _ if fwd.is_some_and(|x| x.unconditional.is_none() && x.busy.is_some()) => "user-busy",
            _ => "unconditional",
        }
    }

    async fn flow_forward(&mut self, call_id: CallId, target: FlowTarget) {
        let Some(orig) = self.calls.get(&call_id).map(|c| c.callee.clone()) else {
            return;
        };
        match target {
            FlowTarget::Internal(user) => {
                let reason = self.flow_forward_reason(call_id, &orig);
                let caller = self
                    .flows
                    .calls
                    .get(&call_id)
                    .map(|f| f.caller.clone())
                    .unwrap_or_default();
                if let Some(f) = self.flows.calls.get_mut(&call_id) {
                    f.mode = Mode::Direct;
                    f.display = vaxel_routing::caller_display(&caller, None);
                }
                let ext = self.user_for(&user).unwrap_or(user);
                debug!("call {call_id}: {orig} forwarded to {ext} ({reason})");
                if self
                    .flow_ring(call_id, &ext, None, Some((&orig, reason)))
                    .await
                    == 0
                {
                    self.flow_hangup(call_id).await;
                }
            }
            FlowTarget::External(n) => {
                // Out through the trunk whose prefix matches, marked with the long
                // number of whoever forwarded.
                let trunk = self.flow_trunk_for(&n);
                let Some(trunk) = trunk else {
                    debug!("call {call_id}: no trunk route to {n}");
                    if self.flow_answer(call_id).await {
                        self.flow_play(call_id, &["not_active"], Mode::PromptThenBye);
                    }
                    return;
                };
                let reason = self.flow_forward_reason(call_id, &orig);
                let orig_long = self
                    .users
                    .get(&orig)
                    .and_then(|u| u.number.clone())
                    .unwrap_or(orig);
                if let Some(f) = self.flows.calls.get_mut(&call_id) {
                    f.mode = Mode::Direct;
                    f.display = vaxel_routing::caller_display(&f.caller.clone(), None);
                }
                debug!("call {call_id}: forwarded out to {n} through {trunk}");
                if self
                    .flow_ring(
                        call_id,
                        &format!("trunk:{trunk}:{n}"),
                        None,
                        Some((&orig_long, reason)),
                    )
                    .await
                    == 0
                {
                    self.flow_hangup(call_id).await;
                }
            }
        }
    }

    /// Voicemail: greeting (closed, or the box's own upload, or the standard one),
    /// "speak after the tone", the tone, then recording.
    async fn flow_deposit(&mut self, call_id: CallId, mailbox: String, greeting: Greeting) {
        if !self.flow_answer(call_id).await {
            return;
        }
        let Some(f) = self.flows.calls.get(&call_id) else {
            return;
        };
        let deposit = Deposit {
            mailbox: mailbox.clone(),
            caller: f.caller.clone(),
            record: f.record,
        };
        let dir = self.flows.voicemail_dir().join(&mailbox);
        let own = dir.join(match greeting {
            Greeting::Closed => "greeting-closed.wav",
            _ => "greeting.wav",
        });
        let load = |path: &std::path::Path| {
            std::fs::File::open(path)
                .ok()
                .and_then(|file| Prompt::from_wav(std::io::BufReader::new(file), 8000).ok())
                .map(Arc::new)
        };
        let lang = f.language.clone();
        // R-312 presence-aware greeting: while the owner's `*24*` profile runs, the
        // owner's own greeting for that profile, else the office's prompt for it,
        // else the standard greeting.
        let profile = match greeting {
            Greeting::Closed => None,
            _ => self.presence_profile(&mailbox).map(|(p, _)| p),
        };
        let presence = match profile {
            Some(p) => match load(&dir.join(format!("greeting-profile-{p}.wav"))) {
                Some(own) => Some(own),
                None => match self.flows.routing.profile_greeting(p) {
                    Some(name) => Some(self.flows.prompt(&name, &lang)),
                    None => None,
                },
            },
            None => None,
        };
        let mut prompts: Vec<Arc<Prompt>> = Vec::new();
        match (presence, load(&own)) {
            (Some(p), _) => prompts.push(p),
            (None, Some(p)) => prompts.push(p),
            (None, None) => prompts.push(self.flows.prompt(
                match greeting {
                    Greeting::Closed => "vm_closed",
                    _ => "vm_greeting",
                },
                &lang,
            )),
        }
        prompts.push(self.flows.prompt("vm_after_tone", &lang));
        prompts.push(beep());
        if let Some(f) = self.flows.calls.get_mut(&call_id) {
            f.mode = Mode::Greeting(deposit);
            if let Some(m) = &f.media {
                m.send(MediaCmd::Play {
                    prompts,
                    looped: false,
                });
            }
        }
    }

    /// A note from a media session.
    pub(super) async fn flow_note(&mut self, call_id: CallId, note: MediaNote) {
        if let MediaNote::Recorded { path, secs } = note {
            return self.flow_recorded(call_id, path, secs).await;
        }
        if let MediaNote::CalleeKey(k) = note {
            return self.keyed_rtp(call_id, k).await;
        }
        let Some(f) = self.flows.calls.get_mut(&call_id) else {
            return;
        };
        match (&mut f.mode, note) {
            (Mode::Router, MediaNote::PromptFinished) => {
                self.flow_route(call_id, Event::PromptFinished { call: call_id })
                    .await
            }
            (Mode::Router, MediaNote::Digit(d)) => {
                self.flow_route(
                    call_id,
                    Event::DigitsReceived {
                        call: call_id,
                        digits: d.to_string(),
                    },
                )
                .await
            }
            (Mode::Greeting(_), MediaNote::PromptFinished) => {
                let Mode::Greeting(d) = std::mem::replace(&mut f.mode, Mode::Recording) else {
                    return;
                };
                let max = self.flows.routing.mailbox(&d.mailbox).max_secs;
                let dir = self.flows.data.join("voicemail").join(&d.mailbox);
                if let Err(e) = std::fs::create_dir_all(&dir) {
                    warn!("cannot create {}: {e}", dir.display());
                }
                let path = dir.join(format!("{}-{}.wav", unix_now(), d.record));
                if let Some(m) = &f.media {
                    m.send(MediaCmd::Record {
                        path,
                        max: Duration::from_secs(u64::from(max)),
                    });
                }
                self.flows.deposits.insert(call_id, d);
            }
            (Mode::Recording, MediaNote::Digit('#')) => {
                if let Some(m) = &f.media {
                    m.send(MediaCmd::StopRecording);
                }
            }
            (Mode::PromptThenBye, MediaNote::PromptFinished) => self.flow_hangup(call_id).await,
            (Mode::Echo, MediaNote::PromptFinished) => {
                if let Some(m) = &f.media {
                    m.send(MediaCmd::Echo);
                }
            }
            (Mode::AccessPin { mailbox, digits }, MediaNote::Digit(d)) => {
                if d != '#' {
                    digits.push(d);
                    return;
                }
                // The PIN picks the box: the caller's own, or a shared box the caller
                // is a member of.
                let (me, entered) = (mailbox.clone(), std::mem::take(digits));
                let r = &self.flows.routing;
                let found = std::iter::once(r.mailbox(&me))
                    .chain(
                        r.mailboxes
                            .iter()
                            .filter(|m| m.members.contains(&me))
                            .cloned(),
                    )
                    .find(|m| m.pin_matches(&entered));
                let Some(mailbox) = found.map(|m| m.name) else {
                    debug!("voicemail of {me}: wrong PIN");
                    self.flow_play(call_id, &["vm_wrong_pin"], Mode::PromptThenBye);
                    return;
                };
                let messages = self.db.get().messages(&mailbox).unwrap_or_default();
                self.flow_access_play(call_id, mailbox, messages, 0);
            }
            (Mode::AccessPlay { .. }, MediaNote::Digit(d)) => {
                let lang = f.language.clone();
                let Mode::AccessPlay {
                    mailbox,
                    mut messages,
                    mut index,
                } = std::mem::replace(&mut f.mode, Mode::Router)
                else {
                    return;
                };
                match d {
                    '2' => index += 1,
                    '3' if index < messages.len() => {
                        let m = messages.remove(index);
                        self.flow_delete_message(&m);
                        // "Deleted", then the message now at `index` (the next one);
                        // the index is kept as MAX - index while "deleted" plays.
                        let p = self.flows.prompt("vm_deleted", &lang);
                        if let Some(f) = self.flows.calls.get_mut(&call_id)
                            && let Some(media) = &f.media
                        {
                            media.send(MediaCmd::Play {
                                prompts: vec![p],
                                looped: false,
                            });
                            f.mode = Mode::AccessPlay {
                                mailbox,
                                messages,
                                index: usize::MAX - index,
                            };
                        }
                        return;
                    }
                    // 1 (or anything else): hear it again.
                    _ => {}
                }
                self.flow_access_play(call_id, mailbox, messages, index);
            }
            (Mode::AccessPlay { .. }, MediaNote::PromptFinished) => {
                // After "deleted" (index stored as MAX - next), play the next message.
                if let Mode::AccessPlay {
                    mailbox,
                    messages,
                    index,
                } = &f.mode
                    && *index > usize::MAX / 2
                {
                    let (mailbox, messages, next) =
                        (mailbox.clone(), messages.clone(), usize::MAX - *index);
                    self.flow_access_play(call_id, mailbox, messages, next);
                }
            }
            _ => {}
        }
    }

    /// Plays message `index` of the box followed by the menu, or "no more messages".
    fn flow_access_play(
        &mut self,
        call_id: CallId,
        mailbox: String,
        messages: Vec<VmMessage>,
        index: usize,
    ) {
        let Some(m) = messages.get(index).cloned() else {
            self.flow_play(call_id, &["vm_no_messages"], Mode::PromptThenBye);
            return;
        };
        let path = self.flows.voicemail_dir().join(&m.mailbox).join(&m.file);
        let msg = std::fs::File::open(&path)
            .ok()
            .and_then(|f| Prompt::from_wav(std::io::BufReader::new(f), 8000).ok())
            .unwrap_or_else(|| Prompt::from_samples(vec![0; 800], 8000));
        let _ = self.db.get().mark_heard(m.id);
        let lang = self
            .flows
            .calls
            .get(&call_id)
            .map(|f| f.language.clone())
            .unwrap_or_default();
        let menu = self.flows.prompt("vm_menu", &lang);
        if let Some(f) = self.flows.calls.get_mut(&call_id) {
            if let Some(media) = &f.media {
                media.send(MediaCmd::Play {
                    prompts: vec![Arc::new(msg), menu],
                    looped: false,
                });
            }
            f.mode = Mode::AccessPlay {
                mailbox,
                messages,
                index,
            };
        }
    }

    fn flow_delete_message(&mut self, m: &VmMessage) {
        let path = self.flows.voicemail_dir().join(&m.mailbox).join(&m.file);
        let _ = std::fs::remove_file(path);
        let _ = self.db.get().delete_message(m.id);
    }

    /// A recording ended: index it, e-mail it, thank the caller (if still there).
    async fn flow_recorded(&mut self, call_id: CallId, path: PathBuf, secs: f64) {
        let Some(d) = self.flows.deposits.remove(&call_id) else {
            return;
        };
        if secs < 0.5 {
            let _ = std::fs::remove_file(&path);
            debug!("voicemail {}: empty message dropped", d.mailbox);
        } else {
            let file = path
                .file_name()
                .map(|f| f.to_string_lossy().to_string())
                .unwrap_or_default();
            match self.db.get().add_message(
                &d.mailbox,
                &d.caller,
                Some(d.record),
                &file,
                secs,
                unix_now(),
            ) {
                Ok(id) => {
                    info!("voicemail message {id} stored ({secs:.1} s)");
                    debug!("voicemail {}: message {id} from {}", d.mailbox, d.caller);
                }
                Err(e) => warn!("cannot index a voicemail message: {e}"),
            }
            self.flow_mail(&d, &path, secs);
        }
        if self.flows.calls.contains_key(&call_id) {
            self.flow_play(call_id, &["vm_saved", "goodbye"], Mode::PromptThenBye);
        }
    }

    /// E-mails a new message with the WAV attached, in the background.
    fn flow_mail(&mut self, d: &Deposit, path: &std::path::Path, secs: f64) {
        let Some(smtp) = self.flows.routing.smtp.clone() else {
            return;
        };
        let mut to = self.flows.routing.mailbox(&d.mailbox).email;
        if to.is_empty()
            && let Some(u) = self.users.get(&d.mailbox)
            && !u.email.is_empty()
        {
            to.push(u.email.clone());
        }
        if to.is_empty() {
            return;
        }
        let (mailbox, caller, path) = (d.mailbox.clone(), d.caller.clone(), path.to_owned());
        tokio::spawn(async move {
            match crate::mail::send_voicemail(&smtp, &to, &mailbox, &caller, secs, &path).await {
                Ok(()) => debug!("voicemail {mailbox}: e-mailed to {}", to.join(", ")),
                Err(e) => warn!("voicemail e-mail failed: {e}"),
            }
        });
    }

    /// Feature codes: each answered with a spoken confirmation or
    /// "service not active".
    async fn flow_feature(&mut self, call_id: CallId, user: &str, code: &str) {
        let tz = jiff::tz::TimeZone::get(&self.flows.routing.time_zone)
            .unwrap_or(jiff::tz::TimeZone::UTC);
        let now = self.flows.now();
        let parsed = feature::parse(code, Context::Dialing, now, &tz);
        let mut fwd = self.flows.forwarding.get(user).cloned().unwrap_or_default();
        let target = |n: &str| -> FlowTarget {
            match self.user_for(n) {
                Some(ext) => FlowTarget::Internal(ext),
                None => FlowTarget::External(n.to_owned()),
            }
        };
        let may_call_out = self.users.get(user).is_some_and(|u| u.external_calls);
        let confirm: &str = match parsed {
            Ok((FeatureCode::SetForward { number, .. }, _))
            | Ok((FeatureCode::SetNoAnswerForward { number, .. }, _))
                if matches!(target(&number), FlowTarget::External(_)) && !may_call_out =>
            {
                debug!("{user} may not forward outside");
                "not_active"
            }
            Ok((FeatureCode::SetNoAnswerForward { number, after_secs }, _)) => {
                fwd.no_answer = Some(NoAnswerForward {
                    target: target(&number),
                    after_secs,
                });
                self.flow_set_forwarding(user, fwd);
                "activated"
            }
            Ok((FeatureCode::SetForward { kind, number }, _)) => {
                let t = target(&number);
                match kind {
                    ForwardKind::Unconditional => fwd.unconditional = Some(t),
                    ForwardKind::Busy => fwd.busy = Some(t),
                    ForwardKind::NoAnswer => {
                        // `*61*n#` keeps the time set before (`*61*n*T#` or the
                        // API); 20 s when there was none.
                        let after_secs = fwd.no_answer.as_ref().map_or(20, |n| n.after_secs);
                        fwd.no_answer = Some(NoAnswerForward {
                            target: t,
                            after_secs,
                        })
                    }
                }
                self.flow_set_forwarding(user, fwd);
                "activated"
            }
            Ok((FeatureCode::CancelForward { kind }, _)) => {
                let was = match kind {
                    ForwardKind::Unconditional => fwd.unconditional.take().is_some(),
                    ForwardKind::Busy => fwd.busy.take().is_some(),
                    ForwardKind::NoAnswer => fwd.no_answer.take().is_some(),
                };
                self.flow_set_forwarding(user, fwd);
                if was { "deactivated" } else { "not_active" }
            }
            Ok((FeatureCode::ActivateProfile { profile, until }, _)) => {
                // The minimal presence flag: out of group calls until the profile's
                // time (none given: until #24#).
                let until = match until {
                    feature::ProfileEnd::At(t) => Some(t),
                    _ => None,
                };
                self.flows.excluded.insert(user.to_owned(), until);
                self.flows.profiles.insert(user.to_owned(), profile);
                self.flow_member(user);
                "activated"
            }
            Ok((FeatureCode::DeactivateProfile, _)) => {
                let was = self.flows.excluded.remove(user).is_some();
                self.flows.profiles.remove(user);
                self.flow_member(user);
                if was { "deactivated" } else { "not_active" }
            }
            Ok((FeatureCode::Voicemail { number }, _)) => {
                // *59*n: straight to n's voicemail.
                match self.user_for(&number) {
                    Some(ext) => {
                        return self.flow_deposit(call_id, ext, Greeting::Standard).await;
                    }
                    None => "not_active",
                }
            }
            Ok((FeatureCode::Bypass { number }, _))
            | Ok((FeatureCode::HiddenNumber { number }, _)) => {
                let hidden = code.starts_with("*31*");
                let ext = match self.user_for(&number) {
                    Some(ext) => ext,
                    // *31* to a number outside: through the trunk whose prefix
                    // matches, for a user who may call out (*60* is for colleagues).
                    None => match self.flow_trunk_for(&number) {
                        Some(trunk) if hidden && may_call_out => format!("trunk:{trunk}:{number}"),
                        _ => {
                            debug!("{code:?} from {user}: no colleague, or may not call out");
                            if self.flow_answer(call_id).await {
                                self.flow_play(call_id, &["not_active"], Mode::PromptThenBye);
                            }
                            return;
                        }
                    },
                };
                if let Some(f) = self.flows.calls.get_mut(&call_id) {
                    f.mode = Mode::Direct;
                    f.hidden = hidden;
                }
                if self.flow_ring(call_id, &ext, None, None).await == 0 {
                    self.fail_call(call_id, 480).await;
                }
                return;
            }
            Ok((FeatureCode::Pickup { number }, _)) => {
                if self.flow_pickup(call_id, &number).await {
                    return;
                }
                "not_active"
            }
            Ok(_) | Err(FeatureError::ServiceNotActive) => "not_active",
            Err(e) => {
                debug!("feature code {code:?} from {user}: {e}");
                "not_active"
            }
        };
        if self.flow_answer(call_id).await {
            self.flow_play(call_id, &[confirm], Mode::PromptThenBye);
        }
    }

    /// The trunk whose outbound prefix `number` starts with.
    fn flow_trunk_for(&self, number: &str) -> Option<String> {
        self.trunks
            .iter()
            .find(|t| {
                t.outbound_prefixes
                    .iter()
                    .any(|p| !p.is_empty() && number.starts_with(p.as_str()))
            })
            .map(|t| t.name.clone())
    }

    /// The presence profile `user` activated with `*24*` and until when (`None`:
    /// until `#24#`), while it runs — for the presence module and the greeting.
    pub(in crate::engine) fn presence_profile(
        &self,
        user: &str,
    ) -> Option<(u32, Option<Timestamp>)> {
        let until = *self.flows.excluded.get(user)?;
        Some((self.flows.profiles.get(user).copied().unwrap_or(0), until))
    }

    fn flow_set_forwarding(&mut self, user: &str, f: Forwarding) {
        if let Err(e) = self.db.get().set_forwarding(user, &f) {
            warn!("cannot store forwarding of {user}: {e}");
        }
        if is_empty_forwarding(&f) {
            self.flows.forwarding.remove(user);
        } else {
            self.flows.forwarding.insert(user.to_owned(), f);
        }
        let routing = self.flows.routing.clone();
        self.flows.reconfigure(&self.users, routing);
    }

    /// `*80*n` (directed pickup; with a hunt group's id, group pickup by one of its
    /// members): the picker takes a call ringing at `n`. The call's
    /// ringing legs are cancelled (a flow call's hunt stops), the picker's own INVITE
    /// is answered with media anchored on that call's relay (its B side), and the
    /// caller, if not answered yet, is answered with the picker's media. The
    /// picker's call then ends as "picked up" and its leg continues in the picked call.
    /// False when nothing rings at `n`.
    async fn flow_pickup(&mut self, picker_call: CallId, number: &str) -> bool {
        // A user's number, or a hunt group's id (group pickup: any member's ringing
        // call, for members of that group).
        let wanted: Vec<String> = match self.user_for(number) {
            Some(ext) => vec![ext],
            None => {
                let picker = self
                    .calls
                    .get(&picker_call)
                    .map(|c| c.caller.clone())
                    .unwrap_or_default();
                match self
                    .flows
                    .routing
                    .groups
                    .values()
                    .find(|g| g.id.to_string() == number)
                {
                    Some(g) if g.members.iter().any(|m| m.user == picker) => {
                        g.members.iter().map(|m| m.user.clone()).collect()
                    }
                    _ => {
                        debug!("pickup of {number}: no such user, or not a group of {picker}");
                        return false;
                    }
                }
            }
        };
        let ringing = |l: &Leg| {
            wanted.contains(&l.party) && matches!(l.state, LegState::Calling | LegState::Early)
        };
        let ext = wanted.join(",");
        let Some(victim) = self
            .calls
            .iter()
            .filter(|(id, c)| **id != picker_call && c.answered.is_none() && c.transfer.is_none())
            .find(|(_, c)| {
                c.forks
                    .iter()
                    .any(|f| self.legs.get(f).is_some_and(ringing))
            })
            .map(|(id, _)| *id)
        else {
            debug!("pickup of {number}: nothing rings for {wanted:?}");
            return false;
        };
        let Some(p) = self.calls.get(&picker_call) else {
            return false;
        };
        let picker_leg = p.a;
        let Some(pl) = self.legs.get(&picker_leg) else {
            return false;
        };
        let (Some(p_tx), p_offer, picker) =
            (pl.invite_tx, pl.invite.body.clone(), pl.party.clone())
        else {
            return false;
        };
        // The hunt (if any) stops; every ringing leg of the picked call is cancelled.
        if self.flows.calls.contains_key(&victim) {
            let now = self.flows.now();
            self.flows
                .router
                .handle(now, Event::CallerHungUp { call: victim });
            self.flows.timers.retain(|(_, c, _)| *c != victim);
            self.flows.legs.retain(|_, (c, _)| *c != victim);
            self.flow_bridge(victim);
        }
        let forks = self
            .calls
            .get(&victim)
            .map(|c| c.forks.clone())
            .unwrap_or_default();
        for f in forks {
            if self
                .legs
                .get(&f)
                .is_some_and(|l| l.state != LegState::Ended)
            {
                self.cancel_leg(f, "picked up").await;
            }
        }
        let answered_by_us = self.flows.calls.get(&victim).and_then(|f| f.answer.clone());
        let Some(v) = self.calls.get_mut(&victim) else {
            return false;
        };
        v.forks.clear();
        v.answered = Some(picker_leg);
        let (v_a, v_record) = (v.a, v.record);
        // The picker's media goes to the picked call's B side.
        // (With SRTP terminated per leg, each gets the engine's key: see `relay`.)
        let Some(p_to_a) = v.relay.pass(Side::B, &p_offer) else {
            return false;
        };
        let caller_sdp = match &answered_by_us {
            Some(a) => Some(Bytes::from(a.clone())),
            None => self.legs.get(&v_a).map(|a| a.invite.body.clone()),
        };
        let Some(v) = self.calls.get(&victim) else {
            return false;
        };
        let Some(to_picker) = caller_sdp.and_then(|b| v.relay.sdp_for(Side::B, &b)) else {
            return false;
        };
        // Answer the picker.
        let Some(pl) = self.legs.get_mut(&picker_leg) else {
            return false;
        };
        let mut ok = Response::from_request(&pl.invite, StatusCode::OK);
        let _ = ok.set_to_tag(&pl.local_tag);
        ok.headers.push(
            HeaderName::Contact,
            format!(
                "<{}>",
                self.sip.contact_uri("vaxel", pl.target.peer.transport)
            ),
        );
        ok.headers.push(HeaderName::Allow, ALLOW);
        set_response_body(&mut ok, &sdp_type(), Bytes::from(to_picker));
        pl.dialog = Dialog::from_uas(&pl.invite, &ok).ok();
        pl.state = LegState::Confirmed;
        pl.invite_tx = None;
        pl.call = victim;
        pl.side = Side::B;
        self.respond(p_tx, ok).await;
        // Answer the caller if the engine had not.
        if answered_by_us.is_none()
            && let Some(a) = self.legs.get_mut(&v_a)
            && let Some(a_tx) = a.invite_tx
        {
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
            set_response_body(&mut ok, &sdp_type(), Bytes::from(p_to_a));
            a.dialog = Dialog::from_uas(&a.invite, &ok).ok();
            a.state = LegState::Confirmed;
            a.invite_tx = None;
            self.respond(a_tx, ok).await;
        }
        // The picker's own call is over; its leg lives on in the picked call.
        if let Some(p) = self.calls.remove(&picker_call) {
            let _ = self.db.get().end_call(p.record, "picked up", unix_now());
        }
        self.flows.calls.remove(&picker_call);
        let _ = self.db.get().answer_call(v_record, &picker, unix_now());
        self.flow_member(&picker);
        debug!("{picker} picked up the call ringing at {ext}");
        if let Some(c) = self.calls.get(&victim) {
            self.emit(EngineEvent::Call {
                call: v_record,
                caller: c.caller.clone(),
                callee: c.callee.clone(),
                state: "answered".into(),
            });
        }
        true
    }

    /// One-second tick: fires due router timers and ends presence profiles whose
    /// time is up.
    pub(super) async fn flow_tick(&mut self) {
        self.keyed_tick().await;
        let now = self.flows.now();
        let ended: Vec<String> = self
            .flows
            .excluded
            .iter()
            .filter(|(_, until)| until.is_some_and(|t| t <= now))
            .map(|(u, _)| u.clone())
            .collect();
        for u in ended {
            debug!("presence profile of {u} ended at its time");
            self.flows.excluded.remove(&u);
            self.flows.profiles.remove(&u);
            self.flow_member(&u);
        }
        let due: Vec<(CallId, u64)> = self
            .flows
            .timers
            .iter()
            .filter(|(at, _, _)| *at <= now)
            .map(|(_, c, t)| (*c, *t))
            .collect();
        self.flows.timers.retain(|(at, _, _)| *at > now);
        for (call, timer) in due {
            self.flow_route(call, Event::TimerFired { call, timer })
                .await;
        }
    }

    /// Hook from `b_answered` before the answer is taken: false when this leg was
    /// already given up by the flow (its 2xx crossed our CANCEL).
    pub(super) fn flow_may_answer(&self, call_id: CallId, leg_id: LegId) -> bool {
        if !self.flows.calls.contains_key(&call_id) {
            return true;
        }
        self.flows.legs.contains_key(&leg_id)
    }

    /// Hook from `b_answered` once a leg won: tells the router, bridges. Returns true
    /// when the caller was already answered by the engine (nothing more to send).
    pub(super) async fn flow_answered(&mut self, call_id: CallId, leg_id: LegId) -> bool {
        let Some(f) = self.flows.calls.get(&call_id) else {
            return false;
        };
        let by_us = f.answer.is_some();
        let record = f.record;
        if let Some((_, Some(r))) = self.flows.legs.get(&leg_id).copied() {
            for l in self.flows.rlegs.remove(&r).unwrap_or_default() {
                self.flows.legs.remove(&l);
            }
            self.flow_route(
                call_id,
                Event::LegAnswered {
                    call: call_id,
                    leg: r,
                },
            )
            .await;
        }
        self.flows.legs.remove(&leg_id);
        self.flow_bridge(call_id);
        if let Some(user) = self.legs.get(&leg_id).map(|l| l.party.clone()) {
            self.flow_member(&user);
        }
        if by_us && let Some(c) = self.calls.get(&call_id) {
            self.emit(EngineEvent::Call {
                call: record,
                caller: c.caller.clone(),
                callee: c.callee.clone(),
                state: "answered".into(),
            });
        }
        by_us
    }

    /// Hook from `b_failed`: a flow call's leg failed. Returns whether it was one.
    pub(super) async fn flow_leg_failed(
        &mut self,
        call_id: CallId,
        leg_id: LegId,
        code: u16,
    ) -> bool {
        if !self.flows.calls.contains_key(&call_id) {
            return false;
        }
        if let Some(c) = self.calls.get_mut(&call_id) {
            c.forks.retain(|l| *l != leg_id);
        }
        let Some((_, rleg)) = self.flows.legs.remove(&leg_id) else {
            return true; // cancelled by the flow already
        };
        if let Some(f) = self.flows.calls.get_mut(&call_id) {
            f.busy = matches!(code, 486 | 600);
        }
        let reason = match code {
            486 | 600 => LegFailure::Busy,
            404 | 480 | 503 => LegFailure::Unreachable,
            _ => LegFailure::NoAnswer,
        };
        match rleg {
            Some(r) => {
                let left = self.flows.rlegs.get_mut(&r).map(|v| {
                    v.retain(|l| *l != leg_id);
                    v.len()
                });
                if left == Some(0) {
                    self.flows.rlegs.remove(&r);
                    self.flow_route(
                        call_id,
                        Event::LegFailed {
                            call: call_id,
                            leg: r,
                            reason,
                        },
                    )
                    .await;
                }
            }
            None => {
                // A forward or bypass leg: when the last device gave up, so does the call.
                let ringing = self
                    .calls
                    .get(&call_id)
                    .is_some_and(|c| !c.forks.is_empty());
                if !ringing {
                    self.flow_hangup(call_id).await;
                }
            }
        }
        true
    }

    /// Hook from the caller's BYE (before the call ends): stops ringing members.
    pub(super) async fn flow_caller_gone(&mut self, call_id: CallId) {
        if !self.flows.calls.contains_key(&call_id) {
            return;
        }
        let forks = self
            .calls
            .get(&call_id)
            .map(|c| c.forks.clone())
            .unwrap_or_default();
        for f in forks {
            if self
                .legs
                .get(&f)
                .is_some_and(|l| l.state != LegState::Ended && l.state != LegState::Confirmed)
            {
                self.cancel_leg(f, "caller hung up").await;
            }
        }
    }

    /// Hook from `end_call`: forgets the flow state (a recording in progress is
    /// finished by its media session and still saved).
    pub(super) fn flow_ended(&mut self, call_id: CallId) {
        if self.flows.calls.remove(&call_id).is_some() {
            let now = self.flows.now();
            self.flows
                .router
                .handle(now, Event::CallerHungUp { call: call_id });
            self.flows.timers.retain(|(_, c, _)| *c != call_id);
            self.flows.legs.retain(|_, (c, _)| *c != call_id);
        }
    }

    /// Hook from the engine whenever these parties' calls changed (a call answered
    /// or ended, direct or through a flow): the router learns which users are on a
    /// call, so a hunt group skips them (R-305 skip busy) and the longest-idle
    /// strategy counts from the end of their last call, whatever kind it was.
    pub(super) fn flow_members(&mut self, parties: &[String]) {
        for p in parties {
            if self.users.contains_key(p) {
                self.flow_member(p);
            }
        }
    }

    /// Tells the router one user's state: busy while any device of theirs is
    /// on an answered call, idle since that call ended, excluded while a presence
    /// profile (`*24*`) says so.
    fn flow_member(&mut self, user: &str) {
        let busy = self.legs.values().any(|l| {
            l.party == user && l.state == LegState::Confirmed && self.calls.contains_key(&l.call)
        });
        let now = self.flows.now();
        if busy {
            self.flows.on_call.insert(user.to_owned());
        } else if self.flows.on_call.remove(user) {
            self.flows.idle_since.insert(user.to_owned(), now);
        }
        let state = MemberState {
            busy,
            excluded: self.flows.excluded.contains_key(user),
            idle_since: self.flows.idle_since.get(user).copied(),
        };
        self.flows.router.handle(
            now,
            Event::MemberStateChanged {
                user: user.to_owned(),
                state,
            },
        );
    }

    /// Hook from an in-dialog INVITE (hold, resume, new address) from a caller the
    /// engine answered itself and has not bridged (prompts, menu, music while a group
    /// rings, voicemail): 200 with the media server's SDP, the direction mirrored as
    /// RFC 3264 §8.4 says (sendonly → recvonly, recvonly → sendonly, inactive →
    /// inactive, else sendrecv) and `o=` one version up (§8); the media server stops
    /// sending while the caller holds. Returns whether it was taken.
    pub(super) async fn flow_reinvite(
        &mut self,
        tx: TxKey,
        req: &Request,
        call_id: CallId,
    ) -> bool {
        if req.method != Method::Invite {
            return false;
        }
        let Some(last) = self
            .flows
            .calls
            .get(&call_id)
            .and_then(|f| f.answer.clone())
        else {
            return false;
        };
        let Some(call) = self.calls.get(&call_id) else {
            return false;
        };
        if call.answered.is_some() || self.leg_of_request(req) != Some(call.a) {
            return false;
        }
        let a_id = call.a;
        let Ok(mut sd) = vaxel_media::sdp::parse(last.as_bytes()) else {
            return false;
        };
        let is_dir = |a: &vaxel_media::sdp::Attribute| {
            ["sendonly", "recvonly", "inactive", "sendrecv"]
                .iter()
                .any(|d| a.name.eq_ignore_ascii_case(d))
        };
        let mut remote = None;
        let (ours, send) = if req.body.is_empty() {
            // No offer (RFC 3261 §14.2): ours goes in the 200, as it stands.
            ("sendrecv", true)
        } else {
            let offer = match vaxel_media::sdp::parse(&req.body) {
                Ok(o) => o,
                Err(e) => {
                    debug!("re-INVITE with an SDP we cannot read (the caller's): {e}");
                    self.reply(tx, req, 488).await;
                    return true;
                }
            };
            let theirs = offer
                .media
                .first()
                .and_then(|m| m.attributes.iter().find(|a| is_dir(a)))
                .or_else(|| offer.attributes.iter().find(|a| is_dir(a)))
                .map(|a| a.name.to_ascii_lowercase())
                .unwrap_or_else(|| "sendrecv".into());
            remote = rewrite_sdp(&req.body, call.relay.local(Side::A)).and_then(|(_, r)| r);
            match theirs.as_str() {
                "sendonly" => ("recvonly", false),
                "recvonly" => ("sendonly", true),
                "inactive" => ("inactive", false),
                _ => ("sendrecv", true),
            }
        };
        sd.origin.session_version += 1;
        sd.attributes.retain(|a| !is_dir(a));
        for m in &mut sd.media {
            m.attributes.retain(|a| !is_dir(a));
            if m.port != 0 {
                m.attributes.push(vaxel_media::sdp::Attribute::flag(ours));
            }
        }
        let mut answer = sd.to_string();
        if remote.is_some() {
            call.relay.set_remote(Side::A, remote);
        }
        if !req.body.is_empty() && call.relay.heard(Side::A, &req.body).is_some() {
            // The re-offer may change the caller's SRTP key, tag or suite (RFC 4568
            // §7.1.4): the answer echoes them with the engine's key for the caller.
            if let Some(a) = call.relay.answer_for(Side::A, answer.as_bytes()) {
                answer = a;
            }
        }
        let transport = match self.legs.get_mut(&a_id) {
            Some(a) => {
                if !req.body.is_empty() {
                    a.sdp = Some(req.body.clone());
                }
                a.target.peer.transport
            }
            None => return false,
        };
        if let Some(f) = self.flows.calls.get_mut(&call_id) {
            if let Some(m) = &f.media {
                m.send(MediaCmd::Direction { send, remote });
            }
            f.answer = Some(answer.clone());
        }
        let mut ok = Response::from_request(req, StatusCode::OK);
        ok.headers.push(
            HeaderName::Contact,
            format!("<{}>", self.sip.contact_uri("vaxel", transport)),
        );
        ok.headers.push(HeaderName::Allow, ALLOW);
        set_response_body(&mut ok, &sdp_type(), Bytes::from(answer));
        self.respond(tx, ok).await;
        debug!("call {call_id}: caller re-offered, answered {ours}");
        true
    }

    /// Hook from in-dialog INFO on a caller the engine answered: DTMF by SIP INFO.
    /// Returns whether it was taken.
    pub(super) async fn flow_info(&mut self, tx: TxKey, req: &Request, call_id: CallId) -> bool {
        if self.keyed_info(tx, req, call_id).await {
            return true;
        }
        if self
            .flows
            .calls
            .get(&call_id)
            .is_none_or(|f| f.media.is_none())
        {
            return false;
        }
        let ct = req
            .headers
            .content_type()
            .ok()
            .flatten()
            .map(|t| t.to_string())
            .unwrap_or_default();
        let digit = crate::media_server::parse_info_dtmf(&ct, &req.body);
        self.reply(tx, req, if digit.is_some() { 200 } else { 415 })
            .await;
        if let Some(d) = digit {
            self.flow_note(call_id, MediaNote::Digit(d)).await;
        }
        true
    }
}

/// Control-API side of call flows and voicemail; each call runs on the engine task.
impl EngineHandle {
    async fn flow<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Engine) -> Result<T, CommandError> + Send + 'static,
    ) -> Result<T, CommandError> {
        self.ask(|reply| {
            Command::Flow(Box::new(move |e: &mut Engine| {
                let _ = reply.send(f(e));
            }))
        })
        .await
    }

    /// Whether `extension` may reach `mailbox`: its owner or a member of the shared
    /// box.
    pub async fn may_open_mailbox(
        &self,
        extension: &str,
        mailbox: &str,
    ) -> Result<bool, CommandError> {
        let (x, m) = (extension.to_owned(), mailbox.to_owned());
        self.flow(move |e| Ok(x == m || e.flows.routing.mailbox(&m).members.contains(&x)))
            .await
    }

    /// A mailbox's messages, oldest first.
    pub async fn voicemail(&self, mailbox: &str) -> Result<Vec<VmMessage>, CommandError> {
        let m = mailbox.to_owned();
        self.flow(move |e| Ok(e.db.get().messages(&m)?)).await
    }

    /// A message's WAV file, if it is in `mailbox`.
    pub async fn voicemail_file(
        &self,
        mailbox: &str,
        id: i64,
    ) -> Result<Option<PathBuf>, CommandError> {
        let m = mailbox.to_owned();
        self.flow(move |e| {
            Ok(e.db
                .get()
                .message(id)?
                .filter(|msg| msg.mailbox == m)
                .map(|msg| e.flows.voicemail_dir().join(&msg.mailbox).join(&msg.file)))
        })
        .await
    }

    /// Marks a message of `mailbox` heard; false if there is none.
    pub async fn voicemail_heard(&self, mailbox: &str, id: i64) -> Result<bool, CommandError> {
        let m = mailbox.to_owned();
        self.flow(move |e| {
            let ok = e.db.get().message(id)?.is_some_and(|msg| msg.mailbox == m);
            Ok(ok && e.db.get().mark_heard(id)?)
        })
        .await
    }

    /// Deletes a message of `mailbox` (index and file); false if there is none.
    pub async fn voicemail_delete(&self, mailbox: &str, id: i64) -> Result<bool, CommandError> {
        let m = mailbox.to_owned();
        self.flow(move |e| {
            let msg = e.db.get().message(id)?.filter(|msg| msg.mailbox == m);
            Ok(match msg {
                Some(msg) => {
                    e.flow_delete_message(&msg);
                    true
                }
                None => false,
            })
        })
        .await
    }

    /// The `[routing]` section in force.
    pub async fn routing(&self) -> Result<Routing, CommandError> {
        self.flow(|e| Ok(e.flows.routing.clone())).await
    }

    /// Adds or replaces version `version.version` of flow `name` (created with
    /// `numbers` if new). The version is validated first; activating is separate.
    pub async fn put_flow_version(
        &self,
        name: &str,
        numbers: Option<Vec<String>>,
        version: vaxel_routing::FlowVersion,
    ) -> Result<(), CommandError> {
        let name = name.to_owned();
        self.flow(move |e| {
            let mut r = e.flows.routing.clone();
            let idx = match r.flows.iter().position(|f| f.name == name) {
                Some(i) => i,
                None => {
                    let Some(numbers) = numbers.filter(|n| !n.is_empty()) else {
                        return Err(CommandError::Invalid(format!(
                            "flow {name} is new: give its main numbers"
                        )));
                    };
                    r.flows.push(vaxel_routing::CallFlow {
                        name: name.clone(),
                        numbers,
                        versions: Vec::new(),
                        active: None,
                    });
                    r.flows.len() - 1
                }
            };
            let users = e.office_users();
            let cfg = r.to_config(&users, &e.flows.forwarding);
            if let Err(errs) = vaxel_routing::validate(&cfg, &version) {
                return Err(CommandError::Invalid(format!(
                    "flow {name} version {}: {}",
                    version.version, errs[0]
                )));
            }
            let f = &mut r.flows[idx];
            f.versions.retain(|v| v.version != version.version);
            f.versions.push(version);
            f.versions.sort_by_key(|v| v.version);
            e.flow_store(r)
        })
        .await
    }

    /// Makes `version` of flow `name` the active one (validated again).
    pub async fn activate_flow(&self, name: &str, version: u32) -> Result<(), CommandError> {
        let name = name.to_owned();
        self.flow(move |e| {
            let mut r = e.flows.routing.clone();
            let users = e.office_users();
            let mut cfg = r.to_config(&users, &e.flows.forwarding);
            cfg.activate(&name, version).map_err(|err| {
                CommandError::Invalid(match err {
                    vaxel_routing::flow::ActivateError::NotFound => {
                        format!("flow {name} has no version {version}")
                    }
                    vaxel_routing::flow::ActivateError::Invalid(errs) => {
                        format!("flow {name} version {version}: {}", errs[0])
                    }
                })
            })?;
            if let Some(f) = r.flows.iter_mut().find(|f| f.name == name) {
                f.active = Some(version);
            }
            e.flow_store(r)
        })
        .await
    }

    /// The IVR keys pressed in a call (by call record id).
    pub async fn ivr_choices(&self, call: i64) -> Result<Vec<IvrChoice>, CommandError> {
        self.flow(move |e| Ok(e.db.get().ivr_choices(call)?)).await
    }

    /// Sets a user's forwarding (unconditional, busy, no answer after T seconds,
    /// time-controlled by a standard week); targets must exist, outside numbers need
    /// the user's external calls permission.
    pub async fn set_forwarding(&self, extension: &str, f: Forwarding) -> Result<(), CommandError> {
        let x = extension.to_owned();
        self.flow(move |e| {
            let Some(user) = e.users.get(&x) else {
                return Err(CommandError::Invalid(format!("no user {x}")));
            };
            let external_ok = user.external_calls;
            let targets = [
                f.unconditional.as_ref(),
                f.busy.as_ref(),
                f.no_answer.as_ref().map(|n| &n.target),
                f.timed.as_ref().map(|t| &t.target),
            ];
            for t in targets.into_iter().flatten() {
                match t {
                    FlowTarget::Internal(u) if e.user_for(u).is_none() => {
                        return Err(CommandError::Invalid(format!("no user {u}")));
                    }
                    FlowTarget::External(_) if !external_ok => {
                        return Err(CommandError::Invalid(format!(
                            "{x} may not forward outside (external_calls)"
                        )));
                    }
                    _ => {}
                }
            }
            e.flow_set_forwarding(&x, f);
            Ok(())
        })
        .await
    }

    /// A user's forwarding settings.
    pub async fn forwarding(&self, extension: &str) -> Result<Forwarding, CommandError> {
        let x = extension.to_owned();
        self.flow(move |e| Ok(e.flows.forwarding.get(&x).cloned().unwrap_or_default()))
            .await
    }
}

impl Engine {
    fn office_users(&self) -> Vec<OfficeUser> {
        self.users
            .values()
            .map(|u| OfficeUser {
                extension: u.extension.clone(),
                number: u.number.clone(),
            })
            .collect()
    }

    /// Stores a changed routing section and applies it.
    fn flow_store(&mut self, r: Routing) -> Result<(), CommandError> {
        self.db.get().set_routing(&r)?;
        self.flows.reconfigure(&self.users, r);
        Ok(())
    }
}

/// Which of a mailbox's own greetings an upload replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GreetingKind {
    /// The standard greeting.
    Standard,
    /// Played when a flow's voicemail step asks for the closed greeting.
    Closed,
    /// Played while the owner's presence profile (`*24*p`) runs.
    Profile(u32),
}

impl GreetingKind {
    /// `standard`, `closed` or `profile-N`.
    pub fn parse(s: &str) -> Option<GreetingKind> {
        match s {
            "standard" => Some(GreetingKind::Standard),
            "closed" => Some(GreetingKind::Closed),
            _ => s
                .strip_prefix("profile-")
                .and_then(|p| p.parse().ok())
                .map(GreetingKind::Profile),
        }
    }
}

/// Uploads: WAV files checked by decoding them first.
impl EngineHandle {
    /// Stores a mailbox's own greeting (`closed`: the one played when closed).
    pub async fn put_greeting(
        &self,
        mailbox: &str,
        kind: GreetingKind,
        wav: Vec<u8>,
    ) -> Result<(), CommandError> {
        check_wav(&wav)?;
        let m = mailbox.to_owned();
        self.flow(move |e| {
            let dir = e.flows.voicemail_dir().join(&m);
            let name = match kind {
                GreetingKind::Standard => "greeting.wav".to_owned(),
                GreetingKind::Closed => "greeting-closed.wav".to_owned(),
                GreetingKind::Profile(p) => format!("greeting-profile-{p}.wav"),
            };
            std::fs::create_dir_all(&dir)
                .and_then(|_| std::fs::write(dir.join(name), &wav))
                .map_err(|err| CommandError::Invalid(format!("cannot store the greeting: {err}")))
        })
        .await
    }

    /// Replaces (or adds) prompt `name` in `language` with an uploaded WAV; a new
    /// name becomes usable in flows.
    pub async fn put_prompt(
        &self,
        language: &str,
        name: &str,
        wav: Vec<u8>,
    ) -> Result<(), CommandError> {
        let ok_name = |s: &str| {
            !s.is_empty()
                && s.len() <= 40
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        if !ok_name(name) || !crate::callflow::LANGUAGES.contains(&language) {
            return Err(CommandError::Invalid(format!(
                "prompt names are a-z, 0-9 and _; languages {}",
                crate::callflow::LANGUAGES.join(", ")
            )));
        }
        check_wav(&wav)?;
        let (lang, name) = (language.to_owned(), name.to_owned());
        self.flow(move |e| {
            let dir = e.flows.data.join("prompts").join(&lang);
            std::fs::create_dir_all(&dir)
                .and_then(|_| std::fs::write(dir.join(format!("{name}.wav")), &wav))
                .map_err(|err| CommandError::Invalid(format!("cannot store the prompt: {err}")))?;
            let mut r = e.flows.routing.clone();
            if !crate::callflow::DEFAULT_PROMPTS.contains(&name.as_str()) {
                r.prompts.insert(name);
            }
            e.flow_store(r)
        })
        .await
    }
}

fn check_wav(wav: &[u8]) -> Result<(), CommandError> {
    Prompt::from_wav(std::io::Cursor::new(wav), crate::media_server::RATE)
        .map(|_| ())
        .map_err(|e| CommandError::Invalid(format!("not a usable WAV file: {e}")))
}
