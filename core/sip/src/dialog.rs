//! Dialogs (RFC 3261 §12), with the forking rules of §13.2.2.4.
//!
//! A [`Dialog`] is the state two user agents share between a dialog-creating
//! request and its end: the identifier (Call-ID and both tags), the local and
//! remote sequence numbers, the remote target and the route set. It builds the
//! in-dialog requests of the local side ([`Dialog::new_request`],
//! [`Dialog::new_ack`]) and checks those of the remote side
//! ([`Dialog::handle_request`]). [`Dialogs`] keeps the dialogs of one endpoint
//! and handles the responses of a forked INVITE: several early dialogs, the
//! first 2xx confirming one, later 2xx creating more (§13.2.2.4).
//!
//! Like the rest of the crate it does no IO and takes its randomness from the
//! caller ([`new_tag`], [`new_call_id`]).
//!
//! ```
//! use bytes::Bytes;
//! use vaxel_sip::dialog::{Dialog, DialogState};
//! use vaxel_sip::msg::{self, Message, Method, Response, StatusCode};
//!
//! let Ok(Message::Request(invite)) = msg::parse(Bytes::from_static(
//!     b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
//!       Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n\
//!       To: Bob <sip:bob@biloxi.example.com>\r\n\
//!       From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
//!       Call-ID: a84b4c76e66710\r\nCSeq: 314159 INVITE\r\n\
//!       Contact: <sip:alice@pc33.atlanta.example.com>\r\n\r\n",
//! )) else { unreachable!() };
//! let mut ok = Response::from_request(&invite, StatusCode::OK);
//! ok.set_to_tag("a6c85cf").unwrap();
//! ok.headers.push(msg::HeaderName::Contact, "<sip:bob@192.0.2.4>");
//! let mut dialog = Dialog::from_uac(&invite, &ok).unwrap();
//! assert_eq!(dialog.state(), DialogState::Confirmed);
//! let ack = dialog.new_ack(&invite);
//! assert_eq!(ack.uri.to_string(), "sip:bob@192.0.2.4");
//! let bye = dialog.new_request(Method::Bye);
//! assert_eq!(bye.headers.cseq().unwrap().seq, 314160);
//! ```

use std::collections::HashMap;

use bytestring::ByteString;

use crate::msg::{
    CSeq, HeaderName, Headers, Method, NameAddr, ParseError, Request, Response, StatusCode, Uri,
};

/// Identifies a dialog (§12): Call-ID, local tag and remote tag. The remote
/// tag is empty for a dialog with an RFC 2543 peer that sent no tag (§12.1.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DialogId {
    /// The Call-ID.
    pub call_id: ByteString,
    /// Our tag: From tag of our requests (UAC) or To tag of our responses (UAS).
    pub local_tag: ByteString,
    /// The peer's tag.
    pub remote_tag: ByteString,
}

/// The state of a dialog (§12).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum DialogState {
    /// Created by a provisional response (§12.1).
    Early,
    /// Created or confirmed by a 2xx (§12.1).
    Confirmed,
    /// Ended by BYE, by a failure of the INVITE, or by 481/408 (§12.2.1.2, §12.3).
    Terminated,
}

