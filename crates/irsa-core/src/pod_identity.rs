//! EKS Pod Identity beside IRSA: an association (cluster, namespace, ServiceAccount → role) that
//! the EKS Pod Identity webhook turns into `AWS_CONTAINER_CREDENTIALS_FULL_URI` and
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, served by the Pod Identity Agent on 169.254.170.23.
//! When a ServiceAccount has both an association and a role-arn annotation, the webhook injects
//! Pod Identity and not IRSA, so the association is the one in force.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::arn::RoleArn;
use crate::fact::{Fact, PermissionVerdict, Role};
use crate::time::parse_timestamp;
use crate::trust::{AssumeRoleRequest, Caller, SessionTags};

/// The service principal the Pod Identity Agent assumes roles as.
pub const SERVICE_PRINCIPAL: &str = "pods.eks.amazonaws.com";
/// The actions the role's trust policy must grant it (only the first with session tags disabled).
pub const ACTIONS: [&str; 2] = ["sts:AssumeRole", "sts:TagSession"];
/// The credentials endpoint variable the webhook injects.
pub const FULL_URI_ENV: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
/// The token file variable the webhook injects.
pub const TOKEN_FILE_ENV: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";
/// The ECS-style variable SDKs read before [`FULL_URI_ENV`].
pub const RELATIVE_URI_ENV: &str = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI";
/// The projected token volume the webhook adds.
pub const TOKEN_VOLUME: &str = "eks-pod-identity-token";
/// Where the webhook mounts it.
pub const TOKEN_DIR: &str = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount";
/// The endpoints the agent serves, IPv4 and IPv6.
pub const AGENT_URIS: [&str; 2] = [
    "http://169.254.170.23/v1/credentials",
    "http://[fd00:ec2::23]/v1/credentials",
];
/// The EKS add-on that runs the agent.
pub const AGENT_ADDON: &str = "eks-pod-identity-agent";
/// The label of the agent's pods (the add-on's DaemonSet and its Helm chart).
pub const AGENT_POD_LABEL: &str = "app.kubernetes.io/name=eks-pod-identity-agent";
/// The session tags the agent sets, whose values vary per pod.
const PER_POD_TAGS: [&str; 2] = ["kubernetes-pod-name", "kubernetes-pod-uid"];

