//! Per-call options. Every struct is `Default` (persistent, linearizable, a fresh
//! operation id per write) and has chaining setters.

use kahuna_proto::v1;

/// Where a key lives. Persistent and ephemeral keys are separate keyspaces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Durability {
    /// Committed by a Raft quorum and fsynced before the reply.
    #[default]
    Persistent,
    /// Held in memory by the partition leader only; lost on leader change or restart.
    Ephemeral,
}

impl Durability {
    pub(crate) fn to_proto(self) -> i32 {
        match self {
            Durability::Persistent => v1::Durability::Persistent as i32,
            Durability::Ephemeral => v1::Durability::Ephemeral as i32,
        }
    }
}

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Consistency {
    /// ReadIndex on the partition leader: sees every write acknowledged before the call.
    #[default]
    Linearizable,
    /// Any replica's local state, possibly stale; cheaper and available without a leader.
    Serializable,
}

impl Consistency {
    pub(crate) fn to_proto(self) -> i32 {
        match self {
            Consistency::Linearizable => v1::Consistency::Linearizable as i32,
            Consistency::Serializable => v1::Consistency::Serializable as i32,
        }
    }
}

/// The operation id a write carries so the server can answer a retried write from its
/// first outcome.
///
/// The client retries a write on another endpoint only when it carries an id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum OperationId {
    /// A fresh 128-bit id, in hex (the clock's millisecond, then random bits), generated
    /// once per call (so the client's own retries reuse it). The default.
    #[default]
    Auto,
    /// No id: the server cannot de-duplicate, so the client never retries the write.
    Off,
    /// The caller's id: reuse it to repeat a write whose outcome is unknown (after a
    /// timeout or a dropped future) without applying it twice.
    Given(String),
}

impl OperationId {
    /// Returns the id to send (empty for none). Call once per logical write.
    pub(crate) fn resolve(&self) -> String {
        match self {
            OperationId::Auto => new_operation_id(),
            OperationId::Off => String::new(),
            OperationId::Given(id) => id.clone(),
        }
    }
}

/// Returns a fresh operation id: 128 bits as 32 lowercase hex digits, the first 48 the
/// client's clock in milliseconds since the Unix epoch and the other 80 random.
///
/// The server stores each id's outcome in a table ordered by id. Random ids put every
/// write's record on a random page of that table, so each write copied a page of its own
/// and the next state sync rewrote nearly all of them; ids that grow with time land on
/// the table's last pages, which a batch of writes shares. 80 random bits keep ids from
/// clients whose clocks agree apart (a collision is as likely as with random ids among
/// the writes of one millisecond).
pub fn new_operation_id() -> String {
    let millis =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_millis());
    hex128(time_ordered(millis, rand::random()))
}

/// `millis` (its low 48 bits) above the low 80 bits of `random`.
fn time_ordered(millis: u128, random: u128) -> u128 {
    const RANDOM_BITS: u32 = 80;
    let time = millis & ((1 << 48) - 1);
    (time << RANDOM_BITS) | (random & ((1 << RANDOM_BITS) - 1))
}

/// `bits` as 32 lowercase hex digits, as `format!("{bits:032x}")` writes them: by hand,
/// since the formatter was 4 % of a client's CPU for ephemeral sets.
fn hex128(bits: u128) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    (0..32).rev().map(|nibble| char::from(DIGITS[((bits >> (nibble * 4)) & 0xf) as usize])).collect()
}

/// Options of [`Client::set`](crate::Client::set).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetOptions {
    /// Keyspace to write.
    pub durability: Durability,
    /// Only when the key does not exist. Excludes `xx` and the compares.
    pub nx: bool,
    /// Only when the key exists.
    pub xx: bool,
    /// Only when the current value equals this.
    pub compare_value: Option<Vec<u8>>,
    /// Only when the current revision equals this.
    pub compare_revision: Option<i64>,
    /// Expiry after the commit, in milliseconds; `None` for no expiry.
    pub ttl_ms: Option<u64>,
    /// De-duplication id; see [`OperationId`].
    pub operation_id: OperationId,
}

