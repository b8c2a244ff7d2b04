//! Runs a parsed [`Command`] against the cluster and returns an [`Outcome`] to format.
//!
//! Submodules: `txn` runs `begin`, `commit`, `rollback` and the key commands inside an
//! open transaction; `script` runs `eval`, `lua` blocks and `run`.

mod script;
mod txn;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kahuna_client::{
    Batch, Client, ClusterStatus, Consistency, CreateSequenceResult, DeleteItem, DeleteOptions, DeleteResult,
    DeleteSequenceResult, Durability, ExistsResult, ExtendLockResult, ExtendResult, GetResult, GetSequenceResult,
    Items, LockInfo, LockOptions, LockResult, NextResult, NodeId, NodeInfo, OperationId, ReadOptions, ReserveResult,
    ScanOptions, ScriptResult, SetItem, SetOptions, SetResult, Transaction, UnlockResult, new_operation_id,
};

use crate::error::ShellError;
use crate::help;
use crate::lex::quote;
use crate::parse::Command;

pub use txn::{Buffered, Rollback, short_id};

/// Keys asked for per scan page while following cursors.
const SCAN_PAGE_ITEMS: usize = 1_000;

/// Hex digits of the random owner a shell session takes locks as.
const SESSION_OWNER_HEX_DIGITS: usize = 16;

/// What a shell remembers between commands: the owner it takes locks as, the owner of
/// each lock it took (`lock R ... owner O`), so `unlock R` works later, and the open
/// transaction.
#[derive(Debug)]
pub struct Session {
    owner: String,
    owners: HashMap<(Durability, String), String>,
    /// Whether `timing on` is in effect.
    timing: bool,
    /// The transaction `begin` opened, until `commit` or `rollback` ends it.
    txn: Option<Transaction>,
    /// Timeout of a `begin` without one; `None` = the node's default.
    txn_timeout_default: Option<Duration>,
    /// Directory relative `run` paths start from; `None` = the current directory.
    base_dir: Option<PathBuf>,
}

impl Default for Session {
    fn default() -> Session {
        let id = new_operation_id();
        Session {
            owner: format!("shell-{}", &id[..SESSION_OWNER_HEX_DIGITS.min(id.len())]),
            owners: HashMap::new(),
            timing: false,
            txn: None,
            txn_timeout_default: None,
            base_dir: None,
        }
    }
}

impl Session {
    /// Starts a session with a fresh random owner.
    pub fn new() -> Session {
        Session::default()
    }

    /// Sets the timeout of a `begin` without one (the REPL asks for more than the node's
    /// default, since people type slower than programs).
    pub fn with_txn_timeout(mut self, timeout: Duration) -> Session {
        self.txn_timeout_default = Some(timeout);
        self
    }

    /// Sets the directory relative `run` paths start from (a `-f` script's own).
    pub fn with_base_dir(mut self, dir: PathBuf) -> Session {
        self.base_dir = Some(dir);
        self
    }

    /// Whether each command's latency is to be printed (`timing on`).
    pub fn timing(&self) -> bool {
        self.timing
    }

    /// The open transaction's id, if one is open.
    pub fn txn_id(&self) -> Option<&str> {
        self.txn.as_ref().map(Transaction::id)
    }

    /// The endpoint every call of the open transaction goes to, if one is open.
    pub fn txn_endpoint(&self) -> Option<&str> {
        self.txn.as_ref().map(Transaction::endpoint)
    }

    /// Rolls the open transaction back, if any (leaving the shell, a failed script);
    /// returns its id and what happened, for the caller to tell.
    ///
    /// # Cancel safety
    ///
    /// The transaction is taken first: a dropped future leaves its rollback to the
    /// client's background rollback and to the node's timeout.
    pub async fn abandon_txn(&mut self) -> Option<(String, Rollback)> {
        let txn = self.txn.take()?;
        let id = txn.id().to_owned();
        Some((id, txn::roll_back(txn).await))
    }

    /// Returns `path` resolved against the base directory when it is relative.
    fn resolve(&self, path: &Path) -> PathBuf {
        match &self.base_dir {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_owned(),
        }
    }

    /// The owner to act as on lock `name`: the one that took it here, else the session's.
    fn owner_of(&self, durability: Durability, name: &str) -> String {
        self.owners.get(&(durability, name.to_owned())).cloned().unwrap_or_else(|| self.owner.clone())
    }
}

