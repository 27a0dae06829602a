//! The office file: a TOML description of one office (SIP domain, users, trunks,
//! emergency numbers, protection limits) that the engine imports into its database.
//!
//! Reading is strict: unknown keys, a number that is not a number, a duplicate
//! extension and a trunk route to nobody are all refused with the file, the line
//! and the reason ([`OfficeError`]), before anything is written. Passwords are
//! turned into digest HA1s at import ([`crate::db::Db::import_office`]) and never
//! stored; [`Office::to_toml`] exports the HA1s instead.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// A whole office file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Office {
    /// The office itself: SIP domain and name.
    pub office: OfficeInfo,
    /// Users (one per person).
    #[serde(default)]
    pub users: Vec<User>,
    /// SIP trunks to providers.
    #[serde(default)]
    pub trunks: Vec<Trunk>,
    /// Emergency numbers: always allowed, always routed.
    #[serde(default)]
    pub emergency: Emergency,
    /// Brute-force and flood protection (R-503).
    #[serde(default)]
    pub protection: Protection,
    /// Call flows, opening hours, hunt groups, mailboxes (R-303…R-312).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<crate::callflow::Routing>,
}

/// `[office]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OfficeInfo {
    /// The SIP domain, also the digest realm (RFC 3261 §22.1).
    pub domain: String,
    /// A display name for the office.
    #[serde(default)]
    pub name: String,
    /// Digest algorithms offered in challenges, most preferred first (RFC 8760 §2.4).
    /// Some devices (SIPp, old phones) answer only the first challenge and know only
    /// MD5; put `MD5` first for them.
    #[serde(default = "default_digest")]
    pub digest: Vec<String>,
}

fn default_digest() -> Vec<String> {
    vec!["SHA-256".into(), "MD5".into()]
}

/// A role in the control API (R-315).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An ordinary user.
    #[default]
    User,
    /// A telephonist.
    Attendant,
    /// Sees queues and statistics.
    Supervisor,
    /// Changes the configuration.
    Administrator,
}

impl Role {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Attendant => "attendant",
            Role::Supervisor => "supervisor",
            Role::Administrator => "administrator",
        }
    }

    /// The role named `s`.
    pub fn parse(s: &str) -> Option<Role> {
        [
            Role::User,
            Role::Attendant,
            Role::Supervisor,
            Role::Administrator,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// `[[users]]`: one person, reachable by a short and a long number (R-302).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Short extension number (digits), also the SIP username.
    pub extension: Spanned<String>,
    /// Long number, E.164 with `+`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<Spanned<String>>,
    /// Full name.
    pub name: String,
    /// E-mail address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email: String,
    /// Department.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub department: String,
    /// Job title.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    /// Mobile number.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mobile: String,
    /// The SIP password in clear: hashed on import, never stored. Give either this
    /// or both `ha1_md5` and `ha1_sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Spanned<String>>,
    /// `MD5(extension:domain:password)` in hex (what an export writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha1_md5: Option<String>,
    /// `SHA-256(extension:domain:password)` in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha1_sha256: Option<String>,
    /// Role in the control API.
    #[serde(default)]
    pub role: Role,
    /// May call external numbers through a trunk (emergency numbers are always allowed).
    #[serde(default)]
    pub external_calls: bool,
    /// Other numbers of the plan this user may present as caller ID (R-302).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub present_numbers: Vec<Spanned<String>>,
}

/// `[[trunks]]`: a SIP trunk to a provider (R-313).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Trunk {
    /// A name for logs and the API.
    pub name: String,
    /// The provider's host (IP or name).
    pub host: String,
    /// The provider's port.
    #[serde(default = "default_sip_port")]
    pub port: u16,
    /// `udp` or `tcp`.
    #[serde(default = "default_transport")]
    pub transport: String,
    /// Register to the provider with `username`/`password`.
    #[serde(default)]
    pub register: bool,
    /// Username at the provider.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// Password at the provider (needed in clear to answer its challenges).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// Numbers the provider delivers to us and what they reach.
    #[serde(default)]
    pub inbound: Vec<Inbound>,
    /// Dialled prefixes that go out through this trunk (`00`, `+`, `0`).
    #[serde(default)]
    pub outbound_prefixes: Vec<String>,
    /// Caller ID for users without a long number of their own.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub caller_id: String,
}

