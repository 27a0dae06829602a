//! SDP offer/answer for one audio stream (RFC 3264), as a SIP user agent or B2BUA does it.
//!
//! [`OfferAnswer`] holds our side of the negotiation for one dialog: it builds offers and
//! answers, remembers the session version (incremented whenever our SDP changes, RFC 3264
//! §8), keeps our SRTP keys, and turns the peer's SDP into a [`NegotiatedAudio`] the media
//! pipeline can use. It does no IO and takes randomness as an argument.
//!
//! Payload types are taken from whoever receives: we send with the numbers the peer's
//! SDP declared, and receive with ours (RFC 3264 §6.1, §5.1). `telephone-event` uses its
//! negotiated payload type; 101 is only what *we* offer.

use super::{Attribute, Connection, MediaDescription, Origin, SdpError, SessionDescription};
use crate::codec::CodecKind;
use crate::srtp::{CryptoAttribute, SrtpMasterKey, SrtpSuite};
use rand_core::RngCore;
use std::net::{IpAddr, SocketAddr};
use thiserror::Error;

/// Why an offer or answer cannot be accepted.
///
/// All variants except [`NegotiationError::NoPendingOffer`] are the peer's doing; a UAS
/// answers them with [`NegotiationError::sip_status`] (488 Not Acceptable Here, or 400
/// for an unreadable body, RFC 3261 §21.4.26).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NegotiationError {
    /// The body is not readable SDP.
    #[error(transparent)]
    Malformed(#[from] SdpError),
    /// No usable `m=audio` section.
    #[error("no audio stream offered")]
    NoAudio,
    /// None of the peer's codecs is one we have.
    #[error("no common codec")]
    NoCommonCodec,
    /// We require SRTP and the peer offers plain RTP.
    #[error("SRTP required but not offered")]
    SrtpRequired,
    /// The peer requires SRTP (RTP/SAVP) with no suite we support, or we have SRTP off.
    #[error("SRTP offered but not acceptable")]
    SrtpNotAcceptable,
    /// The connection address is not an IP address we can send to.
    #[error("unusable connection address {0:?}")]
    BadAddress(String),
    /// The answer does not match our offer (wrong number of m-lines, unknown crypto tag).
    #[error("answer does not match the offer: {0}")]
    AnswerMismatch(&'static str),
    /// `handle_answer` was called with no offer outstanding (our misuse).
    #[error("no offer outstanding")]
    NoPendingOffer,
}

impl NegotiationError {
    /// The SIP status a UAS should answer the offer with.
    pub fn sip_status(&self) -> u16 {
        match self {
            NegotiationError::Malformed(_) => 400,
            NegotiationError::NoPendingOffer => 500,
            _ => 488,
        }
    }
}

/// Stream direction (RFC 3264 §5.1, §6.1), from our point of view once negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Send and receive.
    SendRecv,
    /// Send only (e.g. we put the peer on hold).
    SendOnly,
    /// Receive only (e.g. the peer put us on hold).
    RecvOnly,
    /// Neither.
    Inactive,
}

impl Direction {
    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Whether media flows out.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether media flows in.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    fn from_flags(send: bool, recv: bool) -> Self {
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// The same stream seen from the other end.
    pub fn reversed(self) -> Self {
        Direction::from_flags(self.receives(), self.sends())
    }

    fn of(media: &MediaDescription, session: &SessionDescription) -> Direction {
        let pick = |attrs: &[Attribute]| {
            attrs
                .iter()
                .rev()
                .find_map(|a| match a.name.to_ascii_lowercase().as_str() {
                    "sendrecv" => Some(Direction::SendRecv),
                    "sendonly" => Some(Direction::SendOnly),
                    "recvonly" => Some(Direction::RecvOnly),
                    "inactive" => Some(Direction::Inactive),
                    _ => None,
                })
        };
        pick(&media.attributes)
            .or_else(|| pick(&session.attributes))
            .unwrap_or(Direction::SendRecv)
    }
}

/// Whether and how we use SRTP (SDES, RFC 4568).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtpPolicy {
    /// Plain RTP only; an RTP/SAVP offer is refused.
    Disabled,
    /// Offer RTP/AVP with `a=crypto` ("best-effort SRTP"); accept plain or SRTP.
    Optional,
    /// Offer RTP/SAVP; refuse plain RTP.
    Required,
}

