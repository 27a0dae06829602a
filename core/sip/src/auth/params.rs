//! The auth-param grammar shared by every digest header value: schemes, `name=value` lists,
//! tokens and quoted strings (RFC 3261 §25.1 and §7.3.1, RFC 7235 §2.1).
//!
//! The reader works on a header *value* as the message parser hands it over. It tolerates
//! what real peers send: whitespace (including folded lines) around `=` and `,`, empty list
//! elements, names in any case, and unquoted values with characters outside `token`
//! (servers send base64 nonces bare). It never panics: anything else is a [`ParseError`].

use core::fmt::{self, Write as _};
use std::collections::HashSet;

use super::ParseError;
use super::algorithm::clip;

/// A parameter this module does not interpret, kept so that printing what was parsed
/// loses nothing (RFC 7616 §3.3 and §3.4 allow further `auth-param`s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthParam {
    /// The name as it was written (names compare ignoring ASCII case).
    pub name: String,
    /// The value with quoted-string escapes resolved.
    pub value: String,
    /// Whether the value was (and will be printed as) a quoted string.
    pub quoted: bool,
}

/// One challenge or credentials as read from the grammar, before interpretation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawAuth {
    pub scheme: String,
    pub params: Vec<AuthParam>,
}

/// Characters of `token` (RFC 3261 §25.1).
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// Whether `s` is a non-empty `token`.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

/// Bytes tolerated in an unquoted parameter value: visible ASCII except the separators that
/// would make the list ambiguous. Wider than `token` on purpose (see the module comment).
fn is_bare_value_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b',' | b'"' | b'\\' | b';')
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

