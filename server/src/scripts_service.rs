//! The client-facing Scripts service: one [`ScriptEngine`] per node, each run a
//! transaction begun on this node's [`TxnEngine`], re-run by the engine on conflict.
//!
//! Lua runs on the CPU between its waits for reads, up to its time budget, so runs go to
//! a runtime of their own ([`ScriptRuntime`]) rather than the node's workers: a few
//! runaway scripts must not stall Raft heartbeats and every other request of the node.
//! At most [`SCRIPT_RUNS_MAX`] runs at a time; later ones wait for a slot. A run also
//! finishes when its caller goes away, so that its outcome never depends on a client's
//! timeout.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use kahuna_proto::v1::run_script_request::Script as ScriptField;
use kahuna_proto::v1::scripts_server::Scripts as ScriptsApi;
use kahuna_proto::v1::*;
use kahuna_script::{Script, ScriptArgs, ScriptEngine, ScriptError, ScriptHash};
use kahuna_txn::TxnEngine;
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};

use crate::convert::{script_value, script_value_to_proto};
use crate::status::{invalid, script_status};

/// Most scripts running at a time on one node.
pub const SCRIPT_RUNS_MAX: usize = 64;

pub struct ScriptsService {
    scripts: Arc<ScriptEngine>,
    runtime: ScriptRuntime,
    txns: TxnEngine,
    /// Timeout of the transaction each run begins.
    txn_timeout: Duration,
    runs: Arc<Semaphore>,
}

impl ScriptsService {
    pub fn new(scripts: ScriptEngine, txns: TxnEngine, txn_timeout: Duration) -> std::io::Result<Self> {
        Ok(Self {
            scripts: Arc::new(scripts),
            runtime: ScriptRuntime::start()?,
            txns,
            txn_timeout,
            runs: Arc::new(Semaphore::new(SCRIPT_RUNS_MAX)),
        })
    }

    fn node_id(&self) -> u64 {
        self.txns.kernel().node_id()
    }
}

/// Which script a request names, owned for the run's thread.
enum Named {
    Text(String),
    Hash(ScriptHash),
}

#[tonic::async_trait]
impl ScriptsApi for ScriptsService {
    async fn load(&self, request: Request<LoadScriptRequest>) -> Result<Response<LoadScriptResponse>, Status> {
        let source = request.into_inner().source;
        let scripts = self.scripts.clone();
        // Compiling a large text is CPU work too.
        let hash = tokio::task::spawn_blocking(move || scripts.load(&source))
            .await
            .map_err(|e| Status::internal(format!("script load failed: {e}")))?
            .map_err(script_status)?;
        Ok(Response::new(LoadScriptResponse { hash: hash.to_string(), served_by: self.node_id() }))
    }

    async fn run(&self, request: Request<RunScriptRequest>) -> Result<Response<RunScriptResponse>, Status> {
        let r = request.into_inner();
        let named = match r.script {
            Some(ScriptField::Source(text)) => Named::Text(text),
            Some(ScriptField::Hash(hash)) => Named::Hash(ScriptHash::from_str(hash.trim()).map_err(script_status)?),
            None => return Err(invalid("give the script's source or its hash")),
        };
        let args = ScriptArgs {
            positional: r.args.into_iter().map(script_value).collect(),
            named: r.named_args.into_iter().map(|(k, v)| (k, script_value(v))).collect(),
        };
        let permit = self.runs.clone().acquire_owned().await.map_err(|_| Status::unavailable("node is stopping"))?;
        let (scripts, txns, timeout) = (self.scripts.clone(), self.txns.clone(), self.txn_timeout);
        let output = self
            .runtime
            .spawn(async move {
                let _permit = permit;
                let source = || async { Ok::<_, ScriptError>(txns.begin(Some(timeout)).await?) };
                let script = match &named {
                    Named::Text(text) => Script::Text(text),
                    Named::Hash(hash) => Script::Hash(*hash),
                };
                scripts.run_with_retries(script, &args, &source).await
            })
            .await
            .map_err(|e| Status::internal(format!("script run failed: {e}")))?
            .map_err(script_status)?;
        Ok(Response::new(RunScriptResponse {
            value: Some(script_value_to_proto(output.value)),
            hash: output.hash.to_string(),
            commit_ts: output.commit_ts,
            attempts: output.attempts,
            served_by: self.node_id(),
        }))
    }
}

/// The runtime scripts run on, with threads of its own (as many as the machine's cores):
/// a script holds its thread while Lua computes, up to its time budget, and a C function
/// such as a backtracking pattern match even past it. On the node's runtime that would
/// stall Raft's heartbeats; on a blocking-pool thread per run (as before) every wait of a
/// run for its read or commit cost a thread wake-up, about a tenth of a busy node's CPU.
struct ScriptRuntime {
    handle: tokio::runtime::Handle,
    /// Taken only by `drop`.
    runtime: Option<tokio::runtime::Runtime>,
}

impl ScriptRuntime {
    fn start() -> std::io::Result<Self> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("kahuna-script")
            .enable_all()
            .build()?;
        Ok(Self { handle: runtime.handle().clone(), runtime: Some(runtime) })
    }

    fn spawn<F>(&self, run: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(run)
    }
}

impl Drop for ScriptRuntime {
    /// Dropped inside the node's runtime, where waiting for the runs to end would block a
    /// worker: the runs still going are cancelled (their transactions roll back).
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