fn default_sip_port() -> u16 {
    5060
}

fn default_transport() -> String {
    "udp".into()
}

/// One inbound number of a trunk.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Inbound {
    /// The number as the provider sends it in the Request-URI or To.
    pub number: String,
    /// The extension it reaches.
    pub target: Spanned<String>,
}

/// `[emergency]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Emergency {
    /// Emergency numbers (`112`, `911`…).
    #[serde(default = "default_emergency")]
    pub numbers: Vec<String>,
}

impl Default for Emergency {
    fn default() -> Self {
        Emergency {
            numbers: default_emergency(),
        }
    }
}

fn default_emergency() -> Vec<String> {
    vec!["112".into()]
}

/// `[protection]`: Kamailio's pike defaults (16 requests in 2 s, 5-minute ban).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Protection {
    /// Requests per source allowed in one window.
    #[serde(default = "default_rate")]
    pub max_requests: u32,
    /// The window in seconds.
    #[serde(default = "default_window")]
    pub window_secs: u64,
    /// Failed authentications per source before a ban.
    #[serde(default = "default_failures")]
    pub max_auth_failures: u32,
    /// Ban length in seconds.
    #[serde(default = "default_ban")]
    pub ban_secs: u64,
    /// Source addresses never limited (besides the trunks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
}

impl Default for Protection {
    fn default() -> Self {
        Protection {
            max_requests: default_rate(),
            window_secs: default_window(),
            max_auth_failures: default_failures(),
            ban_secs: default_ban(),
            allow: Vec::new(),
        }
    }
}

fn default_rate() -> u32 {
    16
}
fn default_window() -> u64 {
    2
}
fn default_failures() -> u32 {
    5
}
fn default_ban() -> u64 {
    300
}

