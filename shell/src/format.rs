//! Renders outcomes and errors as table, JSON or raw output.
//!
//! - table: aligned text for people. UTF-8 values are shown double-quoted with escapes (so
//!   they can be pasted back into the shell), other values as `0x` and hex; a missing key
//!   is `(nil)`. Errors go to stderr.
//! - json: exactly one compact JSON document per command, on stdout, errors included as
//!   `{"error":{"code":...,"message":...}}`. UTF-8 values are `"value"`, others
//!   `"value_hex"`.
//! - raw: the bare result for pipes: value bytes as they are, one per line; a missing key
//!   prints nothing; set, del, extend and exists print 1 or 0. Errors go to stderr.

mod coord;
mod script;

use std::fmt::Write as _;
use std::time::Duration;

use kahuna_client::{
    ClusterStatus, DeleteResult, GetResult, Items, KeyValue, NodeId, NodeInfo, SetResult, hlc_logical, hlc_unix_ms,
};
use serde_json::{Value, json};

use crate::args::Format;
use crate::error::ShellError;
use crate::exec::{Buffered, Outcome, Rollback};

/// Where a rendering goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Returns the bytes to print for `outcome` (empty for none).
pub fn render(outcome: &Outcome, format: Format) -> Vec<u8> {
    match format {
        Format::Table => table(outcome).into_bytes(),
        Format::Json => match outcome {
            Outcome::Exit => Vec::new(),
            outcome => format!("{}\n", json(outcome)).into_bytes(),
        },
        Format::Raw => raw(outcome),
    }
}

/// Returns the latency line `timing on` prints after a command's output, and where it
/// goes: stdout for tables, stderr for json and raw so pipes get only results.
pub fn render_latency(elapsed: Duration, format: Format) -> (Vec<u8>, Stream) {
    let line = format!("({:.2} ms)\n", elapsed.as_secs_f64() * 1e3).into_bytes();
    match format {
        Format::Table => (line, Stream::Stdout),
        Format::Json | Format::Raw => (line, Stream::Stderr),
    }
}

/// Returns the bytes to print for a failed command, and where they go: stdout for JSON
/// (one document per command), stderr otherwise.
pub fn render_error(error: &ShellError, format: Format) -> (Vec<u8>, Stream) {
    match format {
        Format::Json => {
            let mut document = json!({ "code": error.code, "message": error.message });
            if let (Some(detail), Value::Object(fields)) = (&error.detail, &mut document) {
                fields.insert("detail".into(), Value::String(detail.clone()));
            }
            (format!("{}\n", json!({ "error": document })).into_bytes(), Stream::Stdout)
        }
        Format::Table | Format::Raw => {
            let mut text = format!("error: {} ({})\n", error.message, error.code);
            if let Some(detail) = &error.detail {
                let _ = writeln!(text, "  {detail}");
            }
            (text.into_bytes(), Stream::Stderr)
        }
    }
}

// ---- table ---------------------------------------------------------------------------

