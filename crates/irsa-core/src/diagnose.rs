//! `diagnose(&Facts) -> Report`: the whole checklist as one pure function.

use crate::annotations::{self, ServiceAccount, AUDIENCE, ROLE_ARN, TOKEN_EXPIRATION};
use crate::arn::RoleArn;
use crate::facts::{Fact, Facts, PermissionDecision, Unavailable};
use crate::mechanism::{in_force, InForce};
use crate::pod_identity::{PodIdentity, SERVICE_PRINCIPAL};
use crate::policy::PolicyDocument;
use crate::probe;
use crate::reason::{ConditionType as C, Reason, Severity};
use crate::report::{ConditionVerdict, Finding, Report, Status};
use crate::text::{escape_untrusted, escape_untrusted_owned};
use crate::trust::{
    evaluate, evaluate_assume_role, evaluate_for, tag_conditions, AssumeRoleRequest, Disclosure,
    SessionTags, WebIdentityRequest, WITHHELD,
};
use crate::workloads::{self, Expected, PodFacts};

mod observed;

/// Runs every check the facts allow and summarises them, quoting whatever explains a verdict
/// ([`Disclosure::Full`]: `lint` and `check`, whose users read the policies with their own access).
pub fn diagnose(facts: &Facts) -> Report {
    diagnose_with(facts, Disclosure::Full)
}

/// [`diagnose`], quoting a role's trust policy only as far as `disclosure` allows. The operator
/// diagnoses for whoever may read a namespace's Events and IrsaChecks, with its own AWS access, so
/// it uses [`Disclosure::AdmittedOnly`]: a role whose trust policy does not admit the
/// ServiceAccount is said to refuse it, with no other content of its policy.
pub fn diagnose_with(facts: &Facts, disclosure: Disclosure) -> Report {
    let mut d = Diagnosis {
        disclosure,
        ..Diagnosis::default()
    };
    if let InForce::PodIdentity {
        service_account,
        pod_identity,
    } = in_force(facts)
    {
        return d.diagnose_pod_identity(facts, service_account, pod_identity);
    }
    let (sa, role) = match d.check_service_account(facts) {
        Some((sa, role)) => (Some(sa), role),
        None => (None, None),
    };
    let audience = sa.map(ServiceAccount::audience).unwrap_or_default();
    d.check_oidc_provider(facts, role.as_ref(), audience);
    d.check_trust_policy(facts, sa, role.as_ref());
    d.check_permissions(facts, role.as_ref());
    d.check_probe(facts, sa, role.as_ref());
    d.check_observed(facts, sa, role.as_ref());
    d.check_workloads(facts, sa, role.as_ref());
    if let Some(sa) = sa {
        d.check_audience_annotation(sa);
    }
    d.finish(facts)
}

#[derive(Default)]
struct Diagnosis {
    findings: Vec<Finding>,
    conditions: Vec<ConditionVerdict>,
    /// ServiceAccountValid closes last: AudienceAnnotationMismatch depends on later checks.
    pending_sa_message: Option<String>,
    /// What the probe ran as.
    assumed_arn: Option<String>,
    /// How much of a trust policy findings may quote.
    disclosure: Disclosure,
    /// Whether the role's trust policy admits the ServiceAccount, once evaluated.
    trust_admits: Option<bool>,
    /// Why checks that need the role do not run, when the ServiceAccount names none they may use.
    no_role: Option<&'static str>,
}

/// Whether the role a ServiceAccount names trusts it ([`crate::trust::TrustVerdict::admits`]), from
/// the facts gathered so far; `None` when that is not known yet (no valid or allowed role, no issuer,
/// no trust policy, or one that does not parse). Gathering asks IAM to simulate the role's
/// permissions only when this is `Some(true)`.
pub fn trust_admits(facts: &Facts) -> Option<bool> {
    let sa = facts.service_account.known()?.as_ref()?;
    let role = RoleArn::parse(sa.role_arn_annotation()?).ok()?;
    if facts
        .allowed_roles
        .as_ref()
        .is_some_and(|a| !a.admits(&role))
    {
        return None;
    }
    let issuer = facts.issuer.known()?;
    let found = facts.role.known()?.as_ref()?;
    let policy = PolicyDocument::parse(&found.trust_policy).ok()?;
    let request = WebIdentityRequest::new(issuer, &role, &sa.namespace, &sa.name, sa.audience());
    Some(evaluate(&policy, &request).admits())
}

impl Diagnosis {
    fn add(&mut self, reason: Reason, condition: C, message: impl Into<String>) {
        self.findings.push(Finding::new(reason, condition, message));
    }

    fn unavailable(&mut self, condition: C, u: &Unavailable) {
        self.add(u.reason, condition, u.detail.clone());
    }

    fn skipped(&mut self, condition: C, why: &str) {
        self.add(Reason::CheckSkipped, condition, why);
    }

