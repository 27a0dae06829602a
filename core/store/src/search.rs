//! Search as you type over the directory, personal contacts and call history.
//!
//! # Index
//!
//! One FTS5 table, `search_fts`, with the `unicode61 remove_diacritics 2`
//! tokenizer (so "sall" finds "Sällström" and "Zoe" finds "Zoë") and prefix
//! indexes for 1 to 8 characters (so keystrokes are index lookups rather than
//! scans of the term list; see below). Each record has one row, keyed by a
//! rowid that encodes its kind and id (`row_id`), with three indexed columns:
//!
//! - `name`: the person's names;
//! - `other`: organisation, department, title, location, e-mail, SIP URI, note;
//! - `digits`: every phone number and extension as digits only,
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
//! make it fail. A query without any letter or digit matches nothing; terms
//! after the sixteenth are ignored.
//!
//! # Ranking
//!
//! Results come in two tiers: first records where every word matched a name
//! or a number, then records where some word matched another field
//! (department, title, e-mail…). Within a tier: personal contacts
//! (favourites first), then history (newest first, one hit per remote party),
//! then the directory (alphabetical by name).
//!
//! That order is the rowid order of the index (`row_id` puts the kind in the
//! high bits, a contact's favourite flag next, history ids reversed, and
//! directory rows are numbered alphabetically), so each tier is one FTS5
//! query in rowid order that stops after the rows it returns.
//!
//! Why not bm25: FTS5 computes bm25 for *every* matching row before it can
//! sort, and the first keystrokes match most of a 100,000-entry directory
//! ("a": all of it, "and": one in ten). Measured here, bm25 ordering of "and"
//! took 17–50 ms; rowid order with a LIMIT takes under 0.1 ms. The name tier
//! gives what bm25's column weights would have (a name match beats a
//! department match) at no cost.
//!
//! Prefix indexes cover 1 to 8 characters because phone numbers are nearly
//! all distinct terms: without an index of that length, a prefix such as
//! "4680" makes FTS5 merge the doclists of 100,000 terms (about 100 ms).

use std::collections::HashSet;

use rusqlite::{Transaction, params};

use crate::Store;
use crate::error::Result;

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
    /// High bits of the rowid; their order is the order of sources in results.
    fn code(self) -> i64 {
        match self {
            HitKind::Contact => 1,
            HitKind::History => 2,
            HitKind::Directory => 3,
        }
    }
}

/// Bits of the rowid below the kind.
const KIND_SHIFT: u32 = 40;
/// Ids must stay below this (5 × 10¹¹ records: not a practical limit).
const ID_LIMIT: i64 = 1 << (KIND_SHIFT - 1);
/// In a contact's rowid: set when it is *not* a favourite, so favourites sort first.
const NOT_FAVOURITE: i64 = 1 << (KIND_SHIFT - 1);

/// The search-index rowid of a record. Ascending rowid order is the result
/// order within a tier: contacts (favourites first), then history (newest
/// first: the id is stored reversed), then the directory (alphabetical, as
/// `replace_directory` numbers it).
pub(crate) fn row_id(kind: HitKind, id: i64, favourite: bool) -> i64 {
    let id = id.clamp(0, ID_LIMIT - 1);
    let low = match kind {
        HitKind::Contact if favourite => id,
        HitKind::Contact => NOT_FAVOURITE | id,
        HitKind::History => ID_LIMIT - 1 - id,
        HitKind::Directory => id,
    };
    (kind.code() << KIND_SHIFT) | low
}

/// The kind and record id of a rowid (inverse of [`row_id`]).
fn decode_row_id(rowid: i64) -> Option<(HitKind, i64)> {
    let low = rowid & ((1 << KIND_SHIFT) - 1);
    match rowid >> KIND_SHIFT {
        1 => Some((HitKind::Contact, low & (ID_LIMIT - 1))),
        2 => Some((HitKind::History, ID_LIMIT - 1 - low)),
        3 => Some((HitKind::Directory, low)),
        _ => None,
    }
}

/// The range of rowids of one kind, for bulk deletes.
fn row_range(kind: HitKind) -> (i64, i64) {
    (
        kind.code() << KIND_SHIFT,
        ((kind.code() + 1) << KIND_SHIFT) - 1,
    )
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
}

/// Replaces the index row of `(kind, id)`.
pub(crate) fn index(
    tx: &Transaction<'_>,
    kind: HitKind,
    id: i64,
    row: &IndexRow<'_>,
) -> Result<()> {
    unindex(tx, kind, id)?;
    index_new(tx, kind, id, row)
}

/// Adds the index row of a record that has none (bulk loads: saves the
/// delete, which FTS5 has to look up).
pub(crate) fn index_new(
    tx: &Transaction<'_>,
    kind: HitKind,
    id: i64,
    row: &IndexRow<'_>,
) -> Result<()> {
    let rowid = row_id(kind, id, row.favourite);
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
         favourite) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        rowid,
        row.name.join(" "),
        row.other.join(" "),
        digits,
        row.display,
        row.detail,
        row.number,
        row.favourite
    ])?;
    Ok(())
}

