//! Transaction anomalies on a list-append workload, after Elle (Kingsbury & Alvaro, 2020).
//!
//! Each operation is `{"f": "txn", "value": [mop, ...]}` where a micro-op is
//! `["append", key, v]` or `["r", key, null]`; the `ok` carries the same list with each read
//! filled in as the list it saw, `["r", key, [v1, v2, ...]]`. Every appended value is unique
//! per key, so a read names exactly which appends it saw and in what order.
//!
//! Inference, and why it is sound:
//! - Lists only grow, so every read of a key is a prefix of the key's final list; the
//!   longest read therefore is the version order of everything observed, and two reads that
//!   are not prefixes of one another are themselves an anomaly.
//! - A committed append that no read saw lies after the longest read.
//! - A failed transaction's appends never happened; an unknown (`info`) transaction's
//!   appends happened exactly when some read saw one of them, otherwise it is left out.
//!
//! Dependencies (Adya): `ww` from the appender of each version to the appender of the next,
//! `wr` from the appender of a read's last element to the reader, `rw` from a reader to the
//! appender of the first version it did not see, and `realtime` from a transaction to each
//! one invoked after it completed. Cycles are classified as G0 (only ww), G1c (ww and wr),
//! G-single (exactly one rw), G2 (two or more rw), and realtime (needs realtime edges: not
//! strictly serializable). G1a (read of a failed append) and G1b (read of an intermediate
//! append) are found directly from the reads.

mod graph;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;

use crate::history::{History, Operation, Outcome};
use crate::report::{Verdict, Violation, ViolationKind, impl_report, verdict_of};
use graph::{Graph, RT, RW, Step, WR, WW, kind_name};

/// Options for [`check_append`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOptions {
    /// Add real-time edges, checking strict serializability rather than serializability.
    pub realtime: bool,
    /// In each cyclic component, how many rw edges to try closing with ww/wr paths while
    /// looking for a G-single before settling for a G2 cycle. Bounds the search at
    /// O(edges × this) per component.
    pub rw_edges_tried_max: usize,
}

impl Default for AppendOptions {
    fn default() -> Self {
        Self { realtime: true, rw_edges_tried_max: 256 }
    }
}

/// The outcome of [`check_append`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AppendReport {
    /// Valid when no anomaly was found.
    pub verdict: Verdict,
    /// Transactions that completed `ok`.
    pub txns_ok: usize,
    /// Transactions that failed.
    pub txns_failed: usize,
    /// Transactions with unknown outcome.
    pub txns_unknown: usize,
    /// Keys appended or read.
    pub keys: usize,
    /// Edges by kind.
    pub edges_ww: usize,
    pub edges_wr: usize,
    pub edges_rw: usize,
    pub edges_realtime: usize,
    /// Acknowledged appends missing from a later read (with `realtime` only).
    pub appends_lost: usize,
    /// Anomalies, each with the transactions involved.
    pub violations: Vec<Violation>,
}

impl AppendReport {
    fn counts(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("txns ok", self.txns_ok),
            ("failed", self.txns_failed),
            ("unknown", self.txns_unknown),
            ("keys", self.keys),
            ("ww", self.edges_ww),
            ("wr", self.edges_wr),
            ("rw", self.edges_rw),
            ("realtime", self.edges_realtime),
            ("appends lost", self.appends_lost),
        ]
    }
}

impl_report!(AppendReport, "append");

/// Checks a list-append history for the anomalies listed in the module docs.
pub fn check_append(history: &History, options: &AppendOptions) -> AppendReport {
    let mut report = AppendReport::default();
    match history.operations() {
        Ok(ops) => analyse(&ops, options, &mut report),
        Err(e) => report.violations.push(Violation::unpaired(&e)),
    }
    report.verdict = verdict_of(&report.violations);
    report
}

