//! The `[routing]` section of the office file: time zone and prompt language, opening
//! hours, hunt groups, call flows (with versions, one active), mailboxes, the
//! voicemail and echo-test numbers and the SMTP server for voicemail e-mail.
//!
//! The schedules, groups and flows are `vaxel-routing`'s own types (its TOML model);
//! this module adds what only the engine needs and turns the whole office into the
//! router's [`vaxel_routing::Config`] ([`Routing::to_config`]): every user of the
//! office is a routing user (id = extension, reachable by extension and long number,
//! with a personal mailbox), every mailbox named other than an extension is shared.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use vaxel_routing::flow::User as RoutingUser;
use vaxel_routing::forwarding::Forwarding;
use vaxel_routing::schedule::ScheduleSet;
use vaxel_routing::{CallFlow, Config, HuntGroup, Schedule};

/// The prompts shipped in `assets/prompts/<language>/` (rendered by
/// `scripts/make-prompts.sh`); flows may name these and any uploaded prompt.
pub const DEFAULT_PROMPTS: &[&str] = &[
    "welcome",
    "closed",
    "holiday",
    "menu",
    "invalid",
    "no_answer",
    "queue",
    "vm_greeting",
    "vm_closed",
    "vm_after_tone",
    "vm_saved",
    "vm_pin",
    "vm_wrong_pin",
    "vm_menu",
    "vm_deleted",
    "vm_no_messages",
    "activated",
    "deactivated",
    "not_active",
    "goodbye",
    "echo",
    "vm_lunch",
    "vm_meeting",
    "vm_away",
    "vm_vacation",
];

/// The languages with shipped prompts (ISO 639-1; Norwegian is `nb`).
pub const LANGUAGES: &[&str] = &["da", "sv", "nb", "fi", "en"];

/// `[routing]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    /// The office's IANA time zone (feature-code times, forwarding weeks).
    #[serde(default = "default_tz")]
    pub time_zone: String,
    /// Prompt language: `da`, `sv`, `nb`, `fi` or `en`.
    #[serde(default = "default_language")]
    pub language: String,
    /// Calling this number reaches one's own mailbox (PIN, then play/next/delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voicemail_number: Option<String>,
    /// Calling this number plays back what one says (an echo test).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo_number: Option<String>,
    /// Extra prompt names (uploaded WAVs) flows may use besides the shipped ones.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub prompts: BTreeSet<String>,
    /// Opening-hours schedules.
    #[serde(default)]
    pub schedules: Vec<Schedule>,
    /// Schedule sets (several schedules, one active), named by `check_hours` steps.
    #[serde(default)]
    pub schedule_sets: Vec<ScheduleSet>,
    /// Hunt groups by name; members are extensions.
    #[serde(default)]
    pub groups: BTreeMap<String, HuntGroup>,
    /// Call flows of main numbers.
    #[serde(default)]
    pub flows: Vec<CallFlow>,
    /// Mailbox settings: an extension's personal box, or a shared box.
    #[serde(default)]
    pub mailboxes: Vec<Mailbox>,
    /// SMTP server for voicemail notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<Smtp>,
    /// How a call moved with `#n`/`#n#` during the call goes ("Samtalsflytt"):
    /// `direct`, `announced` (the mover talks with n first and hangs up to complete
    /// the move) or `none`; the office default.
    #[serde(default, skip_serializing_if = "is_default_move")]
    pub call_move: CallMove,
    /// Per-user exceptions to `call_move` (extension → mode).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub call_move_users: BTreeMap<String, CallMove>,
    /// The voicemail greeting prompt for each presence profile number (`*24*p`,
    /// R-312 presence-aware greeting); unlisted numbers use the defaults 1 →
    /// `vm_lunch`, 2 → `vm_meeting`, 3 → `vm_away`, 4 → `vm_vacation`, others the
    /// standard greeting.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub profile_greetings: BTreeMap<String, String>,
}

/// How a call moved during the call (R-309 `#n#`) is carried out, as the operators'
/// pages describe the user setting "Samtalsflytt".
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CallMove {
    /// "Direkt överföring": n rings for the caller; whoever answers takes the
    /// mover's place.
    #[default]
    Direct,
    /// "Aviserad överföring": the mover talks with n first (the caller hears music)
    /// and hangs up to complete the move; `*` takes the call back.
    Announced,
    /// "Inga": calls are not moved.
    None,
}