/// A bad office file: where and why. The file itself is the author's fault, so the
/// message names the line to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct OfficeError {
    /// The file as given.
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Where the thing a `[routing]` error names is defined: the flow's, group's or
/// mailbox's own line and, for a step, the step's table within the flow.
fn offset_of_culprit(text: &str, reason: &str) -> usize {
    let quoted = |after: &str| {
        let rest = reason.split_once(after)?.1;
        let name = rest.split([' ', ':']).next()?;
        Some(name.trim_matches('"').to_owned())
    };
    let mut at = text.find("[routing]").unwrap_or(0);
    if let Some(flow) = quoted("flow ") {
        if let Some(o) = text.find(&format!("name = \"{flow}\"")) {
            at = o;
        }
        if let Some(step) = quoted("step ")
            && let Some(o) = text[at..]
                .find(&format!(".steps.{step}]"))
                .or_else(|| text[at..].find(&format!(".steps.\"{step}\"]")))
        {
            at += o;
        }
    } else if let Some(g) = quoted("group ") {
        at = text.find(&format!("groups.{g}]")).unwrap_or(at);
    } else if let Some(m) = quoted("mailbox ") {
        at = text.find(&format!("name = \"{m}\"")).unwrap_or(at);
    } else if let Some(k) = reason.split_whitespace().next()
        && let Some(key) = k.strip_prefix("routing.")
    {
        at += text[at..].find(key).unwrap_or(0);
    }
    at
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_e164(s: &str) -> bool {
    s.strip_prefix('+')
        .is_some_and(|d| is_digits(d) && (3..=15).contains(&d.len()))
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Office {
    /// Reads an office file from disk.
    pub fn load(path: &Path) -> Result<Office, OfficeError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| OfficeError {
            file: name.clone(),
            line: 0,
            reason: format!("cannot read: {e}"),
        })?;
        Office::parse(&name, &text)
    }

    /// Parses and validates office TOML; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Office, OfficeError> {
        let err = |offset: usize, reason: String| OfficeError {
            file: file.to_owned(),
            line: line_of(text, offset),
            reason,
        };
        let office: Office = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            err(offset, e.message().trim().to_owned())
        })?;
        let o = &office;
        if o.office.domain.trim().is_empty() || o.office.domain.contains(char::is_whitespace) {
            return Err(err(0, "office.domain must be a host name".into()));
        }
        if o.office.digest.is_empty()
            || o.office
                .digest
                .iter()
                .any(|d| !matches!(d.as_str(), "SHA-256" | "MD5"))
        {
            return Err(err(0, "office.digest must list SHA-256 and/or MD5".into()));
        }
        let mut numbers: HashSet<&str> = HashSet::new();
        for u in &o.users {
            let ext = u.extension.get_ref();
            if !is_digits(ext) || ext.len() > 8 {
                return Err(err(
                    u.extension.span().start,
                    format!("extension {ext:?} must be 1 to 8 digits"),
                ));
            }
            if !numbers.insert(ext) {
                return Err(err(
                    u.extension.span().start,
                    format!("extension {ext} is used twice"),
                ));
            }
            if let Some(n) = &u.number {
                if !is_e164(n.get_ref()) {
                    return Err(err(
                        n.span().start,
                        format!(
                            "number {:?} must be E.164 (+ and 3 to 15 digits)",
                            n.get_ref()
                        ),
                    ));
                }
                if !numbers.insert(n.get_ref()) {
                    return Err(err(
                        n.span().start,
                        format!("number {} is used twice", n.get_ref()),
                    ));
                }
            }
            match (&u.password, &u.ha1_md5, &u.ha1_sha256) {
                (Some(p), _, _) if p.get_ref().len() < 4 => {
                    return Err(err(
                        p.span().start,
                        "password must be at least 4 characters".into(),
                    ));
                }
                (Some(_), _, _) => {}
                (None, Some(m), Some(s)) if is_hex(m, 32) && is_hex(s, 64) => {}
                _ => {
                    return Err(err(
                        u.extension.span().start,
                        format!("user {ext} needs a password (or ha1_md5 and ha1_sha256 in hex)"),
                    ));
                }
            }
        }
        let plan: HashSet<&str> = o
            .users
            .iter()
            .flat_map(|u| {
                std::iter::once(u.extension.get_ref().as_str())
                    .chain(u.number.as_ref().map(|n| n.get_ref().as_str()))
            })
            .chain(
                o.trunks
                    .iter()
                    .flat_map(|t| t.inbound.iter().map(|i| i.number.as_str())),
            )
            .collect();
        for u in &o.users {
            for p in &u.present_numbers {
                if !plan.contains(p.get_ref().as_str()) {
                    return Err(err(
                        p.span().start,
                        format!("{} is not a number of this office's plan", p.get_ref()),
                    ));
                }
            }
        }
        let mut trunk_names = HashSet::new();
        for t in &o.trunks {
            if !trunk_names.insert(t.name.as_str()) {
                return Err(err(0, format!("trunk {} is defined twice", t.name)));
            }
            if !matches!(t.transport.as_str(), "udp" | "tcp") {
                return Err(err(
                    0,
                    format!("trunk {}: transport must be udp or tcp", t.name),
                ));
            }
            if t.register && (t.username.is_empty() || t.password.is_empty()) {
                return Err(err(
                    0,
                    format!("trunk {}: register needs username and password", t.name),
                ));
            }
            for i in &t.inbound {
                if !o
                    .users
                    .iter()
                    .any(|u| u.extension.get_ref() == i.target.get_ref())
                {
                    return Err(err(
                        i.target.span().start,
                        format!(
                            "inbound {} reaches unknown extension {}",
                            i.number,
                            i.target.get_ref()
                        ),
                    ));
                }
            }
        }
        for n in &o.emergency.numbers {
            if !is_digits(n) {
                return Err(err(0, format!("emergency number {n:?} must be digits")));
            }
        }
        if let Some(r) = &o.routing {
            r.check(&o.routing_users())
                .map_err(|reason| err(offset_of_culprit(text, &reason), reason))?;
        }
        Ok(office)
    }

    /// The users as the router sees them.
    pub fn routing_users(&self) -> Vec<crate::callflow::OfficeUser> {
        self.users
            .iter()
            .map(|u| crate::callflow::OfficeUser {
                extension: u.extension.get_ref().clone(),
                number: u.number.as_ref().map(|n| n.get_ref().clone()),
            })
            .collect()
    }

    /// The office as TOML (passwords replaced by their HA1s).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[office]
domain = "office.test"

[[users]]
extension = "4001"
number = "+4570104001"
name = "Alice"
password = "alice-secret"
external_calls = true

