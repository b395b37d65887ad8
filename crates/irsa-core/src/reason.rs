//! The reason catalogue: stable identifiers, their condition, severity and fix. A public contract:
//! adding a reason is fine, renaming or removing one is a breaking change.

use std::fmt;

use serde::{Serialize, Serializer};

/// The conditions an IrsaCheck reports, in the order checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConditionType {
    /// The ServiceAccount exists and its IRSA annotations are well-formed.
    ServiceAccountValid,
    /// An IAM OIDC provider for the cluster's issuer exists in the role's account.
    OidcProviderValid,
    /// The role exists and its trust policy admits the ServiceAccount.
    TrustPolicyValid,
    /// The role may perform the requested actions.
    PermissionsValid,
    /// A probe pod really assumed the role.
    ProbeSucceeded,
    /// Running pods of the ServiceAccount got the role.
    WorkloadsValid,
    /// The summary of all the others.
    Ready,
}

impl ConditionType {
    /// The condition's `type` as written on the object.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::ServiceAccountValid => "ServiceAccountValid",
            ConditionType::OidcProviderValid => "OIDCProviderValid",
            ConditionType::TrustPolicyValid => "TrustPolicyValid",
            ConditionType::PermissionsValid => "PermissionsValid",
            ConditionType::ProbeSucceeded => "ProbeSucceeded",
            ConditionType::WorkloadsValid => "WorkloadsValid",
            ConditionType::Ready => "Ready",
        }
    }
}

impl fmt::Display for ConditionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ConditionType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// A success reason: the check passed.
    Ok,
    /// A note, e.g. a check skipped for want of input.
    Info,
    /// The check passes, but something deserves attention.
    Warning,
    /// Could not tell (AWS throttled, probe image not pullable): never an alert by itself.
    Unknown,
    /// IRSA does not work for this ServiceAccount.
    Error,
}

impl Severity {
    /// Lower-case name used in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Unknown => "unknown",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Severity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

macro_rules! catalogue {
    ($($name:ident, $cond:expr, $sev:ident, $fix:literal;)*) => {
        /// A catalogue reason. The identifier is the variant's name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $(
                #[doc = $fix]
                $name,
            )*
        }

        impl Reason {
            /// Every reason, in catalogue order.
            pub const ALL: &'static [Reason] = &[$(Reason::$name),*];

            /// The stable CamelCase identifier.
            pub fn as_str(self) -> &'static str {
                match self { $(Reason::$name => stringify!($name),)* }
            }

            /// The condition this reason belongs to; `None` for reasons any condition may carry.
            pub fn condition(self) -> Option<ConditionType> {
                match self { $(Reason::$name => $cond,)* }
            }

            /// How bad it is.
            pub fn severity(self) -> Severity {
                match self { $(Reason::$name => Severity::$sev,)* }
            }

            /// What to do about it, in one sentence.
            pub fn remediation(self) -> &'static str {
                match self { $(Reason::$name => $fix,)* }
            }
        }
    };
}

use ConditionType as C;

