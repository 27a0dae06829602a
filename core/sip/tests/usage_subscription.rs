//! SUBSCRIBE/NOTIFY (RFC 6665) between a subscriber and a notifier, and MESSAGE both ways.

mod usage_support;

use std::time::Duration;

use bytes::Bytes;
use usage_support::{Ev, Sim, na, rng, uri};
use vaxel_sip::usage::body::Pidf;
use vaxel_sip::usage::message::PagerEvent;
use vaxel_sip::usage::subscription::{
    NotifierEvent, SubState, Subscriber, SubscriberConfig, SubscriberEvent,
};
use vaxel_testkit::LinkConditions;

fn pair() -> Sim {
    let mut sim = Sim::new(1, LinkConditions::default());
    sim.add("alice", "192.0.2.1:5060", "alice");
    sim.add("bob", "192.0.2.2:5060", "bob");
    sim
}

fn pidf(open: bool, note: &str) -> Bytes {
    Bytes::from(
        Pidf {
            entity: "sip:bob@example.com".into(),
            open,
            note: Some(note.into()),
        }
        .to_xml(),
    )
}

fn subscribe(sim: &mut Sim, expires: u32) {
    let cfg = SubscriberConfig {
        local: sim.eps[0].local.clone(),
        from: na("sip:alice@example.com"),
        auth: None,
        event: "presence".into(),
        accept: "application/pidf+xml".into(),
        expires,
    };
    let now = sim.now();
    let s = Subscriber::subscribe(
        now,
        cfg,
        rng(3),
        uri("sip:bob@192.0.2.2:5060"),
        na("sip:bob@example.com"),
    );
    sim.eps[0].subs.push(s);
    sim.run_for(Duration::from_millis(100));
    let now = sim.now();
    assert!(matches!(
        sim.eps[1].events.last(),
        Some((_, Ev::Notif(0, NotifierEvent::Requested { event, expires: Some(_), .. }))) if event == "presence"
    ));
    sim.eps[1].notifiers[0].accept(now, 3600, true, "application/pidf+xml", pidf(true, "here"));
    sim.run_for(Duration::from_millis(200));
}

