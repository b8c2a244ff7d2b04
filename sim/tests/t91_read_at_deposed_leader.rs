//! A leader cut off from its peers keeps believing it leads; a linearizable read sent to
//! it after a newer leader acknowledged a write must not answer the older value. The
//! read is in flight when the old leader's link to the new one heals, so the new leader
//! answers the old one's request to confirm its leadership (`kernel/src/leadership.rs`):
//! it must say no. A node that confirmed any vote it was asked about fails here (checked
//! by making `leadership::answer` say yes to everything: the read answered "before").
//!
//! `KAHUNA_SIM_LOG` (a tracing filter, e.g. `kahuna_kernel=debug`) shows the rounds.

use kahuna_sim::read_at_deposed_leader;

#[test]
fn a_deposed_leader_does_not_serve_a_stale_linearizable_read() {
    kahuna_sim::init_tracing_from_env();
    let mut stale = Vec::new();
    for seed in 1..=3 {
        let run = read_at_deposed_leader(seed).expect("the scenario runs");
        println!("seed {seed}: read {:?}", run.read);
        for line in &run.log {
            println!("  {line}");
        }
        if let Ok(value) = &run.read
            && value.as_deref() != Some(run.acknowledged.as_str())
        {
            stale.push(format!("seed {seed}: {value:?}"));
        }
    }
    assert!(
        stale.is_empty(),
        "the deposed leader answered a value older than the acknowledged one: {}",
        stale.join("; ")
    );
}
