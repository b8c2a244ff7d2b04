//! The `kahuna` binary: command-line dispatch only.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// glibc malloc was ~12 % of a node's CPU under load (perf, 3 nodes, 64 clients): the
// Raft and gRPC paths allocate many short-lived buffers across threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "kahuna", version, about = "A replicated coordination store: keys, locks, sequences, transactions")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node (a single node with no flags; a cluster with --peers).
    Serve(kahuna_server::ServeArgs),
    /// Open the shell, or run commands with -c / -f / stdin.
    Shell(kahuna_shell::ShellArgs),
    /// Measure throughput and latency of a workload against a cluster.
    Bench(kahuna_bench::BenchArgs),
    /// Run a workload against a live cluster and check the recorded history.
    Check(kahuna_check::CheckArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kahuna: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve(args) => {
            init_logging("info");
            match runtime.block_on(kahuna_server::serve(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("kahuna serve: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Shell(args) => {
            init_logging("warn");
            match runtime.block_on(kahuna_shell::run(args)) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("kahuna shell: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check(args) => {
            init_logging("warn");
            match runtime.block_on(kahuna_check::run(args)) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("kahuna check: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Bench(args) => {
            init_logging("warn");
            match runtime.block_on(kahuna_bench::run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("kahuna bench: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KAHUNA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{default},openraft=warn")));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
