//! Values that cross between Rust and Lua: script arguments and return values.
//!
//! Integers stay `i64` both ways and never pass through `f64`: revisions, fencing tokens
//! and sequence values are 64-bit. A Lua table becomes an [`ScriptValue::Array`] when its
//! keys are exactly `1..=n` (n ≥ 1), else a [`ScriptValue::Map`]; an empty table is an
//! empty map. Map keys are strings; integer keys of a non-sequence table become their
//! decimal text. Nesting and size are bounded by [`VALUE_DEPTH_MAX`] and
//! [`VALUE_ITEMS_MAX`], so cyclic tables are refused rather than followed.

use std::collections::BTreeMap;

use mlua::{Lua, Table, Value};

use crate::error::ScriptError;
use crate::limits::{VALUE_DEPTH_MAX, VALUE_ITEMS_MAX};

/// A Lua value with a Rust shape: what a script returns and what it is given.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ScriptValue {
    #[default]
    Nil,
    Boolean(bool),
    Integer(i64),
    Float(f64),
    /// Lua strings are bytes: values read from keys need not be UTF-8.
    String(Vec<u8>),
    /// A sequence; `Nil` elements appear only when a script returns several values.
    Array(Vec<ScriptValue>),
    Map(BTreeMap<String, ScriptValue>),
}

impl ScriptValue {
    /// The string as UTF-8, when it is a string of valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
}

impl From<&str> for ScriptValue {
    fn from(s: &str) -> Self {
        Self::String(s.as_bytes().to_vec())
    }
}

impl From<String> for ScriptValue {
    fn from(s: String) -> Self {
        Self::String(s.into_bytes())
    }
}

impl From<i64> for ScriptValue {
    fn from(n: i64) -> Self {
        Self::Integer(n)
    }
}

impl From<f64> for ScriptValue {
    fn from(n: f64) -> Self {
        Self::Float(n)
    }
}

impl From<bool> for ScriptValue {
    fn from(b: bool) -> Self {
        Self::Boolean(b)
    }
}

/// A script's arguments: positional ones are `kahuna.args[1]`, `kahuna.args[2]`, ...;
/// named ones are `kahuna.args.name`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScriptArgs {
    pub positional: Vec<ScriptValue>,
    pub named: BTreeMap<String, ScriptValue>,
}

impl ScriptArgs {
    /// No arguments.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a positional argument.
    pub fn arg(mut self, value: impl Into<ScriptValue>) -> Self {
        self.positional.push(value.into());
        self
    }

    /// Adds (or replaces) a named argument.
    pub fn named(mut self, name: impl Into<String>, value: impl Into<ScriptValue>) -> Self {
        self.named.insert(name.into(), value.into());
        self
    }
}

/// Counts values converted so far against [`VALUE_ITEMS_MAX`].
struct Items(usize);

impl Items {
    fn take(&mut self, what: &str) -> Result<(), ScriptError> {
        self.0 += 1;
        if self.0 > VALUE_ITEMS_MAX {
            return Err(ScriptError::invalid(format!("{what} hold more than {VALUE_ITEMS_MAX} values")));
        }
        Ok(())
    }
}

/// Builds the `kahuna.args` table.
pub(crate) fn args_to_lua(lua: &Lua, args: &ScriptArgs) -> Result<Table, ScriptError> {
    let lua_err = |e: mlua::Error| ScriptError::from_lua(&e);
    let table = lua.create_table().map_err(lua_err)?;
    let mut items = Items(0);
    for (i, v) in args.positional.iter().enumerate() {
        let v = to_lua(lua, v, 1, &mut items)?;
        table.raw_set(i + 1, v).map_err(lua_err)?;
    }
    for (name, v) in &args.named {
        let v = to_lua(lua, v, 1, &mut items)?;
        table.raw_set(name.as_str(), v).map_err(lua_err)?;
    }
    Ok(table)
}

