//! [`AwsFacts`]: every question irsa-doctor asks AWS, each answered at most once per TTL however
//! many reconciles ask it at once, within a global concurrency and rate bound shared fairly
//! between namespaces ([`Lane`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;

use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_iam::types::PolicyEvaluationDecisionType;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use irsa_core::facts::{PermissionDecision, PermissionRequest, PermissionVerdict};
use irsa_core::pod_identity::Association;
use irsa_core::trust_audit::ListedRole;
use irsa_core::{Fact, Issuer, OidcProvider, OidcProviderArn, Reason, Role, RoleArn, Unavailable};

use crate::cache::FactCache;
use crate::classify::{Failure, Outcome};
use crate::config::AwsFactsConfig;
use crate::limiter::{Lane, Limiter};
use crate::stats::CallStats;

mod cloudtrail;
mod instances;

/// SDK clients for one set of credentials.
#[derive(Debug, Clone)]
pub struct Clients {
    /// IAM.
    pub iam: aws_sdk_iam::Client,
    /// STS.
    pub sts: aws_sdk_sts::Client,
    /// EKS.
    pub eks: aws_sdk_eks::Client,
    /// EC2 (the nodes' metadata options).
    pub ec2: aws_sdk_ec2::Client,
    /// CloudTrail (recorded web identity calls).
    pub cloudtrail: aws_sdk_cloudtrail::Client,
}

impl Clients {
    /// Clients sharing one SDK configuration.
    pub fn new(sdk: &SdkConfig) -> Clients {
        Clients {
            iam: aws_sdk_iam::Client::new(sdk),
            sts: aws_sdk_sts::Client::new(sdk),
            eks: aws_sdk_eks::Client::new(sdk),
            ec2: aws_sdk_ec2::Client::new(sdk),
            cloudtrail: aws_sdk_cloudtrail::Client::new(sdk),
        }
    }
}

/// Who the operator is in AWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    /// Its account.
    pub account: String,
    /// Its ARN (a role session when it runs with IRSA itself).
    pub arn: String,
}

/// Cache hit and miss counts of one fact kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheStats {
    /// `role`, `providers`, ...
    pub kind: &'static str,
    /// Answers from the cache.
    pub hits: u64,
    /// Answers that needed AWS.
    pub misses: u64,
}

/// The AWS facts irsa-doctor needs, cached and bounded.
pub struct AwsFacts {
    home: Clients,
    accounts: BTreeMap<String, Clients>,
    limiter: Limiter,
    stats: CallStats,
    /// The operator's ARN once known, for access-denied messages.
    me: Mutex<Option<String>>,
    identity: FactCache<(), Result<CallerIdentity, Unavailable>>,
    issuers: FactCache<String, Result<Issuer, Unavailable>>,
    provider_lists: FactCache<String, Result<Vec<OidcProviderArn>, Unavailable>>,
    /// A provider's client IDs and thumbprints (`iam:GetOpenIDConnectProvider`).
    client_ids: FactCache<OidcProviderArn, Result<ProviderDetails, Unavailable>>,
    roles: FactCache<RoleArn, Fact<Option<Role>>>,
    simulations: FactCache<(RoleArn, Vec<PermissionRequest>), Fact<Vec<PermissionVerdict>>>,
    /// Pod Identity association summaries by (cluster, namespace, ServiceAccount); `None`: whole cluster.
    association_lists: FactCache<AssociationListKey, Result<Vec<AssociationSummary>, Unavailable>>,
    associations: FactCache<(String, String), Fact<Option<Association>>>,
    addons: FactCache<(String, String), Fact<bool>>,
    /// CloudTrail look-ups, within CloudTrail's own rate limit (`facts/cloudtrail.rs`).
    cloudtrail: cloudtrail::Lookups,
    /// EC2 instances' metadata options by instance (`facts/instances.rs`).
    instances: instances::Lookups,
    /// Every role of an account with its trust policy (`iam:ListRoles`), see `roles.rs`.
    pub(crate) role_lists: FactCache<String, Result<Vec<ListedRole>, Unavailable>>,
}