catalogue! {
    ServiceAccountNotFound, Some(C::ServiceAccountValid), Error,
        "Create the ServiceAccount, or point spec.serviceAccountName at an existing one in the same namespace.";
    RoleArnAnnotationMissing, Some(C::ServiceAccountValid), Error,
        "Annotate the ServiceAccount with eks.amazonaws.com/role-arn: <role ARN>, then restart its pods.";
    RoleArnAnnotationKeyMisspelled, Some(C::ServiceAccountValid), Error,
        "Rename the annotation key to exactly eks.amazonaws.com/role-arn, then restart the pods.";
    RoleArnMalformed, Some(C::ServiceAccountValid), Error,
        "Set the annotation to the role's ARN exactly as IAM prints it: arn:<partition>:iam::<account>:role/<path/><name>.";
    RoleArnMismatch, Some(C::ServiceAccountValid), Error,
        "Make the annotation and spec.expectedRoleArn agree: fix whichever one drifted.";
    RoleNotAllowed, Some(C::ServiceAccountValid), Error,
        "Annotate the ServiceAccount with a role the operator's --allowed-role-arns admits, or ask its administrator to admit this role.";
    AudienceAnnotationMismatch, Some(C::ServiceAccountValid), Warning,
        "Remove eks.amazonaws.com/audience (the default is sts.amazonaws.com) or admit that audience in the trust policy and the provider.";
    TokenExpirationInvalid, Some(C::ServiceAccountValid), Warning,
        "Set eks.amazonaws.com/token-expiration to a whole number of seconds of at least 600, or remove it (default 86400).";
    RoleArnIsRoleName, Some(C::ServiceAccountValid), Warning,
        "Write the role's full ARN (arn:<partition>:iam::<account>:role/<name>) unless every cluster runs a webhook configured with the AWS account to compose it from a name.";
    StsRegionalEndpointsInvalid, Some(C::ServiceAccountValid), Warning,
        "Set eks.amazonaws.com/sts-regional-endpoints to \"true\" or \"false\" (any value Go's strconv.ParseBool accepts); other values are ignored.";
    AudienceAnnotationInvalid, Some(C::ServiceAccountValid), Warning,
        "Set eks.amazonaws.com/audience to exactly one audience without surrounding spaces, or remove it (default sts.amazonaws.com).";
    ClusterIssuerUnknown, Some(C::OidcProviderValid), Unknown,
        "Configure the issuer (--issuer) or the cluster name (--cluster-name), or grant eks:DescribeCluster.";
    OIDCProviderMissing, Some(C::OidcProviderValid), Error,
        "Create the IAM OIDC provider for the cluster's issuer in the role's account (eksctl utils associate-iam-oidc-provider --approve).";
    OIDCProviderAudienceMissing, Some(C::OidcProviderValid), Error,
        "Add the audience to the provider: aws iam add-client-id-to-open-id-connect-provider.";
    IssuerDiscoveryUnreachable, Some(C::OidcProviderValid), Unknown,
        "Make <issuer>/.well-known/openid-configuration and its jwks_uri readable from the internet over TLS; if they are, the failure is local to where irsa-doctor runs (proxy, firewall, or a private CA: --issuer-ca-file).";
    IssuerDiscoveryInvalid, Some(C::OidcProviderValid), Error,
        "Serve a JSON discovery document whose jwks_uri is an https URL, and at that URL a JSON JWKS with the cluster's public keys.";
    IssuerSigningKeyMissing, Some(C::OidcProviderValid), Error,
        "Publish every key of the API server's JWKS (kubectl get --raw /openid/v1/jwks) at the issuer's jwks_uri, keeping old keys until tokens signed with them have expired.";
    OIDCProviderThumbprintMismatch, Some(C::OidcProviderValid), Error,
        "Set the provider's thumbprint to the SHA-1 of the root-most certificate the JWKS host serves: aws iam update-open-id-connect-provider-thumbprint.";
    OIDCProviderThumbprintUnused, Some(C::OidcProviderValid), Info,
        "Nothing to fix: AWS verifies this issuer's certificate with its trusted root CAs; update the thumbprint (aws iam update-open-id-connect-provider-thumbprint) to keep the provider accurate.";
    RoleNotFound, Some(C::TrustPolicyValid), Error,
        "Create the role, or fix the account or name in the annotation.";
    TrustPolicyInvalid, Some(C::TrustPolicyValid), Error,
        "Rewrite the trust policy as a valid IAM policy document (aws iam update-assume-role-policy validates it).";
    TrustPolicyNoWebIdentityStatement, Some(C::TrustPolicyValid), Error,
        "Add an Allow statement with Principal.Federated = the cluster's OIDC provider ARN and Action sts:AssumeRoleWithWebIdentity.";
    TrustPolicyProviderMismatch, Some(C::TrustPolicyValid), Error,
        "Set Principal.Federated to this cluster's OIDC provider ARN (clusters recreated get a new issuer id).";
    TrustPolicyConditionKeyMalformed, Some(C::TrustPolicyValid), Error,
        "Write condition keys as <issuer host+path>:sub and <issuer host+path>:aud, without https:// and with this cluster's issuer.";
    TrustPolicySubjectMismatch, Some(C::TrustPolicyValid), Error,
        "Make the :sub condition admit system:serviceaccount:<namespace>:<name> of this ServiceAccount.";
    TrustPolicyAudienceMismatch, Some(C::TrustPolicyValid), Error,
        "Make the :aud condition admit the token audience (sts.amazonaws.com unless eks.amazonaws.com/audience says otherwise).";
    TrustPolicyWildcardWithoutLike, Some(C::TrustPolicyValid), Error,
        "Use StringLike for values with * or ?; StringEquals compares them literally and never matches.";
    TrustPolicyExplicitDeny, Some(C::TrustPolicyValid), Error,
        "Narrow or remove the Deny statement that matches this ServiceAccount.";
    TrustPolicyConditionUnverifiable, Some(C::TrustPolicyValid), Unknown,
        "Nothing to fix if the condition is intended; the verdict depends on request context irsa-doctor cannot see (rely on the probe).";
    TrustPolicyNoSubjectCondition, Some(C::TrustPolicyValid), Warning,
        "Add a StringEquals condition on <issuer>:sub naming this ServiceAccount, so no other ServiceAccount of the cluster can assume the role.";
    TrustPolicySubjectTooBroad, Some(C::TrustPolicyValid), Warning,
        "Replace the StringLike pattern on :sub by the exact system:serviceaccount:<namespace>:<name> values that need the role.";
    TrustPolicyAdmitsAnyServiceAccount, Some(C::TrustPolicyValid), Error,
        "Add a StringEquals condition on <issuer>:sub listing the exact system:serviceaccount:<namespace>:<name> subjects that need the role.";
    TrustPolicyAdmitsWholeNamespace, Some(C::TrustPolicyValid), Warning,
        "Replace the namespace-wide :sub pattern (system:serviceaccount:<namespace>:*) by the exact subjects that need the role.";
    TrustedRoleUnused, Some(C::TrustPolicyValid), Warning,
        "Delete the role, or remove this cluster's provider from its trust policy, if no ServiceAccount of the cluster needs it any more.";
    TrustedServiceAccountMissing, Some(C::TrustPolicyValid), Warning,
        "Remove the deleted ServiceAccount's subject from the trust policy, so that whoever creates a ServiceAccount of that name does not get the role.";
    TrustPolicyAdmitsNoServiceAccount, Some(C::TrustPolicyValid), Warning,
        "Fix what the message names (condition keys without https://, the :aud value sts.amazonaws.com, StringLike for patterns, the exact lower-case subject), or remove this cluster's provider from the trust policy.";
    TrustedSubjectInvalid, Some(C::TrustPolicyValid), Warning,
        "Write the subject as system:serviceaccount:<namespace>:<name> with the ServiceAccount's exact lower-case names (the nearest existing one is named), and use StringLike for * and ?.";
    PermissionDenied, Some(C::PermissionsValid), Error,
        "Grant the action on the resource in one of the role's policies, or remove the Deny or boundary that blocks it.";
    PermissionCheckUnavailable, Some(C::PermissionsValid), Unknown,
        "Grant the operator iam:SimulatePrincipalPolicy, or wait for IAM to answer again.";
    ProbeCredentialsNotInjected, Some(C::ProbeSucceeded), Error,
        "Make sure the EKS pod identity webhook runs and the ServiceAccount was annotated before the pod was created.";
    ProbeAssumedNodeRole, Some(C::ProbeSucceeded), Error,
        "Fix injection so pods use the web identity token instead of falling back to the node's instance role; consider IMDS hop limit 1.";
    ProbeAssumedWrongRole, Some(C::ProbeSucceeded), Error,
        "Remove whatever overrides the annotated role (AWS_ROLE_ARN in the pod spec, a profile, static keys).";
    ProbeAccessDenied, Some(C::ProbeSucceeded), Error,
        "Fix the trust policy so it admits this ServiceAccount's token (see the TrustPolicyValid condition).";
    ProbeInvalidIdentityToken, Some(C::ProbeSucceeded), Error,
        "Create the IAM OIDC provider for this cluster's issuer in the role's account, with the right audience.";
    ProbeNoCredentials, Some(C::ProbeSucceeded), Error,
        "Check that the webhook injected AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE and that the token volume is mounted.";
    ProbeImagePullFailed, Some(C::ProbeSucceeded), Unknown,
        "Let the cluster pull the probe image, or configure a mirror with --probe-image.";
    ProbeTimedOut, Some(C::ProbeSucceeded), Unknown,
        "Check scheduling and STS reachability from the namespace, or raise spec.probe.timeout.";
    ProbeNotRun, Some(C::ProbeSucceeded), Unknown,
        "Nothing to fix in the setup: the probe pod could not be created or read (API error); it runs again on the next reconcile.";
    ProbePending, Some(C::ProbeSucceeded), Unknown,
        "Nothing to fix in the setup: every probe slot (--max-concurrent-probes) is busy; the probe runs as soon as one frees up.";
    ProbeFailed, Some(C::ProbeSucceeded), Error,
        "Read the CLI's error in the message; it names what AWS refused.";
    ProbeTokenAudienceRejected, Some(C::ProbeSucceeded), Error,
        "Add the token's audience to the IAM OIDC provider's client IDs, or remove eks.amazonaws.com/audience so tokens carry sts.amazonaws.com.";
    ProbeJwksUnreachable, Some(C::ProbeSucceeded), Error,
        "Make the issuer's /.well-known/openid-configuration and JWKS reachable from the public internet over valid TLS; for EKS issuers retry, it is transient.";
    ProbeTokenExpired, Some(C::ProbeSucceeded), Error,
        "Sync the node's clock (chrony/NTP) and make sure the SDK re-reads the token file instead of caching a token; the kubelet rotates it before expiry.";
    ProbeRegionDisabled, Some(C::ProbeSucceeded), Error,
        "Activate STS in the region (IAM console, Account settings, STS endpoints) or set AWS_STS_REGIONAL_ENDPOINTS/AWS_REGION to a region where it is active.";
    ProbeStsUnreachable, Some(C::ProbeSucceeded), Error,
        "Give the VPC an STS interface endpoint (com.amazonaws.<region>.sts) or a route to the internet, and use the regional endpoint (eks.amazonaws.com/sts-regional-endpoints: \"true\").";
    StalePodsFound, Some(C::WorkloadsValid), Error,
        "Restart the named pods (kubectl rollout restart) so the webhook injects the current role.";
    StaticCredentialsFound, Some(C::WorkloadsValid), Warning,
        "Remove AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (literal or from a Secret) from the containers; they take precedence over IRSA.";
    PodCreatedBeforeAnnotation, Some(C::WorkloadsValid), Error,
        "Restart the named pods (kubectl rollout restart): the webhook mutates pods only when they are created, and these predate the role-arn annotation.";
    PodCreatedWithServiceAccount, Some(C::WorkloadsValid), Error,
        "Restart the named pods once; apply the ServiceAccount before the workload (a separate apply or a Helm hook) so the webhook's cache has it.";
    PodOptedOutOfInjection, Some(C::WorkloadsValid), Error,
        "Remove the eks.amazonaws.com/skip-pod-identity-webhook label from the pod template (any value, \"false\" included, skips the pod), then restart the pods.";
    MainContainerSkipped, Some(C::WorkloadsValid), Error,
        "List only sidecars that need no AWS access in eks.amazonaws.com/skip-containers (it names containers to leave alone, not containers to inject), then restart the pods.";
    PresetWebIdentityEnv, Some(C::WorkloadsValid), Error,
        "Remove AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE from the pod template and let the webhook inject both, or set both consistently with a mounted token.";
    PresetContainerCredentialsEnv, Some(C::WorkloadsValid), Error,
        "Remove AWS_CONTAINER_CREDENTIALS_FULL_URI, AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE and AWS_CONTAINER_CREDENTIALS_RELATIVE_URI from the pod template and let the webhook inject the agent's.";
    PodIdentityWebhookMissing, Some(C::WorkloadsValid), Error,
        "Install the pod identity webhook (built into EKS; on other clusters deploy amazon-eks-pod-identity-webhook), then restart the pods.";
    WebhookSelectorExcludesPod, Some(C::WorkloadsValid), Error,
        "Label the namespace or pod so the webhook's namespaceSelector and objectSelector select it, then restart the pods.";
    InjectionFailedOpen, Some(C::WorkloadsValid), Error,
        "Restart the pods now that the webhook answers; keep the webhook highly available, since failurePolicy Ignore admits pods unmutated while it is down.";
    TokenUnreadable, Some(C::WorkloadsValid), Error,
        "Set securityContext.fsGroup, or run every container as the same runAsUser, or drop the restrictive defaultMode from the token volume.";
    CredentialsMayBeShadowed, Some(C::WorkloadsValid), Warning,
        "Make sure the Secret or ConfigMap used with envFrom holds no AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or use a prefix, so it cannot override IRSA.";
    SharedCredentialsConfigured, Some(C::WorkloadsValid), Warning,
        "Remove AWS_PROFILE, AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE and ~/.aws mounts unless the profile itself uses web identity; depending on the SDK they win over IRSA.";
    Kube2iamAnnotationFound, Some(C::WorkloadsValid), Warning,
        "Remove the iam.amazonaws.com/role annotation and kube2iam/kiam once pods use IRSA: their metadata proxy answers instead of IRSA for SDKs that reach it first.";
    WorkloadAssumeFailures, Some(C::WorkloadsValid), Error,
        "Fix what the error code in the message names (AccessDenied: the trust policy; InvalidIdentityToken: the OIDC provider), then watch CloudTrail for successful calls.";
    WorkloadsNotUsingWebIdentity, Some(C::WorkloadsValid), Warning,
        "Make the pods use the injected web identity: upgrade the AWS SDK, remove static keys and profiles, and block the node role (IMDSv2, hop limit 1).";
    NodeRoleFallbackPossible, Some(C::WorkloadsValid), Warning,
        "Require IMDSv2 with hop limit 1 on the nodes (launch template MetadataOptions, or aws ec2 modify-instance-metadata-options), and keep IRSA pods off hostNetwork.";
    PodIdentityOverridesAnnotation, Some(C::ServiceAccountValid), Error,
        "Remove the eks.amazonaws.com/role-arn annotation or delete the Pod Identity association: pods get the association's role, not the annotated one.";
    RoleArnAnnotationRedundant, Some(C::ServiceAccountValid), Info,
        "Nothing is wrong: the association and the annotation name the same role; remove the annotation once no cluster relies on IRSA for this ServiceAccount.";
    PodIdentityServiceAccountMissing, Some(C::ServiceAccountValid), Error,
        "Create the association for the ServiceAccount the workloads run as (aws eks create-pod-identity-association --service-account NAME), or create the ServiceAccount it names.";
    PodIdentityAgentMissing, Some(C::OidcProviderValid), Warning,
        "Install the EKS Pod Identity Agent (aws eks create-addon --addon-name eks-pod-identity-agent), unless it runs as a self-managed DaemonSet.";
    PodIdentityTrustMissingService, Some(C::TrustPolicyValid), Error,
        "Add an Allow statement with Principal.Service pods.eks.amazonaws.com and Action [sts:AssumeRole, sts:TagSession] to the association's role.";
    PodIdentityTrustMissingTagSession, Some(C::TrustPolicyValid), Error,
        "Add sts:TagSession next to sts:AssumeRole in the statement trusting pods.eks.amazonaws.com: the agent tags every session.";
    PodIdentitySessionTagsDisabled, Some(C::TrustPolicyValid), Error,
        "Enable session tags on the association (aws eks update-pod-identity-association --no-disable-session-tags), or remove the conditions on aws:RequestTag/aws:PrincipalTag keys from the trust policy.";
    PodIdentityTargetTrustDenies, Some(C::TrustPolicyValid), Error,
        "In the target role's trust policy, allow sts:AssumeRole and sts:TagSession to Principal.AWS = the association's role, with StringEquals sts:ExternalId = the association's externalId.";
    PodIdentityTargetNotPermitted, Some(C::PermissionsValid), Error,
        "Grant the association's role sts:AssumeRole and sts:TagSession on the target role in one of its permission policies.";
    PodCreatedBeforeAssociation, Some(C::WorkloadsValid), Error,
        "Restart the named pods (kubectl rollout restart): the webhook mutates pods only when they are created, and these predate the Pod Identity association.";
    PodIdentityOnFargate, Some(C::WorkloadsValid), Error,
        "Run the workload on EC2 nodes (EKS Pod Identity is not available on AWS Fargate), or use IRSA for it.";
    PodIdentityAgentNotReady, Some(C::WorkloadsValid), Error,
        "Make the eks-pod-identity-agent DaemonSet run Ready on every node that runs these pods (kubectl -n kube-system get pods -l app.kubernetes.io/name=eks-pod-identity-agent -o wide), then check the pods again.";
    SpecInvalid, Some(C::Ready), Error,
        "Fix the IrsaCheck's spec as the message says (kubectl edit irsacheck <name>).";
    AwsApiUnavailable, None, Unknown,
        "Nothing to fix in the setup: AWS was throttled or unreachable; the check re-runs on its own.";
    KubernetesApiUnavailable, None, Unknown,
        "Nothing to fix in the setup: the Kubernetes API failed a read; the check re-runs on its own.";
    AwsAccessDenied, None, Unknown,
        "Grant the operator's own IAM role the read permission named in the message.";
    NotEvaluated, None, Unknown,
        "Fix the earlier failing check; this one runs once it passes.";
    CheckSkipped, None, Info,
        "Supply the missing input to run this check.";
    ServiceAccountAnnotated, Some(C::ServiceAccountValid), Ok,
        "The ServiceAccount exists and names a well-formed role ARN.";
    PodIdentityAssociated, Some(C::ServiceAccountValid), Ok,
        "An EKS Pod Identity association gives the ServiceAccount its role.";
    OIDCProviderNotNeeded, Some(C::OidcProviderValid), Ok,
        "EKS Pod Identity is in force for the ServiceAccount; it needs no IAM OIDC provider.";
    OIDCProviderFound, Some(C::OidcProviderValid), Ok,
        "The role's account has an IAM OIDC provider for the cluster's issuer.";
    TrustPolicyAllows, Some(C::TrustPolicyValid), Ok,
        "The role's trust policy admits this ServiceAccount's token.";
    PermissionsGranted, Some(C::PermissionsValid), Ok,
        "Every requested action is allowed.";
    PermissionsNotRequested, Some(C::PermissionsValid), Ok,
        "No permissions were requested in spec.permissions.";
    ProbeAssumedRole, Some(C::ProbeSucceeded), Ok,
        "A probe pod assumed the annotated role.";
    ProbeDisabled, Some(C::ProbeSucceeded), Ok,
        "The probe is disabled for this check.";
    WorkloadsInjected, Some(C::WorkloadsValid), Ok,
        "Every running pod of the ServiceAccount got the current role injected.";
    WorkloadsObservedHealthy, Some(C::WorkloadsValid), Ok,
        "CloudTrail and the nodes' metadata options show nothing wrong with the running pods' credentials.";
    NoWorkloads, Some(C::WorkloadsValid), Ok,
        "No running pod uses the ServiceAccount.";
    AllChecksPassed, Some(C::Ready), Ok,
        "Every check passed.";
}