/// One Pod Identity association, as `eks:DescribePodIdentityAssociation` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
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
    /// The role the agent assumes.
    pub role_arn: String,
    /// `targetRoleArn`: the role that role assumes in turn (role chaining, often cross-account),
    /// whose credentials pods get.
    pub target_role_arn: Option<String>,
    /// `externalId`: what the target role's trust must require as `sts:ExternalId`.
    pub external_id: Option<String>,
    /// `disableSessionTags`: the agent sets no session tags, and needs no `sts:TagSession`.
    pub disable_session_tags: bool,
    /// `createdAt`, seconds since the epoch: pods created earlier were not mutated for it.
    pub created_at: Option<i64>,
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

    /// The role pods get credentials for: the target role when there is one.
    pub fn pods_role_arn(&self) -> &str {
        self.target_role_arn.as_deref().unwrap_or(&self.role_arn)
    }

    /// The actions the agent needs on each role it assumes.
    pub fn actions(&self) -> Vec<String> {
        let needed = if self.disable_session_tags { 1 } else { 2 };
        ACTIONS[..needed].iter().map(|a| a.to_string()).collect()
    }

    /// The session tags the agent sets: cluster, namespace, ServiceAccount, pod.
    pub fn session_tags(&self) -> SessionTags {
        if self.disable_session_tags {
            return SessionTags::Disabled;
        }
        let mut tags: BTreeMap<String, Option<String>> = [
            ("eks-cluster-arn", self.cluster_arn()),
            ("eks-cluster-name", Some(self.cluster.clone())),
            ("kubernetes-namespace", Some(self.namespace.clone())),
            (
                "kubernetes-service-account",
                Some(self.service_account.clone()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        tags.extend(PER_POD_TAGS.iter().map(|t| (t.to_string(), None)));
        SessionTags::Set(tags)
    }

    /// What the agent presents to STS for this association's role.
    pub fn request(&self) -> AssumeRoleRequest {
        let known = [
            ("aws:sourceaccount", self.account()),
            ("aws:sourcearn", self.cluster_arn()),
        ];
        AssumeRoleRequest {
            caller: Caller::Service(SERVICE_PRINCIPAL.to_string()),
            actions: self.actions(),
            known: known
                .into_iter()
                .filter_map(|(k, v)| Some((k.to_string(), v?)))
                .collect(),
            tags: self.session_tags(),
        }
    }

    /// What a session of the association's role (`role`) presents to STS for the target role.
    pub fn target_request(&self, role: &RoleArn) -> AssumeRoleRequest {
        let known = [
            ("sts:externalid", self.external_id.clone()),
            ("aws:principalarn", Some(role.to_string())),
            ("aws:principalaccount", Some(role.account().to_string())),
        ];
        AssumeRoleRequest {
            caller: Caller::Role(role.clone()),
            actions: self.actions(),
            known: known
                .into_iter()
                .filter_map(|(k, v)| Some((k.to_string(), v?)))
                .collect(),
            tags: self.session_tags(),
        }
    }
}

/// Where the Pod Identity Agent runs: its pods by node, and the nodes that have it built in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentPods {
    /// Nodes with a Ready agent pod.
    pub ready: BTreeSet<String>,
    /// Nodes whose agent pods are none of them Ready.
    pub unready: BTreeSet<String>,
    /// Nodes that serve Pod Identity without an agent pod (EKS Auto Mode).
    pub built_in: BTreeSet<String>,
}

impl AgentPods {
    /// Whether pods on `node` can reach an agent.
    pub fn serves(&self, node: &str) -> bool {
        self.ready.contains(node) || self.built_in.contains(node)
    }
}

/// The association's target role, when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRole {
    /// The target role; `Known(None)` when IAM says it does not exist.
    pub role: Fact<Option<Role>>,
    /// Whether the association role may `sts:AssumeRole` (and `sts:TagSession`) on it, as IAM's
    /// policy simulator says.
    pub chain_permitted: Fact<Vec<PermissionVerdict>>,
}

/// The Pod Identity facts of one ServiceAccount that has an association.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    /// The association in force (the first, when several name the ServiceAccount).
    pub association: Association,
    /// The association's role; `Known(None)` when IAM says it does not exist.
    pub role: Fact<Option<Role>>,
    /// The target role, when the association names one.
    pub target: Option<TargetRole>,
    /// Whether the Pod Identity Agent add-on is installed in the cluster.
    pub agent: Fact<bool>,
    /// The agent's pods, by node (live clusters only).
    pub agents: Fact<AgentPods>,
}

impl PodIdentity {
    /// An association with nothing else known yet.
    pub fn new(association: Association) -> PodIdentity {
        let target = association.target_role_arn.as_ref().map(|_| TargetRole {
            role: Fact::Skipped("the target role's trust policy was not given".into()),
            chain_permitted: Fact::Skipped(
                "whether the association role may assume the target role was not simulated (it needs IAM)"
                    .into(),
            ),
        });
        PodIdentity {
            association,
            role: Fact::Skipped("the association role's trust policy was not given".into()),
            target,
            agent: Fact::Skipped(
                "whether the EKS Pod Identity Agent is installed was not checked".into(),
            ),
            agents: Fact::Skipped("the agent's pods were not looked up".into()),
        }
    }
}

/// At most this many associations are read from one input.
pub const MAX_ASSOCIATIONS: usize = 10_000;

