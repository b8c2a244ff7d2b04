//! Output: the progress bar and notes on stderr, the summary on stdout as text or JSON.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::args::{BenchArgs, Workload};
use crate::plan::Plan;
use crate::stats::Summary;

/// Where progress goes: bars only on a terminal and never with `--json`; notes on stderr
/// unless `--json`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Progress {
    notes: bool,
    bars: bool,
}

impl Progress {
    pub(crate) fn new(json: bool) -> Progress {
        Progress { notes: !json, bars: !json && std::io::stderr().is_terminal() }
    }

    /// Prints a line on stderr unless the output is JSON.
    pub(crate) fn note(&self, text: &str) {
        if self.notes {
            eprintln!("{text}");
        }
    }

    /// A bar over the preload's `count` items, named by `noun` ("keys", "sequences").
    pub(crate) fn preload_bar(&self, count: u64, noun: &str) -> ProgressBar {
        self.bar(count, &format!("preload  [{{bar:40}}] {{pos}}/{{len}} {noun}"))
    }

    /// A bar over the run's `total` time, in milliseconds, with a message slot.
    pub(crate) fn run_bar(&self, total: Duration) -> ProgressBar {
        let total_ms = u64::try_from(total.as_millis()).unwrap_or(u64::MAX);
        self.bar(total_ms, "{elapsed:>4} [{bar:40}] {msg}")
    }

    fn bar(&self, len: u64, template: &str) -> ProgressBar {
        if !self.bars {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len);
        // The templates are constants; should one not parse, the default style serves.
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    }
}

/// The `--json` object: the run's settings, then the summary's fields.
#[derive(Serialize)]
struct JsonReport<'a> {
    target: &'static str,
    workload: &'static str,
    endpoints: &'a [String],
    clients: u32,
    conns: u32,
    /// Kahuna only: whether the client pipelined single-key calls.
    pipeline: bool,
    rate: Option<u64>,
    duration_s: u64,
    warmup_s: u64,
    keys: u64,
    key_size: usize,
    value_size: usize,
    /// Values per operation, for sequence-reserve only.
    #[serde(skip_serializing_if = "Option::is_none")]
    reserve: Option<u64>,
    seed: u64,
    #[serde(flatten)]
    summary: &'a Summary,
}