fn to_lua(lua: &Lua, value: &ScriptValue, depth: usize, items: &mut Items) -> Result<Value, ScriptError> {
    items.take("script arguments")?;
    let lua_err = |e: mlua::Error| ScriptError::from_lua(&e);
    Ok(match value {
        ScriptValue::Nil => Value::Nil,
        ScriptValue::Boolean(b) => Value::Boolean(*b),
        ScriptValue::Integer(n) => Value::Integer(*n),
        ScriptValue::Float(n) => Value::Number(*n),
        ScriptValue::String(b) => Value::String(lua.create_string(b).map_err(lua_err)?),
        ScriptValue::Array(_) | ScriptValue::Map(_) if depth >= VALUE_DEPTH_MAX => {
            return Err(ScriptError::invalid(format!("script arguments nest deeper than {VALUE_DEPTH_MAX} tables")));
        }
        ScriptValue::Array(vs) => {
            let t = lua.create_table_with_capacity(vs.len(), 0).map_err(lua_err)?;
            for (i, v) in vs.iter().enumerate() {
                t.raw_set(i + 1, to_lua(lua, v, depth + 1, items)?).map_err(lua_err)?;
            }
            Value::Table(t)
        }
        ScriptValue::Map(m) => {
            let t = lua.create_table_with_capacity(0, m.len()).map_err(lua_err)?;
            for (k, v) in m {
                t.raw_set(k.as_str(), to_lua(lua, v, depth + 1, items)?).map_err(lua_err)?;
            }
            Value::Table(t)
        }
    })
}

/// Converts what a script returned: nothing is `Nil`, one value is itself, several
/// values are an `Array` of them.
pub(crate) fn from_lua_multi(values: mlua::MultiValue) -> Result<ScriptValue, ScriptError> {
    let mut items = Items(0);
    let mut values: Vec<Value> = values.into_vec();
    match values.len() {
        0 => Ok(ScriptValue::Nil),
        1 => from_lua(&values.remove(0), 0, &mut items),
        _ => values.iter().map(|v| from_lua(v, 1, &mut items)).collect::<Result<_, _>>().map(ScriptValue::Array),
    }
}

fn from_lua(value: &Value, depth: usize, items: &mut Items) -> Result<ScriptValue, ScriptError> {
    items.take("return values").map_err(|e| ScriptError::Return(strip_invalid(e)))?;
    match value {
        Value::Nil => Ok(ScriptValue::Nil),
        Value::Boolean(b) => Ok(ScriptValue::Boolean(*b)),
        Value::Integer(n) => Ok(ScriptValue::Integer(*n)),
        Value::Number(n) => Ok(ScriptValue::Float(*n)),
        Value::String(s) => Ok(ScriptValue::String(s.as_bytes().to_vec())),
        Value::Table(t) => table_from_lua(t, depth, items),
        other => Err(ScriptError::Return(format!("a {} cannot be returned", other.type_name()))),
    }
}

fn table_from_lua(table: &Table, depth: usize, items: &mut Items) -> Result<ScriptValue, ScriptError> {
    if depth >= VALUE_DEPTH_MAX {
        return Err(ScriptError::Return(format!("tables nest deeper than {VALUE_DEPTH_MAX} (is a table cyclic?)")));
    }
    let mut entries = Vec::new();
    for pair in table.pairs::<Value, Value>() {
        let (k, v) = pair.map_err(|e| ScriptError::Return(e.to_string()))?;
        entries.push((k, from_lua(&v, depth + 1, items)?));
    }
    let n = entries.len();
    let is_sequence = n > 0
        && entries
            .iter()
            .all(|(k, _)| matches!(k, Value::Integer(i) if *i >= 1 && usize::try_from(*i).is_ok_and(|i| i <= n)));
    if is_sequence {
        // Keys are distinct and all within 1..=n, so they are exactly 1..=n.
        let mut slots = vec![ScriptValue::Nil; n];
        for (k, v) in entries {
            if let Value::Integer(i) = k
                && let Some(slot) = usize::try_from(i - 1).ok().and_then(|i| slots.get_mut(i))
            {
                *slot = v;
            }
        }
        return Ok(ScriptValue::Array(slots));
    }
    let mut map = BTreeMap::new();
    for (k, v) in entries {
        let key = match &k {
            Value::String(s) => s
                .to_str()
                .map(|s| s.to_string())
                .map_err(|_| ScriptError::Return("a table key is not valid UTF-8".into()))?,
            Value::Integer(i) => i.to_string(),
            other => {
                return Err(ScriptError::Return(format!(
                    "a table key is a {}; keys must be strings or integers",
                    other.type_name()
                )));
            }
        };
        map.insert(key, v);
    }
    Ok(ScriptValue::Map(map))
}

fn strip_invalid(e: ScriptError) -> String {
    match e {
        ScriptError::InvalidInput { message, .. } => message,
        other => other.to_string(),
    }
}
