//! Shared fixtures: the demo office.
#![allow(dead_code)]

use vaxel_routing::Config;

/// The demo office as TOML.
pub const DEMO: &str = r#"
time_zone = "Europe/Copenhagen"
language = "da"
prompts = ["welcome", "menu", "invalid", "closed", "sorry"]
shared_mailboxes = ["office"]

[[schedules]]
name = "normal"
time_zone = "Europe/Copenhagen"
week = { mon = ["08:00-16:00"], tue = ["08:00-16:00"], wed = ["08:00-16:00"], thu = ["08:00-16:00"], fri = ["08:00-15:00"] }
holidays = { country = "DK" }

[[schedule_sets]]
name = "main"
schedules = ["normal"]
active = "normal"

[[users]]
id = "anna"
numbers = ["201"]
[[users]]
id = "bo"
numbers = ["202"]
[[users]]
id = "carl"
numbers = ["203"]
[[users]]
id = "op"
numbers = ["200"]

[groups.sales]
id = 10
name = "Salg"
strategy = "fixed"
members = [{ user = "anna" }, { user = "bo" }, { user = "carl" }]
ring_secs = 15
no_answer = { type = "voicemail", mailbox = { shared = "office" } }

[groups.support]
id = 11
name = "Support"
strategy = "simultaneous"
members = [{ user = "bo" }, { user = "carl" }]
no_answer = { type = "prompt", prompt = "sorry" }

[[flows]]
name = "main"
numbers = ["72100100"]
active = 1
[[flows.versions]]
version = 1
start = "hours"
[flows.versions.steps.hours]
type = "check_hours"
schedule_set = "main"
open = "welcome"
closed = "closed_vm"
[flows.versions.steps.welcome]
type = "play_prompt"
prompt = "welcome"
next = "menu"
[flows.versions.steps.menu]
type = "menu"
prompt = "menu"
choices = { "1" = "sales", "2" = "support", "0" = "operator" }
timeout_secs = 5
repeats = 3
invalid_prompt = "invalid"
on_exhausted = "operator"
[flows.versions.steps.sales]
type = "hunt_group"
group = "sales"
[flows.versions.steps.support]
type = "hunt_group"
group = "support"
no_answer = "closed_vm"
[flows.versions.steps.operator]
type = "forward"
target = { internal = "op" }
[flows.versions.steps.closed_vm]
type = "voicemail"
mailbox = { shared = "office" }
greeting = "closed"
"#;

/// The demo office, parsed.
pub fn demo() -> Config {
    toml::from_str(DEMO).unwrap()
}
