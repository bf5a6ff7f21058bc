//! The in-memory copy of the monitored tables, kept current by applying
//! the server's `update` (RFC 7047 `monitor`) and `update2`
//! (`monitor_cond`) table-updates.
//!
//! Rows are maps from column name to [`Datum`]. A column missing from a
//! row holds its default (update2 leaves default values out of `initial`
//! and `insert`); the accessors on [`Row`] read it as such.
//!
//! An update that does not parse is refused as a whole before anything is
//! changed, so the replica is never half-updated.

use super::datum::{Atom, Datum};
use super::schema::{ColumnKind, Schema};
use super::Error;
use serde_json::Value;
use std::collections::BTreeMap;

/// One row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    /// Column values (absent: the column's default).
    pub columns: BTreeMap<String, Datum>,
}

impl Row {
    /// A column's value (empty when absent).
    pub fn get(&self, col: &str) -> Datum {
        self.columns.get(col).cloned().unwrap_or_default()
    }

    /// A string column (`""` when absent).
    pub fn str(&self, col: &str) -> &str {
        self.columns
            .get(col)
            .and_then(Datum::first)
            .and_then(Atom::as_str)
            .unwrap_or("")
    }

    /// An integer column (`None` when empty).
    pub fn int(&self, col: &str) -> Option<i64> {
        self.columns
            .get(col)
            .and_then(Datum::first)
            .and_then(Atom::as_int)
    }

