//! Message surgery the transaction layer does itself: stamping `received` and
//! `rport` (§18.2.1, RFC 3581), choosing where a response goes (§18.2.2), and
//! building the ACK for a non-2xx (§17.1.1.3), CANCEL (§9.1) and 100 Trying
//! (§8.2.6.1) messages.

use std::net::{IpAddr, SocketAddr};

use bytestring::ByteString;

use super::{Peer, TransportKind};
use crate::msg::{CSeq, HeaderName, Host, Method, Request, Response, StatusCode, Via};

/// The IP address of a host, when it is one (domain names need DNS, which the
/// driver owns).
pub(crate) fn host_ip(host: &Host) -> Option<IpAddr> {
    match host {
        Host::V4(a) => Some(IpAddr::V4(*a)),
        Host::V6(a) => Some(IpAddr::V6(*a)),
        Host::Domain(_) => None,
    }
}

/// §18.2.1: the server transport adds `received` when the sent-by host is not
/// the packet's source address, and (RFC 3581 §4) fills in a value-less
/// `rport` with the source port, adding `received` then in any case. Returns
/// whether `via` changed; a Via stamped already (by a driver or a retransmission)
/// is left as it is.
pub fn stamp_received(via: &mut Via, from: Peer) -> bool {
    let src = from.addr.ip();
    let mut changed = false;
    let wants_rport = via.has_rport() && via.rport().is_none();
    // RFC 5118 §4.5: an IPv6 `received` is written without brackets.
    let src_text = src.to_string();
    if (host_ip(&via.host) != Some(src) || wants_rport)
        && via.params.get("received") != Some(src_text.as_str())
    {
        via.params.set("received", Some(&src_text));
        changed = true;
    }
    if wants_rport {
        via.params.set("rport", Some(&from.addr.port().to_string()));
        changed = true;
    }
    changed
}

/// [`stamp_received`] applied to the top Via of an incoming request; only that
/// value changes. Returns the top Via as it is after the change.
pub(crate) fn stamp_via(request: &mut Request, from: Peer) -> Option<Via> {
    let mut values: Vec<ByteString> = request.headers.values(&HeaderName::Via).collect();
    let first = values.first()?;
    let mut via = Via::parse(first).ok()?;
    if stamp_received(&mut via, from) {
        values[0] = ByteString::from(via.to_string());
        // One line with the values comma-separated keeps Via order (§7.3.1).
        let joined = values
            .iter()
            .map(|v| &**v)
            .collect::<Vec<&str>>()
            .join(", ");
        request.headers.set(HeaderName::Via, joined);
    }
    Some(via)
}

/// Where the responses of a server transaction go (§18.2.2): over a reliable
/// transport back on the connection the request came on; over an unreliable
/// one to `maddr` (port from sent-by), else to `received` with `rport` (RFC
/// 3581 §4) or the sent-by port, else to the sent-by address; the default port
/// is 5060 (5061 for TLS).
pub fn response_destination(via: &Via, from: Peer) -> Peer {
    if from.transport.is_reliable() {
        return from;
    }
    let default_port = via.port.unwrap_or_else(|| from.transport.default_port());
    if let Some(maddr) = via.maddr().as_ref().and_then(host_ip) {
        return Peer {
            transport: from.transport,
            addr: SocketAddr::new(maddr, default_port),
        };
    }
    let ip = via
        .received()
        .as_ref()
        .and_then(host_ip)
        .or_else(|| host_ip(&via.host))
        // A domain sent-by always differs from the source address, so
        // `stamp_via` added `received`; the source is the last resort.
        .unwrap_or(from.addr.ip());
    let port = match via.rport() {
        Some(p) => p,
        None if via.has_rport() => from.addr.port(),
        None => default_port,
    };
    Peer {
        transport: from.transport,
        addr: SocketAddr::new(ip, port),
    }
}

/// The top Via value as written.
pub(crate) fn top_via_value(headers: &crate::msg::Headers) -> Option<ByteString> {
    headers.values(&HeaderName::Via).next()
}

fn copy_routes(from: &Request, to: &mut Request) {
    for v in from.headers.get_all(&HeaderName::Route) {
        to.headers.push(HeaderName::Route, v.clone());
    }
}

/// The ACK the INVITE client transaction sends for a 300–699 response
/// (§17.1.1.3): Request-URI, Call-ID, From and CSeq number of the INVITE, To of
/// the response, the INVITE's top Via only (same branch), its Route headers.
pub(crate) fn ack_for_failure(invite: &Request, response: &Response) -> Option<Request> {
    let mut ack = Request::new(Method::Ack, invite.uri.clone());
    ack.headers
        .push(HeaderName::Via, top_via_value(&invite.headers)?);
    copy_routes(invite, &mut ack);
    ack.headers.push(HeaderName::MaxForwards, "70");
    ack.headers.push(
        HeaderName::From,
        invite.headers.get(&HeaderName::From)?.clone(),
    );
    ack.headers.push(
        HeaderName::To,
        response.headers.get(&HeaderName::To)?.clone(),
    );
    ack.headers.push(
        HeaderName::CallId,
        invite.headers.get(&HeaderName::CallId)?.clone(),
    );
    let seq = invite.headers.cseq().ok()?.seq;
    ack.headers
        .push_value(HeaderName::CSeq, &CSeq::new(seq, Method::Ack));
    Some(ack)
}

/// The CANCEL for `request` (§9.1): same Request-URI, Call-ID, To, From, CSeq
/// number and top Via (so the same branch), the same Route headers, method
/// CANCEL; no Require or Proxy-Require.
pub(crate) fn cancel_for(request: &Request) -> Option<Request> {
    let mut c = Request::new(Method::Cancel, request.uri.clone());
    c.headers
        .push(HeaderName::Via, top_via_value(&request.headers)?);
    copy_routes(request, &mut c);
    c.headers.push(HeaderName::MaxForwards, "70");
    for name in [HeaderName::From, HeaderName::To, HeaderName::CallId] {
        c.headers
            .push(name.clone(), request.headers.get(&name)?.clone());
    }
    let seq = request.headers.cseq().ok()?.seq;
    c.headers
        .push_value(HeaderName::CSeq, &CSeq::new(seq, Method::Cancel));
    Some(c)
}

/// A response built by the layer itself (100 Trying, 200 or 481 to CANCEL):
/// §8.2.6 copies, plus Timestamp for 100 (§8.2.6.1) and a To tag for finals.
pub(crate) fn layer_response(request: &Request, status: StatusCode, to_tag: &str) -> Response {
    let mut r = Response::from_request(request, status);
    if status == StatusCode::TRYING {
        if let Some(ts) = request.headers.get(&HeaderName::Timestamp) {
            r.headers.push(HeaderName::Timestamp, ts.clone());
        }
    } else {
        // The tag is a hex token, so this cannot fail.
        let _ = r.set_to_tag(to_tag);
    }
    r
}

/// A To tag derived from the branch, for the layer's own final responses when
/// the TU has not chosen one yet. §9.2 only says the CANCEL's 200 SHOULD carry
/// the tag of the INVITE's response; deriving it from the branch keeps the
/// layer free of an RNG and gives retransmissions the same tag.
pub(crate) fn derived_tag(branch: &str) -> String {
    // FNV-1a, 64 bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in branch.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl TransportKind {
    /// The default port of the transport (§19.1.2: 5060, 5061 for TLS and WSS).
    pub fn default_port(self) -> u16 {
        match self {
            TransportKind::Tls | TransportKind::Wss => 5061,
            _ => 5060,
        }
    }
}