    /// Why the checks that need the role cannot run.
    fn no_role(&self) -> &'static str {
        self.no_role
            .unwrap_or("the ServiceAccount names no valid role")
    }

    /// The value of a known fact. For one that could not be learned or was not looked for,
    /// records why, closes the condition (Unknown) and returns `None`.
    fn known_or_close<'f, T>(
        &mut self,
        condition: C,
        fact: &'f Fact<T>,
        success: Reason,
    ) -> Option<&'f T> {
        match fact {
            Fact::Known(t) => return Some(t),
            Fact::Unavailable(u) => self.unavailable(condition, u),
            Fact::Skipped(why) => self.skipped(condition, why),
        }
        self.close(condition, success, String::new());
        None
    }

    /// Records a condition that could not run because an earlier one failed.
    fn not_evaluated(&mut self, condition: C, why: &str) {
        self.conditions.push(ConditionVerdict {
            type_: condition,
            status: Status::Unknown,
            reason: Reason::NotEvaluated,
            message: format!("not evaluated: {why}"),
        });
    }

    /// Closes a condition: its verdict follows from the findings recorded for it.
    fn close(&mut self, condition: C, success: Reason, message: String) {
        let mine: Vec<&Finding> = self
            .findings
            .iter()
            .filter(|f| f.condition == condition)
            .collect();
        let worst = |sev: Severity| mine.iter().filter(move |f| f.severity == sev);
        let joined = |sev: Severity| {
            worst(sev)
                .map(|f| f.message.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        };
        let verdict = if let Some(first) = worst(Severity::Error).next() {
            ConditionVerdict {
                type_: condition,
                status: Status::False,
                reason: first.reason,
                message: format!("{}. Fix: {}", joined(Severity::Error), first.fix),
            }
        } else if let Some(first) = worst(Severity::Unknown)
            .chain(worst(Severity::Info).filter(|f| f.reason == Reason::CheckSkipped))
            .next()
        {
            let sev = first.severity;
            ConditionVerdict {
                type_: condition,
                status: Status::Unknown,
                reason: first.reason,
                message: joined(sev),
            }
        } else {
            // Info findings other than a skipped check are notes (e.g. a thumbprint AWS does not
            // rely on): the check passed, and the message says what was noted.
            let notes = joined(Severity::Info);
            let message = if notes.is_empty() {
                message
            } else {
                format!("{message}. Note: {notes}")
            };
            let warnings = joined(Severity::Warning);
            ConditionVerdict {
                type_: condition,
                status: Status::True,
                reason: success,
                message: if warnings.is_empty() {
                    message
                } else {
                    format!("{message}. Warning: {warnings}")
                },
            }
        };
        self.conditions.push(verdict);
    }

    fn check_service_account<'f>(
        &mut self,
        facts: &'f Facts,
    ) -> Option<(&'f ServiceAccount, Option<RoleArn>)> {
        let cond = C::ServiceAccountValid;
        let Some(sa) = self
            .known_or_close(
                cond,
                &facts.service_account,
                Reason::ServiceAccountAnnotated,
            )?
            .as_ref()
        else {
            let near = near_miss(&facts.name, &facts.namespace_service_accounts)
                .map(|n| format!("; did you mean {n:?}, which the namespace has?"))
                .unwrap_or_default();
            match &facts.pod_identity {
                Fact::Known(Some(pi)) => self.add(
                    Reason::PodIdentityServiceAccountMissing,
                    cond,
                    format!(
                        "EKS Pod Identity association {} names ServiceAccount {}/{}, which does not exist, so \
                         no pod gets role {} from it{near}",
                        pi.association.id,
                        facts.namespace,
                        facts.name,
                        pi.association.pods_role_arn()
                    ),
                ),
                _ => self.add(
                    Reason::ServiceAccountNotFound,
                    cond,
                    format!(
                        "ServiceAccount {}/{} does not exist{near}",
                        facts.namespace, facts.name
                    ),
                ),
            }
            self.close(cond, Reason::ServiceAccountAnnotated, String::new());
            return None;
        };
        let who = format!("ServiceAccount {}/{}", sa.namespace, sa.name);
        let misspelled = sa.misspelled_role_arn_keys();
        let role = if !misspelled.is_empty() {
            for key in misspelled {
                self.add(
                    Reason::RoleArnAnnotationKeyMisspelled,
                    cond,
                    format!(
                        "{who} has annotation {key:?}, which the pod identity webhook ignores; expected the key \
                         {ROLE_ARN:?}"
                    ),
                );
            }
            None
        } else {
            match sa.role_arn_annotation() {
                None if matches!(facts.pod_identity, Fact::Unavailable(_)) => {
                    if let Fact::Unavailable(u) = &facts.pod_identity {
                        self.unavailable(cond, u);
                    }
                    None
                }
                None => {
                    self.add(
                        Reason::RoleArnAnnotationMissing,
                        cond,
                        format!(
                            "{who} has no {ROLE_ARN:?} annotation, so its pods get no role of their own and \
                             fall back to the node's credentials"
                        ),
                    );
                    None
                }
                Some(value) => match RoleArn::parse(value) {
                    Ok(arn) => match &facts.allowed_roles {
                        Some(allowed) if !allowed.admits(&arn) => {
                            self.add(
                                Reason::RoleNotAllowed,
                                cond,
                                format!(
                                    "{who} is annotated with role {arn}, which is not among the roles this \
                                     operator may look up (--allowed-role-arns {allowed}); nothing about it \
                                     was asked of AWS"
                                ),
                            );
                            self.no_role =
                                Some("the ServiceAccount's role is outside --allowed-role-arns");
                            None
                        }
                        _ => Some(arn),
                    },
                    Err(_) if annotations::is_role_name(value) => {
                        self.add(
                            Reason::RoleArnIsRoleName,
                            cond,
                            format!(
                                "{who}: {ROLE_ARN} {value:?} is a role name, not an ARN; only webhooks configured with the \
                                 AWS account compose the ARN from it (older or self-managed ones inject it as is and STS \
                                 rejects it), so irsa-doctor cannot check the role"
                            ),
                        );
                        None
                    }
                    Err(e) => {
                        self.add(
                            Reason::RoleArnMalformed,
                            cond,
                            format!("{who}: {ROLE_ARN} {value:?}: {e}"),
                        );
                        None
                    }
                },
            }
        };
        if let (Fact::Unavailable(u), Some(_)) = (&facts.pod_identity, &role) {
            self.add(
                u.reason,
                cond,
                format!(
                    "whether an EKS Pod Identity association overrides the annotation is not known: {}",
                    u.detail
                ),
            );
        }
        if let (Some(expected), Some(found)) = (&facts.expected_role_arn, sa.role_arn_annotation())
        {
            if expected.trim() != found {
                self.add(
                    Reason::RoleArnMismatch,
                    cond,
                    format!("{who} is annotated with {found:?}, but spec.expectedRoleArn is {expected:?}"),
                );
            }
        }
        if let Some(problem) = sa
            .annotations
            .get(TOKEN_EXPIRATION)
            .and_then(|v| annotations::token_expiration_problem(v))
        {
            self.add(
                Reason::TokenExpirationInvalid,
                cond,
                format!("{who}: {problem}"),
            );
        }
        if let Some(value) = sa.annotations.get(annotations::STS_REGIONAL_ENDPOINTS) {
            if annotations::parse_bool(value).is_none() {
                self.add(
                    Reason::StsRegionalEndpointsInvalid,
                    cond,
                    format!(
                        "{who}: {} {value:?} is not a boolean as Go's strconv.ParseBool reads it (true/false, 1/0, \
                         t/f, TRUE/FALSE, True/False); the webhook ignores it and pods use its default STS endpoint",
                        annotations::STS_REGIONAL_ENDPOINTS
                    ),
                );
            }
        }
        if let Some(value) = sa.annotations.get(AUDIENCE) {
            if value.trim().is_empty() || value.trim() != value || value.contains(',') {
                self.add(
                    Reason::AudienceAnnotationInvalid,
                    cond,
                    format!(
                        "{who}: {AUDIENCE} {value:?} is used verbatim as the token's one audience; it is empty, has \
                         surrounding spaces or lists several, which no trust policy written for it matches"
                    ),
                );
            }
        }
        let message = match &role {
            Some(arn) => format!("{who} is annotated with role {arn}"),
            None => String::new(),
        };
        self.pending_sa_message = Some(message);
        Some((sa, role))
    }
}