fn is_default_move(m: &CallMove) -> bool {
    *m == CallMove::Direct
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            time_zone: default_tz(),
            language: default_language(),
            voicemail_number: None,
            echo_number: None,
            prompts: BTreeSet::new(),
            schedules: Vec::new(),
            schedule_sets: Vec::new(),
            groups: BTreeMap::new(),
            flows: Vec::new(),
            mailboxes: Vec::new(),
            smtp: None,
            call_move: CallMove::Direct,
            call_move_users: BTreeMap::new(),
            profile_greetings: BTreeMap::new(),
        }
    }
}

fn default_tz() -> String {
    "Europe/Copenhagen".into()
}
fn default_language() -> String {
    "da".into()
}
fn default_max_secs() -> u32 {
    120
}

/// `[[routing.mailboxes]]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Mailbox {
    /// An extension (that user's personal box) or the name of a shared box.
    pub name: String,
    /// Shared box: the extensions who may listen to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// PIN for listening by phone (digits); without one the box cannot be reached by
    /// phone, only through the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    /// The PIN as stored: hex SHA-256 of `name:vaxel-voicemail:pin` (what an import
    /// turns `pin` into, and what an export writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_sha256: Option<String>,
    /// Where new messages are e-mailed (with the WAV attached); a personal box
    /// defaults to the user's e-mail address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email: Vec<String>,
    /// Longest message in seconds.
    #[serde(default = "default_max_secs")]
    pub max_secs: u32,
    /// A shared box's number (calling it leaves a message directly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
}

fn pin_hash(mailbox: &str, pin: &str) -> String {
    vaxel_sip::auth::ha1(
        vaxel_sip::auth::DigestHash::Sha256,
        mailbox,
        "vaxel-voicemail",
        pin,
    )
}

impl Mailbox {
    /// Whether `entered` is this box's PIN.
    pub fn pin_matches(&self, entered: &str) -> bool {
        !entered.is_empty()
            && (self.pin.as_deref() == Some(entered)
                || self.pin_sha256.as_deref() == Some(pin_hash(&self.name, entered).as_str()))
    }

    /// Settings of a box without an entry.
    pub fn default_for(name: &str) -> Mailbox {
        Mailbox {
            name: name.to_owned(),
            members: Vec::new(),
            pin: None,
            pin_sha256: None,
            email: Vec::new(),
            max_secs: default_max_secs(),
            number: None,
        }
    }
}

/// `[routing.smtp]`: plain SMTP (a local relay or the test's sink).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    /// Host.
    pub host: String,
    /// Port.
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// Sender address.
    pub from: String,
}

fn default_smtp_port() -> u16 {
    25
}

/// One office user as routing sees it.
#[derive(Debug, Clone)]
pub struct OfficeUser {
    /// Extension.
    pub extension: String,
    /// Long number.
    pub number: Option<String>,
}

impl Routing {
    /// The router's configuration for this office: `users` with their current
    /// `forwarding` (set by feature codes or the API).
    pub fn to_config(
        &self,
        users: &[OfficeUser],
        forwarding: &BTreeMap<String, Forwarding>,
    ) -> Config {
        let extensions: BTreeSet<&str> = users.iter().map(|u| u.extension.as_str()).collect();
        Config {
            time_zone: self.time_zone.clone(),
            language: self.language.clone(),
            prompts: DEFAULT_PROMPTS
                .iter()
                .map(|p| p.to_string())
                .chain(self.prompts.iter().cloned())
                .collect(),
            schedules: self.schedules.clone(),
            schedule_sets: self.schedule_sets.clone(),
            groups: self.groups.clone(),
            queues: Vec::new(),
            users: users
                .iter()
                .map(|u| RoutingUser {
                    id: u.extension.clone(),
                    numbers: std::iter::once(u.extension.clone())
                        .chain(u.number.clone())
                        .collect(),
                    mailbox: true,
                    forwarding: forwarding.get(&u.extension).cloned().unwrap_or_default(),
                })
                .collect(),
            shared_mailboxes: self
                .mailboxes
                .iter()
                .filter(|m| !extensions.contains(m.name.as_str()))
                .map(|m| m.name.clone())
                .collect(),
            flows: self.flows.clone(),
        }
    }

    /// Replaces clear PINs by their hashes (done at import: the database and
    /// exports never hold a PIN in clear). A 4-digit PIN is easily guessed from its
    /// hash; this keeps it from being read, not from being searched for.
    pub fn hash_pins(&mut self) {
        for m in &mut self.mailboxes {
            if let Some(p) = m.pin.take() {
                m.pin_sha256 = Some(pin_hash(&m.name, &p));
            }
        }
    }

