//! EKS Pod Identity beside IRSA: an association (cluster, namespace, ServiceAccount → role) that
//! the EKS Pod Identity webhook turns into `AWS_CONTAINER_CREDENTIALS_FULL_URI` and
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, served by the Pod Identity Agent on 169.254.170.23.
//! When a ServiceAccount has both an association and a role-arn annotation, the webhook injects
//! Pod Identity and not IRSA, so the association is the one in force.

use serde_json::Value;

use crate::facts::{Fact, Role};
use crate::reason::Reason;
use crate::trust::ServiceRequest;
use crate::workloads::{PodFacts, WorkloadFinding};

/// The service principal the Pod Identity Agent assumes roles as.
pub const SERVICE_PRINCIPAL: &str = "pods.eks.amazonaws.com";
/// The actions the role's trust policy must grant it.
pub const ACTIONS: [&str; 2] = ["sts:AssumeRole", "sts:TagSession"];
/// The credentials endpoint variable the webhook injects.
pub const FULL_URI_ENV: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
/// The token file variable the webhook injects.
pub const TOKEN_FILE_ENV: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";
/// The projected token volume the webhook adds.
pub const TOKEN_VOLUME: &str = "eks-pod-identity-token";
/// The EKS add-on that runs the agent.
pub const AGENT_ADDON: &str = "eks-pod-identity-agent";

/// One Pod Identity association, as `eks:DescribePodIdentityAssociation` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Association {
    /// `a-…`.
    pub id: String,
    /// Its ARN, `arn:<partition>:eks:<region>:<account>:podidentityassociation/<cluster>/<id>`, when known.
    pub arn: Option<String>,
    /// The cluster's name.
    pub cluster: String,
    /// The ServiceAccount's namespace.
    pub namespace: String,
    /// The ServiceAccount's name.
    pub service_account: String,
    /// The role pods get.
    pub role_arn: String,
}

impl Association {
    /// The cluster's ARN, derived from the association's ARN (`aws:SourceArn` of the agent's call).
    pub fn cluster_arn(&self) -> Option<String> {
        let arn = self.arn.as_deref()?;
        let (prefix, resource) = arn.rsplit_once(':')?;
        let cluster = resource
            .strip_prefix("podidentityassociation/")?
            .split('/')
            .next()?;
        Some(format!("{prefix}:cluster/{cluster}"))
    }

    /// The cluster's account (`aws:SourceAccount`), from the association's ARN.
    pub fn account(&self) -> Option<String> {
        self.arn.as_deref()?.split(':').nth(4).map(str::to_string)
    }

    /// What the agent presents to STS for this association's role.
    pub fn request(&self) -> ServiceRequest {
        ServiceRequest {
            service: SERVICE_PRINCIPAL.to_string(),
            actions: ACTIONS.iter().map(|a| a.to_string()).collect(),
            source_account: self.account(),
            source_arn: self.cluster_arn(),
        }
    }
}

/// The Pod Identity facts of one ServiceAccount that has an association.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    /// The association in force (the first, when several name the ServiceAccount).
    pub association: Association,
    /// The association's role; `Known(None)` when IAM says it does not exist.
    pub role: Fact<Option<Role>>,
    /// Whether the Pod Identity Agent add-on is installed in the cluster.
    pub agent: Fact<bool>,
}

impl PodIdentity {
    /// An association with nothing else known yet.
    pub fn new(association: Association) -> PodIdentity {
        PodIdentity {
            association,
            role: Fact::Skipped("the association role's trust policy was not given".into()),
            agent: Fact::Skipped(
                "whether the EKS Pod Identity Agent is installed was not checked".into(),
            ),
        }
    }
}

/// Reads the JSON `aws eks describe-pod-identity-association` prints (`{"association": {…}}`),
/// a bare association object, or an array of either.
pub fn parse_associations(text: &str) -> Result<Vec<Association>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let items = match value {
        Value::Array(items) => items,
        Value::Object(ref o) if o.contains_key("associations") => {
            o["associations"].as_array().cloned().unwrap_or_default()
        }
        other => vec![other],
    };
    items
        .iter()
        .map(|item| {
            let a = item.get("association").unwrap_or(item);
            let field = |k: &str| a.get(k).and_then(Value::as_str).map(str::to_string);
            let need = |k: &str| field(k).ok_or_else(|| format!("an association has no {k:?}"));
            Ok(Association {
                id: field("associationId").unwrap_or_default(),
                arn: field("associationArn"),
                cluster: field("clusterName").unwrap_or_default(),
                namespace: need("namespace")?,
                service_account: need("serviceAccount")?,
                role_arn: need("roleArn")?,
            })
        })
        .collect()
}

