//! The client-facing Transactions service: interactive transactions held on this node
//! between calls.
//!
//! A transaction lives in the session table of the node that began it, keyed by its id,
//! each behind its own async mutex so that its calls run one at a time. Sessions end by
//! commit, by rollback, or by the reaper once their deadline passed (then they are rolled
//! back). A call for an id not in the table (ended, expired, or begun on another node) is
//! NOT_FOUND. Commit outcomes are kept for [`OUTCOME_RETENTION`], so a client that lost
//! the answer to a commit and sends it again learns the first outcome instead of a
//! NOT_FOUND that would hide whether it committed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use kahuna_kernel::{DeleteArgs, KvError, SetArgs, check_key, check_ttl, scan_limit};
use kahuna_proto::v1::transactions_server::Transactions as TransactionsApi;
use kahuna_proto::v1::*;
use kahuna_txn::{Transaction, TxnEngine};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use tonic::{Request, Response, Status};

use crate::convert::{self, txn_durability};
use crate::status::{invalid, to_status};

/// Most transactions open on one node at a time.
pub const SESSIONS_MAX: usize = 10_000;
/// How long a commit's outcome is kept for a repeated commit of the same transaction.
pub const OUTCOME_RETENTION: Duration = Duration::from_secs(60);
/// Most commit outcomes kept; the oldest go first beyond it.
pub const OUTCOMES_MAX: usize = 100_000;
/// How often the reaper looks for sessions past their deadline.
const REAP_INTERVAL: Duration = Duration::from_millis(250);
/// Longest transaction id accepted (ids are made by the engine and much shorter).
const TXN_ID_BYTES_MAX: usize = 256;

/// What a commit answered: the commit timestamp (`None`: nothing written) or the error.
type Outcome = Result<Option<u64>, KvError>;

/// One open transaction. `txn` is `None` once it ended (committed, rolled back, reaped).
struct Session {
    deadline: Instant,
    timeout: Duration,
    txn: Arc<AsyncMutex<Option<Transaction>>>,
}

/// Open transactions and recent commit outcomes of this node.
struct SessionTable {
    open: Mutex<HashMap<String, Arc<Session>>>,
    outcomes: Mutex<Outcomes>,
}

/// Commit outcomes by transaction id, with their insertion order for expiry.
#[derive(Default)]
struct Outcomes {
    by_id: HashMap<String, Outcome>,
    order: VecDeque<(Instant, String)>,
}

impl Outcomes {
    fn prune(&mut self, now: Instant) {
        while let Some((at, id)) = self.order.front() {
            if self.order.len() <= OUTCOMES_MAX && now.duration_since(*at) < OUTCOME_RETENTION {
                break;
            }
            self.by_id.remove(id);
            self.order.pop_front();
        }
    }
}

impl SessionTable {
    fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).get(id).cloned()
    }

    fn remove(&self, id: &str) {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
    }

    fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    fn outcome(&self, id: &str) -> Option<Outcome> {
        self.outcomes.lock().unwrap_or_else(PoisonError::into_inner).by_id.get(id).cloned()
    }

    fn record(&self, id: &str, outcome: Outcome) {
        let now = Instant::now();
        let mut outcomes = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
        if outcomes.by_id.insert(id.to_owned(), outcome).is_none() {
            outcomes.order.push_back((now, id.to_owned()));
        }
        outcomes.prune(now);
    }

    /// Sessions whose deadline passed.
    fn expired(&self, now: Instant) -> Vec<(String, Arc<Session>)> {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.iter().filter(|(_, s)| s.deadline <= now).map(|(id, s)| (id.clone(), s.clone())).collect()
    }
}

/// The error for a transaction id that has no open session here.
fn not_open(id: &str) -> KvError {
    KvError::NotFound(format!(
        "transaction {id} is not open on this node (expired, finished, or begun on another node)"
    ))
}

