use super::*;
use crate::sim_disk::SimDisk;
use openraft::testing::log_id;

fn entry(index: u64) -> Vec<u8> {
    format!("entry {index}").into_bytes()
}

fn append(wal: &Wal, partition: u32, indexes: std::ops::Range<u64>, durable: bool) -> Result<(), StoreError> {
    let mut batch = LogBatch::default();
    for i in indexes {
        batch.entry(partition, i, entry(i));
    }
    wal.commit(&mut batch, durable)
}

fn one(wal: &Wal, f: impl FnOnce(&mut LogBatch), durable: bool) -> Result<(), StoreError> {
    let mut batch = LogBatch::default();
    f(&mut batch);
    wal.commit(&mut batch, durable)
}

fn indexes(wal: &Wal, partition: u32) -> Result<Vec<u64>, StoreError> {
    let rows = wal.read(partition, 0, u64::MAX, usize::MAX)?;
    Ok(rows.iter().map(|r| String::from_utf8_lossy(r)["entry ".len()..].parse().unwrap_or(u64::MAX)).collect())
}

fn segments(disk: &SimDisk) -> usize {
    disk.files().iter().filter(|f| segment_number(f).is_some()).count()
}

#[test]
fn reopening_replays_entries_truncations_purges_and_votes() -> Result<(), StoreError> {
    let dir = tempfile::tempdir()?;
    let open = || Wal::open(LogDir::Directory(dir.path().to_path_buf()));
    {
        let wal = open()?;
        append(&wal, 1, 1..11, true)?;
        append(&wal, 2, 1..4, true)?;
        one(&wal, |b| b.truncate(1, 8), false)?;
        append(&wal, 1, 8..9, false)?;
        one(&wal, |b| b.purge(1, log_id(1, 1, 3)), false)?;
        one(&wal, |b| b.vote(2, Vote::new(4, 2)), true)?;
    }
    let wal = open()?;
    assert_eq!(indexes(&wal, 1)?, (4..9).collect::<Vec<_>>());
    assert_eq!(indexes(&wal, 2)?, vec![1, 2, 3]);
    assert_eq!(wal.last_index(1), Some(8));
    assert_eq!(wal.purged(1), Some(log_id(1, 1, 3)));
    assert_eq!(wal.vote(2), Some(Vote::new(4, 2)));
    assert_eq!(wal.vote(1), None);
    assert_eq!(wal.read(1, 5, 7, usize::MAX)?.len(), 2, "a range reads only its entries");
    Ok(())
}

