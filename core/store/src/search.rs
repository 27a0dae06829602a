//! Search as you type over the directory, personal contacts and call history.
//!
//! # Index
//!
//! One FTS5 table, `search_fts`, with the `unicode61 remove_diacritics 2`
//! tokenizer (so "sall" finds "Sällström" and "Zoe" finds "Zoë") and prefix
//! indexes for 1, 2 and 3 characters (so the first keystrokes, which match the
//! most rows, are index lookups rather than scans of the term list). Each
//! record has one row, keyed by a rowid that encodes its kind and id
//! ([`row_id`]), with three indexed columns:
//!
//! - `name` (weight 10): the person's names;
//! - `other` (weight 1): organisation, department, title, location, e-mail,
//!   SIP URI, note;
//! - `digits` (weight 2): every phone number and extension as digits only,
//!   plus its national forms when it is international: "+46 70-123 45 67"
//!   is indexed as `46701234567 701234567 0701234567`.
//!
//! # Query
//!
//! The query is split on white space; runs of words that look like a phone
//! number ("070 123 45", "+46 (0)70") are joined into one digit string first.
//! Every word is reduced to its alphanumeric runs, and each run becomes a
//! quoted FTS5 prefix term (`"ann"*`); the terms are joined with `AND`. Because
//! each term is quoted and contains only letters and digits, no input — quotes,
//! `NEAR`, `*`, `-`, `:`, `^`, parentheses — can change the query's meaning or
//! make it fail. A query without any letter or digit matches nothing.
//!
//! # Ranking
//!
//! bm25 with the weights above, rounded to one decimal so near-equal scores
//! tie; ties go to favourites, then to the most recent. History hits are
//! collapsed to the newest call per remote party.

use std::collections::HashSet;

use rusqlite::{Transaction, params};

use crate::error::Result;
use crate::{Store, UnixMillis};

/// Where a [`SearchHit`] comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HitKind {
    /// The company directory ([`DirectoryId`](crate::DirectoryId)).
    Directory,
    /// A personal contact ([`ContactId`](crate::ContactId)).
    Contact,
    /// A call in the history ([`CallId`](crate::CallId)).
    History,
}

impl HitKind {
    fn code(self) -> i64 {
        match self {
            HitKind::Directory => 1,
            HitKind::Contact => 2,
            HitKind::History => 3,
        }
    }

    fn from_code(c: i64) -> Option<HitKind> {
        match c {
            1 => Some(HitKind::Directory),
            2 => Some(HitKind::Contact),
            3 => Some(HitKind::History),
            _ => None,
        }
    }
}

/// Bits of the rowid that hold the record's own id.
const ID_BITS: u32 = 40;

/// The search-index rowid of a record: kind in the high bits, id below.
pub(crate) fn row_id(kind: HitKind, id: i64) -> i64 {
    (kind.code() << ID_BITS) | (id & ((1 << ID_BITS) - 1))
}

/// The range of rowids of one kind, for bulk deletes.
pub(crate) fn row_range(kind: HitKind) -> (i64, i64) {
    (row_id(kind, 0), row_id(kind, (1 << ID_BITS) - 1))
}

/// One search result.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchHit {
    /// Which source.
    pub kind: HitKind,
    /// Row id within that source.
    pub id: i64,
    /// The name to show ("Anne Sällström").
    pub display: String,
    /// A second line: department and title, organisation, or the call's account.
    pub detail: String,
    /// The number (or SIP URI) to dial.
    pub number: String,
    /// A personal favourite.
    pub favourite: bool,
    /// bm25 score; lower is better.
    pub score: f64,
}

/// What one record puts into the index.
#[derive(Default)]
pub(crate) struct IndexRow<'a> {
    pub name: Vec<&'a str>,
    pub other: Vec<&'a str>,
    pub numbers: Vec<&'a str>,
    pub display: String,
    pub detail: String,
    pub number: String,
    pub favourite: bool,
    pub recency: UnixMillis,
}

