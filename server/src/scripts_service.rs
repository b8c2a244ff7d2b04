//! The client-facing Scripts service: one [`ScriptEngine`] per node, each run a
//! transaction begun on this node's [`TxnEngine`], re-run by the engine on conflict.
//!
//! Lua runs on the CPU between its waits for reads, up to its time budget, so runs go to
//! a runtime of their own ([`ScriptRuntime`]) rather than the node's workers: a few
//! runaway scripts must not stall Raft heartbeats and every other request of the node.
//! At most [`SCRIPT_RUNS_MAX`] runs at a time; later ones wait for a slot. A run also
//! finishes when its caller goes away, so that its outcome never depends on a client's
//! timeout.

use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use kahuna_proto::v1::run_script_request::Script as ScriptField;
use kahuna_proto::v1::scripts_server::Scripts as ScriptsApi;
use kahuna_proto::v1::*;
use kahuna_script::{Script, ScriptArgs, ScriptEngine, ScriptError, ScriptHash};
use kahuna_txn::TxnEngine;
use tokio::runtime::{Handle, Runtime};
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
            runtime: ScriptRuntime::new()?,
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
        let hash = self
            .runtime
            .spawn(async move { scripts.load(&source) })?
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
            })?
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
///
/// Runs are polled in the node runtime's context ([`InNodeContext`]): a task that a run
/// starts, such as the outbox and connection of a peer that its transaction reaches
/// first, belongs to the node's runtime, so Raft's traffic never waits behind Lua.
struct ScriptRuntime {
    /// The node's runtime, the one that made this one.
    node: Handle,
    /// Started by the first load or run, so that a node that never runs a script has no
    /// script threads.
    runtime: OnceLock<Runtime>,
}

impl ScriptRuntime {
    /// The scripts' runtime, not started yet; make it inside the node's runtime.
    fn new() -> std::io::Result<Self> {
        let node = Handle::try_current().map_err(std::io::Error::other)?;
        Ok(Self { node, runtime: OnceLock::new() })
    }

    /// Spawns `run` on the scripts' threads, polled in the node runtime's context; starts
    /// the threads first if this is the first run.
    fn spawn<F>(&self, run: F) -> Result<tokio::task::JoinHandle<F::Output>, Status>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let runtime =
            self.runtime().map_err(|e| Status::unavailable(format!("cannot start the scripts' threads: {e}")))?;
        Ok(runtime.spawn(InNodeContext { node: self.node.clone(), run: Box::pin(run) }))
    }

    fn runtime(&self) -> std::io::Result<&Runtime> {
        if let Some(runtime) = self.runtime.get() {
            return Ok(runtime);
        }
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let built = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("kahuna-script")
            .enable_all()
            .build()?;
        // Two first runs may race; the runtime that lost is shut down, not dropped (a
        // runtime must not be dropped inside another).
        if let Err(lost) = self.runtime.set(built) {
            lost.shutdown_background();
        }
        self.runtime.get().ok_or_else(|| std::io::Error::other("the scripts' runtime was not kept"))
    }
}

/// A run polled on a script thread with the node's runtime entered, as it was when runs
/// were `block_on` the node's handle: `tokio::spawn`, timers and sockets made while it
/// runs belong to the node's runtime.
struct InNodeContext<F> {
    node: Handle,
    run: Pin<Box<F>>,
}

impl<F: Future> Future for InNodeContext<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let _node = this.node.enter();
        this.run.as_mut().poll(cx)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The test's runtime is a current-thread one, the scripts' a multi-thread one: what a
    /// run spawns must land on the former.
    #[tokio::test]
    async fn what_a_run_spawns_belongs_to_the_node_runtime() {
        let scripts = ScriptRuntime::new().expect("made in a runtime");
        assert!(scripts.runtime.get().is_none(), "no script threads before the first run");
        let flavors = scripts
            .spawn(async {
                let run_on = std::thread::current().name().map(str::to_owned);
                let spawned = tokio::spawn(async { Handle::current().runtime_flavor() }).await.expect("spawned task");
                (run_on, Handle::current().runtime_flavor(), spawned)
            })
            .expect("the scripts' threads start")
            .await
            .expect("the run");
        let (run_on, context, spawned) = flavors;
        assert_eq!(run_on.as_deref(), Some("kahuna-script"), "the run itself is polled on a script thread");
        assert_eq!(context, tokio::runtime::RuntimeFlavor::CurrentThread);
        assert_eq!(spawned, tokio::runtime::RuntimeFlavor::CurrentThread);
    }
}
