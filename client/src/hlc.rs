//! Hybrid logical clock timestamps as the server sends them: 48 bits of unix
//! milliseconds, then 16 bits of logical counter.

/// Bits of the logical counter below the physical milliseconds.
pub const HLC_LOGICAL_BITS: u32 = 16;

/// Returns the physical part of an HLC timestamp: unix milliseconds.
pub fn hlc_unix_ms(timestamp: u64) -> u64 {
    timestamp >> HLC_LOGICAL_BITS
}

/// Returns the logical part of an HLC timestamp.
pub fn hlc_logical(timestamp: u64) -> u16 {
    (timestamp & 0xffff) as u16
}

/// Returns the latest HLC timestamp within unix millisecond `unix_ms`, so that an
/// `as of` read sees every write committed during that millisecond. Saturates when
/// `unix_ms` does not fit in 48 bits.
pub fn hlc_end_of_ms(unix_ms: u64) -> u64 {
    unix_ms
        .checked_shl(HLC_LOGICAL_BITS)
        .filter(|shifted| shifted >> HLC_LOGICAL_BITS == unix_ms)
        .map_or(u64::MAX, |shifted| shifted | 0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_joins() {
        let ts = (1_732_580_000_123 << 16) | 7;
        assert_eq!(hlc_unix_ms(ts), 1_732_580_000_123);
        assert_eq!(hlc_logical(ts), 7);
        assert_eq!(hlc_unix_ms(hlc_end_of_ms(1_732_580_000_123)), 1_732_580_000_123);
        assert_eq!(hlc_logical(hlc_end_of_ms(5)), u16::MAX);
        assert_eq!(hlc_end_of_ms(u64::MAX), u64::MAX);
    }
}