/// Whether a container's environment shows Pod Identity injection.
pub fn injected(env: &std::collections::BTreeMap<String, Option<String>>) -> bool {
    env.contains_key(FULL_URI_ENV) && env.contains_key(TOKEN_FILE_ENV)
}

/// The workload audit for a ServiceAccount whose association is in force: pods created before
/// the association lack the agent's variables; static keys shadow it as they shadow IRSA.
pub fn audit(pods: &[PodFacts]) -> Vec<WorkloadFinding> {
    let mut stale = Vec::new();
    let mut shadowed = Vec::new();
    for pod in pods {
        for c in pod
            .containers
            .iter()
            .filter(|c| !pod.skip_containers.contains(&c.name))
        {
            if !injected(&c.env) {
                stale.push(format!(
                    "{} container {} has no {FULL_URI_ENV}/{TOKEN_FILE_ENV}",
                    pod.name, c.name
                ));
            }
            let statics: Vec<&str> = ["AWS_ACCESS_KEY_ID", "AWS_PROFILE"]
                .into_iter()
                .filter(|k| c.env.contains_key(*k))
                .collect();
            if !statics.is_empty() {
                shadowed.push(format!(
                    "{} container {} sets {}",
                    pod.name,
                    c.name,
                    statics.join(", ")
                ));
            }
        }
    }
    let mut findings = Vec::new();
    if !stale.is_empty() {
        findings.push(WorkloadFinding {
            reason: Reason::StalePodsFound,
            message: format!(
                "pods predate the Pod Identity association or were not mutated: {}",
                stale.join("; ")
            ),
        });
    }
    if !shadowed.is_empty() {
        findings.push(WorkloadFinding {
            reason: Reason::StaticCredentialsFound,
            message: format!(
                "static credentials take precedence over Pod Identity: {}",
                shadowed.join("; ")
            ),
        });
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::diagnose;
    use crate::facts::Facts;
    use crate::probe::{classify, Injection, ProbeObservation, ProbeResult};
    use crate::report::Status;
    use crate::{ConditionType, RoleArn, ServiceAccount};

    const ROLE: &str = "arn:aws:iam::111122223333:role/pi-reader";

    fn association() -> Association {
        parse_associations(&format!(
            r#"{{"association":{{"clusterName":"prod","namespace":"a","serviceAccount":"b","roleArn":"{ROLE}",
                "associationArn":"arn:aws:eks:us-east-1:111122223333:podidentityassociation/prod/a-1","associationId":"a-1"}}}}"#
        ))
        .unwrap()
        .remove(0)
    }

    fn trust(actions: &str) -> String {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"Service":"pods.eks.amazonaws.com"}},"Action":{actions}}}]}}"#
        )
    }

    fn facts(annotation: Option<&str>, trust_policy: Option<String>, agent: bool) -> Facts {
        let sa = ServiceAccount {
            namespace: "a".into(),
            name: "b".into(),
            annotations: annotation
                .map(|r| ("eks.amazonaws.com/role-arn".to_string(), r.to_string()))
                .into_iter()
                .collect(),
            ..Default::default()
        };
        let mut f = Facts::for_service_account(sa);
        let mut pi = PodIdentity::new(association());
        pi.role = Fact::Known(trust_policy.map(|trust_policy| Role { trust_policy }));
        pi.agent = Fact::Known(agent);
        f.pod_identity = Fact::Known(Some(pi));
        f
    }

    #[test]
    fn parses_the_cli_output_and_derives_the_cluster() {
        let a = association();
        assert_eq!(a.role_arn, ROLE);
        assert_eq!(
            a.cluster_arn().as_deref(),
            Some("arn:aws:eks:us-east-1:111122223333:cluster/prod")
        );
        assert_eq!(a.account().as_deref(), Some("111122223333"));
        assert!(parse_associations(r#"[{"namespace":"a"}]"#).is_err());
    }

    #[test]
    fn an_unannotated_service_account_with_a_good_association_is_ready() {
        let report = diagnose(&facts(
            None,
            Some(trust(r#"["sts:AssumeRole","sts:TagSession"]"#)),
            true,
        ));
        assert_eq!(report.ready().status, Status::True, "{report:?}");
        assert_eq!(report.role_arn.as_deref(), Some(ROLE));
        let sa = report
            .condition(ConditionType::ServiceAccountValid)
            .unwrap();
        assert_eq!(sa.reason, Reason::PodIdentityAssociated);
        let oidc = report.condition(ConditionType::OidcProviderValid).unwrap();
        assert_eq!(oidc.reason, Reason::OIDCProviderNotNeeded);
    }

    #[test]
    fn the_association_overrides_the_annotation_and_is_diagnosed() {
        let other = "arn:aws:iam::111122223333:role/irsa-old";
        let report = diagnose(&facts(Some(other), Some(trust(r#""sts:*""#)), true));
        let f = report
            .findings
            .iter()
            .find(|f| f.reason == Reason::PodIdentityOverridesAnnotation)
            .unwrap();
        assert!(
            f.message.contains(ROLE) && f.message.contains(other),
            "{}",
            f.message
        );
        assert_eq!(report.ready().status, Status::True);
        assert_eq!(report.role_arn.as_deref(), Some(ROLE));
    }

    #[test]
    fn each_missing_piece_of_the_trust_policy_is_named() {
        let reason = |f: &Facts| report_reason(f, ConditionType::TrustPolicyValid);
        assert_eq!(
            reason(&facts(None, Some(trust(r#""sts:AssumeRole""#)), true)),
            Reason::PodIdentityTrustMissingTagSession
        );
        let irsa = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::111122223333:oidc-provider/x"},"Action":"sts:AssumeRoleWithWebIdentity"}]}"#;
        assert_eq!(
            reason(&facts(None, Some(irsa.into()), true)),
            Reason::PodIdentityTrustMissingService
        );
        assert_eq!(
            reason(&facts(None, Some(trust(r#""sts:TagSession""#)), true)),
            Reason::PodIdentityTrustMissingService
        );
        assert_eq!(reason(&facts(None, None, true)), Reason::RoleNotFound);
        // aws:SourceAccount / aws:SourceArn are the cluster's, known from the association.
        let scoped = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"pods.eks.amazonaws.com"},"Action":["sts:AssumeRole","sts:TagSession"],
            "Condition":{"StringEquals":{"aws:SourceAccount":"111122223333"},"ArnEquals":{"aws:SourceArn":"arn:aws:eks:us-east-1:111122223333:cluster/prod"}}}]}"#;
        assert_eq!(
            reason(&facts(None, Some(scoped.into()), true)),
            Reason::TrustPolicyAllows
        );
        let other = scoped.replace("cluster/prod", "cluster/dev");
        assert_eq!(
            reason(&facts(None, Some(other), true)),
            Reason::PodIdentityTrustMissingService
        );
    }

    fn report_reason(f: &Facts, c: ConditionType) -> Reason {
        diagnose(f).condition(c).unwrap().reason
    }

    #[test]
    fn a_missing_agent_is_a_warning_and_unknown_associations_are_never_false() {
        let report = diagnose(&facts(
            None,
            Some(trust(r#"["sts:AssumeRole","sts:TagSession"]"#)),
            false,
        ));
        assert!(report
            .findings
            .iter()
            .any(|f| f.reason == Reason::PodIdentityAgentMissing));
        assert_eq!(report.ready().status, Status::True);
        let mut f = facts(None, None, true);
        f.pod_identity = Fact::Unavailable(crate::Unavailable {
            reason: Reason::AwsAccessDenied,
            detail: "eks:ListPodIdentityAssociations denied".into(),
        });
        let report = diagnose(&f);
        assert_eq!(report.ready().status, Status::Unknown, "{report:?}");
    }

    #[test]
    fn a_pod_identity_probe_that_assumed_the_association_role_succeeded() {
        let observation = ProbeObservation {
            injection: Injection {
                container_credentials_uri: true,
                container_token_file: true,
                pod_identity_token_volume: true,
                ..Injection::default()
            },
            webhook_configured: Some(true),
            result: ProbeResult::Exited {
                code: 0,
                output: r#"{"Arn":"arn:aws:sts::111122223333:assumed-role/pi-reader/eks-prod-probe-1234"}"#.into(),
            },
        };
        let v = classify(&observation, &RoleArn::parse(ROLE).unwrap());
        assert_eq!(v.reason, Reason::ProbeAssumedRole, "{}", v.message);
    }
}
