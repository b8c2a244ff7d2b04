//! [`ScriptValue`] and [`ScriptArgs`]: the client's own shape of Lua values, and their
//! conversion to and from the protocol.
//!
//! Integers stay `i64` both ways and never pass through `f64`: revisions, fencing tokens
//! and sequence values are 64-bit. The server decides how Lua tables map: a table with
//! keys exactly `1..=n` is an [`ScriptValue::Array`], any other (the empty table
//! included) a [`ScriptValue::Map`].

use std::collections::BTreeMap;

use kahuna_proto::v1;
use kahuna_proto::v1::script_value::Kind;

/// A Lua value: what a script is given and what it returns.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum ScriptValue {
    /// Lua's `nil`.
    #[default]
    Nil,
    /// A boolean.
    Boolean(bool),
    /// A 64-bit integer.
    Integer(i64),
    /// A float.
    Float(f64),
    /// A string: Lua strings are bytes, not necessarily UTF-8.
    String(Vec<u8>),
    /// A sequence (Lua index 1 is element 0); `Nil` elements appear only when a script
    /// returns several values.
    Array(Vec<ScriptValue>),
    /// A table with string keys (integer keys of a non-sequence table become their
    /// decimal text).
    Map(BTreeMap<String, ScriptValue>),
}

impl ScriptValue {
    /// Returns true for `Nil`.
    pub fn is_nil(&self) -> bool {
        matches!(self, ScriptValue::Nil)
    }

    /// Returns the string as UTF-8, when it is a string of valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            ScriptValue::String(bytes) => std::str::from_utf8(bytes).ok(),
            _ => None,
        }
    }

    /// Returns the string's bytes, when it is a string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            ScriptValue::String(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// Returns the integer, when it is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            ScriptValue::Integer(n) => Some(*n),
            _ => None,
        }
    }

    /// Returns the boolean, when it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            ScriptValue::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    pub(crate) fn to_proto(&self) -> v1::ScriptValue {
        let kind = match self {
            ScriptValue::Nil => Kind::Nil(v1::ScriptNil {}),
            ScriptValue::Boolean(b) => Kind::Boolean(*b),
            ScriptValue::Integer(n) => Kind::Integer(*n),
            ScriptValue::Float(f) => Kind::Float(*f),
            ScriptValue::String(bytes) => Kind::String(bytes.clone()),
            ScriptValue::Array(items) => {
                Kind::Array(v1::ScriptArray { items: items.iter().map(ScriptValue::to_proto).collect() })
            }
            ScriptValue::Map(entries) => {
                Kind::Map(v1::ScriptMap { entries: entries.iter().map(|(k, v)| (k.clone(), v.to_proto())).collect() })
            }
        };
        v1::ScriptValue { kind: Some(kind) }
    }

    /// Converts a value from the server. Its nesting is bounded by the protocol
    /// decoder's recursion limit, so the recursion here is too.
    pub(crate) fn from_proto(value: v1::ScriptValue) -> ScriptValue {
        match value.kind {
            None | Some(Kind::Nil(_)) => ScriptValue::Nil,
            Some(Kind::Boolean(b)) => ScriptValue::Boolean(b),
            Some(Kind::Integer(n)) => ScriptValue::Integer(n),
            Some(Kind::Float(f)) => ScriptValue::Float(f),
            Some(Kind::String(bytes)) => ScriptValue::String(bytes),
            Some(Kind::Array(array)) => ScriptValue::Array(array.items.into_iter().map(Self::from_proto).collect()),
            Some(Kind::Map(map)) => {
                ScriptValue::Map(map.entries.into_iter().map(|(k, v)| (k, Self::from_proto(v))).collect())
            }
        }
    }
}

impl From<&str> for ScriptValue {
    fn from(s: &str) -> ScriptValue {
        ScriptValue::String(s.as_bytes().to_vec())
    }
}

impl From<String> for ScriptValue {
    fn from(s: String) -> ScriptValue {
        ScriptValue::String(s.into_bytes())
    }
}

impl From<Vec<u8>> for ScriptValue {
    fn from(bytes: Vec<u8>) -> ScriptValue {
        ScriptValue::String(bytes)
    }
}

impl From<i64> for ScriptValue {
    fn from(n: i64) -> ScriptValue {
        ScriptValue::Integer(n)
    }
}

impl From<i32> for ScriptValue {
    fn from(n: i32) -> ScriptValue {
        ScriptValue::Integer(n.into())
    }
}

impl From<f64> for ScriptValue {
    fn from(f: f64) -> ScriptValue {
        ScriptValue::Float(f)
    }
}

impl From<bool> for ScriptValue {
    fn from(b: bool) -> ScriptValue {
        ScriptValue::Boolean(b)
    }
}

impl From<Vec<ScriptValue>> for ScriptValue {
    fn from(items: Vec<ScriptValue>) -> ScriptValue {
        ScriptValue::Array(items)
    }
}

impl From<BTreeMap<String, ScriptValue>> for ScriptValue {
    fn from(entries: BTreeMap<String, ScriptValue>) -> ScriptValue {
        ScriptValue::Map(entries)
    }
}

/// A script's arguments: positional ones are `kahuna.args[1]`, `kahuna.args[2]`, ...;
/// named ones are `kahuna.args.name`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScriptArgs {
    /// `kahuna.args[1]`, `kahuna.args[2]`, ...
    pub positional: Vec<ScriptValue>,
    /// `kahuna.args.name`.
    pub named: BTreeMap<String, ScriptValue>,
    /// A key (or lock or sequence name) the script works on: the client sends the run to
    /// the leader of its partition, where the script's reads and commit need no hop to
    /// another node. Only a hint: the script may touch any key, and is not told of it.
    pub route: Option<String>,
}

impl ScriptArgs {
    /// Returns no arguments.
    pub fn new() -> ScriptArgs {
        ScriptArgs::default()
    }

    /// Adds a positional argument.
    pub fn arg(mut self, value: impl Into<ScriptValue>) -> ScriptArgs {
        self.positional.push(value.into());
        self
    }

    /// Adds (or replaces) a named argument.
    pub fn named(mut self, name: impl Into<String>, value: impl Into<ScriptValue>) -> ScriptArgs {
        self.named.insert(name.into(), value.into());
        self
    }

    /// Runs the script on the leader of `key`'s partition (see [`ScriptArgs::route`]).
    pub fn route_by(mut self, key: impl Into<String>) -> ScriptArgs {
        self.route = Some(key.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_the_protocol() {
        let mut map = BTreeMap::new();
        map.insert("n".to_owned(), ScriptValue::Integer(i64::MAX));
        map.insert("list".to_owned(), vec![ScriptValue::Nil, 1.5.into(), b"\xff".to_vec().into()].into());
        let value = ScriptValue::Map(map);
        assert_eq!(ScriptValue::from_proto(value.to_proto()), value);
        assert_eq!(ScriptValue::from_proto(v1::ScriptValue { kind: None }), ScriptValue::Nil);
    }

    #[test]
    fn args_builder() {
        let args = ScriptArgs::new().arg(5).arg("x").named("key", "counter");
        assert_eq!(args.positional, [ScriptValue::Integer(5), ScriptValue::from("x")]);
        assert_eq!(args.named.get("key").and_then(ScriptValue::as_str), Some("counter"));
    }
}