/// What went wrong with a message handed to the dialog layer. Errors caused by
/// the peer map to the response the request deserves ([`DialogError::status`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    /// A header the dialog needs is missing or malformed.
    #[error("{0}")]
    Malformed(#[from] ParseError),
    /// The response cannot create a dialog: 100, 3xx–6xx, or a provisional
    /// response without To tag (§12.1).
    #[error("response {0} does not create a dialog")]
    NotDialogCreating(u16),
    /// A tag the dialog needs is missing (From tag of a request, To tag of
    /// our response, §12.1.1).
    #[error("missing {0} tag")]
    MissingTag(&'static str),
    /// The request matches no dialog (§12.2.2): answer 481.
    #[error("no dialog for this request")]
    NoDialog,
    /// The request belongs to another dialog than the one it was given to.
    #[error("request belongs to another dialog")]
    WrongDialog,
    /// The request's CSeq is below the remote sequence number (§12.2.2): answer 500.
    #[error("CSeq {got} is below the remote sequence number {remote}")]
    OutOfOrder {
        /// The dialog's remote sequence number.
        remote: u32,
        /// The request's CSeq number.
        got: u32,
    },
    /// The dialog has ended.
    #[error("the dialog has terminated")]
    Terminated,
}

impl DialogError {
    /// The response a request that failed this way deserves (§12.2.2):
    /// 481 for no dialog, 500 for an out-of-order CSeq, 400 for a malformed
    /// request; `None` for errors that are not the peer's.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            DialogError::Malformed(_) | DialogError::MissingTag(_) => Some(StatusCode::BAD_REQUEST),
            DialogError::NoDialog | DialogError::Terminated => {
                Some(StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST)
            }
            DialogError::OutOfOrder { .. } => Some(StatusCode::SERVER_INTERNAL_ERROR),
            DialogError::NotDialogCreating(_) | DialogError::WrongDialog => None,
        }
    }
}

/// A dialog (§12): identifier, state, sequence numbers, local and remote URIs,
/// remote target and route set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dialog {
    id: DialogId,
    state: DialogState,
    local_seq: Option<u32>,
    remote_seq: Option<u32>,
    local_uri: NameAddr,
    remote_uri: NameAddr,
    remote_target: Uri,
    route_set: Vec<NameAddr>,
    secure: bool,
    /// CSeq number of the INVITE that created the dialog (UAC), to group
    /// forked early dialogs (§13.2.2.4).
    invite_seq: Option<u32>,
}

fn tag(h: &Headers, name: HeaderName) -> Result<Option<ByteString>, ParseError> {
    let a = if name == HeaderName::From {
        h.from()?
    } else {
        h.to()?
    };
    Ok(a.tag_bytes())
}

fn without_tag(mut a: NameAddr) -> NameAddr {
    a.params.remove("tag");
    a
}

/// The first Contact address URI, if any (§12.1.1, §12.1.2).
fn contact_uri(h: &Headers) -> Result<Option<Uri>, ParseError> {
    Ok(h.contacts()?
        .into_iter()
        .find_map(|c| c.address().map(|a| a.uri.clone())))
}

fn is_sips(uri: &Uri) -> bool {
    uri.as_sip().is_some_and(|u| u.secure)
}

/// Methods whose requests refresh the remote target (§12.2, RFC 3311 §5.1 UPDATE,
/// RFC 6665 §4.1.2 SUBSCRIBE and NOTIFY, RFC 3515 §2.4.5 REFER).
fn is_target_refresh(m: &Method) -> bool {
    matches!(
        m,
        Method::Invite | Method::Update | Method::Subscribe | Method::Notify | Method::Refer
    )
}

impl Dialog {
    /// The dialog the UAC creates from its request and a response with a To
    /// tag (§12.1.2): a 101–199 makes it early, a 2xx confirmed. The route set
    /// is the response's Record-Route reversed, the remote target its Contact
    /// (the Request-URI when a provisional has none), the local sequence number
    /// the request's CSeq. A 2xx without To tag (RFC 2543 peer) gives an empty
    /// remote tag.
    pub fn from_uac(request: &Request, response: &Response) -> Result<Dialog, DialogError> {
        let code = response.status.as_u16();
        if !(101..300).contains(&code) {
            return Err(DialogError::NotDialogCreating(code));
        }
        let rh = &response.headers;
        let remote_tag = match tag(rh, HeaderName::To)? {
            Some(t) => t,
            None if response.status.is_success() => ByteString::new(),
            None => return Err(DialogError::NotDialogCreating(code)),
        };
        let local_tag =
            tag(&request.headers, HeaderName::From)?.ok_or(DialogError::MissingTag("From"))?;
        let mut route_set = rh.record_routes()?;
        route_set.reverse();
        let remote_target = contact_uri(rh)?.unwrap_or_else(|| request.uri.clone());
        let cseq = request.headers.cseq()?;
        Ok(Dialog {
            id: DialogId {
                call_id: request.headers.call_id()?,
                local_tag,
                remote_tag,
            },
            state: if response.status.is_success() {
                DialogState::Confirmed
            } else {
                DialogState::Early
            },
            local_seq: Some(cseq.seq),
            remote_seq: None,
            local_uri: without_tag(request.headers.from()?),
            remote_uri: without_tag(request.headers.to()?),
            remote_target,
            route_set,
            secure: is_sips(&request.uri),
            invite_seq: (request.method == Method::Invite).then_some(cseq.seq),
        })
    }

