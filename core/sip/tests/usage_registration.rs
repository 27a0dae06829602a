//! Registration client against a small registrar built from `auth::DigestServer`,
//! in virtual time over the simulated network.

mod usage_support;

use std::time::Duration;

use usage_support::{Registrar, Sim, na, uri};
use vaxel_sip::auth::{DigestClient, Secret};
use vaxel_sip::usage::registration::{
    Registration, RegistrationConfig, RegistrationEvent, refresh_delay,
};
use vaxel_testkit::LinkConditions;

fn setup(seed: u64, conditions: LinkConditions, password: &str, expires: u32) -> Sim {
    let mut sim = Sim::new(seed, conditions);
    let a = sim.add("alice", "192.0.2.1:5060", "alice");
    let r = sim.add("registrar", "192.0.2.9:5060", "registrar");
    sim.eps[r].registrar = Some(Registrar::new(7));
    let mut cfg = RegistrationConfig::new(
        uri("sip:192.0.2.9:5060"),
        na("sip:alice@example.com"),
        sim.eps[a].local.clone(),
    );
    cfg.expires = expires;
    cfg.auth = Some(DigestClient::new(
        "alice",
        Secret::Password(password.into()),
    ));
    let rng = sim.eps[a].seed();
    sim.eps[a].reg = Some(Registration::new(cfg, rng));
    sim
}

fn register(sim: &mut Sim) {
    let now = sim.now();
    sim.eps[0].reg.as_mut().unwrap().register(now);
}

fn registered(sim: &Sim) -> Vec<u32> {
    sim.eps[0]
        .reg_events()
        .into_iter()
        .filter_map(|(_, e)| match e {
            RegistrationEvent::Registered { expires } => Some(expires),
            _ => None,
        })
        .collect()
}

#[test]
fn refresh_policy() {
    assert_eq!(refresh_delay(3600), Duration::from_secs(3240));
    assert_eq!(refresh_delay(30), Duration::from_secs(25));
    assert_eq!(refresh_delay(6), Duration::from_secs(3));
}

#[test]
fn challenge_then_registered_and_our_contact_found_among_several() {
    let mut sim = setup(1, LinkConditions::default(), "secret", 600);
    register(&mut sim);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(registered(&sim), vec![600]);
    let ladder = sim.ladder().join("\n");
    assert!(ladder.contains("401 Unauthorized"), "{ladder}");
    assert_eq!(sim.eps[1].registrar.as_ref().unwrap().registers_seen, 2);
    // Ours and the other device's.
    assert_eq!(sim.eps[0].reg.as_ref().unwrap().bindings(), 2);
}

#[test]
fn a_new_address_replaces_the_old_binding_in_one_register() {
    let mut sim = setup(3, LinkConditions::default(), "secret", 600);
    register(&mut sim);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(registered(&sim), vec![600]);
    // The network changed: same phone, new Contact (another port here).
    let old = sim.eps[0].local.contact.clone();
    let mut moved = sim.eps[0].local.clone();
    moved.contact = uri("sip:alice@192.0.2.1:5999");
    let now = sim.now();
    let reg = sim.eps[0].reg.as_mut().unwrap();
    reg.set_local(moved.clone());
    reg.refresh_now(now);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(registered(&sim), vec![600, 600]);
    let bound: Vec<String> =
        sim.eps[1].registrar.as_ref().unwrap().bindings["sip:alice@example.com"]
            .iter()
            .map(|(u, _)| u.to_string())
            .collect();
    assert_eq!(
        bound,
        vec![moved.contact.to_string()],
        "the old {old} is gone"
    );
}

#[test]
fn interval_too_brief_retries_with_min_expires() {
    let mut sim = setup(2, LinkConditions::default(), "secret", 60);
    sim.eps[1].registrar.as_mut().unwrap().min_expires = Some(300);
    register(&mut sim);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(registered(&sim), vec![300]);
    assert!(sim.ladder().join("\n").contains("423"));
}

#[test]
fn refreshes_before_expiry_with_cached_credentials() {
    let mut sim = setup(3, LinkConditions::default(), "secret", 600);
    register(&mut sim);
    sim.run_for(Duration::from_secs(1300));
    let ev = sim.eps[0].reg_events();
    let times: Vec<_> = ev
        .iter()
        .filter(|(_, e)| matches!(e, RegistrationEvent::Registered { .. }))
        .map(|(t, _)| sim.clock.offset_of(*t))
        .collect();
    assert_eq!(times.len(), 3, "{ev:?}");
    // Refresh at 540 s (min(90 %, expires − 5 s)).
    let gap = times[1] - times[0];
    assert!(
        gap >= Duration::from_secs(540) && gap < Duration::from_secs(541),
        "{gap:?}"
    );
    // The registrar's nonces live 300 s, so each refresh meets a stale
    // challenge that the client answers silently (2 + 2 + 2 REGISTERs).
    assert_eq!(sim.eps[1].registrar.as_ref().unwrap().registers_seen, 6);
    assert!(
        !ev.iter()
            .any(|(_, e)| matches!(e, RegistrationEvent::Failed { .. }))
    );
}

