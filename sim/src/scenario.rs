//! Scripted scenarios: one fixed sequence of faults instead of the nemesis's random ones,
//! each replaying how a bug was found, with what it measured for a test to assert on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kahuna_kernel::{
    Consistency, Durability, NodeId, PartitionRequest, PartitionResponse, PointRead, SetArgs, SimDisk, WriteOp,
};
use turmoil::Sim;

use crate::cluster::{SimError, new_sim};
use crate::net::{self, ExecRequest, NODE_PORT, host_name};
use crate::node::{self, Board, NodeSpec, SimClock};

/// The simulated host of the writing client.
const WRITER_HOST: &str = "writer";
/// The simulated host of the client a script sends single requests from.
const ASKER_HOST: &str = "asker";
/// Pause of the writing client between two writes.
const WRITE_PAUSE: Duration = Duration::from_millis(5);
/// How long the writing client waits for one write.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait for a leader before a scenario gives up on it.
const LEADER_WAIT_MAX: Duration = Duration::from_secs(20);
/// Longest simulated time of one scenario.
const SCENARIO_MAX: Duration = Duration::from_secs(60);

/// What [`isolate_leader_before_stale_preferred`] measured.
#[derive(Debug, Clone)]
pub struct Failover {
    /// From the cut until the two connected nodes had a leader; `None` when they had none
    /// within [`LEADER_WAIT_MAX`].
    pub elected_after: Option<Duration>,
    /// What the script did and saw, one line per step, with simulated times.
    pub log: Vec<String>,
}

/// Partition 0 of a three-node cluster (its preferred leader is n1, whose election
/// timeout is the shortest) loses its leader while n1's log is behind the third node's:
/// n1 is crashed and restarted, so another node leads; under a stream of writes that
/// leader is cut off from n1 for `stale_for` (n1 misses the entries of that time), then
/// from the third node too. Measures how long n1 and the third node take to elect a
/// leader, though they reach each other all along. `election_timeouts_ms` are the nodes'
/// fixed election timeouts (`KernelConfig::election_timeout_ms`), n1's first.
pub fn isolate_leader_before_stale_preferred(
    seed: u64,
    election_timeouts_ms: [u64; 3],
    stale_for: Duration,
) -> Result<Failover, SimError> {
    let ids: Vec<NodeId> = vec![1, 2, 3];
    let (mut script, stop) = writing_script(seed, &ids, election_timeouts_ms);

    let (first, _) = script.await_leader(|_| true)?.ok_or_else(|| script.gave_up("no first leader"))?;
    script.note(format!("n{first} leads"));
    script.run_for(Duration::from_secs(1))?;
    script.crash(1);
    let leader = script.await_leader(|(id, _)| id != 1)?;
    let (id, term) = leader.ok_or_else(|| script.gave_up("no leader after the crash"))?;
    script.note(format!("n{id} leads in term {term}"));
    script.run_for(Duration::from_secs(1))?;
    script.restart(1);
    script.run_for(Duration::from_secs(3))?;
    let third = ids.iter().copied().find(|n| *n != 1 && *n != id).unwrap_or(3);
    script.hold(id, 1);
    script.run_for(stale_for)?;
    script.hold(id, third);
    script.note(format!("last log index of each node: {:?}", script.board.last_log_indexes(0)));
    let cut = script.sim.elapsed();
    let elected = script.await_leader(|(_, t)| t > term)?;
    let elected_after = elected.map(|(id, t)| {
        script.note(format!("n{id} leads in term {t}"));
        script.sim.elapsed() - cut
    });
    stop.store(true, Ordering::Relaxed);
    Ok(Failover { elected_after, log: script.log })
}

