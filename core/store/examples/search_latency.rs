//! Search-as-you-type latency over a large directory.
//!
//! Fills a fresh database file with 100,000 directory entries (plus 1,000
//! personal contacts and 10,000 calls), then times `Store::search` for every
//! keystroke of a few typed queries and prints the median, 99th percentile
//! and worst time per keystroke.
//!
//! ```text
//! cargo run --release -p vaxel-store --example search_latency [entries]
//! ```

use std::time::{Duration, Instant};

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use vaxel_store::{CallDirection, ContactData, DirectoryEntry, NewCall, Phone, PhoneKind, Store};

const GIVEN: &[&str] = &[
    "Anders", "Anna", "Anne", "Andreas", "Annika", "Bo", "Björn", "Carl", "Cecilia", "David",
    "Elin", "Emma", "Erik", "Eva", "Fredrik", "Gustav", "Hanna", "Henrik", "Ida", "Johan",
    "Johanna", "Jonas", "Karin", "Kristina", "Lars", "Lena", "Magnus", "Maria", "Mats", "Mikael",
    "Nils", "Oskar", "Per", "Peter", "Sara", "Sofia", "Stefan", "Thomas", "Ulla", "Zoë",
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
    "Gustafsson",
    "Pettersson",
    "Jonsson",
    "Jansson",
    "Hansson",
    "Bengtsson",
    "Jönsson",
    "Lindberg",
    "Jakobsson",
    "Magnusson",
    "Olofsson",
    "Lindström",
    "Lindqvist",
    "Lindgren",
    "Berg",
    "Axelsson",
    "Bergström",
    "Lundberg",
    "Lind",
    "Lundgren",
    "Lundqvist",
    "Mattsson",
    "Berglund",
    "Fredriksson",
    "Sandberg",
    "Henriksson",
    "Sällström",
    "Forsberg",
    "Sjöberg",
    "Wallin",
    "Engström",
    "Eklund",
    "Danielsson",
    "Håkansson",
    "Lundin",
];
const DEPARTMENT: &[&str] = &[
    "Sales",
    "Support",
    "Finance",
    "Engineering",
    "Logistics",
    "Marketing",
    "Legal",
    "HR",
];
const TITLE: &[&str] = &[
    "Manager",
    "Engineer",
    "Assistant",
    "Director",
    "Consultant",
    "Agent",
];
const LOCATION: &[&str] = &["Stockholm", "Göteborg", "Malmö", "Uppsala", "Umeå", "Luleå"];

fn pick<'a>(rng: &mut ChaCha8Rng, list: &[&'a str]) -> &'a str {
    list[(rng.next_u32() as usize) % list.len()]
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let dir = std::env::temp_dir().join(format!("vaxel-search-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("store.sqlite");
    let mut store = Store::open(&path).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(7);

    let entries: Vec<DirectoryEntry> = (0..n)
        .map(|i| {
            let given = pick(&mut rng, GIVEN);
            let family = pick(&mut rng, FAMILY);
            DirectoryEntry {
                engine_id: format!("u{i}"),
                name: format!("{given} {family}"),
                extension: format!("{}", 100_000 + i),
                number: format!(
                    "+46 8 {:03} {:03} {:02}",
                    i / 100_000,
                    (i / 100) % 1000,
                    i % 100
                ),
                mobile: format!(
                    "+46 70-{:03} {:02} {:02}",
                    rng.next_u32() % 1000,
                    i % 100,
                    (i / 100) % 100
                ),
                email: format!(
                    "{}.{}{i}@example.com",
                    given.to_lowercase(),
                    family.to_lowercase()
                ),
                department: pick(&mut rng, DEPARTMENT).to_owned(),
                title: pick(&mut rng, TITLE).to_owned(),
                location: pick(&mut rng, LOCATION).to_owned(),
            }
        })
        .collect();
    let t = Instant::now();
    store.replace_directory(&entries).unwrap();
    println!("replace_directory({n}): {:.2?}", t.elapsed());

    let t = Instant::now();
    for i in 0..1_000 {
        store
            .create_contact(&ContactData {
                given_name: pick(&mut rng, GIVEN).into(),
                family_name: pick(&mut rng, FAMILY).into(),
                organisation: format!("Customer {i} AB"),
                phones: vec![Phone::new(PhoneKind::Mobile, format!("+46 73 {:07}", i))],
                favourite: i % 50 == 0,
                ..ContactData::default()
            })
            .unwrap();
    }
    for i in 0..10_000i64 {
        store
            .insert_call(&NewCall {
                remote_name: format!("{} {}", pick(&mut rng, GIVEN), pick(&mut rng, FAMILY)),
                number: format!("+46 70 {:07}", i % 3000),
                ..NewCall::new(CallDirection::Incoming, 1_700_000_000_000 + i * 60_000)
            })
            .unwrap();
    }
    println!("1,000 contacts + 10,000 calls: {:.2?}", t.elapsed());

    let typed = [
        "anders sv",
        "ann säll",
        "sales sto",
        "070 12",
        "+46 8 000 12",
        "100042",
    ];
    // Reopen: what the app pays at start (includes SQLite's quick_check).
    drop(store);
    let t = Instant::now();
    let store = Store::open(&path).unwrap();
    println!("reopen (with quick_check): {:.2?}", t.elapsed());
    let size: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    println!("database files: {:.1} MB", size as f64 / 1e6);
    println!("\nper keystroke, limit 20 (min / median / p99 / max over 200 runs; hits):");
    let mut all = Vec::new();
    for q in typed {
        for end in 1..=q.len() {
            if !q.is_char_boundary(end) {
                continue;
            }
            let prefix = &q[..end];
            if prefix.ends_with(' ') {
                continue;
            }
            let hits = store.search(prefix, 20).unwrap().len();
            let mut times: Vec<Duration> = (0..200)
                .map(|_| {
                    let t = Instant::now();
                    let r = store.search(prefix, 20).unwrap();
                    let e = t.elapsed();
                    assert_eq!(r.len(), hits);
                    e
                })
                .collect();
            times.sort();
            all.extend_from_slice(&times);
            println!(
                "  {:<14} {:>8.1?} {:>8.1?} {:>8.1?} {:>8.1?}  {hits}",
                format!("{prefix:?}"),
                times[0],
                times[100],
                times[197],
                times[199]
            );
        }
    }
    all.sort();
    println!(
        "\nall keystrokes: min {:.1?}, median {:.1?}, p99 {:.1?}, max {:.1?}",
        all[0],
        all[all.len() / 2],
        all[all.len() * 99 / 100],
        all[all.len() - 1]
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
