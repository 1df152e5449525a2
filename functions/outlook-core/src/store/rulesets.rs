//! Rule sets stored as versioned JSON documents, one per integration scope
//! (`*` for all mailboxes of the integration, or one mailbox id).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{Store, StoreError, dynamo_err, n, s, to_item};
use crate::ids::{IntegrationId, WorkspaceId};

/// The scope that applies to every mailbox of an integration.
pub const ALL_MAILBOXES: &str = "*";

fn ruleset_sk(int: &IntegrationId, scope: &str) -> String {
    format!("RULES#{int}#{scope}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRuleSet {
    pub workspace_id: WorkspaceId,
    pub integration_id: IntegrationId,
    pub scope: String,
    pub version: u64,
    /// The validated rule set as JSON (see `rules`).
    pub document: String,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(default)]
    pub updated_by: Option<String>,
}

impl Store {
    pub async fn get_ruleset(
        &self,
        ws: &WorkspaceId,
        int: &IntegrationId,
        scope: &str,
    ) -> Result<Option<StoredRuleSet>, StoreError> {
        self.get(super::ws_pk(ws), ruleset_sk(int, scope)).await
    }

    pub async fn list_rulesets(
        &self,
        ws: &WorkspaceId,
        int: &IntegrationId,
    ) -> Result<Vec<StoredRuleSet>, StoreError> {
        self.query_prefix(super::ws_pk(ws), format!("RULES#{int}#"))
            .await
    }

    /// Writes a new version of a rule set. `record.version` must be one more than the stored
    /// version (or 1 for a new scope); a concurrent writer makes this fail with `Conflict`.
    pub async fn put_ruleset(&self, record: &StoredRuleSet) -> Result<(), StoreError> {
        let mut item = to_item(record)?;
        item.insert("pk".into(), s(super::ws_pk(&record.workspace_id)));
        item.insert(
            "sk".into(),
            s(ruleset_sk(&record.integration_id, &record.scope)),
        );
        item.insert("entity".into(), s("ruleset"));
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        let request = if record.version <= 1 {
            request.condition_expression("attribute_not_exists(pk)")
        } else {
            request
                .condition_expression("version = :previous")
                .expression_attribute_values(":previous", n(record.version - 1))
        };
        request.send().await.map_err(dynamo_err)?;
        Ok(())
    }
}
