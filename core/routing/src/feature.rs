//! Feature codes ("plustjänster", R-309), dialled from any device in the mobile form (no
//! trailing `#`) or the softphone form (trailing `#`).
//!
//! | code | meaning |
//! |---|---|
//! | `*21*n#` / `#21#` | unconditional forward to n / cancel |
//! | `*61*n#` / `#61#` | no-answer forward / cancel |
//! | `*61*n*T#` | no-answer forward after T seconds (5–120) |
//! | `*67*n#` / `#67#` | busy forward / cancel |
//! | `*24*p[*time]#` / `#24#` | activate presence profile p (until time) / back to available |
//! | `*75*q#` / `#75*q#` | log in to / out of queue q |
//! | `*80*n` | pick up the call ringing at n |
//! | `*31*n` | call n with hidden number |
//! | `*59*n` | call n's voicemail directly |
//! | `*60*n` | call n bypassing forwarding and presence |
//! | `#n#` (in call) | transfer the current incoming call to n |
//! | `*` (in call) | take the transferred call back |
//!
//! Profile time: 1 digit = days ahead (`0` = until further notice), 2 = hours ahead,
//! 3 = minutes ahead, 4 = `HHMM` next occurrence (today if still ahead, else tomorrow),
//! 6 = `YYMMDD` (the profile ends at the start, 00:00 local, of that date; the year is
//! 20YY). Calendar arithmetic is done in the office zone; a local end time that falls in a
//! DST gap moves forward past the gap.

use std::fmt;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};

/// Which forwarding a code sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForwardKind {
    /// `21`.
    Unconditional,
    /// `61`.
    NoAnswer,
    /// `67`.
    Busy,
}

/// When an activated profile ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileEnd {
    /// No time given: the profile's own default length.
    ProfileDefault,
    /// `0`: until further notice.
    UntilFurtherNotice,
    /// At this instant.
    At(Timestamp),
}

/// A parsed feature code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeatureCode {
    /// `*21*n#`, `*61*n#`, `*67*n#`.
    SetForward {
        /// Which.
        kind: ForwardKind,
        /// To.
        number: String,
    },
    /// `*61*n*T#`: no-answer forward after `T` seconds. The operators' pages give no
    /// time form for `*61*`; this is the GSM one (3GPP TS 22.030 Annex B, `**61*n*T#`)
    /// so a user can set the time from the phone too.
    SetNoAnswerForward {
        /// To.
        number: String,
        /// Ring this long first (5–120 s).
        after_secs: u32,
    },
    /// `#21#`, `#61#`, `#67#`.
    CancelForward {
        /// Which.
        kind: ForwardKind,
    },
    /// `*24*p[*time]#`.
    ActivateProfile {
        /// Profile number.
        profile: u32,
        /// Until.
        until: ProfileEnd,
    },
    /// `#24#`: back to "available".
    DeactivateProfile,
    /// `*75*q#`.
    QueueLogin {
        /// Queue number.
        queue: String,
    },
    /// `#75*q#`.
    QueueLogout {
        /// Queue number.
        queue: String,
    },
    /// `*80*n`.
    Pickup {
        /// Whose ringing call.
        number: String,
    },
    /// `*31*n`.
    HiddenNumber {
        /// Who to call.
        number: String,
    },
    /// `#n#` during an incoming call.
    Transfer {
        /// To.
        number: String,
    },
    /// `*` during a transfer: take the call back.
    TakeBack,
    /// `*59*n`.
    Voicemail {
        /// Whose box.
        number: String,
    },
    /// `*60*n`.
    Bypass {
        /// Who.
        number: String,
    },
}

/// Which form it was dialled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Without trailing `#`.
    Mobile,
    /// With trailing `#`.
    Softphone,
}

/// Where the digits were entered: dialled, or as DTMF during an incoming call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Dialled as a number.
    Dialing,
    /// Keyed during an answered incoming call (`#n#`, `*`).
    InCall,
}

/// Why a string is not a valid feature code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeatureError {
    /// Does not start with `*` or `#`: an ordinary number.
    NotAFeatureCode,
    /// Starts like one, but no code matches.
    Unknown(String),
    /// The code needs a number and has none.
    MissingNumber,
    /// The number has characters other than digits (and a leading `+`).
    BadNumber(String),
    /// The profile is not a number.
    BadProfile(String),
    /// The profile time is malformed (wrong length, not a valid time or date).
    BadTime(String),
    /// The profile's end is not in the future.
    TimeInPast(String),
    /// The user may not use this code: answer with the spoken "service not active".
    ServiceNotActive,
}