/// What `iam:GetOpenIDConnectProvider` tells of a provider.
#[derive(Debug, Clone)]
struct ProviderDetails {
    client_ids: Vec<String>,
    thumbprints: Vec<String>,
}

/// A cluster, and the ServiceAccount (namespace, name) a list is filtered by; `None`: all.
type AssociationListKey = (String, Option<(String, String)>);

/// One entry of `eks:ListPodIdentityAssociations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssociationSummary {
    /// The ServiceAccount's namespace.
    pub namespace: String,
    /// The ServiceAccount's name.
    pub service_account: String,
    /// `a-…`.
    pub association_id: String,
}

fn known<T>(fact: &Fact<T>) -> bool {
    !matches!(fact, Fact::Unavailable(_))
}

impl AwsFacts {
    /// Facts read with `home` credentials, and with `accounts` for roles in those accounts.
    pub fn new(
        home: Clients,
        accounts: BTreeMap<String, Clients>,
        config: &AwsFactsConfig,
    ) -> AwsFacts {
        let ttl = &config.ttl;
        AwsFacts {
            home,
            accounts,
            limiter: Limiter::new(
                config.max_concurrent_calls,
                config.calls_per_second,
                config.burst,
            ),
            stats: CallStats::default(),
            me: Mutex::new(None),
            identity: FactCache::new(ttl.identity, 1),
            issuers: FactCache::new(ttl.issuer, config.max_cached_per_kind),
            provider_lists: FactCache::new(ttl.providers, config.max_cached_per_kind),
            client_ids: FactCache::new(ttl.providers, config.max_cached_per_kind),
            roles: FactCache::new(ttl.role, config.max_cached_per_kind),
            simulations: FactCache::new(ttl.permissions, config.max_cached_per_kind),
            // Associations and add-ons change about as often as roles do.
            association_lists: FactCache::new(ttl.role, config.max_cached_per_kind),
            associations: FactCache::new(ttl.role, config.max_cached_per_kind),
            addons: FactCache::new(ttl.role, config.max_cached_per_kind),
            cloudtrail: cloudtrail::Lookups::new(config.max_cached_per_kind),
            instances: instances::Lookups::new(ttl.role, config.max_cached_per_kind),
            role_lists: FactCache::new(ttl.role, config.max_cached_per_kind),
        }
    }

    /// The standard AWS configuration chain (environment, profile, web identity, IMDS; region;
    /// `AWS_ENDPOINT_URL` and per-service endpoint URLs), with the configured retries and
    /// timeout, plus one assumed-role client set per configured account.
    pub async fn from_env(config: &AwsFactsConfig) -> AwsFacts {
        AwsFacts::from_loader(aws_config::defaults(BehaviorVersion::latest()), config).await
    }

