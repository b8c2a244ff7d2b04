//! `kahuna check`: run a workload against a live cluster, keep the history, check it,
//! print the figures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

use super::{Tally, WorkloadKind, WorkloadOptions, WorkloadRun, check_workload, passed, run_workload};
use crate::report::{Report, Verdict};

/// Exit code when the checker found violations.
pub const EXIT_VIOLATIONS: u8 = 1;
/// Exit code when the run proves nothing: the checker could not decide, or no operation
/// succeeded.
pub const EXIT_UNDECIDED: u8 = 3;

/// Arguments of `kahuna check`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Exit status: 0 no violation, 1 violations found, 2 the run could not start \
                        (usage, unreachable cluster, setup failed), 3 undecided (the checker gave \
                        up, or no operation succeeded).")]
pub struct CheckArgs {
    /// Cluster endpoints, host:port, comma-separated.
    #[arg(long, env = "KAHUNA_ENDPOINTS", value_delimiter = ',', default_value = "127.0.0.1:2070")]
    pub endpoints: Vec<String>,
    /// What to run and check.
    #[arg(long, value_enum, default_value_t = WorkloadKind::Register)]
    pub workload: WorkloadKind,
    /// How long clients keep invoking operations, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub duration: u64,
    /// Concurrent clients.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub clients: usize,
    /// Keys the operations spread over: registers, locks, bank accounts, or lists in use
    /// at a time.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub keys: usize,
    /// Keeps the recorded history here as JSONL (a failing run's history is kept in the
    /// temporary directory when this is not given).
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// Prints the figures as one JSON document.
    #[arg(long)]
    pub json: bool,
    /// Budget of one attempt of a call, in ms; the client fails over after it.
    #[arg(long, value_name = "MS", default_value_t = 2_000)]
    pub timeout_ms: u64,
    /// Seeds the clients' choices of operations and keys (random when absent).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Clients send single-key calls (set, get, delete) over one stream per node
    /// (the client's pipeline) instead of one HTTP/2 stream per call.
    #[arg(long)]
    pub pipeline: bool,
}

impl CheckArgs {
    /// The workload options these arguments describe, with progress on.
    pub fn options(&self) -> WorkloadOptions {
        let mut options = WorkloadOptions::new(self.endpoints.iter().map(|e| e.trim()).filter(|e| !e.is_empty()));
        options.duration = Duration::from_secs(self.duration);
        options.clients = self.clients;
        options.keys = self.keys;
        options.timeout = Duration::from_millis(self.timeout_ms);
        if let Some(seed) = self.seed {
            options.seed = seed;
        }
        options.progress = true;
        options.pipeline = self.pipeline;
        options
    }
}

/// Runs `kahuna check`: the workload, the history saved, the checker, the figures on
/// stdout (progress on stderr).
///
/// Returns exit code 0 for a pass, [`EXIT_VIOLATIONS`] or [`EXIT_UNDECIDED`]; an error when
/// the run could not start (bad options, unreachable cluster, failed setup) or the history
/// could not be saved.
///
/// # Cancel safety
///
/// As for [`run_workload`](super::run_workload): a dropped run leaves its keys behind.
pub async fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let options = args.options();
    eprintln!(
        "kahuna check: {} workload, {} clients, {} keys, {} s against {} (seed {})",
        args.workload,
        options.clients,
        options.keys,
        args.duration,
        options.endpoints.join(","),
        options.seed
    );
    let run = run_workload(args.workload, &options).await?;
    let report = check_workload(args.workload, &run.history, options.keys);
    let pass = passed(report.verdict(), &run.tally);
    let history = save_history(&run, args.history.as_deref(), pass)?;
    let figures = Figures::new(&run, &options, report.as_ref(), history);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        print!("{}", figures.text(report.as_ref()));
    }
    Ok(match figures.verdict {
        Verdict::Valid if pass => ExitCode::SUCCESS,
        Verdict::Invalid => ExitCode::from(EXIT_VIOLATIONS),
        _ => ExitCode::from(EXIT_UNDECIDED),
    })
}

/// Saves the history where asked; a failing run's history is kept in the temporary
/// directory even when not asked. Returns where it went.
fn save_history(run: &WorkloadRun, asked: Option<&Path>, pass: bool) -> anyhow::Result<Option<PathBuf>> {
    let path = match asked {
        Some(path) => path.to_path_buf(),
        None if pass => return Ok(None),
        None => std::env::temp_dir().join(format!("{}-{}.jsonl", run.key_prefix, run.workload)),
    };
    let file = std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    run.history
        .to_jsonl(std::io::BufWriter::new(file))
        .with_context(|| format!("cannot write the history to {}", path.display()))?;
    Ok(Some(path))
}

/// What `kahuna check` prints, also as JSON.
#[derive(Debug, Serialize)]
struct Figures {
    workload: WorkloadKind,
    endpoints: Vec<String>,
    clients: usize,
    keys: usize,
    seed: u64,
    elapsed_s: f64,
    ops: Tally,
    ops_by_f: BTreeMap<String, Tally>,
    events: usize,
    /// `unknown` also when no operation succeeded, whatever the checker said.
    verdict: Verdict,
    violations: usize,
    history: Option<PathBuf>,
    report: Value,
}

impl Figures {
    fn new(run: &WorkloadRun, options: &WorkloadOptions, report: &dyn Report, history: Option<PathBuf>) -> Figures {
        let ops = run.history.operations().unwrap_or_default();
        let verdict = match report.verdict() {
            Verdict::Valid if run.tally.ok == 0 => Verdict::Unknown,
            verdict => verdict,
        };
        Figures {
            workload: run.workload,
            endpoints: options.endpoints.clone(),
            clients: options.clients,
            keys: options.keys,
            seed: options.seed,
            elapsed_s: run.elapsed.as_secs_f64(),
            ops: run.tally,
            ops_by_f: Tally::by_f(&ops),
            events: run.history.len(),
            verdict,
            violations: report.violations().len(),
            history,
            report: report.to_json(),
        }
    }

    fn text(&self, report: &dyn Report) -> String {
        let by_f: Vec<String> = self.ops_by_f.iter().map(|(f, t)| format!("{f} {}", t.total())).collect();
        let mut out = format!(
            "workload    {} ({} clients, {} keys, seed {}, {:.1} s)\n\
             operations  ok {}  failed {}  unknown {}  ({})\n\
             violations  {}\n\
             checker     {}\n",
            self.workload,
            self.clients,
            self.keys,
            self.seed,
            self.elapsed_s,
            self.ops.ok,
            self.ops.failed,
            self.ops.unknown,
            by_f.join(", "),
            self.violations,
            report.to_string().replace('\n', "\n            "),
        );
        if let Some(path) = &self.history {
            out.push_str(&format!("history     {} ({} events)\n", path.display(), self.events));
        }
        let verdict = match self.verdict {
            Verdict::Valid => "PASS",
            Verdict::Invalid => "FAIL: violations found",
            Verdict::Unknown if self.ops.ok == 0 => "UNDECIDED: no operation succeeded",
            Verdict::Unknown => "UNDECIDED: the checker could not decide",
        };
        out.push_str(verdict);
        out.push('\n');
        out
    }
}
