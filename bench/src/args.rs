//! Command-line flags of `kahuna bench` and their limits.

/// Most concurrent clients; each keeps its own latency histogram (about 140 KiB).
pub const CLIENTS_MAX: u32 = 1_024;
/// Longest measured run, in seconds.
pub const DURATION_S_MAX: u64 = 86_400;
/// Longest warmup, in seconds.
pub const WARMUP_S_MAX: u64 = 3_600;
/// Largest keyspace; get workloads write every key once before they start.
pub const KEYS_MAX: u64 = 100_000_000;
/// Longest key, as Kahuna allows.
pub const KEY_BYTES_MAX: usize = 1_024;
/// Largest value, as Kahuna allows by default.
pub const VALUE_BYTES_MAX: usize = 1 << 20;
/// Highest open-loop rate, in operations per second.
pub const RATE_MAX: u64 = 10_000_000;
/// Largest `--reserve` count, as Kahuna allows (the kernel's `RESERVE_COUNT_MAX`).
pub const RESERVE_COUNT_MAX: u64 = 1_000_000;

/// The system under test. The peers (etcd, Redis) need a build with the cargo feature
/// `peers`; without it they parse but the run stops with an error saying so.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// A Kahuna cluster, through `kahuna-client`.
    #[default]
    Kahuna,
    /// An etcd cluster, through `etcd-client` (feature `peers`).
    Etcd,
    /// One Redis server, through the `redis` crate (feature `peers`); the first endpoint.
    Redis,
}

impl Target {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Target::Kahuna => "kahuna",
            Target::Etcd => "etcd",
            Target::Redis => "redis",
        }
    }
}

/// What every client does, over and over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Unconditional persistent sets of random keys.
    #[default]
    Put,
    /// Linearizable gets of random preloaded keys.
    Get,
    /// Serializable gets (any replica, possibly stale) of random preloaded keys.
    GetSerializable,
    /// Half persistent sets, half linearizable gets, over preloaded keys.
    Mixed,
    /// Unconditional ephemeral sets of random keys.
    Eput,
    /// Gets of random preloaded ephemeral keys.
    Eget,
    /// Try-lock (no waiting) then unlock of random lock names; one operation is the cycle,
    /// and a lock another client holds is a miss (not unlocked).
    Lock,
    /// Next value of a random sequence (the sequences are created before the run).
    SequenceNext,
    /// A range of `--reserve` values of a random sequence.
    SequenceReserve,
    /// A Lua script run by hash (loaded before the run) that reads one random preloaded
    /// key and writes it back incremented.
    Script,
    /// A transaction that reads two preloaded keys of one bucket (so one partition),
    /// writes both and commits; a conflict counts as an error.
    Txn,
    /// As txn, over two keys in buckets of two different partitions.
    #[value(name = "txn-2p")]
    Txn2p,
}

impl Workload {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Get => "get",
            Workload::GetSerializable => "get-serializable",
            Workload::Mixed => "mixed",
            Workload::Eput => "eput",
            Workload::Eget => "eget",
            Workload::Lock => "lock",
            Workload::SequenceNext => "sequence-next",
            Workload::SequenceReserve => "sequence-reserve",
            Workload::Script => "script",
            Workload::Txn => "txn",
            Workload::Txn2p => "txn-2p",
        }
    }

    /// Every workload, in the order of the docs.
    pub const ALL: [Workload; 12] = [
        Workload::Put,
        Workload::Get,
        Workload::GetSerializable,
        Workload::Mixed,
        Workload::Eput,
        Workload::Eget,
        Workload::Lock,
        Workload::SequenceNext,
        Workload::SequenceReserve,
        Workload::Script,
        Workload::Txn,
        Workload::Txn2p,
    ];
}

