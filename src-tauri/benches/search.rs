//! Search latency per keystroke with 100,000 directory entries (issue 7's figure; target
//! 2 ms or less in the core). Two paths: `Store::search` itself, and the whole round trip
//! the desktop app makes — `Command::Search` into a running phone and its
//! `Event::SearchResults` back.
//!
//! ```text
//! cargo bench -p vaxel-desktop --bench search
//! ```
#![allow(missing_docs)] // criterion_group! generates an undocumented function

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use vaxel_phone::{Command, Event, Phone, PhoneConfig};
use vaxel_store::{DirectoryEntry, Store};

const GIVEN: &[&str] = &[
    "Anders", "Anna", "Anne", "Bo", "Björn", "Carl", "Cecilia", "David", "Elin", "Emma", "Erik",
    "Eva", "Fredrik", "Hanna", "Henrik", "Ida", "Johan", "Karin", "Lars", "Lena", "Magnus",
    "Maria", "Nils", "Oskar", "Per", "Sara", "Sofia", "Stefan", "Ulla", "Zoë",
];
const FAMILY: &[&str] = &[
    "Andersson",
    "Johansson",
    "Karlsson",
    "Nilsson",
    "Eriksson",
    "Larsson",
    "Olsson",
    "Persson",
    "Svensson",
    "Berg",
    "Lindberg",
    "Lindström",
    "Sällström",
    "Hansen",
    "Jensen",
    "Nielsen",
    "Virtanen",
    "Korhonen",
    "Dahl",
    "Christensen",
];
const DEPARTMENTS: &[&str] = &[
    "Sales",
    "Support",
    "Finance",
    "Reception",
    "Engineering",
    "Legal",
];

/// 100,000 people, spread deterministically over names, departments and numbers.
fn directory(n: usize) -> Vec<DirectoryEntry> {
    (0..n)
        .map(|i| {
            let g = GIVEN[i % GIVEN.len()];
            let f = FAMILY[(i / GIVEN.len()) % FAMILY.len()];
            let ext = 10_000 + i;
            DirectoryEntry {
                engine_id: ext.to_string(),
                name: format!("{g} {f}"),
                extension: ext.to_string(),
                number: format!("+4570{ext:06}"),
                mobile: format!("+4520{:06}", (i * 7919) % 1_000_000),
                email: format!("{}.{}{i}@example.com", g.to_lowercase(), f.to_lowercase()),
                department: DEPARTMENTS[i % DEPARTMENTS.len()].into(),
                title: "Employee".into(),
                location: "Copenhagen".into(),
            }
        })
        .collect()
}

/// Each prefix of the typed text: one search per keystroke.
fn keystrokes(typed: &str) -> Vec<String> {
    typed
        .char_indices()
        .map(|(i, c)| typed[..i + c.len_utf8()].to_string())
        .filter(|q| !q.trim().is_empty())
        .collect()
}

fn bench(c: &mut Criterion) {
    let entries = directory(100_000);
    let typed = ["anne säll", "sales bo berg", "4570012345"];

    let mut store = Store::open_in_memory().unwrap();
    store.replace_directory(&entries).unwrap();
    let mut g = c.benchmark_group("search_100k_store");
    for t in typed {
        for q in keystrokes(t) {
            g.bench_function(format!("{q:?}"), |b| {
                b.iter(|| black_box(store.search(black_box(&q), 20).unwrap()))
            });
        }
    }
    g.finish();

    // The app's path: through the phone's command/event vocabulary.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut store = Store::open_in_memory().unwrap();
    store.replace_directory(&entries).unwrap();
    let mut config = PhoneConfig::new("127.0.0.1".parse().unwrap());
    config.store = store;
    let (phone, mut events) = rt.block_on(Phone::start(config)).unwrap();
    let mut g = c.benchmark_group("search_100k_phone_round_trip");
    for q in keystrokes("anne säll") {
        g.bench_function(format!("{q:?}"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    phone.send(Command::Search {
                        query: q.clone(),
                        limit: Some(20),
                    });
                    loop {
                        match events.recv().await {
                            Some(Event::SearchResults { hits, .. }) => break black_box(hits),
                            Some(_) => continue,
                            None => panic!("the phone stopped"),
                        }
                    }
                })
            })
        });
    }
    g.finish();
    phone.send(Command::Quit);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_millis(300)).measurement_time(std::time::Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