fn table(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Set { result, .. } => set_line(result),
        Outcome::Get { key: _, result } => get_table(result),
        Outcome::Exists { result, .. } => format!("{}\n", result.exists),
        Outcome::Delete { result, .. } => delete_line(result),
        Outcome::Extend { result, .. } => {
            if !result.extended {
                format!("(not extended: key absent, node {})\n", result.served_by)
            } else {
                let expiry = result
                    .expires_at_ms
                    .map_or_else(|| "no expiry".to_owned(), |ms| format!("expires {}", unix_ms_text(ms)));
                format!("extended: {expiry} (node {})\n", result.served_by)
            }
        }
        Outcome::Bucket { items, .. } => items_table(items, None),
        Outcome::Scan { items, continue_with, .. } => items_table(items, continue_with.as_deref()),
        Outcome::SetMany { keys, batch } => {
            let rows = keys
                .iter()
                .zip(&batch.results)
                .map(|(key, r)| {
                    let outcome = if r.modified { "OK" } else { "not modified" };
                    vec![key.clone(), outcome.to_owned(), revision_text(r.revision)]
                })
                .collect();
            format!("{}({}, node {})\n", grid(&["KEY", "RESULT", "REVISION"], rows), count(keys.len()), batch.served_by)
        }
        Outcome::GetMany { keys, batch } => {
            let rows = keys
                .iter()
                .zip(&batch.results)
                .map(|(key, r)| match &r.kv {
                    Some(kv) => kv_row(kv),
                    None => vec![key.clone(), "(nil)".to_owned(), String::new(), String::new(), String::new()],
                })
                .collect();
            format!("{}({}, node {})\n", grid(&KV_HEADERS, rows), count(keys.len()), batch.served_by)
        }
        Outcome::DeleteMany { keys, batch } => {
            let rows = keys
                .iter()
                .zip(&batch.results)
                .map(|(key, r)| {
                    let outcome = if r.deleted { "deleted" } else { "not deleted" };
                    vec![key.clone(), outcome.to_owned(), revision_text(r.revision)]
                })
                .collect();
            format!("{}({}, node {})\n", grid(&["KEY", "RESULT", "REVISION"], rows), count(keys.len()), batch.served_by)
        }
        Outcome::Status(status) => status_table(status),
        Outcome::Coordination(outcome) => coord::table(outcome),
        Outcome::Ping { endpoint, node_id, rtt } => {
            format!("PONG from node {node_id} at {} in {:.3} ms\n", endpoint_text(endpoint), rtt.as_secs_f64() * 1e3)
        }
        Outcome::Members { node_id, nodes } => members_table(*node_id, nodes),
        Outcome::Timing(on) => format!("timing {}\n", if *on { "on" } else { "off" }),
        Outcome::Help(text) => format!("{}\n", text.trim_end()),
        Outcome::Exit => String::new(),
        Outcome::Begun { id, snapshot_ts, timeout, served_by } => format!(
            "begun transaction {id} (snapshot {}, node {served_by}, rolled back unless committed within {} ms)\n",
            hlc_text(*snapshot_ts),
            timeout.as_millis()
        ),
        Outcome::Buffered { op, applied, served_by, .. } => buffered_line(*op, *applied, *served_by),
        Outcome::Committed { id, commit_ts: Some(ts), served_by } => {
            format!("committed transaction {id} at {} (node {served_by})\n", hlc_text(*ts))
        }
        Outcome::Committed { id, commit_ts: None, served_by } => {
            format!("committed transaction {id}: nothing was written (node {served_by})\n")
        }
        Outcome::RolledBack { id, rollback, served_by } => match rollback {
            Rollback::Done => format!("rolled back transaction {id} (node {served_by})\n"),
            Rollback::AlreadyEnded => format!(
                "transaction {id} had already ended on node {served_by} (its timeout passed); nothing was committed\n"
            ),
            Rollback::Unreachable(error) => format!(
                "transaction {id} abandoned: node {served_by} did not answer ({error}); it rolls back when its \
                 timeout passes\n"
            ),
        },
        Outcome::Script(result) => script::table(result),
    }
}

fn buffered_line(op: Buffered, applied: bool, served_by: NodeId) -> String {
    match (op, applied) {
        (Buffered::Set, true) => format!("OK (buffered until commit, node {served_by})\n"),
        (Buffered::Set, false) => format!("(not modified: condition failed, node {served_by})\n"),
        (Buffered::Delete, true) => format!("deleted (buffered until commit, node {served_by})\n"),
        (Buffered::Delete, false) => format!("(not deleted: key absent or compare failed, node {served_by})\n"),
        (Buffered::Extend, true) => format!("extended (buffered until commit, node {served_by})\n"),
        (Buffered::Extend, false) => format!("(not extended: key absent, node {served_by})\n"),
    }
}

const KV_HEADERS: [&str; 5] = ["KEY", "VALUE", "REVISION", "COMMITTED", "EXPIRES"];

/// A transaction's own buffered writes read back with commit timestamp 0: not committed.
const UNCOMMITTED: &str = "(uncommitted)";

fn kv_row(kv: &KeyValue) -> Vec<String> {
    vec![
        kv.key.clone(),
        value_text(&kv.value),
        kv.revision.to_string(),
        if kv.commit_ts == 0 { UNCOMMITTED.to_owned() } else { unix_ms_text(hlc_unix_ms(kv.commit_ts)) },
        kv.expires_at_ms.map_or_else(|| "never".to_owned(), unix_ms_text),
    ]
}

