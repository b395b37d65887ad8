//! `audit trust`'s map as links, role ↔ ServiceAccount ↔ pod, for the views that draw it: a
//! Graphviz graph (`-o dot`), a CSV table (`-o csv`), one row per pod (`-o pods`) and pod and
//! workload counts per role (`-o wide`). A link is either declared (the ServiceAccount's
//! role-arn annotation, a Pod Identity association) or only admitted (the role's trust would let
//! the ServiceAccount assume it); a declared link the trust refuses is an error.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use irsa_core::trust_audit::{AssociationUsage, RoleAudit};
use irsa_core::Severity;

use crate::gather::workloads::PodPlacement;

/// How a ServiceAccount reaches a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mechanism {
    /// Web identity (`sts:AssumeRoleWithWebIdentity`), declared by the role-arn annotation.
    Irsa,
    /// The role of a Pod Identity association.
    PodIdentity,
    /// The target role of a Pod Identity association (role chaining).
    PodIdentityTarget,
}

impl Mechanism {
    /// As the views print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Irsa => "irsa",
            Mechanism::PodIdentity => "pod-identity",
            Mechanism::PodIdentityTarget => "pod-identity-target",
        }
    }
}

/// What the role's trust policy says of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Trust {
    /// STS would allow it.
    Admitted,
    /// Request context irsa-doctor cannot see decides.
    Conditional,
    /// STS would refuse it.
    Refused,
}

impl Trust {
    /// As the views print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Trust::Admitted => "admitted",
            Trust::Conditional => "conditional",
            Trust::Refused => "refused",
        }
    }
}

/// One ServiceAccount ↔ role link.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Link<'a> {
    /// The role's ARN.
    pub role: &'a str,
    /// `namespace/name`.
    pub service_account: &'a str,
    /// How.
    pub mechanism: Mechanism,
    /// Whether the annotation or an association declares it.
    pub declared: bool,
    /// The trust policy's verdict.
    pub trust: Trust,
    /// The association, for Pod Identity.
    pub association: Option<&'a str>,
}

/// The links of the audited roles, and the pods of each ServiceAccount.
pub struct TrustMap<'a> {
    /// Every link, ordered by role, then ServiceAccount.
    pub links: Vec<Link<'a>>,
    /// Roles with an error finding.
    pub failing: BTreeSet<&'a str>,
    /// Pods by `namespace/name` of their ServiceAccount.
    pub pods: BTreeMap<String, Vec<&'a PodPlacement>>,
}