fn analyse(ops: &[Operation], options: &AppendOptions, report: &mut AppendReport) {
    let mut a = Analysis::new(ops);
    for t in &a.txns {
        match t.outcome {
            Outcome::Ok => report.txns_ok += 1,
            Outcome::Fail => report.txns_failed += 1,
            Outcome::Unknown => report.txns_unknown += 1,
        }
    }
    a.index();
    a.check_reads();
    if options.realtime {
        report.appends_lost = a.lost_appends();
    }
    let graph = a.graph(options.realtime);
    report.keys = a.keys.len();
    report.edges_ww = graph.count(WW);
    report.edges_wr = graph.count(WR);
    report.edges_rw = graph.count(RW);
    report.edges_realtime = graph.count(RT);
    a.cycles(&graph, options);
    report.violations.append(&mut a.violations);
}

/// One micro-operation. Keys are strings (other JSON keys are taken by their JSON text);
/// elements are kept as their compact JSON text, which identifies them exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mop {
    Append {
        key: String,
        elem: String,
    },
    /// `None` when the read's result is unknown (invoke, fail or info).
    Read {
        key: String,
        elems: Option<Vec<String>>,
    },
}

#[derive(Debug, Clone)]
struct Txn {
    /// Index into the history's operations.
    op: usize,
    outcome: Outcome,
    /// Emptied by `Analysis::index` once indexed by key.
    mops: Vec<Mop>,
}

/// What the history says about one key.
#[derive(Debug, Default)]
struct KeyInfo {
    /// Element -> the transaction that appended it.
    writer: HashMap<String, usize>,
    /// Every append as (transaction, element), in history order.
    appends: Vec<(usize, String)>,
    /// Completed reads as (reader, list), in history order.
    reads: Vec<(usize, Vec<String>)>,
    /// The version order, when the reads agree on one.
    order: Option<Vec<String>>,
}

struct Analysis<'a> {
    ops: &'a [Operation],
    txns: Vec<Txn>,
    keys: BTreeMap<String, KeyInfo>,
    /// (transaction, key) -> the transaction's last append to that key.
    last_append: HashMap<(usize, String), String>,
    /// Transactions known to have taken effect: `ok`, or unknown with an observed append.
    committed: Vec<bool>,
    violations: Vec<Violation>,
}

impl<'a> Analysis<'a> {
    fn new(ops: &'a [Operation]) -> Self {
        let mut violations = Vec::new();
        let mut txns = Vec::new();
        for (i, op) in ops.iter().enumerate().filter(|(_, op)| op.f == "txn") {
            match parse_txn(op) {
                Ok(mops) => txns.push(Txn { op: i, outcome: op.outcome, mops }),
                Err(reason) => violations.push(Violation::malformed(op, reason)),
            }
        }
        let committed = txns.iter().map(|t| t.outcome == Outcome::Ok).collect();
        let keys = BTreeMap::new();
        Self { ops, txns, keys, last_append: HashMap::new(), committed, violations }
    }

    fn op(&self, txn: usize) -> &Operation {
        &self.ops[self.txns[txn].op]
    }

    /// Transaction label for explanations: its invoke event.
    fn label(&self, txn: usize) -> String {
        format!("T{}", self.op(txn).invoke_event)
    }

    /// Records writers, final appends and completed reads per key. Consumes each txn's
    /// micro-ops: everything later works from the per-key index.
    fn index(&mut self) {
        for t in 0..self.txns.len() {
            let ok = self.txns[t].outcome == Outcome::Ok;
            for mop in std::mem::take(&mut self.txns[t].mops) {
                match mop {
                    Mop::Append { key, elem } => self.index_append(t, key, elem),
                    Mop::Read { key, elems } => {
                        let reads = &mut self.keys.entry(key).or_default().reads;
                        if let (true, Some(list)) = (ok, elems) {
                            reads.push((t, list));
                        }
                    }
                }
            }
        }
    }

    /// Values are unique per key by the workload's contract; a repeat makes every
    /// inference about that value ambiguous, so it is flagged and the repeat ignored.
    fn index_append(&mut self, t: usize, key: String, elem: String) {
        let info = self.keys.entry(key.clone()).or_default();
        if let Some(&prior) = info.writer.get(&elem) {
            let why = format!("key {key:?}: {elem} appended twice; values must be unique");
            self.flag(ViolationKind::Malformed, why, &[t, prior]);
            return;
        }
        info.writer.insert(elem.clone(), t);
        info.appends.push((t, elem.clone()));
        self.last_append.insert((t, key), elem);
    }

