//! Runs every case of the trust-evaluation corpus (`tests/corpus/*.yaml`) through `diagnose`.

use std::collections::{BTreeMap, BTreeSet};

use irsa_core::manifest::{service_accounts, DEFAULT_NAMESPACE};
use irsa_core::pod_identity;
use irsa_core::pods::Pods;
use irsa_core::workloads::{env_sources_in, workloads_in, EnvSources, Workload};
use irsa_core::Fact;
use irsa_core::{
    diagnose, ConditionType, Facts, Issuer, OidcProvider, OidcProviderArn, Reason, RoleArn,
    Severity,
};

use test_support::corpus as case;

/// Reasons `lint` cannot meet: they need a live cluster or AWS.
fn needs_live_facts(reason: Reason) -> bool {
    matches!(
        reason.condition(),
        Some(ConditionType::PermissionsValid | ConditionType::ProbeSucceeded)
    ) || matches!(
        reason,
        // The webhook's registrations, the namespace's labels, CloudTrail, the nodes, the agent's
        // pods: only a live cluster has them.
        Reason::PodIdentityWebhookMissing
            | Reason::WebhookSelectorExcludesPod
            | Reason::InjectionFailedOpen
            | Reason::PodCreatedWithServiceAccount
            | Reason::WorkloadAssumeFailures
            | Reason::WorkloadsNotUsingWebIdentity
            | Reason::NodeRoleFallbackPossible
            | Reason::PodIdentityAgentNotReady
            | Reason::ServiceAccountNotFound
            | Reason::RoleNotFound
            | Reason::ClusterIssuerUnknown
            | Reason::AwsApiUnavailable
            | Reason::AwsAccessDenied
            | Reason::KubernetesApiUnavailable
            | Reason::NotEvaluated
            | Reason::SpecInvalid
            // The operator's --allowed-role-arns, which lint does not have.
            | Reason::RoleNotAllowed
            // eks:DescribeAddon, which lint does not call.
            | Reason::PodIdentityAgentMissing
            // `audit trust`'s findings are about roles of an account, not one ServiceAccount's
            // diagnosis; its unit and end-to-end tests cover them.
            | Reason::TrustPolicyAdmitsAnyServiceAccount
            | Reason::TrustPolicyAdmitsWholeNamespace
            | Reason::TrustedRoleUnused
            | Reason::TrustedServiceAccountMissing
            | Reason::TrustPolicyAdmitsNoServiceAccount
            | Reason::TrustedSubjectInvalid
            // The issuer's documents and TLS chain, which only `check` fetches.
            | Reason::IssuerDiscoveryUnreachable
            | Reason::IssuerDiscoveryInvalid
            | Reason::IssuerSigningKeyMissing
            | Reason::OIDCProviderThumbprintMismatch
    )
}