/// Reads the JSON `aws eks describe-pod-identity-association` prints (`{"association": {…}}`),
/// a bare association object, `{"associations": […]}`, or an array of either. A field of the
/// wrong type is an error naming it, never skipped.
pub fn parse_associations(text: &str) -> Result<Vec<Association>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let items = match value {
        Value::Array(items) => items,
        Value::Object(mut o) if o.contains_key("associations") => match o.remove("associations") {
            Some(Value::Array(items)) => items,
            other => {
                return Err(format!(
                    "\"associations\" must be a list of associations, found {}",
                    other.unwrap_or_default()
                ))
            }
        },
        other => vec![other],
    };
    if items.len() > MAX_ASSOCIATIONS {
        return Err(format!(
            "{} associations, more than the {MAX_ASSOCIATIONS} one input may hold",
            items.len()
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            parse_association(item.get("association").unwrap_or(item))
                .map_err(|e| format!("association {}: {e}", i + 1))
        })
        .collect()
}

fn parse_association(a: &Value) -> Result<Association, String> {
    if !a.is_object() {
        return Err(format!("expected an object, found {a}"));
    }
    let field = |k: &str| -> Result<Option<String>, String> {
        match a.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("{k:?} must be a string, found {other}")),
        }
    };
    let need = |k: &str| field(k)?.ok_or_else(|| format!("has no {k:?}"));
    let disable_session_tags = match a.get("disableSessionTags") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(format!(
                "\"disableSessionTags\" must be true or false, found {other}"
            ))
        }
    };
    let created_at = match a.get("createdAt") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(parse_timestamp(s).ok_or_else(|| {
            format!("\"createdAt\" {s:?} is not a time like 2024-05-01T12:00:00Z")
        })?),
        // `--cli-timestamp-format none`, or the API's own JSON: seconds since the epoch.
        Some(Value::Number(n)) => n.as_f64().map(|f| f as i64),
        Some(other) => return Err(format!("\"createdAt\" must be a time, found {other}")),
    };
    Ok(Association {
        id: field("associationId")?.unwrap_or_default(),
        arn: field("associationArn")?,
        cluster: field("clusterName")?.unwrap_or_default(),
        namespace: need("namespace")?,
        service_account: need("serviceAccount")?,
        role_arn: need("roleArn")?,
        target_role_arn: field("targetRoleArn")?.filter(|t| !t.is_empty()),
        external_id: field("externalId")?.filter(|t| !t.is_empty()),
        disable_session_tags,
        created_at,
    })
}

