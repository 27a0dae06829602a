//! Personal contacts: people inside and outside the company that the
//! user keeps for themselves, next to the engine's directory.

use rusqlite::{OptionalExtension, Row, Transaction, params};

use crate::error::{Result, StoreError};
use crate::search::{self, HitKind, IndexRow};
use crate::{Store, UnixMillis};

/// Row id of a [`Contact`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContactId(pub i64);

/// What kind of phone number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PhoneKind {
    /// Office.
    Work,
    /// Mobile.
    Mobile,
    /// Home.
    Home,
    /// Anything else.
    #[default]
    Other,
}

impl PhoneKind {
    /// The lower-case name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            PhoneKind::Work => "work",
            PhoneKind::Mobile => "mobile",
            PhoneKind::Home => "home",
            PhoneKind::Other => "other",
        }
    }

    fn parse(s: &str) -> PhoneKind {
        match s {
            "work" => PhoneKind::Work,
            "mobile" => PhoneKind::Mobile,
            "home" => PhoneKind::Home,
            _ => PhoneKind::Other,
        }
    }
}

/// A phone number of a contact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phone {
    /// What kind.
    pub kind: PhoneKind,
    /// As the user wrote it ("+46 70-123 45 67").
    pub number: String,
}

impl Phone {
    /// A number of `kind`.
    pub fn new(kind: PhoneKind, number: impl Into<String>) -> Phone {
        Phone {
            kind,
            number: number.into(),
        }
    }
}

/// The editable content of a contact. Empty strings mean "not set".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContactData {
    /// Given name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Name to show, when it is not simply "given family" (vCard `FN`).
    pub display_name: String,
    /// Company.
    pub organisation: String,
    /// Job title.
    pub title: String,
    /// Department.
    pub department: String,
    /// Phone numbers, in the user's order.
    pub phones: Vec<Phone>,
    /// E-mail addresses.
    pub emails: Vec<String>,
    /// SIP URIs (`sip:bo@example.com`).
    pub sip_uris: Vec<String>,
    /// Free text.
    pub note: String,
    /// Shown first and ranked first in search ties.
    pub favourite: bool,
}

impl ContactData {
    /// The name to show: the display name, else given and family name, else
    /// the organisation, else the first e-mail, number or SIP URI.
    pub fn display(&self) -> String {
        if !self.display_name.trim().is_empty() {
            return self.display_name.trim().to_owned();
        }
        let full = format!("{} {}", self.given_name.trim(), self.family_name.trim());
        let full = full.trim();
        if !full.is_empty() {
            return full.to_owned();
        }
        [
            Some(&self.organisation),
            self.emails.first(),
            self.phones.first().map(|p| &p.number),
            self.sip_uris.first(),
        ]
        .into_iter()
        .flatten()
        .find(|s| !s.trim().is_empty())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
    }

    /// True when there is nothing to show or dial.
    pub fn is_empty(&self) -> bool {
        self.display().is_empty()
    }
}

/// A stored contact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    /// Row id.
    pub id: ContactId,
    /// The content.
    pub data: ContactData,
    /// When it was created.
    pub created_at: UnixMillis,
    /// When it was last changed.
    pub updated_at: UnixMillis,
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Contact> {
    Ok(Contact {
        id: ContactId(r.get(0)?),
        data: ContactData {
            given_name: r.get(1)?,
            family_name: r.get(2)?,
            display_name: r.get(3)?,
            organisation: r.get(4)?,
            title: r.get(5)?,
            department: r.get(6)?,
            note: r.get(7)?,
            favourite: r.get(8)?,
            phones: Vec::new(),
            emails: Vec::new(),
            sip_uris: Vec::new(),
        },
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
    })
}

const COLUMNS: &str = "id, given_name, family_name, display_name, organisation, title, \
                       department, note, favourite, created_at, updated_at";

