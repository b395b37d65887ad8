//! `ec2:DescribeInstances` for the metadata options of the instances behind a ServiceAccount's
//! nodes: whether a pod can reach the node's instance role
//! ([`irsa_core::node_fallback::NodeFallback`]). Cached per instance, so nodes shared by many
//! ServiceAccounts are asked about once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_ec2::types::{Filter, HttpTokensState, InstanceMetadataEndpointState};
use irsa_core::node_fallback::{HttpTokens, InstanceMetadata};
use irsa_core::Fact;

use super::AwsFacts;
use crate::cache::FactCache;
use crate::limiter::Lane;

/// Instance IDs per call. They go in an `instance-id` filter rather than `InstanceIds`, which
/// fails the whole call when one instance is unknown (a node whose instance is long gone).
pub const IDS_PER_CALL: usize = 200;
/// At most this many pages per call (each holds every instance of the filter; a guard only).
const MAX_PAGES: usize = 10;

/// Metadata options by instance ID; `None`: EC2 does not list the instance.
pub(super) struct Lookups {
    instances: FactCache<String, Option<InstanceMetadata>>,
}

impl Lookups {
    pub(super) fn new(ttl: Duration, max_entries: u64) -> Lookups {
        Lookups {
            instances: FactCache::new(ttl, max_entries),
        }
    }
}

/// An instance's options as EC2 reports them; what it leaves out is EC2's default (endpoint
/// enabled, IMDSv1 allowed, hop limit 1).
fn metadata(instance: &aws_sdk_ec2::types::Instance, id: &str) -> InstanceMetadata {
    let options = instance.metadata_options();
    InstanceMetadata {
        instance_id: id.to_string(),
        endpoint_enabled: !matches!(
            options.and_then(|o| o.http_endpoint()),
            Some(InstanceMetadataEndpointState::Disabled)
        ),
        http_tokens: match options.and_then(|o| o.http_tokens()) {
            Some(HttpTokensState::Required) => HttpTokens::Required,
            _ => HttpTokens::Optional,
        },
        hop_limit: options.and_then(|o| o.http_put_response_hop_limit()),
    }
}

impl AwsFacts {
    /// The metadata options of the EC2 instances `ids` (with the operator's own credentials,
    /// in its region), asked in `lane`; an instance EC2 does not list is left out of the map.
    pub async fn instance_metadata(
        &self,
        lane: &Lane,
        ids: &[String],
    ) -> Fact<BTreeMap<String, InstanceMetadata>> {
        let wanted: BTreeSet<&String> = ids.iter().collect();
        let mut found = BTreeMap::new();
        let mut missing = Vec::new();
        for id in wanted {
            match self.instances.instances.peek(id).await {
                Some(Some(m)) => {
                    found.insert(id.clone(), m);
                }
                Some(None) => {}
                None => missing.push(id.clone()),
            }
        }
        for batch in missing.chunks(IDS_PER_CALL) {
            let mut listed = BTreeMap::new();
            let mut token: Option<String> = None;
            for _ in 0..MAX_PAGES {
                let request = self
                    .home
                    .ec2
                    .describe_instances()
                    .filters(
                        Filter::builder()
                            .name("instance-id")
                            .set_values(Some(batch.to_vec()))
                            .build(),
                    )
                    .set_next_token(token.take());
                let out = match self
                    .call(lane, "ec2", "DescribeInstances", request.send())
                    .await
                {
                    Ok(out) => out,
                    Err(f) => {
                        return Fact::Unavailable(self.unavailable(
                            &f,
                            "ec2:DescribeInstances",
                            &format!("instances {}", batch.join(", ")),
                        ))
                    }
                };
                for instance in out.reservations().iter().flat_map(|r| r.instances()) {
                    if let Some(id) = instance.instance_id() {
                        listed.insert(id.to_string(), metadata(instance, id));
                    }
                }
                match out.next_token() {
                    Some(t) if !t.is_empty() => token = Some(t.to_string()),
                    _ => break,
                }
            }
            for id in batch {
                let m = listed.remove(id);
                self.instances.instances.insert(id.clone(), m.clone()).await;
                if let Some(m) = m {
                    found.insert(id.clone(), m);
                }
            }
        }
        Fact::Known(found)
    }
}
