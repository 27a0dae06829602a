//! Allocation-free scanners for the character classes and small productions of
//! RFC 3261 §25.1. Every function works on bytes and returns positions, so the
//! parser can validate a value without building anything.

use std::borrow::Cow;

// Character class bits.
pub(crate) const TOKEN: u16 = 1; // token (§25.1)
pub(crate) const WORD: u16 = 1 << 1; // word (Call-ID)
pub(crate) const UNRESERVED: u16 = 1 << 2; // alphanum / mark
pub(crate) const USER: u16 = 1 << 3; // unreserved / user-unreserved
pub(crate) const PASSWORD: u16 = 1 << 4; // unreserved / & = + $ ,
pub(crate) const PARAM: u16 = 1 << 5; // unreserved / param-unreserved
pub(crate) const HNV: u16 = 1 << 6; // unreserved / hnv-unreserved
pub(crate) const URIC: u16 = 1 << 7; // reserved / unreserved (+ [ ] # %) for other schemes
pub(crate) const HOST: u16 = 1 << 8; // hostname characters (plus `_`, seen in the wild)
pub(crate) const TOKEN68: u16 = 1 << 9; // RFC 7235 token68 body characters
pub(crate) const LABEL: u16 = 1 << 10; // HOST without `.`: one label of a host name
pub(crate) const GEN_VALUE: u16 = 1 << 11; // token / host / unbracketed IPv6: token and `:`

const fn in_set(c: u8, set: &[u8]) -> bool {
    let mut i = 0;
    while i < set.len() {
        if set[i] == c {
            return true;
        }
        i += 1;
    }
    false
}

const fn build_table() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let alnum = c.is_ascii_alphanumeric();
        let mut f = 0u16;
        if alnum || in_set(c, b"-.!%*_+`'~") {
            f |= TOKEN;
        }
        if alnum || in_set(c, b"-.!%*_+`'~()<>:\\\"/[]?{}") {
            f |= WORD;
        }
        let unreserved = alnum || in_set(c, b"-_.!~*'()");
        if unreserved {
            f |= UNRESERVED;
        }
        if unreserved || in_set(c, b"&=+$,;?/") {
            f |= USER;
        }
        if unreserved || in_set(c, b"&=+$,") {
            f |= PASSWORD;
        }
        if unreserved || in_set(c, b"[]/:&+$") {
            f |= PARAM;
        }
        if unreserved || in_set(c, b"[]/?:+$") {
            f |= HNV;
        }
        if unreserved || in_set(c, b";/?:@&=+$,[]#%") {
            f |= URIC;
        }
        if alnum || in_set(c, b"-._") {
            f |= HOST;
        }
        if alnum || in_set(c, b"-.!%*_+`'~:") {
            f |= GEN_VALUE;
        }
        if alnum || in_set(c, b"-_") {
            f |= LABEL;
        }
        if alnum || in_set(c, b"-._~+/") {
            f |= TOKEN68;
        }
        t[i] = f;
        i += 1;
    }
    t
}

static TABLE: [u16; 256] = build_table();

/// Whether `c` belongs to `class`.
#[inline]
pub(crate) fn is(c: u8, class: u16) -> bool {
    TABLE[c as usize] & class != 0
}

