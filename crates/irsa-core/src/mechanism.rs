//! Which mechanism gives a ServiceAccount's pods their role: EKS Pod Identity when an association
//! names the ServiceAccount (the webhook injects it instead of IRSA), else IRSA when the
//! ServiceAccount is annotated. The one home of that rule: the diagnosis and the pod audit both
//! ask here.

use crate::annotations::ServiceAccount;
use crate::fact::Fact;
use crate::facts::Facts;
use crate::pod_identity::PodIdentity;
use crate::pods::PodAudit;
use crate::workloads::Expected;

/// The mechanism in force for one ServiceAccount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InForce<'a> {
    /// An association names the ServiceAccount: its role, whatever the annotation says.
    PodIdentity {
        /// The ServiceAccount.
        service_account: &'a ServiceAccount,
        /// Its association and what is known of it.
        pod_identity: &'a PodIdentity,
    },
    /// No association, and the ServiceAccount is annotated with a role.
    Irsa {
        /// The ServiceAccount.
        service_account: &'a ServiceAccount,
        /// The `eks.amazonaws.com/role-arn` annotation, as written.
        role_arn: &'a str,
    },
    /// Neither is known (yet): the ServiceAccount is missing, unknown, unannotated, or its
    /// associations could not be listed.
    Undecided,
}

/// The mechanism in force, from what is known of the ServiceAccount and its association.
pub fn in_force(facts: &Facts) -> InForce<'_> {
    let Fact::Known(Some(service_account)) = &facts.service_account else {
        return InForce::Undecided;
    };
    match &facts.pod_identity {
        Fact::Known(Some(pod_identity)) => InForce::PodIdentity {
            service_account,
            pod_identity,
        },
        // Without the association list, an annotated ServiceAccount may still be overridden.
        Fact::Unavailable(_) => InForce::Undecided,
        Fact::Known(None) | Fact::Skipped(_) => match service_account.role_arn_annotation() {
            Some(role_arn) => InForce::Irsa {
                service_account,
                role_arn,
            },
            None => InForce::Undecided,
        },
    }
}

impl<'a> InForce<'a> {
    /// The audit a ServiceAccount's pods get: counted when it passes them, kept otherwise.
    pub fn pod_audit(&self) -> PodAudit<'a> {
        match self.expected() {
            Some(expected) => PodAudit::expecting(expected),
            None => PodAudit::undecided(),
        }
    }

    /// What the workload audit expects every container to get.
    pub fn expected(&self) -> Option<Expected<'a>> {
        match *self {
            InForce::PodIdentity { pod_identity, .. } => Some(Expected::PodIdentity {
                association: &pod_identity.association,
                agents: pod_identity.agents.known(),
            }),
            InForce::Irsa { role_arn, .. } => Some(Expected::Irsa { role_arn }),
            InForce::Undecided => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod_identity::Association;
    use crate::Unavailable;

    const ROLE: &str = "arn:aws:iam::111122223333:role/app";

    fn facts(annotated: bool) -> Facts {
        let annotations = if annotated {
            [(crate::annotations::ROLE_ARN.to_string(), ROLE.to_string())].into()
        } else {
            Default::default()
        };
        Facts::for_service_account(ServiceAccount {
            namespace: "ns".into(),
            name: "app".into(),
            annotations,
            ..Default::default()
        })
    }

    #[test]
    fn an_association_wins_over_the_annotation() {
        let f = facts(true);
        assert!(matches!(in_force(&f), InForce::Irsa { role_arn: ROLE, .. }));
        assert_eq!(in_force(&facts(false)), InForce::Undecided);
        let mut associated = facts(true);
        associated.pod_identity = Fact::Known(Some(PodIdentity::new(Association {
            role_arn: "arn:aws:iam::111122223333:role/pi".into(),
            ..Default::default()
        })));
        let found = in_force(&associated);
        assert!(matches!(found, InForce::PodIdentity { .. }));
        assert!(matches!(
            found.expected(),
            Some(Expected::PodIdentity { .. })
        ));
        assert_ne!(found.pod_audit(), PodAudit::undecided());
        assert_eq!(in_force(&facts(false)).pod_audit(), PodAudit::undecided());
        // Not knowing the associations leaves it undecided: the annotation may be dead.
        let mut unknown = facts(true);
        unknown.pod_identity = Fact::Unavailable(Unavailable {
            reason: crate::Reason::AwsApiUnavailable,
            detail: "eks down".into(),
        });
        assert_eq!(in_force(&unknown), InForce::Undecided);
        let mut missing = facts(true);
        missing.service_account = Fact::Known(None);
        assert_eq!(in_force(&missing), InForce::Undecided);
    }
}
