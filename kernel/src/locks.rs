//! Lock semantics, pure: a lock record and an operation in, the new record and the
//! reply out. Time comes in as the commit timestamp of the Raft entry (or, for
//! ephemeral locks, the leader's HLC reading), never from a clock, so every replica
//! judges a lease's expiry the same way.
//!
//! Invariants: a lock has at most one live holder; every grant to a new holder gets a
//! token larger than any token granted before for that name (`last_token` is kept
//! after unlocks and expiries for that reason); only the live holder may release or
//! extend, and neither changes the token.

use serde::{Deserialize, Serialize};

use crate::error::KvError;
use crate::hlc::physical_ms;
use crate::types::{LockHolder, LockOp, LockReply};

/// A lock as stored: its last holder (live or expired) and the largest token granted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    pub holder: Option<LockHolder>,
    pub last_token: u64,
}

/// The tokens a lock may grant: above `floor`, at most `ceiling`.
///
/// Persistent locks use the whole `u64` range. Ephemeral locks live in one leader's
/// memory and are lost with it, so their tokens carry the leader's term in the high 32
/// bits: a later leader's tokens are larger than any earlier leader's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenSpace {
    pub floor: u64,
    pub ceiling: u64,
}

impl TokenSpace {
    /// Tokens of persistent locks: 1, 2, 3...
    pub const PERSISTENT: Self = Self { floor: 0, ceiling: u64::MAX };

    /// Tokens of ephemeral locks granted by a leader of `term`: `(term << 32) | counter`.
    pub fn ephemeral(term: u64) -> Self {
        let floor = term << 32;
        Self { floor, ceiling: floor | u64::from(u32::MAX) }
    }
}

impl LockRecord {
    /// The holder whose lease still runs at `now_ms`.
    pub fn live_holder(&self, now_ms: u64) -> Option<&LockHolder> {
        self.holder.as_ref().filter(|h| h.is_live_at(now_ms))
    }

    /// The reply describing this record at `ts`.
    pub fn reply(&self, done: bool, ts: u64) -> LockReply {
        LockReply {
            done,
            holder: self.live_holder(physical_ms(ts)).cloned(),
            last_token: self.last_token,
            commit_ts: ts,
        }
    }
}

/// What applying a lock operation produced: the record to store (`None` when nothing
/// changed) and the answer for the caller.
pub type LockEffect = (Option<LockRecord>, Result<LockReply, KvError>);

/// Applies `op` to the lock's record (`None`: never used) at HLC timestamp `ts`.
pub fn apply_lock(record: Option<&LockRecord>, op: &LockOp, ts: u64, tokens: TokenSpace) -> LockEffect {
    let now_ms = physical_ms(ts);
    let current = record.cloned().unwrap_or_default();
    let held_by = current.live_holder(now_ms).map(|h| h.owner.clone());
    let held_by = held_by.as_deref();
    let owner = op.owner();
    match op {
        LockOp::Acquire { lease_ms, .. } if held_by == Some(owner) => extended(current, now_ms, *lease_ms, ts),
        LockOp::Acquire { .. } if held_by.is_some() => (None, Ok(current.reply(false, ts))),
        LockOp::Acquire { name, lease_ms, .. } => {
            let token = current.last_token.saturating_add(1).max(tokens.floor.saturating_add(1));
            if token > tokens.ceiling || current.last_token == u64::MAX {
                return (None, Err(exhausted_tokens(name)));
            }
            let holder = LockHolder { owner: owner.to_owned(), token, expires_at_ms: now_ms.saturating_add(*lease_ms) };
            let next = LockRecord { holder: Some(holder), last_token: token };
            let reply = next.reply(true, ts);
            (Some(next), Ok(reply))
        }
        LockOp::Release { .. } if held_by == Some(owner) => {
            let next = LockRecord { holder: None, last_token: current.last_token };
            let reply = next.reply(true, ts);
            (Some(next), Ok(reply))
        }
        LockOp::Extend { lease_ms, .. } if held_by == Some(owner) => extended(current, now_ms, *lease_ms, ts),
        LockOp::Release { name, .. } | LockOp::Extend { name, .. } if held_by.is_some() => {
            let verb = if matches!(op, LockOp::Release { .. }) { "unlock" } else { "extend" };
            (None, Err(not_owner(name, owner, verb)))
        }
        // Free or expired: nothing to release or extend; the caller lost the lease.
        LockOp::Release { .. } | LockOp::Extend { .. } => (None, Ok(current.reply(false, ts))),
    }
}