fn load_lists(conn: &rusqlite::Connection, c: &mut Contact) -> Result<()> {
    let id = c.id.0;
    c.data.phones = conn
        .prepare_cached(
            "SELECT kind, number FROM contact_phones WHERE contact_id = ?1 ORDER BY position",
        )?
        .query_map([id], |r| {
            Ok(Phone {
                kind: PhoneKind::parse(&r.get::<_, String>(0)?),
                number: r.get(1)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    c.data.emails = conn
        .prepare_cached(
            "SELECT address FROM contact_emails WHERE contact_id = ?1 ORDER BY position",
        )?
        .query_map([id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    c.data.sip_uris = conn
        .prepare_cached("SELECT uri FROM contact_sip_uris WHERE contact_id = ?1 ORDER BY position")?
        .query_map([id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(())
}

/// Trims every field and drops empty list entries.
fn normalise(d: &ContactData) -> Result<ContactData> {
    let t = |s: &String| s.trim().to_owned();
    let list = |v: &[String]| {
        v.iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
    };
    let out = ContactData {
        given_name: t(&d.given_name),
        family_name: t(&d.family_name),
        display_name: t(&d.display_name),
        organisation: t(&d.organisation),
        title: t(&d.title),
        department: t(&d.department),
        phones: d
            .phones
            .iter()
            .filter(|p| !p.number.trim().is_empty())
            .map(|p| Phone::new(p.kind, p.number.trim()))
            .collect(),
        emails: list(&d.emails),
        sip_uris: list(&d.sip_uris),
        // Notes keep their inner layout; only the ends are trimmed.
        note: t(&d.note),
        favourite: d.favourite,
    };
    if out.is_empty() {
        return Err(StoreError::invalid(
            "contact",
            "needs a name, organisation, number, e-mail or SIP URI",
        ));
    }
    Ok(out)
}

fn write_lists(tx: &Transaction<'_>, id: ContactId, d: &ContactData) -> Result<()> {
    for table in ["contact_phones", "contact_emails", "contact_sip_uris"] {
        tx.prepare_cached(&format!("DELETE FROM {table} WHERE contact_id = ?1"))?
            .execute([id.0])?;
    }
    for (i, p) in d.phones.iter().enumerate() {
        tx.prepare_cached(
            "INSERT INTO contact_phones (contact_id, position, kind, number) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![id.0, i as i64, p.kind.as_str(), p.number])?;
    }
    for (i, e) in d.emails.iter().enumerate() {
        tx.prepare_cached(
            "INSERT INTO contact_emails (contact_id, position, address) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![id.0, i as i64, e])?;
    }
    for (i, u) in d.sip_uris.iter().enumerate() {
        tx.prepare_cached(
            "INSERT INTO contact_sip_uris (contact_id, position, uri) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![id.0, i as i64, u])?;
    }
    Ok(())
}

fn reindex(tx: &Transaction<'_>, id: ContactId, d: &ContactData) -> Result<()> {
    let mut other: Vec<&str> = vec![&d.organisation, &d.department, &d.title, &d.note];
    other.extend(d.emails.iter().map(String::as_str));
    other.extend(d.sip_uris.iter().map(String::as_str));
    let detail = [
        d.title.as_str(),
        d.department.as_str(),
        d.organisation.as_str(),
    ]
    .into_iter()
    .filter(|s| !s.is_empty())
    .collect::<Vec<_>>()
    .join(", ");
    let number = d
        .phones
        .first()
        .map(|p| p.number.clone())
        .or_else(|| d.sip_uris.first().cloned())
        .unwrap_or_default();
    search::index(
        tx,
        HitKind::Contact,
        id.0,
        &IndexRow {
            name: vec![&d.given_name, &d.family_name, &d.display_name],
            other,
            numbers: d.phones.iter().map(|p| p.number.as_str()).collect(),
            display: d.display(),
            detail,
            number,
            favourite: d.favourite,
        },
    )
}

pub(crate) fn insert(tx: &Transaction<'_>, d: &ContactData, now: UnixMillis) -> Result<ContactId> {
    let d = normalise(d)?;
    tx.prepare_cached(
        "INSERT INTO contacts (given_name, family_name, display_name, organisation, title, \
         department, note, favourite, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
    )?
    .execute(params![
        d.given_name,
        d.family_name,
        d.display_name,
        d.organisation,
        d.title,
        d.department,
        d.note,
        d.favourite,
        now
    ])?;
    let id = ContactId(tx.last_insert_rowid());
    write_lists(tx, id, &d)?;
    reindex(tx, id, &d)?;
    Ok(id)
}

impl Store {
    /// Adds a contact. It needs at least a name, organisation, number,
    /// e-mail or SIP URI.
    pub fn create_contact(&mut self, data: &ContactData) -> Result<ContactId> {
        let now = self.now();
        let tx = self.conn.transaction()?;
        let id = insert(&tx, data, now)?;
        tx.commit()?;
        Ok(id)
    }

    /// One contact with its numbers, e-mails and SIP URIs.
    pub fn contact(&self, id: ContactId) -> Result<Option<Contact>> {
        let c = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM contacts WHERE id = ?1"))?
            .query_row([id.0], from_row)
            .optional()?;
        match c {
            Some(mut c) => {
                load_lists(&self.conn, &mut c)?;
                Ok(Some(c))
            }
            None => Ok(None),
        }
    }

    /// All contacts, favourites first, then by display name.
    pub fn contacts(&self) -> Result<Vec<Contact>> {
        let mut list: Vec<Contact> = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM contacts"))?
            .query_map([], from_row)?
            .collect::<rusqlite::Result<_>>()?;
        for c in &mut list {
            load_lists(&self.conn, c)?;
        }
        list.sort_by_cached_key(|c| (!c.data.favourite, c.data.display().to_lowercase(), c.id));
        Ok(list)
    }

    /// Replaces a contact's content.
    pub fn update_contact(&mut self, id: ContactId, data: &ContactData) -> Result<()> {
        let d = normalise(data)?;
        let now = self.now();
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "UPDATE contacts SET given_name = ?2, family_name = ?3, display_name = ?4, \
             organisation = ?5, title = ?6, department = ?7, note = ?8, favourite = ?9, \
             updated_at = ?10 WHERE id = ?1",
            params![
                id.0,
                d.given_name,
                d.family_name,
                d.display_name,
                d.organisation,
                d.title,
                d.department,
                d.note,
                d.favourite,
                now
            ],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "contact",
                id: id.0,
            });
        }
        write_lists(&tx, id, &d)?;
        reindex(&tx, id, &d)?;
        tx.commit()?;
        Ok(())
    }

    /// Marks or unmarks a contact as favourite.
    pub fn set_favourite(&mut self, id: ContactId, favourite: bool) -> Result<()> {
        let Some(mut c) = self.contact(id)? else {
            return Err(StoreError::NotFound {
                what: "contact",
                id: id.0,
            });
        };
        c.data.favourite = favourite;
        self.update_contact(id, &c.data)
    }

    /// Deletes a contact.
    pub fn delete_contact(&mut self, id: ContactId) -> Result<()> {
        let tx = self.conn.transaction()?;
        if tx.execute("DELETE FROM contacts WHERE id = ?1", [id.0])? == 0 {
            return Err(StoreError::NotFound {
                what: "contact",
                id: id.0,
            });
        }
        search::unindex(&tx, HitKind::Contact, id.0)?;
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn anne() -> ContactData {
        ContactData {
            given_name: "Anne".into(),
            family_name: "Sällström".into(),
            organisation: "Acme AB".into(),
            title: "Key account manager".into(),
            department: "Sales".into(),
            phones: vec![
                Phone::new(PhoneKind::Work, "+46 8 123 456 00"),
                Phone::new(PhoneKind::Mobile, "+46 70-123 45 67"),
            ],
            emails: vec!["anne.sallstrom@acme.example".into()],
            sip_uris: vec!["sip:anne@acme.example".into()],
            note: "Prefers mornings.\nSpeaks Finnish.".into(),
            favourite: false,
            ..ContactData::default()
        }
    }

    #[test]
    fn contact_crud_keeps_lists_in_order() {
        let mut s = Store::open_in_memory().unwrap();
        let id = s.create_contact(&anne()).unwrap();
        let c = s.contact(id).unwrap().unwrap();
        assert_eq!(c.data, anne());
        assert_eq!(c.data.display(), "Anne Sällström");
        let mut d = anne();
        d.phones.reverse();
        d.emails.push("  ".into());
        d.display_name = "Anne S.".into();
        s.update_contact(id, &d).unwrap();
        let c = s.contact(id).unwrap().unwrap();
        assert_eq!(c.data.phones[0].kind, PhoneKind::Mobile);
        assert_eq!(c.data.emails.len(), 1, "blank entries dropped");
        assert_eq!(s.search("anne s", 5).unwrap()[0].display, "Anne S.");
        s.set_favourite(id, true).unwrap();
        assert!(s.contacts().unwrap()[0].data.favourite);
        s.delete_contact(id).unwrap();
        assert!(s.contact(id).unwrap().is_none());
        assert!(s.search("anne", 5).unwrap().is_empty());
        assert!(matches!(
            s.delete_contact(id),
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            s.create_contact(&ContactData::default()),
            Err(StoreError::Invalid { .. })
        ));
    }
}