impl Reason {
    /// Whether this Unknown says a service failed (AWS, the Kubernetes API, the issuer's
    /// discovery endpoint) rather than something about the setup: such a verdict is worth
    /// diagnosing again soon, once the fault has ended.
    pub fn is_fault(self) -> bool {
        matches!(
            self,
            Reason::AwsApiUnavailable
                | Reason::KubernetesApiUnavailable
                | Reason::IssuerDiscoveryUnreachable
        )
    }

    /// Looks a reason up by its identifier.
    pub fn from_name(name: &str) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| r.as_str() == name)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_unique_camel_case_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            let name = r.as_str();
            assert!(seen.insert(name), "duplicate {name}");
            assert!(name.chars().next().unwrap().is_ascii_uppercase(), "{name}");
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric()), "{name}");
            assert_eq!(Reason::from_name(name), Some(*r));
            assert!(r.remediation().ends_with('.'), "{name}");
        }
    }

    #[test]
    fn every_condition_has_a_success_reason() {
        for c in [
            C::ServiceAccountValid,
            C::OidcProviderValid,
            C::TrustPolicyValid,
            C::PermissionsValid,
            C::ProbeSucceeded,
            C::WorkloadsValid,
            C::Ready,
        ] {
            assert!(
                Reason::ALL
                    .iter()
                    .any(|r| r.condition() == Some(c) && r.severity() == Severity::Ok),
                "{c}"
            );
        }
    }
}