    /// The dialog the UAS creates from a request and its own response, which
    /// carries our To tag (§12.1.1): the route set is the request's
    /// Record-Route in order, the remote target its Contact, the remote sequence
    /// number its CSeq; the local sequence number stays empty until we send.
    pub fn from_uas(request: &Request, response: &Response) -> Result<Dialog, DialogError> {
        let code = response.status.as_u16();
        if !(101..300).contains(&code) {
            return Err(DialogError::NotDialogCreating(code));
        }
        let h = &request.headers;
        let local_tag =
            tag(&response.headers, HeaderName::To)?.ok_or(DialogError::MissingTag("To"))?;
        // §12.1.1: an RFC 2543 UAC may send no From tag; the remote tag is then empty.
        let remote_tag = tag(h, HeaderName::From)?.unwrap_or_default();
        let remote_target = contact_uri(h)?.unwrap_or_else(|| {
            h.from()
                .map(|a| a.uri)
                .unwrap_or_else(|_| request.uri.clone())
        });
        Ok(Dialog {
            id: DialogId {
                call_id: h.call_id()?,
                local_tag,
                remote_tag,
            },
            state: if response.status.is_success() {
                DialogState::Confirmed
            } else {
                DialogState::Early
            },
            local_seq: None,
            remote_seq: Some(h.cseq()?.seq),
            local_uri: without_tag(h.to()?),
            remote_uri: without_tag(h.from()?),
            remote_target,
            route_set: h.record_routes()?,
            secure: is_sips(&request.uri),
            invite_seq: None,
        })
    }

    /// The dialog identifier.
    pub fn id(&self) -> &DialogId {
        &self.id
    }

    /// The state.
    pub fn state(&self) -> DialogState {
        self.state
    }

    /// CSeq number of our last request, if we sent one (§12.1).
    pub fn local_seq(&self) -> Option<u32> {
        self.local_seq
    }

    /// CSeq number of the peer's last request, if it sent one (§12.1).
    pub fn remote_seq(&self) -> Option<u32> {
        self.remote_seq
    }

    /// Our address (From of our requests), without tag.
    pub fn local_uri(&self) -> &NameAddr {
        &self.local_uri
    }

    /// The peer's address (To of our requests), without tag.
    pub fn remote_uri(&self) -> &NameAddr {
        &self.remote_uri
    }

    /// Where our in-dialog requests go: the peer's Contact (§12.1, §12.2.1.2).
    pub fn remote_target(&self) -> &Uri {
        &self.remote_target
    }

    /// The route set, in the order our requests visit it (§12.1).
    pub fn route_set(&self) -> &[NameAddr] {
        &self.route_set
    }

    /// Whether the dialog was set up over SIPS (§12.1.1, §12.1.2).
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Ends the dialog (after BYE, or when the TU gives up on it).
    pub fn terminate(&mut self) {
        self.state = DialogState::Terminated;
    }

    /// Request-URI and Route headers for a request in this dialog (§12.2.1.1):
    /// with no route set, the remote target and no Route; with a loose router
    /// first (`lr`), the remote target and the route set as Route; with a
    /// strict router first, that router's URI as Request-URI (stripped of the
    /// parameters a Request-URI may not carry) and the rest of the route set
    /// followed by the remote target as Route.
    fn target_and_routes(&self) -> (Uri, Vec<String>) {
        let Some(first) = self.route_set.first() else {
            return (self.remote_target.clone(), Vec::new());
        };
        let loose = first.uri.as_sip().is_some_and(|u| u.lr());
        if loose {
            let routes = self.route_set.iter().map(|r| r.to_string()).collect();
            return (self.remote_target.clone(), routes);
        }
        let mut uri = first.uri.clone();
        if let Uri::Sip(u) = &mut uri {
            // §19.1.1 Table 1: `method` and headers are not allowed in a Request-URI.
            u.params.remove("method");
            u.headers = None;
        }
        let mut routes: Vec<String> = self.route_set[1..].iter().map(|r| r.to_string()).collect();
        routes.push(NameAddr::new(self.remote_target.clone()).to_string());
        (uri, routes)
    }