fn sub_events(sim: &Sim) -> Vec<SubscriberEvent> {
    sim.eps[0]
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Ev::Sub(0, e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn notif_events(sim: &Sim) -> Vec<NotifierEvent> {
    sim.eps[1]
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Ev::Notif(0, e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn notified_bodies(sim: &Sim) -> Vec<Pidf> {
    sub_events(sim)
        .into_iter()
        .filter_map(|e| match e {
            SubscriberEvent::Notify { body, .. } => Pidf::parse(&body),
            _ => None,
        })
        .collect()
}

#[test]
fn subscribe_notify_change_refresh_unsubscribe() {
    let mut sim = pair();
    subscribe(&mut sim, 120);
    assert!(sub_events(&sim).contains(&SubscriberEvent::Accepted { expires: 120 }));
    assert_eq!(*sim.eps[0].subs[0].state(), SubState::Active);
    assert_eq!(notified_bodies(&sim).len(), 1);
    // A change is notified.
    let now = sim.now();
    sim.eps[1].notifiers[0].notify(
        now,
        true,
        "application/pidf+xml",
        pidf(false, "in a meeting"),
    );
    sim.run_for(Duration::from_secs(1));
    let bodies = notified_bodies(&sim);
    assert_eq!(
        bodies.last().map(|p| (p.open, p.note.clone())),
        Some((false, Some("in a meeting".into())))
    );
    // The subscriber refreshes before 120 s (at 108 s); the notifier answers with a NOTIFY.
    sim.run_for(Duration::from_secs(200));
    let refreshes = notif_events(&sim)
        .iter()
        .filter(|e| matches!(e, NotifierEvent::Refreshed { expires: 120 }))
        .count();
    assert!(refreshes >= 1, "{:?}", notif_events(&sim));
    assert_eq!(*sim.eps[1].notifiers[0].state(), SubState::Active);
    // Unsubscribe: Expires 0, final NOTIFY terminated.
    let now = sim.now();
    sim.eps[0].subs[0].unsubscribe(now);
    sim.run_for(Duration::from_secs(2));
    assert!(matches!(
        sub_events(&sim).last(),
        Some(SubscriberEvent::Terminated { .. })
    ));
    assert_eq!(*sim.eps[1].notifiers[0].state(), SubState::Terminated);
    assert!(notif_events(&sim).contains(&NotifierEvent::Terminated {
        reason: "unsubscribed".into()
    }));
}

#[test]
fn notifier_expires_a_subscription_that_is_not_refreshed() {
    let mut sim = pair();
    subscribe(&mut sim, 60);
    // The subscriber's refreshes are lost from now on.
    sim.net.set_link(
        "192.0.2.1:5060".parse().unwrap(),
        "192.0.2.2:5060".parse().unwrap(),
        LinkConditions::dead(),
    );
    sim.run_for(Duration::from_secs(120));
    assert!(notif_events(&sim).contains(&NotifierEvent::Terminated {
        reason: "timeout".into()
    }));
    let ev = sub_events(&sim);
    // The final NOTIFY (terminated;reason=timeout) reached the subscriber.
    assert!(
        ev.iter().any(
            |e| matches!(e, SubscriberEvent::Terminated { reason: Some(r), .. } if r == "timeout")
        ),
        "{ev:?}"
    );
}

#[test]
fn notifier_terminates_with_reason() {
    let mut sim = pair();
    subscribe(&mut sim, 600);
    let now = sim.now();
    sim.eps[1].notifiers[0].terminate(now, "noresource");
    sim.run_for(Duration::from_secs(1));
    assert!(sub_events(&sim).iter().any(
        |e| matches!(e, SubscriberEvent::Terminated { reason: Some(r), .. } if r == "noresource")
    ));
    assert_eq!(sim.eps[0].subs[0].poll_timeout(), None);
}

#[test]
fn message_both_ways() {
    let mut sim = pair();
    let now = sim.now();
    let id = sim.eps[0].pager.as_mut().unwrap().send(
        now,
        uri("sip:bob@192.0.2.2:5060"),
        "text/plain;charset=UTF-8",
        Bytes::from_static(b"hello bob"),
    );
    sim.eps[1].pager.as_mut().unwrap().send(
        now,
        uri("sip:alice@192.0.2.1:5060"),
        "text/plain",
        Bytes::from_static(b"hi alice"),
    );
    sim.run_for(Duration::from_secs(1));
    assert!(
        sim.eps[0]
            .events
            .iter()
            .any(|(_, e)| *e == Ev::Pager(PagerEvent::Delivered { id }))
    );
    assert!(sim.eps[1].events.iter().any(|(_, e)| matches!(e,
        Ev::Pager(PagerEvent::Received { body, content_type, from })
            if &body[..] == b"hello bob" && content_type.starts_with("text/plain") && from.uri.to_string() == "sip:alice@example.com")));
    assert!(sim.eps[0].events.iter().any(|(_, e)| matches!(e, Ev::Pager(PagerEvent::Received { body, .. }) if &body[..] == b"hi alice")));
}

#[test]
fn message_to_nobody_fails_with_timeout() {
    let mut sim = pair();
    let now = sim.now();
    let id = sim.eps[0].pager.as_mut().unwrap().send(
        now,
        uri("sip:nobody@192.0.2.99:5060"),
        "text/plain",
        Bytes::from_static(b"x"),
    );
    sim.run_for(Duration::from_secs(40));
    assert!(
        sim.eps[0]
            .events
            .iter()
            .any(|(_, e)| *e == Ev::Pager(PagerEvent::Failed { id, status: 408 }))
    );
}
