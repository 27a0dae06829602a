//! Brute-force and flood protection, as Kamailio's pike and a fail2ban-like
//! counter do it: per source address, requests are counted in a fixed window and a
//! source over the limit is banned; failed digest authentications are counted and
//! too many ban the source too. Banned sources get no answer at all (an answer would
//! tell a scanner that something is there).
//!
//! Pure: time comes in as `now` (ARCHITECTURE.md §3.1).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::office::Protection;

#[derive(Debug, Default, Clone)]
struct Source {
    window_start: Option<Instant>,
    requests: u32,
    failures: u32,
    failures_start: Option<Instant>,
    banned_until: Option<Instant>,
}

/// What to do with a request from a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Process it.
    Allow,
    /// Drop it silently: the source is banned.
    Drop,
    /// Drop it, and this request is the one that got the source banned (log it once).
    Banned,
}

/// The per-source counters.
#[derive(Debug)]
pub struct Guard {
    limits: Protection,
    allow: HashSet<IpAddr>,
    sources: HashMap<IpAddr, Source>,
    bans: u64,
}

impl Guard {
    /// A guard with these limits; `allow` adds trunk addresses to the allow list.
    pub fn new(limits: Protection, allow: impl IntoIterator<Item = IpAddr>) -> Guard {
        let mut set: HashSet<IpAddr> = limits.allow.iter().filter_map(|a| a.parse().ok()).collect();
        set.extend(allow);
        Guard {
            limits,
            allow: set,
            sources: HashMap::new(),
            bans: 0,
        }
    }

    /// Whether `ip` is on the allow list (trunks and configured addresses).
    pub fn is_allowed(&self, ip: IpAddr) -> bool {
        self.allow.contains(&ip)
    }

    /// How many bans have been issued.
    pub fn bans(&self) -> u64 {
        self.bans
    }

    /// Whether `ip` is banned at `now`.
    pub fn is_banned(&self, ip: IpAddr, now: Instant) -> bool {
        self.sources
            .get(&ip)
            .and_then(|s| s.banned_until)
            .is_some_and(|t| now < t)
    }

    fn ban(&mut self, ip: IpAddr, now: Instant) {
        let ban = Duration::from_secs(self.limits.ban_secs);
        if let Some(s) = self.sources.get_mut(&ip) {
            s.banned_until = Some(now + ban);
            s.requests = 0;
            s.failures = 0;
        }
        self.bans += 1;
    }

    /// Counts one request from `ip`.
    pub fn request(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        if self.allow.contains(&ip) {
            return Verdict::Allow;
        }
        if self.is_banned(ip, now) {
            return Verdict::Drop;
        }
        let window = Duration::from_secs(self.limits.window_secs.max(1));
        let max = self.limits.max_requests;
        let s = self.sources.entry(ip).or_default();
        s.banned_until = None;
        match s.window_start {
            Some(start) if now.duration_since(start) < window => s.requests += 1,
            _ => {
                s.window_start = Some(now);
                s.requests = 1;
            }
        }
        if s.requests > max {
            self.ban(ip, now);
            return Verdict::Banned;
        }
        Verdict::Allow
    }

    /// Counts a failed authentication (wrong password or unknown user) from `ip`;
    /// whether this one got the source banned. Failures count for ten ban lengths.
    pub fn auth_failed(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.allow.contains(&ip) {
            return false;
        }
        let keep = Duration::from_secs(self.limits.ban_secs.saturating_mul(10).max(60));
        let max = self.limits.max_auth_failures;
        let s = self.sources.entry(ip).or_default();
        match s.failures_start {
            Some(start) if now.duration_since(start) < keep => s.failures += 1,
            _ => {
                s.failures_start = Some(now);
                s.failures = 1;
            }
        }
        if s.failures >= max {
            self.ban(ip, now);
            return true;
        }
        false
    }

    /// Forgets sources idle for a long time (bounded memory under a scan).
    pub fn purge(&mut self, now: Instant) {
        let keep = Duration::from_secs(self.limits.ban_secs.saturating_mul(10).max(60));
        self.sources.retain(|_, s| {
            s.banned_until.is_some_and(|t| now < t)
                || s.window_start.is_some_and(|t| now.duration_since(t) < keep)
                || s.failures_start
                    .is_some_and(|t| now.duration_since(t) < keep)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn sixteen_in_two_seconds_then_a_five_minute_ban() {
        let mut g = Guard::new(Protection::default(), [ip("10.0.0.9")]);
        let t0 = Instant::now();
        for i in 0..16 {
            assert_eq!(
                g.request(ip("10.0.0.1"), t0 + Duration::from_millis(i * 100)),
                Verdict::Allow
            );
        }
        assert_eq!(
            g.request(ip("10.0.0.1"), t0 + Duration::from_millis(1700)),
            Verdict::Banned
        );
        assert_eq!(
            g.request(ip("10.0.0.1"), t0 + Duration::from_secs(299)),
            Verdict::Drop
        );
        // Others, and allow-listed trunks, are unaffected.
        assert_eq!(g.request(ip("10.0.0.2"), t0), Verdict::Allow);
        for _ in 0..100 {
            assert_eq!(g.request(ip("10.0.0.9"), t0), Verdict::Allow);
        }
        assert_eq!(
            g.request(ip("10.0.0.1"), t0 + Duration::from_secs(302)),
            Verdict::Allow
        );
    }

    #[test]
    fn a_slow_steady_source_is_not_banned() {
        let mut g = Guard::new(Protection::default(), []);
        let t0 = Instant::now();
        for i in 0..200 {
            assert_eq!(
                g.request(ip("10.0.0.1"), t0 + Duration::from_millis(i * 200)),
                Verdict::Allow
            );
        }
    }

    #[test]
    fn failed_authentications_ban() {
        let mut g = Guard::new(Protection::default(), []);
        let t0 = Instant::now();
        for i in 0..4 {
            assert!(!g.auth_failed(ip("10.0.0.1"), t0 + Duration::from_secs(i * 10)));
        }
        assert!(g.auth_failed(ip("10.0.0.1"), t0 + Duration::from_secs(50)));
        assert!(g.is_banned(ip("10.0.0.1"), t0 + Duration::from_secs(51)));
        assert!(!g.is_banned(ip("10.0.0.2"), t0 + Duration::from_secs(51)));
    }
}