impl fmt::Display for FeatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeatureError::NotAFeatureCode => write!(f, "not a feature code"),
            FeatureError::Unknown(s) => write!(f, "unknown feature code {s:?}"),
            FeatureError::MissingNumber => write!(f, "the code needs a number"),
            FeatureError::BadNumber(s) => write!(f, "{s:?} is not a number"),
            FeatureError::BadProfile(s) => write!(f, "{s:?} is not a profile number"),
            FeatureError::BadTime(s) => write!(f, "bad profile time: {s}"),
            FeatureError::TimeInPast(s) => write!(f, "profile time {s:?} is not in the future"),
            FeatureError::ServiceNotActive => write!(f, "service not active"),
        }
    }
}
impl std::error::Error for FeatureError {}

fn number(s: &str) -> Result<String, FeatureError> {
    if s.is_empty() {
        return Err(FeatureError::MissingNumber);
    }
    let digits = s.strip_prefix('+').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FeatureError::BadNumber(s.into()));
    }
    Ok(s.into())
}

/// Parse `input` dialled or keyed in `ctx`; relative profile times are computed from `now`
/// in `tz` (the office's zone).
pub fn parse(
    input: &str,
    ctx: Context,
    now: Timestamp,
    tz: &TimeZone,
) -> Result<(FeatureCode, Form), FeatureError> {
    let input = input.trim();
    if ctx == Context::InCall {
        if input == "*" {
            return Ok((FeatureCode::TakeBack, Form::Mobile));
        }
        if let Some(rest) = input.strip_prefix('#') {
            let (n, form) = match rest.strip_suffix('#') {
                Some(n) => (n, Form::Softphone),
                None => (rest, Form::Mobile),
            };
            return Ok((FeatureCode::Transfer { number: number(n)? }, form));
        }
        return Err(if input.starts_with('*') {
            FeatureError::Unknown(input.into())
        } else {
            FeatureError::NotAFeatureCode
        });
    }
    if !(input.starts_with('*') || input.starts_with('#')) {
        return Err(FeatureError::NotAFeatureCode);
    }
    let (body, form) = match input.strip_suffix('#') {
        Some(b) if b.len() > 1 => (b, Form::Softphone),
        _ => (input, Form::Mobile),
    };
    let unknown = || FeatureError::Unknown(input.into());
    if let Some(rest) = body.strip_prefix('#') {
        let code = match rest {
            "21" => FeatureCode::CancelForward {
                kind: ForwardKind::Unconditional,
            },
            "61" => FeatureCode::CancelForward {
                kind: ForwardKind::NoAnswer,
            },
            "67" => FeatureCode::CancelForward {
                kind: ForwardKind::Busy,
            },
            "24" => FeatureCode::DeactivateProfile,
            _ => match rest.strip_prefix("75*") {
                Some(q) => FeatureCode::QueueLogout {
                    queue: number(q).map_err(|_| queue_err(q))?,
                },
                None if rest == "75" => return Err(FeatureError::MissingNumber),
                None => return Err(unknown()),
            },
        };
        return Ok((code, form));
    }
    let rest = &body[1..];
    let (code, arg) = match rest.split_once('*') {
        Some((c, a)) => (c, a),
        None => (rest, ""),
    };
    let code = match code {
        "21" | "61" | "67" => {
            let kind = match code {
                "21" => ForwardKind::Unconditional,
                "61" => ForwardKind::NoAnswer,
                _ => ForwardKind::Busy,
            };
            match arg.split_once('*') {
                Some((n, t)) if code == "61" => {
                    let after_secs = t
                        .parse::<u32>()
                        .ok()
                        .filter(|s| (5..=120).contains(s) && t.len() <= 3)
                        .ok_or_else(|| FeatureError::BadTime(format!("{t:?}: 5 to 120 seconds")))?;
                    FeatureCode::SetNoAnswerForward {
                        number: number(n)?,
                        after_secs,
                    }
                }
                _ => FeatureCode::SetForward {
                    kind,
                    number: number(arg)?,
                },
            }
        }
        "24" => {
            let (p, t) = match arg.split_once('*') {
                Some((p, t)) => (p, Some(t)),
                None => (arg, None),
            };
            if p.is_empty() {
                return Err(FeatureError::BadProfile(p.into()));
            }
            let profile: u32 = p.parse().map_err(|_| FeatureError::BadProfile(p.into()))?;
            let until = match t {
                None => ProfileEnd::ProfileDefault,
                Some(t) => profile_end(t, now, tz)?,
            };
            FeatureCode::ActivateProfile { profile, until }
        }
        "75" => FeatureCode::QueueLogin {
            queue: number(arg).map_err(|_| queue_err(arg))?,
        },
        "80" => FeatureCode::Pickup {
            number: number(arg)?,
        },
        "31" => FeatureCode::HiddenNumber {
            number: number(arg)?,
        },
        "59" => FeatureCode::Voicemail {
            number: number(arg)?,
        },
        "60" => FeatureCode::Bypass {
            number: number(arg)?,
        },
        _ => return Err(unknown()),
    };
    Ok((code, form))
}

