//! A dependency graph between transactions: typed edges, Tarjan SCCs, and cycle extraction.

use std::collections::{BTreeMap, HashMap, VecDeque};

/// Edge kinds are bits so one edge can carry several and searches can take a mask.
pub type Kinds = u8;
/// Write-write: the source's append precedes the target's in a key's version order.
pub const WW: Kinds = 1;
/// Write-read: the target read the version the source wrote.
pub const WR: Kinds = 2;
/// Read-write (anti-dependency): the source read a version the target overwrote.
pub const RW: Kinds = 4;
/// Real time: the source completed before the target was invoked.
pub const RT: Kinds = 8;

/// Kinds in the order cycles prefer them: the weakest dependency that explains an edge.
const PREFERENCE: [Kinds; 4] = [WW, WR, RW, RT];

/// The name of one kind, for explanations.
pub fn kind_name(kind: Kinds) -> &'static str {
    match kind {
        WW => "ww",
        WR => "wr",
        RW => "rw",
        RT => "realtime",
        _ => "?",
    }
}

/// Why an edge exists: per kind, the first key that produced it.
#[derive(Debug, Clone, Default)]
struct Edge {
    kinds: Kinds,
    why: [Option<String>; 4],
}

/// One step of a cycle: `from` reaches the next step's node through `kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub from: usize,
    pub kind: Kinds,
    pub why: String,
}

/// Nodes are `0..n`; edges are added, then `freeze` builds adjacency for searching.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: usize,
    edges: BTreeMap<(usize, usize), Edge>,
    /// Built by `freeze`: targets with the kinds of each edge, in target order.
    adjacency: Vec<Vec<(usize, Kinds)>>,
}

/// Strongly connected components of a masked graph.
#[derive(Debug)]
pub struct Components {
    /// Component id of each node.
    pub of: Vec<usize>,
    /// Components with at least two nodes (no self-loops exist), each sorted.
    pub cyclic: Vec<Vec<usize>>,
}

impl Graph {
    pub fn new(nodes: usize) -> Self {
        Self { nodes, ..Self::default() }
    }

    /// Adds `kind` to edge `a -> b`, remembering `why` if it is the first reason of that
    /// kind. Self-edges are dropped: a transaction never depends on itself.
    pub fn add(&mut self, a: usize, b: usize, kind: Kinds, why: impl FnOnce() -> String) {
        if a == b {
            return;
        }
        let edge = self.edges.entry((a, b)).or_default();
        edge.kinds |= kind;
        let slot = &mut edge.why[kind.trailing_zeros() as usize % 4];
        if slot.is_none() {
            *slot = Some(why());
        }
    }

    /// Builds adjacency lists; call after the last `add`.
    pub fn freeze(&mut self) {
        self.adjacency = vec![Vec::new(); self.nodes];
        for (&(a, b), edge) in &self.edges {
            self.adjacency[a].push((b, edge.kinds));
        }
    }

    /// Edges carrying `kind`.
    pub fn count(&self, kind: Kinds) -> usize {
        self.edges.values().filter(|e| e.kinds & kind != 0).count()
    }

    /// Edges `a -> b` with a kind in `mask`, both ends in `scope`.
    pub fn edges_within<'a>(&'a self, mask: Kinds, scope: &'a [usize]) -> impl Iterator<Item = (usize, usize)> + 'a {
        scope.iter().flat_map(move |&a| {
            self.adjacency[a]
                .iter()
                .filter(move |(b, k)| k & mask != 0 && scope.binary_search(b).is_ok())
                .map(move |&(b, _)| (a, b))
        })
    }

    /// Tarjan's algorithm over edges with a kind in `mask`, iterative so that long
    /// dependency chains cannot overflow the stack.
    pub fn components(&self, mask: Kinds) -> Components {
        let mut t = Tarjan::new(self.nodes);
        for root in 0..self.nodes {
            if t.index[root] == UNVISITED {
                t.visit(root, &self.adjacency, mask);
            }
        }
        Components { of: t.component, cyclic: t.cyclic }
    }

    /// The cycle closed by edge `a -> b`: `b` back to `a` by a shortest path over `mask`
    /// through nodes in `scope` (sorted), or `None` if there is none. Each step is labelled
    /// with the weakest kind in `first | mask` (first edge) or `mask` that explains it.
    pub fn cycle_through(
        &self,
        (a, b): (usize, usize),
        first: Kinds,
        mask: Kinds,
        scope: &[usize],
    ) -> Option<Vec<Step>> {
        let path = self.path(b, a, mask, scope)?;
        let mut steps = vec![self.step(a, b, first)];
        for pair in path.windows(2) {
            steps.push(self.step(pair[0], pair[1], mask));
        }
        Some(steps)
    }

