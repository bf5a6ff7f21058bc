//! OVSDB values (RFC 7047 section 5.1): atoms, and the sets and maps every
//! column holds.
//!
//! A column's value is always a [`Datum`]: a scalar is a set of one, an
//! optional value a set of zero or one. On the wire a set of one may be a
//! bare atom, a set `["set",[..]]`, a map `["map",[[k,v],..]]`, a UUID
//! `["uuid","..."]` and a reference to a row inserted in the same
//! transaction `["named-uuid","..."]`. Sets are kept sorted and maps sorted
//! by key, so two data compare equal exactly when the database would say
//! so; that is what lets the front end write a column only when its value
//! changed.

use super::Error;
use serde_json::{json, Value};
use std::cmp::Ordering;

/// One OVSDB atom.
#[derive(Debug, Clone)]
pub enum Atom {
    /// `integer`.
    Integer(i64),
    /// `real`.
    Real(f64),
    /// `boolean`.
    Boolean(bool),
    /// `string`.
    String(String),
    /// `uuid`: a row's identity.
    Uuid(String),
    /// `named-uuid`: a row inserted earlier in the same transaction.
    NamedUuid(String),
}

impl Atom {
    fn rank(&self) -> u8 {
        match self {
            Atom::Integer(_) => 0,
            Atom::Real(_) => 1,
            Atom::Boolean(_) => 2,
            Atom::String(_) => 3,
            Atom::Uuid(_) => 4,
            Atom::NamedUuid(_) => 5,
        }
    }

    /// Reads an atom; `["set",..]` and `["map",..]` are not atoms.
    pub fn from_json(v: &Value) -> Result<Atom, Error> {
        match v {
            Value::Bool(b) => Ok(Atom::Boolean(*b)),
            Value::String(s) => Ok(Atom::String(s.clone())),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Ok(Atom::Integer(i)),
                None => n
                    .as_f64()
                    .map(Atom::Real)
                    .ok_or_else(|| Error::datum("a number out of range", v)),
            },
            Value::Array(a) => match (a.first().and_then(Value::as_str), a.get(1), a.len()) {
                (Some("uuid"), Some(Value::String(u)), 2) => Ok(Atom::Uuid(u.clone())),
                (Some("named-uuid"), Some(Value::String(u)), 2) => Ok(Atom::NamedUuid(u.clone())),
                _ => Err(Error::datum("an atom", v)),
            },
            _ => Err(Error::datum("an atom", v)),
        }
    }

    /// The atom on the wire.
    pub fn to_json(&self) -> Value {
        match self {
            Atom::Integer(i) => json!(i),
            Atom::Real(r) => json!(r),
            Atom::Boolean(b) => json!(b),
            Atom::String(s) => json!(s),
            Atom::Uuid(u) => json!(["uuid", u]),
            Atom::NamedUuid(u) => json!(["named-uuid", u]),
        }
    }

    /// The string, if the atom is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Atom::String(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if the atom is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Atom::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// The UUID, if the atom is one.
    pub fn as_uuid(&self) -> Option<&str> {
        match self {
            Atom::Uuid(u) => Some(u),
            _ => None,
        }
    }
}