/// What a lock or sequence command produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Coordination {
    /// A lock or elock ran.
    Lock {
        /// The lock.
        name: String,
        /// The server's answer.
        result: LockResult,
    },
    /// An unlock ran.
    Unlock {
        /// The lock.
        name: String,
        /// The server's answer.
        result: UnlockResult,
    },
    /// An extend-lock ran.
    ExtendLock {
        /// The lock.
        name: String,
        /// The server's answer.
        result: ExtendLockResult,
    },
    /// A get-lock ran.
    GetLock {
        /// The lock.
        name: String,
        /// The server's answer.
        info: LockInfo,
    },
    /// A create-sequence ran.
    CreateSequence(CreateSequenceResult),
    /// A next-sequence ran.
    NextSequence {
        /// The sequence.
        name: String,
        /// The server's answer.
        result: NextResult,
    },
    /// A reserve-sequence ran.
    ReserveSequence {
        /// The sequence.
        name: String,
        /// The server's answer.
        result: ReserveResult,
    },
    /// A get-sequence ran.
    GetSequence {
        /// The sequence.
        name: String,
        /// The server's answer.
        result: GetSequenceResult,
    },
    /// A delete-sequence ran.
    DeleteSequence {
        /// The sequence.
        name: String,
        /// The server's answer.
        result: DeleteSequenceResult,
    },
}

/// What a command produced, ready to format.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A set ran (whether or not its conditions held).
    Set {
        /// The key written.
        key: String,
        /// The server's answer.
        result: SetResult,
    },
    /// A get ran.
    Get {
        /// The key read.
        key: String,
        /// The server's answer.
        result: GetResult,
    },
    /// An exists ran.
    Exists {
        /// The key tested.
        key: String,
        /// The server's answer.
        result: ExistsResult,
    },
    /// A delete ran.
    Delete {
        /// The key deleted.
        key: String,
        /// The server's answer.
        result: DeleteResult,
    },
    /// An extend ran.
    Extend {
        /// The key extended.
        key: String,
        /// The server's answer.
        result: ExtendResult,
    },
    /// A get by bucket ran.
    Bucket {
        /// The bucket read.
        bucket: String,
        /// Its keys.
        items: Items,
    },
    /// A scan ran.
    Scan {
        /// The prefix scanned.
        prefix: String,
        /// The keys found; `next_cursor` is set when more remain.
        items: Items,
        /// The command that continues the scan, when more remain.
        continue_with: Option<String>,
    },
    /// An mset ran.
    SetMany {
        /// Keys in request order.
        keys: Vec<String>,
        /// Per-key answers.
        batch: Batch<SetResult>,
    },
    /// An mget ran.
    GetMany {
        /// Keys in request order.
        keys: Vec<String>,
        /// Per-key answers.
        batch: Batch<GetResult>,
    },
    /// An mdel ran.
    DeleteMany {
        /// Keys in request order.
        keys: Vec<String>,
        /// Per-key answers.
        batch: Batch<DeleteResult>,
    },
    /// A lock or sequence command ran.
    Coordination(Coordination),
    /// A status ran.
    Status(ClusterStatus),
    /// A ping got its answer.
    Ping {
        /// Endpoint that answered.
        endpoint: String,
        /// Node that answered.
        node_id: NodeId,
        /// Round-trip time.
        rtt: Duration,
    },
    /// A members ran: the cluster's nodes as the answering node sees them.
    Members {
        /// Node that answered.
        node_id: NodeId,
        /// The cluster's nodes.
        nodes: Vec<NodeInfo>,
    },
    /// A timing command ran; whether timing is now on.
    Timing(bool),
    /// Help text.
    Help(String),
    /// The user asked to leave.
    Exit,
    /// A begin opened a transaction.
    Begun {
        /// Its id.
        id: String,
        /// Its snapshot's HLC timestamp.
        snapshot_ts: u64,
        /// How long the node keeps it open.
        timeout: Duration,
        /// Node holding it.
        served_by: NodeId,
    },
    /// A set, del or extend inside a transaction buffered its write, or found its
    /// condition false.
    Buffered {
        /// Which command.
        op: Buffered,
        /// The key.
        key: String,
        /// Whether the write was buffered (its conditions held; the key was live).
        applied: bool,
        /// Node holding the transaction.
        served_by: NodeId,
    },
    /// A commit succeeded.
    Committed {
        /// The transaction's id.
        id: String,
        /// When its writes committed; `None` when it wrote nothing.
        commit_ts: Option<u64>,
        /// Node that held it.
        served_by: NodeId,
    },
    /// A rollback ended the transaction.
    RolledBack {
        /// The transaction's id.
        id: String,
        /// What the node said.
        rollback: Rollback,
        /// Node that held it.
        served_by: NodeId,
    },
    /// An eval, lua block or run ran a script.
    Script(ScriptResult),
}

