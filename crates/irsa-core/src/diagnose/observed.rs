//! The diagnosis step for what running pods really do: the `AssumeRoleWithWebIdentity` calls
//! CloudTrail recorded ([`crate::assume_history`]) and whether their nodes let them fall back
//! to the instance role ([`crate::node_fallback`]). Both feed WorkloadsValid.

use super::Diagnosis;
use crate::annotations::ServiceAccount;
use crate::arn::RoleArn;
use crate::facts::{Fact, Facts};
use crate::reason::{ConditionType as C, Reason};

impl Diagnosis {
    /// Adds the findings of the observed facts to WorkloadsValid. The workload audit closes that
    /// condition when it runs (the operator); otherwise (`check`) this step does. Nothing is said
    /// when neither fact was looked for, or the ServiceAccount names no role to check against.
    pub(super) fn check_observed(
        &mut self,
        facts: &Facts,
        sa: Option<&ServiceAccount>,
        role: Option<&RoleArn>,
    ) {
        let cond = C::WorkloadsValid;
        if matches!(
            (&facts.assume_history, &facts.node_fallback),
            (Fact::Skipped(_), Fact::Skipped(_))
        ) || sa.and_then(ServiceAccount::role_arn_annotation).is_none()
            || role.is_none()
        {
            return;
        }
        // The role is known to take the ServiceAccount's token: by its trust policy, or the probe.
        let trusted = self.trust_admits == Some(true)
            || self
                .conditions
                .iter()
                .any(|c| c.type_ == C::ProbeSucceeded && c.reason == Reason::ProbeAssumedRole);
        let mut checked = Vec::new();
        match &facts.assume_history {
            Fact::Known(history) => {
                let found = history.findings(trusted);
                if found.is_empty() {
                    checked.push(history.summary());
                }
                for f in found {
                    self.add(f.reason, cond, f.message);
                }
            }
            Fact::Unavailable(u) => self.unavailable(cond, u),
            Fact::Skipped(_) => {}
        }
        match &facts.node_fallback {
            Fact::Known(nodes) => {
                let found = nodes.findings();
                if found.is_empty() {
                    checked.push(nodes.summary());
                }
                for f in found {
                    self.add(f.reason, cond, f.message);
                }
            }
            Fact::Unavailable(u) => self.unavailable(cond, u),
            Fact::Skipped(_) => {}
        }
        let audit_closes = matches!(facts.workloads, Some(Fact::Known(_) | Fact::Unavailable(_)));
        if !audit_closes {
            let message = if checked.is_empty() {
                "the running pods' credentials were checked".to_string()
            } else {
                checked.join("; ")
            };
            self.close(cond, Reason::WorkloadsObservedHealthy, message);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::assume_history::{AssumeEvent, AssumeHistory, EventLog};
    use crate::facts::{Fact, Facts, Role, Unavailable};
    use crate::node_fallback::{
        HttpTokens, InstanceMetadata, NodeFallback, NodeInstance, RunningPod,
    };
    use crate::reason::{ConditionType as C, Reason};
    use crate::report::{Report, Status};
    use crate::{diagnose, Issuer, ServiceAccount};

    const HOST: &str = "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";
    const ROLE: &str = "arn:aws:iam::111122223333:role/s3-reader";
    const NOW: i64 = 1_714_564_800;

    /// A ServiceAccount whose role trusts it.
    fn facts() -> Facts {
        let sa = ServiceAccount {
            namespace: "reports".into(),
            name: "s3-reader".into(),
            annotations: [("eks.amazonaws.com/role-arn".to_string(), ROLE.to_string())].into(),
            ..Default::default()
        };
        let mut f = Facts::for_service_account(sa);
        f.issuer = Fact::Known(Issuer::parse(HOST).unwrap());
        f.role = Fact::Known(Some(Role {
            trust_policy: format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"Federated":"arn:aws:iam::111122223333:oidc-provider/{HOST}"}},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{{"StringEquals":{{"{HOST}:sub":"system:serviceaccount:reports:s3-reader","{HOST}:aud":"sts.amazonaws.com"}}}}}}]}}"#
            ),
        }));
        f
    }

    fn workloads(report: &Report) -> Vec<&crate::ConditionVerdict> {
        report
            .conditions
            .iter()
            .filter(|c| c.type_ == C::WorkloadsValid)
            .collect()
    }

    fn exposed() -> NodeFallback {
        NodeFallback {
            pods: vec![RunningPod {
                name: "app-1".into(),
                node: "ip-10-0-1-5".into(),
                host_network: false,
            }],
            nodes: BTreeMap::from([(
                "ip-10-0-1-5".into(),
                NodeInstance::Ec2(InstanceMetadata {
                    instance_id: "i-0123456789abcdef0".into(),
                    endpoint_enabled: true,
                    http_tokens: HttpTokens::Required,
                    hop_limit: Some(2),
                }),
            )]),
        }
    }

    #[test]
    fn nothing_looked_for_says_nothing() {
        let report = diagnose(&facts());
        assert!(workloads(&report).is_empty(), "{:?}", report.conditions);
    }

    #[test]
    fn node_role_fallback_is_a_warning_that_keeps_ready() {
        let mut f = facts();
        f.node_fallback = Fact::Known(exposed());
        let report = diagnose(&f);
        let w = workloads(&report);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].status, Status::True);
        assert_eq!(w[0].reason, Reason::WorkloadsObservedHealthy);
        assert!(
            w[0].message.contains("Warning: 1 pod(s)"),
            "{}",
            w[0].message
        );
        assert!(report
            .findings
            .iter()
            .any(|f| f.reason == Reason::NodeRoleFallbackPossible));
        // A warning: no error, and Ready does not point at it.
        assert!(!report.has_errors());
        assert_ne!(report.ready().reason, Reason::NodeRoleFallbackPossible);
    }

    #[test]
    fn failing_pods_fail_workloads_and_ready() {
        let mut f = facts();
        let log = EventLog {
            since: NOW - 12 * 3600,
            until: NOW,
            events: vec![AssumeEvent {
                time: Some(NOW - 60),
                subject: Some("system:serviceaccount:reports:s3-reader".into()),
                provider: None,
                role_arn: Some(ROLE.into()),
                error_code: Some("InvalidIdentityToken".into()),
            }],
            complete: true,
            unreadable: 0,
        };
        let subject = "system:serviceaccount:reports:s3-reader";
        f.assume_history = Fact::Known(AssumeHistory::summarise(&log, subject, None, ROLE, &[]));
        let report = diagnose(&f);
        let w = workloads(&report);
        assert_eq!(
            (w[0].status, w[0].reason),
            (Status::False, Reason::WorkloadAssumeFailures)
        );
        assert!(
            w[0].message.contains("InvalidIdentityToken x1"),
            "{}",
            w[0].message
        );
        assert_eq!(report.ready().status, Status::False);
    }

    #[test]
    fn a_denied_look_up_is_unknown_and_the_audit_keeps_closing_the_condition() {
        let mut f = facts();
        f.node_fallback = Fact::Unavailable(Unavailable {
            reason: Reason::AwsAccessDenied,
            detail: "may not call ec2:DescribeInstances".into(),
        });
        let report = diagnose(&f);
        let w = workloads(&report);
        assert_eq!(
            (w[0].status, w[0].reason),
            (Status::Unknown, Reason::AwsAccessDenied)
        );
        assert!(!report.has_errors());
        // The operator audits pods too: one verdict, with the finding in it.
        let mut f = facts();
        f.workloads = Some(Fact::Known(crate::pods::Pods::default()));
        f.node_fallback = Fact::Known(exposed());
        let report = diagnose(&f);
        let w = workloads(&report);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].reason, Reason::NoWorkloads);
        assert!(
            w[0].message.contains("NodeRoleFallbackPossible") || w[0].message.contains("1 pod(s)"),
            "{}",
            w[0].message
        );
    }
}
