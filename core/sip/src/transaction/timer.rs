//! The timer table of the transaction layer (RFC 3261 §17, Table 4 of §A;
//! RFC 6026 §8.4 Timers L and M).

use std::time::Duration;

/// Timer values of RFC 3261 §17.1.1.1 and Table 4 (§A).
///
/// Every transaction timer is derived from these three: A, E and G start at
/// T1 and back off (E and G capped at T2), B, F, H, J, L and M last 64·T1, and
/// I and K last T4 on unreliable transports.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate, 500 ms by default (§17.1.1.1).
    pub t1: Duration,
    /// Longest retransmission interval for non-INVITE requests and INVITE
    /// responses, 4 s by default (§17.1.2.2).
    pub t2: Duration,
    /// Longest time a message stays in the network, 5 s by default (§17.1.2.2).
    pub t4: Duration,
}

impl Default for TimerConfig {
    /// T1 = 500 ms, T2 = 4 s, T4 = 5 s (§17.1.1.1, §17.1.2.2).
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64·T1: Timers B, F, H, J, L and M (§17.1.1.2, §17.1.2.2, §17.2.1,
    /// §17.2.2, RFC 6026 §8.4).
    pub fn t1x64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// Keeps the values usable: T1 at least 1 ms (a zero T1 would retransmit
    /// forever at one instant) and T2 not below T1 (§17.1.2.2 caps at T2).
    pub(crate) fn sanitized(mut self) -> Self {
        self.t1 = self.t1.max(Duration::from_millis(1));
        self.t2 = self.t2.max(self.t1);
        self
    }

    /// The first duration of `timer`, or `None` when the timer is not used on
    /// this kind of transport (A, E, G; §17.1.1.2, §17.1.2.2, §17.2.1) or is
    /// zero there (D, I, J, K: the transaction ends at once, §17.1.1.2,
    /// §17.1.2.2, §17.2.1, §17.2.2).
    pub fn duration(&self, timer: Timer, reliable: bool) -> Option<Duration> {
        use Timer::*;
        let d = match timer {
            A | E | G | D | I | J | K if reliable => return None,
            A | E | G => self.t1,
            B | F | H | J | L | M => self.t1x64(),
            // §17.1.1.2: "at least 32 seconds" on unreliable transports. It must
            // outlast the server's Timer H (64·T1) so a retransmitted final
            // response is still acknowledged when T1 is raised.
            D => Duration::from_secs(32).max(self.t1x64()),
            I | K => self.t4,
            Trying => Duration::from_millis(200),
            Retransmit2xx => self.t1,
        };
        Some(d)
    }
}

/// The timers of the four transaction state machines, keyed like quinn-proto's
/// timer table. Letters are those of RFC 3261 Table 4 and RFC 6026 §8.4; Timer
/// C belongs to proxies and is not used.
///
/// The declaration order is the firing order of timers due at the same
/// instant: the ones that end a transaction come first, so that a transaction
/// never retransmits at the very instant it times out (with T2 dividing 64·T1,
/// Timers E and F, or G and H, fall due together).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// INVITE client timeout, 64·T1 (§17.1.1.2); re-armed when a CANCEL is sent (§9.1).
    B,
    /// INVITE client wait for response retransmissions in Completed (§17.1.1.2).
    D,
    /// Non-INVITE client timeout, 64·T1 (§17.1.2.2).
    F,
    /// INVITE server wait for ACK, 64·T1 (§17.2.1).
    H,
    /// INVITE server wait for ACK retransmissions in Confirmed, T4 (§17.2.1).
    I,
    /// Non-INVITE server wait for request retransmissions, 64·T1 (§17.2.2).
    J,
    /// Non-INVITE client wait for response retransmissions, T4 (§17.1.2.2).
    K,
    /// INVITE server Accepted state, 64·T1 (RFC 6026 §8.7).
    L,
    /// INVITE client Accepted state, 64·T1 (RFC 6026 §8.4).
    M,
    /// INVITE client retransmission, T1 doubling without cap (§17.1.1.2).
    A,
    /// Non-INVITE client retransmission, T1 doubling up to T2 (§17.1.2.2).
    E,
    /// INVITE server final response retransmission, T1 doubling up to T2 (§17.2.1).
    G,
    /// 2xx retransmission by the UAS core, T1 doubling up to T2 until the ACK
    /// (§13.3.1.4); done here for the TU while the INVITE server transaction is
    /// in the Accepted state.
    Retransmit2xx,
    /// The 200 ms after which the INVITE server sends 100 Trying itself when the
    /// TU has not answered (§17.2.1).
    Trying,
}

impl Timer {
    pub(crate) const COUNT: usize = 14;

    /// Every timer, in declaration (index) order.
    pub(crate) const ALL: [Timer; Timer::COUNT] = [
        Timer::B,
        Timer::D,
        Timer::F,
        Timer::H,
        Timer::I,
        Timer::J,
        Timer::K,
        Timer::L,
        Timer::M,
        Timer::A,
        Timer::E,
        Timer::G,
        Timer::Retransmit2xx,
        Timer::Trying,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_order_matches_all() {
        for (i, t) in Timer::ALL.iter().enumerate() {
            assert_eq!(t.index(), i);
        }
        let mut sorted = Timer::ALL;
        sorted.sort();
        assert_eq!(sorted, Timer::ALL);
    }
}