#[test]
fn backs_off_exponentially_with_jitter_after_503() {
    let mut sim = setup(4, LinkConditions::default(), "secret", 600);
    sim.eps[1].registrar.as_mut().unwrap().fail_next = 3;
    register(&mut sim);
    sim.run_for(Duration::from_secs(400));
    let retries: Vec<Duration> = sim.eps[0]
        .reg_events()
        .into_iter()
        .filter_map(|(_, e)| match e {
            RegistrationEvent::Failed {
                status: 503,
                retry_in: Some(d),
                ..
            } => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(retries.len(), 3);
    for (i, d) in retries.iter().enumerate() {
        let full = Duration::from_secs(30 << i);
        assert!(*d >= full / 2 && *d <= full, "retry {i}: {d:?}");
    }
    assert_eq!(registered(&sim), vec![600]);
}

#[test]
fn server_restart_loses_binding_and_refresh_restores_it_via_stale_nonce() {
    let mut sim = setup(5, LinkConditions::default(), "secret", 600);
    register(&mut sim);
    sim.run_for(Duration::from_secs(10));
    sim.eps[1].registrar.as_mut().unwrap().restart();
    assert!(sim.eps[1].registrar.as_ref().unwrap().bindings.is_empty());
    // The driver noticed (e.g. an OPTIONS keep-alive failed) and re-registers now.
    let now = sim.now();
    sim.eps[0].reg.as_mut().unwrap().refresh_now(now);
    sim.run_for(Duration::from_secs(5));
    assert_eq!(registered(&sim), vec![600, 600]);
    let reg = sim.eps[1].registrar.as_ref().unwrap();
    assert_eq!(reg.bindings.values().map(Vec::len).sum::<usize>(), 1);
    // The old nonce was answered stale (correct digest, unknown nonce): no error event.
    assert!(
        !sim.eps[0]
            .reg_events()
            .iter()
            .any(|(_, e)| matches!(e, RegistrationEvent::Failed { .. }))
    );
}

#[test]
fn wrong_password_is_reported_once_and_not_looped() {
    let mut sim = setup(6, LinkConditions::default(), "wrong", 600);
    register(&mut sim);
    sim.run_for(Duration::from_secs(3600));
    let fails: Vec<_> = sim.eps[0]
        .reg_events()
        .into_iter()
        .filter(|(_, e)| matches!(e, RegistrationEvent::Failed { .. }))
        .collect();
    assert_eq!(fails.len(), 1, "{fails:?}");
    assert!(matches!(
        fails[0].1,
        RegistrationEvent::Failed {
            status: 401,
            retry_in: None,
            ..
        }
    ));
    assert_eq!(sim.eps[1].registrar.as_ref().unwrap().registers_seen, 2);
}

#[test]
fn unregister_removes_the_binding() {
    let mut sim = setup(7, LinkConditions::default(), "secret", 600);
    register(&mut sim);
    sim.run_for(Duration::from_secs(2));
    let now = sim.now();
    sim.eps[0].reg.as_mut().unwrap().unregister(now);
    sim.run_for(Duration::from_secs(2));
    assert!(
        sim.eps[0]
            .reg_events()
            .iter()
            .any(|(_, e)| *e == RegistrationEvent::Unregistered)
    );
    let reg = sim.eps[1].registrar.as_ref().unwrap();
    assert_eq!(reg.bindings.values().map(Vec::len).sum::<usize>(), 0);
    // No refresh after unregistering.
    assert_eq!(sim.eps[0].reg.as_ref().unwrap().poll_timeout(), None);
}

#[test]
fn registers_over_a_lossy_network() {
    for seed in 0..8 {
        let lossy = LinkConditions::default().with_loss(0.2);
        let mut sim = setup(100 + seed, lossy, "secret", 600);
        register(&mut sim);
        sim.run_for(Duration::from_secs(1200));
        let n = registered(&sim).len();
        assert!(n >= 2, "seed {seed}: {:?}", sim.eps[0].reg_events());
    }
}
