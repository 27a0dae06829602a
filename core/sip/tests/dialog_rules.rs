//! Dialogs (RFC 3261 §12, §13.2.2.4): creation on both sides, route sets, loose
//! and strict routing, CSeq rules, target refresh, forking, 481.

mod transaction_support;

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use transaction_support::parse;
use vaxel_sip::dialog::{
    Dialog, DialogError, DialogState, Dialogs, InviteOutcome, new_call_id, new_tag,
    no_dialog_response,
};
use vaxel_sip::msg::{HeaderName, Message, Method, Request, Response, StatusCode};

fn invite() -> Request {
    let Message::Request(r) = parse(
        "INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8
Max-Forwards: 70
To: Bob <sip:bob@biloxi.example.com>
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710
CSeq: 314159 INVITE
Contact: <sip:alice@pc33.atlanta.example.com>
Record-Route: <sip:p2.example.com;lr>
Record-Route: <sip:p1.example.com;lr>
Content-Length: 0

",
    ) else {
        unreachable!()
    };
    r
}

/// A response to the INVITE as it reaches the UAC through p1 and p2 (Record-Route
/// in the order the proxies inserted them: p1 nearest the UAS first... here as given).
fn answer(code: u16, to_tag: &str, contact: &str) -> Response {
    let inv = invite();
    let mut r = Response::from_request(&inv, StatusCode::new(code).unwrap());
    r.set_to_tag(to_tag).unwrap();
    r.headers.push(HeaderName::Contact, contact);
    r
}

fn uac_dialog() -> Dialog {
    Dialog::from_uac(&invite(), &answer(200, "a6c85cf", "<sip:bob@192.0.2.4>")).unwrap()
}

fn routes(r: &Request) -> Vec<String> {
    r.headers
        .get_all(&HeaderName::Route)
        .map(|v| v.to_string())
        .collect()
}

#[test]
fn uac_dialog_from_2xx_reverses_record_route() {
    let d = uac_dialog();
    assert_eq!(d.state(), DialogState::Confirmed);
    assert_eq!(d.id().call_id, "a84b4c76e66710");
    assert_eq!(d.id().local_tag, "1928301774");
    assert_eq!(d.id().remote_tag, "a6c85cf");
    assert_eq!(d.local_seq(), Some(314159));
    assert_eq!(d.remote_seq(), None);
    assert_eq!(d.remote_target().to_string(), "sip:bob@192.0.2.4");
    let rs: Vec<String> = d.route_set().iter().map(|r| r.to_string()).collect();
    assert_eq!(rs, ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]);
    assert!(!d.secure());
}

#[test]
fn uac_dialog_from_provisional_is_early_and_needs_a_tag() {
    let d = Dialog::from_uac(&invite(), &answer(180, "x1", "<sip:bob@192.0.2.4>")).unwrap();
    assert_eq!(d.state(), DialogState::Early);
    let mut no_tag = Response::from_request(&invite(), StatusCode::RINGING);
    no_tag
        .headers
        .push(HeaderName::Contact, "<sip:bob@192.0.2.4>");
    assert_eq!(
        Dialog::from_uac(&invite(), &no_tag),
        Err(DialogError::NotDialogCreating(180))
    );
    assert_eq!(
        Dialog::from_uac(&invite(), &answer(486, "x", "<sip:b@h>")),
        Err(DialogError::NotDialogCreating(486))
    );
    // A 2xx without To tag from an RFC 2543 UAS: empty remote tag (§12.1.2).
    let mut old = Response::from_request(&invite(), StatusCode::OK);
    old.headers.push(HeaderName::Contact, "<sip:bob@192.0.2.4>");
    assert_eq!(
        Dialog::from_uac(&invite(), &old).unwrap().id().remote_tag,
        ""
    );
}