/// The associations whose ServiceAccount does not exist: `exists(namespace, name)` says whether it
/// does, and only namespaces `known(namespace)` says are known in full are judged (`lint` knows
/// the namespaces its inputs cover, a cluster knows all).
pub fn without_service_account(
    associations: &[Association],
    exists: impl Fn(&str, &str) -> bool,
    known: impl Fn(&str) -> bool,
) -> Vec<&Association> {
    associations
        .iter()
        .filter(|a| known(&a.namespace) && !exists(&a.namespace, &a.service_account))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::diagnose;
    use crate::facts::Facts;
    use crate::probe::{classify, Injection, ProbeObservation, ProbeResult};
    use crate::reason::Reason;
    use crate::report::Status;
    use crate::{ConditionType, RoleArn, ServiceAccount};

    const ROLE: &str = "arn:aws:iam::111122223333:role/pi-reader";
    const TARGET: &str = "arn:aws:iam::444455556666:role/data-reader";

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
        // The annotation is dead: an error, as a role that drifted from spec.expectedRoleArn.
        assert_eq!(report.ready().status, Status::False);
        assert_eq!(
            report.ready().reason,
            Reason::PodIdentityOverridesAnnotation
        );
        assert_eq!(report.role_arn.as_deref(), Some(ROLE));
        // The same role by both: a note, not an error.
        let same = diagnose(&facts(Some(ROLE), Some(trust(r#""sts:*""#)), true));
        assert_eq!(same.ready().status, Status::True, "{same:?}");
        assert!(same
            .findings
            .iter()
            .any(|f| f.reason == Reason::RoleArnAnnotationRedundant));
    }

    fn with_target(f: &mut Facts, target_trust: &str, external_id: Option<&str>) {
        let Fact::Known(Some(pi)) = &mut f.pod_identity else {
            unreachable!()
        };
        pi.association.target_role_arn = Some(TARGET.into());
        pi.association.external_id = external_id.map(str::to_string);
        pi.target = Some(TargetRole {
            role: Fact::Known(Some(Role {
                trust_policy: target_trust.into(),
            })),
            chain_permitted: Fact::Skipped("lint".into()),
        });
    }

    fn target_trust(condition: &str) -> String {
        format!(
            r#"{{"Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{ROLE}"}},"Action":["sts:AssumeRole","sts:TagSession"]{condition}}}]}}"#
        )
    }

    #[test]
    fn a_target_role_is_diagnosed_on_both_sides_of_the_chain() {
        let good = trust(r#"["sts:AssumeRole","sts:TagSession"]"#);
        let external = r#","Condition":{"StringEquals":{"sts:ExternalId":"ext-1"}}"#;
        let mut f = facts(None, Some(good.clone()), true);
        with_target(&mut f, &target_trust(external), Some("ext-1"));
        let report = diagnose(&f);
        assert_eq!(report.ready().status, Status::True, "{report:?}");
        assert_eq!(report.role_arn.as_deref(), Some(TARGET));
        // The target's trust requires another external id: the target side is named.
        let mut f = facts(None, Some(good.clone()), true);
        with_target(&mut f, &target_trust(external), Some("ext-2"));
        let report = diagnose(&f);
        let t = report.condition(ConditionType::TrustPolicyValid).unwrap();
        assert_eq!(t.reason, Reason::PodIdentityTargetTrustDenies, "{t:?}");
        assert!(
            t.message.contains("the target role") && t.message.contains(TARGET),
            "{}",
            t.message
        );
        // The association role's side: its trust is wrong, the target is fine.
        let mut f = facts(None, Some(trust(r#""sts:AssumeRole""#)), true);
        with_target(&mut f, &target_trust(""), None);
        assert_eq!(
            report_reason(&f, ConditionType::TrustPolicyValid),
            Reason::PodIdentityTrustMissingTagSession
        );
        // The association role may not assume the target.
        let mut f = facts(None, Some(good), true);
        with_target(&mut f, &target_trust(""), None);
        if let Fact::Known(Some(pi)) = &mut f.pod_identity {
            let t = pi.target.as_mut().unwrap();
            t.chain_permitted = Fact::Known(vec![crate::fact::PermissionVerdict {
                request: crate::fact::PermissionRequest {
                    action: "sts:AssumeRole".into(),
                    resource: TARGET.into(),
                },
                decision: crate::fact::PermissionDecision::ImplicitDeny,
                matched_statements: vec![],
            }]);
        }
        assert_eq!(
            report_reason(&f, ConditionType::PermissionsValid),
            Reason::PodIdentityTargetNotPermitted
        );
    }

    #[test]
    fn disabled_session_tags_need_no_tag_session_and_break_tag_conditions() {
        let untagged = |trust_policy: String| {
            let mut f = facts(None, Some(trust_policy), true);
            if let Fact::Known(Some(pi)) = &mut f.pod_identity {
                pi.association.disable_session_tags = true;
            }
            f
        };
        let f = untagged(trust(r#""sts:AssumeRole""#));
        assert_eq!(diagnose(&f).ready().status, Status::True);
        let by_namespace = r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"pods.eks.amazonaws.com"},
            "Action":["sts:AssumeRole","sts:TagSession"],
            "Condition":{"StringEquals":{"aws:RequestTag/kubernetes-namespace":"a"}}}]}"#;
        assert_eq!(
            diagnose(&facts(None, Some(by_namespace.into()), true))
                .ready()
                .status,
            Status::True
        );
        assert_eq!(
            report_reason(
                &untagged(by_namespace.into()),
                ConditionType::TrustPolicyValid
            ),
            Reason::PodIdentitySessionTagsDisabled
        );
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
