//! The little of a database schema (RFC 7047 section 3.2) the client needs:
//! the database's name and version, and for each column whether it holds
//! one value, at most one, a set or a map. That decides how an update2
//! "modify" applies (a column of at most one value, optional ones
//! included, carries its new value: ovsdb-server 3.1 sends `"tag": 5` and
//! `"tag": ["set", []]`; a set or map carries a diff) and how an empty
//! value is written.

use super::Error;
use serde_json::Value;
use std::collections::BTreeMap;

/// What kind of value a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Exactly one atom (`min` = `max` = 1). update2 leaves it out of a
    /// row when it holds its type's default (0, "", false).
    Scalar,
    /// Zero or one atom (`min` 0, `max` 1).
    Optional,
    /// A set of possibly several atoms (`max` > 1).
    Set,
    /// A map.
    Map,
}

/// A schema, reduced to what the client uses.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    /// Database name (`Open_vSwitch`).
    pub name: String,
    /// Schema version (`8.3.1`), which vswitchd writes as `db_version`.
    pub version: String,
    /// Table → column → kind.
    pub tables: BTreeMap<String, BTreeMap<String, ColumnKind>>,
}

fn column_kind(t: &Value) -> Result<ColumnKind, Error> {
    match t {
        Value::String(_) => Ok(ColumnKind::Scalar),
        Value::Object(o) => {
            if o.contains_key("value") {
                return Ok(ColumnKind::Map);
            }
            let min = match o.get("min") {
                None => 1,
                Some(v) => v
                    .as_u64()
                    .ok_or_else(|| Error::malformed("schema", "a column type's min"))?,
            };
            let max_is_one = match o.get("max") {
                None => true,
                Some(Value::String(s)) if s == "unlimited" => false,
                Some(v) => {
                    v.as_u64()
                        .ok_or_else(|| Error::malformed("schema", "a column type's max"))?
                        == 1
                }
            };
            Ok(match (min, max_is_one) {
                (1, true) => ColumnKind::Scalar,
                (_, true) => ColumnKind::Optional,
                _ => ColumnKind::Set,
            })
        }
        _ => Err(Error::malformed("schema", "a column type")),
    }
}

impl Schema {
    /// Reads a `get_schema` reply.
    pub fn from_json(v: &Value) -> Result<Schema, Error> {
        let s = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| Error::malformed("schema", "name and version"))
        };
        let mut out = Schema {
            name: s("name")?,
            version: s("version")?,
            tables: BTreeMap::new(),
        };
        let tables = v
            .get("tables")
            .and_then(Value::as_object)
            .ok_or_else(|| Error::malformed("schema", "tables"))?;
        for (tname, t) in tables {
            let cols = t
                .get("columns")
                .and_then(Value::as_object)
                .ok_or_else(|| Error::malformed("schema", "a table's columns"))?;
            let mut m = BTreeMap::new();
            for (cname, c) in cols {
                let ty = c
                    .get("type")
                    .ok_or_else(|| Error::malformed("schema", "a column's type"))?;
                m.insert(cname.clone(), column_kind(ty)?);
            }
            out.tables.insert(tname.clone(), m);
        }
        Ok(out)
    }

    /// The kind of `table.column`, if the schema has it.
    pub fn kind(&self, table: &str, column: &str) -> Option<ColumnKind> {
        self.tables.get(table)?.get(column).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_from_types() {
        let s = Schema::from_json(&json!({
            "name": "Open_vSwitch", "version": "8.3.1",
            "tables": {"Interface": {"columns": {
                "name": {"type": "string"},
                "ofport": {"type": {"key": "integer", "min": 0, "max": 1}},
                "options": {"type": {"key": "string", "value": "string", "min": 0, "max": "unlimited"}},
                "trunks": {"type": {"key": {"type": "integer"}, "min": 0, "max": 4096}},
                "admin": {"type": {"key": "string"}}
            }}}
        }))
        .unwrap();
        assert_eq!(s.version, "8.3.1");
        assert_eq!(s.kind("Interface", "name"), Some(ColumnKind::Scalar));
        assert_eq!(s.kind("Interface", "admin"), Some(ColumnKind::Scalar));
        assert_eq!(s.kind("Interface", "ofport"), Some(ColumnKind::Optional));
        assert_eq!(s.kind("Interface", "trunks"), Some(ColumnKind::Set));
        assert_eq!(s.kind("Interface", "options"), Some(ColumnKind::Map));
        assert_eq!(s.kind("Interface", "nope"), None);
        assert!(Schema::from_json(&json!({"name": "x"})).is_err());
        assert!(Schema::from_json(
            &json!({"name": "x", "version": "1", "tables": {"T": {"columns": {"c": {}}}}})
        )
        .is_err());
    }

    #[test]
    fn the_installed_vswitch_schema_reads() {
        // The schema Debian's openvswitch-common installs, when present.
        let Ok(text) = std::fs::read_to_string("/usr/share/openvswitch/vswitch.ovsschema") else {
            eprintln!("skipping: no /usr/share/openvswitch/vswitch.ovsschema");
            return;
        };
        let v: Value = serde_json::from_str(&text).unwrap();
        let s = Schema::from_json(&v).unwrap();
        assert_eq!(s.name, "Open_vSwitch");
        assert_eq!(s.kind("Open_vSwitch", "cur_cfg"), Some(ColumnKind::Scalar));
        assert_eq!(s.kind("Interface", "ofport"), Some(ColumnKind::Optional));
        assert_eq!(s.kind("Port", "trunks"), Some(ColumnKind::Set));
        assert_eq!(s.kind("Interface", "statistics"), Some(ColumnKind::Map));
    }
}