/// Whether `c` is linear white space within one (unfolded) line.
#[inline]
pub(crate) fn is_wsp(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// Index of the first byte at or after `i` that is not SP/HT.
#[inline]
pub(crate) fn skip_wsp(s: &[u8], mut i: usize) -> usize {
    // Most calls find no whitespace at all: one compare for the common exit
    // (SP and HT are the only bytes <= SP that are skipped).
    while i < s.len() && s[i] <= b' ' && is_wsp(s[i]) {
        i += 1;
    }
    i
}

/// Index of the first byte at or after `i` outside `class`.
///
/// Eight bytes at a time with one bounds check per block; inside a block
/// the first byte outside the class returns at once, with no further bounds
/// check and no loop counter: most runs (tokens, host labels, URI parts) are
/// a few bytes long and end inside their first or second block. Only the
/// last seven bytes of `s` go byte by byte with a bounds check each.
#[inline]
pub(crate) fn run(s: &[u8], mut i: usize, class: u16) -> usize {
    while let Some(w) = s.get(i..i + 8) {
        for (k, &c) in w.iter().enumerate() {
            if TABLE[c as usize] & class == 0 {
                return i + k;
            }
        }
        i += 8;
    }
    while i < s.len() && is(s[i], class) {
        i += 1;
    }
    i
}

/// Like [`run`], but also accepts `escaped = "%" HEXDIG HEXDIG` (§25.1).
/// Returns `None` on a `%` not followed by two hex digits.
///
/// The usual run without escapes is decided inline; the rest is a call.
#[inline(always)]
pub(crate) fn run_escaped(s: &[u8], i: usize, class: u16) -> Option<usize> {
    // `%` is in none of the classes this is used with: run to the first byte
    // outside the class, then step over an escape and go on.
    debug_assert!(!is(b'%', class));
    let e = run(s, i, class);
    if s.get(e) != Some(&b'%') {
        return Some(e);
    }
    run_escaped_from(s, e, class)
}

/// [`run_escaped`] from the `%` at `s[i]`.
#[inline(never)]
fn run_escaped_from(s: &[u8], mut i: usize, class: u16) -> Option<usize> {
    loop {
        if s.get(i) != Some(&b'%') {
            return Some(i);
        }
        if i + 2 < s.len() && s[i + 1].is_ascii_hexdigit() && s[i + 2].is_ascii_hexdigit() {
            i += 3;
        } else {
            return None;
        }
        i = run(s, i, class);
    }
}

/// `&s[a..b]` for positions the scanners found, which are next to ASCII
/// bytes and so always on character boundaries. Unlike the indexing
/// operator it cannot panic: a slice whose result goes unused (a scan that
/// only validates) is then removed by the optimiser, where the panicking
/// form keeps an out-of-line boundary check for every field of a `Raw*`
/// struct. Out-of-range positions (a bug) give "" in release builds.
#[inline(always)]
pub(crate) fn sub(s: &str, a: usize, b: usize) -> &str {
    debug_assert!(s.get(a..b).is_some(), "slice {a}..{b} of {s:?}");
    // `split_at_checked` inlines to two compares per end, where
    // `str::get` stays an out-of-line call.
    let Some((left, _)) = s.split_at_checked(b) else {
        return "";
    };
    left.split_at_checked(a).map_or("", |(_, r)| r)
}

/// Whether the whole of `s` is a non-empty token.
#[inline]
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && run(s.as_bytes(), 0, TOKEN) == s.len()
}

/// Skips a quoted-string starting at `s[i] == '"'` (§25.1) and returns the index
/// after its closing quote, or `None` when it is unterminated or holds a byte that
/// qdtext/quoted-pair do not allow.
pub(crate) fn skip_quoted(s: &[u8], i: usize) -> Option<usize> {
    debug_assert_eq!(s.get(i), Some(&b'"'));
    let mut j = i + 1;
    while j < s.len() {
        match s[j] {
            b'"' => return Some(j + 1),
            b'\\' => {
                // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
                let c = *s.get(j + 1)?;
                if c == b'\n' || c == b'\r' || c > 0x7f {
                    return None;
                }
                j += 2;
            }
            b'\t' => j += 1,
            c if c < 0x20 || c == 0x7f => return None,
            _ => j += 1,
        }
    }
    None
}

/// Skips a comment `( ... )` with nesting and quoted-pairs (§25.1), from `s[i] == '('`.
pub(crate) fn skip_comment(s: &[u8], i: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut j = i;
    while j < s.len() {
        match s[j] {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(j + 1);
                }
            }
            // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
            b'\\' => {
                if matches!(s.get(j + 1), Some(b'\r' | b'\n')) {
                    return None;
                }
                j += 1;
            }
            c if (c < 0x20 && c != b'\t') || c == 0x7f => return None,
            _ => {}
        }
        j += 1;
    }
    None
}