#[test]
fn uas_dialog_keeps_record_route_order_and_takes_the_remote_cseq() {
    let inv = invite();
    let mut ok = Response::from_request(&inv, StatusCode::OK);
    ok.set_to_tag("bobtag").unwrap();
    let mut d = Dialog::from_uas(&inv, &ok).unwrap();
    assert_eq!(d.state(), DialogState::Confirmed);
    assert_eq!(d.id().local_tag, "bobtag");
    assert_eq!(d.id().remote_tag, "1928301774");
    assert_eq!(d.remote_seq(), Some(314159));
    assert_eq!(d.local_seq(), None);
    assert_eq!(
        d.remote_target().to_string(),
        "sip:alice@pc33.atlanta.example.com"
    );
    let rs: Vec<String> = d.route_set().iter().map(|r| r.to_string()).collect();
    assert_eq!(rs, ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]);
    // Bob's BYE: From is Bob with his tag, To is Alice with hers, a first CSeq.
    let bye = d.new_request(Method::Bye);
    assert_eq!(bye.uri.to_string(), "sip:alice@pc33.atlanta.example.com");
    assert_eq!(bye.headers.from().unwrap().tag(), Some("bobtag"));
    assert_eq!(
        bye.headers.from().unwrap().uri.to_string(),
        "sip:bob@biloxi.example.com"
    );
    assert_eq!(bye.headers.to().unwrap().tag(), Some("1928301774"));
    assert_eq!(bye.headers.cseq().unwrap().seq, 1);
    assert_eq!(
        routes(&bye),
        ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    );
    // Our response must carry our tag.
    let untagged = Response::from_request(&inv, StatusCode::OK);
    assert_eq!(
        Dialog::from_uas(&inv, &untagged),
        Err(DialogError::MissingTag("To"))
    );
}

#[test]
fn loose_routing_keeps_the_remote_target_as_request_uri() {
    let mut d = uac_dialog();
    let bye = d.new_request(Method::Bye);
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.uri.to_string(), "sip:bob@192.0.2.4");
    assert_eq!(
        routes(&bye),
        ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    );
    assert_eq!(bye.headers.cseq().unwrap().seq, 314160);
    assert_eq!(bye.headers.cseq().unwrap().method, Method::Bye);
    assert_eq!(bye.headers.call_id().unwrap(), "a84b4c76e66710");
    assert_eq!(bye.headers.to().unwrap().tag(), Some("a6c85cf"));
    assert_eq!(bye.headers.from().unwrap().tag(), Some("1928301774"));
    assert_eq!(bye.headers.max_forwards().unwrap(), Some(70));
    assert!(
        !bye.headers.contains(&HeaderName::Via),
        "Via is the caller's"
    );
    // The local CSeq keeps increasing.
    assert_eq!(
        d.new_request(Method::Info).headers.cseq().unwrap().seq,
        314161
    );
}

#[test]
fn strict_routing_puts_the_first_route_in_the_request_uri() {
    // §12.2.1.1 example: route set <sip:p1>, <sip:p2;lr>... with p1 strict.
    let mut inv = invite();
    inv.headers.remove(&HeaderName::RecordRoute);
    let mut ok = answer(200, "t", "<sip:bob@192.0.2.4>");
    ok.headers.remove(&HeaderName::RecordRoute);
    ok.headers
        .push(HeaderName::RecordRoute, "<sip:p3.example.com;lr>");
    ok.headers.push(
        HeaderName::RecordRoute,
        "<sip:p2.example.com;method=INVITE>",
    );
    ok.headers
        .push(HeaderName::RecordRoute, "<sip:p1.example.com>");
    let mut d = Dialog::from_uac(&inv, &ok).unwrap();
    let r = d.new_request(Method::Bye);
    assert_eq!(r.uri.to_string(), "sip:p1.example.com");
    assert_eq!(
        routes(&r),
        [
            "<sip:p2.example.com;method=INVITE>",
            "<sip:p3.example.com;lr>",
            "<sip:bob@192.0.2.4>"
        ]
    );
    // A strict router whose URI carries `method`: stripped from the Request-URI.
    let mut ok = answer(200, "t", "<sip:bob@192.0.2.4>");
    ok.headers.remove(&HeaderName::RecordRoute);
    ok.headers.push(
        HeaderName::RecordRoute,
        "<sip:p9.example.com;method=INVITE>",
    );
    let mut d = Dialog::from_uac(&inv, &ok).unwrap();
    assert_eq!(
        d.new_request(Method::Bye).uri.to_string(),
        "sip:p9.example.com"
    );
}