fn set_line(result: &SetResult) -> String {
    if result.modified {
        format!("OK (revision {}, node {})\n", revision_text(result.revision), result.served_by)
    } else {
        let current = match result.revision {
            Some(revision) => format!("current revision {revision}"),
            None => "key absent".to_owned(),
        };
        format!("(not modified: condition failed; {current}, node {})\n", result.served_by)
    }
}

fn delete_line(result: &DeleteResult) -> String {
    if result.deleted {
        format!("deleted (revision {}, node {})\n", revision_text(result.revision), result.served_by)
    } else {
        let why = match result.revision {
            Some(revision) => format!("compare failed; current revision {revision}"),
            None => "key absent".to_owned(),
        };
        format!("(not deleted: {why}, node {})\n", result.served_by)
    }
}

fn get_table(result: &GetResult) -> String {
    let Some(kv) = &result.kv else {
        return "(nil)\n".to_owned();
    };
    let rows = vec![
        vec!["key".to_owned(), kv.key.clone()],
        vec!["value".to_owned(), value_text(&kv.value)],
        vec!["revision".to_owned(), kv.revision.to_string()],
        vec!["commit_ts".to_owned(), if kv.commit_ts == 0 { UNCOMMITTED.to_owned() } else { hlc_text(kv.commit_ts) }],
        vec!["expires".to_owned(), kv.expires_at_ms.map_or_else(|| "never".to_owned(), unix_ms_text)],
        vec!["served_by".to_owned(), format!("node {}", result.served_by)],
    ];
    grid(&[], rows)
}

fn items_table(items: &Items, continue_with: Option<&str>) -> String {
    let mut out = if items.items.is_empty() {
        "(empty)\n".to_owned()
    } else {
        grid(&KV_HEADERS, items.items.iter().map(kv_row).collect())
    };
    let _ = writeln!(out, "({}, node {})", count(items.items.len()), items.served_by);
    if let Some(command) = continue_with {
        let _ = writeln!(out, "more keys remain; continue with:\n  {command}");
    }
    out
}

fn status_table(status: &ClusterStatus) -> String {
    let mut out = format!(
        "node {} (version {}), hlc {}\n",
        status.node_id,
        if status.version.is_empty() { "?" } else { &status.version },
        hlc_text(status.hlc)
    );
    let nodes: Vec<String> = status.nodes.iter().map(|n| format!("{}={}", n.id, n.address)).collect();
    let _ = writeln!(out, "nodes: {}", if nodes.is_empty() { "-".to_owned() } else { nodes.join(", ") });
    let rows = status
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.partition.to_string(),
                p.leader.map_or_else(|| "-".to_owned(), |id| id.to_string()),
                p.term.to_string(),
                p.role.clone(),
                p.last_log_index.to_string(),
                p.applied_index.to_string(),
                p.snapshot_index.to_string(),
                p.voters.iter().map(u64::to_string).collect::<Vec<_>>().join(","),
            ]
        })
        .collect();
    out.push_str(&grid(&["PARTITION", "LEADER", "TERM", "ROLE", "LAST_LOG", "APPLIED", "SNAPSHOT", "VOTERS"], rows));
    out
}

fn members_table(node_id: NodeId, nodes: &[NodeInfo]) -> String {
    let rows = nodes
        .iter()
        .map(|n| {
            let answering = if n.id == node_id { "yes" } else { "" };
            vec![n.id.to_string(), n.address.clone(), answering.to_owned()]
        })
        .collect();
    let plural = if nodes.len() == 1 { "" } else { "s" };
    format!(
        "{}({} node{plural}, answered by node {node_id})\n",
        grid(&["NODE", "ADDRESS", "ANSWERING"], rows),
        nodes.len()
    )
}

