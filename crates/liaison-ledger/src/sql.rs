//! Conversions between column values and domain types. A value that does not convert was
//! not written by the ledger: it is reported as corrupt rather than guessed at.

use liaison_core::AgencyCode;
use time::{OffsetDateTime, UtcOffset};

use crate::error::LedgerError;

pub(crate) fn seq_from_db(seq: i64) -> Result<u64, LedgerError> {
    u64::try_from(seq).map_err(|_| LedgerError::Corrupt(format!("negative seq {seq}")))
}

pub(crate) fn seq_to_db(seq: u64) -> Result<i64, LedgerError> {
    i64::try_from(seq).map_err(|_| LedgerError::Corrupt(format!("seq {seq} exceeds BIGINT")))
}

pub(crate) fn agency_from_db(code: String) -> Result<AgencyCode, LedgerError> {
    AgencyCode::new(code).map_err(|e| LedgerError::Corrupt(e.to_string()))
}

/// A time as PostgreSQL keeps it (UTC, microseconds): what is written, signed or hashed is
/// then the same as what is read back.
pub(crate) fn db_time(at: OffsetDateTime) -> OffsetDateTime {
    let at = at.to_offset(UtcOffset::UTC);
    at.replace_nanosecond(at.nanosecond() / 1_000 * 1_000)
        .unwrap_or(at)
}

pub(crate) fn hash_from_db(bytes: Vec<u8>) -> Result<[u8; 32], LedgerError> {
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        LedgerError::Corrupt(format!("a stored hash has {} bytes, not 32", bytes.len()))
    })
}
