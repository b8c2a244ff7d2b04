//! Regression: a partition whose writes all timed out, for good, on one node, seen by
//! `t10_register::seeds` (seed 3 in one CI run: locks, sequences and appends not served
//! within 30 s of the faults' end while reads were).
//!
//! A leader cut off from its peers takes a write into its log; the others elect a new
//! leader, which snapshots and purges its log past the old one's. When the cut heals, the
//! old leader catches up by a snapshot covering its uncommitted entry, and openraft 0.9
//! purges that entry without answering its `client_write`, which waited forever and kept
//! the partition's one proposal slot on that node (`kernel/src/partition/proposals.rs`).
//! Leading again, the node queued every write behind it. The fix settles such an entry
//! once the node has applied past it (`raft_answer`); before it, the write here timed out.
//!
//! `KAHUNA_SIM_LOG` (a tracing filter, e.g. `openraft=info`) shows the snapshot.

use kahuna_sim::write_swallowed_by_snapshot;

#[test]
fn a_write_swallowed_by_a_snapshot_does_not_block_the_partition() {
    kahuna_sim::init_tracing_from_env();
    let mut blocked = Vec::new();
    for seed in 1..=2 {
        let run = write_swallowed_by_snapshot(seed).expect("the scenario runs");
        println!("seed {seed}: cut-off write {:?}, write after {:?}", run.cut_off_write, run.write_after);
        for line in &run.log {
            println!("  {line}");
        }
        // Without a snapshot over the uncommitted entry, this is not the case the test is for.
        assert!(run.snapshots_installed > 0, "seed {seed}: the cut-off leader caught up without a snapshot");
        if let Err(e) = &run.write_after {
            blocked.push(format!("seed {seed}: {e}"));
        }
    }
    assert!(blocked.is_empty(), "the node leading again did not take a write: {}", blocked.join("; "));
}