impl SetOptions {
    /// Returns the default options: persistent, unconditional, no expiry, auto id.
    pub fn new() -> SetOptions {
        SetOptions::default()
    }
    /// Sets the keyspace.
    pub fn durability(mut self, durability: Durability) -> SetOptions {
        self.durability = durability;
        self
    }
    /// Writes the ephemeral keyspace.
    pub fn ephemeral(self) -> SetOptions {
        self.durability(Durability::Ephemeral)
    }
    /// Writes only when the key does not exist.
    pub fn nx(mut self) -> SetOptions {
        self.nx = true;
        self
    }
    /// Writes only when the key exists.
    pub fn xx(mut self) -> SetOptions {
        self.xx = true;
        self
    }
    /// Writes only when the current value equals `value`.
    pub fn compare_value(mut self, value: impl Into<Vec<u8>>) -> SetOptions {
        self.compare_value = Some(value.into());
        self
    }
    /// Writes only when the current revision equals `revision`.
    pub fn compare_revision(mut self, revision: i64) -> SetOptions {
        self.compare_revision = Some(revision);
        self
    }
    /// Expires the key `ttl_ms` milliseconds after the commit.
    pub fn ttl_ms(mut self, ttl_ms: u64) -> SetOptions {
        self.ttl_ms = Some(ttl_ms);
        self
    }
    /// Sets the de-duplication id.
    pub fn operation_id(mut self, operation_id: OperationId) -> SetOptions {
        self.operation_id = operation_id;
        self
    }
}

/// Options of [`Client::get`](crate::Client::get).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// Keyspace to read.
    pub durability: Durability,
    /// Freshness of the read.
    pub consistency: Consistency,
    /// The version with this revision instead of the latest.
    pub at_revision: Option<i64>,
    /// The version visible at this HLC timestamp instead of the latest.
    pub as_of: Option<u64>,
}

impl GetOptions {
    /// Returns the default options: persistent, linearizable, latest version.
    pub fn new() -> GetOptions {
        GetOptions::default()
    }
    /// Sets the keyspace.
    pub fn durability(mut self, durability: Durability) -> GetOptions {
        self.durability = durability;
        self
    }
    /// Reads the ephemeral keyspace.
    pub fn ephemeral(self) -> GetOptions {
        self.durability(Durability::Ephemeral)
    }
    /// Sets the freshness.
    pub fn consistency(mut self, consistency: Consistency) -> GetOptions {
        self.consistency = consistency;
        self
    }
    /// Reads any replica, possibly stale.
    pub fn serializable(self) -> GetOptions {
        self.consistency(Consistency::Serializable)
    }
    /// Reads the version with this revision.
    pub fn at_revision(mut self, revision: i64) -> GetOptions {
        self.at_revision = Some(revision);
        self
    }
    /// Reads the version visible at this HLC timestamp.
    pub fn as_of(mut self, timestamp: u64) -> GetOptions {
        self.as_of = Some(timestamp);
        self
    }
}

/// Options of the plain reads: exists, get by bucket, scan and get many.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Keyspace to read.
    pub durability: Durability,
    /// Freshness of the read.
    pub consistency: Consistency,
}

impl ReadOptions {
    /// Returns the default options: persistent, linearizable.
    pub fn new() -> ReadOptions {
        ReadOptions::default()
    }
    /// Sets the keyspace.
    pub fn durability(mut self, durability: Durability) -> ReadOptions {
        self.durability = durability;
        self
    }
    /// Reads the ephemeral keyspace.
    pub fn ephemeral(self) -> ReadOptions {
        self.durability(Durability::Ephemeral)
    }
    /// Sets the freshness.
    pub fn consistency(mut self, consistency: Consistency) -> ReadOptions {
        self.consistency = consistency;
        self
    }
    /// Reads any replica, possibly stale.
    pub fn serializable(self) -> ReadOptions {
        self.consistency(Consistency::Serializable)
    }
}

impl From<Durability> for ReadOptions {
    fn from(durability: Durability) -> ReadOptions {
        ReadOptions::new().durability(durability)
    }
}