impl Diagnosis {
    fn check_oidc_provider(&mut self, facts: &Facts, role: Option<&RoleArn>, audience: &str) {
        let cond = C::OidcProviderValid;
        let Some(role) = role else {
            return self.not_evaluated(cond, self.no_role());
        };
        let Some(issuer) = self.known_or_close(cond, &facts.issuer, Reason::OIDCProviderFound)
        else {
            return;
        };
        let expected = issuer.provider_arn(role.partition(), role.account());
        let Some(providers) =
            self.known_or_close(cond, &facts.oidc_providers, Reason::OIDCProviderFound)
        else {
            return;
        };
        let same_issuer = |p: &&crate::fact::OidcProvider| {
            p.arn.host_path.eq_ignore_ascii_case(&expected.host_path)
        };
        let provider = providers
            .iter()
            .filter(same_issuer)
            .find(|p| p.arn.partition == expected.partition && p.arn.account == expected.account);
        match provider {
            None => {
                let elsewhere: Vec<String> = providers
                    .iter()
                    .filter(same_issuer)
                    .map(|p| p.arn.account.clone())
                    .collect();
                let hint = if elsewhere.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (one exists in account {}, but STS looks in the role's account)",
                        elsewhere.join(", ")
                    )
                };
                self.add(
                    Reason::OIDCProviderMissing,
                    cond,
                    format!(
                        "account {} has no IAM OIDC provider for issuer {}{hint}; expected {expected}",
                        role.account(),
                        issuer.url()
                    ),
                );
            }
            Some(p) => {
                if let Some(ids) = &p.client_ids {
                    if !ids.iter().any(|id| id == audience) {
                        self.add(
                            Reason::OIDCProviderAudienceMissing,
                            cond,
                            format!(
                                "provider {} accepts audiences {ids:?}, but the token's audience is {audience:?}",
                                p.arn
                            ),
                        );
                    }
                }
            }
        }
        let keys = self.check_issuer_keys(facts, issuer, provider);
        self.close(
            cond,
            Reason::OIDCProviderFound,
            format!("IAM OIDC provider {expected} exists{keys}"),
        );
    }

    /// The issuer's published keys and TLS chain ([`crate::issuer_keys::evaluate`]); returns
    /// what was checked, for the success message.
    fn check_issuer_keys(
        &mut self,
        facts: &Facts,
        issuer: &crate::Issuer,
        provider: Option<&crate::fact::OidcProvider>,
    ) -> String {
        let cond = C::OidcProviderValid;
        match &facts.issuer_keys {
            Fact::Known(keys) => {
                let verdict = crate::issuer_keys::evaluate(issuer, keys, provider);
                for f in verdict.findings {
                    self.add(f.reason, cond, f.message);
                }
                verdict.checked.iter().map(|c| format!("; {c}")).collect()
            }
            Fact::Unavailable(u) => {
                self.unavailable(cond, u);
                String::new()
            }
            Fact::Skipped(_) => String::new(),
        }
    }

    fn check_trust_policy(
        &mut self,
        facts: &Facts,
        sa: Option<&ServiceAccount>,
        role: Option<&RoleArn>,
    ) {
        let cond = C::TrustPolicyValid;
        let (Some(sa), Some(role)) = (sa, role) else {
            return self.not_evaluated(cond, self.no_role());
        };
        let Fact::Known(issuer) = &facts.issuer else {
            return self.not_evaluated(cond, "the cluster's OIDC issuer is unknown");
        };
        let Some(role_fact) = self.known_or_close(cond, &facts.role, Reason::TrustPolicyAllows)
        else {
            return;
        };
        let Some(found) = role_fact else {
            self.add(
                Reason::RoleNotFound,
                cond,
                format!("role {role} does not exist in account {}", role.account()),
            );
            return self.close(cond, Reason::TrustPolicyAllows, String::new());
        };
        let trust_policy = &found.trust_policy;
        let request = WebIdentityRequest::new(issuer, role, &sa.namespace, &sa.name, sa.audience());
        self.trust_admits = Some(self.evaluate_trust(role, trust_policy, &request));
        self.close(
            cond,
            Reason::TrustPolicyAllows,
            format!(
                "the trust policy of {role} admits {} with audience {:?}",
                request.subject, request.audience
            ),
        );
    }

    /// Records the trust policy's findings; returns whether it admits the ServiceAccount.
    fn evaluate_trust(
        &mut self,
        role: &RoleArn,
        trust_policy: &str,
        request: &WebIdentityRequest,
    ) -> bool {
        let cond = C::TrustPolicyValid;
        let policy = match PolicyDocument::parse(trust_policy) {
            Ok(p) => p,
            Err(e) => {
                // The parser's message may quote the document, and a policy that cannot be
                // evaluated admits nobody: only lint and check (Full) say what is wrong with it.
                let message = match self.disclosure {
                    Disclosure::Full => format!("trust policy of {role}: {e}"),
                    Disclosure::AdmittedOnly => {
                        format!(
                            "the trust policy of {role} is not a valid policy document; {WITHHELD}"
                        )
                    }
                };
                self.add(Reason::TrustPolicyInvalid, cond, message);
                return false;
            }
        };
        let verdict = evaluate_for(&policy, request, self.disclosure);
        for f in &verdict.findings {
            self.add(
                f.reason,
                cond,
                format!("trust policy of {role}: {}", f.message),
            );
        }
        verdict.admits()
    }

    fn check_permissions(&mut self, facts: &Facts, role: Option<&RoleArn>) {
        let cond = C::PermissionsValid;
        if facts.permission_requests.is_empty() {
            return self.close(
                cond,
                Reason::PermissionsNotRequested,
                "spec.permissions is empty".to_string(),
            );
        }
        let Some(role) = role else {
            return self.not_evaluated(cond, self.no_role());
        };
        if matches!(facts.role, Fact::Known(None)) {
            return self.not_evaluated(cond, "the role does not exist");
        }
        if self.trust_admits == Some(false) {
            // Nor simulated: what a role may do is not told to whom it does not trust.
            return self.not_evaluated(
                cond,
                "the role's trust policy does not admit this ServiceAccount",
            );
        }
        match &facts.permissions {
            Fact::Known(verdicts) => {
                for v in verdicts {
                    let why = match v.decision {
                        PermissionDecision::Allowed => continue,
                        PermissionDecision::ImplicitDeny => {
                            "no policy of the role allows it (implicit deny)".to_string()
                        }
                        PermissionDecision::ExplicitDeny => format!(
                            "explicitly denied by {}",
                            if v.matched_statements.is_empty() {
                                "a Deny statement".to_string()
                            } else {
                                v.matched_statements.join(", ")
                            }
                        ),
                    };
                    self.add(
                        Reason::PermissionDenied,
                        cond,
                        format!(
                            "{role} may not {} on {}: {why}",
                            v.request.action, v.request.resource
                        ),
                    );
                }
            }
            Fact::Unavailable(u) => self.unavailable(cond, u),
            Fact::Skipped(why) => self.skipped(cond, why),
        }
        self.close(
            cond,
            Reason::PermissionsGranted,
            format!(
                "all {} requested actions are allowed for {role}",
                facts.permission_requests.len()
            ),
        );
    }

    fn check_probe(&mut self, facts: &Facts, sa: Option<&ServiceAccount>, role: Option<&RoleArn>) {
        let cond = C::ProbeSucceeded;
        let Some(probe) = &facts.probe else { return };
        if let Fact::Skipped(why) = probe {
            return self.close(cond, Reason::ProbeDisabled, why.clone());
        }
        let (Some(_), Some(role)) = (sa, role) else {
            return self.not_evaluated(cond, self.no_role());
        };
        let observation = match probe {
            Fact::Known(o) => o,
            Fact::Unavailable(u) => {
                self.unavailable(cond, u);
                return self.close(cond, Reason::ProbeAssumedRole, String::new());
            }
            Fact::Skipped(_) => return,
        };
        let verdict = probe::classify(observation, role);
        if verdict.reason != Reason::ProbeAssumedRole {
            self.add(verdict.reason, cond, verdict.message.clone());
        }
        self.assumed_arn = verdict.assumed_arn;
        self.close(cond, Reason::ProbeAssumedRole, verdict.message);
    }

    fn check_workloads(
        &mut self,
        facts: &Facts,
        sa: Option<&ServiceAccount>,
        role: Option<&RoleArn>,
    ) {
        let cond = C::WorkloadsValid;
        let Some(workloads) = &facts.workloads else {
            return;
        };
        let pods = match workloads {
            Fact::Skipped(_) => return,
            Fact::Unavailable(u) => {
                self.unavailable(cond, u);
                return self.close(cond, Reason::WorkloadsInjected, String::new());
            }
            Fact::Known(p) => p,
        };
        let (Some(annotation), Some(_)) = (sa.and_then(ServiceAccount::role_arn_annotation), role)
        else {
            return self.not_evaluated(cond, self.no_role());
        };
        if pods.is_empty() {
            return self.close(
                cond,
                Reason::NoWorkloads,
                "no running pod uses the ServiceAccount".into(),
            );
        }
        let listed = with_service_account_times(pods.listed(), sa);
        for f in workloads::audit(
            &listed,
            &Expected::Irsa {
                role_arn: annotation,
            },
        ) {
            // A pod's own annotation (token-expiration) belongs to its reason's condition.
            let condition = match f.reason.condition() {
                Some(C::ServiceAccountValid) => C::ServiceAccountValid,
                _ => cond,
            };
            self.add(f.reason, condition, f.message);
        }
        let message = if pods.all_admitted() {
            format!(
                "all {} running pod(s) of the ServiceAccount have the current role injected",
                pods.len()
            )
        } else {
            format!(
                "{} workload(s) of the ServiceAccount pass the checks that need no cluster",
                pods.len()
            )
        };
        self.close(cond, Reason::WorkloadsInjected, message);
    }

    /// A custom audience the trust policy or provider rejects points at the annotation as the cause.
    fn check_audience_annotation(&mut self, sa: &ServiceAccount) {
        let Some(audience) = sa.annotations.get(AUDIENCE) else {
            return;
        };
        let rejected = self.findings.iter().any(|f| {
            matches!(
                f.reason,
                Reason::TrustPolicyAudienceMismatch | Reason::OIDCProviderAudienceMissing
            )
        });
        if rejected {
            self.add(
                Reason::AudienceAnnotationMismatch,
                C::ServiceAccountValid,
                format!(
                    "ServiceAccount {}/{} sets {AUDIENCE} {audience:?}, which the trust policy or provider does not \
                     accept",
                    sa.namespace, sa.name
                ),
            );
        }
    }

    fn finish(mut self, facts: &Facts) -> Report {
        if let Some(message) = self.pending_sa_message.take() {
            self.close(
                C::ServiceAccountValid,
                Reason::ServiceAccountAnnotated,
                message,
            );
        }
        self.conditions.sort_by_key(|c| c.type_);
        self.findings.sort_by_key(|f| f.condition);
        let mechanism = match in_force(facts) {
            InForce::PodIdentity { .. } => "EKS Pod Identity",
            _ => "IRSA",
        };
        let ready = ready(&self.conditions, mechanism, &facts.namespace, &facts.name);
        self.conditions.push(ready);
        // Findings are escaped as they are made (Finding::new); verdicts also carry success
        // messages and names, so every one is escaped here, once all are written.
        for c in &mut self.conditions {
            c.message = escape_untrusted_owned(std::mem::take(&mut c.message));
        }
        Report {
            service_account: escape_untrusted_owned(format!("{}/{}", facts.namespace, facts.name)),
            // The annotated role, or the association's when the ServiceAccount is missing.
            role_arn: facts
                .service_account
                .known()
                .and_then(|sa| sa.as_ref()?.role_arn_annotation())
                .or_else(|| {
                    facts
                        .pod_identity
                        .known()?
                        .as_ref()
                        .map(|pi| pi.association.pods_role_arn())
                })
                .map(|arn| escape_untrusted(arn).into_owned()),
            assumed_arn: self.assumed_arn.map(escape_untrusted_owned),
            findings: self.findings,
            conditions: self.conditions,
        }
    }
}

