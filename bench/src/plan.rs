//! The flags checked and turned into what the clients run: the operation mix, the
//! keyspace, what to set up before the run, the value, and the open-loop send schedule.

use std::sync::Arc;
use std::time::Duration;

use kahuna_proto::routing::DEFAULT_PARTITIONS;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::args::{BenchArgs, KEY_BYTES_MAX, Target, VALUE_BYTES_MAX, Workload};
use crate::driver::{Keyspace, ReadMode};
use crate::keys::{self, KeySpace};
use crate::pairs::TxnPairs;

/// Bytes a transaction key adds to `--key-size` (`/0`, `/1`).
const TXN_KEY_SUFFIX_BYTES: usize = 2;

/// One benchmark operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Put(Keyspace),
    Get(Keyspace, ReadMode),
    /// Try-lock, then unlock when taken.
    LockCycle,
    SequenceNext,
    SequenceReserve(u64),
    Script,
    Txn(Span),
}

/// Where the two keys of a transaction live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Span {
    OnePartition,
    TwoPartitions,
}

/// What the runner writes or creates before the clients start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Preload {
    /// Every key of the keyspace, in this keyspace.
    Keys(Keyspace),
    /// Every transaction key (persistent).
    TxnKeys,
    /// Every sequence name.
    Sequences,
}

/// A checked benchmark: everything the runner needs besides the drivers.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) workload: Workload,
    pub(crate) clients: u32,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
    /// Total operations per second for the open loop; `None` for the closed loop.
    pub(crate) rate: Option<u64>,
    pub(crate) keys: KeySpace,
    /// The transaction keys, routed for the default partition count until the runner
    /// learns the system's own ([`Plan::with_partitions`]).
    pub(crate) pairs: TxnPairs,
    /// Values per sequence-reserve operation.
    pub(crate) reserve_count: u64,
    /// The bytes every write sends; shared by the clients.
    pub(crate) value: Arc<[u8]>,
    pub(crate) seed: u64,
}

impl Plan {
    /// Checks the flags that clap cannot check one by one.
    pub(crate) fn from_args(args: &BenchArgs) -> Result<Plan, String> {
        if args.endpoints.iter().all(|e| e.trim().is_empty()) {
            return Err("--endpoints names no endpoint".into());
        }
        if args.pipeline && args.target != Target::Kahuna {
            return Err(format!("--pipeline applies to Kahuna only, not to {}", args.target.name()));
        }
        if args.conns > args.clients {
            return Err(format!("--conns {} is more than --clients {}", args.conns, args.clients));
        }
        if args.key_size == 0 || args.key_size > KEY_BYTES_MAX {
            return Err(format!("--key-size {} must be 1 to {KEY_BYTES_MAX} bytes", args.key_size));
        }
        if matches!(args.workload, Workload::Txn | Workload::Txn2p)
            && args.key_size + TXN_KEY_SUFFIX_BYTES > KEY_BYTES_MAX
        {
            return Err(format!(
                "--key-size {} leaves no room for the {TXN_KEY_SUFFIX_BYTES} bytes a transaction key adds \
                 (at most {KEY_BYTES_MAX} bytes in all)",
                args.key_size
            ));
        }
        if args.value_size > VALUE_BYTES_MAX {
            return Err(format!("--value-size {} is above the maximum {VALUE_BYTES_MAX} bytes", args.value_size));
        }
        let keys = KeySpace::new(args.keys, args.key_size)?;
        let seed = args.seed.unwrap_or_else(rand::random);
        let value = keys::value(args.value_size, &mut SmallRng::seed_from_u64(seed));
        Ok(Plan {
            workload: args.workload,
            clients: args.clients,
            warmup: Duration::from_secs(args.warmup),
            duration: Duration::from_secs(args.duration),
            rate: args.rate,
            keys,
            pairs: TxnPairs::new(keys, DEFAULT_PARTITIONS),
            reserve_count: args.reserve_count,
            value: value.into(),
            seed,
        })
    }

