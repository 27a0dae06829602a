//! Routing decisions without IO: call flows, opening hours, hunt groups, forwarding and
//! feature codes for the Vaxel engine.
//!
//! Nothing here touches a socket, a file, a thread or a clock (ARCHITECTURE.md §3.3). The
//! engine owns those and drives one loop:
//!
//! ```text
//! loop {
//!     let event = /* a call arrived, a leg answered, DTMF, a timer fired … */;
//!     for action in router.handle(wall_now, event) {
//!         /* ring legs, cancel, bridge, play a prompt, collect digits, start a timer … */
//!     }
//! }
//! ```
//!
//! `wall_now` is a [`jiff::Timestamp`]: the router evaluates opening hours in each
//! schedule's time zone from it and asks for timers as absolute timestamps
//! ([`Action::StartTimer`]); the engine answers each with [`Event::TimerFired`]. Randomness
//! for the random hunt strategy comes from an injected [`rand_core::RngCore`].
//!
//! ```
//! use vaxel_routing::{Config, Event, Router, Action};
//! use rand_core::RngCore;
//! # struct Zero; impl RngCore for Zero { fn next_u32(&mut self) -> u32 { 0 } fn next_u64(&mut self) -> u64 { 0 } fn fill_bytes(&mut self, d: &mut [u8]) { d.fill(0) } }
//! let mut router = Router::new(Config::default(), Zero);
//! let now: jiff::Timestamp = "2027-03-12T09:00:00Z".parse().unwrap();
//! // An unknown number is hung up.
//! let actions = router.handle(now, Event::CallArrived { call: 1, dialed: "999".into(), caller: "4512345678".into() });
//! assert_eq!(actions, vec![Action::Hangup { call: 1 }]);
//! ```
//!
//! The pieces, usable on their own:
//! - [`schedule`]: opening hours, `is_open(schedule, timestamp)` and `next_change`;
//! - [`holidays`]: computed DK/SE/NO/FI holiday calendars;
//! - [`flow`]: the call-flow graph, its TOML model, validation and versions;
//! - [`hunt`]: hunt-group strategies as eligibility filter + sort key, caller display;
//! - [`forwarding`]: per-user forwarding decisions;
//! - [`feature`]: feature-code parsing.

pub mod clock;
pub mod feature;
pub mod flow;
pub mod forwarding;
pub mod holidays;
pub mod hunt;
pub mod router;
pub mod schedule;

pub use clock::{Hm, Interval};
pub use flow::{CallFlow, Config, FlowVersion, Step, ValidationError, validate};
pub use hunt::{CallerDisplay, HuntGroup, MemberState, Strategy, caller_display};
pub use router::{Action, Event, LegFailure, Router};
pub use schedule::{Schedule, Status, is_open, next_change};