/// Whether the trust policy of a Pod Identity association's role admits the Pod Identity Agent
/// (`None`: not known yet). Gathering simulates the role's permissions only when `Some(true)`.
pub fn pod_identity_trust_admits(pi: &PodIdentity) -> Option<bool> {
    let found = pi.role.known()?.as_ref()?;
    let policy = PolicyDocument::parse(&found.trust_policy).ok()?;
    Some(evaluate_assume_role(&policy, &pi.association.request()).admits())
}

/// The closest of `candidates` to `name` (one contains the other, or a few edits apart), for
/// pointing at the ServiceAccount someone meant.
fn near_miss<'a>(name: &str, candidates: &'a [String]) -> Option<&'a str> {
    candidates
        .iter()
        .filter(|c| c.as_str() != name)
        .map(|c| {
            let score = if c.contains(name) || name.contains(c.as_str()) {
                1.0
            } else {
                strsim::normalized_damerau_levenshtein(name, c)
            };
            (score, c.as_str())
        })
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

impl Diagnosis {
    /// The diagnosis of a ServiceAccount whose EKS Pod Identity association is in force: the
    /// webhook injects it instead of IRSA, so the association's role (and its target role, when
    /// it chains to one) is the one checked.
    fn diagnose_pod_identity(
        mut self,
        facts: &Facts,
        sa: &ServiceAccount,
        pi: &PodIdentity,
    ) -> Report {
        let a = &pi.association;
        let who = format!("ServiceAccount {}/{}", sa.namespace, sa.name);
        let cond = C::ServiceAccountValid;
        if let Some(annotated) = sa.role_arn_annotation() {
            if annotated.trim() == a.pods_role_arn() {
                self.add(
                    Reason::RoleArnAnnotationRedundant,
                    cond,
                    format!(
                        "{who} is also annotated with {ROLE_ARN} {annotated:?}, the role association {} gives \
                         it; the webhook injects Pod Identity, so the annotation is not used",
                        a.id
                    ),
                );
            } else {
                self.add(
                    Reason::PodIdentityOverridesAnnotation,
                    cond,
                    format!(
                        "{who} has both EKS Pod Identity association {} (role {}) and {ROLE_ARN} {annotated:?}; \
                         the association is in force, so its pods get {} and never the annotated role",
                        a.id,
                        a.pods_role_arn(),
                        a.pods_role_arn()
                    ),
                );
            }
        }
        let role = self.association_role(facts, &who, a);
        let target = match &a.target_role_arn {
            None => None,
            Some(text) => match RoleArn::parse(text) {
                Ok(arn) => Some(arn),
                Err(e) => {
                    self.add(
                        Reason::RoleArnMalformed,
                        cond,
                        format!(
                            "Pod Identity association {} names target role {text:?}: {e}",
                            a.id
                        ),
                    );
                    None
                }
            },
        };
        if let Some(expected) = &facts.expected_role_arn {
            if expected.trim() != a.pods_role_arn() {
                self.add(
                    Reason::RoleArnMismatch,
                    cond,
                    format!(
                        "{who} gets role {:?} from Pod Identity association {}, but spec.expectedRoleArn is \
                         {expected:?}",
                        a.pods_role_arn(),
                        a.id
                    ),
                );
            }
        }
        let chained = match &a.target_role_arn {
            Some(t) => format!(", which chains to target role {t}"),
            None => String::new(),
        };
        self.close(
            cond,
            Reason::PodIdentityAssociated,
            format!(
                "{who} gets role {}{chained} from EKS Pod Identity association {}",
                a.role_arn, a.id
            ),
        );

        let cond = C::OidcProviderValid;
        let agent = match &pi.agent {
            Fact::Known(true) => "; the eks-pod-identity-agent add-on is installed".to_string(),
            Fact::Known(false) => {
                self.add(
                    Reason::PodIdentityAgentMissing,
                    cond,
                    format!(
                        "cluster {} has no eks-pod-identity-agent add-on, so unless the agent runs as a \
                         self-managed DaemonSet nothing serves 169.254.170.23 and pods get no credentials",
                        a.cluster
                    ),
                );
                String::new()
            }
            Fact::Unavailable(u) => {
                self.unavailable(cond, u);
                String::new()
            }
            Fact::Skipped(why) => format!("; {why}"),
        };
        self.close(
            cond,
            Reason::OIDCProviderNotNeeded,
            format!("EKS Pod Identity needs no IAM OIDC provider{agent}"),
        );

        let cond = C::TrustPolicyValid;
        match &role {
            None => self.not_evaluated(cond, self.no_role()),
            Some(role) => {
                if self.association_trust(role, pi) {
                    if let (Some(target_arn), Some(t)) = (&target, &pi.target) {
                        self.target_trust(role, target_arn, &t.role, a);
                    }
                    let target = match &target {
                        Some(t) => format!(", and the trust policy of {t} allows it to {role}"),
                        None => String::new(),
                    };
                    self.close(
                        cond,
                        Reason::TrustPolicyAllows,
                        format!(
                            "the trust policy of {role} allows {:?} to {SERVICE_PRINCIPAL}{target}",
                            a.actions()
                        ),
                    );
                }
            }
        }

        // Permissions are those of the role pods get: the target role when there is one, which
        // the association role must be allowed to assume.
        if let (Some(role), Some(target_arn), Some(t)) = (&role, &target, &pi.target) {
            self.chain_permitted(role, target_arn, &t.chain_permitted);
        }
        let mut in_force = facts.clone();
        let pods_role = match (&target, &pi.target) {
            (Some(arn), Some(t)) => {
                in_force.role = t.role.clone();
                Some(arn.clone())
            }
            _ => {
                in_force.role = pi.role.clone();
                role.clone()
            }
        };
        self.check_permissions(&in_force, pods_role.as_ref());
        self.check_probe(&in_force, Some(sa), pods_role.as_ref());
        self.check_pod_identity_workloads(facts, pi, role.as_ref());
        let mut report = self.finish(facts);
        report.role_arn = Some(escape_untrusted(a.pods_role_arn()).into_owned());
        report
    }

