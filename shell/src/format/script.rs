//! Table, JSON and raw rendering of script results.
//!
//! - table: a scalar on its own line (strings quoted as values are); an array as rows
//!   `# VALUE`, or as one row per element with a column per key when every element is a
//!   table with keys (records); a table with keys as rows `KEY VALUE`. Nested tables
//!   show inline, Lua-like (`{1, 2}`, `{a = 1}`). A footer says whether and when the
//!   script committed.
//! - json: `{"value": ..., "commit_ts", "attempts", "hash", "served_by"}`, the value as
//!   JSON (a non-UTF-8 string as `{"hex": ...}`, a non-finite float as null).
//! - raw: a scalar bare (nil prints nothing); an array one element per line; a table
//!   with keys `KEY<tab>VALUE` per line; nested tables as compact JSON.

use std::collections::BTreeMap;

use kahuna_client::{ScriptResult, ScriptValue};
use serde_json::{Value, json};

use super::{grid, hex, hlc_text, value_text};

/// The table rendering.
pub(super) fn table(result: &ScriptResult) -> String {
    let mut out = value_table(&result.value);
    let written = match result.commit_ts {
        Some(ts) => format!("committed at {}", hlc_text(ts)),
        None => "nothing written".to_owned(),
    };
    let attempts = if result.attempts > 1 { format!(", {} attempts", result.attempts) } else { String::new() };
    out.push_str(&format!("({written}, node {}{attempts})\n", result.served_by));
    out
}

fn value_table(value: &ScriptValue) -> String {
    match value {
        ScriptValue::Nil => "(nil)\n".to_owned(),
        ScriptValue::Array(items) if items.is_empty() => "(empty table)\n".to_owned(),
        ScriptValue::Map(entries) if entries.is_empty() => "(empty table)\n".to_owned(),
        ScriptValue::Array(items) => match records(items) {
            Some(columns) => {
                let mut headers = vec!["#"];
                headers.extend(columns.iter().map(String::as_str));
                let rows = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let mut row = vec![(i + 1).to_string()];
                        if let ScriptValue::Map(entries) = item {
                            row.extend(columns.iter().map(|c| entries.get(c).map_or_else(String::new, inline)));
                        }
                        row
                    })
                    .collect();
                grid(&headers, rows)
            }
            None => {
                let rows = items.iter().enumerate().map(|(i, item)| vec![(i + 1).to_string(), inline(item)]).collect();
                grid(&["#", "VALUE"], rows)
            }
        },
        ScriptValue::Map(entries) => {
            grid(&["KEY", "VALUE"], entries.iter().map(|(k, v)| vec![k.clone(), inline(v)]).collect())
        }
        scalar => format!("{}\n", inline(scalar)),
    }
}

/// Returns the union of keys, in order of first appearance, when every element is a
/// table with keys; such an array reads best as one row per element.
fn records(items: &[ScriptValue]) -> Option<Vec<String>> {
    let mut columns: Vec<String> = Vec::new();
    for item in items {
        let ScriptValue::Map(entries) = item else { return None };
        if entries.is_empty() {
            return None;
        }
        for key in entries.keys() {
            if !columns.contains(key) {
                columns.push(key.clone());
            }
        }
    }
    Some(columns)
}

