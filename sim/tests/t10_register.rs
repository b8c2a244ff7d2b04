//! The workloads under faults, one simulated cluster per seed: the register workload
//! (whence the name), with the lock, sequence and append workloads running beside it.
//!
//! `seeds` runs CI's fixed seeds, or the one in `KAHUNA_SIM_SEED`, several at once on
//! threads of their own. A failure prints the seed, the command that reruns it, the
//! nemesis's actions and where the histories were saved (one JSONL file per workload).
//! `same_seed_same_history` runs one seed twice at once and compares the histories.
//!
//! Environment: `KAHUNA_SIM_SEED` (one seed), `KAHUNA_SIM_SECONDS` (simulated seconds of
//! faults, default 20), `KAHUNA_SIM_CLIENTS` (clients per workload, changed from the
//! defaults, e.g. `lock=0,append=5`), `KAHUNA_SIM_JOBS` (seeds run at once, default the
//! CPUs), `KAHUNA_SIM_LOG` (a tracing filter, e.g. `info` or `kahuna_kernel=debug`),
//! `KAHUNA_SIM_DIR` (where failing histories go; default the system's temp dir),
//! `KAHUNA_SIM_SAVE` (set: save every history there).

use std::time::{Duration, Instant};

use kahuna_sim::{DETERMINISTIC, SimConfig, SimRun, reproduce_command, run};

/// The seeds CI runs.
const CI_SEEDS: &[u64] = &[1, 2, 3, 4, 5, 6, 7, 8];
/// The seed run twice for the determinism check.
const DETERMINISM_SEED: u64 = 11;

fn config(seed: u64) -> SimConfig {
    let mut config = SimConfig::new(seed);
    if let Some(secs) = std::env::var("KAHUNA_SIM_SECONDS").ok().and_then(|s| s.parse().ok()) {
        config.active = Duration::from_secs(secs);
    }
    if let Ok(overrides) = std::env::var("KAHUNA_SIM_CLIENTS") {
        config.clients = config.clients.with(&overrides).expect("KAHUNA_SIM_CLIENTS is like lock=0,append=5");
    }
    config
}

/// Runs `seed`; on failure prints everything needed to chase it and returns the reason.
fn run_seed(seed: u64) -> Result<SimRun, String> {
    let config = config(seed);
    let started = Instant::now();
    let outcome = run(&config);
    let wall = started.elapsed();
    let run = match outcome {
        Ok(run) => run,
        Err(e) => return Err(format!("seed {seed}: {e}\n  reproduce: {}{}", reproduce_command(&config), caveat())),
    };
    println!("{} ({:.1}s wall)", run.summary(), wall.as_secs_f64());
    let failures = run.failures();
    if failures.is_empty() && std::env::var_os("KAHUNA_SIM_SAVE").is_none() {
        return Ok(run);
    }
    let dir = std::env::var("KAHUNA_SIM_DIR").map_or_else(|_| std::env::temp_dir().join("kahuna-sim"), Into::into);
    let saved = save(&run, &dir, seed);
    if failures.is_empty() {
        println!("  {saved}");
        return Ok(run);
    }
    Err(format!(
        "seed {seed} FAILED: {}\n  setup: {}\n  faults:\n    {}\n  {saved}\n  reproduce: {}{}",
        failures.join("; "),
        run.setup,
        run.faults.join("\n    "),
        reproduce_command(&config),
        caveat()
    ))
}

/// Saves each workload's history as `seed-N-WORKLOAD.jsonl` in `dir`; says where.
fn save(run: &SimRun, dir: &std::path::Path, seed: u64) -> String {
    let mut saved = Vec::new();
    for (workload, checked) in &run.checked {
        let path = dir.join(format!("seed-{seed}-{}.jsonl", workload.name()));
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::File::create(&path))
            .and_then(|file| checked.history.to_jsonl(std::io::BufWriter::new(file)));
        if let Err(e) = written {
            return format!("histories not saved: {}: {e}", path.display());
        }
        saved.push(path.display().to_string());
    }
    format!("histories saved to {}", saved.join(", "))
}

/// What a failure of a build without `--cfg tokio_unstable` must add to its command.
fn caveat() -> &'static str {
    if DETERMINISTIC {
        ""
    } else {
        "\n  (this build was not deterministic, so the command replays a close relative of this run: \
         run it a few times, or rerun the seed without RUSTFLAGS)"
    }
}

/// Runs `seeds` on up to `KAHUNA_SIM_JOBS` threads at once (default: the CPUs); returns
/// the failures. A run is one thread's: turmoil keeps its world per thread, and nothing
/// of a run depends on what other threads do, so parallel runs replay as sequential ones.
fn run_seeds(seeds: &[u64]) -> Vec<String> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let jobs = std::env::var("KAHUNA_SIM_JOBS").ok().and_then(|j| j.parse().ok()).unwrap_or(cpus).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(seeds.len()) {
            scope.spawn(|| {
                while let Some(seed) = seeds.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
                    if let Err(failure) = run_seed(*seed) {
                        failed.lock().unwrap_or_else(|p| p.into_inner()).push((*seed, failure));
                    }
                }
            });
        }
    });
    let mut failed = failed.into_inner().unwrap_or_else(|p| p.into_inner());
    failed.sort_by_key(|(seed, _)| *seed);
    failed.into_iter().map(|(_, failure)| failure).collect()
}

#[test]
fn seeds() {
    kahuna_sim::init_tracing_from_env();
    let seeds: Vec<u64> = match std::env::var("KAHUNA_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("KAHUNA_SIM_SEED is a number")],
        Err(_) => CI_SEEDS.to_vec(),
    };
    let failed = run_seeds(&seeds);
    assert!(failed.is_empty(), "{} of {} seeds failed:\n{}", failed.len(), seeds.len(), failed.join("\n"));
}

#[test]
#[cfg_attr(
    not(tokio_unstable),
    ignore = "one seed gives one run only with RUSTFLAGS=\"--cfg tokio_unstable\" (tokio's RNG is seeded then)"
)]
fn same_seed_same_history() {
    kahuna_sim::init_tracing_from_env();
    // The two runs at once, on two threads, as `seeds` runs seeds: what one run does must
    // not depend on another running beside it.
    let (first, second) = std::thread::scope(|scope| {
        let first = scope.spawn(|| run(&config(DETERMINISM_SEED)));
        let second = run(&config(DETERMINISM_SEED));
        (first.join(), second)
    });
    let first = first.expect("the first run did not panic").expect("the first run completes");
    let second = second.expect("the second run completes");
    println!("{}\n{}", first.summary(), second.summary());
    assert_eq!(first.faults, second.faults, "the nemesis acted differently");
    assert_eq!(
        first.history_hash,
        second.history_hash,
        "seed {DETERMINISM_SEED} gave two different histories ({} and {} events); rerun with {}",
        events(&first),
        events(&second),
        reproduce_command(&config(DETERMINISM_SEED))
    );
}

/// Events recorded by every workload of a run.
fn events(run: &SimRun) -> usize {
    run.checked.values().map(|c| c.history.len()).sum()
}