fn queue_err(q: &str) -> FeatureError {
    if q.is_empty() {
        FeatureError::MissingNumber
    } else {
        FeatureError::BadNumber(q.into())
    }
}

/// The end of a profile for the time digits `t` (see the module docs).
pub fn profile_end(t: &str, now: Timestamp, tz: &TimeZone) -> Result<ProfileEnd, FeatureError> {
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FeatureError::BadTime(format!("{t:?} is not digits")));
    }
    let n: i64 = t.parse().map_err(|_| FeatureError::BadTime(t.into()))?;
    let local = now.to_zoned(tz.clone());
    let end = match t.len() {
        1 if n == 0 => return Ok(ProfileEnd::UntilFurtherNotice),
        1 => local
            .checked_add(Span::new().days(n))
            .map_err(|e| FeatureError::BadTime(e.to_string()))?
            .timestamp(),
        2 => now
            .checked_add(Span::new().hours(n))
            .map_err(|e| FeatureError::BadTime(e.to_string()))?,
        3 => now
            .checked_add(Span::new().minutes(n))
            .map_err(|e| FeatureError::BadTime(e.to_string()))?,
        4 => {
            let (h, m) = ((n / 100) as i8, (n % 100) as i8);
            let time = Time::new(h, m, 0, 0)
                .map_err(|_| FeatureError::BadTime(format!("{t:?} is not a time HHMM")))?;
            let today = local.date().to_datetime(time);
            let mut at = tz
                .to_ambiguous_timestamp(today)
                .compatible()
                .map_err(|e| FeatureError::BadTime(e.to_string()))?;
            if at <= now {
                let tomorrow = local
                    .date()
                    .tomorrow()
                    .map_err(|e| FeatureError::BadTime(e.to_string()))?
                    .to_datetime(time);
                at = tz
                    .to_ambiguous_timestamp(tomorrow)
                    .compatible()
                    .map_err(|e| FeatureError::BadTime(e.to_string()))?;
            }
            at
        }
        6 => {
            let (y, mo, d) = (
                2000 + (n / 10000) as i16,
                ((n / 100) % 100) as i8,
                (n % 100) as i8,
            );
            let date = Date::new(y, mo, d)
                .map_err(|_| FeatureError::BadTime(format!("{t:?} is not a date YYMMDD")))?;
            let at = tz
                .to_ambiguous_timestamp(date.to_datetime(Time::midnight()))
                .compatible()
                .map_err(|e| FeatureError::BadTime(e.to_string()))?;
            if at <= now {
                return Err(FeatureError::TimeInPast(t.into()));
            }
            at
        }
        len => {
            return Err(FeatureError::BadTime(format!(
                "{len} digits: use 1, 2, 3, 4 or 6"
            )));
        }
    };
    Ok(ProfileEnd::At(end))
}

/// The permission hook: may `user` use `code`?
pub trait Permissions {
    /// True if allowed.
    fn allowed(&self, user: &str, code: &FeatureCode) -> bool;
}

/// Everything allowed (the default office).
pub struct AllowAll;
impl Permissions for AllowAll {
    fn allowed(&self, _user: &str, _code: &FeatureCode) -> bool {
        true
    }
}

/// Parse, then check permission; a code the user may not use is
/// [`FeatureError::ServiceNotActive`] (the engine plays the "service not active" prompt).
pub fn parse_for_user(
    input: &str,
    ctx: Context,
    user: &str,
    perms: &dyn Permissions,
    now: Timestamp,
    tz: &TimeZone,
) -> Result<(FeatureCode, Form), FeatureError> {
    let (code, form) = parse(input, ctx, now, tz)?;
    if !perms.allowed(user, &code) {
        return Err(FeatureError::ServiceNotActive);
    }
    Ok((code, form))
}
