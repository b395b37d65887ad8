//! The API server's audit log: which identity (by User-Agent) made which request.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// Audit every request once, at the Metadata level (no bodies: tokens and secrets stay out).
pub const POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
";

/// Requests counted by (API group, resource[/subresource], verb).
pub type Requests = BTreeMap<(String, String, String), u64>;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuditEvent {
    #[serde(default)]
    user_agent: String,
    verb: String,
    stage: String,
    object_ref: Option<ObjectRef>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectRef {
    #[serde(default)]
    api_group: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    subresource: String,
}

/// Resource requests from User-Agents starting with `agent` (non-resource URLs such as
/// discovery are left out: RBAC grants those to everyone).
pub fn requests_from(log: &Path, agent: &str) -> anyhow::Result<Requests> {
    let text = std::fs::read_to_string(log)?;
    let mut counts = Requests::new();
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<AuditEvent>(line) else {
            continue;
        };
        // One count per request, whether it completed or was refused.
        if !event.user_agent.starts_with(agent)
            || !matches!(event.stage.as_str(), "ResponseComplete" | "Panic")
        {
            continue;
        }
        let Some(object) = event.object_ref else {
            continue;
        };
        let resource = if object.subresource.is_empty() {
            object.resource
        } else {
            format!("{}/{}", object.resource, object.subresource)
        };
        *counts
            .entry((object.api_group, resource, event.verb))
            .or_default() += 1;
    }
    Ok(counts)
}