/// What we are willing to do for audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaPolicy {
    /// Codecs in our order of preference.
    pub codecs: Vec<CodecKind>,
    /// Packet time we send and ask for, in ms.
    pub ptime_ms: u32,
    /// Offer and accept RFC 4733 `telephone-event`.
    pub telephone_event: bool,
    /// SRTP policy.
    pub srtp: SrtpPolicy,
    /// Offer and accept `a=rtcp-mux` (RFC 5761).
    pub rtcp_mux: bool,
}

impl Default for MediaPolicy {
    fn default() -> Self {
        MediaPolicy {
            codecs: CodecKind::ALL.to_vec(),
            ptime_ms: 20,
            telephone_event: true,
            srtp: SrtpPolicy::Optional,
            rtcp_mux: true,
        }
    }
}

/// The negotiated `telephone-event` format (RFC 4733 §7.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Payload type to send events with (the peer's number).
    pub send_pt: u8,
    /// Payload type we receive events with (our number).
    pub recv_pt: u8,
    /// The event clock rate (equals the audio RTP clock when the peer offers a match).
    pub clock_rate: u32,
}

/// Negotiated SDES keys (RFC 4568).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpParams {
    /// The suite both sides agreed on.
    pub suite: SrtpSuite,
    /// The crypto tag of the accepted line.
    pub tag: u32,
    /// The key we encrypt with.
    pub local_key: SrtpMasterKey,
    /// The key the peer encrypts with.
    pub remote_key: SrtpMasterKey,
}

/// The outcome of one offer/answer exchange: everything the RTP session needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedAudio {
    /// The codec to send and expect.
    pub codec: CodecKind,
    /// Payload type to send it with (the peer's number).
    pub send_pt: u8,
    /// Payload type we expect it with (our number; the peer's is accepted too).
    pub recv_pt: u8,
    /// `telephone-event`, if both sides support it.
    pub telephone_event: Option<TelephoneEvent>,
    /// Packet time to send, in ms (the peer's `a=ptime` when we can do it).
    pub ptime_ms: u32,
    /// Direction from our point of view.
    pub direction: Direction,
    /// Where to send RTP; `None` when the peer is on hold with `c=0.0.0.0` or port 0.
    pub remote_rtp: Option<SocketAddr>,
    /// Where to send RTCP (equal to `remote_rtp` with rtcp-mux).
    pub remote_rtcp: Option<SocketAddr>,
    /// RTP and RTCP share one port (RFC 5761).
    pub rtcp_mux: bool,
    /// SRTP keys, when the stream is encrypted.
    pub srtp: Option<SrtpParams>,
    /// The peer asked for Opus in-band FEC (`useinbandfec=1`, RFC 7587 §6.1).
    pub opus_fec: bool,
}

/// Our side of SDP offer/answer for one dialog.
#[derive(Debug)]
pub struct OfferAnswer {
    policy: MediaPolicy,
    local_rtp: SocketAddr,
    session_id: u64,
    version: u64,
    last_body: Option<String>,
    hold: bool,
    keys: Vec<(u32, SrtpSuite, SrtpMasterKey)>,
    pending_offer: Option<SessionDescription>,
    current: Option<NegotiatedAudio>,
}

/// Our payload type for Opus and for telephone-event at 8000 and 48000 Hz.
const OPUS_PT: u8 = 111;
const TE_PT: u8 = 101;
const TE48_PT: u8 = 110;