/// Partition 0's leader n1 crashes; n2 and n3 have the same election timeout
/// (`election_timeout_ms`) and started together, so their election ticks line up.
/// Measures how long they take to elect a leader after the crash.
pub fn crash_leader_before_twins(seed: u64, election_timeout_ms: u64) -> Result<Failover, SimError> {
    let ids: Vec<NodeId> = vec![1, 2, 3];
    let timeouts_ms = [election_timeout_ms / 2, election_timeout_ms, election_timeout_ms];
    let (mut script, stop) = writing_script(seed, &ids, timeouts_ms);

    let (first, term) = script.await_leader(|_| true)?.ok_or_else(|| script.gave_up("no first leader"))?;
    script.note(format!("n{first} leads in term {term}"));
    script.run_for(Duration::from_secs(1))?;
    script.crash(first);
    script.note(format!("n{first} crashed"));
    let crashed = script.sim.elapsed();
    let elected = script.await_leader(|(id, t)| id != first && t > term)?;
    let elected_after = elected.map(|(id, t)| {
        script.note(format!("n{id} leads in term {t}"));
        script.sim.elapsed() - crashed
    });
    stop.store(true, Ordering::Relaxed);
    Ok(Failover { elected_after, log: script.log })
}

/// What [`read_at_deposed_leader`] saw.
#[derive(Debug, Clone)]
pub struct DeposedRead {
    /// The value of key `k` written through the new leader, acknowledged before the read.
    pub acknowledged: String,
    /// What the deposed leader answered to a linearizable read of `k` sent after that
    /// acknowledgement: the value, or why it did not serve the read.
    pub read: Result<Option<String>, String>,
    /// What the script did and saw, one line per step, with simulated times.
    pub log: Vec<String>,
}