/// Removes the quotes and quoted-pair backslashes of a quoted-string; other text
/// is returned unchanged.
pub(crate) fn unquote(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    if b.len() < 2 || b[0] != b'"' || b[b.len() - 1] != b'"' {
        return Cow::Borrowed(s);
    }
    let inner = &s[1..s.len() - 1];
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Writes `s` as a quoted-string, escaping `"` and `\` (§25.1).
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            // quoted-pair cannot carry CR or LF (§25.1).
            '\r' | '\n' => out.push(' '),
            // Quotes, backslashes and controls other than HT go as quoted-pairs.
            '"' | '\\' | '\0'..='\x08' | '\x0b'..='\x1f' | '\x7f' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Parses `1*DIGIT` as a u64 with an upper bound; `None` when empty, not all
/// digits, or above `max` (RFC 4475 §3.1.2.4/3.1.2.5: overflowing scalars).
#[inline]
pub(crate) fn parse_num(s: &str, max: u64) -> Option<u64> {
    parse_num_bytes(s.as_bytes(), max)
}

/// [`parse_num`] on bytes.
#[inline]
pub(crate) fn parse_num_bytes(s: &[u8], max: u64) -> Option<u64> {
    if s.is_empty() || s.len() > 40 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    (v <= max).then_some(v)
}

/// Trims SP/HT from both ends.
#[inline]
pub(crate) fn trim(s: &str) -> &str {
    let b = s.as_bytes();
    let mut i = 0;
    let mut j = b.len();
    while i < j && is_wsp(b[i]) {
        i += 1;
    }
    while j > i && is_wsp(b[j - 1]) {
        j -= 1;
    }
    sub(s, i, j)
}

/// Splits a header value into its comma-separated elements, ignoring commas
/// inside quoted-strings and `<...>` (§7.3.1). Elements are trimmed; empty
/// elements are yielded (the caller decides whether they are allowed).
pub(crate) struct CommaSplit<'a> {
    s: &'a str,
    pos: usize,
    done: bool,
}

impl<'a> CommaSplit<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        CommaSplit {
            s,
            pos: 0,
            done: false,
        }
    }
}

impl<'a> Iterator for CommaSplit<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        if self.done {
            return None;
        }
        let b = self.s.as_bytes();
        let start = self.pos;
        let mut i = start;
        let mut in_quote = false;
        let mut in_angle = false;
        while i < b.len() {
            let c = b[i];
            if in_quote {
                if c == b'\\' {
                    i += 1;
                } else if c == b'"' {
                    in_quote = false;
                }
            } else if c == b'"' {
                in_quote = true;
            } else if c == b'<' {
                in_angle = true;
            } else if c == b'>' {
                in_angle = false;
            } else if c == b',' && !in_angle {
                self.pos = i + 1;
                return Some(trim(&self.s[start..i]));
            }
            i += 1;
        }
        self.done = true;
        Some(trim(&self.s[start.min(self.s.len())..]))
    }
}

/// Percent-encodes every byte of `s` outside `class` (§19.1.2, §25.1 `escaped`).
pub(crate) fn escape(s: &str, class: u16) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c != b'%' && is(c, class) {
            out.push(c as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[(c >> 4) as usize]));
            out.push(char::from(b"0123456789ABCDEF"[(c & 15) as usize]));
        }
    }
    out
}

/// Decodes `%HH` escapes. Invalid escapes are kept as they are.
pub(crate) fn unescape(s: &str) -> Cow<'_, [u8]> {
    let b = s.as_bytes();
    if !b.contains(&b'%') {
        return Cow::Borrowed(b);
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(out)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_strings() {
        assert_eq!(skip_quoted(br#""a\"b" x"#, 0), Some(6));
        assert_eq!(skip_quoted(br#""abc"#, 0), None);
        assert_eq!(skip_quoted(b"\"\\\x07\"", 0), Some(4));
        assert_eq!(unquote(r#""J Rosenberg \\\"""#), r#"J Rosenberg \""#);
        assert_eq!(quote(r#"a"b\"#), r#""a\"b\\""#);
    }

    #[test]
    fn comma_split_respects_quotes_and_angles() {
        let v: Vec<_> = CommaSplit::new(r#""a,b" <sip:x;p=1,2>;q=1 , sip:y"#).collect();
        assert_eq!(v, vec![r#""a,b" <sip:x;p=1,2>;q=1"#, "sip:y"]);
        let v: Vec<_> = CommaSplit::new(";;,;,,").collect();
        assert_eq!(v, vec![";;", ";", "", ""]);
    }

    #[test]
    fn escapes() {
        assert_eq!(run_escaped(b"a%41b", 0, USER), Some(5));
        assert_eq!(run_escaped(b"a%4", 0, USER), None);
        assert_eq!(run_escaped(b"a%ZZ", 0, USER), None);
        assert_eq!(&*unescape("%75se%72"), b"user");
        assert_eq!(escape("a b@c", USER), "a%20b%40c");
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_num("0068", 255), Some(68));
        assert_eq!(parse_num("300", 255), None);
        assert_eq!(parse_num("36893488147419103232", u64::from(u32::MAX)), None);
        assert_eq!(parse_num("-1", 10), None);
        assert_eq!(parse_num("", 10), None);
    }
}