impl OfferAnswer {
    /// Starts a negotiation for media received on `local_rtp`. The session id and SRTP keys
    /// come from `rng`, which must be cryptographically secure in production.
    pub fn new(policy: MediaPolicy, local_rtp: SocketAddr, rng: &mut dyn RngCore) -> Self {
        let session_id = rng.next_u64() >> 2; // stays a positive decimal for strict parsers
        let keys = SrtpSuite::ALL
            .into_iter()
            .enumerate()
            .map(|(i, s)| (i as u32 + 1, s, SrtpMasterKey::generate(rng)))
            .collect();
        OfferAnswer {
            policy,
            local_rtp,
            session_id,
            version: session_id % 10_000,
            last_body: None,
            hold: false,
            keys,
            pending_offer: None,
            current: None,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &MediaPolicy {
        &self.policy
    }

    /// Changes our media address (e.g. after a network change); the next SDP carries it.
    pub fn set_local_addr(&mut self, addr: SocketAddr) {
        self.local_rtp = addr;
    }

    /// Puts the peer on hold (`a=sendonly`, RFC 3264 §8.4) or resumes; takes effect in the
    /// next offer.
    pub fn set_hold(&mut self, hold: bool) {
        self.hold = hold;
    }

    /// The last negotiated stream, if any.
    pub fn current(&self) -> Option<&NegotiatedAudio> {
        self.current.as_ref()
    }

    /// The session version our next changed SDP will not reuse.
    pub fn session_version(&self) -> u64 {
        self.version
    }

    fn local_direction(&self) -> Direction {
        if self.hold {
            Direction::SendOnly
        } else {
            Direction::SendRecv
        }
    }

    fn finish(&mut self, media: Vec<MediaDescription>) -> SessionDescription {
        let ip = self.local_rtp.ip().to_string();
        let mut sd = SessionDescription {
            origin: Origin {
                username: "vaxel".into(),
                session_id: self.session_id.to_string(),
                session_version: self.version,
                address: ip.clone(),
            },
            session_name: "vaxel".into(),
            connection: Some(Connection { address: ip }),
            bandwidth: Vec::new(),
            attributes: Vec::new(),
            media,
        };
        // RFC 3264 §8: the version goes up by one when the SDP changes, and only then.
        let body_without_origin = |sd: &SessionDescription| {
            let mut c = sd.clone();
            c.origin.session_version = 0;
            c.to_string()
        };
        let body = body_without_origin(&sd);
        if self.last_body.as_ref().is_some_and(|b| *b != body) {
            self.version += 1;
            sd.origin.session_version = self.version;
        }
        self.last_body = Some(body);
        sd
    }

    /// Builds an offer (initial or re-offer) with every codec in our policy.
    pub fn create_offer(&mut self) -> SessionDescription {
        let mut formats = Vec::new();
        let mut attrs = Vec::new();
        let mut wants_te48 = false;
        for &c in &self.policy.codecs {
            let pt = c.static_payload_type().unwrap_or(OPUS_PT);
            formats.push(pt.to_string());
            attrs.push(rtpmap_attr(
                pt,
                c.encoding_name(),
                c.rtp_clock_rate(),
                c.rtpmap_channels(),
            ));
            if c == CodecKind::Opus {
                attrs.push(Attribute::new(
                    "fmtp",
                    format!("{pt} minptime=10;useinbandfec=1"),
                ));
                wants_te48 = true;
            }
        }
        if self.policy.telephone_event {
            formats.push(TE_PT.to_string());
            attrs.push(rtpmap_attr(TE_PT, "telephone-event", 8000, None));
            attrs.push(Attribute::new("fmtp", format!("{TE_PT} 0-16")));
            if wants_te48 {
                formats.push(TE48_PT.to_string());
                attrs.push(rtpmap_attr(TE48_PT, "telephone-event", 48000, None));
                attrs.push(Attribute::new("fmtp", format!("{TE48_PT} 0-16")));
            }
        }
        attrs.push(Attribute::new("ptime", self.policy.ptime_ms.to_string()));
        if self.policy.rtcp_mux {
            attrs.push(Attribute::flag("rtcp-mux"));
        }
        if self.policy.srtp != SrtpPolicy::Disabled {
            for (tag, suite, key) in &self.keys {
                let c = CryptoAttribute {
                    tag: *tag,
                    suite: *suite,
                    key: key.clone(),
                };
                attrs.push(Attribute::new("crypto", c.to_value()));
            }
        }
        attrs.push(Attribute::flag(self.local_direction().as_str()));
        let protocol = match self.policy.srtp {
            SrtpPolicy::Required => "RTP/SAVP",
            _ => "RTP/AVP",
        };
        let m = MediaDescription {
            kind: "audio".into(),
            port: self.local_rtp.port(),
            protocol: protocol.into(),
            formats,
            connection: None,
            bandwidth: Vec::new(),
            attributes: attrs,
        };
        let sd = self.finish(vec![m]);
        self.pending_offer = Some(sd.clone());
        sd
    }

    /// Accepts the peer's answer to our outstanding offer.
    pub fn handle_answer(
        &mut self,
        answer: &SessionDescription,
    ) -> Result<NegotiatedAudio, NegotiationError> {
        let offer = self
            .pending_offer
            .take()
            .ok_or(NegotiationError::NoPendingOffer)?;
        if answer.media.len() != offer.media.len() {
            return Err(NegotiationError::AnswerMismatch("m-line count"));
        }
        let m = answer
            .media
            .iter()
            .find(|m| m.kind == "audio" && m.port != 0)
            .ok_or(NegotiationError::NoAudio)?;
        let (codec, send_pt) =
            pick_codec(m, &self.policy.codecs).ok_or(NegotiationError::NoCommonCodec)?;
        let recv_pt = codec.static_payload_type().unwrap_or(OPUS_PT);
        let telephone_event = if self.policy.telephone_event {
            pick_telephone_event(m, codec).map(|(pt, rate)| TelephoneEvent {
                send_pt: pt,
                recv_pt: if rate == 48000 { TE48_PT } else { TE_PT },
                clock_rate: rate,
            })
        } else {
            None
        };
        let srtp = match self.policy.srtp {
            SrtpPolicy::Disabled => None,
            policy => {
                let accepted = m
                    .attribute_values("crypto")
                    .find_map(|v| CryptoAttribute::parse(v).ok());
                match accepted {
                    Some(c) => {
                        let (tag, suite, key) = self
                            .keys
                            .iter()
                            .find(|(t, s, _)| *t == c.tag && *s == c.suite)
                            .ok_or(NegotiationError::AnswerMismatch("crypto tag"))?;
                        Some(SrtpParams {
                            suite: *suite,
                            tag: *tag,
                            local_key: key.clone(),
                            remote_key: c.key,
                        })
                    }
                    None if policy == SrtpPolicy::Required => {
                        return Err(NegotiationError::SrtpRequired);
                    }
                    None => None,
                }
            }
        };
        let rtcp_mux = self.policy.rtcp_mux && m.attribute("rtcp-mux").is_some();
        let (remote_rtp, remote_rtcp, held) = remote_addresses(answer, m, rtcp_mux)?;
        let answered = Direction::of(m, answer);
        let mut direction = answered.reversed();
        if held {
            direction = Direction::from_flags(false, direction.receives());
        }
        let neg = NegotiatedAudio {
            codec,
            send_pt,
            recv_pt,
            telephone_event,
            ptime_ms: choose_ptime(m, codec, self.policy.ptime_ms),
            direction,
            remote_rtp,
            remote_rtcp,
            rtcp_mux,
            srtp,
            opus_fec: codec == CodecKind::Opus
                && m.fmtp(send_pt)
                    .is_some_and(|f| f.contains("useinbandfec=1")),
        };
        self.current = Some(neg.clone());
        Ok(neg)
    }

    /// Answers the peer's offer (initial or re-offer). On error the caller rejects the
    /// offer with [`NegotiationError::sip_status`] and the previous stream stays in force.
    pub fn handle_offer(
        &mut self,
        offer: &SessionDescription,
    ) -> Result<(SessionDescription, NegotiatedAudio), NegotiationError> {
        let mut chosen: Option<(usize, NegotiatedAudio, MediaDescription)> = None;
        let mut last_err = NegotiationError::NoAudio;
        for (i, m) in offer.media.iter().enumerate() {
            if chosen.is_some() || m.kind != "audio" || m.port == 0 {
                continue;
            }
            match self.answer_media(offer, m) {
                Ok((neg, answer_m)) => chosen = Some((i, neg, answer_m)),
                Err(e) => last_err = e,
            }
        }
        let Some((index, neg, answer_m)) = chosen else {
            return Err(last_err);
        };
        // Every other m-line is refused with port 0, keeping the count (RFC 3264 §6).
        let media = offer
            .media
            .iter()
            .enumerate()
            .map(|(i, m)| {
                if i == index {
                    answer_m.clone()
                } else {
                    MediaDescription {
                        kind: m.kind.clone(),
                        port: 0,
                        protocol: m.protocol.clone(),
                        formats: m.formats.iter().take(1).cloned().collect(),
                        connection: None,
                        bandwidth: Vec::new(),
                        attributes: Vec::new(),
                    }
                }
            })
            .collect();
        let sd = self.finish(media);
        self.pending_offer = None;
        self.current = Some(neg.clone());
        Ok((sd, neg))
    }

    fn answer_media(
        &mut self,
        offer: &SessionDescription,
        m: &MediaDescription,
    ) -> Result<(NegotiatedAudio, MediaDescription), NegotiationError> {
        let savp = match m.protocol.to_ascii_uppercase().as_str() {
            "RTP/AVP" => false,
            "RTP/SAVP" => true,
            _ => return Err(NegotiationError::NoAudio), // e.g. UDP/TLS/RTP/SAVPF (DTLS-SRTP)
        };
        let (codec, pt) =
            pick_codec(m, &self.policy.codecs).ok_or(NegotiationError::NoCommonCodec)?;
        let te = if self.policy.telephone_event {
            pick_telephone_event(m, codec)
        } else {
            None
        };
        // SDES: accept the first supported crypto line, echo its tag with our own key.
        let crypto = if self.policy.srtp == SrtpPolicy::Disabled {
            None
        } else {
            m.attribute_values("crypto")
                .find_map(|v| CryptoAttribute::parse(v).ok())
        };
        if savp && crypto.is_none() {
            return Err(NegotiationError::SrtpNotAcceptable);
        }
        if self.policy.srtp == SrtpPolicy::Required && crypto.is_none() {
            return Err(NegotiationError::SrtpRequired);
        }
        let srtp = crypto.map(|c| {
            let local_key = self.key_for(c.suite);
            SrtpParams {
                suite: c.suite,
                tag: c.tag,
                local_key,
                remote_key: c.key,
            }
        });
        let rtcp_mux = self.policy.rtcp_mux && m.attribute("rtcp-mux").is_some();
        let (remote_rtp, remote_rtcp, held) = remote_addresses(offer, m, rtcp_mux)?;
        let offered = Direction::of(m, offer);
        // c=0.0.0.0 (RFC 2543 hold): the peer wants nothing sent to it.
        let offered = if held {
            Direction::from_flags(offered.sends(), false)
        } else {
            offered
        };
        let ours = self.local_direction();
        let answer_dir = Direction::from_flags(
            ours.sends() && offered.receives(),
            ours.receives() && offered.sends(),
        );
        let ptime = choose_ptime(m, codec, self.policy.ptime_ms);

        let mut attrs = vec![rtpmap_attr(
            pt,
            codec.encoding_name(),
            codec.rtp_clock_rate(),
            codec.rtpmap_channels(),
        )];
        let mut formats = vec![pt.to_string()];
        if codec == CodecKind::Opus {
            attrs.push(Attribute::new(
                "fmtp",
                format!("{pt} minptime=10;useinbandfec=1"),
            ));
        }
        if let Some((te_pt, rate)) = te {
            formats.push(te_pt.to_string());
            attrs.push(rtpmap_attr(te_pt, "telephone-event", rate, None));
            attrs.push(Attribute::new("fmtp", format!("{te_pt} 0-16")));
        }
        attrs.push(Attribute::new("ptime", ptime.to_string()));
        if rtcp_mux {
            attrs.push(Attribute::flag("rtcp-mux"));
        }
        if let Some(s) = &srtp {
            let c = CryptoAttribute {
                tag: s.tag,
                suite: s.suite,
                key: s.local_key.clone(),
            };
            attrs.push(Attribute::new("crypto", c.to_value()));
        }
        attrs.push(Attribute::flag(answer_dir.as_str()));
        let answer_m = MediaDescription {
            kind: "audio".into(),
            port: self.local_rtp.port(),
            protocol: m.protocol.clone(),
            formats,
            connection: None,
            bandwidth: Vec::new(),
            attributes: attrs,
        };
        let neg = NegotiatedAudio {
            codec,
            send_pt: pt,
            recv_pt: pt,
            telephone_event: te.map(|(pt, rate)| TelephoneEvent {
                send_pt: pt,
                recv_pt: pt,
                clock_rate: rate,
            }),
            ptime_ms: ptime,
            direction: answer_dir,
            remote_rtp,
            remote_rtcp,
            rtcp_mux,
            srtp,
            opus_fec: codec == CodecKind::Opus
                && m.fmtp(pt).is_some_and(|f| f.contains("useinbandfec=1")),
        };
        Ok((neg, answer_m))
    }

    fn key_for(&self, suite: SrtpSuite) -> SrtpMasterKey {
        self.keys
            .iter()
            .find(|(_, s, _)| *s == suite)
            .map(|(_, _, k)| k.clone())
            .unwrap_or_else(|| self.keys[0].2.clone())
    }
}

fn rtpmap_attr(pt: u8, name: &str, rate: u32, channels: Option<u8>) -> Attribute {
    match channels {
        Some(c) => Attribute::new("rtpmap", format!("{pt} {name}/{rate}/{c}")),
        None => Attribute::new("rtpmap", format!("{pt} {name}/{rate}")),
    }
}

/// The codec of `m` we use: the peer's first listed format that we support (the offerer's
/// preference order, RFC 3264 §6.1), with its payload type.
fn pick_codec(m: &MediaDescription, ours: &[CodecKind]) -> Option<(CodecKind, u8)> {
    m.payload_types().into_iter().find_map(|pt| {
        let kind = match m.rtpmap(pt) {
            Some(map) => CodecKind::from_rtpmap(&map.encoding, map.clock_rate),
            // Static payload types need no rtpmap (RFC 3551 §6).
            None if pt < 96 => CodecKind::from_static_payload_type(pt),
            None => None,
        }?;
        ours.contains(&kind).then_some((kind, pt))
    })
}

/// The `telephone-event` format of `m`, preferring the one whose clock matches the audio
/// codec (RFC 4733 §2.1), as (payload type, clock rate).
fn pick_telephone_event(m: &MediaDescription, codec: CodecKind) -> Option<(u8, u32)> {
    let events: Vec<(u8, u32)> = m
        .payload_types()
        .into_iter()
        .filter_map(|pt| m.rtpmap(pt).map(|r| (pt, r)))
        .filter(|(_, r)| r.encoding.eq_ignore_ascii_case("telephone-event"))
        .map(|(pt, r)| (pt, r.clock_rate))
        .collect();
    events
        .iter()
        .find(|(_, rate)| *rate == codec.rtp_clock_rate())
        .or(events.first())
        .copied()
}

fn choose_ptime(m: &MediaDescription, codec: CodecKind, default: u32) -> u32 {
    match m.ptime() {
        Some(p) if codec.supported_ptimes().contains(&p) => p,
        _ if codec.supported_ptimes().contains(&default) => default,
        _ => codec.supported_ptimes()[0],
    }
}

/// RTP and RTCP destinations of `m`, and whether the peer is on hold by `c=0.0.0.0`.
fn remote_addresses(
    sd: &SessionDescription,
    m: &MediaDescription,
    rtcp_mux: bool,
) -> Result<(Option<SocketAddr>, Option<SocketAddr>, bool), NegotiationError> {
    let conn = m
        .connection
        .as_ref()
        .or(sd.connection.as_ref())
        .ok_or_else(|| NegotiationError::BadAddress(String::new()))?;
    if conn.is_hold() {
        return Ok((None, None, true));
    }
    let ip: IpAddr = conn
        .ip()
        .ok_or_else(|| NegotiationError::BadAddress(conn.address.clone()))?;
    let rtp = SocketAddr::new(ip, m.port);
    let rtcp = if rtcp_mux {
        rtp
    } else {
        // a=rtcp:port [IN IP4 addr] (RFC 3605), else port + 1 (RFC 3550 §11).
        match m.attribute("rtcp").and_then(|a| a.value.as_deref()) {
            Some(v) => {
                let mut f = v.split_ascii_whitespace();
                let port = f
                    .next()
                    .and_then(|p| p.parse::<u16>().ok())
                    .unwrap_or(m.port.wrapping_add(1));
                let addr = f.nth(2).and_then(|a| a.parse().ok()).unwrap_or(ip);
                SocketAddr::new(addr, port)
            }
            None => SocketAddr::new(ip, m.port.wrapping_add(1)),
        }
    };
    Ok((Some(rtp), Some(rtcp), false))
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn oa(policy: MediaPolicy, port: u16, seed: u64) -> OfferAnswer {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        OfferAnswer::new(policy, SocketAddr::from(([192, 0, 2, 1], port)), &mut rng)
    }

    fn round_trip(sd: &SessionDescription) -> SessionDescription {
        let text = sd.to_string();
        let mut c = std::io::Cursor::new(text.clone());
        rtc_sdp::description::session::SessionDescription::unmarshal(&mut c)
            .unwrap_or_else(|e| panic!("strict parse failed: {e}\n{text}"));
        parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn two_vaxels_agree_on_opus_with_srtp_and_mux() {
        let mut a = oa(MediaPolicy::default(), 4000, 1);
        let mut b = oa(MediaPolicy::default(), 5000, 2);
        let offer = round_trip(&a.create_offer());
        let (answer, nb) = b.handle_offer(&offer).unwrap();
        let na = a.handle_answer(&round_trip(&answer)).unwrap();
        assert_eq!(na.codec, CodecKind::Opus);
        assert_eq!(nb.codec, CodecKind::Opus);
        assert_eq!(na.remote_rtp, Some("192.0.2.1:5000".parse().unwrap()));
        assert_eq!(nb.remote_rtp, Some("192.0.2.1:4000".parse().unwrap()));
        assert!(na.rtcp_mux && nb.rtcp_mux);
        assert_eq!(na.remote_rtcp, na.remote_rtp);
        let (sa, sb) = (na.srtp.unwrap(), nb.srtp.unwrap());
        assert_eq!(sa.local_key, sb.remote_key);
        assert_eq!(sa.remote_key, sb.local_key);
        assert_eq!(sa.tag, 1);
        let te = na.telephone_event.unwrap();
        assert_eq!(te.clock_rate, 48000, "event clock matches Opus");
        assert!(na.opus_fec);
        assert_eq!(na.direction, Direction::SendRecv);
    }

    #[test]
    fn answers_a_desk_phone_with_its_own_payload_types() {
        // Sloppy: no t=, odd o=, telephone-event on 96 (not 101), ptime 30, no rtcp-mux.
        let body = "v=0\r\no=- 0 IN IP4 10.1.1.9\r\ns=\r\nc=IN IP4 10.1.1.9\r\nm=audio 30000 RTP/AVP 18 8 0 96\r\na=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\na=ptime:30\r\n";
        let mut b = oa(MediaPolicy::default(), 5000, 3);
        let (answer, neg) = b.handle_offer(&parse(body.as_bytes()).unwrap()).unwrap();
        assert_eq!(neg.codec, CodecKind::Pcma, "first offered codec we have");
        assert_eq!(neg.send_pt, 8);
        assert_eq!(neg.telephone_event.unwrap().send_pt, 96);
        assert_eq!(neg.ptime_ms, 30);
        assert!(!neg.rtcp_mux);
        assert_eq!(neg.remote_rtcp, Some("10.1.1.9:30001".parse().unwrap()));
        assert!(neg.srtp.is_none(), "best-effort SRTP falls back to RTP");
        let a = round_trip(&answer);
        let m = &a.media[0];
        assert_eq!(m.formats, vec!["8", "96"]);
        assert_eq!(m.ptime(), Some(30));
        assert!(m.attribute("crypto").is_none());
        assert!(m.attribute("rtcp-mux").is_none());
    }

    #[test]
    fn no_common_codec_is_488() {
        let body = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18 4\r\n";
        let mut b = oa(MediaPolicy::default(), 5000, 4);
        let e = b
            .handle_offer(&parse(body.as_bytes()).unwrap())
            .unwrap_err();
        assert_eq!(e, NegotiationError::NoCommonCodec);
        assert_eq!(e.sip_status(), 488);
        let only_video = "c=IN IP4 10.0.0.1\r\nm=video 4000 RTP/AVP 96\r\n";
        let e = b
            .handle_offer(&parse(only_video.as_bytes()).unwrap())
            .unwrap_err();
        assert_eq!(e, NegotiationError::NoAudio);
    }

    #[test]
    fn srtp_policies() {
        let mut required = oa(
            MediaPolicy {
                srtp: SrtpPolicy::Required,
                ..Default::default()
            },
            4000,
            5,
        );
        let mut disabled = oa(
            MediaPolicy {
                srtp: SrtpPolicy::Disabled,
                ..Default::default()
            },
            5000,
            6,
        );
        let offer = required.create_offer();
        assert_eq!(offer.media[0].protocol, "RTP/SAVP");
        assert_eq!(
            disabled.handle_offer(&offer).unwrap_err(),
            NegotiationError::SrtpNotAcceptable
        );
        let plain = disabled.create_offer();
        assert_eq!(
            required.handle_offer(&plain).unwrap_err(),
            NegotiationError::SrtpRequired
        );
        // SAVP offer answered with the offered tag echoed and the _32 suite if that is all.
        let body = "c=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/SAVP 0\r\na=crypto:7 AES_CM_128_HMAC_SHA1_32 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n";
        let mut opt = oa(MediaPolicy::default(), 5000, 7);
        let (answer, neg) = opt.handle_offer(&parse(body.as_bytes()).unwrap()).unwrap();
        let c = CryptoAttribute::parse(
            answer.media[0]
                .attribute("crypto")
                .unwrap()
                .value
                .as_deref()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(c.tag, 7);
        assert_eq!(c.suite, SrtpSuite::AesCm128HmacSha1_32);
        assert_eq!(answer.media[0].protocol, "RTP/SAVP");
        assert_eq!(neg.srtp.unwrap().local_key, c.key);
        // An answer with a tag we never offered is refused.
        let mut a = oa(MediaPolicy::default(), 4000, 8);
        a.create_offer();
        let bad = "c=IN IP4 10.0.0.2\r\nm=audio 4000 RTP/AVP 0\r\na=crypto:9 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n";
        assert_eq!(
            a.handle_answer(&parse(bad.as_bytes()).unwrap())
                .unwrap_err(),
            NegotiationError::AnswerMismatch("crypto tag")
        );
    }

    #[test]
    fn hold_directions_and_old_style_hold() {
        let mut a = oa(MediaPolicy::default(), 4000, 9);
        let mut b = oa(MediaPolicy::default(), 5000, 10);
        let first = a.create_offer();
        b.handle_offer(&first).unwrap();
        a.set_hold(true);
        let hold = a.create_offer();
        assert_eq!(
            hold.origin.session_version,
            first.origin.session_version + 1
        );
        let (answer, nb) = b.handle_offer(&hold).unwrap();
        assert_eq!(nb.direction, Direction::RecvOnly);
        assert!(answer.media[0].attribute("recvonly").is_some());
        let na = a.handle_answer(&answer).unwrap();
        assert_eq!(na.direction, Direction::SendOnly);
        // Old-style hold: c=0.0.0.0 means "send nothing to me".
        let old = "c=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let (answer, neg) = b.handle_offer(&parse(old.as_bytes()).unwrap()).unwrap();
        assert_eq!(neg.remote_rtp, None);
        assert_eq!(neg.direction, Direction::RecvOnly);
        assert!(answer.media[0].attribute("recvonly").is_some());
        let inactive = "c=IN IP4 10.0.0.3\r\nm=audio 4000 RTP/AVP 0\r\na=inactive\r\n";
        assert_eq!(
            b.handle_offer(&parse(inactive.as_bytes()).unwrap())
                .unwrap()
                .1
                .direction,
            Direction::Inactive
        );
    }

    #[test]
    fn reoffer_changes_codec_and_address_and_version_rules() {
        let mut b = oa(MediaPolicy::default(), 5000, 11);
        let o1 = "o=x 5 5 IN IP4 10.0.0.1\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
        let (ans1, n1) = b.handle_offer(&parse(o1.as_bytes()).unwrap()).unwrap();
        assert_eq!(n1.codec, CodecKind::Pcmu);
        // Same offer again (e.g. session refresh): our answer and version are unchanged.
        let (ans1b, _) = b.handle_offer(&parse(o1.as_bytes()).unwrap()).unwrap();
        assert_eq!(ans1b.origin.session_version, ans1.origin.session_version);
        assert_eq!(ans1b.to_string(), ans1.to_string());
        // A transfer moved the peer: new address and codec.
        let o2 = "o=x 5 6 IN IP4 10.0.0.9\r\nc=IN IP4 10.0.0.9\r\nm=audio 6000 RTP/AVP 9\r\n";
        let (ans2, n2) = b.handle_offer(&parse(o2.as_bytes()).unwrap()).unwrap();
        assert_eq!(n2.codec, CodecKind::G722);
        assert_eq!(n2.remote_rtp, Some("10.0.0.9:6000".parse().unwrap()));
        assert_eq!(n2.telephone_event, None);
        assert_eq!(ans2.origin.session_version, ans1.origin.session_version + 1);
        // Our own re-offer after an address change bumps the version too.
        let v = b.create_offer().origin.session_version;
        b.set_local_addr("192.0.2.7:7000".parse().unwrap());
        let o = b.create_offer();
        assert_eq!(o.origin.session_version, v + 1);
        assert_eq!(o.connection.unwrap().address, "192.0.2.7");
    }

    #[test]
    fn extra_media_lines_are_refused_with_port_zero() {
        let body = "c=IN IP4 10.0.0.1\r\nm=video 4002 RTP/AVP 96\r\nm=audio 4000 RTP/AVP 8\r\nm=audio 4004 RTP/AVP 0\r\n";
        let mut b = oa(MediaPolicy::default(), 5000, 12);
        let (answer, neg) = b.handle_offer(&parse(body.as_bytes()).unwrap()).unwrap();
        assert_eq!(answer.media.len(), 3);
        assert_eq!(answer.media[0].port, 0);
        assert_eq!(answer.media[1].port, 5000);
        assert_eq!(answer.media[2].port, 0);
        assert_eq!(neg.codec, CodecKind::Pcma);
        round_trip(&answer);
    }

    #[test]
    fn hostname_and_missing_address_are_488() {
        let mut b = oa(MediaPolicy::default(), 5000, 13);
        let host = "c=IN IP4 pbx.example.com\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert!(matches!(
            b.handle_offer(&parse(host.as_bytes()).unwrap()),
            Err(NegotiationError::BadAddress(_))
        ));
        let none = "m=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(
            b.handle_offer(&parse(none.as_bytes()).unwrap())
                .unwrap_err()
                .sip_status(),
            488
        );
        assert_eq!(
            b.handle_answer(&parse(none.as_bytes()).unwrap())
                .unwrap_err(),
            NegotiationError::NoPendingOffer
        );
    }
}