/// The error for a session found past its deadline.
fn expired(id: &str, timeout: Duration) -> KvError {
    KvError::NotFound(format!(
        "transaction {id} expired (its timeout of {} ms passed) and was rolled back; nothing was committed",
        timeout.as_millis()
    ))
}

fn check_id(id: &str) -> Result<(), Status> {
    if id.is_empty() {
        return Err(invalid("txn_id is empty: begin a transaction first"));
    }
    if id.len() > TXN_ID_BYTES_MAX {
        return Err(invalid(format!("txn_id is {} bytes, the limit is {TXN_ID_BYTES_MAX}", id.len())));
    }
    Ok(())
}

pub struct TxnService {
    engine: TxnEngine,
    table: Arc<SessionTable>,
}

impl TxnService {
    /// Creates the service and starts its reaper, which stops when the service is
    /// dropped. Must run inside a tokio runtime.
    pub fn new(engine: TxnEngine) -> Self {
        let table = Arc::new(SessionTable { open: Mutex::default(), outcomes: Mutex::default() });
        tokio::spawn(reap(Arc::downgrade(&table)));
        Self { engine, table }
    }

    fn node_id(&self) -> u64 {
        self.engine.kernel().node_id()
    }

    /// Locks the open session `id` for one call. A session found past its deadline is
    /// ended here (rolled back) rather than left to the reaper, so the caller learns why.
    async fn lock(&self, id: &str) -> Result<OwnedMutexGuard<Option<Transaction>>, Status> {
        check_id(id)?;
        let session = self.table.get(id).ok_or_else(|| to_status(not_open(id)))?;
        let mut guard = session.txn.clone().lock_owned().await;
        if guard.is_none() {
            return Err(to_status(not_open(id)));
        }
        if Instant::now() >= session.deadline {
            self.table.remove(id);
            if let Some(txn) = guard.take() {
                txn.rollback().await;
            }
            return Err(to_status(expired(id, session.timeout)));
        }
        Ok(guard)
    }
}

/// The transaction behind a guard from [`TxnService::lock`].
fn txn<'a>(guard: &'a mut OwnedMutexGuard<Option<Transaction>>, id: &str) -> Result<&'a mut Transaction, Status> {
    guard.as_mut().ok_or_else(|| to_status(not_open(id)))
}

/// Rolls back sessions past their deadline every [`REAP_INTERVAL`] and drops old commit
/// outcomes; ends when the table is gone.
async fn reap(table: Weak<SessionTable>) {
    let mut tick = tokio::time::interval(REAP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let Some(table) = table.upgrade() else { return };
        let now = Instant::now();
        for (id, session) in table.expired(now) {
            // A session in use is left to its call, which fails past the deadline, or to
            // the next sweep.
            let Ok(mut guard) = session.txn.clone().try_lock_owned() else { continue };
            table.remove(&id);
            if let Some(txn) = guard.take() {
                tracing::debug!(txn_id = %id, "rolling back a transaction past its deadline");
                tokio::spawn(txn.rollback());
            }
        }
        table.outcomes.lock().unwrap_or_else(PoisonError::into_inner).prune(now);
    }
}