/// Replaces the index row of `(kind, id)`.
pub(crate) fn index(
    tx: &Transaction<'_>,
    kind: HitKind,
    id: i64,
    row: &IndexRow<'_>,
) -> Result<()> {
    let rowid = row_id(kind, id);
    tx.prepare_cached("DELETE FROM search_fts WHERE rowid = ?1")?
        .execute([rowid])?;
    let mut digits = String::new();
    for n in &row.numbers {
        for form in number_forms(n) {
            if !digits.is_empty() {
                digits.push(' ');
            }
            digits.push_str(&form);
        }
    }
    tx.prepare_cached(
        "INSERT INTO search_fts (rowid, name, other, digits, display, detail, number, \
         favourite, recency) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        rowid,
        row.name.join(" "),
        row.other.join(" "),
        digits,
        row.display,
        row.detail,
        row.number,
        row.favourite,
        row.recency
    ])?;
    Ok(())
}

/// Removes the index row of `(kind, id)`.
pub(crate) fn unindex(tx: &Transaction<'_>, kind: HitKind, id: i64) -> Result<()> {
    tx.prepare_cached("DELETE FROM search_fts WHERE rowid = ?1")?
        .execute([row_id(kind, id)])?;
    Ok(())
}

/// Removes every index row of one kind.
pub(crate) fn unindex_all(tx: &Transaction<'_>, kind: HitKind) -> Result<()> {
    let (lo, hi) = row_range(kind);
    tx.execute(
        "DELETE FROM search_fts WHERE rowid BETWEEN ?1 AND ?2",
        [lo, hi],
    )?;
    Ok(())
}

/// ITU-T E.164 country codes of two digits; `1` and `7` have one, all
/// others three. Country codes are prefix-free, so this decides the length.
const TWO_DIGIT_CC: &[&str] = &[
    "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46", "47",
    "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63", "64", "65",
    "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
];

/// Digits of a number, with an international prefix (`+` or `00`) reduced
/// to nothing, and whether there was one.
fn digits_of(number: &str) -> (String, bool) {
    let trimmed = number.trim_start();
    let plus = trimmed.starts_with('+');
    // "+46 (0)70 ..." : the "(0)" is a trunk prefix that is not dialled.
    let cleaned = trimmed.replace("(0)", "");
    let mut d: String = cleaned.chars().filter(char::is_ascii_digit).collect();
    let mut international = plus;
    if !plus && d.starts_with("00") {
        d.drain(..2);
        international = true;
    }
    (d, international)
}

/// The digit strings a number is indexed under: as dialled internationally,
/// and for an international number its national forms with and without the
/// trunk `0`.
pub(crate) fn number_forms(number: &str) -> Vec<String> {
    let (d, international) = digits_of(number);
    if d.is_empty() {
        return Vec::new();
    }
    let mut forms = vec![d.clone()];
    if international {
        let cc_len = if d.starts_with('1') || d.starts_with('7') {
            1
        } else if TWO_DIGIT_CC.iter().any(|cc| d.starts_with(cc)) {
            2
        } else {
            3
        };
        if d.len() > cc_len + 1 {
            let national = &d[cc_len..];
            forms.push(national.to_owned());
            if !national.starts_with('0') {
                forms.push(format!("0{national}"));
            }
        }
    }
    forms
}

/// True for a word that is part of a phone number: digits and the usual
/// separators, at least one digit.
fn is_number_word(w: &str) -> bool {
    w.chars().any(|c| c.is_ascii_digit())
        && w.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '(' | ')' | '.' | '/'))
}

/// Builds the FTS5 MATCH expression for a user's query; `None` when the query
/// has nothing to search for. See the [module docs](self).
pub fn match_expression(query: &str) -> Option<String> {
    let mut words: Vec<String> = Vec::new();
    let mut number = String::new();
    let flush = |number: &mut String, words: &mut Vec<String>| {
        if !number.is_empty() {
            let (d, _) = digits_of(number);
            if !d.is_empty() {
                words.push(d);
            }
            number.clear();
        }
    };
    for w in query.split_whitespace() {
        if is_number_word(w) {
            number.push_str(w);
        } else {
            flush(&mut number, &mut words);
            words.push(w.to_owned());
        }
    }
    flush(&mut number, &mut words);

    let mut terms: Vec<String> = Vec::new();
    for w in &words {
        for run in w.split(|c: char| !c.is_alphanumeric()) {
            if !run.is_empty() {
                // Letters and digits only, so the quotes need no escaping.
                terms.push(format!("\"{run}\"*"));
            }
        }
    }
    if terms.is_empty() {
        None
    } else {
        Some(terms.join(" AND "))
    }
}

