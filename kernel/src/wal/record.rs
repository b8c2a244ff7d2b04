//! The records of a segment and how each is framed.
//!
//! A frame is `length (u32 LE) | CRC-32 of the payload (u32 LE) | payload`, the payload
//! a postcard [`Record`]. A frame that is short, too long or fails its checksum ends
//! what can be read: at the tail of the newest segment that is a write cut short by a
//! crash (nothing after it was ever synced), anywhere else it is corruption.

use openraft::Vote;
use serde::{Deserialize, Serialize};

use crate::raft_types::LogId;

/// Bytes before a frame's payload.
pub(crate) const FRAME_HEADER_BYTES: usize = 8;
/// No record is larger: a length beyond it is garbage, not a record.
const PAYLOAD_BYTES_MAX: usize = 256 << 20;
/// Tells a segment of this log from any other file.
pub(crate) const MAGIC: u64 = 0x4b41_4855_4e41_4c47; // "KAHUNALG"
/// The record layout this build reads and writes.
pub(crate) const VERSION: u32 = 1;

/// One record. Every segment starts with a [`Record::Header`] restating each
/// partition's vote and purge point, so no older segment is needed for them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Record {
    Header {
        magic: u64,
        version: u32,
        segment: u64,
        votes: Vec<(u32, Vote<u64>)>,
        purged: Vec<(u32, LogId)>,
    },
    /// A log entry, postcard-encoded as openraft's `Entry`.
    Entry {
        partition: u32,
        index: u64,
        /// As bytes: a plain `Vec<u8>` goes through serde one byte at a time, which cost
        /// about 3 % of a node's CPU under load. postcard writes both forms alike.
        #[serde(with = "serde_bytes")]
        entry: Vec<u8>,
    },
    /// Entries from `from` on are gone.
    Truncate {
        partition: u32,
        from: u64,
    },
    /// Entries up to `upto` are gone, and the log starts after it.
    Purge {
        partition: u32,
        upto: LogId,
    },
    Vote {
        partition: u32,
        vote: Vote<u64>,
    },
}

/// Appends `record`'s frame to `out`; returns the frame's length.
pub(crate) fn frame(record: &Record, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    // postcard cannot fail on these types (no maps, no unsized sequences); an empty
    // payload would only hide a bug, so the failure is logged and the frame stays empty
    // — which reads back as an invalid record, not as a wrong one.
    if let Err(e) = postcard::to_io(record, &mut *out) {
        tracing::error!("encoding a log record failed: {e}");
    }
    let payload_len = out.len() - start - FRAME_HEADER_BYTES;
    let crc = crc32fast::hash(&out[start + FRAME_HEADER_BYTES..]);
    let len = u32::try_from(payload_len).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

/// Why bytes did not hold a valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BadFrame {
    /// Fewer bytes than the frame says it has.
    Short,
    /// A length no record has.
    Length(usize),
    Checksum,
    Decode(String),
}

impl std::fmt::Display for BadFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Short => write!(f, "cut short"),
            Self::Length(n) => write!(f, "impossible length {n}"),
            Self::Checksum => write!(f, "checksum mismatch"),
            Self::Decode(e) => write!(f, "undecodable: {e}"),
        }
    }
}

/// The length of the frame that starts `bytes`, read from its header (not validated).
fn frame_len(bytes: &[u8]) -> Result<usize, BadFrame> {
    let header: [u8; FRAME_HEADER_BYTES] =
        bytes.get(..FRAME_HEADER_BYTES).and_then(|h| h.try_into().ok()).ok_or(BadFrame::Short)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len == 0 || len > PAYLOAD_BYTES_MAX {
        return Err(BadFrame::Length(len));
    }
    Ok(FRAME_HEADER_BYTES + len)
}

/// Decodes the frame that starts `bytes`; returns the record and the frame's length.
pub(crate) fn unframe(bytes: &[u8]) -> Result<(Record, usize), BadFrame> {
    let total = frame_len(bytes)?;
    let frame = bytes.get(..total).ok_or(BadFrame::Short)?;
    let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let payload = &frame[FRAME_HEADER_BYTES..];
    if crc32fast::hash(payload) != crc {
        return Err(BadFrame::Checksum);
    }
    let record = postcard::from_bytes(payload).map_err(|e| BadFrame::Decode(e.to_string()))?;
    Ok((record, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64) -> Record {
        Record::Entry { partition: 3, index, entry: vec![7; 40] }
    }

    #[test]
    fn frames_read_back_in_order() {
        let mut buf = Vec::new();
        let a = frame(&entry(1), &mut buf);
        let b = frame(&Record::Truncate { partition: 3, from: 2 }, &mut buf);
        assert_eq!(buf.len(), a + b);
        let (first, len) = unframe(&buf).expect("first frame");
        assert!(matches!(first, Record::Entry { index: 1, .. }));
        assert_eq!(len, a);
        let (second, len) = unframe(&buf[a..]).expect("second frame");
        assert!(matches!(second, Record::Truncate { from: 2, .. }));
        assert_eq!(len, b);
    }

    /// Segments written before the entry was marked `serde_bytes` read the same, and
    /// the other way round: postcard writes a length and the bytes either way.
    #[test]
    fn entries_frame_as_they_did_before_serde_bytes() {
        #[derive(Serialize)]
        enum Before {
            #[allow(dead_code)]
            Header,
            Entry {
                partition: u32,
                index: u64,
                entry: Vec<u8>,
            },
        }
        for entry in [Vec::new(), vec![7], vec![0xff; 300]] {
            let before = Before::Entry { partition: 3, index: 9, entry: entry.clone() };
            let now = Record::Entry { partition: 3, index: 9, entry: entry.clone() };
            let bytes = postcard::to_stdvec(&before).expect("encodes");
            assert_eq!(postcard::to_stdvec(&now).expect("encodes"), bytes);
            let decoded = postcard::from_bytes::<Record>(&bytes).expect("decodes");
            assert!(matches!(decoded, Record::Entry { partition: 3, index: 9, entry: e } if e == entry));
        }
    }

    #[test]
    fn torn_and_flipped_frames_are_refused() {
        let mut buf = Vec::new();
        let len = frame(&entry(1), &mut buf);
        for cut in [0, 4, FRAME_HEADER_BYTES, len - 1] {
            assert_eq!(unframe(&buf[..cut]).map(|(_, n)| n), Err(BadFrame::Short), "cut at {cut}");
        }
        let mut flipped = buf.clone();
        flipped[len - 1] ^= 1;
        assert_eq!(unframe(&flipped).map(|(_, n)| n), Err(BadFrame::Checksum));
        assert!(matches!(unframe(&[0; 16]), Err(BadFrame::Length(0))), "zeroes are no record");
    }
}