/// Options of [`Client::delete`](crate::Client::delete).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// Keyspace to write.
    pub durability: Durability,
    /// Only when the current value equals this.
    pub compare_value: Option<Vec<u8>>,
    /// Only when the current revision equals this.
    pub compare_revision: Option<i64>,
    /// De-duplication id; see [`OperationId`].
    pub operation_id: OperationId,
}

impl DeleteOptions {
    /// Returns the default options: persistent, unconditional, auto id.
    pub fn new() -> DeleteOptions {
        DeleteOptions::default()
    }
    /// Sets the keyspace.
    pub fn durability(mut self, durability: Durability) -> DeleteOptions {
        self.durability = durability;
        self
    }
    /// Writes the ephemeral keyspace.
    pub fn ephemeral(self) -> DeleteOptions {
        self.durability(Durability::Ephemeral)
    }
    /// Deletes only when the current value equals `value`.
    pub fn compare_value(mut self, value: impl Into<Vec<u8>>) -> DeleteOptions {
        self.compare_value = Some(value.into());
        self
    }
    /// Deletes only when the current revision equals `revision`.
    pub fn compare_revision(mut self, revision: i64) -> DeleteOptions {
        self.compare_revision = Some(revision);
        self
    }
    /// Sets the de-duplication id.
    pub fn operation_id(mut self, operation_id: OperationId) -> DeleteOptions {
        self.operation_id = operation_id;
        self
    }
}

/// Options of [`Client::extend`](crate::Client::extend). A bare [`Durability`] converts
/// into it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtendOptions {
    /// Keyspace to write.
    pub durability: Durability,
    /// De-duplication id; see [`OperationId`].
    pub operation_id: OperationId,
}

impl From<Durability> for ExtendOptions {
    fn from(durability: Durability) -> ExtendOptions {
        ExtendOptions { durability, operation_id: OperationId::Auto }
    }
}

/// Options of [`Client::unlock`](crate::Client::unlock) and
/// [`Client::extend_lock`](crate::Client::extend_lock): the lock's keyspace and the
/// de-duplication id. A bare [`Durability`] converts into it.
pub type UnlockOptions = ExtendOptions;

/// Options of [`Client::try_lock`](crate::Client::try_lock).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockOptions {
    /// Keyspace of the lock: persistent locks survive leader changes and restarts,
    /// ephemeral ones live on the partition leader only.
    pub durability: Durability,
    /// How long the server may wait for the lock, in ms (0: answer at once). Waiters
    /// are served in arrival order and woken on release or expiry.
    pub wait_ms: u64,
}

impl LockOptions {
    /// Returns the default options: persistent, no waiting.
    pub fn new() -> LockOptions {
        LockOptions::default()
    }
    /// Sets the keyspace.
    pub fn durability(mut self, durability: Durability) -> LockOptions {
        self.durability = durability;
        self
    }
    /// Uses the ephemeral keyspace.
    pub fn ephemeral(self) -> LockOptions {
        self.durability(Durability::Ephemeral)
    }
    /// Waits up to `wait_ms` for the lock.
    pub fn wait_ms(mut self, wait_ms: u64) -> LockOptions {
        self.wait_ms = wait_ms;
        self
    }
}

impl From<Durability> for LockOptions {
    fn from(durability: Durability) -> LockOptions {
        LockOptions::new().durability(durability)
    }
}

/// Settings of [`Client::create_sequence`](crate::Client::create_sequence).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SequenceOptions {
    /// The first value (default 1).
    pub start: i64,
    /// The step between values, at least 1 (default 1).
    pub increment: i64,
    /// The largest value handed out; `None` for up to `i64::MAX`.
    pub max: Option<i64>,
}

impl Default for SequenceOptions {
    fn default() -> SequenceOptions {
        SequenceOptions { start: 1, increment: 1, max: None }
    }
}

impl SequenceOptions {
    /// Returns the default settings: 1, 2, 3...
    pub fn new() -> SequenceOptions {
        SequenceOptions::default()
    }
    /// Sets the first value.
    pub fn start(mut self, start: i64) -> SequenceOptions {
        self.start = start;
        self
    }
    /// Sets the step.
    pub fn increment(mut self, increment: i64) -> SequenceOptions {
        self.increment = increment;
        self
    }
    /// Sets the largest value.
    pub fn max(mut self, max: i64) -> SequenceOptions {
        self.max = Some(max);
        self
    }
}