    fn build(&self, method: Method, seq: u32) -> Request {
        let (uri, routes) = self.target_and_routes();
        let mut r = Request::new(method.clone(), uri);
        for route in routes {
            r.headers.push(HeaderName::Route, route);
        }
        r.headers.push(HeaderName::MaxForwards, "70");
        let mut to = self.remote_uri.clone();
        if !self.id.remote_tag.is_empty() {
            to.set_tag(&self.id.remote_tag);
        }
        r.headers.push_value(HeaderName::To, &to);
        let mut from = self.local_uri.clone();
        from.set_tag(&self.id.local_tag);
        r.headers.push_value(HeaderName::From, &from);
        r.headers.push(HeaderName::CallId, self.id.call_id.clone());
        r.headers
            .push_value(HeaderName::CSeq, &CSeq::new(seq, method));
        r
    }

    /// A request in this dialog (§12.2.1.1): the next local CSeq number (1 when
    /// we have sent none yet, §8.1.1.5), To, From and Call-ID of the dialog,
    /// Request-URI and Route from the remote target and route set (loose and
    /// strict routing). Via and Contact are left to the caller, which knows
    /// its transport address. For ACK use [`Dialog::new_ack`]; CANCEL comes
    /// from the transaction layer.
    pub fn new_request(&mut self, method: Method) -> Request {
        // §8.1.1.5: below 2^31.
        let seq = self
            .local_seq
            .map_or(1, |s| s.saturating_add(1).min((1 << 31) - 1));
        self.local_seq = Some(seq);
        self.build(method, seq)
    }

    /// The ACK for a 2xx to `invite` (§13.2.2.4): built like any in-dialog
    /// request but with the INVITE's CSeq number and method ACK, and with the
    /// INVITE's credentials (Authorization, Proxy-Authorization). The body (an
    /// SDP answer when the INVITE had no offer) is left to the caller, as are
    /// Via (a new branch) and Contact.
    pub fn new_ack(&self, invite: &Request) -> Request {
        let seq = invite
            .headers
            .cseq()
            .map(|c| c.seq)
            .unwrap_or_else(|_| self.local_seq.unwrap_or(1));
        let mut ack = self.build(Method::Ack, seq);
        for name in [HeaderName::Authorization, HeaderName::ProxyAuthorization] {
            for v in invite.headers.get_all(&name) {
                ack.headers.push(name.clone(), v.clone());
            }
        }
        ack
    }

    fn check_ids(&self, h: &Headers) -> Result<(), DialogError> {
        let call_id = h.call_id()?;
        let from = tag(h, HeaderName::From)?.unwrap_or_default();
        let to = tag(h, HeaderName::To)?.unwrap_or_default();
        if call_id != self.id.call_id || to != self.id.local_tag || from != self.id.remote_tag {
            return Err(DialogError::WrongDialog);
        }
        Ok(())
    }