/// Removes the index row of `(kind, id)`.
pub(crate) fn unindex(tx: &Transaction<'_>, kind: HitKind, id: i64) -> Result<()> {
    // A contact's rowid depends on whether it is a favourite: delete both.
    tx.prepare_cached("DELETE FROM search_fts WHERE rowid IN (?1, ?2)")?
        .execute([row_id(kind, id, false), row_id(kind, id, true)])?;
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

/// Length of the E.164 country code at the start of `digits`.
fn country_code_len(digits: &str) -> usize {
    if digits.starts_with('1') || digits.starts_with('7') {
        1
    } else if TWO_DIGIT_CC.iter().any(|cc| digits.starts_with(cc)) {
        2
    } else {
        3
    }
}

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
        let cc_len = country_code_len(&d);
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

/// Terms beyond this many are ignored (nobody types more; pasted text
/// would otherwise make each keystroke as slow as its word count).
const MAX_TERMS: usize = 16;

/// Builds the FTS5 MATCH expression for a user's query; `None` when the query
/// has nothing to search for. See the [module docs](self).
pub fn match_expression(query: &str) -> Option<String> {
    let terms = query_terms(query);
    (!terms.is_empty()).then(|| terms.join(" AND "))
}

/// The quoted prefix terms of a query (see [`match_expression`]).
fn query_terms(query: &str) -> Vec<String> {
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
    // A pasted paragraph must not cost a paragraph of doclist merges.
    terms.truncate(MAX_TERMS);
    terms
}

impl Store {
    /// Searches the directory, contacts and history. Every word of `query` must
    /// match the start of a word in some field (accents ignored); phone numbers
    /// match with or without spaces and `+`. Returns at most `limit` hits, best
    /// first (see the [module docs](self) for the order). Any input is safe;
    /// one without letters or digits finds nothing.
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<SearchHit>> {
        let terms = query_terms(query);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let expr = terms.join(" AND ");
        let mut found = Found {
            hits: Vec::with_capacity(limit.min(256)),
            rows: HashSet::new(),
            parties: HashSet::new(),
            limit,
        };
        // Tier 1: every word matches a name or a number. Tier 2: any field.
        // The column filter on each term, not on the whole AND: FTS5 then
        // drops a term's rows from other columns before intersecting.
        let by_name = terms
            .iter()
            .map(|t| format!("{{name digits}} : {t}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        for tier in [&by_name, &expr] {
            self.search_tier(tier, &mut found)?;
        }
        Ok(found.hits)
    }

    /// Reads one tier in rowid order, a page at a time, until the results are
    /// full or the tier is exhausted. Rowid order lets FTS5 stop after the
    /// rows it returns instead of visiting every match.
    fn search_tier(&self, expr: &str, found: &mut Found) -> Result<()> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT rowid, display, detail, number, favourite FROM search_fts \
             WHERE search_fts MATCH ?1 AND rowid > ?2 ORDER BY rowid LIMIT ?3",
        )?;
        let mut after = i64::MIN;
        while found.hits.len() < found.limit {
            // Rows of the first tier come again in the second, and a party's
            // older calls are skipped: read a little more than is missing.
            let page = (found.limit - found.hits.len())
                .saturating_mul(2)
                .saturating_add(16);
            let mut rows = stmt.query(params![expr, after, page.min(1 << 20) as i64])?;
            let mut read = 0;
            while let Some(r) = rows.next()? {
                read += 1;
                let rowid: i64 = r.get(0)?;
                after = rowid;
                let Some((kind, id)) = decode_row_id(rowid) else {
                    continue;
                };
                if !found.rows.insert(rowid) {
                    continue;
                }
                let number: String = r.get(3)?;
                if kind == HitKind::History && !found.parties.insert(party_key(&number)) {
                    continue;
                }
                found.hits.push(SearchHit {
                    kind,
                    id,
                    display: r.get(1)?,
                    detail: r.get(2)?,
                    number,
                    favourite: r.get(4)?,
                });
                if found.hits.len() >= found.limit {
                    return Ok(());
                }
            }
            if read < page {
                break;
            }
        }
        Ok(())
    }
}

/// Results collected so far by [`Store::search`].
struct Found {
    hits: Vec<SearchHit>,
    rows: HashSet<i64>,
    parties: HashSet<String>,
    limit: usize,
}

/// Two history rows are the same party when their numbers have the same
/// national significant number ("+46 31 999 00 00" and "031-999 00 00"), or,
/// for SIP URIs, the same text ignoring case.
fn party_key(number: &str) -> String {
    let bare = number.trim().trim_start_matches("tel:");
    if !is_number_word(&bare.replace(' ', "")) {
        return number.to_lowercase();
    }
    let (d, international) = digits_of(bare);
    if international && d.len() > country_code_len(&d) {
        d[country_code_len(&d)..].to_owned()
    } else if let Some(national) = d.strip_prefix('0') {
        national.to_owned()
    } else {
        d
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
    fn parties_compare_by_national_number() {
        assert_eq!(party_key("+46 31 999 00 00"), party_key("031-999 00 00"));
        assert_eq!(party_key("tel:+4631990000"), party_key("0046 31 99 00 00"));
        assert_ne!(party_key("4001"), party_key("4002"));
        assert_eq!(
            party_key("sip:Bo@Example.com"),
            party_key("sip:bo@example.com")
        );
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