/// Prints the summary on stdout.
pub(crate) fn print(args: &BenchArgs, plan: &Plan, summary: &Summary) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if args.json {
        let report = JsonReport {
            target: args.target.name(),
            workload: args.workload.name(),
            endpoints: &args.endpoints,
            clients: args.clients,
            conns: args.conns,
            pipeline: args.pipeline,
            rate: args.rate,
            duration_s: args.duration,
            warmup_s: args.warmup,
            keys: args.keys,
            key_size: args.key_size,
            value_size: args.value_size,
            reserve: reserve(args),
            seed: plan.seed,
            summary,
        };
        serde_json::to_writer(&mut out, &report)?;
        writeln!(out)?;
    } else {
        out.write_all(text(args, plan, summary).as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// The `--reserve` count when the workload uses it.
fn reserve(args: &BenchArgs) -> Option<u64> {
    (args.workload == Workload::SequenceReserve).then_some(args.reserve_count)
}

/// The summary for people: a header and aligned figures.
fn text(args: &BenchArgs, plan: &Plan, summary: &Summary) -> String {
    let lines = [
        format!(
            "{} {}: {} clients over {} conns{}, {}, {} s after {} s warmup",
            args.target.name(),
            args.workload.name(),
            args.clients,
            args.conns,
            if args.pipeline { " (pipelined)" } else { "" },
            args.rate.map_or_else(|| "closed loop".to_owned(), |rate| format!("open loop at {rate} ops/s")),
            args.duration,
            args.warmup,
        ),
        format!(
            "  {} keys of {} B, values of {} B, {}seed {}",
            args.keys,
            args.key_size,
            args.value_size,
            reserve(args).map_or_else(String::new, |count| format!("{count} values per reserve, ")),
            plan.seed
        ),
        format!("  ops          {}", summary.ops),
        format!("  errors       {}", summary.errors),
        format!("  ops/s        {:.1}", summary.ops_per_sec),
        format!(
            "  latency ms   p50 {:.3}  p99 {:.3}  p999 {:.3}  max {:.3}",
            summary.p50_ms, summary.p99_ms, summary.p999_ms, summary.max_ms
        ),
    ];
    let mut text = lines.join("\n") + "\n";
    if summary.misses > 0 {
        text += &format!("  misses       {} (reads that found no key, locks another client held)\n", summary.misses);
    }
    if summary.unsent > 0 {
        text += &format!("  unsent       {} (due but never sent: the rate is above capacity)\n", summary.unsent);
    }
    for (kind, count) in &summary.error_kinds {
        text += &format!("  error {kind:<12} {count}\n");
    }
    if let Some(first) = &summary.first_error {
        text += &format!("  first error  {first}\n");
    }
    text
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn summary() -> Summary {
        Summary {
            ops: 1_000,
            errors: 2,
            misses: 0,
            unsent: 0,
            elapsed_s: 10.0,
            ops_per_sec: 100.0,
            p50_ms: 1.5,
            p99_ms: 3.25,
            p999_ms: 4.0,
            max_ms: 9.0,
            mean_ms: 1.6,
            error_kinds: BTreeMap::from([("Timeout".to_owned(), 2)]),
            first_error: Some("Timeout: slow".into()),
        }
    }

    #[test]
    fn json_report_has_settings_and_flat_figures() {
        let args = Cli::try_parse_from(["bench", "--seed", "5", "--endpoints", "a:1"]).unwrap().bench;
        let plan = Plan::from_args(&args).unwrap();
        let summary = summary();
        let report = JsonReport {
            target: "kahuna",
            workload: args.workload.name(),
            endpoints: &args.endpoints,
            clients: args.clients,
            conns: args.conns,
            pipeline: args.pipeline,
            rate: args.rate,
            duration_s: args.duration,
            warmup_s: args.warmup,
            keys: args.keys,
            key_size: args.key_size,
            value_size: args.value_size,
            reserve: reserve(&args),
            seed: plan.seed,
            summary: &summary,
        };
        let value = serde_json::to_value(&report).unwrap();
        assert_eq!(value["workload"], "put");
        assert_eq!(value["seed"], 5);
        assert_eq!(value["rate"], serde_json::Value::Null);
        assert_eq!(value["ops"], 1_000);
        assert_eq!(value["p99_ms"], 3.25);
        assert_eq!(value["error_kinds"]["Timeout"], 2);
        assert!(value.get("reserve").is_none());
    }

    #[test]
    fn reserve_count_shows_for_sequence_reserve_only() {
        let args = Cli::try_parse_from(["bench", "-w", "sequence-reserve", "--reserve", "50"]).unwrap().bench;
        assert_eq!(reserve(&args), Some(50));
        let plan = Plan::from_args(&args).unwrap();
        assert!(text(&args, &plan, &summary()).contains("50 values per reserve"));
        let args = Cli::try_parse_from(["bench", "-w", "sequence-next", "--reserve", "50"]).unwrap().bench;
        assert_eq!(reserve(&args), None);
    }

    #[test]
    fn text_names_the_run_and_the_errors() {
        let args = Cli::try_parse_from(["bench", "--seed", "5", "--rate", "200"]).unwrap().bench;
        let plan = Plan::from_args(&args).unwrap();
        let text = text(&args, &plan, &summary());
        assert!(text.starts_with("kahuna put: 16 clients over 1 conns, open loop at 200 ops/s, 10 s"), "{text}");
        assert!(text.contains("p50 1.500  p99 3.250  p999 4.000  max 9.000"), "{text}");
        assert!(text.contains("error Timeout"), "{text}");
        assert!(text.contains("first error  Timeout: slow"), "{text}");
    }
}