    /// Checks a request the peer sent in this dialog (§12.2.2): a CSeq below
    /// the remote sequence number is out of order (answer 500); otherwise the
    /// remote sequence number moves up. ACK and CANCEL carry the CSeq of the
    /// request they belong to and are not checked. A target refresh request
    /// (re-INVITE, UPDATE, SUBSCRIBE, NOTIFY, REFER) with a Contact replaces
    /// the remote target; BYE terminates the dialog (§15.1.2).
    pub fn handle_request(&mut self, request: &Request) -> Result<(), DialogError> {
        if self.state == DialogState::Terminated {
            return Err(DialogError::Terminated);
        }
        self.check_ids(&request.headers)?;
        if matches!(request.method, Method::Ack | Method::Cancel) {
            return Ok(());
        }
        let seq = request.headers.cseq()?.seq;
        if let Some(remote) = self.remote_seq
            && seq < remote
        {
            return Err(DialogError::OutOfOrder { remote, got: seq });
        }
        self.remote_seq = Some(seq);
        if is_target_refresh(&request.method)
            && let Some(target) = contact_uri(&request.headers)?
        {
            self.remote_target = target;
        }
        if request.method == Method::Bye {
            self.state = DialogState::Terminated;
        }
        Ok(())
    }

    /// Takes in a response to a request we sent in (or to set up) this
    /// dialog: a 2xx to the INVITE confirms an early dialog and recomputes its
    /// route set (§13.2.2.4); a 2xx to a target refresh request replaces the
    /// remote target (§12.2.1.2), as does a provisional to the INVITE while
    /// early; a 481 or 408 terminates the dialog (§12.2.1.2), and so does a
    /// failure of the INVITE while early (§13.2.2.3) and a 2xx to BYE.
    pub fn handle_response(&mut self, request: &Request, response: &Response) {
        let status = response.status;
        let code = status.as_u16();
        if code == 481 || code == 408 {
            self.state = DialogState::Terminated;
            return;
        }
        let invite = request.method == Method::Invite;
        match self.state {
            DialogState::Early if invite => {
                if status.is_success() {
                    self.state = DialogState::Confirmed;
                    if let Ok(mut rr) = response.headers.record_routes() {
                        rr.reverse();
                        self.route_set = rr;
                    }
                    if let Ok(Some(t)) = contact_uri(&response.headers) {
                        self.remote_target = t;
                    }
                } else if status.is_provisional() {
                    if let Ok(Some(t)) = contact_uri(&response.headers) {
                        self.remote_target = t;
                    }
                } else {
                    self.state = DialogState::Terminated;
                }
            }
            DialogState::Confirmed | DialogState::Early if status.is_success() => {
                if request.method == Method::Bye {
                    self.state = DialogState::Terminated;
                } else if is_target_refresh(&request.method)
                    && let Ok(Some(t)) = contact_uri(&response.headers)
                {
                    self.remote_target = t;
                }
            }
            _ => {}
        }
    }
}

/// What a response to our INVITE did to the dialogs ([`Dialogs::handle_invite_response`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InviteOutcome {
    /// A 100, or a provisional without To tag: no dialog.
    NoDialog,
    /// A provisional created (or updated) this early dialog.
    Early(DialogId),
    /// A 2xx confirmed this dialog; `first` is false when another dialog of the
    /// same INVITE was confirmed before (a forked 2xx, §13.2.2.4: ACK it, and
    /// the TU will usually BYE it).
    Confirmed {
        /// The confirmed dialog.
        id: DialogId,
        /// Whether it is the first dialog of this INVITE to be confirmed.
        first: bool,
    },
    /// A failure response ended these early dialogs of the INVITE (§13.2.2.3).
    Failed(Vec<DialogId>),
}

/// The dialogs of one endpoint, by identifier, with the bookkeeping of forked
/// INVITEs (§12.1.2, §13.2.2.4).
#[derive(Clone, Debug, Default)]
pub struct Dialogs {
    dialogs: HashMap<DialogId, Dialog>,
}

fn request_id(h: &Headers) -> Option<DialogId> {
    Some(DialogId {
        call_id: h.call_id().ok()?,
        local_tag: tag(h, HeaderName::To).ok()??,
        remote_tag: tag(h, HeaderName::From).ok()?.unwrap_or_default(),
    })
}

fn response_id(h: &Headers) -> Option<DialogId> {
    Some(DialogId {
        call_id: h.call_id().ok()?,
        local_tag: tag(h, HeaderName::From).ok()??,
        remote_tag: tag(h, HeaderName::To).ok()?.unwrap_or_default(),
    })
}