impl<'a> TrustMap<'a> {
    /// Builds the links of `audits`, with the pods of `placements`.
    pub fn new(audits: &'a [RoleAudit], placements: &'a [PodPlacement]) -> TrustMap<'a> {
        let mut links = Vec::new();
        for audit in audits {
            let role = audit.role_arn.as_str();
            for sa in &audit.service_accounts {
                links.push(Link {
                    role,
                    service_account: &sa.service_account,
                    mechanism: Mechanism::Irsa,
                    declared: sa.annotated,
                    trust: if sa.conditional {
                        Trust::Conditional
                    } else {
                        Trust::Admitted
                    },
                    association: None,
                });
            }
            for sa in &audit.annotated_refused {
                links.push(Link {
                    role,
                    service_account: sa,
                    mechanism: Mechanism::Irsa,
                    declared: true,
                    trust: Trust::Refused,
                    association: None,
                });
            }
            for a in &audit.associations {
                links.push(Link {
                    role,
                    service_account: &a.service_account,
                    mechanism: match a.usage {
                        AssociationUsage::Role => Mechanism::PodIdentity,
                        AssociationUsage::TargetRole => Mechanism::PodIdentityTarget,
                    },
                    declared: true,
                    trust: match (a.admitted, a.conditional) {
                        (true, _) => Trust::Admitted,
                        (false, true) => Trust::Conditional,
                        (false, false) => Trust::Refused,
                    },
                    association: Some(&a.association_id),
                });
            }
        }
        links.sort();
        links.dedup();
        let failing = audits
            .iter()
            .filter(|a| a.findings.iter().any(|f| f.severity == Severity::Error))
            .map(|a| a.role_arn.as_str())
            .collect();
        let mut pods: BTreeMap<String, Vec<&PodPlacement>> = BTreeMap::new();
        for p in placements {
            pods.entry(format!("{}/{}", p.namespace, p.service_account))
                .or_default()
                .push(p);
        }
        TrustMap {
            links,
            failing,
            pods,
        }
    }

    /// Keeps only the links of the ServiceAccounts `keep` admits.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.links.retain(|l| keep(l.service_account));
    }

    fn pods_of(&self, service_account: &str) -> &[&'a PodPlacement] {
        self.pods
            .get(service_account)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Pods and distinct workloads running as ServiceAccounts linked to `role` by a declared
    /// link the trust does not refuse: what actually uses it.
    pub fn usage(&self, role: &str) -> (usize, usize) {
        let accounts: BTreeSet<&str> = self
            .links
            .iter()
            .filter(|l| l.role == role && l.declared && l.trust != Trust::Refused)
            .map(|l| l.service_account)
            .collect();
        let pods: Vec<&PodPlacement> = accounts
            .iter()
            .flat_map(|sa| self.pods_of(sa).iter().copied())
            .collect();
        let workloads: BTreeSet<(&str, &str)> = pods
            .iter()
            .map(|p| (p.namespace.as_str(), p.workload.as_str()))
            .collect();
        (pods.len(), workloads.len())
    }

    /// The graph in Graphviz's DOT language: roles (red when a finding is an error),
    /// ServiceAccounts, workloads with their pod counts; declared links solid, admitted-only
    /// links dotted, refused declared links red.
    pub fn dot(&self) -> String {
        let mut out = String::from(
            "digraph irsa_trust {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=10];\n  edge [fontname=\"Helvetica\", fontsize=9];\n",
        );
        let roles: BTreeSet<&str> = self.links.iter().map(|l| l.role).collect();
        for role in &roles {
            let name = role.rsplit('/').next().unwrap_or(role);
            let color = if self.failing.contains(role) {
                ", color=red, fontcolor=red"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  {} [shape=box, style=rounded, label={}{color}];",
                quote(&format!("role:{role}")),
                quote(&format!("{name}\n{role}")),
            );
        }
        let accounts: BTreeSet<&str> = self.links.iter().map(|l| l.service_account).collect();
        for sa in &accounts {
            let _ = writeln!(
                out,
                "  {} [shape=ellipse, label={}];",
                quote(&format!("sa:{sa}")),
                quote(sa)
            );
            let mut workloads: BTreeMap<(&str, &str), usize> = BTreeMap::new();
            for p in self.pods_of(sa) {
                *workloads.entry((&p.namespace, &p.workload)).or_default() += 1;
            }
            for ((ns, workload), count) in workloads {
                let id = quote(&format!("workload:{ns}/{workload}"));
                let pods = if count == 1 { "pod" } else { "pods" };
                let _ = writeln!(
                    out,
                    "  {id} [shape=component, label={}];\n  {id} -> {} [label=\"runs as\", color=gray40];",
                    quote(&format!("{ns}/{workload}\n{count} {pods}")),
                    quote(&format!("sa:{sa}")),
                );
            }
        }
        for l in &self.links {
            let mut label = l.mechanism.as_str().to_string();
            if let Some(a) = l.association {
                label.push('\n');
                label.push_str(a);
            }
            let style = match (l.declared, l.trust) {
                (_, Trust::Refused) => "color=red, fontcolor=red, style=bold",
                (true, Trust::Conditional) => "style=dashed",
                (true, Trust::Admitted) => "style=solid",
                (false, _) => "style=dotted, color=gray50",
            };
            let _ = writeln!(
                out,
                "  {} -> {} [label={}, {style}];",
                quote(&format!("sa:{}", l.service_account)),
                quote(&format!("role:{}", l.role)),
                quote(&format!("{label}\n{}", l.trust.as_str())),
            );
        }
        out.push_str("}\n");
        out
    }

    /// One CSV record per link and pod (one with empty pod columns for a ServiceAccount
    /// without pods), with a header.
    pub fn csv(&self) -> Result<String, csv::Error> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record([
            "role_arn",
            "mechanism",
            "declared",
            "trust",
            "association_id",
            "namespace",
            "service_account",
            "workload",
            "pod",
        ])?;
        for l in &self.links {
            let (ns, name) = l.service_account.split_once('/').unwrap_or(("", ""));
            let declared = if l.declared { "true" } else { "false" };
            let start = [
                l.role,
                l.mechanism.as_str(),
                declared,
                l.trust.as_str(),
                l.association.unwrap_or_default(),
                ns,
                name,
            ];
            let pods = self.pods_of(l.service_account);
            if pods.is_empty() {
                w.write_record(start.iter().copied().chain(["", ""]))?;
            }
            for p in pods {
                w.write_record(
                    start
                        .iter()
                        .copied()
                        .chain([p.workload.as_str(), p.name.as_str()]),
                )?;
            }
        }
        let bytes = w.into_inner().map_err(|e| e.into_error())?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// One row per pod and link of its ServiceAccount: what each pod may assume, and how.
    pub fn pod_rows(&self) -> Vec<[String; 7]> {
        let mut rows = Vec::new();
        for (sa, pods) in &self.pods {
            let links: Vec<&Link<'_>> = self
                .links
                .iter()
                .filter(|l| l.service_account == sa)
                .collect();
            for p in pods {
                for l in &links {
                    rows.push([
                        p.namespace.clone(),
                        p.name.clone(),
                        p.workload.clone(),
                        p.service_account.clone(),
                        l.mechanism.as_str().to_string(),
                        l.role.to_string(),
                        format!(
                            "{}{}",
                            l.trust.as_str(),
                            if l.declared { "" } else { " (not declared)" }
                        ),
                    ]);
                }
            }
        }
        rows
    }
}