struct Reader<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.pos += 1;
        }
    }

    fn unexpected(&self) -> ParseError {
        match self.s[self.pos..].chars().next() {
            Some(found) => ParseError::Unexpected {
                at: self.pos,
                found,
            },
            None => ParseError::UnexpectedEnd,
        }
    }

    fn token(&mut self) -> Result<&'a str, ParseError> {
        let start = self.pos;
        while self.peek().is_some_and(is_token_byte) {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.unexpected());
        }
        Ok(&self.s[start..self.pos])
    }

    /// `quoted-string = SWS DQUOTE *(qdtext / quoted-pair) DQUOTE` (RFC 3261 §25.1), with
    /// folded line breaks read as one space (RFC 3261 §7.3.1).
    fn quoted(&mut self) -> Result<String, ParseError> {
        let open = self.pos;
        self.pos += 1; // the opening quote
        let mut out = String::new();
        let rest = &self.s[self.pos..];
        let mut chars = rest.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    // quoted-pair excludes CR and LF (RFC 3261 §25.1).
                    Some((j, '\r' | '\n')) => {
                        return Err(ParseError::Unexpected {
                            at: self.pos + j,
                            found: rest[j..].chars().next().unwrap_or('\n'),
                        });
                    }
                    Some((_, e)) => out.push(e),
                    None => break,
                },
                '\r' | '\n' => {
                    // Only a fold (line break followed by white space) may appear here.
                    let mut k = i;
                    if c == '\r' && chars.peek().map(|&(_, n)| n) == Some('\n') {
                        chars.next();
                        k += 1;
                    }
                    match chars.peek() {
                        Some(&(_, ' ' | '\t')) => {
                            while matches!(chars.peek(), Some(&(_, ' ' | '\t'))) {
                                chars.next();
                            }
                            out.push(' ');
                        }
                        _ => {
                            return Err(ParseError::Unexpected {
                                at: self.pos + k,
                                found: c,
                            });
                        }
                    }
                }
                c if c != '\t' && (c.is_ascii_control()) => {
                    return Err(ParseError::Unexpected {
                        at: self.pos + i,
                        found: c,
                    });
                }
                c => out.push(c),
            }
        }
        Err(ParseError::UnterminatedQuote(open))
    }

    fn bare_value(&mut self) -> Result<&'a str, ParseError> {
        let start = self.pos;
        while self.peek().is_some_and(is_bare_value_byte) {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.unexpected());
        }
        Ok(&self.s[start..self.pos])
    }

    fn value(&mut self) -> Result<(String, bool), ParseError> {
        if self.peek() == Some(b'"') {
            Ok((self.quoted()?, true))
        } else {
            Ok((self.bare_value()?.to_owned(), false))
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a list element.
    Start,
    /// Just after a scheme: its first parameter may follow without a comma.
    AfterScheme,
    /// After a parameter: only a comma or the end may follow.
    NeedComma,
}

/// Reads a list of challenges or credentials: `scheme [params] *("," scheme [params])`,
/// the comma-joined form HTTP allows (RFC 7235 §4.1). SIP sends one per header field
/// (RFC 3261 §7.3.1), which is the one-element case of this.
pub(crate) fn parse_auth_list(s: &str) -> Result<Vec<RawAuth>, ParseError> {
    let mut r = Reader { s, pos: 0 };
    let mut out: Vec<RawAuth> = Vec::new();
    let mut state = State::Start;
    loop {
        r.skip_ws();
        let Some(b) = r.peek() else { break };
        if b == b',' {
            r.pos += 1;
            state = State::Start;
            continue;
        }
        if state == State::NeedComma {
            return Err(r.unexpected());
        }
        let name = r.token()?;
        r.skip_ws();
        if r.peek() == Some(b'=') {
            r.pos += 1;
            r.skip_ws();
            let (value, quoted) = r.value()?;
            let Some(cur) = out.last_mut() else {
                return Err(ParseError::MissingScheme);
            };
            cur.params.push(AuthParam {
                name: name.to_owned(),
                value,
                quoted,
            });
            state = State::NeedComma;
        } else {
            if state == State::AfterScheme {
                // `Digest Digest realm=…`, or a bare word inside a challenge.
                return Err(ParseError::Unexpected {
                    at: r.pos - name.len(),
                    found: name.chars().next().unwrap_or(' '),
                });
            }
            out.push(RawAuth {
                scheme: name.to_owned(),
                params: Vec::new(),
            });
            state = State::AfterScheme;
        }
    }
    if out.is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(out)
}

/// Reads a bare parameter list, as in `Authentication-Info` (RFC 3261 §20.6, RFC 7615 §3),
/// which has no scheme.
pub(crate) fn parse_param_list(s: &str) -> Result<Vec<AuthParam>, ParseError> {
    let mut r = Reader { s, pos: 0 };
    let mut out = Vec::new();
    let mut need_comma = false;
    loop {
        r.skip_ws();
        let Some(b) = r.peek() else { break };
        if b == b',' {
            r.pos += 1;
            need_comma = false;
            continue;
        }
        if need_comma {
            return Err(r.unexpected());
        }
        let name = r.token()?;
        r.skip_ws();
        if r.peek() != Some(b'=') {
            return Err(r.unexpected());
        }
        r.pos += 1;
        r.skip_ws();
        let (value, quoted) = r.value()?;
        out.push(AuthParam {
            name: name.to_owned(),
            value,
            quoted,
        });
        need_comma = true;
    }
    if out.is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(out)
}

/// Takes the known parameters out of a list by name (ignoring case), leaving the unknown ones
/// in order; rejects a known parameter given twice (RFC 7235 §2.1: "each parameter name MUST
/// only occur once per challenge").
pub(crate) struct Params {
    rest: Vec<AuthParam>,
}

impl Params {
    pub(crate) fn new(params: Vec<AuthParam>) -> Self {
        Params { rest: params }
    }

    /// Removes and returns the parameter `name`, or an error if it is there twice.
    pub(crate) fn take(&mut self, name: &'static str) -> Result<Option<AuthParam>, ParseError> {
        let mut found = None;
        let mut i = 0;
        while i < self.rest.len() {
            if self.rest[i].name.eq_ignore_ascii_case(name) {
                if found.is_some() {
                    return Err(ParseError::DuplicateParam(name));
                }
                found = Some(self.rest.remove(i));
            } else {
                i += 1;
            }
        }
        Ok(found)
    }

    /// Like [`Params::take`] for a parameter that must be there.
    pub(crate) fn require(&mut self, name: &'static str) -> Result<AuthParam, ParseError> {
        self.take(name)?.ok_or(ParseError::MissingParam(name))
    }

    /// The unknown parameters, in their original order. Duplicates among them are an error
    /// as well, since a receiver could not tell which one counts.
    pub(crate) fn finish(self) -> Result<Vec<AuthParam>, ParseError> {
        // A set, not a pairwise scan: a 64 KiB header of `a=b,` pairs must stay linear.
        let mut seen = HashSet::with_capacity(self.rest.len());
        for p in &self.rest {
            if !seen.insert(p.name.to_ascii_lowercase()) {
                return Err(ParseError::DuplicateExtension(clip(&p.name)));
            }
        }
        Ok(self.rest)
    }
}

/// Writes `"value"`, escaping `"` and `\` (RFC 3261 §25.1 quoted-pair).
///
/// CR and LF cannot be carried by a quoted-pair; they become spaces, so no value can ever
/// break out of its header line (header injection).
pub(crate) fn write_quoted(f: &mut impl fmt::Write, value: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                f.write_char('\\')?;
                f.write_char(c)?;
            }
            '\r' | '\n' => f.write_char(' ')?,
            c if c.is_ascii_control() && c != '\t' => {
                // Other controls are legal only escaped (RFC 3261 §25.1 quoted-pair).
                f.write_char('\\')?;
                f.write_char(c)?;
            }
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

/// Writes a value that the grammar wants unquoted (algorithm, nc, qop in credentials,
/// stale…), quoting it anyway if it is not a valid bare value, so the output always reads
/// back.
pub(crate) fn write_bare(f: &mut impl fmt::Write, value: &str) -> fmt::Result {
    if !value.is_empty() && value.bytes().all(is_bare_value_byte) {
        f.write_str(value)
    } else {
        write_quoted(f, value)
    }
}

/// Writes the unknown parameters after the known ones; a name that is not a token (only
/// possible if the caller built one by hand) is left out rather than printed unreadably.
pub(crate) fn write_extensions(
    f: &mut impl fmt::Write,
    sep: &mut Separator,
    params: &[AuthParam],
) -> fmt::Result {
    for p in params.iter().filter(|p| is_token(&p.name)) {
        sep.next(f)?;
        write!(f, "{}=", p.name)?;
        if p.quoted {
            write_quoted(f, &p.value)?;
        } else {
            write_bare(f, &p.value)?;
        }
    }
    Ok(())
}

/// Prints `, ` between parameters but not before the first.
pub(crate) struct Separator(bool);

impl Separator {
    pub(crate) fn new() -> Self {
        Separator(false)
    }

    pub(crate) fn next(&mut self, f: &mut impl fmt::Write) -> fmt::Result {
        if self.0 {
            f.write_str(", ")?;
        }
        self.0 = true;
        Ok(())
    }
}

/// Decodes an RFC 8187 `ext-value` (`UTF-8''J%C3%A4s%C3%B8n%20Doe`) as used by `username*`
/// (RFC 7616 §3.4.4). Only the UTF-8 charset is accepted (RFC 8187 §3.2.1 makes it
/// mandatory; RFC 7616 §4 allows no other).
pub(crate) fn decode_ext_value(v: &str) -> Result<String, ParseError> {
    let bad = ParseError::InvalidValue("username*");
    let (charset, rest) = v.split_once('\'').ok_or(bad.clone())?;
    let (_language, encoded) = rest.split_once('\'').ok_or(bad.clone())?;
    if !charset.eq_ignore_ascii_case("UTF-8") {
        return Err(bad);
    }
    let b = encoded.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3).ok_or(bad.clone())?;
                let hex = core::str::from_utf8(hex).map_err(|_| bad.clone())?;
                let byte = u8::from_str_radix(hex, 16).map_err(|_| bad.clone())?;
                if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return Err(bad);
                }
                out.push(byte);
                i += 3;
            }
            c if c.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&c) => {
                out.push(c);
                i += 1;
            }
            _ => return Err(bad),
        }
    }
    String::from_utf8(out).map_err(|_| bad)
}