    /// Checks each read against the appends (G1a, G1b, unknown values, duplicates) and
    /// infers each key's version order.
    fn check_reads(&mut self) {
        let keys = std::mem::take(&mut self.keys);
        let mut checked = BTreeMap::new();
        for (key, mut info) in keys {
            for (reader, list) in &info.reads {
                self.check_read(&key, &info, *reader, list);
            }
            info.order = self.version_order(&key, &info);
            checked.insert(key, info);
        }
        self.keys = checked;
    }

    fn check_read(&mut self, key: &str, info: &KeyInfo, reader: usize, list: &[String]) {
        let mut seen = HashSet::new();
        for elem in list {
            if !seen.insert(elem) {
                let why = format!("key {key:?}: {} read {elem} twice in {}", self.label(reader), show(list));
                self.flag(ViolationKind::DuplicateElements, why, &[reader]);
            }
            match info.writer.get(elem) {
                None => {
                    let why = format!("key {key:?}: {} read {elem}, which no txn appended", self.label(reader));
                    self.flag(ViolationKind::UnknownValue, why, &[reader]);
                }
                Some(&w) if self.txns[w].outcome == Outcome::Fail => {
                    let why = format!(
                        "key {key:?}: {} read {elem}, appended by failed {}",
                        self.label(reader),
                        self.label(w)
                    );
                    self.flag(ViolationKind::G1a, why, &[reader, w]);
                }
                Some(&w) => self.committed[w] = true,
            }
        }
        self.check_intermediate(key, info, reader, list);
    }

    /// G1b: the read ends at an append that its transaction followed with another append
    /// to the same key, so the reader saw that transaction half done.
    fn check_intermediate(&mut self, key: &str, info: &KeyInfo, reader: usize, list: &[String]) {
        let Some(last) = list.last() else { return };
        let Some(&w) = info.writer.get(last) else {
            return;
        };
        let final_elem = self.last_append.get(&(w, key.to_string()));
        if w == reader || self.txns[w].outcome == Outcome::Fail || final_elem == Some(last) {
            return;
        }
        let why = format!(
            "key {key:?}: {} read {}, ending at {last}, an intermediate append of {} \
             (whose final append is {})",
            self.label(reader),
            show(list),
            self.label(w),
            final_elem.map_or("?", String::as_str)
        );
        self.flag(ViolationKind::G1b, why, &[reader, w]);
    }

    /// The longest read, if every read is a prefix of it.
    fn version_order(&mut self, key: &str, info: &KeyInfo) -> Option<Vec<String>> {
        let (long_reader, longest) = info.reads.iter().max_by_key(|(_, list)| list.len())?;
        for (reader, list) in &info.reads {
            if !longest.starts_with(list) {
                let why = format!(
                    "key {key:?}: {} read {} but {} read {}; one must be a prefix \
                     of the other",
                    self.label(*reader),
                    show(list),
                    self.label(*long_reader),
                    show(longest)
                );
                self.flag(ViolationKind::IncompatibleOrder, why, &[*reader, *long_reader]);
                return None;
            }
        }
        Some(longest.clone())
    }

    /// Flags acknowledged appends missing from the last read of their key, when that read
    /// began after they were acknowledged: lists only grow, so the append was lost. (An
    /// earlier read missing it is a stale read, which the realtime cycles report.)
    fn lost_appends(&mut self) -> usize {
        let mut lost = Vec::new();
        for (key, info) in &self.keys {
            let last = info.reads.iter().max_by_key(|(t, _)| self.op(*t).invoke_time);
            let Some((reader, list)) = last else { continue };
            let seen: HashSet<&String> = list.iter().collect();
            let read_at = self.op(*reader).invoke_time;
            for (t, elem) in &info.appends {
                let acked = self.txns[*t].outcome == Outcome::Ok;
                if acked && self.op(*t).complete_time < read_at && !seen.contains(elem) {
                    lost.push((key.clone(), elem.clone(), *t, *reader, show(list)));
                }
            }
        }
        for (key, elem, t, reader, list) in &lost {
            let why = format!(
                "key {key:?}: {} appended {elem} and completed at {} ns, but {} invoked at {} ns \
                 read {list}",
                self.label(*t),
                self.op(*t).complete_time,
                self.label(*reader),
                self.op(*reader).invoke_time,
            );
            self.flag(ViolationKind::LostAppend, why, &[*t, *reader]);
        }
        lost.len()
    }