impl Dialogs {
    /// No dialogs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of dialogs held (terminated ones until removed).
    pub fn len(&self) -> usize {
        self.dialogs.len()
    }

    /// Whether no dialog is held.
    pub fn is_empty(&self) -> bool {
        self.dialogs.is_empty()
    }

    /// Adds a dialog (replacing one with the same identifier); returns its id.
    pub fn insert(&mut self, dialog: Dialog) -> DialogId {
        let id = dialog.id.clone();
        self.dialogs.insert(id.clone(), dialog);
        id
    }

    /// A dialog by identifier.
    pub fn get(&self, id: &DialogId) -> Option<&Dialog> {
        self.dialogs.get(id)
    }

    /// A dialog by identifier, mutable.
    pub fn get_mut(&mut self, id: &DialogId) -> Option<&mut Dialog> {
        self.dialogs.get_mut(id)
    }

    /// Removes a dialog.
    pub fn remove(&mut self, id: &DialogId) -> Option<Dialog> {
        self.dialogs.remove(id)
    }

    /// All dialogs.
    pub fn iter(&self) -> impl Iterator<Item = &Dialog> {
        self.dialogs.values()
    }

    /// The dialog a request from the peer belongs to (§12.2.2: Call-ID, To tag
    /// as local tag, From tag as remote tag); `None` for requests outside a
    /// dialog (no To tag) or for unknown dialogs.
    pub fn find_for_request(&self, request: &Request) -> Option<&DialogId> {
        let id = request_id(&request.headers)?;
        self.dialogs.get_key_value(&id).map(|(k, _)| k)
    }

    /// The dialog a response to our request belongs to (From tag local, To tag remote).
    pub fn find_for_response(&self, response: &Response) -> Option<&DialogId> {
        let id = response_id(&response.headers)?;
        self.dialogs.get_key_value(&id).map(|(k, _)| k)
    }

    /// Whether a request is meant for a dialog (its To carries a tag, §12.2.2).
    pub fn is_in_dialog(request: &Request) -> bool {
        tag(&request.headers, HeaderName::To).is_ok_and(|t| t.is_some())
    }

    /// Checks an in-dialog request from the peer ([`Dialog::handle_request`])
    /// after finding its dialog; the error's [`DialogError::status`] is the
    /// response to send (481 when there is no such dialog).
    pub fn handle_request(&mut self, request: &Request) -> Result<DialogId, DialogError> {
        let id = request_id(&request.headers).ok_or(DialogError::NoDialog)?;
        let d = self.dialogs.get_mut(&id).ok_or(DialogError::NoDialog)?;
        d.handle_request(request)?;
        Ok(id)
    }

    /// Takes in a response to our dialog-creating INVITE (or a response to an
    /// in-dialog request, which is passed to its dialog). Each To tag of a
    /// provisional makes its own early dialog; the first 2xx confirms its
    /// dialog (creating it if needed) and later 2xx with other tags make more
    /// confirmed dialogs (§13.2.2.4); a failure ends all early dialogs of this
    /// INVITE (§13.2.2.3).
    pub fn handle_invite_response(
        &mut self,
        invite: &Request,
        response: &Response,
    ) -> Result<InviteOutcome, DialogError> {
        let status = response.status;
        let seq = invite.headers.cseq()?.seq;
        let local_tag =
            tag(&invite.headers, HeaderName::From)?.ok_or(DialogError::MissingTag("From"))?;
        let call_id = invite.headers.call_id()?;
        let same_invite = |d: &Dialog| {
            d.id.call_id == call_id && d.id.local_tag == local_tag && d.invite_seq == Some(seq)
        };
        if status.is_final() && !status.is_success() {
            let mut ended = Vec::new();
            for d in self.dialogs.values_mut() {
                if same_invite(d) && d.state == DialogState::Early {
                    d.state = DialogState::Terminated;
                    ended.push(d.id.clone());
                }
            }
            if let Some(id) = response_id(&response.headers)
                && let Some(d) = self.dialogs.get_mut(&id)
                && d.state != DialogState::Terminated
            {
                // A failure to a re-INVITE inside a confirmed dialog.
                d.handle_response(invite, response);
                if d.state == DialogState::Terminated {
                    ended.push(id);
                }
            }
            ended.sort_by(|a, b| a.remote_tag.cmp(&b.remote_tag));
            return Ok(InviteOutcome::Failed(ended));
        }
        if status.as_u16() == 100 {
            return Ok(InviteOutcome::NoDialog);
        }
        let Some(id) = response_id(&response.headers) else {
            return Ok(InviteOutcome::NoDialog);
        };
        if id.remote_tag.is_empty() && status.is_provisional() {
            return Ok(InviteOutcome::NoDialog);
        }
        let first = !self
            .dialogs
            .values()
            .any(|d| same_invite(d) && d.state == DialogState::Confirmed && d.id != id);
        match self.dialogs.get_mut(&id) {
            Some(d) => d.handle_response(invite, response),
            None => {
                let d = Dialog::from_uac(invite, response)?;
                self.dialogs.insert(id.clone(), d);
            }
        }
        Ok(if status.is_success() {
            InviteOutcome::Confirmed { id, first }
        } else {
            InviteOutcome::Early(id)
        })
    }