/// Encodes a string as an RFC 8187 `ext-value` with the UTF-8 charset and no language.
pub(crate) fn encode_ext_value(v: &str) -> String {
    let mut s = String::from("UTF-8''");
    for &c in v.as_bytes() {
        if c.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&c) {
            s.push(char::from(c));
        } else {
            let _ = write!(s, "%{c:02X}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, value: &str, quoted: bool) -> AuthParam {
        AuthParam {
            name: name.into(),
            value: value.into(),
            quoted,
        }
    }

    #[test]
    fn reads_one_challenge_with_escapes_and_folding() {
        let v =
            "Digest realm=\"a \\\"b\\\" \\\\ c\",\r\n nonce = abc/+=,qop=\"auth,\r\n\tauth-int\"";
        let got = parse_auth_list(v).unwrap();
        assert_eq!(
            got,
            vec![RawAuth {
                scheme: "Digest".into(),
                params: vec![
                    p("realm", "a \"b\" \\ c", true),
                    p("nonce", "abc/+=", false),
                    p("qop", "auth, auth-int", true),
                ],
            }]
        );
    }

    #[test]
    fn reads_several_challenges_and_empty_elements() {
        let got = parse_auth_list(", Negotiate, Digest realm=\"x\",, nonce=\"y\" , Basic realm=z")
            .unwrap();
        let schemes: Vec<_> = got.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["Negotiate", "Digest", "Basic"]);
        assert_eq!(got[1].params.len(), 2);
        assert_eq!(got[2].params, vec![p("realm", "z", false)]);
    }

    #[test]
    fn rejects_broken_lists() {
        for bad in [
            "",
            "   ",
            "realm=\"x\"",
            "Digest realm=\"x",
            "Digest realm=\"x\\",
            "Digest realm=\"x\" nonce=\"y\"",
            "Digest Digest realm=x",
            "Digest realm=",
            "Digest realm=,",
            "Digest =x",
            "Digest realm=\"a\rb\"",
            "Digest realm=\"a\r\nb\"",
            "Digest realm=\"a\\\nb\"",
            "Digest realm=\"a\0b\"",
            "Digest realm=x;y",
        ] {
            assert!(parse_auth_list(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn param_lists_without_scheme() {
        let got = parse_param_list("nextnonce=\"n\", qop=auth,rspauth=\"ab\"").unwrap();
        assert_eq!(got.len(), 3);
        assert!(parse_param_list("Digest nextnonce=\"n\"").is_err());
        assert!(parse_param_list("").is_err());
    }

    #[test]
    fn take_ignores_case_and_rejects_duplicates() {
        let mut ps = Params::new(vec![p("REALM", "a", true), p("x", "1", false)]);
        assert_eq!(ps.take("realm").unwrap().unwrap().value, "a");
        assert_eq!(ps.take("realm").unwrap(), None);
        assert_eq!(ps.finish().unwrap(), vec![p("x", "1", false)]);
        let mut ps = Params::new(vec![p("realm", "a", true), p("Realm", "b", true)]);
        assert_eq!(ps.take("realm"), Err(ParseError::DuplicateParam("realm")));
        let ps = Params::new(vec![p("x", "a", true), p("X", "b", true)]);
        assert!(ps.finish().is_err());
    }

    #[test]
    fn printing_escapes_and_never_breaks_the_line() {
        let mut s = String::new();
        write_quoted(&mut s, "a\"b\\c\r\nd\u{1}").unwrap();
        assert_eq!(s, "\"a\\\"b\\\\c  d\\\u{1}\"");
        let mut s = String::new();
        write_bare(&mut s, "needs quoting").unwrap();
        assert_eq!(s, "\"needs quoting\"");
    }

    #[test]
    fn ext_values() {
        let enc = encode_ext_value("J\u{e4}s\u{f8}n Doe");
        assert_eq!(enc, "UTF-8''J%C3%A4s%C3%B8n%20Doe");
        assert_eq!(decode_ext_value(&enc).unwrap(), "J\u{e4}s\u{f8}n Doe");
        assert_eq!(decode_ext_value("utf-8'en'abc").unwrap(), "abc");
        for bad in [
            "abc",
            "ISO-8859-1''abc",
            "UTF-8''%G1",
            "UTF-8''%C3",
            "UTF-8''%+1",
            "UTF-8''a b",
        ] {
            assert!(decode_ext_value(bad).is_err(), "{bad}");
        }
    }
}
