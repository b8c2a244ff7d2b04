//! The Wing–Gong search for one key, memoized as in Lowe's and Porcupine's checkers.
//!
//! Ops are entries in a doubly linked list of calls and returns in time order ("dancing
//! links": lifting an op unlinks both its entries; backtracking relinks them in reverse
//! order, which restores the list exactly). From the head, the search linearizes the
//! first call that applies to the current value, and backtracks on reaching the return of
//! an op it has not linearized.
//!
//! A configuration is (required ops linearized, unknown ops linearized, value). Unknown
//! ops never block anything (their return is at infinity) and may always be left out, so a
//! configuration that failed also rules out every configuration with the same required
//! set and value and *more* unknown ops used: whatever the latter could still do, the
//! former could too. The memo keeps, per (required set, value), the minimal unknown sets
//! explored, and prunes any configuration that contains one.

use std::collections::HashMap;

use super::{Action, RegOp};

/// How far the search got before every branch died: evidence for the report.
#[derive(Debug, Clone)]
pub(super) struct Furthest {
    /// Ops linearized on the deepest branch.
    pub depth: usize,
    /// The op whose return was reached without being able to linearize it.
    pub blocked: usize,
    /// The register value at that point.
    pub state: u32,
    /// The last few ops linearized on that branch, oldest first.
    pub recent: Vec<usize>,
}

/// How many linearized ops a violation quotes as context.
const RECENT_MAX: usize = 4;

#[derive(Debug)]
pub(super) enum End {
    Linearizable,
    NotLinearizable(Furthest),
    Bound,
}

#[derive(Debug)]
pub(super) struct SearchResult {
    pub end: End,
    /// Configurations explored.
    pub states: usize,
}

/// Marks the end of a linked list.
const NIL: usize = usize::MAX;
/// Node 0 is the list head; nodes `1..` are the entries in time order, and `call_node[i]`
/// and `return_node[i]` say where op `i`'s two entries are.
const HEAD: usize = 0;

/// A set of ops as bits.
type Bits = Vec<u64>;

pub(super) struct Search<'a> {
    ops: &'a [RegOp],
    next: Vec<usize>,
    prev: Vec<usize>,
    /// For each node: the op it belongs to and whether it is the call.
    node_op: Vec<(usize, bool)>,
    call_node: Vec<usize>,
    return_node: Vec<usize>,
    /// For an unknown op, the latest-invoked earlier unknown op with the same action.
    /// Such twins are interchangeable (both may take effect any time after their invoke,
    /// or never), so a twin is only linearized after every earlier one: this prunes the
    /// 2^k orders of k identical timed-out writes down to k + 1 choices.
    twin_before: Vec<Option<usize>>,
    /// Each op's bit: in `required` (ok ops) or `unknown`, at the given index. Required
    /// ops are numbered in invoke order so the linearized ones form a dense prefix.
    slot: Vec<(bool, usize)>,
    required: Bits,
    unknown: Bits,
    /// (required window, value) -> minimal unknown sets explored from there.
    seen: HashMap<(usize, Bits, u32), Vec<Bits>>,
    states: usize,
    /// Linearized ops with the register value before each.
    stack: Vec<(usize, u32)>,
    state: u32,
    states_max: usize,
    furthest: Option<Furthest>,
}