#[test]
fn no_route_set_means_no_route_header() {
    let mut inv = invite();
    inv.headers.remove(&HeaderName::RecordRoute);
    let mut ok = answer(200, "t", "<sip:bob@192.0.2.4>");
    ok.headers.remove(&HeaderName::RecordRoute);
    let mut d = Dialog::from_uac(&inv, &ok).unwrap();
    assert!(d.route_set().is_empty());
    let r = d.new_request(Method::Bye);
    assert!(routes(&r).is_empty());
    assert_eq!(r.uri.to_string(), "sip:bob@192.0.2.4");
}

#[test]
fn ack_for_2xx_has_the_invite_cseq_and_credentials() {
    let mut inv = invite();
    inv.headers.push(
        HeaderName::ProxyAuthorization,
        "Digest username=\"alice\", realm=\"atlanta.example.com\", nonce=\"x\", uri=\"sip:bob@biloxi.example.com\", response=\"0123\"",
    );
    let mut d = uac_dialog();
    d.new_request(Method::Info); // the local CSeq moved on; the ACK does not follow it
    let ack = d.new_ack(&inv);
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.headers.cseq().unwrap().seq, 314159);
    assert_eq!(ack.headers.cseq().unwrap().method, Method::Ack);
    assert_eq!(ack.uri.to_string(), "sip:bob@192.0.2.4");
    assert_eq!(routes(&ack).len(), 2);
    assert!(ack.headers.contains(&HeaderName::ProxyAuthorization));
}

fn from_alice(method: &str, seq: u32, contact: Option<&str>) -> Request {
    let contact = contact
        .map(|c| format!("Contact: {c}\n"))
        .unwrap_or_default();
    let Message::Request(r) = parse(&format!(
        "{method} sip:bob@192.0.2.4 SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK{seq}{method}
To: Bob <sip:bob@biloxi.example.com>;tag=bobtag
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710
CSeq: {seq} {method}
{contact}
"
    )) else {
        unreachable!()
    };
    r
}

fn uas_dialog() -> Dialog {
    let inv = invite();
    let mut ok = Response::from_request(&inv, StatusCode::OK);
    ok.set_to_tag("bobtag").unwrap();
    Dialog::from_uas(&inv, &ok).unwrap()
}

#[test]
fn remote_cseq_lower_is_out_of_order_and_maps_to_500() {
    let mut d = uas_dialog();
    d.handle_request(&from_alice("INFO", 314160, None)).unwrap();
    assert_eq!(d.remote_seq(), Some(314160));
    let err = d
        .handle_request(&from_alice("INFO", 314150, None))
        .unwrap_err();
    assert_eq!(
        err,
        DialogError::OutOfOrder {
            remote: 314160,
            got: 314150
        }
    );
    assert_eq!(err.status(), Some(StatusCode::SERVER_INTERNAL_ERROR));
    assert_eq!(d.remote_seq(), Some(314160));
    // ACK carries the INVITE's (lower) CSeq and is not checked.
    d.handle_request(&from_alice("ACK", 314159, None)).unwrap();
    // Equal or higher is fine; gaps too (§12.2.2).
    d.handle_request(&from_alice("INFO", 314200, None)).unwrap();
    assert_eq!(d.remote_seq(), Some(314200));
}