    /// The plan for a system of `partitions` partitions (`None`: one log for all keys,
    /// routed as a Kahuna cluster of the default size would be). Fails for txn-2p when
    /// no two keys route to different partitions.
    pub(crate) fn with_partitions(mut self, partitions: Option<u32>) -> Result<Plan, String> {
        self.pairs = TxnPairs::new(self.keys, partitions.unwrap_or(DEFAULT_PARTITIONS));
        if self.workload == Workload::Txn2p {
            self.pairs.check_two_partitions()?;
        }
        Ok(self)
    }

    /// What to write or create before the run: the keys for workloads that read them, the
    /// sequences for the sequence workloads.
    pub(crate) fn preload(&self) -> Option<Preload> {
        match self.workload {
            Workload::Put | Workload::Eput | Workload::Lock => None,
            Workload::Get | Workload::GetSerializable | Workload::Mixed | Workload::Script => {
                Some(Preload::Keys(Keyspace::Persistent))
            }
            Workload::Eget => Some(Preload::Keys(Keyspace::Ephemeral)),
            Workload::SequenceNext | Workload::SequenceReserve => Some(Preload::Sequences),
            Workload::Txn | Workload::Txn2p => Some(Preload::TxnKeys),
        }
    }

    /// How many items `preload` writes or creates.
    pub(crate) fn preload_count(&self, preload: Preload) -> u64 {
        match preload {
            Preload::Keys(_) | Preload::Sequences => self.keys.count(),
            Preload::TxnKeys => self.pairs.count(),
        }
    }

    /// The next operation of a client.
    pub(crate) fn next_op(&self, rng: &mut impl Rng) -> Op {
        match self.workload {
            Workload::Put => Op::Put(Keyspace::Persistent),
            Workload::Get => Op::Get(Keyspace::Persistent, ReadMode::Linearizable),
            Workload::GetSerializable => Op::Get(Keyspace::Persistent, ReadMode::Serializable),
            Workload::Mixed if rng.random_bool(0.5) => Op::Put(Keyspace::Persistent),
            Workload::Mixed => Op::Get(Keyspace::Persistent, ReadMode::Linearizable),
            Workload::Eput => Op::Put(Keyspace::Ephemeral),
            Workload::Eget => Op::Get(Keyspace::Ephemeral, ReadMode::Linearizable),
            Workload::Lock => Op::LockCycle,
            Workload::SequenceNext => Op::SequenceNext,
            Workload::SequenceReserve => Op::SequenceReserve(self.reserve_count),
            Workload::Script => Op::Script,
            Workload::Txn => Op::Txn(Span::OnePartition),
            Workload::Txn2p => Op::Txn(Span::TwoPartitions),
        }
    }

    /// The random generator of client `index`: distinct per client, fixed by the seed.
    pub(crate) fn client_rng(&self, index: u32) -> SmallRng {
        SmallRng::seed_from_u64(self.seed ^ (u64::from(index) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }
}

/// The open-loop send times of one client: operation `k` is meant to go out at
/// `first + k * interval`. The clients' schedules interleave, so together they send
/// evenly at the total rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Schedule {
    first: Instant,
    interval_ns: u64,
}

impl Schedule {
    /// The schedule of client `index` of `clients` sharing `rate` operations per second
    /// from `start`.
    pub(crate) fn for_client(start: Instant, rate: u64, clients: u32, index: u32) -> Schedule {
        const NANOS_PER_S: u128 = 1_000_000_000;
        let rate = u128::from(rate.max(1));
        let offset_ns = u128::from(index) * NANOS_PER_S / rate;
        let interval_ns = u128::from(clients) * NANOS_PER_S / rate;
        Schedule {
            first: start + Duration::from_nanos(u64::try_from(offset_ns).unwrap_or(u64::MAX)),
            interval_ns: u64::try_from(interval_ns).unwrap_or(u64::MAX).max(1),
        }
    }

    /// When operation `k` is meant to be sent.
    pub(crate) fn intended(&self, k: u64) -> Instant {
        self.first + Duration::from_nanos(self.interval_ns.saturating_mul(k))
    }