    fn flag(&mut self, kind: ViolationKind, why: String, txns: &[usize]) {
        let refs = txns.iter().map(|&t| self.op(t).op_ref()).collect();
        self.violations.push(Violation::new(kind, why, refs));
    }

    /// The dependency graph over transactions; only committed ones get edges.
    fn graph(&self, realtime: bool) -> Graph {
        let mut g = Graph::new(self.txns.len());
        for (key, info) in &self.keys {
            if let Some(order) = &info.order {
                self.key_edges(&mut g, key, info, order);
            }
        }
        if realtime {
            self.realtime_edges(&mut g);
        }
        g.freeze();
        g
    }

    fn key_edges(&self, g: &mut Graph, key: &str, info: &KeyInfo, order: &[String]) {
        let writer = |elem: &String| info.writer.get(elem).copied().filter(|&w| self.committed[w]);
        let versions: Vec<Option<usize>> = order.iter().map(writer).collect();
        for pair in versions.windows(2) {
            if let [Some(a), Some(b)] = *pair {
                g.add(a, b, WW, || format!("ww {key}"));
            }
        }
        // Committed appends no read saw come after the whole observed order.
        let in_order: HashSet<&String> = order.iter().collect();
        let unseen: BTreeSet<usize> = info
            .appends
            .iter()
            .filter(|(t, elem)| self.committed[*t] && !in_order.contains(elem))
            .map(|(t, _)| *t)
            .collect();
        if let Some(Some(last)) = versions.last() {
            unseen.iter().for_each(|&u| g.add(*last, u, WW, || format!("ww {key}")));
        }
        for (reader, list) in &info.reads {
            let seen = list.len();
            if let Some(Some(w)) = seen.checked_sub(1).map(|i| versions[i]) {
                g.add(w, *reader, WR, || format!("wr {key}"));
            }
            match versions.get(seen) {
                Some(Some(next)) => g.add(*reader, *next, RW, || format!("rw {key}")),
                Some(None) => {}
                None => unseen.iter().for_each(|&u| g.add(*reader, u, RW, || format!("rw {key}"))),
            }
        }
    }

    /// Edges from each transaction to those invoked after it completed, reduced to the
    /// frontier: a transaction already implied through a later-completing one is skipped.
    /// Invariant: `frontier` holds the completed transactions not known to precede another
    /// completed one.
    fn realtime_edges(&self, g: &mut Graph) {
        let mut events: Vec<(u64, bool, usize)> = Vec::new();
        for t in (0..self.txns.len()).filter(|&t| self.committed[t]) {
            let op = self.op(t);
            // At equal times the invoke sorts first: touching intervals are concurrent.
            events.push((op.invoke_time, false, t));
            if op.outcome == Outcome::Ok {
                events.push((op.complete_time, true, t));
            }
        }
        events.sort_unstable();
        let mut frontier: BTreeSet<usize> = BTreeSet::new();
        let mut preceded_by: HashMap<usize, Vec<usize>> = HashMap::new();
        for (_, is_complete, t) in events {
            if is_complete {
                for p in preceded_by.remove(&t).unwrap_or_default() {
                    frontier.remove(&p);
                }
                frontier.insert(t);
            } else {
                frontier.iter().for_each(|&p| g.add(p, t, RT, || "realtime".to_string()));
                preceded_by.insert(t, frontier.iter().copied().collect());
            }
        }
    }

