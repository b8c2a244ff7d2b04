//! Kahuna's transaction engine (issue "Strictly serializable transactions"): not built
//! yet. It will hold the coordinator of interactive transactions and scripts — snapshot
//! reads, buffered writes, read/scan/write sets, single-partition commits and
//! two-phase commit with transaction records — and implement `kahuna_script::ScriptTxn`.
//! The crate exists now so the workspace has the layout of DESIGN §1.