/// Partition 0's leader is cut off from both other nodes, which elect a new leader and
/// acknowledge a write through it; a linearizable read is then sent to the old leader,
/// which still believes it leads, and while that read waits for its leadership to be
/// confirmed the old leader's link to the new leader heals (the messages held on it,
/// the confirmation request among them, arrive). The read must not answer the value
/// from before the cut.
pub fn read_at_deposed_leader(seed: u64) -> Result<DeposedRead, SimError> {
    let ids: Vec<NodeId> = vec![1, 2, 3];
    let (mut script, asks, answers) = asking_script(seed, &ids, [300, 400, 500], 1_000);
    let (old, term) = script.first_leader_writes_before(&asks, &answers)?;
    for other in ids.iter().copied().filter(|n| *n != old) {
        script.hold(old, other);
    }
    let new = script.await_leader(|(_, t)| t > term)?;
    let (new, new_term) = new.ok_or_else(|| script.gave_up("no leader after the cut"))?;
    script.note(format!("n{new} leads in term {new_term}"));
    let after = script.ask(&asks, &answers, new, set_k("after"))?;
    if let Err(e) = after {
        return Err(script.gave_up(&format!("the write through n{new} failed: {e}")));
    }
    script.note(format!("wrote k = after through n{new}"));
    let read = PartitionRequest::Read {
        reads: vec![PointRead { key: "k".into(), at_revision: None, as_of: None }],
        durability: Durability::Persistent,
        consistency: Consistency::Linearizable,
    };
    let _ = asks.send((old, read));
    script.note(format!("linearizable read of k sent to n{old}"));
    script.run_for(Duration::from_millis(50))?;
    script.sim.release(host_name(old), host_name(new));
    script.sim.repair(host_name(old), host_name(new));
    script.note(format!("n{old} and n{new} reach each other again"));
    let read = script.await_answer(&answers)?.and_then(|served| match served {
        PartitionResponse::Read(values) => {
            Ok(values.into_iter().next().flatten().map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
        }
        other => Err(format!("not a read's answer: {other:?}")),
    });
    script.note(format!("the read answered {read:?}"));
    Ok(DeposedRead { acknowledged: "after".into(), read, log: script.log })
}

/// What [`write_swallowed_by_snapshot`] saw.
#[derive(Debug, Clone)]
pub struct SwallowedWrite {
    /// What the write sent to the leader while it was cut off answered.
    pub cut_off_write: Result<PartitionResponse, String>,
    /// Snapshots the cut-off leader installed after the cut healed: the case needs one.
    pub snapshots_installed: u64,
    /// What a write through the same node answered once it led again.
    pub write_after: Result<PartitionResponse, String>,
    /// What the script did and saw, one line per step, with simulated times.
    pub log: Vec<String>,
}

/// Partition 0's leader n1 is cut off from both other nodes while a write sent to it is
/// in its log, uncommitted. The others elect n2, which writes enough entries through
/// itself to snapshot and purge its log past n1's; when the cut heals, n1 catches up by a
/// snapshot that covers its uncommitted entry though n1's log ends before the snapshot
/// does (so nothing truncates the entry: openraft purges it unanswered). Then n2 is cut
/// off, n1 leads again, and a write is sent to it.
pub fn write_swallowed_by_snapshot(seed: u64) -> Result<SwallowedWrite, SimError> {
    let ids: Vec<NodeId> = vec![1, 2, 3];
    // n1 first, n2 next, n3 never (while another can).
    let (mut script, asks, answers) = asking_script(seed, &ids, [300, 400, 1_500], SWALLOW_SNAPSHOT_LOGS);
    let (old, term) = script.first_leader_writes_before(&asks, &answers)?;
    let others: Vec<NodeId> = ids.iter().copied().filter(|n| *n != old).collect();
    for other in &others {
        script.hold(old, *other);
    }
    let cut_off_write = script.ask(&asks, &answers, old, set_k("cut off"))?;
    script.note(format!("the write through cut-off n{old} answered {cut_off_write:?}"));
    let (new, new_term) =
        script.await_leader(|(_, t)| t > term)?.ok_or_else(|| script.gave_up("no leader after the cut"))?;
    script.note(format!("n{new} leads in term {new_term}"));
    for n in 0..SWALLOW_SNAPSHOT_LOGS * 3 {
        if let Err(e) = script.ask(&asks, &answers, new, set_k(&format!("new {n}")))? {
            return Err(script.gave_up(&format!("write {n} through n{new} failed: {e}")));
        }
    }
    script.note(format!("wrote through n{new}; last log indexes {:?}", script.board.last_log_indexes(0)));
    for other in &others {
        script.sim.release(host_name(old), host_name(*other));
        script.sim.repair(host_name(old), host_name(*other));
    }
    script.note(format!("n{old} reaches the others again"));
    script.run_for(Duration::from_secs(3))?;
    let snapshots_installed = script.board.snapshots_installed(0).get(&old).copied().unwrap_or(0);
    script.note(format!(
        "last log indexes {:?}; n{old} installed {snapshots_installed} snapshot(s)",
        script.board.last_log_indexes(0)
    ));
    for other in ids.iter().copied().filter(|n| *n != new) {
        script.hold(new, other);
    }
    let again = script.await_leader(|(id, t)| id == old && t > new_term)?;
    let (_, again_term) = again.ok_or_else(|| script.gave_up(&format!("n{old} did not lead again")))?;
    script.note(format!("n{old} leads again in term {again_term}"));
    let write_after = script.ask(&asks, &answers, old, set_k("after"))?;
    script.note(format!("the write through n{old} answered {write_after:?}"));
    Ok(SwallowedWrite { cut_off_write, snapshots_installed, write_after, log: script.log })
}

/// Entries between two snapshots in [`write_swallowed_by_snapshot`].
const SWALLOW_SNAPSHOT_LOGS: u64 = 20;

/// Hosts the nodes `ids` (one partition each), with fixed election timeouts in that order
/// and a snapshot every `snapshot_logs` entries.
fn start_nodes(sim: &mut Sim<'_>, ids: &[NodeId], board: &Board, election_timeouts_ms: [u64; 3], snapshot_logs: u64) {
    let peers: BTreeMap<NodeId, String> =
        ids.iter().map(|id| (*id, format!("{}:{NODE_PORT}", host_name(*id)))).collect();
    for (id, election_timeout_ms) in ids.iter().zip(election_timeouts_ms) {
        let spec = NodeSpec {
            id: *id,
            peers: peers.clone(),
            partitions: 1,
            disk: SimDisk::new(),
            election_timeout_ms,
            clock: SimClock::new(0),
            snapshot_logs,
            request_timeout: Duration::from_secs(3),
            board: board.clone(),
        };
        sim.host(host_name(*id), move || node::run(spec.clone()));
    }
}

/// A scenario on the nodes `ids` (see [`start_nodes`]) with the writing client
/// ([`write_to_leader`]): the script, and the flag that stops the writes.
fn writing_script<'a>(seed: u64, ids: &[NodeId], election_timeouts_ms: [u64; 3]) -> (Script<'a>, Arc<AtomicBool>) {
    let board = Board::default();
    let mut sim = new_sim(seed, SCENARIO_MAX);
    start_nodes(&mut sim, ids, &board, election_timeouts_ms, 1_000);
    let stop = Arc::new(AtomicBool::new(false));
    sim.client(WRITER_HOST, write_to_leader(board.clone(), stop.clone()));
    (Script { sim, board, log: Vec::new() }, stop)
}