    /// Like [`AwsFacts::from_env`], starting from a caller's loader (tests point it at an emulator).
    pub async fn from_loader(loader: ConfigLoader, config: &AwsFactsConfig) -> AwsFacts {
        let sdk = loader
            .retry_config(RetryConfig::standard().with_max_attempts(config.max_attempts))
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(config.operation_timeout)
                    .build(),
            )
            .load()
            .await;
        let mut accounts = BTreeMap::new();
        for (account, role) in &config.assume_role_per_account {
            let provider = AssumeRoleProvider::builder(role)
                .session_name("irsa-doctor")
                .configure(&sdk)
                .build()
                .await;
            let assumed = sdk
                .to_builder()
                .credentials_provider(SharedCredentialsProvider::new(provider))
                .build();
            accounts.insert(account.clone(), Clients::new(&assumed));
        }
        AwsFacts::new(Clients::new(&sdk), accounts, config)
    }

    /// Runs one SDK call for `lane` within the limits and counts it.
    pub(crate) async fn call<T, E, R>(
        &self,
        lane: &Lane,
        service: &'static str,
        operation: &'static str,
        call: impl Future<Output = Result<T, SdkError<E, R>>>,
    ) -> Result<T, Failure>
    where
        E: ProvideErrorMetadata + std::fmt::Debug,
        R: std::fmt::Debug,
    {
        let result = Box::pin(self.limiter.run(lane, call))
            .await
            .map_err(|e| Failure::from_sdk(&e));
        let outcome = result
            .as_ref()
            .map_or_else(|f| f.outcome, |_| Outcome::Success);
        self.stats.record(service, operation, outcome);
        result
    }

    /// What a failed call means for the diagnosis; an access denial names who was denied.
    pub(crate) fn unavailable(
        &self,
        failure: &Failure,
        action: &str,
        subject: &str,
    ) -> Unavailable {
        let mut u = failure.unavailable(action, subject);
        if failure.outcome == Outcome::AccessDenied {
            if let Some(me) = self.me.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                u.detail.push_str(&format!(" (the operator runs as {me})"));
            }
        }
        u
    }

    /// The operator's own identity (`sts:GetCallerIdentity`).
    pub async fn caller_identity(&self) -> Result<CallerIdentity, Unavailable> {
        self.identity
            .get_or_fetch((), Result::is_ok, || async {
                let out = self
                    .call(
                        &Lane::Operator,
                        "sts",
                        "GetCallerIdentity",
                        self.home.sts.get_caller_identity().send(),
                    )
                    .await
                    .map_err(|f| {
                        f.unavailable("sts:GetCallerIdentity", "the operator's own identity")
                    })?;
                let me = CallerIdentity {
                    account: out.account().unwrap_or_default().to_string(),
                    arn: out.arn().unwrap_or_default().to_string(),
                };
                *self.me.lock().unwrap_or_else(|p| p.into_inner()) = Some(me.arn.clone());
                Ok(me)
            })
            .await
    }

    /// The clients that can read `account`'s IAM, or why none can.
    pub(crate) async fn clients_for(&self, account: &str) -> Result<&Clients, Unavailable> {
        if let Some(clients) = self.accounts.get(account) {
            return Ok(clients);
        }
        let me = self.caller_identity().await?;
        if me.account == account {
            return Ok(&self.home);
        }
        Err(Unavailable {
            reason: Reason::AwsAccessDenied,
            detail: format!(
                "account {account} is not the operator's own ({}) and no role to assume is configured for it \
                 (--assume-role {account}=ROLE_ARN), so its IAM facts are unknown",
                me.account
            ),
        })
    }

    /// The OIDC issuer of an EKS cluster (`eks:DescribeCluster`).
    pub async fn cluster_issuer(&self, cluster: &str) -> Result<Issuer, Unavailable> {
        let unknown = |detail: String| Unavailable {
            reason: Reason::ClusterIssuerUnknown,
            detail,
        };
        self.issuers
            .get_or_fetch(cluster.to_string(), Result::is_ok, || async {
                let out = match self
                    .call(
                        &Lane::Operator,
                        "eks",
                        "DescribeCluster",
                        self.home.eks.describe_cluster().name(cluster).send(),
                    )
                    .await
                {
                    Ok(out) => out,
                    Err(f) if f.outcome == Outcome::NotFound => {
                        return Err(unknown(format!(
                            "EKS cluster {cluster:?} does not exist in the operator's region ({})",
                            f.detail
                        )))
                    }
                    Err(f) => {
                        return Err(self.unavailable(
                            &f,
                            "eks:DescribeCluster",
                            &format!("cluster {cluster}"),
                        ))
                    }
                };
                let url = out
                    .cluster()
                    .and_then(|c| c.identity())
                    .and_then(|i| i.oidc())
                    .and_then(|o| o.issuer())
                    .ok_or_else(|| {
                        unknown(format!("EKS cluster {cluster:?} reports no OIDC issuer"))
                    })?;
                Issuer::parse(url).map_err(|e| {
                    unknown(format!(
                        "EKS cluster {cluster:?} reports issuer {url:?}: {e}"
                    ))
                })
            })
            .await
    }

    /// The IAM OIDC providers of `account`; client IDs are fetched only for those of `issuer`.
    /// Shared by every namespace whose roles live in that account, so asked in the operator's
    /// own [`Lane`]: a namespace's queue never holds a look-up others wait for.
    pub async fn oidc_providers(&self, account: &str, issuer: &Issuer) -> Fact<Vec<OidcProvider>> {
        let clients = match self.clients_for(account).await {
            Ok(c) => c,
            Err(u) => return Fact::Unavailable(u),
        };
        let listed = self
            .provider_lists
            .get_or_fetch(account.to_string(), Result::is_ok, || async {
                let out = self
                    .call(
                        &Lane::Operator,
                        "iam",
                        "ListOpenIDConnectProviders",
                        clients.iam.list_open_id_connect_providers().send(),
                    )
                    .await
                    .map_err(|f| {
                        self.unavailable(
                            &f,
                            "iam:ListOpenIDConnectProviders",
                            &format!("account {account}"),
                        )
                    })?;
                Ok(out
                    .open_id_connect_provider_list()
                    .iter()
                    .filter_map(|p| OidcProviderArn::parse(p.arn()?).ok())
                    .collect())
            })
            .await;
        let arns = match listed {
            Ok(arns) => arns,
            Err(u) => return Fact::Unavailable(u),
        };
        let mut providers = Vec::with_capacity(arns.len());
        for arn in arns {
            let (client_ids, thumbprints) =
                if arn.host_path.eq_ignore_ascii_case(issuer.host_path()) {
                    match self.provider_client_ids(clients, &arn).await {
                        Ok(d) => (Some(d.client_ids), Some(d.thumbprints)),
                        Err(u) => return Fact::Unavailable(u),
                    }
                } else {
                    (None, None)
                };
            providers.push(OidcProvider {
                arn,
                client_ids,
                thumbprints,
            });
        }
        Fact::Known(providers)
    }

    async fn provider_client_ids(
        &self,
        clients: &Clients,
        arn: &OidcProviderArn,
    ) -> Result<ProviderDetails, Unavailable> {
        self.client_ids
            .get_or_fetch(arn.clone(), Result::is_ok, || async {
                self.call(
                    &Lane::Operator,
                    "iam",
                    "GetOpenIDConnectProvider",
                    clients
                        .iam
                        .get_open_id_connect_provider()
                        .open_id_connect_provider_arn(arn.to_string())
                        .send(),
                )
                .await
                .map(|out| ProviderDetails {
                    client_ids: out.client_id_list().to_vec(),
                    thumbprints: out.thumbprint_list().to_vec(),
                })
                .map_err(|f| self.unavailable(&f, "iam:GetOpenIDConnectProvider", &arn.to_string()))
            })
            .await
    }

    /// A role and its trust policy (`iam:GetRole`), asked in `lane`; `Known(None)` when no role
    /// has that ARN.
    pub async fn role(&self, lane: &Lane, arn: &RoleArn) -> Fact<Option<Role>> {
        let clients = match self.clients_for(arn.account()).await {
            Ok(c) => c,
            Err(u) => return Fact::Unavailable(u),
        };
        self.roles
            .get_or_fetch(arn.clone(), known, || async {
                match self
                    .call(
                        lane,
                        "iam",
                        "GetRole",
                        clients.iam.get_role().role_name(arn.name()).send(),
                    )
                    .await
                {
                    // A role of that name under another path is not the annotated ARN.
                    Ok(out) => {
                        Fact::Known(out.role().filter(|r| r.arn() == arn.to_string()).map(|r| {
                            Role {
                                trust_policy: r
                                    .assume_role_policy_document()
                                    .unwrap_or_default()
                                    .to_string(),
                            }
                        }))
                    }
                    Err(f) if f.outcome == Outcome::NotFound => Fact::Known(None),
                    Err(f) => {
                        Fact::Unavailable(self.unavailable(&f, "iam:GetRole", &arn.to_string()))
                    }
                }
            })
            .await
    }

    /// IAM's policy-simulator verdict for each requested permission
    /// (`iam:SimulatePrincipalPolicy`, one call per resource and page), asked in `lane`.
    pub async fn permissions(
        &self,
        lane: &Lane,
        arn: &RoleArn,
        requests: &[PermissionRequest],
    ) -> Fact<Vec<PermissionVerdict>> {
        let clients = match self.clients_for(arn.account()).await {
            Ok(c) => c,
            Err(u) => return Fact::Unavailable(u),
        };
        let mut key = requests.to_vec();
        key.sort();
        key.dedup();
        self.simulations
            .get_or_fetch((arn.clone(), key.clone()), known, || async {
                let mut by_resource: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
                for r in &key {
                    by_resource.entry(&r.resource).or_default().push(&r.action);
                }
                let mut verdicts = Vec::with_capacity(key.len());
                for (resource, actions) in by_resource {
                    match self.simulate(lane, clients, arn, resource, &actions).await {
                        Ok(v) => verdicts.extend(v),
                        Err(u) => return Fact::Unavailable(u),
                    }
                }
                Fact::Known(verdicts)
            })
            .await
    }

    async fn simulate(
        &self,
        lane: &Lane,
        clients: &Clients,
        arn: &RoleArn,
        resource: &str,
        actions: &[&str],
    ) -> Result<Vec<PermissionVerdict>, Unavailable> {
        let mut verdicts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let request = clients
                .iam
                .simulate_principal_policy()
                .policy_source_arn(arn.to_string())
                .set_action_names(Some(actions.iter().map(|a| a.to_string()).collect()))
                .resource_arns(resource)
                .set_marker(marker.take());
            let out = self
                .call(lane, "iam", "SimulatePrincipalPolicy", request.send())
                .await
                .map_err(|f| match f.outcome {
                    Outcome::AccessDenied | Outcome::Throttled => {
                        self.unavailable(&f, "iam:SimulatePrincipalPolicy", &arn.to_string())
                    }
                    _ => Unavailable {
                        reason: Reason::PermissionCheckUnavailable,
                        detail: format!(
                            "iam:SimulatePrincipalPolicy for {arn} failed: {}",
                            f.detail
                        ),
                    },
                })?;
            for result in out.evaluation_results() {
                verdicts.push(PermissionVerdict {
                    request: PermissionRequest {
                        action: result.eval_action_name().to_string(),
                        resource: result.eval_resource_name().unwrap_or(resource).to_string(),
                    },
                    decision: match result.eval_decision() {
                        PolicyEvaluationDecisionType::Allowed => PermissionDecision::Allowed,
                        PolicyEvaluationDecisionType::ExplicitDeny => {
                            PermissionDecision::ExplicitDeny
                        }
                        _ => PermissionDecision::ImplicitDeny,
                    },
                    matched_statements: result
                        .matched_statements()
                        .iter()
                        .filter_map(|s| s.source_policy_id().map(str::to_string))
                        .collect(),
                });
            }
            match out.marker() {
                Some(m) if out.is_truncated() => marker = Some(m.to_string()),
                _ => return Ok(verdicts),
            }
        }
    }

    /// The Pod Identity associations of `cluster` (`eks:ListPodIdentityAssociations`, every page),
    /// only those of `namespace/name` when given, asked in `lane`.
    pub async fn pod_identity_association_list(
        &self,
        lane: &Lane,
        cluster: &str,
        service_account: Option<(&str, &str)>,
    ) -> Result<Vec<AssociationSummary>, Unavailable> {
        let key = (
            cluster.to_string(),
            service_account.map(|(n, s)| (n.to_string(), s.to_string())),
        );
        self.association_lists
            .get_or_fetch(key, Result::is_ok, || {
                self.list_associations(lane, cluster, service_account)
            })
            .await
    }

    /// Lists the associations of `cluster` again, whatever the cache holds, and keeps the
    /// answer for later callers: how a poller sees associations created or deleted.
    pub async fn refresh_association_list(
        &self,
        cluster: &str,
    ) -> Result<Vec<AssociationSummary>, Unavailable> {
        let fresh = self.list_associations(&Lane::Operator, cluster, None).await;
        if fresh.is_ok() {
            self.association_lists
                .insert((cluster.to_string(), None), fresh.clone())
                .await;
        }
        fresh
    }

    /// Every page of `eks:ListPodIdentityAssociations` for `cluster`, filtered by one
    /// ServiceAccount when given.
    async fn list_associations(
        &self,
        lane: &Lane,
        cluster: &str,
        service_account: Option<(&str, &str)>,
    ) -> Result<Vec<AssociationSummary>, Unavailable> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut request = self
                .home
                .eks
                .list_pod_identity_associations()
                .cluster_name(cluster)
                .set_next_token(token.take());
            if let Some((namespace, name)) = service_account {
                request = request.namespace(namespace).service_account(name);
            }
            let out = self
                .call(lane, "eks", "ListPodIdentityAssociations", request.send())
                .await
                .map_err(|f| {
                    self.unavailable(
                        &f,
                        "eks:ListPodIdentityAssociations",
                        &format!("cluster {cluster}"),
                    )
                })?;
            for a in out.associations() {
                found.push(AssociationSummary {
                    namespace: a.namespace().unwrap_or_default().to_string(),
                    service_account: a.service_account().unwrap_or_default().to_string(),
                    association_id: a.association_id().unwrap_or_default().to_string(),
                });
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(found),
            }
        }
    }

    /// One association (`eks:DescribePodIdentityAssociation`); `Known(None)` when it is gone.
    pub async fn pod_identity_association(
        &self,
        lane: &Lane,
        cluster: &str,
        id: &str,
    ) -> Fact<Option<Association>> {
        self.associations
            .get_or_fetch((cluster.to_string(), id.to_string()), known, || async {
                let request = self
                    .home
                    .eks
                    .describe_pod_identity_association()
                    .cluster_name(cluster)
                    .association_id(id);
                match self
                    .call(
                        lane,
                        "eks",
                        "DescribePodIdentityAssociation",
                        request.send(),
                    )
                    .await
                {
                    Ok(out) => Fact::Known(out.association().map(|a| {
                        Association {
                            id: a.association_id().unwrap_or(id).to_string(),
                            arn: a.association_arn().map(str::to_string),
                            cluster: a.cluster_name().unwrap_or(cluster).to_string(),
                            namespace: a.namespace().unwrap_or_default().to_string(),
                            service_account: a.service_account().unwrap_or_default().to_string(),
                            role_arn: a.role_arn().unwrap_or_default().to_string(),
                            target_role_arn: a
                                .target_role_arn()
                                .filter(|t| !t.is_empty())
                                .map(str::to_string),
                            external_id: a
                                .external_id()
                                .filter(|t| !t.is_empty())
                                .map(str::to_string),
                            disable_session_tags: a.disable_session_tags().unwrap_or(false),
                            created_at: a.created_at().map(|t| t.secs()),
                        }
                    })),
                    Err(f) if f.outcome == Outcome::NotFound => Fact::Known(None),
                    Err(f) => Fact::Unavailable(self.unavailable(
                        &f,
                        "eks:DescribePodIdentityAssociation",
                        &format!("association {id} of cluster {cluster}"),
                    )),
                }
            })
            .await
    }

    /// The association of `namespace/name` in `cluster` (list filtered by both, then describe
    /// the first); `Known(None)` when there is none.
    pub async fn service_account_association(
        &self,
        lane: &Lane,
        cluster: &str,
        namespace: &str,
        name: &str,
    ) -> Fact<Option<Association>> {
        let listed = self
            .pod_identity_association_list(lane, cluster, Some((namespace, name)))
            .await;
        match listed {
            Err(u) => Fact::Unavailable(u),
            Ok(list) => match list.first() {
                None => Fact::Known(None),
                Some(first) => {
                    Box::pin(self.pod_identity_association(lane, cluster, &first.association_id))
                        .await
                }
            },
        }
    }

    /// The association of `namespace/name` found in the list of every association of `cluster`
    /// (one paginated list per cluster and TTL, whoever asks), then described; `Known(None)`
    /// when there is none. What a whole-cluster caller (the operator, `check -A`) uses, so that
    /// listing costs per cluster, not per ServiceAccount.
    pub async fn association_in_cluster(
        &self,
        lane: &Lane,
        cluster: &str,
        namespace: &str,
        name: &str,
    ) -> Fact<Option<Association>> {
        match self
            .pod_identity_association_list(&Lane::Operator, cluster, None)
            .await
        {
            Err(u) => Fact::Unavailable(u),
            Ok(list) => match list
                .iter()
                .find(|a| a.namespace == namespace && a.service_account == name)
            {
                None => Fact::Known(None),
                Some(first) => {
                    Box::pin(self.pod_identity_association(lane, cluster, &first.association_id))
                        .await
                }
            },
        }
    }

    /// Whether the EKS add-on `addon` is installed in `cluster` (`eks:DescribeAddon`).
    pub async fn addon_installed(&self, cluster: &str, addon: &str) -> Fact<bool> {
        self.addons
            .get_or_fetch((cluster.to_string(), addon.to_string()), known, || async {
                let request = self
                    .home
                    .eks
                    .describe_addon()
                    .cluster_name(cluster)
                    .addon_name(addon);
                match self
                    .call(&Lane::Operator, "eks", "DescribeAddon", request.send())
                    .await
                {
                    Ok(out) => Fact::Known(out.addon().is_some()),
                    Err(f) if f.outcome == Outcome::NotFound => Fact::Known(false),
                    Err(f) => Fact::Unavailable(self.unavailable(
                        &f,
                        "eks:DescribeAddon",
                        &format!("add-on {addon} of cluster {cluster}"),
                    )),
                }
            })
            .await
    }

    /// Calls made so far, by service, operation and outcome.
    pub fn call_stats(&self) -> &CallStats {
        &self.stats
    }

    /// Cache hits and misses per fact kind.
    pub fn cache_stats(&self) -> Vec<CacheStats> {
        let stat = |kind, hits, misses| CacheStats { kind, hits, misses };
        vec![
            stat("identity", self.identity.hits(), self.identity.misses()),
            stat("issuer", self.issuers.hits(), self.issuers.misses()),
            stat(
                "providers",
                self.provider_lists.hits(),
                self.provider_lists.misses(),
            ),
            stat("provider", self.client_ids.hits(), self.client_ids.misses()),
            stat("role", self.roles.hits(), self.roles.misses()),
            stat(
                "role_lists",
                self.role_lists.hits(),
                self.role_lists.misses(),
            ),
            stat(
                "permissions",
                self.simulations.hits(),
                self.simulations.misses(),
            ),
            stat(
                "pod_identity_associations",
                self.associations.hits(),
                self.associations.misses(),
            ),
        ]
    }

    /// The most AWS calls that were ever in flight at once.
    pub fn peak_concurrent_calls(&self) -> usize {
        self.limiter.peak_in_flight()
    }

    /// Seconds AWS calls so far spent waiting in the client-side limiter (fair queue, concurrency
    /// bound and rate limit), summed over all calls.
    pub fn rate_limit_wait_seconds(&self) -> f64 {
        self.limiter.waited_seconds()
    }
}