#[test]
fn a_bounded_read_stops_at_the_byte_budget_but_reads_at_least_one_entry() -> Result<(), StoreError> {
    let wal = Wal::open_with(LogDir::Simulated(SimDisk::new()), 4096)?;
    append(&wal, 1, 1..11, true)?;
    let record = wal.read_index().partitions[&1].entries[&1].len as usize;
    let read = |bytes_max| -> Result<Vec<u64>, StoreError> {
        let rows = wal.read(1, 1, 11, bytes_max)?;
        Ok(rows.iter().map(|r| String::from_utf8_lossy(r)["entry ".len()..].parse().unwrap_or(u64::MAX)).collect())
    };
    assert_eq!(read(3 * record)?, vec![1, 2, 3]);
    assert_eq!(read(3 * record + 1)?, vec![1, 2, 3], "a part of an entry does not fit");
    assert_eq!(read(1)?, vec![1], "one entry larger than the budget still comes");
    assert_eq!(read(usize::MAX)?, (1..11).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn a_crash_keeps_what_was_synced_and_cuts_a_torn_tail() -> Result<(), StoreError> {
    for seed in 0..64u64 {
        let disk = SimDisk::new();
        {
            let wal = Wal::open_with(LogDir::Simulated(disk.clone()), 4096)?;
            append(&wal, 1, 1..40, true)?;
            one(&wal, |b| b.vote(1, Vote::new(2, 1)), true)?;
            append(&wal, 1, 40..80, false)?;
            one(&wal, |b| b.truncate(1, 20), false)?;
        }
        // Each unsynced page survives or not, as an OS may have written some back.
        let mut bits = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        disk.crash_keeping(|_, _| {
            bits = bits.rotate_left(7) ^ 0x5851_f42d;
            bits & 1 == 1
        });
        let wal = Wal::open_with(LogDir::Simulated(disk.clone()), 4096)?;
        let found = indexes(&wal, 1)?;
        assert!(found.starts_with(&(1..20).collect::<Vec<_>>()), "seed {seed}: synced entries lost: {found:?}");
        assert!(found.len() == 19 || found.len() >= 39, "seed {seed}: {found:?}");
        assert_eq!(found, (1..=found.len() as u64).collect::<Vec<_>>(), "seed {seed}: a gap");
        assert_eq!(wal.vote(1), Some(Vote::new(2, 1)), "seed {seed}");
        // The log goes on where the replay ended.
        let next = found.len() as u64 + 1;
        append(&wal, 1, next..next + 5, true)?;
        drop(wal);
        let wal = Wal::open_with(LogDir::Simulated(disk.clone()), 4096)?;
        assert_eq!(indexes(&wal, 1)?, (1..next + 5).collect::<Vec<_>>(), "seed {seed}");
    }
    Ok(())
}

#[test]
fn purged_segments_are_deleted_and_cold_entries_copied_forward() -> Result<(), StoreError> {
    let disk = SimDisk::new();
    let open = || Wal::open_with(LogDir::Simulated(disk.clone()), 2048);
    let wal = open()?;
    // A cold partition writes a little once; a hot one writes on and purges behind.
    append(&wal, 7, 1..4, true)?;
    one(&wal, |b| b.vote(7, Vote::new(1, 1)), true)?;
    let mut most = 0;
    for round in 0..200u64 {
        let first = round * 10 + 1;
        append(&wal, 1, first..first + 10, true)?;
        if round >= 2 {
            one(&wal, |b| b.purge(1, log_id(1, 1, first - 11)), false)?;
        }
        most = most.max(segments(&disk));
    }
    assert!(segments(&disk) <= 4, "{} segments kept", segments(&disk));
    assert!(most <= 5, "{most} segments at once");
    drop(wal);
    let wal = open()?;
    assert_eq!(indexes(&wal, 7)?, vec![1, 2, 3], "the cold partition's entries survive");
    assert_eq!(wal.vote(7), Some(Vote::new(1, 1)), "so does its vote");
    assert_eq!(wal.purged(1), Some(log_id(1, 1, 1980)));
    assert_eq!(indexes(&wal, 1)?, (1981..=2000).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn corruption_before_the_newest_segment_is_an_error() -> Result<(), StoreError> {
    let disk = SimDisk::new();
    {
        let wal = Wal::open_with(LogDir::Simulated(disk.clone()), 1024)?;
        for i in 0..10 {
            append(&wal, 1, i * 10 + 1..i * 10 + 11, true)?;
        }
    }
    let oldest = disk.files().into_iter().filter(|f| segment_number(f).is_some()).min().ok_or(StoreError::Stopped)?;
    let file = LogDir::Simulated(disk.clone()).open(&oldest, false)?;
    let len = file.len()?;
    file.write_at(len - 3, b"xyz")?;
    file.sync()?;
    match Wal::open_with(LogDir::Simulated(disk.clone()), 1024) {
        Err(StoreError::Corrupt { reason, .. }) => assert!(reason.contains("checksum"), "{reason}"),
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("a corrupt older segment was accepted"),
    }
    Ok(())
}

#[test]
fn after_a_failed_write_every_commit_fails() -> Result<(), StoreError> {
    let disk = SimDisk::new();
    let wal = Wal::open_with(LogDir::Simulated(disk.clone()), 4096)?;
    append(&wal, 1, 1..3, true)?;
    disk.crash();
    assert!(append(&wal, 1, 3..4, true).is_err(), "the disk is gone");
    let err = append(&wal, 1, 3..4, true).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("an earlier write to the raft log failed"), "{err}");
    Ok(())
}

#[test]
fn the_newest_segment_has_its_full_size_and_older_ones_end_at_their_records() -> Result<(), StoreError> {
    let dir = tempfile::tempdir()?;
    let open = || Wal::open_with(LogDir::Directory(dir.path().to_path_buf()), 4096);
    let sizes = || -> Result<Vec<u64>, StoreError> {
        let mut names: Vec<String> = LogDir::Directory(dir.path().to_path_buf()).list()?;
        names.retain(|n| segment_number(n).is_some());
        names.sort();
        Ok(names.iter().map(|n| std::fs::metadata(dir.path().join(n)).map_or(0, |m| m.len())).collect())
    };
    {
        let wal = open()?;
        append(&wal, 1, 1..6, true)?;
        assert_eq!(sizes()?, vec![4096]);
        for i in 0..40 {
            append(&wal, 1, 6 + i * 5..11 + i * 5, true)?;
        }
    }
    let found = sizes()?;
    let (newest, older) = found.split_last().ok_or(StoreError::Stopped)?;
    assert_eq!(*newest, 4096, "{found:?}");
    assert!(!older.is_empty() && older.iter().all(|len| *len < 4096), "older segments are cut back: {found:?}");
    let wal = open()?;
    assert_eq!(indexes(&wal, 1)?, (1..206).collect::<Vec<_>>());
    assert_eq!(sizes()?.last(), Some(&4096), "reopening keeps the newest segment's unwritten space");
    append(&wal, 1, 206..210, true)?;
    drop(wal);
    assert_eq!(indexes(&open()?, 1)?, (1..210).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn a_frame_left_by_a_torn_write_never_lines_up_behind_later_records() -> Result<(), StoreError> {
    let dir = tempfile::tempdir()?;
    let open = || Wal::open_with(LogDir::Directory(dir.path().to_path_buf()), 1 << 20);
    let end = {
        let wal = open()?;
        append(&wal, 1, 1..6, true)?;
        wal.lock_head().len
    };
    // A crash during a write: the page at the end of the records never reached the disk
    // (zeroes), a later page of the same write did, holding a whole frame of entry 6.
    let mut next = Vec::new();
    let next_len = frame(&Record::Entry { partition: 1, index: 6, entry: entry(6) }, &mut next) as u64;
    let mut stray = Vec::new();
    frame(&Record::Entry { partition: 1, index: 6, entry: b"entry 66".to_vec() }, &mut stray);
    let name = segment_name(1);
    LogDir::Directory(dir.path().to_path_buf()).open(&name, false)?.write_at(end + next_len, &stray)?;
    {
        let wal = open()?;
        assert_eq!(indexes(&wal, 1)?, (1..6).collect::<Vec<_>>(), "the torn write is not replayed");
        // Entry 6 ends exactly where the stray frame starts.
        append(&wal, 1, 6..7, true)?;
        assert_eq!(wal.lock_head().len, end + next_len);
    }
    let wal = open()?;
    assert_eq!(indexes(&wal, 1)?, (1..7).collect::<Vec<_>>(), "entry 6 is the one written after the crash");
    Ok(())
}
