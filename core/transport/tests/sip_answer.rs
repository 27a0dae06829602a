//! `sip-answer` behaves as its documentation says, driven by an in-process
//! UAC on our endpoint: OPTIONS, CANCEL before the answer (487), a full call
//! with re-INVITE, an unsupported in-dialog method, BYE, and requests for
//! dialogs that do not exist (481).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{free_port, start_answer};
use tokio::time::timeout;
use vaxel_sip::dialog::Dialog;
use vaxel_sip::msg::{HeaderName, MediaType, Method, NameAddr, Request, Response, Uri};
use vaxel_sip::transaction::{TxEvent, TxKey};
use vaxel_transport::{
    Endpoint, EndpointConfig, EndpointHandle, Events, SocketsConfig, Target, TransportKind,
};

const OFFER: &str = "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

struct Uac {
    handle: EndpointHandle,
    events: Events,
    target: Target,
    uri: Uri,
}

impl Uac {
    fn request(&self, method: Method, call_id: &str, cseq: u32, to_tag: Option<&str>) -> Request {
        let mut r = Request::new(method.clone(), self.uri.clone());
        r.headers
            .push_value(HeaderName::Via, &self.handle.via(TransportKind::Udp));
        r.headers.push(HeaderName::MaxForwards, "70");
        let from: Uri = "sip:uac@127.0.0.1".parse().unwrap();
        r.headers
            .push_value(HeaderName::From, &NameAddr::new(from).with_tag("uac1"));
        let mut to = NameAddr::new(self.uri.clone());
        if let Some(t) = to_tag {
            to = to.with_tag(t);
        }
        r.headers.push_value(HeaderName::To, &to);
        r.headers.push(HeaderName::CallId, call_id.to_owned());
        r.headers
            .push(HeaderName::CSeq, format!("{cseq} {}", method.as_str()));
        let contact = self.handle.contact_uri("uac", TransportKind::Udp);
        r.headers.push(HeaderName::Contact, format!("<{contact}>"));
        if method == Method::Invite {
            r.set_body(&MediaType::new("application", "sdp").unwrap(), OFFER.into());
        }
        r
    }

    async fn send(&self, r: Request) -> TxKey {
        self.handle
            .send_request(r, self.target.clone())
            .await
            .unwrap()
    }

    /// The next response of `tx` (provisional ones only when `provisional`).
    async fn response(&mut self, tx: TxKey, provisional: bool) -> Response {
        loop {
            let ev = timeout(Duration::from_secs(10), self.events.recv())
                .await
                .expect("no event in 10 s")
                .expect("endpoint stopped");
            if let TxEvent::Response { tx: t, response } = ev
                && t == tx
                && (provisional || response.status.is_final())
                && response.status.as_u16() != 100
            {
                return response;
            }
        }
    }
}

fn code(r: &Response) -> u16 {
    r.status.as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_answer_follows_its_script() {
    let port = free_port();
    let _answer = start_answer(&["--udp", &port.to_string(), "--ring-ms", "300"]);
    let (handle, events) = Endpoint::start(EndpointConfig {
        sockets: SocketsConfig {
            udp: vec!["127.0.0.1:0".parse().unwrap()],
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut uac = Uac {
        handle,
        events,
        target: Target::new(TransportKind::Udp, addr),
        uri: format!("sip:answer@{addr}").parse().unwrap(),
    };

    // OPTIONS outside a dialog: 200 with Allow.
    let tx = uac
        .send(uac.request(Method::Options, "opt-1", 1, None))
        .await;
    let r = uac.response(tx, false).await;
    assert_eq!(code(&r), 200);
    assert!(
        r.headers
            .get(&HeaderName::Allow)
            .is_some_and(|a| a.contains("INVITE"))
    );

    // CANCEL while ringing: the INVITE gets 487 (§9.2).
    let invite = uac.request(Method::Invite, "cancel-1", 1, None);
    let tx = uac.send(invite).await;
    assert_eq!(code(&uac.response(tx, true).await), 180);
    let cancel = uac.handle.cancel(tx).await.unwrap();
    assert_eq!(code(&uac.response(cancel, false).await), 200);
    assert_eq!(code(&uac.response(tx, false).await), 487);

    // A whole call with a re-INVITE and an unsupported in-dialog method.
    let invite = uac.request(Method::Invite, "call-1", 1, None);
    let tx = uac.send(invite.clone()).await;
    let ok = uac.response(tx, false).await;
    assert_eq!(code(&ok), 200);
    assert!(String::from_utf8_lossy(&ok.body).contains("PCMU/8000"));
    let mut dialog = Dialog::from_uac(&invite, &ok).unwrap();
    let mut ack = dialog.new_ack(&invite);
    ack.headers.insert_first(
        HeaderName::Via,
        uac.handle.via(TransportKind::Udp).to_string(),
    );
    uac.handle.send_ack(ack, uac.target.clone()).await.unwrap();

    let mut reinvite = dialog.new_request(Method::Invite);
    reinvite.headers.insert_first(
        HeaderName::Via,
        uac.handle.via(TransportKind::Udp).to_string(),
    );
    reinvite.set_body(&MediaType::new("application", "sdp").unwrap(), OFFER.into());
    let tx = uac.send(reinvite.clone()).await;
    let ok2 = uac.response(tx, false).await;
    assert_eq!(code(&ok2), 200);
    let mut ack = dialog.new_ack(&reinvite);
    ack.headers.insert_first(
        HeaderName::Via,
        uac.handle.via(TransportKind::Udp).to_string(),
    );
    uac.handle.send_ack(ack, uac.target.clone()).await.unwrap();

    let mut info = dialog.new_request(Method::Info);
    info.headers.insert_first(
        HeaderName::Via,
        uac.handle.via(TransportKind::Udp).to_string(),
    );
    let tx = uac.send(info).await;
    assert_eq!(code(&uac.response(tx, false).await), 405);

    let mut bye = dialog.new_request(Method::Bye);
    bye.headers.insert_first(
        HeaderName::Via,
        uac.handle.via(TransportKind::Udp).to_string(),
    );
    let tx = uac.send(bye).await;
    assert_eq!(code(&uac.response(tx, false).await), 200);

    // The dialog is gone: another BYE, and a request with a made-up tag, get 481.
    let mut bye = dialog.new_request(Method::Bye);
    bye.headers.insert_first(
        HeaderName::Via,
        uac.handle.via(TransportKind::Udp).to_string(),
    );
    let tx = uac.send(bye).await;
    assert_eq!(code(&uac.response(tx, false).await), 481);
    let stranger = uac.request(Method::Bye, "nobody", 5, Some("no-such-tag"));
    let tx = uac.send(stranger).await;
    assert_eq!(code(&uac.response(tx, false).await), 481);
    uac.handle.stop().await;
}