    /// The association's role, unless it is malformed or outside `--allowed-role-arns`.
    fn association_role(
        &mut self,
        facts: &Facts,
        who: &str,
        a: &crate::pod_identity::Association,
    ) -> Option<RoleArn> {
        let cond = C::ServiceAccountValid;
        match RoleArn::parse(&a.role_arn) {
            Ok(arn) => match &facts.allowed_roles {
                Some(allowed) if !allowed.admits(&arn) => {
                    self.add(
                        Reason::RoleNotAllowed,
                        cond,
                        format!(
                            "{who} gets role {arn} from Pod Identity association {}, which is not among the roles \
                             this operator may look up (--allowed-role-arns {allowed})",
                            a.id
                        ),
                    );
                    self.no_role = Some("the association's role is outside --allowed-role-arns");
                    None
                }
                _ => Some(arn),
            },
            Err(e) => {
                self.add(
                    Reason::RoleArnMalformed,
                    cond,
                    format!(
                        "Pod Identity association {} names role {:?}: {e}",
                        a.id, a.role_arn
                    ),
                );
                None
            }
        }
    }

    /// The association role's trust for the agent; returns whether the condition is still
    /// open (it was closed when the role's trust policy is unknown).
    fn association_trust(&mut self, role: &RoleArn, pi: &PodIdentity) -> bool {
        let cond = C::TrustPolicyValid;
        let a = &pi.association;
        let Some(found) = self.known_or_close(cond, &pi.role, Reason::TrustPolicyAllows) else {
            return false;
        };
        match found {
            None => self.add(
                Reason::RoleNotFound,
                cond,
                format!(
                    "role {role} of Pod Identity association {} does not exist in account {}",
                    a.id,
                    role.account()
                ),
            ),
            Some(found) => {
                let admits =
                    self.evaluate_assume_trust(role, &found.trust_policy, &a.request(), "");
                self.trust_admits = Some(admits);
            }
        }
        true
    }