    /// Finds and classifies cycles, one per cyclic component per class.
    fn cycles(&mut self, g: &Graph, options: &AppendOptions) {
        for scc in g.components(WW).cyclic {
            if let Some((a, b)) = g.edges_within(WW, &scc).next() {
                self.report_cycle(g.cycle_through((a, b), WW, WW, &scc));
            }
        }
        for scc in g.components(WW | WR).cyclic {
            if let Some((a, b)) = g.edges_within(WR, &scc).next() {
                self.report_cycle(g.cycle_through((a, b), WR, WW | WR, &scc));
            }
        }
        let data = g.components(WW | WR | RW);
        for scc in &data.cyclic {
            self.anti_dependency_cycle(g, scc, options.rw_edges_tried_max);
        }
        if options.realtime {
            for scc in g.components(WW | WR | RW | RT).cyclic {
                // A realtime edge between different data components is needed by any cycle
                // through it: without it, the data graph alone has no such cycle.
                let mut needed = g.edges_within(RT, &scc).filter(|(a, b)| data.of[*a] != data.of[*b]);
                if let Some(edge) = needed.next() {
                    self.report_cycle(g.cycle_through(edge, RT, WW | WR | RW | RT, &scc));
                }
            }
        }
    }

    /// Reports a G-single if some rw edge closes with ww/wr edges alone, else a G2.
    fn anti_dependency_cycle(&mut self, g: &Graph, scc: &[usize], tries: usize) {
        let rw_edges: Vec<(usize, usize)> = g.edges_within(RW, scc).collect();
        for &edge in rw_edges.iter().take(tries) {
            if let Some(cycle) = g.cycle_through(edge, RW, WW | WR, scc) {
                self.report_cycle(Some(cycle));
                return;
            }
        }
        if let Some(&edge) = rw_edges.first() {
            self.report_cycle(g.cycle_through(edge, RW, WW | WR | RW, scc));
        }
    }

    fn report_cycle(&mut self, cycle: Option<Vec<Step>>) {
        let Some(cycle) = cycle else { return };
        let count = |kind| cycle.iter().filter(|s| s.kind == kind).count();
        let kind = match (count(RT), count(RW), count(WR)) {
            (1.., _, _) => ViolationKind::RealTime,
            (0, 2.., _) => ViolationKind::G2,
            (0, 1, _) => ViolationKind::GSingle,
            (0, 0, 1..) => ViolationKind::G1c,
            (0, 0, 0) => ViolationKind::G0,
        };
        let mut text = String::new();
        for step in &cycle {
            text.push_str(&format!("{} -{}-> ", self.label(step.from), step_name(step)));
        }
        if let Some(first) = cycle.first() {
            text.push_str(&self.label(first.from));
        }
        let txns: Vec<usize> = cycle.iter().map(|s| s.from).collect();
        self.flag(kind, format!("cycle {text}"), &txns);
    }
}

/// A read's list as JSON, e.g. `[1, 2]`.
fn show(list: &[String]) -> String {
    format!("[{}]", list.join(", "))
}

fn step_name(step: &Step) -> String {
    if step.why.is_empty() { kind_name(step.kind).to_string() } else { step.why.clone() }
}

/// The micro-ops of a `txn` operation: the results for `ok`, the request otherwise.
fn parse_txn(op: &Operation) -> Result<Vec<Mop>, String> {
    let Some(Value::Array(mops)) = op.field("value") else {
        return Err("`value` should be a list of micro-ops".to_string());
    };
    mops.iter().map(parse_mop).collect()
}

fn parse_mop(mop: &Value) -> Result<Mop, String> {
    let bad = || format!("micro-op should be [\"append\"|\"r\", key, value], found {mop}");
    let Some([f, key, v]) = mop.as_array().map(Vec::as_slice) else {
        return Err(bad());
    };
    let key = match key {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match (f.as_str(), v) {
        (Some("append"), elem) => Ok(Mop::Append { key, elem: elem.to_string() }),
        (Some("r"), Value::Null) => Ok(Mop::Read { key, elems: None }),
        (Some("r"), Value::Array(list)) => {
            let elems = Some(list.iter().map(Value::to_string).collect());
            Ok(Mop::Read { key, elems })
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests;