/// A scenario on the nodes `ids` (see [`start_nodes`]) with the asking client
/// ([`answer_asks`]): the script, where to send its requests and where their answers come.
fn asking_script<'a>(
    seed: u64,
    ids: &[NodeId],
    election_timeouts_ms: [u64; 3],
    snapshot_logs: u64,
) -> (Script<'a>, Asks, Answers) {
    let board = Board::default();
    let mut sim = new_sim(seed, SCENARIO_MAX);
    start_nodes(&mut sim, ids, &board, election_timeouts_ms, snapshot_logs);
    let (asks, queue) = tokio::sync::mpsc::unbounded_channel();
    let answers = Answers::default();
    sim.client(ASKER_HOST, answer_asks(queue, answers.clone()));
    (Script { sim, board, log: Vec::new() }, asks, answers)
}

/// A write of `value` to key `k`.
fn set_k(value: &str) -> PartitionRequest {
    let set = SetArgs { key: "k".into(), value: value.as_bytes().to_vec(), ..SetArgs::default() };
    PartitionRequest::Write { ops: vec![WriteOp::Set(set)], operation_id: None, durability: Durability::Persistent }
}

/// Requests for [`answer_asks`] to send: the node, and the request to its partition 0.
type Asks = tokio::sync::mpsc::UnboundedSender<(NodeId, PartitionRequest)>;

/// The answers of [`answer_asks`], in the order the requests were sent.
type Answers = Arc<std::sync::Mutex<std::collections::VecDeque<Result<PartitionResponse, String>>>>;

/// Sends each queued request to partition 0 of its node, one at a time, and keeps what
/// came back.
async fn answer_asks(
    mut queue: tokio::sync::mpsc::UnboundedReceiver<(NodeId, PartitionRequest)>,
    answers: Answers,
) -> turmoil::Result {
    while let Some((id, request)) = queue.recv().await {
        let answer = match net::execute(id, &ExecRequest::Partition(0, request), ASK_TIMEOUT).await {
            Ok(net::ExecReply::Partition(Ok(served))) => Ok(served.value),
            Ok(net::ExecReply::Partition(Err(e))) => Err(e.to_string()),
            Ok(other) => Err(format!("unexpected reply {other:?}")),
            Err(e) => Err(e.to_string()),
        };
        answers.lock().unwrap_or_else(|p| p.into_inner()).push_back(answer);
    }
    Ok(())
}

/// How long the asking client waits for one answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// A scenario's simulation and its log.
struct Script<'a> {
    sim: Sim<'a>,
    board: Board,
    log: Vec<String>,
}