/// Runs `command`.
///
/// # Cancel safety
///
/// Dropping the future abandons the call; a write may or may not have been applied. An
/// open transaction stays open (its commit may or may not have been sent).
pub async fn execute(client: &Client, session: &mut Session, command: Command) -> Result<Outcome, ShellError> {
    if session.txn.is_some() {
        if let Some(reason) = command.refused_in_transaction() {
            return Err(ShellError::invalid(reason));
        }
        if !matches!(command, Command::Help { .. } | Command::Timing { .. } | Command::Exit) {
            return txn::execute(session, command).await;
        }
    }
    Ok(match command {
        Command::Begin { timeout_ms } => txn::begin(client, session, timeout_ms).await?,
        Command::Commit | Command::Rollback => {
            return Err(ShellError::invalid("no transaction is open; begin one first"));
        }
        Command::Eval { chunk, args } => script::eval(client, chunk, args).await?,
        Command::Run { path, args } => script::run_file(client, &session.resolve(&path), &path, args).await?,
        Command::Lock { .. }
        | Command::Unlock { .. }
        | Command::ExtendLock { .. }
        | Command::GetLock { .. }
        | Command::CreateSequence { .. }
        | Command::NextSequence { .. }
        | Command::ReserveSequence { .. }
        | Command::GetSequence { .. }
        | Command::DeleteSequence { .. } => Outcome::Coordination(coordinate(client, session, command).await?),
        Command::Set { key, value, options } => {
            let result = client.set(key.clone(), value, options).await?;
            Outcome::Set { key, result }
        }
        Command::Get { key, options } => {
            let result = client.get(key.clone(), options).await?;
            Outcome::Get { key, result }
        }
        Command::Exists { key, options } => {
            let result = client.exists(key.clone(), options).await?;
            Outcome::Exists { key, result }
        }
        Command::Delete { key, options } => {
            let result = client.delete(key.clone(), options).await?;
            Outcome::Delete { key, result }
        }
        Command::Extend { key, ttl_ms, durability } => {
            let result = client.extend(key.clone(), ttl_ms, durability).await?;
            Outcome::Extend { key, result }
        }
        Command::GetByBucket { bucket, options } => {
            let items = client.get_by_bucket(bucket.clone(), options).await?;
            Outcome::Bucket { bucket, items }
        }
        Command::Scan { prefix, options, limit, cursor } => {
            scan(Reader::Client(client), prefix, options, limit, cursor).await?
        }
        Command::SetMany { items, durability } => {
            let keys = items.iter().map(|(key, _)| key.clone()).collect();
            let items = items
                .into_iter()
                .map(|(key, value)| SetItem::new(key, value).options(SetOptions::new().durability(durability)));
            let batch = client.set_many(items).await?;
            Outcome::SetMany { keys, batch }
        }
        Command::GetMany { keys, options } => {
            let batch = client.get_many(keys.clone(), options).await?;
            Outcome::GetMany { keys, batch }
        }
        Command::DeleteMany { keys, durability } => {
            let items = keys
                .iter()
                .map(|key| DeleteItem::new(key.clone()).options(DeleteOptions::new().durability(durability)));
            let batch = client.delete_many(items).await?;
            Outcome::DeleteMany { keys, batch }
        }
        Command::Status => Outcome::Status(client.status().await?),
        Command::Ping => {
            let endpoint = client.current_endpoint().to_owned();
            let started = Instant::now();
            let status = client.status().await?;
            Outcome::Ping { endpoint, node_id: status.node_id, rtt: started.elapsed() }
        }
        Command::Members => {
            let status = client.status().await?;
            Outcome::Members { node_id: status.node_id, nodes: status.nodes }
        }
        Command::Timing { on } => {
            session.timing = on;
            Outcome::Timing(on)
        }
        Command::Help { topic } => Outcome::Help(help::text(topic.as_deref()).map_err(ShellError::invalid)?),
        Command::Exit => Outcome::Exit,
    })
}

