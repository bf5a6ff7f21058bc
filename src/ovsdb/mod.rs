//! An OVSDB client (RFC 7047): what vswitchd needs to be the switch behind
//! a real `ovsdb-server`, as `ovs-vswitchd` is.
//!
//! * [`framing`]: concatenated JSON values on a stream, bounded in size.
//! * [`datum`]: atoms, sets, maps, UUIDs and named UUIDs.
//! * [`schema`]: which columns are scalars, sets or maps (how an update2
//!   diff applies), and the schema version.
//! * [`replica`]: the monitored tables in memory, kept current by `update`
//!   and `update2` notifications.
//! * [`client`]: the JSON-RPC session: `get_schema`, `monitor_cond` (with
//!   `monitor` as the fallback), `transact`, and the server's `echo`.
//!
//! Why our own: the crates named `ovsdb*` on crates.io are 0.0.x releases
//! with few users, and the protocol subset a switch needs is small: a few
//! hundred lines over `serde_json`, with every malformed message an
//! [`Error`], never a panic.
//!
//! This module knows nothing of bridges or ports: it depends on
//! `serde_json` and `std` only. The front end that turns the replica into
//! switch operations is `ctl::ovsdb`.

pub mod client;
pub mod datum;
pub mod framing;
pub mod replica;
pub mod schema;

pub use client::{Client, MonitorMethod, Notification, Remote};
pub use datum::{Atom, Datum};
pub use replica::{Format, Replica, Row};
pub use schema::{ColumnKind, Schema};

/// What can go wrong talking to an OVSDB server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The remote is not `unix:PATH` or `tcp:HOST:PORT`.
    #[error("bad OVSDB remote '{0}': expected unix:PATH or tcp:HOST:PORT")]
    BadRemote(String),
    /// Connecting, reading or writing failed.
    #[error("OVSDB connection: {0}")]
    Io(#[source] std::io::Error),
    /// The server closed the connection.
    #[error("OVSDB connection closed")]
    Closed,
    /// A message is not valid JSON.
    #[error("OVSDB message is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// A message exceeds the size limit.
    #[error("OVSDB message longer than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// A message is JSON but not the shape the protocol defines.
    #[error("malformed OVSDB {what}: expected {expected}")]
    Malformed {
        /// Which kind of message or part.
        what: &'static str,
        /// What was expected.
        expected: &'static str,
    },
    /// A value is not a valid OVSDB datum.
    #[error("bad OVSDB value {value}: expected {expected}")]
    Datum {
        /// What was expected.
        expected: &'static str,
        /// The offending JSON (shortened).
        value: String,
    },
    /// The server answered a request with an error.
    #[error("OVSDB {method} failed: {error}")]
    Rpc {
        /// The request.
        method: String,
        /// The server's error object.
        error: String,
    },
    /// A transaction was refused (an operation's error).
    #[error("OVSDB transaction failed: {0}")]
    Transaction(String),
    /// No reply in time.
    #[error("OVSDB {method}: no reply in time")]
    Timeout {
        /// The request.
        method: String,
    },
}

impl Error {
    fn malformed(what: &'static str, expected: &'static str) -> Error {
        Error::Malformed { what, expected }
    }

    fn datum(expected: &'static str, v: &serde_json::Value) -> Error {
        let mut value = v.to_string();
        if value.len() > 80 {
            let mut end = 80;
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            value.truncate(end);
            value.push_str("...");
        }
        Error::Datum { expected, value }
    }
}

/// Whatever the server sends, the client answers with a value or an
/// [`Error`], never a panic: random bytes through the framer, random JSON
/// through every reader.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            any::<f64>().prop_map(|f| json!(f)),
            prop_oneof![
                Just("set".to_string()),
                Just("map".to_string()),
                Just("uuid".to_string()),
                Just("named-uuid".to_string()),
                Just("insert".to_string()),
                Just("modify".to_string()),
                Just("delete".to_string()),
                "[a-z]{0,4}",
            ]
            .prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("initial".to_string()),
                        Just("modify".to_string()),
                        Just("new".to_string()),
                        Just("old".to_string()),
                        Just("name".to_string()),
                        Just("tag".to_string()),
                        "[a-z]{1,3}",
                    ],
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn schema() -> Schema {
        Schema::from_json(&json!({
            "name": "db", "version": "1",
            "tables": {"T": {"columns": {
                "name": {"type": "string"},
                "tag": {"type": {"key": "integer", "min": 0, "max": 1}},
                "s": {"type": {"key": "string", "min": 0, "max": "unlimited"}},
                "m": {"type": {"key": "string", "value": "string", "min": 0, "max": "unlimited"}}
            }}}
        }))
        .unwrap()
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8)) {
            let mut f = framing::Framer::new(256);
            for c in chunks {
                f.push(&c);
                while let Some(v) = f.next_value() {
                    match v {
                        Ok(v) => { let _ = client::Message::parse(v); }
                        Err(_) => break,
                    }
                }
            }
        }

        #[test]
        fn random_json_never_panics(v in value(), t in value()) {
            let _ = Datum::from_json(&v);
            let _ = client::Message::parse(v.clone());
            let _ = Schema::from_json(&v);
            let s = schema();
            let mut r = Replica::new();
            let _ = r.apply(Format::Update2, &json!({"T": {"u": v.clone()}}), &s);
            let _ = r.apply(Format::Update2, &json!({"T": {"u": {"modify": t.clone()}}}), &s);
            let _ = r.apply(Format::Update, &json!({"T": {"u": t}}), &s);
            let _ = r.apply(Format::Update2, &v, &s);
            for (_, row) in r.table("T") {
                let _ = (row.str("name"), row.int("tag"), row.uuids("s"), row.str_map("m"));
            }
        }
    }
}