#[test]
fn every_corpus_case_yields_exactly_its_expected_reasons() {
    let cases = case::load_all();
    assert!(
        cases.len() >= 40,
        "the corpus has only {} cases",
        cases.len()
    );
    let mut failures = Vec::new();
    let mut covered = BTreeSet::new();
    let mut counted_pods = 0;
    for (path, case) in &cases {
        let name = path.file_name().unwrap().to_string_lossy();
        let sa = service_accounts(&case.service_account, &name)
            .unwrap()
            .pop()
            .unwrap_or_else(|| panic!("{name}: serviceAccount is not a ServiceAccount"));
        let providers = case.oidc_providers.as_ref().map(|entries| {
            entries
                .iter()
                .map(|e| OidcProvider {
                    arn: OidcProviderArn::parse(e.arn()).unwrap(),
                    client_ids: e.client_ids().map(<[String]>::to_vec),
                    thumbprints: None,
                })
                .collect()
        });
        let roles: BTreeMap<RoleArn, String> = case
            .roles
            .iter()
            .map(|(arn, policy)| (RoleArn::parse(arn).unwrap(), case::policy_text(policy)))
            .collect();
        let mut facts =
            Facts::offline(sa, Issuer::parse(&case.issuer).unwrap(), providers, |arn| {
                roles.get(arn).cloned()
            });
        facts.expected_role_arn = case.expected_role_arn.clone();
        let docs = case.workloads.clone().unwrap_or_default();
        let mut sources = EnvSources::new();
        for d in &docs {
            env_sources_in(d, DEFAULT_NAMESPACE, &mut sources);
        }
        let workloads: Vec<Workload> = docs
            .iter()
            .flat_map(|d| workloads_in(d, DEFAULT_NAMESPACE))
            .map(|mut w| {
                w.resolve_env_from(&sources);
                w
            })
            .collect();
        if case.workloads.is_some() {
            let pods = workloads
                .iter()
                .filter(|w| w.namespace == facts.namespace && w.service_account == facts.name)
                .map(|w| w.pod.clone())
                .collect::<Vec<_>>();
            facts.workloads = Some(Fact::Known(Pods::all(pods)));
        }
        let mut reports = Vec::new();
        if let Some(docs) = &case.pod_identity_associations {
            let text = serde_json::Value::Array(docs.clone()).to_string();
            let associations = pod_identity::parse_associations(&text).unwrap();
            let with_roles = |a: &pod_identity::Association| {
                let mut pi = pod_identity::PodIdentity::new(a.clone());
                let policy = |arn: &str| {
                    RoleArn::parse(arn)
                        .ok()
                        .and_then(|arn| roles.get(&arn))
                        .map(|p| {
                            Fact::Known(Some(irsa_core::Role {
                                trust_policy: p.clone(),
                            }))
                        })
                };
                if let Some(known) = policy(&a.role_arn) {
                    pi.role = known;
                }
                if let (Some(t), Some(known)) = (
                    pi.target.as_mut(),
                    a.target_role_arn.as_deref().and_then(policy),
                ) {
                    t.role = known;
                }
                pi
            };
            facts.pod_identity = Fact::Known(
                associations
                    .iter()
                    .find(|a| a.namespace == facts.namespace && a.service_account == facts.name)
                    .map(with_roles),
            );
            // Associations naming a ServiceAccount the case's namespace does not have.
            let (namespace, name) = (facts.namespace.clone(), facts.name.clone());
            let names: Vec<String> = std::iter::once(name.clone())
                .chain(
                    workloads
                        .iter()
                        .filter(|w| w.namespace == namespace)
                        .map(|w| w.service_account.clone()),
                )
                .collect();
            for a in pod_identity::without_service_account(
                &associations,
                |ns, sa| ns == namespace && sa == name,
                |ns| ns == namespace,
            ) {
                let mut missing =
                    Facts::for_missing_service_account(&a.namespace, &a.service_account);
                missing.pod_identity = Fact::Known(Some(with_roles(a)));
                missing.namespace_service_accounts = names.clone();
                reports.push(diagnose(&missing));
            }
        }
        // As lint: a ServiceAccount that neither asks for IRSA nor has an association is not
        // diagnosed.
        let diagnosed = facts
            .service_account
            .known()
            .and_then(Option::as_ref)
            .is_some_and(|sa| sa.wants_irsa())
            || matches!(facts.pod_identity, Fact::Known(Some(_)));
        if diagnosed {
            reports.insert(0, diagnose(&facts));
        }
        let (counted, differs) = count_passing_pods(&facts);
        counted_pods += counted;
        if let Some(differs) = differs {
            failures.push(format!("{name}\n  {differs}"));
        }
        let found: BTreeSet<String> = reports
            .iter()
            .flat_map(|r| r.reasons_at_least(Severity::Warning))
            .map(|r| r.to_string())
            .collect();
        let expected: BTreeSet<String> = case.expect.iter().cloned().collect();
        for reason in &expected {
            assert!(
                Reason::from_name(reason).is_some(),
                "{name}: unknown reason {reason}"
            );
        }
        covered.extend(found.iter().cloned());
        if found != expected {
            let messages: Vec<String> = reports
                .iter()
                .flat_map(|r| &r.findings)
                .map(|f| format!("{}: {}", f.reason, f.message))
                .collect();
            failures.push(format!(
                "{name}\n  expected {expected:?}\n  found    {found:?}\n  {}",
                messages.join("\n  ")
            ));
        }
    }
    assert!(
        counted_pods > 0,
        "no corpus pod passes its audit, so counting passing pods is not tested"
    );
    assert!(
        failures.is_empty(),
        "{} case(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    for reason in Reason::ALL {
        if reason.severity() >= Severity::Warning && !needs_live_facts(*reason) {
            assert!(
                covered.contains(reason.as_str()),
                "no corpus case covers {reason}"
            );
        }
    }
}

/// The operator counts the pods its audit passes instead of keeping them. With every pod of the
/// case admitted (as live pods are), the report must not change: how many pods were counted, and
/// how the report changed if it did.
fn count_passing_pods(facts: &Facts) -> (usize, Option<String>) {
    let Some(Fact::Known(pods)) = &facts.workloads else {
        return (0, None);
    };
    let mut whole = facts.clone();
    let admitted: Vec<_> = pods
        .listed()
        .iter()
        .cloned()
        .map(|mut p| {
            p.admitted = true;
            p
        })
        .collect();
    whole.workloads = Some(Fact::Known(Pods::all(admitted.clone())));
    let mut counted = facts.clone();
    let audit = irsa_core::mechanism::in_force(facts).pod_audit();
    let mut kept = Pods::default();
    for pod in admitted {
        kept.add(pod, &audit);
    }
    let passing = kept.len() - kept.listed().len();
    counted.workloads = Some(Fact::Known(kept));
    let (a, b) = (diagnose(&whole), diagnose(&counted));
    let differs =
        (a != b).then(|| format!("counting passing pods changed the report:\n  {a:?}\n  {b:?}"));
    (passing, differs)
}
