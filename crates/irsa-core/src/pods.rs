//! A ServiceAccount's pods as the diagnosis holds them: those its audit has something to say
//! about, in full, and how many more were admitted and pass every check, as a count. A pod's
//! findings never depend on the other pods, so counting the passing ones changes no verdict, and
//! memory follows what is wrong in a cluster, not how many pods it runs.

use std::slice;

use crate::diagnose::pod_identity_in_force;
use crate::workloads::{self, PodFacts};
use crate::{pod_identity, Facts, ServiceAccount};

/// Which audit a ServiceAccount's pods get, from what is known of its credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodAudit<'a> {
    /// The IRSA audit against the annotated role ARN.
    Irsa {
        /// The ServiceAccount's `eks.amazonaws.com/role-arn` annotation.
        role_arn: &'a str,
    },
    /// The EKS Pod Identity audit: an association is in force.
    PodIdentity,
    /// Not known yet (or neither applies): every pod is kept.
    Undecided,
}

impl<'a> PodAudit<'a> {
    /// The audit the diagnosis of `facts` runs: Pod Identity when an association is in force,
    /// else IRSA when the ServiceAccount is annotated.
    pub fn of(facts: &'a Facts) -> PodAudit<'a> {
        if pod_identity_in_force(facts).is_some() {
            return PodAudit::PodIdentity;
        }
        match facts
            .service_account
            .known()
            .and_then(Option::as_ref)
            .and_then(ServiceAccount::role_arn_annotation)
        {
            Some(role_arn) => PodAudit::Irsa { role_arn },
            None => PodAudit::Undecided,
        }
    }

    /// Whether `pod` was admitted and this audit finds nothing in it.
    pub fn passes(&self, pod: &PodFacts) -> bool {
        let one = slice::from_ref(pod);
        pod.admitted
            && match self {
                PodAudit::Irsa { role_arn } => workloads::audit(one, role_arn).is_empty(),
                PodAudit::PodIdentity => pod_identity::audit(one).is_empty(),
                PodAudit::Undecided => false,
            }
    }
}

/// The pods of one ServiceAccount: those with something to report, and a count of the rest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pods {
    listed: Vec<PodFacts>,
    passing: usize,
}

impl Pods {
    /// Every pod, kept in full.
    pub fn all(pods: Vec<PodFacts>) -> Pods {
        Pods {
            listed: pods,
            passing: 0,
        }
    }

    /// Adds `pod`: counted when `audit` passes it, kept otherwise.
    pub fn add(&mut self, pod: PodFacts, audit: &PodAudit<'_>) {
        if audit.passes(&pod) {
            self.passing += 1;
        } else {
            self.listed.push(pod);
        }
    }

    /// The pods kept in full: those the audit has something to say about.
    pub fn listed(&self) -> &[PodFacts] {
        &self.listed
    }

    /// The pods kept in full, to be told more about (what admission says of them); adding one
    /// goes through [`Pods::add`].
    pub fn listed_mut(&mut self) -> &mut [PodFacts] {
        &mut self.listed
    }

    /// How many pods there are, counted ones included.
    pub fn len(&self) -> usize {
        self.listed.len() + self.passing
    }

    /// Whether the ServiceAccount has no pod at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether every pod went through admission (counted ones did).
    pub fn all_admitted(&self) -> bool {
        self.listed.iter().all(|p| p.admitted)
    }
}

impl From<Vec<PodFacts>> for Pods {
    fn from(pods: Vec<PodFacts>) -> Pods {
        Pods::all(pods)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod_identity::{parse_associations, PodIdentity};
    use crate::Fact;
    use serde_json::{json, Value};

    const ROLE: &str = "arn:aws:iam::111122223333:role/app";

    /// A live pod with one container whose environment is `env`, and the projected token.
    fn pod(name: &str, env: Value) -> PodFacts {
        let spec = json!({
            "containers": [{"name": "app", "env": env}],
            "volumes": [{"name": "aws-iam-token", "projected": {"sources": [{"serviceAccountToken": {}}]}}],
        });
        workloads::pod_facts_from(Some(&json!({})), Some(&spec), name.into(), true)
    }

    fn irsa(role: &str) -> Value {
        json!([
            {"name": "AWS_ROLE_ARN", "value": role},
            {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"},
        ])
    }

    fn pod_identity() -> Value {
        json!([
            {"name": pod_identity::FULL_URI_ENV, "value": "http://169.254.170.23/v1/credentials"},
            {"name": pod_identity::TOKEN_FILE_ENV, "value": "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token"},
        ])
    }

    #[test]
    fn only_admitted_pods_the_audit_passes_are_counted() {
        let irsa_audit = PodAudit::Irsa { role_arn: ROLE };
        let mut pods = Pods::default();
        pods.add(pod("good-1", irsa(ROLE)), &irsa_audit);
        pods.add(pod("good-2", irsa(ROLE)), &irsa_audit);
        pods.add(
            pod("stale", irsa("arn:aws:iam::111122223333:role/old")),
            &irsa_audit,
        );
        pods.add(pod("bare", json!([])), &irsa_audit);
        let mut manifest = pod("template", irsa(ROLE));
        manifest.admitted = false;
        pods.add(manifest, &irsa_audit);
        let kept: Vec<&str> = pods.listed().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(kept, ["stale", "bare", "template"]);
        assert_eq!(pods.len(), 5);
        assert!(!pods.all_admitted());

        // Each audit passes only the pods injected for it; undecided keeps every pod.
        assert!(!irsa_audit.passes(&pod("pi", pod_identity())));
        assert!(PodAudit::PodIdentity.passes(&pod("pi", pod_identity())));
        assert!(!PodAudit::PodIdentity.passes(&pod("irsa", irsa(ROLE))));
        assert!(!PodAudit::Undecided.passes(&pod("irsa", irsa(ROLE))));
        assert!(Pods::default().is_empty());
    }

    #[test]
    fn the_audit_follows_the_credentials_in_force() {
        let annotated = |role: Option<&str>| {
            let annotations = role
                .map(|r| [(crate::annotations::ROLE_ARN.to_string(), r.to_string())].into())
                .unwrap_or_default();
            Facts::for_service_account(ServiceAccount {
                namespace: "ns".into(),
                name: "app".into(),
                annotations,
                ..Default::default()
            })
        };
        assert_eq!(
            PodAudit::of(&annotated(Some(ROLE))),
            PodAudit::Irsa { role_arn: ROLE }
        );
        assert_eq!(PodAudit::of(&annotated(None)), PodAudit::Undecided);
        let association = parse_associations(
            &json!({"associationId": "a-1", "clusterName": "c", "namespace": "ns",
                    "serviceAccount": "app", "roleArn": ROLE})
            .to_string(),
        )
        .unwrap()
        .remove(0);
        let mut associated = annotated(Some(ROLE));
        associated.pod_identity = Fact::Known(Some(PodIdentity::new(association)));
        assert_eq!(PodAudit::of(&associated), PodAudit::PodIdentity);
    }
}
