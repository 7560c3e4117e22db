//! Retention: which cases have outlived the retention periods of their message types, to
//! be proposed for erasure. Nothing here erases: an administrator decides.

use serde::Serialize;
use sqlx::Row;
use time::OffsetDateTime;

use crate::error::LedgerError;
use crate::ledger::Ledger;

/// A case every one of whose messages not yet erased is past the retention period of its
/// type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErasureProposal {
    pub caseref: String,
    /// Its messages not yet erased.
    pub messages: i64,
    /// When the last of them came due (received + its type's period).
    #[serde(with = "time::serde::rfc3339")]
    pub due_at: OffsetDateTime,
}

impl Ledger {
    /// Cases due for erasure at `now` under `periods` (message type → seconds), earliest
    /// due first, at most `limit`. A case with any message of a type without a period is
    /// never due. Reads every message not yet erased: meant for a periodic worker or an
    /// administrator's request, not for a hot path.
    pub async fn erasure_proposals(
        &self,
        periods: &[(String, i64)],
        now: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<ErasureProposal>, LedgerError> {
        if periods.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "WITH periods AS ( \
                 SELECT * FROM UNNEST($1::text[], $2::bigint[]) AS p(type, seconds) \
             ) \
             SELECT m.caseref, count(*) AS messages, \
                    max(m.received_at + make_interval(secs => p.seconds)) AS due_at \
             FROM messages m \
             LEFT JOIN periods p ON p.type = m.type \
             LEFT JOIN message_keys k ON k.message_id = m.id \
             WHERE m.caseref IS NOT NULL AND k.erased_seq IS NULL \
             GROUP BY m.caseref \
             HAVING bool_and(p.seconds IS NOT NULL) \
                AND max(m.received_at + make_interval(secs => p.seconds)) <= $3 \
             ORDER BY due_at, m.caseref \
             LIMIT $4",
        )
        .bind(periods.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>())
        .bind(periods.iter().map(|(_, s)| *s).collect::<Vec<_>>())
        .bind(now)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(LedgerError::query("listing cases due for erasure"))?;
        let read = |e: sqlx::Error| LedgerError::Corrupt(format!("erasure proposal: {e}"));
        rows.iter()
            .map(|row| {
                Ok(ErasureProposal {
                    caseref: row.try_get("caseref").map_err(read)?,
                    messages: row.try_get("messages").map_err(read)?,
                    due_at: row.try_get("due_at").map_err(read)?,
                })
            })
            .collect()
    }
}