    /// How `user`'s calls are moved with `#n#` ("Samtalsflytt"): their own setting,
    /// else the office's.
    pub fn call_move_of(&self, user: &str) -> CallMove {
        self.call_move_users
            .get(user)
            .copied()
            .unwrap_or(self.call_move)
    }

    /// The greeting prompt for presence profile `profile` (see `profile_greetings`),
    /// if it names a prompt that exists.
    pub fn profile_greeting(&self, profile: u32) -> Option<String> {
        let name = match self.profile_greetings.get(&profile.to_string()) {
            Some(n) => n.clone(),
            None => match profile {
                1 => "vm_lunch".into(),
                2 => "vm_meeting".into(),
                3 => "vm_away".into(),
                4 => "vm_vacation".into(),
                _ => return None,
            },
        };
        (DEFAULT_PROMPTS.contains(&name.as_str()) || self.prompts.contains(&name)).then_some(name)
    }

    /// A mailbox's settings (defaults when it has no entry).
    pub fn mailbox(&self, name: &str) -> Mailbox {
        self.mailboxes
            .iter()
            .find(|m| m.name == name)
            .cloned()
            .unwrap_or_else(|| Mailbox::default_for(name))
    }

    /// Checks everything against the office's users: the language, group members,
    /// mailboxes, and every version of every flow ([`vaxel_routing::validate`]).
    /// Errors name the flow, version and step, or the group or mailbox, at fault.
    pub fn check(&self, users: &[OfficeUser]) -> Result<(), String> {
        if !LANGUAGES.contains(&self.language.as_str()) {
            return Err(format!(
                "routing.language {:?} must be one of {}",
                self.language,
                LANGUAGES.join(", ")
            ));
        }
        if jiff::tz::TimeZone::get(&self.time_zone).is_err() {
            return Err(format!(
                "routing.time_zone {:?} is not a time zone",
                self.time_zone
            ));
        }
        let exts: BTreeSet<&str> = users.iter().map(|u| u.extension.as_str()).collect();
        for (name, g) in &self.groups {
            if g.members.is_empty() {
                return Err(format!("group {name} has no members"));
            }
            if let Some(m) = g.members.iter().find(|m| !exts.contains(m.user.as_str())) {
                return Err(format!(
                    "group {name}: member {} is not an extension",
                    m.user
                ));
            }
        }
        for m in &self.mailboxes {
            if let Some(x) = m.members.iter().find(|x| !exts.contains(x.as_str())) {
                return Err(format!(
                    "mailbox {}: member {x} is not an extension",
                    m.name
                ));
            }
            if m.pin
                .as_ref()
                .is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
            {
                return Err(format!("mailbox {}: pin must be digits", m.name));
            }
            if m.pin_sha256
                .as_ref()
                .is_some_and(|h| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(format!(
                    "mailbox {}: pin_sha256 must be 64 hex digits",
                    m.name
                ));
            }
        }
        let cfg = self.to_config(users, &BTreeMap::new());
        for f in &self.flows {
            if f.numbers.is_empty() {
                return Err(format!("flow {}: no main number", f.name));
            }
            for v in &f.versions {
                if let Err(errs) = vaxel_routing::validate(&cfg, v) {
                    let e = &errs[0];
                    return Err(format!("flow {} version {}: {e}", f.name, v.version));
                }
            }
            if let Some(a) = f.active
                && !f.versions.iter().any(|v| v.version == a)
            {
                return Err(format!(
                    "flow {}: active version {a} does not exist",
                    f.name
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_prompt_exists_in_every_language() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/prompts");
        for lang in LANGUAGES {
            for p in DEFAULT_PROMPTS {
                let f = dir.join(lang).join(format!("{p}.wav"));
                let bytes = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                let prompt = vaxel_media::wav::Prompt::from_wav(&bytes[..], 8000).unwrap();
                assert!(
                    prompt.duration().as_millis() > 400,
                    "{} is too short",
                    f.display()
                );
            }
        }
        assert!(dir.join("music.wav").is_file());
    }

    #[test]
    fn pins_are_stored_hashed_and_still_match() {
        let mut r = Routing {
            mailboxes: vec![Mailbox {
                pin: Some("1234".into()),
                ..Mailbox::default_for("office")
            }],
            ..Routing::default()
        };
        r.hash_pins();
        let m = &r.mailboxes[0];
        assert_eq!(m.pin, None);
        assert!(m.pin_matches("1234"));
        assert!(!m.pin_matches("4321"));
        assert!(!m.pin_matches(""));
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("1234"), "{json}");
    }
}
