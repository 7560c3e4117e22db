//! Whether the role the broker connects as could bypass the ledger's append-only triggers.
//!
//! The triggers refuse UPDATE, DELETE and TRUNCATE on the ledger tables, but a superuser,
//! or the owner of a table (or a member of the owning role), may disable them. The broker
//! is meant to run as a role with INSERT and SELECT only (`deploy/postgres/roles.sql`,
//! `docs/operations.md`); this tells the operator when it does not.

use serde::Serialize;
use sqlx::Row;

use crate::error::LedgerError;
use crate::ledger::Ledger;

/// The tables whose rows, once written, must never change.
pub const APPEND_ONLY_TABLES: [&str; 5] = [
    "ledger_entries",
    "messages",
    "ledger_tree_nodes",
    "ledger_checkpoints",
    "checkpoint_cosignatures",
];

/// What the connected role could do to the append-only tables beyond appending.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RolePrivileges {
    pub role: String,
    pub superuser: bool,
    /// Append-only tables the role owns, or whose owner it is a member of.
    pub owned_tables: Vec<String>,
}

impl RolePrivileges {
    /// The role could disable the append-only triggers.
    pub fn is_privileged(&self) -> bool {
        self.superuser || !self.owned_tables.is_empty()
    }

    /// One sentence for logs and `/readyz`.
    pub fn describe(&self) -> String {
        let mut powers = Vec::new();
        if self.superuser {
            powers.push("is a superuser".to_owned());
        }
        if !self.owned_tables.is_empty() {
            powers.push(format!("owns {}", self.owned_tables.join(", ")));
        }
        if powers.is_empty() {
            format!("role {} may only append to the ledger", self.role)
        } else {
            format!(
                "role {} {}: it can disable the append-only triggers and rewrite the ledger; \
                 run the broker as an INSERT/SELECT-only role (docs/operations.md)",
                self.role,
                powers.join(" and ")
            )
        }
    }
}

impl Ledger {
    /// The privileges of the role this ledger's connections use.
    pub async fn role_privileges(&self) -> Result<RolePrivileges, LedgerError> {
        let row = sqlx::query(
            "SELECT current_user::text AS role, r.rolsuper AS superuser, \
                    ARRAY(SELECT t.tablename::text FROM pg_tables t \
                          WHERE t.schemaname = current_schema() \
                            AND t.tablename = ANY($1) \
                            AND pg_has_role(current_user, t.tableowner, 'USAGE') \
                          ORDER BY t.tablename) AS owned \
             FROM pg_roles r WHERE r.rolname = current_user",
        )
        .bind(APPEND_ONLY_TABLES.map(str::to_owned).to_vec())
        .fetch_one(self.pool())
        .await
        .map_err(LedgerError::query(
            "reading the privileges of the broker's role",
        ))?;
        Ok(RolePrivileges {
            role: row.get("role"),
            superuser: row.get("superuser"),
            owned_tables: row.get("owned"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_is_privileged_when_superuser_or_owner() {
        let plain = RolePrivileges {
            role: "liaison_broker".into(),
            superuser: false,
            owned_tables: vec![],
        };
        assert!(!plain.is_privileged());
        assert!(plain.describe().contains("only append"));
        let owner = RolePrivileges {
            owned_tables: vec!["ledger_entries".into()],
            ..plain.clone()
        };
        assert!(owner.is_privileged());
        assert!(owner.describe().contains("owns ledger_entries"));
        let superuser = RolePrivileges {
            superuser: true,
            ..plain
        };
        assert!(superuser.is_privileged());
        assert!(superuser.describe().contains("superuser"));
    }
}