#[test]
fn target_refresh_replaces_the_remote_target() {
    let mut d = uas_dialog();
    // A re-INVITE with a new Contact moves the target.
    d.handle_request(&from_alice(
        "INVITE",
        314160,
        Some("<sip:alice@198.51.100.9:5070>"),
    ))
    .unwrap();
    assert_eq!(d.remote_target().to_string(), "sip:alice@198.51.100.9:5070");
    // INFO is no target refresh.
    d.handle_request(&from_alice("INFO", 314161, Some("<sip:alice@elsewhere>")))
        .unwrap();
    assert_eq!(d.remote_target().to_string(), "sip:alice@198.51.100.9:5070");
    // UPDATE is.
    d.handle_request(&from_alice(
        "UPDATE",
        314162,
        Some("<sip:alice@203.0.113.1>"),
    ))
    .unwrap();
    assert_eq!(d.remote_target().to_string(), "sip:alice@203.0.113.1");

    // UAC side: a 2xx to our re-INVITE refreshes too.
    let mut d = uac_dialog();
    let reinvite = d.new_request(Method::Invite);
    let mut ok = Response::from_request(&reinvite, StatusCode::OK);
    ok.headers
        .push(HeaderName::Contact, "<sip:bob@198.51.100.20>");
    d.handle_response(&reinvite, &ok);
    assert_eq!(d.remote_target().to_string(), "sip:bob@198.51.100.20");
    assert_eq!(d.state(), DialogState::Confirmed);
    // A 481 ends the dialog (§12.2.1.2).
    let info = d.new_request(Method::Info);
    d.handle_response(
        &info,
        &Response::from_request(&info, StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST),
    );
    assert_eq!(d.state(), DialogState::Terminated);
}

#[test]
fn bye_terminates_and_unknown_dialogs_get_481() {
    let mut dialogs = Dialogs::new();
    let id = dialogs.insert(uas_dialog());
    let bye = from_alice("BYE", 314160, None);
    assert_eq!(dialogs.find_for_request(&bye), Some(&id));
    assert_eq!(dialogs.handle_request(&bye), Ok(id.clone()));
    assert_eq!(dialogs.get(&id).unwrap().state(), DialogState::Terminated);
    // Another BYE to the ended dialog, or one with an unknown tag: 481.
    let again = dialogs.handle_request(&from_alice("BYE", 314161, None));
    assert_eq!(
        again.unwrap_err().status(),
        Some(StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST)
    );
    let mut stranger = from_alice("BYE", 1, None);
    stranger
        .headers
        .set(HeaderName::To, "<sip:bob@biloxi.example.com>;tag=nobody");
    assert_eq!(dialogs.find_for_request(&stranger), None);
    assert_eq!(
        dialogs.handle_request(&stranger),
        Err(DialogError::NoDialog)
    );
    let r = no_dialog_response(&stranger);
    assert_eq!(r.status, StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST);
    assert_eq!(r.headers.to().unwrap().tag(), Some("nobody"));
    assert_eq!(r.headers.cseq().unwrap().method, Method::Bye);
    assert_eq!(dialogs.purge_terminated(), 1);
    assert!(dialogs.is_empty());
}