/// Lays out rows in left-aligned columns two spaces apart; `headers` may be empty.
fn grid(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut all: Vec<Vec<String>> = Vec::with_capacity(rows.len() + 1);
    if !headers.is_empty() {
        all.push(headers.iter().map(|h| (*h).to_owned()).collect());
    }
    all.extend(rows);
    let columns = all.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| all.iter().filter_map(|row| row.get(c)).map(|cell| cell.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &all {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[c] - cell.chars().count();
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Shows a value: UTF-8 double-quoted with escapes (valid shell input), else `0x` + hex.
pub fn value_text(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(text) => format!("{text:?}"),
        Err(_) => format!("0x{}", hex(value)),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Returns "1 key" or "N keys".
fn count(keys: usize) -> String {
    if keys == 1 { "1 key".to_owned() } else { format!("{keys} keys") }
}

fn revision_text(revision: Option<i64>) -> String {
    revision.map_or_else(|| "-".to_owned(), |r| r.to_string())
}

fn endpoint_text(endpoint: &str) -> &str {
    endpoint.strip_prefix("http://").unwrap_or(endpoint)
}

/// Shows an HLC timestamp as its number and its UTC time (`+N` for a logical count).
pub fn hlc_text(timestamp: u64) -> String {
    let logical = hlc_logical(timestamp);
    let time = unix_ms_text(hlc_unix_ms(timestamp));
    if logical == 0 { format!("{timestamp} ({time})") } else { format!("{timestamp} ({time} +{logical})") }
}

/// Shows unix milliseconds as an RFC 3339 UTC time with milliseconds.
pub fn unix_ms_text(unix_ms: u64) -> String {
    let seconds = unix_ms / 1000;
    let days = seconds / 86_400;
    let second_of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        unix_ms % 1000
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day); Howard
/// Hinnant's `civil_from_days`, for non-negative day counts.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

// ---- json ----------------------------------------------------------------------------

fn json(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Set { key, result } => set_json(key, result),
        Outcome::Get { key, result } => get_json(key, result),
        Outcome::Exists { key, result } => {
            json!({ "key": key, "exists": result.exists, "served_by": result.served_by })
        }
        Outcome::Delete { key, result } => delete_json(key, result),
        Outcome::Extend { key, result } => json!({
            "key": key,
            "extended": result.extended,
            "expires_at_ms": result.expires_at_ms,
            "commit_ts": result.commit_ts,
            "served_by": result.served_by,
        }),
        Outcome::Bucket { bucket, items } => json!({
            "bucket": bucket,
            "items": items.items.iter().map(kv_json).collect::<Vec<_>>(),
            "served_by": items.served_by,
        }),
        Outcome::Scan { prefix, items, .. } => json!({
            "prefix": prefix,
            "items": items.items.iter().map(kv_json).collect::<Vec<_>>(),
            "next_cursor": items.next_cursor,
            "served_by": items.served_by,
        }),
        Outcome::SetMany { keys, batch } => json!({
            "results": keys.iter().zip(&batch.results).map(|(k, r)| set_json(k, r)).collect::<Vec<_>>(),
            "served_by": batch.served_by,
        }),
        Outcome::GetMany { keys, batch } => json!({
            "results": keys.iter().zip(&batch.results).map(|(k, r)| get_json(k, r)).collect::<Vec<_>>(),
            "served_by": batch.served_by,
        }),
        Outcome::DeleteMany { keys, batch } => json!({
            "results": keys.iter().zip(&batch.results).map(|(k, r)| delete_json(k, r)).collect::<Vec<_>>(),
            "served_by": batch.served_by,
        }),
        Outcome::Status(status) => status_json(status),
        Outcome::Coordination(outcome) => coord::json(outcome),
        Outcome::Ping { endpoint, node_id, rtt } => json!({
            "pong": true,
            "endpoint": endpoint_text(endpoint),
            "rtt_ms": rtt.as_secs_f64() * 1e3,
            "served_by": node_id,
        }),
        Outcome::Members { node_id, nodes } => json!({
            "nodes": nodes.iter().map(|n| json!({
                "id": n.id,
                "address": n.address,
                "answering": n.id == *node_id,
            })).collect::<Vec<_>>(),
            "served_by": node_id,
        }),
        Outcome::Timing(on) => json!({ "timing": on }),
        Outcome::Help(text) => json!({ "help": text }),
        Outcome::Exit => Value::Null,
        Outcome::Begun { id, snapshot_ts, timeout, served_by } => json!({
            "txn_id": id,
            "snapshot_ts": snapshot_ts,
            "timeout_ms": u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            "served_by": served_by,
        }),
        Outcome::Buffered { op, key, applied, served_by } => {
            let field = match op {
                Buffered::Set => "modified",
                Buffered::Delete => "deleted",
                Buffered::Extend => "extended",
            };
            json!({ "key": key, field: applied, "in_transaction": true, "served_by": served_by })
        }
        Outcome::Committed { id, commit_ts, served_by } => {
            json!({ "txn_id": id, "committed": true, "commit_ts": commit_ts, "served_by": served_by })
        }
        Outcome::RolledBack { id, rollback, served_by } => json!({
            "txn_id": id,
            "rolled_back": true,
            "was_open": matches!(rollback, Rollback::Done),
            "reachable": !matches!(rollback, Rollback::Unreachable(_)),
            "served_by": served_by,
        }),
        Outcome::Script(result) => script::json(result),
    }
}

fn set_json(key: &str, result: &SetResult) -> Value {
    json!({
        "key": key,
        "modified": result.modified,
        "revision": result.revision,
        "commit_ts": result.commit_ts,
        "served_by": result.served_by,
    })
}

fn delete_json(key: &str, result: &DeleteResult) -> Value {
    json!({
        "key": key,
        "deleted": result.deleted,
        "revision": result.revision,
        "commit_ts": result.commit_ts,
        "served_by": result.served_by,
    })
}

fn get_json(key: &str, result: &GetResult) -> Value {
    match &result.kv {
        None => json!({ "key": key, "found": false, "served_by": result.served_by }),
        Some(kv) => {
            let mut document = kv_json(kv);
            if let Value::Object(fields) = &mut document {
                fields.insert("found".into(), Value::Bool(true));
                fields.insert("served_by".into(), json!(result.served_by));
            }
            document
        }
    }
}

/// A key/value as JSON: `value` when UTF-8, else `value_hex`.
fn kv_json(kv: &KeyValue) -> Value {
    let mut document = json!({
        "key": kv.key,
        "revision": kv.revision,
        "commit_ts": kv.commit_ts,
        "expires_at_ms": kv.expires_at_ms,
    });
    if let Value::Object(fields) = &mut document {
        match std::str::from_utf8(&kv.value) {
            Ok(text) => fields.insert("value".into(), Value::String(text.to_owned())),
            Err(_) => fields.insert("value_hex".into(), Value::String(hex(&kv.value))),
        };
    }
    document
}

fn status_json(status: &ClusterStatus) -> Value {
    json!({
        "node_id": status.node_id,
        "version": status.version,
        "hlc": status.hlc,
        "nodes": status.nodes.iter().map(|n| json!({ "id": n.id, "address": n.address })).collect::<Vec<_>>(),
        "partitions": status.partitions.iter().map(|p| json!({
            "partition": p.partition,
            "leader": p.leader,
            "term": p.term,
            "role": p.role,
            "last_log_index": p.last_log_index,
            "applied_index": p.applied_index,
            "snapshot_index": p.snapshot_index,
            "voters": p.voters,
        })).collect::<Vec<_>>(),
        "served_by": status.node_id,
    })
}

// ---- raw -----------------------------------------------------------------------------

fn raw(outcome: &Outcome) -> Vec<u8> {
    let mut out = Vec::new();
    let flag = |yes: bool| {
        if yes { b"1\n".to_vec() } else { b"0\n".to_vec() }
    };
    match outcome {
        Outcome::Set { result, .. } => return flag(result.modified),
        Outcome::Exists { result, .. } => return flag(result.exists),
        Outcome::Delete { result, .. } => return flag(result.deleted),
        Outcome::Extend { result, .. } => return flag(result.extended),
        Outcome::Get { result, .. } => {
            if let Some(kv) = &result.kv {
                out.extend_from_slice(&kv.value);
                out.push(b'\n');
            }
        }
        Outcome::Bucket { items, .. } | Outcome::Scan { items, .. } => {
            for kv in &items.items {
                out.extend_from_slice(kv.key.as_bytes());
                out.push(b'\t');
                out.extend_from_slice(&kv.value);
                out.push(b'\n');
            }
        }
        Outcome::GetMany { batch, .. } => {
            for result in &batch.results {
                if let Some(kv) = &result.kv {
                    out.extend_from_slice(&kv.value);
                }
                out.push(b'\n');
            }
        }
        Outcome::SetMany { batch, .. } => {
            for result in &batch.results {
                out.extend_from_slice(&flag(result.modified));
            }
        }
        Outcome::DeleteMany { batch, .. } => {
            for result in &batch.results {
                out.extend_from_slice(&flag(result.deleted));
            }
        }
        Outcome::Status(status) => {
            for p in &status.partitions {
                let leader = p.leader.map_or_else(|| "-".to_owned(), |id| id.to_string());
                let line = format!(
                    "{}\t{leader}\t{}\t{}\t{}\t{}\n",
                    p.partition, p.term, p.role, p.last_log_index, p.applied_index
                );
                out.extend_from_slice(line.as_bytes());
            }
        }
        Outcome::Ping { .. } => out.extend_from_slice(b"PONG\n"),
        Outcome::Members { node_id, nodes } => {
            for n in nodes {
                let line = format!("{}\t{}\t{}\n", n.id, n.address, u8::from(n.id == *node_id));
                out.extend_from_slice(line.as_bytes());
            }
        }
        Outcome::Timing(_) => {}
        Outcome::Coordination(outcome) => return coord::raw(outcome),
        Outcome::Help(text) => out.extend_from_slice(format!("{}\n", text.trim_end()).as_bytes()),
        Outcome::Exit | Outcome::RolledBack { .. } => {}
        Outcome::Begun { id, .. } => out.extend_from_slice(format!("{id}\n").as_bytes()),
        Outcome::Buffered { applied, .. } => return flag(*applied),
        Outcome::Committed { commit_ts, .. } => {
            if let Some(ts) = commit_ts {
                out.extend_from_slice(format!("{ts}\n").as_bytes());
            }
        }
        Outcome::Script(result) => return script::raw(result),
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kahuna_client::{Batch, ExistsResult, ExtendResult, NodeInfo, PartitionStatus};

    use super::*;

    fn kv(key: &str, value: &[u8]) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.to_vec(),
            revision: 2,
            commit_ts: (1_732_580_000_123 << 16) | 4,
            expires_at_ms: None,
        }
    }

    fn text(outcome: &Outcome, format: Format) -> String {
        String::from_utf8(render(outcome, format)).expect("UTF-8 output")
    }

    fn parsed(outcome: &Outcome) -> Value {
        let out = text(outcome, Format::Json);
        assert_eq!(out.lines().count(), 1, "one document per command: {out}");
        serde_json::from_str(&out).expect("valid JSON")
    }

    fn found(key: &str, value: &[u8]) -> Outcome {
        Outcome::Get { key: key.into(), result: GetResult { kv: Some(kv(key, value)), served_by: 1 } }
    }

    fn missing(key: &str) -> Outcome {
        Outcome::Get { key: key.into(), result: GetResult { kv: None, served_by: 1 } }
    }

    #[test]
    fn get_in_every_format() {
        assert_eq!(
            parsed(&found("k", b"v")),
            json!({
                "key": "k", "found": true, "value": "v", "revision": 2,
                "commit_ts": (1_732_580_000_123u64 << 16) | 4, "expires_at_ms": null, "served_by": 1
            })
        );
        assert_eq!(parsed(&missing("k")), json!({ "key": "k", "found": false, "served_by": 1 }));
        assert_eq!(render(&found("k", b"v"), Format::Raw), b"v\n");
        assert_eq!(render(&missing("k"), Format::Raw), b"");
        assert_eq!(text(&missing("k"), Format::Table), "(nil)\n");
        let table = text(&found("k", b"line\nbreak"), Format::Table);
        assert!(table.contains("value      \"line\\nbreak\""), "{table}");
        assert!(table.contains("2024-11-26T00:13:20.123Z +4"), "{table}");
        assert!(table.contains("served_by  node 1"), "{table}");
    }

    #[test]
    fn binary_values() {
        let outcome = found("k", b"\x00\xff");
        assert_eq!(parsed(&outcome)["value_hex"], json!("00ff"));
        assert!(parsed(&outcome).get("value").is_none());
        assert!(text(&outcome, Format::Table).contains("0x00ff"));
        assert_eq!(render(&outcome, Format::Raw), b"\x00\xff\n");
    }

    #[test]
    fn writes() {
        let set = Outcome::Set {
            key: "k".into(),
            result: SetResult { modified: true, revision: Some(0), commit_ts: 9, served_by: 2 },
        };
        assert_eq!(
            parsed(&set),
            json!({ "key": "k", "modified": true, "revision": 0, "commit_ts": 9, "served_by": 2 })
        );
        assert_eq!(text(&set, Format::Table), "OK (revision 0, node 2)\n");
        assert_eq!(text(&set, Format::Raw), "1\n");
        let refused = Outcome::Set {
            key: "k".into(),
            result: SetResult { modified: false, revision: None, commit_ts: 9, served_by: 2 },
        };
        assert!(text(&refused, Format::Table).contains("not modified"));
        assert_eq!(parsed(&refused)["revision"], Value::Null);
        assert_eq!(text(&refused, Format::Raw), "0\n");
        let extend = Outcome::Extend {
            key: "k".into(),
            result: ExtendResult { extended: true, expires_at_ms: Some(1_000), commit_ts: 1, served_by: 1 },
        };
        assert!(text(&extend, Format::Table).contains("expires 1970-01-01T00:00:01.000Z"));
        let exists = Outcome::Exists { key: "k".into(), result: ExistsResult { exists: false, served_by: 1 } };
        assert_eq!(text(&exists, Format::Table), "false\n");
        assert_eq!(text(&exists, Format::Raw), "0\n");
    }

    #[test]
    fn scans_show_their_cursor() {
        let outcome = Outcome::Scan {
            prefix: "p".into(),
            items: Items {
                items: vec![kv("p/a", b"1"), kv("p/bb", b"22")],
                next_cursor: Some("c1".into()),
                served_by: 3,
            },
            continue_with: Some("scan by prefix p cursor c1".into()),
        };
        let table = text(&outcome, Format::Table);
        assert!(table.starts_with("KEY   VALUE  REVISION"), "{table}");
        assert!(table.contains("(2 keys, node 3)") && table.contains("scan by prefix p cursor c1"), "{table}");
        assert_eq!(parsed(&outcome)["next_cursor"], json!("c1"));
        assert_eq!(text(&outcome, Format::Raw), "p/a\t1\np/bb\t22\n");
        let empty =
            Outcome::Bucket { bucket: "b".into(), items: Items { items: vec![], next_cursor: None, served_by: 1 } };
        assert_eq!(text(&empty, Format::Table), "(empty)\n(0 keys, node 1)\n");
        assert_eq!(parsed(&empty), json!({ "bucket": "b", "items": [], "served_by": 1 }));
    }

    #[test]
    fn batches() {
        let outcome = Outcome::GetMany {
            keys: vec!["a".into(), "b".into()],
            batch: Batch {
                results: vec![
                    GetResult { kv: Some(kv("a", b"1")), served_by: 1 },
                    GetResult { kv: None, served_by: 1 },
                ],
                served_by: 1,
            },
        };
        assert_eq!(text(&outcome, Format::Raw), "1\n\n");
        assert!(text(&outcome, Format::Table).contains("(nil)"));
        assert_eq!(parsed(&outcome)["results"][1], json!({ "key": "b", "found": false, "served_by": 1 }));
        let deletes = Outcome::DeleteMany {
            keys: vec!["a".into()],
            batch: Batch {
                results: vec![DeleteResult { deleted: true, revision: Some(3), commit_ts: 5, served_by: 1 }],
                served_by: 1,
            },
        };
        assert_eq!(text(&deletes, Format::Raw), "1\n");
        assert!(text(&deletes, Format::Table).contains("deleted"));
    }

    #[test]
    fn status_and_ping() {
        let status = ClusterStatus {
            node_id: 1,
            nodes: vec![NodeInfo { id: 1, address: "127.0.0.1:2070".into() }],
            partitions: vec![PartitionStatus {
                partition: 0,
                leader: None,
                term: 3,
                role: "follower".into(),
                last_log_index: 10,
                applied_index: 9,
                snapshot_index: 0,
                voters: vec![1, 2, 3],
            }],
            hlc: 0,
            version: "0.1.0".into(),
        };
        let table = text(&Outcome::Status(status.clone()), Format::Table);
        assert!(table.contains("PARTITION  LEADER  TERM  ROLE      LAST_LOG  APPLIED  SNAPSHOT  VOTERS"), "{table}");
        assert!(table.contains("0          -       3     follower  10        9        0         1,2,3"), "{table}");
        assert_eq!(parsed(&Outcome::Status(status.clone()))["partitions"][0]["leader"], Value::Null);
        assert_eq!(text(&Outcome::Status(status), Format::Raw), "0\t-\t3\tfollower\t10\t9\n");
        let ping = Outcome::Ping { endpoint: "http://a:1".into(), node_id: 4, rtt: Duration::from_micros(1500) };
        assert_eq!(text(&ping, Format::Table), "PONG from node 4 at a:1 in 1.500 ms\n");
        assert_eq!(parsed(&ping)["served_by"], json!(4));
    }

    #[test]
    fn members_and_timing() {
        let nodes = vec![
            NodeInfo { id: 1, address: "127.0.0.1:2070".into() },
            NodeInfo { id: 2, address: "127.0.0.1:2071".into() },
        ];
        let members = Outcome::Members { node_id: 2, nodes };
        let table = text(&members, Format::Table);
        assert_eq!(
            table,
            "NODE  ADDRESS         ANSWERING\n1     127.0.0.1:2070\n2     127.0.0.1:2071  yes\n(2 nodes, answered by node 2)\n"
        );
        let document = parsed(&members);
        assert_eq!(document["nodes"][1], json!({ "id": 2, "address": "127.0.0.1:2071", "answering": true }));
        assert_eq!(document["nodes"][0]["answering"], json!(false));
        assert_eq!(document["served_by"], json!(2));
        assert_eq!(text(&members, Format::Raw), "1\t127.0.0.1:2070\t0\n2\t127.0.0.1:2071\t1\n");
        assert_eq!(text(&Outcome::Timing(true), Format::Table), "timing on\n");
        assert_eq!(parsed(&Outcome::Timing(false)), json!({ "timing": false }));
        assert_eq!(text(&Outcome::Timing(true), Format::Raw), "");
        let elapsed = Duration::from_micros(1234);
        assert_eq!(render_latency(elapsed, Format::Table), (b"(1.23 ms)\n".to_vec(), Stream::Stdout));
        assert_eq!(render_latency(elapsed, Format::Json).1, Stream::Stderr);
        assert_eq!(render_latency(elapsed, Format::Raw).1, Stream::Stderr);
    }

    #[test]
    fn errors_go_to_the_right_stream() {
        let error = ShellError::invalid("set: nx and xx exclude each other");
        let (bytes, stream) = render_error(&error, Format::Json);
        assert_eq!(stream, Stream::Stdout);
        let document: Value = serde_json::from_slice(&bytes).expect("valid JSON");
        assert_eq!(
            document,
            json!({ "error": { "code": "InvalidInput", "message": "set: nx and xx exclude each other" } })
        );
        let (bytes, stream) = render_error(&error, Format::Table);
        assert_eq!(stream, Stream::Stderr);
        assert_eq!(bytes, b"error: set: nx and xx exclude each other (InvalidInput)\n");
    }

    #[test]
    fn dates() {
        assert_eq!(unix_ms_text(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(unix_ms_text(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(unix_ms_text(1_732_580_000_123), "2024-11-26T00:13:20.123Z");
        assert_eq!(unix_ms_text(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn values_shown_in_tables_lex_back() {
        for value in ["plain", "two words", "quote\"d", "tab\t", "é", "back\\slash"] {
            let shown = value_text(value.as_bytes());
            let statements = crate::lex::split(&format!("set k {shown}")).expect("lexes");
            assert_eq!(statements[0].words[2].bytes, value.as_bytes(), "{shown}");
        }
    }
}