    /// How many operations are meant to be sent before `t`.
    pub(crate) fn count_before(&self, t: Instant) -> u64 {
        let span_ns = t.saturating_duration_since(self.first).as_nanos();
        let count = span_ns.div_ceil(u128::from(self.interval_ns));
        u64::try_from(count).unwrap_or(u64::MAX)
    }
}

/// Where an open-loop operation's latency starts. When the client was still busy with its
/// previous operation at the intended time, the wait is the system's doing and counts, so
/// latency runs from the intended time (no coordinated omission). When the client was idle,
/// any lateness is the timer's, so latency runs from the actual send.
pub(crate) fn latency_start(intended: Instant, previous_done: Instant, sent: Instant) -> Instant {
    if previous_done > intended { intended } else { sent }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn plan(args: &[&str]) -> Result<Plan, String> {
        let cli = Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).unwrap();
        Plan::from_args(&cli.bench)
    }

    #[test]
    fn flags_that_do_not_fit_together_are_refused() {
        assert!(plan(&["--clients", "2", "--conns", "3"]).unwrap_err().contains("--conns 3"));
        assert!(plan(&["--target", "redis", "--pipeline"]).unwrap_err().contains("Kahuna only"));
        assert!(plan(&["--pipeline"]).is_ok());
        assert!(plan(&["--keys", "1000", "--key-size", "2"]).unwrap_err().contains("at least 3 bytes"));
        assert!(plan(&["--key-size", "0"]).is_err());
        assert!(plan(&["--key-size", "1025"]).is_err());
        assert!(plan(&["--value-size", "1048577"]).is_err());
        assert!(plan(&["--endpoints", " "]).is_err());
        assert!(plan(&["--value-size", "1048576", "--keys", "10", "--key-size", "1"]).is_ok());
    }