    /// The target role's trust for a session of the association's role.
    fn target_trust(
        &mut self,
        role: &RoleArn,
        target: &RoleArn,
        found: &Fact<Option<crate::fact::Role>>,
        a: &crate::pod_identity::Association,
    ) {
        let cond = C::TrustPolicyValid;
        match found {
            Fact::Known(None) => self.add(
                Reason::RoleNotFound,
                cond,
                format!(
                    "target role {target} of Pod Identity association {} does not exist in account {}",
                    a.id,
                    target.account()
                ),
            ),
            Fact::Known(Some(found)) => {
                let side = format!(" (the target role, assumed by {role})");
                let admits = self.evaluate_assume_trust(
                    target,
                    &found.trust_policy,
                    &a.target_request(role),
                    &side,
                );
                self.trust_admits = Some(self.trust_admits.unwrap_or(true) && admits);
            }
            Fact::Unavailable(u) => self.unavailable(cond, u),
            Fact::Skipped(why) => self.skipped(cond, why),
        }
    }

    /// Records the findings of `request` against a trust policy; `side` says which role of a
    /// chain it is. With session tags disabled, a refusal that tags would lift is told as such.
    fn evaluate_assume_trust(
        &mut self,
        role: &RoleArn,
        trust_policy: &str,
        request: &AssumeRoleRequest,
        side: &str,
    ) -> bool {
        let cond = C::TrustPolicyValid;
        let policy = match PolicyDocument::parse(trust_policy) {
            Ok(p) => p,
            Err(e) => {
                let message = match self.disclosure {
                    Disclosure::Full => format!("trust policy of {role}{side}: {e}"),
                    Disclosure::AdmittedOnly => format!(
                        "the trust policy of {role}{side} is not a valid policy document; {WITHHELD}"
                    ),
                };
                self.add(Reason::TrustPolicyInvalid, cond, message);
                return false;
            }
        };
        let verdict = evaluate_assume_role(&policy, request);
        if !verdict.admits() && request.tags == SessionTags::Disabled {
            let tagged = tag_conditions(&policy, request);
            if !tagged.is_empty() {
                self.add(
                    Reason::PodIdentitySessionTagsDisabled,
                    cond,
                    format!(
                        "trust policy of {role}{side}: the association disables session tags, so {} can never \
                         hold",
                        tagged.join("; ")
                    ),
                );
                return false;
            }
        }
        for f in &verdict.findings {
            self.add(
                f.reason,
                cond,
                format!("trust policy of {role}{side}: {}", f.message),
            );
        }
        verdict.admits()
    }