impl Ord for Atom {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Atom::Integer(a), Atom::Integer(b)) => a.cmp(b),
            (Atom::Real(a), Atom::Real(b)) => a.total_cmp(b),
            (Atom::Boolean(a), Atom::Boolean(b)) => a.cmp(b),
            (Atom::String(a), Atom::String(b))
            | (Atom::Uuid(a), Atom::Uuid(b))
            | (Atom::NamedUuid(a), Atom::NamedUuid(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Atom {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Atom {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Atom {}

impl From<&str> for Atom {
    fn from(s: &str) -> Atom {
        Atom::String(s.to_string())
    }
}

impl From<String> for Atom {
    fn from(s: String) -> Atom {
        Atom::String(s)
    }
}

impl From<i64> for Atom {
    fn from(i: i64) -> Atom {
        Atom::Integer(i)
    }
}

impl From<bool> for Atom {
    fn from(b: bool) -> Atom {
        Atom::Boolean(b)
    }
}

/// A column's value: a set (a scalar is a set of one) or a map.
#[derive(Debug, Clone, Eq)]
pub enum Datum {
    /// Sorted, without duplicates.
    Set(Vec<Atom>),
    /// Sorted by key, keys unique.
    Map(Vec<(Atom, Atom)>),
}

impl PartialEq for Datum {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Datum::Set(a), Datum::Set(b)) => a == b,
            (Datum::Map(a), Datum::Map(b)) => a == b,
            // An empty set and an empty map are both "no value".
            _ => self.is_empty() && other.is_empty(),
        }
    }
}

impl Default for Datum {
    fn default() -> Self {
        Datum::Set(Vec::new())
    }
}

impl Datum {
    /// A set of `atoms` (sorted and deduplicated here).
    pub fn set(mut atoms: Vec<Atom>) -> Datum {
        atoms.sort();
        atoms.dedup();
        Datum::Set(atoms)
    }

    /// A set of one.
    pub fn one(a: impl Into<Atom>) -> Datum {
        Datum::Set(vec![a.into()])
    }

    /// A map of `pairs`; a later duplicate key wins.
    pub fn map(pairs: Vec<(Atom, Atom)>) -> Datum {
        let mut m: std::collections::BTreeMap<Atom, Atom> = std::collections::BTreeMap::new();
        for (k, v) in pairs {
            m.insert(k, v);
        }
        Datum::Map(m.into_iter().collect())
    }

    /// A string-to-string map.
    pub fn str_map<'a>(pairs: impl IntoIterator<Item = (&'a str, String)>) -> Datum {
        Datum::map(
            pairs
                .into_iter()
                .map(|(k, v)| (Atom::from(k), Atom::String(v)))
                .collect(),
        )
    }

    /// True for an empty set or map.
    pub fn is_empty(&self) -> bool {
        match self {
            Datum::Set(s) => s.is_empty(),
            Datum::Map(m) => m.is_empty(),
        }
    }

    /// Reads a column value.
    pub fn from_json(v: &Value) -> Result<Datum, Error> {
        let Value::Array(a) = v else {
            return Ok(Datum::Set(vec![Atom::from_json(v)?]));
        };
        match (a.first().and_then(Value::as_str), a.get(1), a.len()) {
            (Some("set"), Some(Value::Array(items)), 2) => Ok(Datum::set(
                items
                    .iter()
                    .map(Atom::from_json)
                    .collect::<Result<_, _>>()?,
            )),
            (Some("map"), Some(Value::Array(pairs)), 2) => {
                let mut out = Vec::with_capacity(pairs.len());
                for p in pairs {
                    match p.as_array().map(Vec::as_slice) {
                        Some([k, v]) => out.push((Atom::from_json(k)?, Atom::from_json(v)?)),
                        _ => return Err(Error::datum("a [key, value] pair", p)),
                    }
                }
                Ok(Datum::map(out))
            }
            _ => Ok(Datum::Set(vec![Atom::from_json(v)?])),
        }
    }

    /// The value on the wire. An empty value is written as an empty set,
    /// or as an empty map when `map` (the server checks the column's type).
    pub fn to_json(&self, map: bool) -> Value {
        match self {
            Datum::Set(s) if s.is_empty() && map => json!(["map", []]),
            Datum::Set(s) if s.len() == 1 => s[0].to_json(),
            Datum::Set(s) => json!(["set", s.iter().map(Atom::to_json).collect::<Vec<_>>()]),
            Datum::Map(m) => json!([
                "map",
                m.iter()
                    .map(|(k, v)| json!([k.to_json(), v.to_json()]))
                    .collect::<Vec<_>>()
            ]),
        }
    }

    /// The atoms of a set (a map's keys).
    pub fn atoms(&self) -> Vec<&Atom> {
        match self {
            Datum::Set(s) => s.iter().collect(),
            Datum::Map(m) => m.iter().map(|(k, _)| k).collect(),
        }
    }

    /// The first atom, for scalar and optional columns.
    pub fn first(&self) -> Option<&Atom> {
        match self {
            Datum::Set(s) => s.first(),
            Datum::Map(m) => m.first().map(|(k, _)| k),
        }
    }

    /// The value of `key` in a map with string keys.
    pub fn get(&self, key: &str) -> Option<&Atom> {
        match self {
            Datum::Map(m) => m
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            Datum::Set(_) => None,
        }
    }

    /// The pairs of a map (none for a set).
    pub fn pairs(&self) -> &[(Atom, Atom)] {
        match self {
            Datum::Map(m) => m,
            Datum::Set(_) => &[],
        }
    }

    /// Applies an update2 "modify" diff to a set or map column (RFC 7047
    /// extension, ovsdb-server(7)): a set toggles each atom of the diff; a
    /// map adds a new key, removes a key given with its current value and
    /// replaces a key given with another value.
    pub fn apply_diff(&self, diff: &Datum) -> Datum {
        match diff {
            Datum::Map(d) => {
                let mut m: std::collections::BTreeMap<Atom, Atom> =
                    self.pairs().iter().cloned().collect();
                for (k, v) in d {
                    match m.get(k) {
                        Some(old) if old == v => {
                            m.remove(k);
                        }
                        _ => {
                            m.insert(k.clone(), v.clone());
                        }
                    }
                }
                Datum::Map(m.into_iter().collect())
            }
            Datum::Set(d) => {
                let mut s: std::collections::BTreeSet<Atom> =
                    self.atoms().into_iter().cloned().collect();
                for a in d {
                    if !s.remove(a) {
                        s.insert(a.clone());
                    }
                }
                Datum::Set(s.into_iter().collect())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(v: Value) -> Datum {
        Datum::from_json(&v).unwrap()
    }

    #[test]
    fn atoms_sets_and_maps_decode() {
        assert_eq!(d(json!(5)), Datum::one(5));
        assert_eq!(d(json!("x")), Datum::one("x"));
        assert_eq!(
            d(json!(["uuid", "a-b"])),
            Datum::one(Atom::Uuid("a-b".into()))
        );
        assert_eq!(
            d(json!(["named-uuid", "row1"])).first(),
            Some(&Atom::NamedUuid("row1".into()))
        );
        assert_eq!(
            d(json!(["set", [3, 1, 3]])),
            Datum::Set(vec![1.into(), 3.into()])
        );
        assert_eq!(d(json!(["set", []])), Datum::default());
        let m = d(json!(["map", [["b", "2"], ["a", "1"]]]));
        assert_eq!(m.get("a"), Some(&Atom::from("1")));
        assert_eq!(m.pairs()[0].0, Atom::from("a"));
        // An empty map is the same "no value" as an empty set.
        assert_eq!(d(json!(["map", []])), Datum::default());
        assert_eq!(d(json!(1.5)), Datum::one(Atom::Real(1.5)));
        assert_eq!(d(json!(true)), Datum::one(true));
    }

    #[test]
    fn malformed_data_are_errors() {
        for bad in [
            json!(null),
            json!({"a": 1}),
            json!(["set", [1, {"x": 1}]]),
            json!(["map", [["a"]]]),
            json!(["map", ["a", "b"]]),
            json!(["uuid", 5]),
            json!(["set"]),
            json!([]),
            json!([["set", []]]),
        ] {
            assert!(Datum::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn round_trip_on_the_wire() {
        for v in [
            json!(7),
            json!(["set", [1, 2]]),
            json!(["map", [["k", "v"]]]),
            json!(["uuid", "u"]),
        ] {
            assert_eq!(d(v.clone()).to_json(false), v);
        }
        assert_eq!(Datum::default().to_json(true), json!(["map", []]));
        assert_eq!(Datum::default().to_json(false), json!(["set", []]));
    }

    #[test]
    fn diffs_toggle_sets_and_patch_maps() {
        let s = d(json!(["set", [1, 2]]));
        assert_eq!(
            s.apply_diff(&d(json!(["set", [2, 3]]))),
            d(json!(["set", [1, 3]]))
        );
        // An optional column going from one value to another.
        assert_eq!(
            d(json!(5)).apply_diff(&d(json!(["set", [5, 6]]))),
            d(json!(6))
        );
        let m = d(json!(["map", [["a", "1"], ["b", "2"]]]));
        let diff = d(json!(["map", [["a", "1"], ["b", "9"], ["c", "3"]]]));
        assert_eq!(
            m.apply_diff(&diff),
            d(json!(["map", [["b", "9"], ["c", "3"]]]))
        );
        // A diff onto a column the row did not carry (its default).
        assert_eq!(
            Datum::default().apply_diff(&d(json!(["map", [["k", "v"]]]))),
            d(json!(["map", [["k", "v"]]]))
        );
    }
}