/// Runs the lock and sequence commands.
async fn coordinate(client: &Client, session: &mut Session, command: Command) -> Result<Coordination, ShellError> {
    let key = |key: Option<String>| key.map_or(OperationId::Auto, OperationId::Given);
    Ok(match command {
        Command::Lock { name, lease_ms, wait_ms, owner, durability } => {
            let owner = owner.unwrap_or_else(|| session.owner_of(durability, &name));
            let options = LockOptions::new().durability(durability).wait_ms(wait_ms);
            let result = client.try_lock(name.clone(), owner.clone(), lease_ms, options).await?;
            if result.acquired {
                session.owners.insert((durability, name.clone()), owner);
            }
            Coordination::Lock { name, result }
        }
        Command::Unlock { name, durability } => {
            let result = client.unlock(name.clone(), session.owner_of(durability, &name), durability).await?;
            session.owners.remove(&(durability, name.clone()));
            Coordination::Unlock { name, result }
        }
        Command::ExtendLock { name, lease_ms, durability } => {
            let owner = session.owner_of(durability, &name);
            let result = client.extend_lock(name.clone(), owner, lease_ms, durability).await?;
            Coordination::ExtendLock { name, result }
        }
        Command::GetLock { name, durability } => {
            let info = client.get_lock(name.clone(), durability).await?;
            Coordination::GetLock { name, info }
        }
        Command::CreateSequence { name, options } => {
            Coordination::CreateSequence(client.create_sequence(name, options).await?)
        }
        Command::NextSequence { name, key: k } => {
            let result = client.next_sequence(name.clone(), key(k)).await?;
            Coordination::NextSequence { name, result }
        }
        Command::ReserveSequence { name, count, key: k } => {
            let result = client.reserve_sequence(name.clone(), count, key(k)).await?;
            Coordination::ReserveSequence { name, result }
        }
        Command::GetSequence { name } => {
            let result = client.get_sequence(name.clone(), Consistency::Linearizable).await?;
            Coordination::GetSequence { name, result }
        }
        Command::DeleteSequence { name } => {
            let result = client.delete_sequence(name.clone()).await?;
            Coordination::DeleteSequence { name, result }
        }
        other => return Err(ShellError::invalid(format!("not a lock or sequence command: {other:?}"))),
    })
}

/// Where a scan reads: the cluster, or an open transaction's view.
#[derive(Clone, Copy)]
enum Reader<'a> {
    Client(&'a Client),
    Txn(&'a Transaction),
}

/// Follows scan cursors until `limit` keys are collected or the scan is complete.
async fn scan(
    reader: Reader<'_>,
    prefix: String,
    options: ReadOptions,
    limit: usize,
    mut cursor: Option<String>,
) -> Result<Outcome, ShellError> {
    let mut all = Items { items: Vec::new(), next_cursor: None, served_by: 0 };
    loop {
        let page_items = (limit - all.items.len()).min(SCAN_PAGE_ITEMS);
        let page_limit = u32::try_from(page_items).unwrap_or(u32::MAX);
        let mut page_options = ScanOptions::new().read(options).limit(page_limit);
        page_options.cursor = cursor.clone();
        let page = match reader {
            Reader::Client(client) => client.scan(prefix.clone(), page_options).await?,
            Reader::Txn(txn) => txn.scan(prefix.clone(), page_options).await?,
        };
        all.items.extend(page.items);
        all.served_by = page.served_by;
        if page.next_cursor.is_some() && page.next_cursor == cursor {
            return Err(ShellError::new(
                "MalformedResponse",
                format!("scan of {prefix:?} returned its own cursor again"),
            ));
        }
        cursor = page.next_cursor;
        // A server may send more than asked; the excess is kept, never dropped silently.
        if cursor.is_none() || all.items.len() >= limit {
            break;
        }
    }
    let continue_with = cursor.as_ref().map(|cursor| {
        let e = if options.durability == Durability::Ephemeral { "e" } else { "" };
        let serializable = match options.consistency {
            Consistency::Serializable => " serializable",
            Consistency::Linearizable => "",
        };
        format!("{e}scan by prefix {} cursor {}{serializable}", quote(&prefix), quote(cursor))
    });
    all.next_cursor = cursor;
    Ok(Outcome::Scan { prefix, items: all, continue_with })
}