impl<'a> Search<'a> {
    pub fn new(ops: &'a [RegOp], initial: u32, states_max: usize) -> Self {
        // Calls sort before returns at equal times: touching intervals count as concurrent.
        let mut entries: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            entries.push((op.invoke, false, i));
            entries.push((op.complete, true, i));
        }
        entries.sort_unstable();
        let nodes = entries.len() + 1;
        let (slot, required, unknown) = slots(ops);
        let mut search = Search {
            ops,
            next: (1..=nodes).map(|n| if n == nodes { NIL } else { n }).collect(),
            prev: (0..nodes).map(|n| n.wrapping_sub(1)).collect(),
            node_op: vec![(0, false); nodes],
            call_node: vec![0; ops.len()],
            return_node: vec![0; ops.len()],
            twin_before: vec![None; ops.len()],
            slot,
            required,
            unknown,
            seen: HashMap::new(),
            states: 0,
            stack: Vec::new(),
            state: initial,
            states_max,
            furthest: None,
        };
        search.link(&entries);
        search
    }

    /// Records where each entry sits and which earlier unknown op each unknown op twins.
    fn link(&mut self, entries: &[(u64, bool, usize)]) {
        let mut last_twin: HashMap<Action, usize> = HashMap::new();
        for (i, &(_, is_return, op)) in entries.iter().enumerate() {
            let node = i + 1;
            self.node_op[node] = (op, !is_return);
            if is_return {
                self.return_node[op] = node;
                continue;
            }
            self.call_node[op] = node;
            if !self.ops[op].required {
                self.twin_before[op] = last_twin.insert(self.ops[op].action, op);
            }
        }
    }

    pub fn run(mut self) -> SearchResult {
        let end = self.explore();
        SearchResult { end, states: self.states }
    }

    /// Scans candidates in two passes: calls of required ops first, then calls of unknown
    /// ops. Preferring required ops reaches each (required set, value) with as few unknown
    /// ops used as possible, which is what lets `remember` prune the rest.
    ///
    /// Invariant: every candidate of the current pass between `HEAD` and `node` could not
    /// be linearized next from the current configuration.
    fn explore(&mut self) -> End {
        let mut unknown_pass = false;
        let mut node = self.next[HEAD];
        loop {
            if node == NIL {
                return End::Linearizable;
            }
            let (op, is_call) = self.node_op[node];
            if is_call {
                if self.ops[op].required == unknown_pass {
                    node = self.next[node];
                    continue;
                }
                node = match self.try_linearize(op) {
                    Some(true) => {
                        unknown_pass = false;
                        self.next[HEAD]
                    }
                    Some(false) => self.next[node],
                    None => return End::Bound,
                };
                continue;
            }
            // A return whose op is not yet linearized. An unknown op's return is at
            // infinity, after every known return, so reaching it means all required ops
            // are linearized.
            if !self.ops[op].required {
                return End::Linearizable;
            }
            if !unknown_pass {
                unknown_pass = true;
                node = self.next[HEAD];
                continue;
            }
            self.note_furthest(op);
            let Some((undone, state)) = self.stack.pop() else {
                let stuck = Furthest { depth: 0, blocked: op, state: self.state, recent: vec![] };
                return End::NotLinearizable(self.furthest.take().unwrap_or(stuck));
            };
            self.state = state;
            self.set_bit(undone, false);
            self.unlift(undone);
            // Resume the pass in which `undone` was chosen, after it.
            unknown_pass = !self.ops[undone].required;
            node = self.next[self.call_node[undone]];
        }
    }

    /// Linearizes `op` next if it applies and leads somewhere new: `Some(true)` if it did,
    /// `Some(false)` if not, `None` when the state bound is exhausted. An unknown op that
    /// would not change the value is skipped: leaving it out is equivalent.
    fn try_linearize(&mut self, op: usize) -> Option<bool> {
        if let Some(twin) = self.twin_before[op]
            && !self.bit(twin)
        {
            return Some(false);
        }
        let Some(new_state) = self.ops[op].action.step(self.state) else {
            return Some(false);
        };
        if !self.ops[op].required && new_state == self.state {
            return Some(false);
        }
        self.set_bit(op, true);
        if !self.remember(new_state) {
            self.set_bit(op, false);
            return Some(false);
        }
        if self.states > self.states_max {
            return None;
        }
        self.stack.push((op, self.state));
        self.state = new_state;
        self.lift(op);
        Some(true)
    }

    /// Records the current configuration with value `state`; false if it is dominated by
    /// one already explored (same required set and value, a subset of the unknown ops).
    fn remember(&mut self, state: u32) -> bool {
        let explored = self.seen.entry(window(&self.required, state)).or_default();
        if explored.iter().any(|u| subset(u, &self.unknown)) {
            return false;
        }
        // Keep the list minimal: supersets of the new set are now redundant.
        explored.retain(|u| !subset(&self.unknown, u));
        explored.push(self.unknown.clone());
        self.states += 1;
        true
    }

    fn bits(&self, op: usize) -> (&Bits, usize) {
        let (required, i) = self.slot[op];
        (if required { &self.required } else { &self.unknown }, i)
    }

    fn bit(&self, op: usize) -> bool {
        let (bits, i) = self.bits(op);
        bits[i / 64] & (1u64 << (i % 64)) != 0
    }

    fn set_bit(&mut self, op: usize, on: bool) {
        let (required, i) = self.slot[op];
        let bits = if required { &mut self.required } else { &mut self.unknown };
        let (word, mask) = (i / 64, 1u64 << (i % 64));
        if on {
            bits[word] |= mask;
        } else {
            bits[word] &= !mask;
        }
    }

    fn lift(&mut self, op: usize) {
        for node in [self.call_node[op], self.return_node[op]] {
            let (p, n) = (self.prev[node], self.next[node]);
            self.next[p] = n;
            if n != NIL {
                self.prev[n] = p;
            }
        }
    }

    /// Exact inverse of `lift` when undone in LIFO order.
    fn unlift(&mut self, op: usize) {
        for node in [self.return_node[op], self.call_node[op]] {
            let (p, n) = (self.prev[node], self.next[node]);
            self.next[p] = node;
            if n != NIL {
                self.prev[n] = node;
            }
        }
    }

    fn note_furthest(&mut self, blocked: usize) {
        let depth = self.stack.len();
        if self.furthest.as_ref().is_some_and(|f| f.depth >= depth) {
            return;
        }
        let recent = self.stack.iter().rev().take(RECENT_MAX).rev().map(|(op, _)| *op).collect();
        self.furthest = Some(Furthest { depth, blocked, state: self.state, recent });
    }
}

/// Numbers required and unknown ops separately, each in op (invoke) order.
fn slots(ops: &[RegOp]) -> (Vec<(bool, usize)>, Bits, Bits) {
    let (mut required, mut unknown) = (0, 0);
    let slot = ops
        .iter()
        .map(|op| {
            let counter = if op.required { &mut required } else { &mut unknown };
            *counter += 1;
            (op.required, *counter - 1)
        })
        .collect();
    (slot, vec![0; usize::div_ceil(required, 64)], vec![0; usize::div_ceil(unknown, 64)])
}

/// The required set as (first word not all ones, the words from there to the last non-zero
/// one), with the value: equal keys mean equal sets, while storing only the window of
/// concurrent ops rather than the whole history.
fn window(bits: &Bits, state: u32) -> (usize, Bits, u32) {
    let lo = bits.iter().position(|w| *w != u64::MAX).unwrap_or(bits.len());
    let hi = bits.iter().rposition(|w| *w != 0).map_or(lo, |i| i + 1).max(lo);
    (lo, bits[lo..hi].to_vec(), state)
}

/// `a ⊆ b` for equal-length bitsets.
fn subset(a: &Bits, b: &Bits) -> bool {
    a.iter().zip(b).all(|(x, y)| x & !y == 0)
}