    #[test]
    fn seed_fixes_the_value_and_the_clients_choices() {
        let a = plan(&["--seed", "9", "--value-size", "32"]).unwrap();
        let b = plan(&["--seed", "9", "--value-size", "32"]).unwrap();
        assert_eq!(a.value, b.value);
        assert_eq!(a.value.len(), 32);
        let keys = |p: &Plan, i| {
            let mut rng = p.client_rng(i);
            (0..20).map(|_| p.keys.random_key(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(keys(&a, 0), keys(&b, 0));
        assert_ne!(keys(&a, 0), keys(&a, 1));
    }

    #[test]
    fn workloads_map_to_operations_and_preloads() {
        let mut rng = SmallRng::seed_from_u64(0);
        let op = |w: &str, rng: &mut SmallRng| plan(&["-w", w]).unwrap().next_op(rng);
        assert_eq!(op("put", &mut rng), Op::Put(Keyspace::Persistent));
        assert_eq!(op("get", &mut rng), Op::Get(Keyspace::Persistent, ReadMode::Linearizable));
        assert_eq!(op("get-serializable", &mut rng), Op::Get(Keyspace::Persistent, ReadMode::Serializable));
        assert_eq!(op("eput", &mut rng), Op::Put(Keyspace::Ephemeral));
        assert_eq!(op("eget", &mut rng), Op::Get(Keyspace::Ephemeral, ReadMode::Linearizable));
        assert_eq!(plan(&["-w", "put"]).unwrap().preload(), None);
        assert_eq!(plan(&["-w", "eput"]).unwrap().preload(), None);
        assert_eq!(plan(&["-w", "mixed"]).unwrap().preload(), Some(Preload::Keys(Keyspace::Persistent)));
        assert_eq!(plan(&["-w", "eget"]).unwrap().preload(), Some(Preload::Keys(Keyspace::Ephemeral)));

        assert_eq!(op("lock", &mut rng), Op::LockCycle);
        assert_eq!(op("sequence-next", &mut rng), Op::SequenceNext);
        assert_eq!(op("sequence-reserve", &mut rng), Op::SequenceReserve(100));
        assert_eq!(
            plan(&["-w", "sequence-reserve", "--reserve", "7"]).unwrap().next_op(&mut rng),
            Op::SequenceReserve(7)
        );
        assert_eq!(op("script", &mut rng), Op::Script);
        assert_eq!(op("txn", &mut rng), Op::Txn(Span::OnePartition));
        assert_eq!(op("txn-2p", &mut rng), Op::Txn(Span::TwoPartitions));
        assert_eq!(plan(&["-w", "lock"]).unwrap().preload(), None);
        assert_eq!(plan(&["-w", "script"]).unwrap().preload(), Some(Preload::Keys(Keyspace::Persistent)));
        assert_eq!(plan(&["-w", "sequence-next"]).unwrap().preload(), Some(Preload::Sequences));
        assert_eq!(plan(&["-w", "txn-2p"]).unwrap().preload(), Some(Preload::TxnKeys));

        let mixed = plan(&["-w", "mixed"]).unwrap();
        let puts = (0..10_000).filter(|_| matches!(mixed.next_op(&mut rng), Op::Put(_))).count();
        assert!((4_000..6_000).contains(&puts), "{puts} puts of 10000");
    }

    #[test]
    fn txn_plans_route_for_the_systems_partitions() {
        let txn = plan(&["-w", "txn", "--keys", "100"]).unwrap();
        assert_eq!(txn.preload_count(Preload::TxnKeys), 100);
        assert_eq!(txn.preload_count(Preload::Sequences), 100);
        // One partition: txn still works, txn-2p has no pair.
        assert!(txn.with_partitions(Some(1)).is_ok());
        let two = plan(&["-w", "txn-2p", "--keys", "100"]).unwrap();
        assert!(two.clone().with_partitions(Some(1)).unwrap_err().contains("two partitions"));
        assert!(two.clone().with_partitions(None).is_ok());
        assert!(two.with_partitions(Some(3)).is_ok());
        // A transaction key is two bytes longer than --key-size.
        assert!(plan(&["-w", "txn", "--key-size", "1023"]).unwrap_err().contains("2 bytes"));
        assert!(plan(&["-w", "put", "--key-size", "1024"]).is_ok());
    }

    #[test]
    fn schedules_interleave_at_the_total_rate() {
        let start = Instant::now();
        // 4 clients sharing 1000 ops/s: each sends every 4 ms, offset by 1 ms.
        let schedules: Vec<_> = (0..4).map(|i| Schedule::for_client(start, 1_000, 4, i)).collect();
        assert_eq!(schedules[0].intended(0), start);
        assert_eq!(schedules[1].intended(0), start + Duration::from_millis(1));
        assert_eq!(schedules[3].intended(2), start + Duration::from_millis(11));
        let mut times: Vec<_> = schedules.iter().flat_map(|s| (0..5).map(|k| s.intended(k))).collect();
        times.sort();
        for (n, t) in times.iter().enumerate() {
            assert_eq!(*t, start + Duration::from_millis(n as u64));
        }
    }

    #[test]
    fn count_before_counts_sends_strictly_before() {
        let start = Instant::now();
        let schedule = Schedule::for_client(start, 100, 1, 0); // every 10 ms from start
        assert_eq!(schedule.count_before(start), 0);
        assert_eq!(schedule.count_before(start + Duration::from_millis(1)), 1);
        assert_eq!(schedule.count_before(start + Duration::from_millis(10)), 1);
        assert_eq!(schedule.count_before(start + Duration::from_millis(11)), 2);
        assert_eq!(schedule.count_before(start + Duration::from_secs(1)), 100);
        let late = Schedule::for_client(start, 100, 2, 1); // every 20 ms from 10 ms
        assert_eq!(late.count_before(start + Duration::from_millis(5)), 0);
        assert_eq!(late.count_before(start + Duration::from_millis(31)), 2);
    }

    #[test]
    fn extreme_rates_keep_a_nonzero_interval() {
        let start = Instant::now();
        let schedule = Schedule::for_client(start, u64::MAX, 1, 0);
        assert!(schedule.intended(1) > schedule.intended(0));
    }

    #[test]
    fn latency_starts_at_the_intended_time_only_when_the_client_was_behind() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // Idle client, timer fired 1 ms late: the lateness is not the system's.
        assert_eq!(latency_start(t0 + ms(10), t0 + ms(5), t0 + ms(11)), t0 + ms(11));
        // Busy client: the previous reply came 7 ms after the intended send.
        assert_eq!(latency_start(t0 + ms(10), t0 + ms(17), t0 + ms(17)), t0 + ms(10));
    }
}