/// A DOT double-quoted string: `"` and `\` escaped, line breaks as `\n`, other controls dropped
/// (role ARNs and names come from IAM and the cluster, but are still not ours).
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use irsa_core::trust_audit::{AdmittedServiceAccount, AssociationUse};
    use irsa_core::{ConditionType, Finding, Reason};

    use super::*;

    fn audit(role: &str) -> RoleAudit {
        RoleAudit {
            role_arn: format!("arn:aws:iam::111122223333:role/{role}"),
            trusts_cluster: true,
            trusts_pod_identity: false,
            service_accounts: vec![],
            admitted_count: 0,
            annotated_by: vec![],
            annotated_refused: vec![],
            associations: vec![],
            patterns: vec![],
            findings: vec![],
        }
    }

    fn pod(ns: &str, name: &str, sa: &str, workload: &str) -> PodPlacement {
        PodPlacement {
            namespace: ns.into(),
            name: name.into(),
            service_account: sa.into(),
            workload: workload.into(),
        }
    }

    fn fixture() -> (Vec<RoleAudit>, Vec<PodPlacement>) {
        let mut web = audit("web");
        web.service_accounts = vec![
            AdmittedServiceAccount {
                service_account: "web/app".into(),
                conditional: false,
                annotated: true,
            },
            AdmittedServiceAccount {
                service_account: "web/other".into(),
                conditional: false,
                annotated: false,
            },
        ];
        let mut pi = audit("pi \"quoted\"");
        pi.associations = vec![AssociationUse {
            association_id: "a-1".into(),
            service_account: "ml/batch".into(),
            usage: AssociationUsage::Role,
            admitted: false,
            conditional: false,
        }];
        pi.findings = vec![Finding::new(
            Reason::PodIdentityTrustMissingTagSession,
            ConditionType::TrustPolicyValid,
            "x",
        )];
        let pods = vec![
            pod("web", "app-1", "app", "Deployment/app"),
            pod("web", "app-2", "app", "Deployment/app"),
            pod("ml", "batch-0", "batch", "StatefulSet/batch"),
            pod("ml", "lone", "none", "Pod/lone"),
        ];
        (vec![web, pi], pods)
    }

    #[test]
    fn links_count_the_pods_and_workloads_that_use_a_role() {
        let (audits, pods) = fixture();
        let map = TrustMap::new(&audits, &pods);
        assert_eq!(map.links.len(), 3);
        assert_eq!(map.usage("arn:aws:iam::111122223333:role/web"), (2, 1));
        // A refused association does not count as use.
        assert_eq!(
            map.usage("arn:aws:iam::111122223333:role/pi \"quoted\""),
            (0, 0)
        );
        let rows = map.pod_rows();
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert!(rows
            .iter()
            .any(|r| r[1] == "batch-0" && r[4] == "pod-identity" && r[6] == "refused"));
    }

    #[test]
    fn csv_quotes_what_needs_quoting_and_lists_each_pod() {
        let (audits, pods) = fixture();
        let map = TrustMap::new(&audits, &pods);
        let text = map.csv().unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        // web/app has 2 pods, web/other none, ml/batch 1.
        assert_eq!(records.len(), 4, "{text}");
        assert!(
            records
                .iter()
                .any(|r| &r[0] == "arn:aws:iam::111122223333:role/pi \"quoted\""
                    && &r[8] == "batch-0")
        );
    }

    #[test]
    fn dot_escapes_quotes_and_marks_errors() {
        let (audits, pods) = fixture();
        let dot = TrustMap::new(&audits, &pods).dot();
        assert!(
            dot.contains(r#""role:arn:aws:iam::111122223333:role/pi \"quoted\"""#),
            "{dot}"
        );
        assert!(
            dot.contains("color=red, fontcolor=red, style=bold"),
            "{dot}"
        );
        assert!(dot.contains("2 pods"), "{dot}");
        assert_eq!(quote("a\u{1b}b\\"), r#""ab\\""#);
    }
}