    /// Whether the association's role may assume the target role, as IAM's simulator says.
    fn chain_permitted(
        &mut self,
        role: &RoleArn,
        target: &RoleArn,
        permitted: &Fact<Vec<crate::fact::PermissionVerdict>>,
    ) {
        let cond = C::PermissionsValid;
        match permitted {
            Fact::Known(verdicts) => {
                let refused: Vec<&str> = verdicts
                    .iter()
                    .filter(|v| v.decision != PermissionDecision::Allowed)
                    .map(|v| v.request.action.as_str())
                    .collect();
                if !refused.is_empty() {
                    self.add(
                        Reason::PodIdentityTargetNotPermitted,
                        cond,
                        format!(
                            "{role} may not {} on its target role {target}, so the agent cannot chain to it",
                            refused.join(" or ")
                        ),
                    );
                }
            }
            Fact::Unavailable(u) => self.unavailable(cond, u),
            // lint: nothing to simulate with; the trust side is still checked.
            Fact::Skipped(_) => {}
        }
    }

    fn check_pod_identity_workloads(
        &mut self,
        facts: &Facts,
        pi: &PodIdentity,
        role: Option<&RoleArn>,
    ) {
        let cond = C::WorkloadsValid;
        let pods = match &facts.workloads {
            None | Some(Fact::Skipped(_)) => return,
            Some(Fact::Unavailable(u)) => {
                self.unavailable(cond, u);
                return self.close(cond, Reason::WorkloadsInjected, String::new());
            }
            Some(Fact::Known(p)) => p,
        };
        if role.is_none() {
            return self.not_evaluated(cond, self.no_role());
        }
        if pods.is_empty() {
            return self.close(
                cond,
                Reason::NoWorkloads,
                "no running pod uses the ServiceAccount".into(),
            );
        }
        if let Fact::Unavailable(u) = &pi.agents {
            self.unavailable(cond, u);
        }
        let expected = Expected::PodIdentity {
            association: &pi.association,
            agents: pi.agents.known(),
        };
        for f in workloads::audit(pods.listed(), &expected) {
            let condition = match f.reason.condition() {
                Some(C::ServiceAccountValid) => C::ServiceAccountValid,
                _ => cond,
            };
            self.add(f.reason, condition, f.message);
        }
        let message = if pods.all_admitted() {
            format!(
                "all {} running pod(s) of the ServiceAccount have EKS Pod Identity injected",
                pods.len()
            )
        } else {
            format!(
                "{} workload(s) of the ServiceAccount pass the checks that need no cluster",
                pods.len()
            )
        };
        self.close(cond, Reason::WorkloadsInjected, message);
    }
}

