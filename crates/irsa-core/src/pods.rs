//! A ServiceAccount's pods as the diagnosis holds them: those its audit has something to say
//! about, in full, and how many more were admitted and pass every check, as a count. A pod's
//! findings never depend on the other pods, so counting the passing ones changes no verdict, and
//! memory follows what is wrong in a cluster, not how many pods it runs.

use std::slice;

use crate::workloads::{self, Expected, PodFacts};

/// Which audit a ServiceAccount's pods get: what the mechanism in force expects of them, or
/// nothing yet (every pod is then kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodAudit<'a>(Option<Expected<'a>>);

impl<'a> PodAudit<'a> {
    /// The audit for `expected` (the mechanism in force's, [`crate::mechanism::InForce::pod_audit`]).
    pub fn expecting(expected: Expected<'a>) -> PodAudit<'a> {
        PodAudit(Some(expected))
    }

    /// Undecided: every pod is kept.
    pub fn undecided() -> PodAudit<'a> {
        PodAudit(None)
    }

    /// Whether `pod` was admitted and this audit finds nothing in it.
    pub fn passes(&self, pod: &PodFacts) -> bool {
        pod.admitted
            && self
                .0
                .is_some_and(|e| workloads::audit(slice::from_ref(pod), &e).is_empty())
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
    use crate::pod_identity::{self, Association};
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
        let irsa_audit = PodAudit::expecting(Expected::Irsa { role_arn: ROLE });
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
        let association = Association::default();
        let pi_audit = PodAudit::expecting(Expected::PodIdentity {
            association: &association,
            agents: None,
        });
        assert!(!irsa_audit.passes(&pod("pi", pod_identity())));
        assert!(pi_audit.passes(&pod("pi", pod_identity())));
        assert!(!pi_audit.passes(&pod("irsa", irsa(ROLE))));
        assert!(!PodAudit::undecided().passes(&pod("irsa", irsa(ROLE))));
        assert!(Pods::default().is_empty());
    }
}