/// Applies a persistent lock operation to the state a transaction read (the default
/// record when the lock was never used): the state afterwards and the reply.
pub fn lock_step(record: &LockRecord, op: &LockOp, ts: u64) -> (LockRecord, Result<LockReply, KvError>) {
    let (next, reply) = apply_lock(Some(record), op, ts, TokenSpace::PERSISTENT);
    (next.unwrap_or_else(|| record.clone()), reply)
}

/// Restarts the live holder's lease at `now_ms`, keeping its token.
fn extended(mut record: LockRecord, now_ms: u64, lease_ms: u64, ts: u64) -> LockEffect {
    if let Some(holder) = record.holder.as_mut() {
        holder.expires_at_ms = now_ms.saturating_add(lease_ms);
    }
    let reply = record.reply(true, ts);
    (Some(record), Ok(reply))
}

fn not_owner(name: &str, owner: &str, verb: &str) -> KvError {
    KvError::InvalidInput(format!(
        "lock {name:?} is held by another owner, not {owner:?}; only its holder may {verb} it"
    ))
}

fn exhausted_tokens(name: &str) -> KvError {
    // Only reachable for ephemeral locks after 2^32 grants in one leader term.
    KvError::Unavailable(format!(
        "lock {name:?} has granted every fencing token of this leader term; retry after a leader change"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::from_physical_ms;
    use proptest::prelude::*;

    fn acquire(owner: &str, lease_ms: u64) -> LockOp {
        LockOp::Acquire { name: "r".into(), owner: owner.into(), lease_ms }
    }

    fn release(owner: &str) -> LockOp {
        LockOp::Release { name: "r".into(), owner: owner.into() }
    }

    fn extend(owner: &str, lease_ms: u64) -> LockOp {
        LockOp::Extend { name: "r".into(), owner: owner.into(), lease_ms }
    }

    /// Applies `op` at `ms` and stores the result, as the state machine does.
    fn step(record: &mut Option<LockRecord>, op: &LockOp, ms: u64, tokens: TokenSpace) -> Result<LockReply, KvError> {
        let (next, reply) = apply_lock(record.as_ref(), op, from_physical_ms(ms), tokens);
        if let Some(next) = next {
            *record = Some(next);
        }
        reply
    }

    #[test]
    fn grant_reacquire_release_and_expiry() {
        let p = TokenSpace::PERSISTENT;
        let mut lock = None;
        let a = step(&mut lock, &acquire("a", 100), 1_000, p).expect("acquire");
        assert!(a.done);
        assert_eq!(a.holder.as_ref().map(|h| (h.token, h.expires_at_ms)), Some((1, 1_100)));
        // Same owner: same token, lease restarted.
        let again = step(&mut lock, &acquire("a", 100), 1_050, p).expect("re-acquire");
        assert_eq!(again.holder.as_ref().map(|h| (h.token, h.expires_at_ms)), Some((1, 1_150)));
        // Another owner waits its turn.
        let b = step(&mut lock, &acquire("b", 100), 1_100, p).expect("contended");
        assert!(!b.done);
        assert_eq!(b.holder.map(|h| h.owner), Some("a".to_owned()));
        // Not the holder: a precise error, nothing changes.
        let wrong = step(&mut lock, &release("b"), 1_100, p).expect_err("not the owner");
        assert!(wrong.to_string().contains("held by another owner"), "{wrong}");
        assert!(step(&mut lock, &extend("b", 10), 1_100, p).is_err());
        // Expired at 1_150: b gets the next token.
        let b = step(&mut lock, &acquire("b", 100), 1_150, p).expect("after expiry");
        assert_eq!(b.holder.map(|h| h.token), Some(2));
        // a lost its lease: it may neither extend nor release it.
        assert!(step(&mut lock, &release("a"), 1_160, p).is_err());
        let released = step(&mut lock, &release("b"), 1_160, p).expect("release");
        assert!(released.done && released.holder.is_none());
        assert_eq!(released.last_token, 2);
        let gone = step(&mut lock, &extend("b", 100), 1_170, p).expect("extend of a free lock");
        assert!(!gone.done);
        let c = step(&mut lock, &acquire("c", 100), 1_170, p).expect("acquire after release");
        assert_eq!(c.holder.map(|h| h.token), Some(3));
    }

    #[test]
    fn ephemeral_tokens_carry_the_term() {
        let mut lock = None;
        let t3 = step(&mut lock, &acquire("a", 10), 0, TokenSpace::ephemeral(3)).expect("acquire");
        assert_eq!(t3.holder.map(|h| h.token), Some((3 << 32) | 1));
        // A new leader starts from an empty record and still grants a larger token.
        let mut fresh = None;
        let t4 = step(&mut fresh, &acquire("b", 10), 0, TokenSpace::ephemeral(4)).expect("acquire");
        assert_eq!(t4.holder.map(|h| h.token), Some((4 << 32) | 1));
        let full = LockRecord { holder: None, last_token: (3 << 32) | u64::from(u32::MAX) };
        let (next, reply) = apply_lock(Some(&full), &acquire("a", 10), 0, TokenSpace::ephemeral(3));
        assert!(next.is_none() && reply.is_err());
    }

    #[derive(Debug, Clone)]
    enum Action {
        Acquire(u8, u64),
        Release(u8),
        Extend(u8, u64),
    }

    fn action() -> impl Strategy<Value = (Action, u64)> {
        let owner = 0u8..3;
        let lease = 1u64..50;
        let action = prop_oneof![
            (owner.clone(), lease.clone()).prop_map(|(o, l)| Action::Acquire(o, l)),
            owner.clone().prop_map(Action::Release),
            (owner, lease).prop_map(|(o, l)| Action::Extend(o, l)),
        ];
        (action, 0u64..30)
    }

    proptest! {
        /// Against a random history: tokens of new grants strictly increase, a holder
        /// keeps its token, and refused operations change nothing.
        #[test]
        fn tokens_increase_and_refusals_change_nothing(actions in proptest::collection::vec(action(), 1..80)) {
            let mut lock: Option<LockRecord> = None;
            let mut now = 1_000u64;
            let mut last_granted = 0u64;
            for (action, advance) in actions {
                now += advance;
                let op = match action {
                    Action::Acquire(o, l) => acquire(&o.to_string(), l),
                    Action::Release(o) => release(&o.to_string()),
                    Action::Extend(o, l) => extend(&o.to_string(), l),
                };
                let before = lock.clone();
                let live_before = before.as_ref().and_then(|r| r.live_holder(now).cloned());
                match step(&mut lock, &op, now, TokenSpace::PERSISTENT) {
                    Err(_) => prop_assert_eq!(&lock, &before),
                    Ok(reply) if !reply.done => prop_assert_eq!(&lock, &before),
                    Ok(reply) => {
                        let token = reply.holder.as_ref().map(|h| h.token);
                        match (&op, live_before) {
                            (LockOp::Acquire { .. }, None) => {
                                let token = token.unwrap_or(0);
                                prop_assert!(token > last_granted);
                                last_granted = token;
                            }
                            (LockOp::Release { .. }, _) => prop_assert!(reply.holder.is_none()),
                            (_, Some(held)) => prop_assert_eq!(token, Some(held.token)),
                            (_, None) => prop_assert!(false, "extend of a free lock took effect"),
                        }
                    }
                }
                prop_assert_eq!(lock.as_ref().map_or(0, |r| r.last_token), last_granted);
            }
        }
    }
}