impl Script<'_> {
    fn note(&mut self, what: String) {
        self.log.push(format!("{:>8.3}s {what}", self.sim.elapsed().as_secs_f64()));
    }

    fn gave_up(&self, why: &str) -> SimError {
        SimError::Turmoil { elapsed: self.sim.elapsed(), reason: format!("{why}; {}", self.log.join("; ")) }
    }

    fn step(&mut self) -> Result<(), SimError> {
        self.sim
            .step()
            .map(|_| ())
            .map_err(|e| SimError::Turmoil { elapsed: self.sim.elapsed(), reason: e.to_string() })
    }

    fn run_for(&mut self, span: Duration) -> Result<(), SimError> {
        let until = self.sim.elapsed() + span;
        while self.sim.elapsed() < until {
            self.step()?;
        }
        Ok(())
    }

    /// Steps until some node claims to lead partition 0 as `accept` wants (node, term),
    /// at most [`LEADER_WAIT_MAX`]; the node and its term.
    fn await_leader(&mut self, accept: impl Fn((NodeId, u64)) -> bool) -> Result<Option<(NodeId, u64)>, SimError> {
        let until = self.sim.elapsed() + LEADER_WAIT_MAX;
        while self.sim.elapsed() < until {
            if let Some(found) = self.board.leaders(0).into_iter().find(|l| accept(*l)) {
                return Ok(Some(found));
            }
            self.step()?;
        }
        Ok(None)
    }

    /// Sends `request` to partition 0 of node `id` from the asking client and steps until
    /// it is answered.
    fn ask(
        &mut self,
        asks: &Asks,
        answers: &Answers,
        id: NodeId,
        request: PartitionRequest,
    ) -> Result<Result<PartitionResponse, String>, SimError> {
        if asks.send((id, request)).is_err() {
            return Err(self.gave_up("the asking client stopped"));
        }
        self.await_answer(answers)
    }

    /// Steps until some node leads partition 0, then writes `k = before` through it; the
    /// leader and its term.
    fn first_leader_writes_before(&mut self, asks: &Asks, answers: &Answers) -> Result<(NodeId, u64), SimError> {
        let (leader, term) = self.await_leader(|_| true)?.ok_or_else(|| self.gave_up("no first leader"))?;
        self.note(format!("n{leader} leads in term {term}"));
        let before = self.ask(asks, answers, leader, set_k("before"))?;
        self.note(format!("wrote k = before through n{leader}: {}", before.is_ok()));
        Ok((leader, term))
    }

    /// Steps until the asking client has an answer (it gives up on a request after
    /// [`ASK_TIMEOUT`]); the oldest one.
    fn await_answer(&mut self, answers: &Answers) -> Result<Result<PartitionResponse, String>, SimError> {
        let until = self.sim.elapsed() + ASK_TIMEOUT + Duration::from_secs(1);
        while self.sim.elapsed() < until {
            if let Some(answer) = answers.lock().unwrap_or_else(|p| p.into_inner()).pop_front() {
                return Ok(answer);
            }
            self.step()?;
        }
        Err(self.gave_up("no answer from the asking client"))
    }

    /// Crashes `node` (silently, as the nemesis does: nothing it sends on its way down
    /// arrives).
    fn crash(&mut self, node: NodeId) {
        let name = host_name(node);
        for other in others(node) {
            self.sim.partition(name.as_str(), other.as_str());
        }
        self.sim.crash(name.as_str());
        self.board.forget(node);
        self.note(format!("crash n{node}"));
    }

    fn restart(&mut self, node: NodeId) {
        let name = host_name(node);
        for other in others(node) {
            self.sim.repair(name.as_str(), other.as_str());
        }
        self.sim.bounce(name.as_str());
        self.note(format!("restart n{node}"));
    }

    /// Holds the messages between `a` and `b`, both ways.
    fn hold(&mut self, a: NodeId, b: NodeId) {
        self.sim.hold(host_name(a), host_name(b));
        self.note(format!("cut n{a} from n{b}"));
    }
}

/// Every host but `node`'s: the other nodes and the writing client.
fn others(node: NodeId) -> impl Iterator<Item = String> {
    let name = host_name(node);
    [1, 2, 3].map(host_name).into_iter().chain([WRITER_HOST.to_owned()]).filter(move |other| *other != name)
}

/// Writes one key over and over, each time to the node that leads partition 0 in the
/// highest term on the board, until `stop`.
async fn write_to_leader(board: Board, stop: Arc<AtomicBool>) -> turmoil::Result {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let leader = board.leaders(0).into_iter().max_by_key(|(_, term)| *term);
        if let Some((id, _)) = leader {
            n += 1;
            let set = SetArgs { key: "k".into(), value: n.to_string().into_bytes(), ..SetArgs::default() };
            let write = PartitionRequest::Write {
                ops: vec![WriteOp::Set(set)],
                operation_id: None,
                durability: Durability::Persistent,
            };
            // Failures (no leader yet, a cut) only slow the stream down.
            let _ = net::execute(id, &ExecRequest::Partition(0, write), WRITE_TIMEOUT).await;
        }
        tokio::time::sleep(WRITE_PAUSE).await;
    }
    Ok(())
}