    /// Breadth-first search from `from` to `to`; returns the nodes `from..=to`.
    fn path(&self, from: usize, to: usize, mask: Kinds, scope: &[usize]) -> Option<Vec<usize>> {
        let mut parent: HashMap<usize, usize> = HashMap::new();
        let mut queue = VecDeque::from([from]);
        parent.insert(from, from);
        while let Some(n) = queue.pop_front() {
            if n == to {
                return Some(unwind(&parent, from, to));
            }
            for &(m, k) in &self.adjacency[n] {
                let allowed = k & mask != 0 && scope.binary_search(&m).is_ok();
                if allowed && !parent.contains_key(&m) {
                    parent.insert(m, n);
                    queue.push_back(m);
                }
            }
        }
        None
    }

    fn step(&self, a: usize, b: usize, mask: Kinds) -> Step {
        let edge = self.edges.get(&(a, b));
        let kinds = edge.map_or(0, |e| e.kinds) & mask;
        let kind = PREFERENCE.into_iter().find(|k| kinds & k != 0).unwrap_or(0);
        let why = edge.and_then(|e| e.why[kind.trailing_zeros() as usize % 4].clone()).unwrap_or_default();
        Step { from: a, kind, why }
    }
}

/// The nodes on the BFS tree path `from..=to`.
fn unwind(parent: &HashMap<usize, usize>, from: usize, to: usize) -> Vec<usize> {
    let mut path = vec![to];
    let mut n = to;
    while n != from {
        match parent.get(&n) {
            Some(&p) => n = p,
            None => break,
        }
        path.push(n);
    }
    path.reverse();
    path
}

const UNVISITED: usize = usize::MAX;

struct Tarjan {
    counter: usize,
    index: Vec<usize>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    component: Vec<usize>,
    components: usize,
    cyclic: Vec<Vec<usize>>,
}

impl Tarjan {
    fn new(n: usize) -> Self {
        Self {
            counter: 0,
            index: vec![UNVISITED; n],
            low: vec![0; n],
            on_stack: vec![false; n],
            stack: Vec::new(),
            component: vec![UNVISITED; n],
            components: 0,
            cyclic: Vec::new(),
        }
    }

    fn open(&mut self, v: usize) {
        self.index[v] = self.counter;
        self.low[v] = self.counter;
        self.counter += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
    }

    /// Depth-first from `root` with an explicit stack of (node, next edge position).
    fn visit(&mut self, root: usize, adjacency: &[Vec<(usize, Kinds)>], mask: Kinds) {
        let mut calls: Vec<(usize, usize)> = vec![(root, 0)];
        self.open(root);
        while let Some(&(v, pos)) = calls.last() {
            if let Some(&(w, kinds)) = adjacency[v].get(pos) {
                if let Some(top) = calls.last_mut() {
                    top.1 += 1;
                }
                if kinds & mask == 0 {
                    continue;
                }
                if self.index[w] == UNVISITED {
                    self.open(w);
                    calls.push((w, 0));
                } else if self.on_stack[w] {
                    self.low[v] = self.low[v].min(self.index[w]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(u, _)) = calls.last() {
                self.low[u] = self.low[u].min(self.low[v]);
            }
            if self.low[v] == self.index[v] {
                self.close(v);
            }
        }
    }

    /// Pops the component rooted at `v`.
    fn close(&mut self, v: usize) {
        let mut members = Vec::new();
        while let Some(w) = self.stack.pop() {
            self.on_stack[w] = false;
            self.component[w] = self.components;
            members.push(w);
            if w == v {
                break;
            }
        }
        self.components += 1;
        if members.len() > 1 {
            members.sort_unstable();
            self.cyclic.push(members);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(n: usize, edges: &[(usize, usize, Kinds)]) -> Graph {
        let mut g = Graph::new(n);
        for &(a, b, k) in edges {
            g.add(a, b, k, || format!("{a}->{b}"));
        }
        g.freeze();
        g
    }

    #[test]
    fn finds_components_and_cycles_by_mask() {
        let g = graph(5, &[(0, 1, WW), (1, 2, WR), (2, 0, RW), (3, 4, WW), (4, 3, RT)]);
        let all = g.components(WW | WR | RW | RT);
        assert_eq!(all.cyclic, vec![vec![0, 1, 2], vec![3, 4]]);
        assert!(g.components(WW | WR).cyclic.is_empty());
        let scope = &all.cyclic[0];
        let cycle = g.cycle_through((2, 0), RW, WW | WR, scope).expect("a cycle");
        let kinds: Vec<_> = cycle.iter().map(|s| (s.from, s.kind)).collect();
        assert_eq!(kinds, vec![(2, RW), (0, WW), (1, WR)]);
        assert_eq!(g.cycle_through((2, 0), RW, WW, scope), None);
    }

    #[test]
    fn deep_chains_do_not_overflow() {
        let n = 200_000;
        let mut edges: Vec<_> = (0..n - 1).map(|i| (i, i + 1, WW)).collect();
        edges.push((n - 1, 0, WW));
        let g = graph(n, &edges);
        assert_eq!(g.components(WW).cyclic.len(), 1);
    }
}