/// One value on one line, Lua-like.
fn inline(value: &ScriptValue) -> String {
    match value {
        ScriptValue::Nil => "nil".to_owned(),
        ScriptValue::Boolean(b) => b.to_string(),
        ScriptValue::Integer(n) => n.to_string(),
        ScriptValue::Float(f) => float_text(*f),
        ScriptValue::String(bytes) => value_text(bytes),
        ScriptValue::Array(items) => format!("{{{}}}", items.iter().map(inline).collect::<Vec<_>>().join(", ")),
        ScriptValue::Map(entries) => {
            let fields: Vec<String> = entries.iter().map(|(k, v)| format!("{} = {}", lua_key(k), inline(v))).collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

/// A float as Lua prints it: always with a point or exponent, so it reads as a float.
fn float_text(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 { format!("{f:.1}") } else { f.to_string() }
}

/// A table key as Lua source writes it: bare when it is a name, else `["..."]`.
fn lua_key(key: &str) -> String {
    let name = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if name { key.to_owned() } else { format!("[{key:?}]") }
}

/// The JSON rendering.
pub(super) fn json(result: &ScriptResult) -> Value {
    json!({
        "value": value_json(&result.value),
        "commit_ts": result.commit_ts,
        "attempts": result.attempts,
        "hash": result.hash,
        "served_by": result.served_by,
    })
}

fn value_json(value: &ScriptValue) -> Value {
    match value {
        ScriptValue::Nil => Value::Null,
        ScriptValue::Boolean(b) => json!(b),
        ScriptValue::Integer(n) => json!(n),
        ScriptValue::Float(f) => json!(f),
        ScriptValue::String(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => json!(text),
            Err(_) => json!({ "hex": hex(bytes) }),
        },
        ScriptValue::Array(items) => Value::Array(items.iter().map(value_json).collect()),
        ScriptValue::Map(entries) => map_json(entries),
    }
}

fn map_json(entries: &BTreeMap<String, ScriptValue>) -> Value {
    Value::Object(entries.iter().map(|(k, v)| (k.clone(), value_json(v))).collect())
}

/// The raw rendering.
pub(super) fn raw(result: &ScriptResult) -> Vec<u8> {
    let mut out = Vec::new();
    match &result.value {
        ScriptValue::Nil => {}
        ScriptValue::Array(items) => {
            for item in items {
                out.extend_from_slice(&raw_inline(item));
                out.push(b'\n');
            }
        }
        ScriptValue::Map(entries) => {
            for (key, value) in entries {
                out.extend_from_slice(key.as_bytes());
                out.push(b'\t');
                out.extend_from_slice(&raw_inline(value));
                out.push(b'\n');
            }
        }
        scalar => {
            out.extend_from_slice(&raw_inline(scalar));
            out.push(b'\n');
        }
    }
    out
}

fn raw_inline(value: &ScriptValue) -> Vec<u8> {
    match value {
        ScriptValue::Nil => Vec::new(),
        ScriptValue::String(bytes) => bytes.clone(),
        ScriptValue::Float(f) => float_text(*f).into_bytes(),
        ScriptValue::Array(_) | ScriptValue::Map(_) => value_json(value).to_string().into_bytes(),
        ScriptValue::Boolean(b) => b.to_string().into_bytes(),
        ScriptValue::Integer(n) => n.to_string().into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(value: ScriptValue, commit_ts: Option<u64>) -> ScriptResult {
        ScriptResult { value, hash: "ab".repeat(32), commit_ts, attempts: 1, served_by: 2 }
    }

    fn map(pairs: &[(&str, ScriptValue)]) -> ScriptValue {
        ScriptValue::Map(pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect())
    }

    #[test]
    fn scalars() {
        let r = result(ScriptValue::Integer(42), None);
        assert_eq!(table(&r), "42\n(nothing written, node 2)\n");
        assert_eq!(raw(&r), b"42\n");
        assert_eq!(json(&r)["value"], json!(42));
        assert_eq!(json(&r)["commit_ts"], Value::Null);
        let r = result(ScriptValue::from("a b"), Some(5 << 16));
        assert!(table(&r).starts_with("\"a b\"\n(committed at 327680 ("), "{}", table(&r));
        assert_eq!(raw(&r), b"a b\n");
        assert_eq!(table(&result(ScriptValue::Nil, None)), "(nil)\n(nothing written, node 2)\n");
        assert_eq!(raw(&result(ScriptValue::Nil, None)), b"");
        assert_eq!(inline(&ScriptValue::Float(2.0)), "2.0");
        assert_eq!(inline(&ScriptValue::Float(0.25)), "0.25");
        assert_eq!(json(&result(ScriptValue::String(vec![0xff]), None))["value"], json!({ "hex": "ff" }));
        let mut retried = result(ScriptValue::Boolean(true), None);
        retried.attempts = 3;
        assert_eq!(table(&retried), "true\n(nothing written, node 2, 3 attempts)\n");
    }

    #[test]
    fn arrays_maps_and_records() {
        let array = ScriptValue::Array(vec![1.into(), "x".into(), ScriptValue::Array(vec![2.into(), 3.into()])]);
        let r = result(array, None);
        assert_eq!(table(&r), "#  VALUE\n1  1\n2  \"x\"\n3  {2, 3}\n(nothing written, node 2)\n");
        assert_eq!(raw(&r), b"1\nx\n[2,3]\n");
        assert_eq!(json(&r)["value"], json!([1, "x", [2, 3]]));
        let m = map(&[("moved", true.into()), ("owner", "bob".into()), ("odd key", map(&[("a", 1.into())]))]);
        let r = result(m, None);
        assert_eq!(
            table(&r),
            "KEY      VALUE\nmoved    true\nodd key  {a = 1}\nowner    \"bob\"\n(nothing written, node 2)\n"
        );
        assert_eq!(raw(&r), b"moved\ttrue\nodd key\t{\"a\":1}\nowner\tbob\n");
        assert_eq!(json(&r)["value"]["owner"], json!("bob"));
        let rows = ScriptValue::Array(vec![
            map(&[("key", "a".into()), ("value", "1".into())]),
            map(&[("key", "b".into()), ("n", 2.into())]),
        ]);
        assert_eq!(
            table(&result(rows, None)),
            "#  key  value  n\n1  \"a\"  \"1\"\n2  \"b\"         2\n(nothing written, node 2)\n"
        );
        assert_eq!(table(&result(map(&[]), None)), "(empty table)\n(nothing written, node 2)\n");
        assert_eq!(lua_key("a b"), "[\"a b\"]");
    }
}