/// Flags of `kahuna bench`.
///
/// Runs one workload for `--warmup` plus `--duration` seconds and prints ops, errors,
/// ops/s and latency percentiles of the measured part. Get, mixed, script and txn
/// workloads first write every key of the keyspace once; sequence workloads first create
/// `--keys` sequences; the script workload first loads its script on every connection.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct BenchArgs {
    /// System under test; etcd and redis need a build with the cargo feature `peers`.
    #[arg(long, value_enum, default_value_t = Target::Kahuna)]
    pub target: Target,

    /// Nodes to talk to, tried in order when one is down (etcd: its client endpoints;
    /// Redis: the first one is the server).
    #[arg(
        long,
        value_name = "HOST:PORT[,...]",
        env = "KAHUNA_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2070"
    )]
    pub endpoints: Vec<String>,

    /// Operations to run.
    #[arg(short, long, value_enum, default_value_t = Workload::Put)]
    pub workload: Workload,

    /// Concurrent clients, each its own task with one operation in flight.
    #[arg(short, long, value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(CLIENTS_MAX)))]
    pub clients: u32,

    /// Separate connections (client objects) the clients share round-robin; at most
    /// --clients.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(CLIENTS_MAX)))]
    pub conns: u32,

    /// Measured time, in seconds.
    #[arg(short, long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=DURATION_S_MAX))]
    pub duration: u64,

    /// Unmeasured load before the measured time, in seconds (connections, caches, leaders).
    #[arg(long, value_name = "SECS", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(0..=WARMUP_S_MAX))]
    pub warmup: u64,

    /// Open loop: send this many operations per second in total, on a fixed schedule,
    /// instead of each client sending as fast as replies come back.
    #[arg(long, value_name = "OPS", value_parser = clap::value_parser!(u64).range(1..=RATE_MAX))]
    pub rate: Option<u64>,

    /// Number of distinct keys, picked uniformly at random (lock and sequence workloads:
    /// of lock and sequence names; txn workloads: of keys, two per bucket).
    #[arg(long, value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=KEYS_MAX))]
    pub keys: u64,

    /// Key length in bytes (zero-padded decimal key numbers).
    #[arg(long, value_name = "BYTES", default_value_t = 8)]
    pub key_size: usize,

    /// Value length in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 256)]
    pub value_size: usize,

    /// Values each operation of the sequence-reserve workload takes.
    #[arg(long = "reserve", value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=RESERVE_COUNT_MAX))]
    pub reserve_count: u64,

    /// Seed of the key choices and the value bytes; random when absent.
    #[arg(long)]
    pub seed: Option<u64>,

    /// Budget of one attempt of each call, in milliseconds.
    #[arg(long = "timeout", value_name = "MS", default_value_t = kahuna_client::TIMEOUT_MS_DEFAULT)]
    pub timeout_ms: u64,

    /// Kahuna only: build the client with `pipeline(true)`, so that single-key calls
    /// (set, get) share one stream per node, several to a message (as the Redis driver's
    /// multiplexed connection pipelines its commands).
    #[arg(long)]
    pub pipeline: bool,

    /// Prints the summary as one JSON object and hides the progress bar.
    #[arg(long)]
    pub json: bool,
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

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).map(|cli| cli.bench)
    }

    #[test]
    fn defaults_match_etcds_benchmark_sizes() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.target, Target::Kahuna);
        assert_eq!(args.workload, Workload::Put);
        assert_eq!(args.clients, 16);
        assert_eq!(args.conns, 1);
        assert_eq!(args.duration, 10);
        assert_eq!(args.warmup, 1);
        assert_eq!(args.rate, None);
        assert_eq!(args.keys, 10_000);
        assert_eq!(args.key_size, 8);
        assert_eq!(args.value_size, 256);
        assert_eq!(args.reserve_count, 100);
        assert!(!args.json);
    }

    #[test]
    fn every_flag_parses() {
        let args = parse(&[
            "--endpoints",
            "127.0.0.1:1,127.0.0.1:2",
            "--workload",
            "get-serializable",
            "--clients",
            "64",
            "--conns",
            "4",
            "--duration",
            "30",
            "--warmup",
            "0",
            "--rate",
            "5000",
            "--keys",
            "100",
            "--key-size",
            "16",
            "--value-size",
            "1024",
            "--reserve",
            "1000",
            "--seed",
            "7",
            "--timeout",
            "250",
            "--json",
        ])
        .unwrap();
        assert_eq!(args.endpoints, ["127.0.0.1:1", "127.0.0.1:2"]);
        assert_eq!(args.workload, Workload::GetSerializable);
        assert_eq!((args.clients, args.conns, args.duration, args.warmup), (64, 4, 30, 0));
        assert_eq!(args.rate, Some(5000));
        assert_eq!((args.keys, args.key_size, args.value_size), (100, 16, 1024));
        assert_eq!((args.seed, args.timeout_ms), (Some(7), 250));
        assert_eq!(args.reserve_count, 1000);
        assert!(args.json);
    }

    #[test]
    fn workload_names_round_trip() {
        let names = [
            "put",
            "get",
            "get-serializable",
            "mixed",
            "eput",
            "eget",
            "lock",
            "sequence-next",
            "sequence-reserve",
            "script",
            "txn",
            "txn-2p",
        ];
        for (name, workload) in names.into_iter().zip(Workload::ALL) {
            let args = parse(&["-w", name]).unwrap();
            assert_eq!(args.workload, workload);
            assert_eq!(args.workload.name(), name);
        }
        assert!(parse(&["-w", "watch"]).is_err());
    }

    #[test]
    fn target_names_round_trip() {
        for name in ["kahuna", "etcd", "redis"] {
            let args = parse(&["--target", name]).unwrap();
            assert_eq!(args.target.name(), name);
        }
        assert!(parse(&["--target", "zookeeper"]).is_err());
    }

    #[test]
    fn out_of_range_values_are_refused() {
        assert!(parse(&["--clients", "0"]).is_err());
        assert!(parse(&["--clients", "1025"]).is_err());
        assert!(parse(&["--duration", "0"]).is_err());
        assert!(parse(&["--rate", "0"]).is_err());
        assert!(parse(&["--keys", "0"]).is_err());
        assert!(parse(&["--warmup", "-1"]).is_err());
        assert!(parse(&["--reserve", "0"]).is_err());
        assert!(parse(&["--reserve", "1000001"]).is_err());
    }
}