/// Ready: False on the first failing condition (checks run in dependency order, so it is the root
/// cause), Unknown if any is Unknown, True otherwise.
fn ready(
    conditions: &[ConditionVerdict],
    mechanism: &str,
    namespace: &str,
    name: &str,
) -> ConditionVerdict {
    let first = |s: Status| conditions.iter().find(|c| c.status == s);
    let (status, reason, message) = match first(Status::False).or_else(|| first(Status::Unknown)) {
        Some(c) => (c.status, c.reason, format!("{}: {}", c.type_, c.message)),
        None => (
            Status::True,
            Reason::AllChecksPassed,
            format!("{mechanism} is set up correctly for {namespace}/{name}"),
        ),
    };
    ConditionVerdict {
        type_: C::Ready,
        status,
        reason,
        message,
    }
}

/// The pods, each told when its ServiceAccount was created and annotated (unless the gatherer
/// already knew), so that the audit can tell a pod older than the annotation.
fn with_service_account_times(pods: &[PodFacts], sa: Option<&ServiceAccount>) -> Vec<PodFacts> {
    pods.iter()
        .cloned()
        .map(|mut p| {
            if let Some(sa) = sa {
                p.service_account_created = p.service_account_created.or(sa.created);
                p.role_arn_annotated = p.role_arn_annotated.or(sa.role_arn_set);
            }
            p
        })
        .collect()
}