#[test]
fn forked_invite_makes_several_early_dialogs_and_the_first_2xx_confirms_one() {
    let inv = invite();
    let mut dialogs = Dialogs::new();
    assert_eq!(
        dialogs.handle_invite_response(&inv, &Response::from_request(&inv, StatusCode::TRYING)),
        Ok(InviteOutcome::NoDialog)
    );
    let e1 = dialogs
        .handle_invite_response(&inv, &answer(180, "fork1", "<sip:bob@192.0.2.4>"))
        .unwrap();
    let e2 = dialogs
        .handle_invite_response(&inv, &answer(183, "fork2", "<sip:bob@192.0.2.5>"))
        .unwrap();
    let (InviteOutcome::Early(id1), InviteOutcome::Early(id2)) = (e1, e2) else {
        panic!()
    };
    assert_ne!(id1, id2);
    assert_eq!(dialogs.len(), 2);
    // A later provisional on fork 1 with a new Contact updates its target.
    dialogs
        .handle_invite_response(&inv, &answer(180, "fork1", "<sip:bob@192.0.2.44>"))
        .unwrap();
    assert_eq!(
        dialogs.get(&id1).unwrap().remote_target().to_string(),
        "sip:bob@192.0.2.44"
    );
    // Fork 2 answers first; its route set is recomputed from the 2xx (§13.2.2.4).
    let mut ok2 = answer(200, "fork2", "<sip:bob@192.0.2.5>");
    ok2.headers.remove(&HeaderName::RecordRoute);
    ok2.headers
        .push(HeaderName::RecordRoute, "<sip:only.example.com;lr>");
    assert_eq!(
        dialogs.handle_invite_response(&inv, &ok2),
        Ok(InviteOutcome::Confirmed {
            id: id2.clone(),
            first: true
        })
    );
    let d2 = dialogs.get(&id2).unwrap();
    assert_eq!(d2.state(), DialogState::Confirmed);
    assert_eq!(d2.route_set().len(), 1);
    // The 2xx from fork 1 arrives too: confirmed, but not first — ACK and BYE it.
    assert_eq!(
        dialogs.handle_invite_response(&inv, &answer(200, "fork1", "<sip:bob@192.0.2.4>")),
        Ok(InviteOutcome::Confirmed {
            id: id1.clone(),
            first: false
        })
    );
    // A third fork only ever rang; when the INVITE transaction ends, its early
    // dialog goes (§13.2.2.4).
    let InviteOutcome::Early(id3) = dialogs
        .handle_invite_response(&inv, &answer(180, "fork3", "<sip:bob@192.0.2.6>"))
        .unwrap()
    else {
        panic!()
    };
    // A 2xx with a tag never seen makes a new confirmed dialog directly.
    let InviteOutcome::Confirmed { id: id4, first } = dialogs
        .handle_invite_response(&inv, &answer(200, "fork4", "<sip:bob@192.0.2.7>"))
        .unwrap()
    else {
        panic!()
    };
    assert!(!first);
    assert_eq!(dialogs.get(&id4).unwrap().state(), DialogState::Confirmed);
    assert_eq!(dialogs.invite_finished(&inv), std::slice::from_ref(&id3));
    assert_eq!(dialogs.get(&id3).unwrap().state(), DialogState::Terminated);
}

#[test]
fn a_failure_ends_all_early_dialogs_of_the_invite() {
    let inv = invite();
    let mut dialogs = Dialogs::new();
    for t in ["f1", "f2"] {
        dialogs
            .handle_invite_response(&inv, &answer(180, t, "<sip:bob@192.0.2.4>"))
            .unwrap();
    }
    let InviteOutcome::Failed(ended) = dialogs
        .handle_invite_response(&inv, &answer(486, "f2", "<sip:bob@192.0.2.4>"))
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(ended.len(), 2);
    assert!(dialogs.iter().all(|d| d.state() == DialogState::Terminated));
}

#[test]
fn responses_find_their_dialog() {
    let mut dialogs = Dialogs::new();
    let id = dialogs.insert(uac_dialog());
    let d = dialogs.get_mut(&id).unwrap();
    let bye = d.new_request(Method::Bye);
    let mut ok = Response::from_request(&bye, StatusCode::OK);
    assert_eq!(dialogs.find_for_response(&ok), Some(&id));
    ok.headers
        .set(HeaderName::To, "<sip:bob@biloxi.example.com>;tag=zzz");
    assert_eq!(dialogs.find_for_response(&ok), None);
    let ok = Response::from_request(&bye, StatusCode::OK);
    dialogs.get_mut(&id).unwrap().handle_response(&bye, &ok);
    assert_eq!(dialogs.get(&id).unwrap().state(), DialogState::Terminated);
    assert!(Dialogs::is_in_dialog(&bye));
    assert!(!Dialogs::is_in_dialog(&invite()));
}

#[test]
fn tags_and_call_ids_come_from_the_injected_rng() {
    let mut a = ChaCha8Rng::seed_from_u64(1);
    let mut b = ChaCha8Rng::seed_from_u64(1);
    let t = new_tag(&mut a);
    assert_eq!(t, new_tag(&mut b));
    assert_eq!(t.len(), 16);
    assert!(t.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(t, new_tag(&mut a));
    let c = new_call_id(&mut a, "pc33.atlanta.example.com");
    assert!(c.ends_with("@pc33.atlanta.example.com"));
    assert_eq!(c.len(), 32 + 1 + "pc33.atlanta.example.com".len());
    assert!(!new_call_id(&mut a, "").contains('@'));
    let branch = vaxel_sip::transaction::new_branch(&mut a);
    assert!(branch.starts_with("z9hG4bK") && branch.len() == 7 + 24);
}
