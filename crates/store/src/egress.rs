//! Egress policies of VMs and sessions (the JSON is the server's business).

use crate::*;
use rusqlite::{params, OptionalExtension, Row};

/// A stored policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressRow {
    /// `vm` or `session`.
    pub target_type: String,
    pub target_id: String,
    pub user_id: i64,
    pub policy: String,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "target_type, target_id, user_id, policy, updated_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<EgressRow> {
    Ok(EgressRow {
        target_type: row.get(0)?,
        target_id: row.get(1)?,
        user_id: row.get(2)?,
        policy: row.get(3)?,
        updated_at: from_millis(row.get(4)?),
    })
}

impl Store {
    /// Insert or replace the policy of a VM or session.
    pub fn set_egress_policy(&self, row: &EgressRow) -> Result<()> {
        self.writer().execute(
            &format!(
                "INSERT INTO egress_policies ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (target_type, target_id) DO UPDATE SET
                   user_id = excluded.user_id, policy = excluded.policy,
                   updated_at = excluded.updated_at"
            ),
            params![
                row.target_type,
                row.target_id,
                row.user_id,
                row.policy,
                to_millis(row.updated_at)
            ],
        )?;
        Ok(())
    }

    pub fn get_egress_policy(
        &self,
        target_type: &str,
        target_id: &str,
    ) -> Result<Option<EgressRow>> {
        Ok(self
            .reader()
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM egress_policies WHERE target_type = ?1 AND target_id = ?2"
                ),
                params![target_type, target_id],
                from_row,
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_replaced_and_read_back() {
        let s = Store::open_in_memory().unwrap();
        let user = s
            .create_user("e@example.com", None, false, Utc::now())
            .unwrap();
        let mut row = EgressRow {
            target_type: "vm".into(),
            target_id: "vm_1".into(),
            user_id: user.id,
            policy: "{\"a\":1}".into(),
            updated_at: from_millis(1000),
        };
        s.set_egress_policy(&row).unwrap();
        row.policy = "{\"a\":2}".into();
        row.updated_at = from_millis(2000);
        s.set_egress_policy(&row).unwrap();
        assert_eq!(s.get_egress_policy("vm", "vm_1").unwrap(), Some(row));
        assert_eq!(s.get_egress_policy("session", "vm_1").unwrap(), None);
    }
}