/// Options of [`Client::scan`](crate::Client::scan) and
/// [`Client::scan_all`](crate::Client::scan_all).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanOptions {
    /// Keyspace and freshness.
    pub read: ReadOptions,
    /// Items per page; `None` for the server's default (100). At most
    /// [`SCAN_PAGE_LIMIT_MAX`](crate::SCAN_PAGE_LIMIT_MAX).
    pub limit: Option<u32>,
    /// Where to continue: a previous page's `next_cursor`; `None` from the start.
    pub cursor: Option<String>,
}

impl ScanOptions {
    /// Returns the default options: from the start, server-default page size.
    pub fn new() -> ScanOptions {
        ScanOptions::default()
    }
    /// Sets the keyspace and freshness.
    pub fn read(mut self, read: ReadOptions) -> ScanOptions {
        self.read = read;
        self
    }
    /// Sets the page size.
    pub fn limit(mut self, limit: u32) -> ScanOptions {
        self.limit = Some(limit);
        self
    }
    /// Continues from a previous page's cursor.
    pub fn cursor(mut self, cursor: impl Into<String>) -> ScanOptions {
        self.cursor = Some(cursor.into());
        self
    }
}

/// One write of [`Client::set_many`](crate::Client::set_many).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetItem {
    /// Key to write.
    pub key: String,
    /// Value to write.
    pub value: Vec<u8>,
    /// Conditions, expiry, keyspace and operation id of this item.
    pub options: SetOptions,
}

impl SetItem {
    /// Returns an unconditional persistent write.
    pub fn new(key: impl Into<String>, value: impl Into<Vec<u8>>) -> SetItem {
        SetItem { key: key.into(), value: value.into(), options: SetOptions::default() }
    }
    /// Replaces the options.
    pub fn options(mut self, options: SetOptions) -> SetItem {
        self.options = options;
        self
    }
}

/// One delete of [`Client::delete_many`](crate::Client::delete_many).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteItem {
    /// Key to delete.
    pub key: String,
    /// Conditions, keyspace and operation id of this item.
    pub options: DeleteOptions,
}

impl DeleteItem {
    /// Returns an unconditional persistent delete.
    pub fn new(key: impl Into<String>) -> DeleteItem {
        DeleteItem { key: key.into(), options: DeleteOptions::default() }
    }
    /// Replaces the options.
    pub fn options(mut self, options: DeleteOptions) -> DeleteItem {
        self.options = options;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_are_128_bit_hex_and_fresh() {
        let a = OperationId::Auto.resolve();
        let b = OperationId::Auto.resolve();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
        // Ids made later sort after (the clock's millisecond leads the id).
        std::thread::sleep(std::time::Duration::from_millis(2));
        let c = OperationId::Auto.resolve();
        assert!(a < c && b < c, "{a} {b} {c}");
        assert_eq!(OperationId::Off.resolve(), "");
        assert_eq!(OperationId::Given("op-1".into()).resolve(), "op-1");
        for bits in [0, 1, 0xfedc_ba98_7654_3210_0123_4567_89ab_cdef, u128::MAX] {
            assert_eq!(hex128(bits), format!("{bits:032x}"));
        }
    }

    #[test]
    fn time_ordered_ids_put_the_millisecond_first() {
        let id = time_ordered(0x0123_4567_89ab, u128::MAX);
        assert_eq!(hex128(id), "0123456789abffffffffffffffffffff");
        // A clock past 48 bits wraps instead of spilling into the random part's place.
        assert_eq!(time_ordered(1 << 48 | 5, 0), 5 << 80);
    }

    #[test]
    fn builders_set_fields() {
        let options = SetOptions::new().ephemeral().nx().ttl_ms(500);
        assert_eq!(options.durability, Durability::Ephemeral);
        assert!(options.nx && !options.xx);
        assert_eq!(options.ttl_ms, Some(500));
        let get = GetOptions::new().serializable().at_revision(3);
        assert_eq!(get.consistency, Consistency::Serializable);
        assert_eq!(get.at_revision, Some(3));
    }
}
