//! Table, JSON and raw rendering of the lock and sequence outcomes.

use std::fmt::Write as _;

use kahuna_client::{LockHolder, SequenceInfo};
use serde_json::{Value, json};

use super::{grid, unix_ms_text};
use crate::exec::Coordination;

fn holder_text(holder: &LockHolder) -> String {
    format!("owner {}, token {}, expires {}", holder.owner, holder.token, unix_ms_text(holder.expires_at_ms))
}

fn optional(value: Option<i64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn sequence_rows(s: &SequenceInfo) -> Vec<Vec<String>> {
    vec![
        vec!["name".to_owned(), s.name.clone()],
        vec!["start".to_owned(), s.start.to_string()],
        vec!["increment".to_owned(), s.increment.to_string()],
        vec!["max".to_owned(), s.max.map_or_else(|| "none".to_owned(), |m| m.to_string())],
        vec!["allocated".to_owned(), s.allocated.to_string()],
        vec!["last".to_owned(), optional(s.last)],
        vec!["next".to_owned(), s.next.map_or_else(|| "(exhausted)".to_owned(), |n| n.to_string())],
    ]
}

/// The table rendering.
pub(super) fn table(outcome: &Coordination) -> String {
    match outcome {
        Coordination::Lock { result, .. } => match (&result.holder, result.acquired) {
            (Some(h), true) => format!("acquired: {} (node {})\n", holder_text(h), result.served_by),
            (Some(h), false) => format!("(not acquired: held by {}, node {})\n", holder_text(h), result.served_by),
            (None, _) => format!("(not acquired, node {})\n", result.served_by),
        },
        Coordination::Unlock { result, .. } if result.released => format!("released (node {})\n", result.served_by),
        Coordination::Unlock { result, .. } => {
            format!("(not released: the lock was not held any more, node {})\n", result.served_by)
        }
        Coordination::ExtendLock { result, .. } => match (&result.holder, result.extended) {
            (Some(h), true) => format!("extended: {} (node {})\n", holder_text(h), result.served_by),
            _ => format!("(not extended: the lease already ended; lock it again, node {})\n", result.served_by),
        },
        Coordination::GetLock { info, .. } => match &info.holder {
            Some(h) => {
                let rows = vec![
                    vec!["owner".to_owned(), h.owner.clone()],
                    vec!["token".to_owned(), h.token.to_string()],
                    vec!["expires".to_owned(), unix_ms_text(h.expires_at_ms)],
                    vec!["last_token".to_owned(), info.last_token.to_string()],
                    vec!["served_by".to_owned(), format!("node {}", info.served_by)],
                ];
                grid(&[], rows)
            }
            None => format!("(free; last token {}, node {})\n", info.last_token, info.served_by),
        },
        Coordination::CreateSequence(result) => {
            let verb = if result.created { "created" } else { "(exists, unchanged)" };
            let mut out = format!("{verb} (node {})\n", result.served_by);
            out.push_str(&grid(&[], sequence_rows(&result.sequence)));
            out
        }
        Coordination::NextSequence { result, .. } => {
            let replayed = if result.replayed { "replayed, " } else { "" };
            format!("{} ({replayed}node {})\n", result.value, result.served_by)
        }
        Coordination::ReserveSequence { result: r, .. } => {
            let replayed = if r.replayed { "replayed, " } else { "" };
            let mut out = format!("{}..{} ({} values", r.first, r.last, r.count);
            if r.increment != 1 {
                let _ = write!(out, ", increment {}", r.increment);
            }
            let _ = writeln!(out, ", {replayed}node {})", r.served_by);
            out
        }
        Coordination::GetSequence { result, .. } => match &result.sequence {
            Some(s) => grid(&[], sequence_rows(s)),
            None => "(nil)\n".to_owned(),
        },
        Coordination::DeleteSequence { result, .. } if result.deleted => {
            format!("deleted (node {})\n", result.served_by)
        }
        Coordination::DeleteSequence { result, .. } => {
            format!("(not deleted: no such sequence, node {})\n", result.served_by)
        }
    }
}

fn holder_json(holder: &Option<LockHolder>) -> Value {
    holder
        .as_ref()
        .map_or(Value::Null, |h| json!({ "owner": h.owner, "token": h.token, "expires_at_ms": h.expires_at_ms }))
}

fn sequence_json(s: &SequenceInfo) -> Value {
    json!({
        "name": s.name,
        "start": s.start,
        "increment": s.increment,
        "max": s.max,
        "allocated": s.allocated,
        "last": s.last,
        "next": s.next,
    })
}

/// The JSON rendering.
pub(super) fn json(outcome: &Coordination) -> Value {
    match outcome {
        Coordination::Lock { name, result } => json!({
            "name": name,
            "acquired": result.acquired,
            "holder": holder_json(&result.holder),
            "commit_ts": result.commit_ts,
            "served_by": result.served_by,
        }),
        Coordination::Unlock { name, result } => json!({
            "name": name,
            "released": result.released,
            "commit_ts": result.commit_ts,
            "served_by": result.served_by,
        }),
        Coordination::ExtendLock { name, result } => json!({
            "name": name,
            "extended": result.extended,
            "holder": holder_json(&result.holder),
            "commit_ts": result.commit_ts,
            "served_by": result.served_by,
        }),
        Coordination::GetLock { name, info } => json!({
            "name": name,
            "held": info.holder.is_some(),
            "holder": holder_json(&info.holder),
            "last_token": info.last_token,
            "served_by": info.served_by,
        }),
        Coordination::CreateSequence(result) => json!({
            "created": result.created,
            "sequence": sequence_json(&result.sequence),
            "served_by": result.served_by,
        }),
        Coordination::NextSequence { name, result } => json!({
            "name": name,
            "value": result.value,
            "replayed": result.replayed,
            "served_by": result.served_by,
        }),
        Coordination::ReserveSequence { name, result: r } => json!({
            "name": name,
            "first": r.first,
            "last": r.last,
            "count": r.count,
            "increment": r.increment,
            "replayed": r.replayed,
            "served_by": r.served_by,
        }),
        Coordination::GetSequence { name, result } => json!({
            "name": name,
            "found": result.sequence.is_some(),
            "sequence": result.sequence.as_ref().map(sequence_json),
            "served_by": result.served_by,
        }),
        Coordination::DeleteSequence { name, result } => {
            json!({ "name": name, "deleted": result.deleted, "served_by": result.served_by })
        }
    }
}

/// The raw rendering: a lock's token (nothing when not acquired), 1/0 for unlock,
/// extend, create and delete, values for sequences.
pub(super) fn raw(outcome: &Coordination) -> Vec<u8> {
    let flag = |yes: bool| if yes { "1\n".to_owned() } else { "0\n".to_owned() };
    let text = match outcome {
        Coordination::Lock { result, .. } => result.token().map_or_else(String::new, |t| format!("{t}\n")),
        Coordination::Unlock { result, .. } => flag(result.released),
        Coordination::ExtendLock { result, .. } => flag(result.extended),
        Coordination::GetLock { info, .. } => info
            .holder
            .as_ref()
            .map_or_else(String::new, |h| format!("{}\t{}\t{}\n", h.owner, h.token, h.expires_at_ms)),
        Coordination::CreateSequence(result) => flag(result.created),
        Coordination::NextSequence { result, .. } => format!("{}\n", result.value),
        Coordination::ReserveSequence { result, .. } => result.values().map(|v| format!("{v}\n")).collect(),
        Coordination::GetSequence { result, .. } => result
            .sequence
            .as_ref()
            .map_or_else(String::new, |s| format!("{}\t{}\t{}\n", s.name, optional(s.last), optional(s.next))),
        Coordination::DeleteSequence { result, .. } => flag(result.deleted),
    };
    text.into_bytes()
}