    /// The UUIDs a reference column holds.
    pub fn uuids(&self, col: &str) -> Vec<String> {
        self.columns
            .get(col)
            .map(|d| {
                d.atoms()
                    .into_iter()
                    .filter_map(Atom::as_uuid)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A string-to-string map column, as pairs.
    pub fn str_map(&self, col: &str) -> BTreeMap<String, String> {
        self.columns
            .get(col)
            .map(|d| {
                d.pairs()
                    .iter()
                    .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn from_json(v: &Value) -> Result<Row, Error> {
        let o = v
            .as_object()
            .ok_or_else(|| Error::malformed("update", "a row object"))?;
        let mut columns = BTreeMap::new();
        for (k, d) in o {
            columns.insert(k.clone(), Datum::from_json(d)?);
        }
        Ok(Row { columns })
    }
}

/// Table name → row UUID → row.
pub type Tables = BTreeMap<String, BTreeMap<String, Row>>;

/// One row's change, parsed.
enum Change {
    /// The whole row (update `new`, update2 `initial` / `insert`).
    Replace(Row),
    /// Only these columns, merged (`update` modify's `new` holds every
    /// monitored column, so merging is the same as replacing).
    Merge(Row),
    /// update2 `modify`: per column, the new value (columns of at most one
    /// value) or a diff (sets and maps).
    Modify(Row),
    /// Gone.
    Delete,
}

/// The monitored tables.
#[derive(Debug, Clone, Default)]
pub struct Replica {
    /// The rows.
    pub tables: Tables,
}

/// Which notification format an update is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// RFC 7047 `update` (from `monitor`): `{"old": .., "new": ..}`.
    Update,
    /// `update2` (from `monitor_cond`): `initial` / `insert` / `modify` /
    /// `delete`.
    Update2,
}

impl Replica {
    /// An empty replica.
    pub fn new() -> Replica {
        Replica::default()
    }

    /// The rows of `table`.
    pub fn table(&self, table: &str) -> impl Iterator<Item = (&String, &Row)> {
        self.tables.get(table).into_iter().flat_map(|t| t.iter())
    }

    /// One row.
    pub fn row(&self, table: &str, uuid: &str) -> Option<&Row> {
        self.tables.get(table)?.get(uuid)
    }

    /// Applies table-updates in `format`; `schema` says which columns hold
    /// at most one value (replaced by a modify) and which are sets or maps
    /// (patched by its diff).
    pub fn apply(&mut self, format: Format, updates: &Value, schema: &Schema) -> Result<(), Error> {
        let tables = updates
            .as_object()
            .ok_or_else(|| Error::malformed("update", "table-updates object"))?;
        // Parse everything first: a bad update changes nothing.
        let mut changes = Vec::new();
        for (tname, rows) in tables {
            let rows = rows
                .as_object()
                .ok_or_else(|| Error::malformed("update", "table-update object"))?;
            for (uuid, ru) in rows {
                changes.push((tname.clone(), uuid.clone(), parse_change(format, ru)?));
            }
        }
        for (tname, uuid, change) in changes {
            let t = self.tables.entry(tname.clone()).or_default();
            match change {
                Change::Delete => {
                    t.remove(&uuid);
                }
                Change::Replace(r) => {
                    t.insert(uuid, r);
                }
                Change::Merge(r) => {
                    t.entry(uuid).or_default().columns.extend(r.columns);
                }
                Change::Modify(r) => {
                    let row = t.entry(uuid).or_default();
                    for (col, d) in r.columns {
                        let new = match schema.kind(&tname, &col) {
                            Some(ColumnKind::Scalar | ColumnKind::Optional) => d,
                            // Sets, maps, and columns the schema does not
                            // name (a newer server): a diff.
                            _ => row.get(&col).apply_diff(&d),
                        };
                        row.columns.insert(col, new);
                    }
                }
            }
        }
        Ok(())
    }
}

fn parse_change(format: Format, ru: &Value) -> Result<Change, Error> {
    let o = ru
        .as_object()
        .ok_or_else(|| Error::malformed("update", "row-update object"))?;
    match format {
        Format::Update => match (o.get("old"), o.get("new")) {
            (_, Some(new)) if o.contains_key("old") => Ok(Change::Merge(Row::from_json(new)?)),
            (_, Some(new)) => Ok(Change::Replace(Row::from_json(new)?)),
            (Some(_), None) => Ok(Change::Delete),
            (None, None) => Err(Error::malformed("update", "old or new")),
        },
        Format::Update2 => {
            if o.len() != 1 {
                return Err(Error::malformed(
                    "update2",
                    "exactly one of initial, insert, modify, delete",
                ));
            }
            match o.iter().next() {
                Some((k, v)) if k == "initial" || k == "insert" => {
                    Ok(Change::Replace(Row::from_json(v)?))
                }
                Some((k, v)) if k == "modify" => Ok(Change::Modify(Row::from_json(v)?)),
                Some((k, _)) if k == "delete" => Ok(Change::Delete),
                _ => Err(Error::malformed(
                    "update2",
                    "initial, insert, modify or delete",
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        Schema::from_json(&json!({
            "name": "Open_vSwitch", "version": "8.3.1",
            "tables": {
                "Interface": {"columns": {
                    "name": {"type": "string"},
                    "type": {"type": "string"},
                    "ofport": {"type": {"key": "integer", "min": 0, "max": 1}},
                    "options": {"type": {"key": "string", "value": "string", "min": 0, "max": "unlimited"}}
                }},
                "Open_vSwitch": {"columns": {
                    "next_cfg": {"type": "integer"},
                    "bridges": {"type": {"key": {"type": "uuid", "refTable": "Bridge"}, "min": 0, "max": "unlimited"}}
                }}
            }
        }))
        .unwrap()
    }

    #[test]
    fn monitor_cond_reply_then_update2s() {
        let s = schema();
        let mut r = Replica::new();
        // The shape ovsdb-server 3.1 answers monitor_cond with (defaults left out).
        r.apply(
            Format::Update2,
            &json!({
                "Interface": {"i1": {"initial": {"name": "br0", "type": "internal"}}},
                "Open_vSwitch": {"o": {"initial": {"bridges": ["uuid", "b1"]}}}
            }),
            &s,
        )
        .unwrap();
        let i = r.row("Interface", "i1").unwrap();
        assert_eq!(
            (i.str("name"), i.str("type"), i.int("ofport")),
            ("br0", "internal", None)
        );
        assert_eq!(
            r.row("Open_vSwitch", "o").unwrap().uuids("bridges"),
            vec!["b1"]
        );
        assert_eq!(r.row("Open_vSwitch", "o").unwrap().int("next_cfg"), None);

        r.apply(
            Format::Update2,
            &json!({
                "Interface": {
                    "i2": {"insert": {"name": "vm1", "type": "tap", "options": ["map", [["a", "1"]]]}},
                    "i1": {"modify": {"ofport": 1, "type": "system"}},
                    "i3": {"insert": {"name": "x", "ofport": 9}}
                },
                "Open_vSwitch": {"o": {"modify": {"next_cfg": 3, "bridges": ["set", [["uuid", "b1"], ["uuid", "b2"]]]}}}
            }),
            &s,
        )
        .unwrap();
        let i = r.row("Interface", "i1").unwrap();
        assert_eq!((i.str("type"), i.int("ofport")), ("system", Some(1)));
        // An optional column is cleared with its new, empty, value.
        r.apply(
            Format::Update2,
            &json!({"Interface": {"i3": {"modify": {"ofport": ["set", []]}}}}),
            &s,
        )
        .unwrap();
        assert_eq!(r.row("Interface", "i3").unwrap().int("ofport"), None);
        let o = r.row("Open_vSwitch", "o").unwrap();
        assert_eq!(o.int("next_cfg"), Some(3));
        assert_eq!(o.uuids("bridges"), vec!["b2"]);
        assert_eq!(
            r.row("Interface", "i2")
                .unwrap()
                .str_map("options")
                .get("a")
                .map(String::as_str),
            Some("1")
        );

        r.apply(
            Format::Update2,
            &json!({"Interface": {
                "i2": {"modify": {"options": ["map", [["a", "1"], ["b", "2"]]]}},
                "i1": {"delete": null}
            }}),
            &s,
        )
        .unwrap();
        assert!(r.row("Interface", "i1").is_none());
        let opts = r.row("Interface", "i2").unwrap().str_map("options");
        assert_eq!(
            opts.into_iter().collect::<Vec<_>>(),
            vec![("b".to_string(), "2".to_string())]
        );
    }

    #[test]
    fn rfc7047_updates() {
        let s = schema();
        let mut r = Replica::new();
        r.apply(
            Format::Update,
            &json!({"Interface": {"i1": {"new": {"name": "a", "ofport": ["set", []]}}}}),
            &s,
        )
        .unwrap();
        r.apply(
            Format::Update,
            &json!({"Interface": {"i1": {"old": {"ofport": ["set", []]}, "new": {"name": "a", "ofport": 4}}}}),
            &s,
        )
        .unwrap();
        assert_eq!(r.row("Interface", "i1").unwrap().int("ofport"), Some(4));
        r.apply(
            Format::Update,
            &json!({"Interface": {"i1": {"old": {"name": "a"}}}}),
            &s,
        )
        .unwrap();
        assert!(r.row("Interface", "i1").is_none());
    }

    #[test]
    fn malformed_updates_change_nothing() {
        let s = schema();
        let mut r = Replica::new();
        r.apply(
            Format::Update2,
            &json!({"Interface": {"i1": {"insert": {"name": "a"}}}}),
            &s,
        )
        .unwrap();
        for bad in [
            json!([]),
            json!({"Interface": []}),
            json!({"Interface": {"i1": {"delete": null}, "i2": {"bogus": {}}}}),
            json!({"Interface": {"i1": {"delete": null}, "i2": {"insert": {"name": {"x": 1}}}}}),
            json!({"Interface": {"i2": {"insert": {}, "delete": null}}}),
            json!({"Interface": {"i2": {"insert": 5}}}),
        ] {
            assert!(r.apply(Format::Update2, &bad, &s).is_err(), "{bad}");
            assert!(
                r.row("Interface", "i1").is_some(),
                "{bad} changed the replica"
            );
        }
        assert!(r
            .apply(Format::Update, &json!({"Interface": {"i1": {}}}), &s)
            .is_err());
    }
}