/// How many candidate rows to read per requested hit, so that collapsing
/// history to one call per party still fills the page.
const OVERFETCH: usize = 3;

impl Store {
    /// Searches the directory, contacts and history. Every word of `query` must
    /// match the start of a word in some field (accents ignored); phone numbers
    /// match with or without spaces and `+`. Returns at most `limit` hits, best
    /// first. Any input is safe; one without letters or digits finds nothing.
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<SearchHit>> {
        let Some(expr) = match_expression(query) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT rowid, display, detail, number, favourite, \
                    bm25(search_fts, 10.0, 1.0, 2.0) AS score \
             FROM search_fts WHERE search_fts MATCH ?1 \
             ORDER BY round(score, 1), favourite DESC, recency DESC \
             LIMIT ?2",
        )?;
        let fetch = (limit.saturating_mul(OVERFETCH)).min(i64::MAX as usize) as i64;
        let mut rows = stmt.query(params![expr, fetch])?;
        let mut hits = Vec::with_capacity(limit);
        let mut parties: HashSet<String> = HashSet::new();
        while let Some(r) = rows.next()? {
            let rowid: i64 = r.get(0)?;
            let Some(kind) = HitKind::from_code(rowid >> ID_BITS) else {
                continue;
            };
            let number: String = r.get(3)?;
            if kind == HitKind::History && !parties.insert(party_key(&number)) {
                continue;
            }
            hits.push(SearchHit {
                kind,
                id: rowid & ((1 << ID_BITS) - 1),
                display: r.get(1)?,
                detail: r.get(2)?,
                number,
                favourite: r.get(4)?,
                score: r.get(5)?,
            });
            if hits.len() == limit {
                break;
            }
        }
        Ok(hits)
    }
}

/// Two history rows are the same party when their numbers have the same
/// digits (or, for SIP URIs, the same text ignoring case).
fn party_key(number: &str) -> String {
    match number_forms(number).into_iter().next() {
        Some(d) if is_number_word(number.trim_start_matches("tel:")) => d,
        _ => number.to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_forms_cover_national_and_international() {
        assert_eq!(
            number_forms("+46 70-123 45 67"),
            ["46701234567", "701234567", "0701234567"]
        );
        assert_eq!(
            number_forms("0046 (0)70 123"),
            ["4670123", "70123", "070123"]
        );
        assert_eq!(
            number_forms("+1 (212) 555-0100"),
            ["12125550100", "2125550100", "02125550100"]
        );
        assert_eq!(number_forms("+358 40 123"), ["35840123", "40123", "040123"]);
        assert_eq!(number_forms("4001"), ["4001"]);
        assert!(number_forms("sip:bob@example.com").is_empty());
    }

    #[test]
    fn queries_are_quoted_prefix_terms() {
        assert_eq!(match_expression("ann sal").unwrap(), r#""ann"* AND "sal"*"#);
        assert_eq!(match_expression("+46 70 123").unwrap(), r#""4670123"*"#);
        assert_eq!(
            match_expression("anders 070 12").unwrap(),
            r#""anders"* AND "07012"*"#
        );
        assert_eq!(
            match_expression(r#"NEAR("a" b) c* -d "e:f"#).unwrap(),
            r#""NEAR"* AND "a"* AND "b"* AND "c"* AND "d"* AND "e"* AND "f"*"#
        );
        assert_eq!(match_expression(r#"" * - : ^ ( )"#), None);
        assert_eq!(match_expression("   "), None);
        assert_eq!(match_expression("o'brien").unwrap(), r#""o"* AND "brien"*"#);
    }
}