    /// The INVITE client transaction has ended (Timer M after the first 2xx,
    /// RFC 6026 §8.4): early dialogs of this INVITE that no 2xx confirmed are
    /// terminated (§13.2.2.4). Returns them.
    pub fn invite_finished(&mut self, invite: &Request) -> Vec<DialogId> {
        let (Ok(call_id), Ok(Some(local)), Ok(cseq)) = (
            invite.headers.call_id(),
            tag(&invite.headers, HeaderName::From),
            invite.headers.cseq(),
        ) else {
            return Vec::new();
        };
        let mut ended = Vec::new();
        for d in self.dialogs.values_mut() {
            if d.id.call_id == call_id
                && d.id.local_tag == local
                && d.invite_seq == Some(cseq.seq)
                && d.state == DialogState::Early
            {
                d.state = DialogState::Terminated;
                ended.push(d.id.clone());
            }
        }
        ended.sort_by(|a, b| a.remote_tag.cmp(&b.remote_tag));
        ended
    }

    /// Removes all terminated dialogs; returns how many.
    pub fn purge_terminated(&mut self) -> usize {
        let before = self.dialogs.len();
        self.dialogs
            .retain(|_, d| d.state != DialogState::Terminated);
        before - self.dialogs.len()
    }
}

/// 481 Call/Transaction Does Not Exist for a request that matches no dialog
/// (§12.2.2), with a To tag derived from the request when it has none.
pub fn no_dialog_response(request: &Request) -> Response {
    error_response(request, StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST)
}

/// A final response with `status` to `request`, copying the §8.2.6.2 headers;
/// the request's To tag is kept (in-dialog requests carry one).
pub fn error_response(request: &Request, status: StatusCode) -> Response {
    let mut r = Response::from_request(request, status);
    if tag(&request.headers, HeaderName::To)
        .ok()
        .flatten()
        .is_none()
    {
        // §8.2.6.2 wants a tag; without an RNG here derive one from the Call-ID and CSeq.
        let seed = format!(
            "{}/{}",
            request
                .headers
                .get(&HeaderName::CallId)
                .map_or("", |v| &**v),
            request.headers.get(&HeaderName::CSeq).map_or("", |v| &**v)
        );
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in seed.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let _ = r.set_to_tag(&format!("{h:016x}"));
    }
    r
}

/// A new tag for From (UAC) or To (UAS): 64 random bits in hex (§19.3 asks for
/// at least 32).
pub fn new_tag(rng: &mut impl rand_core::RngCore) -> String {
    format!("{:016x}", rng.next_u64())
}

/// A new Call-ID: 128 random bits in hex, `@host` when `host` is not empty
/// (§8.1.1.4, §20.8: globally unique, cryptographically random recommended).
pub fn new_call_id(rng: &mut impl rand_core::RngCore, host: &str) -> String {
    let id = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
    if host.is_empty() {
        id
    } else {
        format!("{id}@{host}")
    }
}