#[tonic::async_trait]
impl TransactionsApi for TxnService {
    async fn begin(&self, request: Request<BeginRequest>) -> Result<Response<BeginResponse>, Status> {
        let r = request.into_inner();
        if self.table.len() >= SESSIONS_MAX {
            return Err(to_status(KvError::Unavailable(format!(
                "this node holds {SESSIONS_MAX} open transactions, its maximum; retry later or on another node"
            ))));
        }
        let timeout = r.timeout_ms.map(Duration::from_millis);
        let txn = self.engine.begin(timeout).await.map_err(to_status)?;
        let timeout = timeout.unwrap_or(self.engine.config().timeout_default);
        let response = BeginResponse {
            txn_id: txn.id().to_owned(),
            snapshot_ts: txn.snapshot_ts(),
            served_by: self.node_id(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        };
        let session = Session { deadline: txn.deadline(), timeout, txn: Arc::new(AsyncMutex::new(Some(txn))) };
        self.table
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(response.txn_id.clone(), Arc::new(session));
        Ok(Response::new(response))
    }

    async fn get(&self, request: Request<TxnGetRequest>) -> Result<Response<TxnGetResponse>, Status> {
        let r = request.into_inner();
        txn_durability(r.durability, &r.key)?;
        check_key(&r.key).map_err(to_status)?;
        let read = convert::point_read(r.key, r.at_revision, r.as_of)?;
        let mut guard = self.lock(&r.txn_id).await?;
        let found = txn(&mut guard, &r.txn_id)?.get(&read).await.map_err(to_status)?;
        Ok(Response::new(TxnGetResponse {
            found: found.is_some(),
            kv: found.map(convert::entry),
            served_by: self.node_id(),
        }))
    }

    async fn exists(&self, request: Request<TxnExistsRequest>) -> Result<Response<TxnExistsResponse>, Status> {
        let r = request.into_inner();
        txn_durability(r.durability, &r.key)?;
        check_key(&r.key).map_err(to_status)?;
        let read = convert::point_read(r.key, None, None)?;
        let mut guard = self.lock(&r.txn_id).await?;
        let found = txn(&mut guard, &r.txn_id)?.get(&read).await.map_err(to_status)?;
        Ok(Response::new(TxnExistsResponse { exists: found.is_some(), served_by: self.node_id() }))
    }

    async fn scan(&self, request: Request<TxnScanRequest>) -> Result<Response<TxnScanResponse>, Status> {
        let r = request.into_inner();
        txn_durability(r.durability, &r.prefix)?;
        let limit = scan_limit(r.limit).map_err(to_status)?;
        let after = (!r.cursor.is_empty()).then_some(r.cursor.as_str());
        let mut guard = self.lock(&r.txn_id).await?;
        let (items, more) = txn(&mut guard, &r.txn_id)?.scan(&r.prefix, after, limit).await.map_err(to_status)?;
        let next_cursor = if more { items.last().map(|kv| kv.key.clone()).unwrap_or_default() } else { String::new() };
        Ok(Response::new(TxnScanResponse {
            items: items.into_iter().map(convert::entry).collect(),
            next_cursor,
            served_by: self.node_id(),
        }))
    }

    async fn set(&self, request: Request<TxnSetRequest>) -> Result<Response<TxnSetResponse>, Status> {
        let r = request.into_inner();
        txn_durability(r.durability, &r.key)?;
        check_key(&r.key).map_err(to_status)?;
        let args = SetArgs {
            key: r.key,
            value: r.value,
            nx: r.nx,
            xx: r.xx,
            compare_value: r.compare_value,
            compare_revision: r.compare_revision,
            ttl_ms: 0,
        };
        let args = convert::set_args(args, r.ttl_ms)?;
        let mut guard = self.lock(&r.txn_id).await?;
        let modified = txn(&mut guard, &r.txn_id)?.set(args).await.map_err(to_status)?;
        Ok(Response::new(TxnSetResponse { modified, served_by: self.node_id() }))
    }

    async fn delete(&self, request: Request<TxnDeleteRequest>) -> Result<Response<TxnDeleteResponse>, Status> {
        let r = request.into_inner();
        txn_durability(r.durability, &r.key)?;
        check_key(&r.key).map_err(to_status)?;
        let args = DeleteArgs { key: r.key, compare_value: r.compare_value, compare_revision: r.compare_revision };
        let mut guard = self.lock(&r.txn_id).await?;
        let deleted = txn(&mut guard, &r.txn_id)?.delete(args).await.map_err(to_status)?;
        Ok(Response::new(TxnDeleteResponse { deleted, served_by: self.node_id() }))
    }

    async fn extend(&self, request: Request<TxnExtendRequest>) -> Result<Response<TxnExtendResponse>, Status> {
        let r = request.into_inner();
        txn_durability(r.durability, &r.key)?;
        check_key(&r.key).map_err(to_status)?;
        let ttl_ms = check_ttl(r.ttl_ms).map_err(to_status)?;
        let mut guard = self.lock(&r.txn_id).await?;
        let extended = txn(&mut guard, &r.txn_id)?.extend(&r.key, ttl_ms).await.map_err(to_status)?;
        Ok(Response::new(TxnExtendResponse { extended, served_by: self.node_id() }))
    }

    /// Commits in a task of its own, so that a caller that goes away (a client timeout)
    /// cannot cut a commit in half: the outcome is recorded either way, and a repeated
    /// commit, which waits for the session's lock, answers with it.
    async fn commit(&self, request: Request<CommitRequest>) -> Result<Response<CommitResponse>, Status> {
        let id = request.into_inner().txn_id;
        check_id(&id)?;
        let served_by = self.node_id();
        let Some(session) = self.table.get(&id) else {
            let outcome = self.table.outcome(&id).unwrap_or_else(|| Err(not_open(&id)));
            return outcome.map(|commit_ts| Response::new(CommitResponse { commit_ts, served_by })).map_err(to_status);
        };
        let table = self.table.clone();
        let outcome = tokio::spawn(async move {
            let mut guard = session.txn.clone().lock_owned().await;
            let Some(txn) = guard.take() else {
                // Ended while this call waited: by an earlier commit (its outcome is
                // recorded), a rollback or the reaper.
                return table.outcome(&id).unwrap_or_else(|| Err(not_open(&id)));
            };
            let outcome = if Instant::now() >= session.deadline {
                txn.rollback().await;
                Err(expired(&id, session.timeout))
            } else {
                txn.commit().await
            };
            // Recorded before the session leaves the table, so that a repeated commit
            // finds one or the other.
            table.record(&id, outcome.clone());
            table.remove(&id);
            outcome
        })
        .await
        .map_err(|e| Status::internal(format!("commit task failed: {e}")))?;
        outcome.map(|commit_ts| Response::new(CommitResponse { commit_ts, served_by })).map_err(to_status)
    }

    async fn rollback(&self, request: Request<RollbackRequest>) -> Result<Response<RollbackResponse>, Status> {
        let id = request.into_inner().txn_id;
        check_id(&id)?;
        let served_by = self.node_id();
        let Some(session) = self.table.get(&id) else {
            return Ok(Response::new(RollbackResponse { rolled_back: false, served_by }));
        };
        let mut guard = session.txn.clone().lock_owned().await;
        self.table.remove(&id);
        let rolled_back = match guard.take() {
            Some(txn) => {
                txn.rollback().await;
                true
            }
            None => false,
        };
        Ok(Response::new(RollbackResponse { rolled_back, served_by }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_expire_by_age_and_count() {
        let mut o = Outcomes::default();
        let start = Instant::now();
        o.by_id.insert("a".into(), Ok(Some(1)));
        o.order.push_back((start, "a".into()));
        o.prune(start + Duration::from_secs(1));
        assert!(o.by_id.contains_key("a"));
        o.prune(start + OUTCOME_RETENTION);
        assert!(o.by_id.is_empty() && o.order.is_empty());
        for i in 0..=OUTCOMES_MAX {
            o.by_id.insert(i.to_string(), Ok(None));
            o.order.push_back((start, i.to_string()));
        }
        o.prune(start);
        assert_eq!(o.by_id.len(), OUTCOMES_MAX);
        assert!(!o.by_id.contains_key("0"));
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id("").is_err());
        assert!(check_id(&"x".repeat(TXN_ID_BYTES_MAX + 1)).is_err());
        assert!(check_id("1-0001a2b3c4d5e6f7-3").is_ok());
        assert!(not_open("t1").to_string().contains("transaction t1 is not open on this node"));
    }
}