[[users]]
extension = "4002"
name = "Bob"
password = "bob-secret"
present_numbers = ["+4570104001"]
"#;

    #[test]
    fn reads_a_good_file() {
        let o = Office::parse("good.toml", GOOD).unwrap();
        assert_eq!(o.users.len(), 2);
        assert_eq!(o.emergency.numbers, vec!["112"]);
        assert_eq!(o.protection.max_requests, 16);
    }

    #[test]
    fn duplicate_extension_names_the_line() {
        let bad = GOOD.replace("\"4002\"", "\"4001\"");
        let e = Office::parse("bad.toml", &bad).unwrap_err();
        assert_eq!(e.line, 13, "{e}");
        assert!(
            e.to_string()
                .starts_with("bad.toml:13: extension 4001 is used twice")
        );
    }

    #[test]
    fn syntax_and_unknown_keys_name_the_line() {
        let e = Office::parse("x.toml", "[office]\ndomain = \"a\"\ncolour = 3\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let e = Office::parse("x.toml", "[office]\ndomain = \n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn bad_number_and_foreign_presented_number() {
        let e = Office::parse(
            "x.toml",
            &GOOD.replace("+4570104001\"\nname", "12345\"\nname"),
        )
        .unwrap_err();
        assert_eq!(e.line, 7, "{e}");
        let e =
            Office::parse("x.toml", &GOOD.replace("[\"+4570104001\"]", "[\"+4599\"]")).unwrap_err();
        assert_eq!(e.line, 16, "{e}");
    }

    #[test]
    fn the_demo_office_with_its_call_flows_is_valid() {
        let text = include_str!("../../../assets/demo-office.toml");
        let o = Office::parse("demo-office.toml", text).unwrap();
        let r = o.routing.unwrap();
        assert_eq!(r.flows[0].numbers, ["7000", "+4570100000"]);
        assert_eq!(r.groups.len(), 2);
    }

    #[test]
    fn routing_errors_name_the_line_of_the_culprit() {
        let text = include_str!("../../../assets/demo-office.toml");
        let line_of_text = |needle: &str| text[..text.find(needle).unwrap()].lines().count() + 1;
        // A step leading nowhere: the error names the flow, version and step, at the
        // step's table.
        let bad = text.replace("next = \"menu\"", "next = \"menuu\"");
        let e = Office::parse("x.toml", &bad).unwrap_err();
        assert!(e.reason.contains("flow main version 1"), "{e}");
        assert!(e.reason.contains("\"welcome\""), "{e}");
        assert_eq!(
            e.line,
            line_of_text("[routing.flows.versions.steps.welcome]"),
            "{e}"
        );
        // A member who is not a user: the group's line.
        let bad = text.replace("{ user = \"4005\" }", "{ user = \"4999\" }");
        let e = Office::parse("x.toml", &bad).unwrap_err();
        assert!(e.reason.contains("group support"), "{e}");
        assert_eq!(e.line, line_of_text("[routing.groups.support]"), "{e}");
        // A prompt that does not exist.
        let bad = text.replace("prompt = \"invalid\"", "prompt = \"nope\"");
        let bad = bad.replace("invalid_prompt = \"invalid\"", "invalid_prompt = \"nope\"");
        let e = Office::parse("x.toml", &bad).unwrap_err();
        assert!(e.reason.contains("nope"), "{e}");
        assert_eq!(
            e.line,
            line_of_text("[routing.flows.versions.steps.menu]"),
            "{e}"
        );
        // A language without prompts.
        let bad = text.replace("language = \"da\"", "language = \"xx\"");
        let e = Office::parse("x.toml", &bad).unwrap_err();
        assert!(e.reason.contains("routing.language"), "{e}");
        assert_eq!(e.line, line_of_text("language = \"da\""), "{e}");
        // An unknown key inside [routing] is refused by the TOML reader with its line.
        let bad = text.replace("echo_number = \"8001\"", "echo_numbr = \"8001\"");
        let e = Office::parse("x.toml", &bad).unwrap_err();
        assert_eq!(e.line, line_of_text("echo_number"), "{e}");
    }

    #[test]
    fn a_user_needs_a_secret() {
        let e =
            Office::parse("x.toml", &GOOD.replace("password = \"bob-secret\"\n", "")).unwrap_err();
        assert!(e.reason.contains("needs a password"), "{e}");
    }
}
