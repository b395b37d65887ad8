//! Every role of an account with its trust policy (`iam:ListRoles`), for `audit trust`: one call
//! per page, whatever the number of roles, through the same limiter, counters and cache as every
//! other fact.

use irsa_core::trust_audit::ListedRole;
use irsa_core::{Reason, Unavailable};

use crate::facts::AwsFacts;
use crate::limiter::Lane;

/// Roles asked for per `iam:ListRoles` page: IAM's default page size, so a page's response (each
/// role carries its trust policy) stays small and a throttled page retries little.
pub const LIST_ROLES_PAGE_SIZE: i32 = 100;

/// The most roles read from one account. IAM allows at most 5,000 roles per account, so more
/// means the listing does not end (a marker that does not advance).
pub const MAX_LISTED_ROLES: usize = 10_000;

impl AwsFacts {
    /// Every role of `account` with its trust policy as IAM returns it (URL-encoded;
    /// [`irsa_core::PolicyDocument::parse`] decodes it), in IAM's order. Asked in the operator's
    /// own [`Lane`]; cached per account for the role TTL.
    pub async fn list_roles(&self, account: &str) -> Result<Vec<ListedRole>, Unavailable> {
        let clients = self.clients_for(account).await?;
        self.role_lists
            .get_or_fetch(account.to_string(), Result::is_ok, || async {
                let mut roles = Vec::new();
                let mut marker: Option<String> = None;
                loop {
                    let request = clients
                        .iam
                        .list_roles()
                        .max_items(LIST_ROLES_PAGE_SIZE)
                        .set_marker(marker.clone());
                    let out = self
                        .call(&Lane::Operator, "iam", "ListRoles", request.send())
                        .await
                        .map_err(|f| {
                            self.unavailable(&f, "iam:ListRoles", &format!("account {account}"))
                        })?;
                    roles.extend(out.roles().iter().map(|r| ListedRole {
                        arn: r.arn().to_string(),
                        trust_policy: r
                            .assume_role_policy_document()
                            .unwrap_or_default()
                            .to_string(),
                    }));
                    let next = out.marker().filter(|m| out.is_truncated() && !m.is_empty());
                    match next {
                        None => return Ok(roles),
                        Some(m) if roles.len() >= MAX_LISTED_ROLES || marker.as_deref() == Some(m) => {
                            return Err(Unavailable {
                                reason: Reason::AwsApiUnavailable,
                                detail: format!(
                                    "iam:ListRoles of account {account} did not end after {} roles (IAM allows \
                                     at most 5,000 per account); the listing was abandoned",
                                    roles.len()
                                ),
                            })
                        }
                        Some(m) => marker = Some(m.to_string()),
                    }
                }
            })
            .await
    }
}
