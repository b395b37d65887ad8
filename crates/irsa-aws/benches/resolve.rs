//! Resolves the AWS facts of N ServiceAccounts over R distinct roles against moto, cold and warm,
//! and prints the calls made against the lower bound (one GetRole per distinct role, plus the
//! provider look-ups and the operator's identity). Then `audit trust`'s part: every role of the
//! account listed at the default rate (10 calls/s) and each trust policy evaluated against the
//! N ServiceAccounts. Exits non-zero if a bound is exceeded.
//!
//! `cargo bench -p irsa-aws --bench resolve` runs 10,000 ServiceAccounts over 1,000 roles;
//! under `cargo test` (no `--bench` argument) it runs a small smoke size.
//! Options: `--service-accounts N`, `--roles R`, `--rate CALLS_PER_SECOND`.

use std::sync::Arc;
use std::time::Instant;

use irsa_aws::{AwsFacts, AwsFactsConfig, Clients, Lane};
use irsa_core::annotations::ROLE_ARN;
use irsa_core::{Fact, Issuer, RoleArn, ServiceAccount};
use test_support::moto::Moto;

/// The lane these look-ups are made in: one namespace.
static LANE: std::sync::LazyLock<Lane> = std::sync::LazyLock::new(|| Lane::namespace("reports"));

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number, found {v:?}"))
        })
        .unwrap_or(default)
}

async fn sweep(
    facts: &Arc<AwsFacts>,
    roles: &[RoleArn],
    issuer: &Issuer,
    service_accounts: usize,
) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..service_accounts)
        .map(|i| {
            let (facts, role, issuer) = (
                facts.clone(),
                roles[i % roles.len()].clone(),
                issuer.clone(),
            );
            tokio::spawn(async move {
                let role_fact = facts.role(&LANE, &role).await;
                let providers = facts.oidc_providers(role.account(), &issuer).await;
                matches!(role_fact, Fact::Known(Some(_))) && matches!(providers, Fact::Known(_))
            })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap(), "every fact resolves");
    }
    start.elapsed().as_secs_f64()
}

/// Namespace and name of the ServiceAccount role `i` trusts.
fn subject(i: usize) -> (String, String) {
    (format!("ns-{}", i % 100), format!("sa-{i}"))
}

/// A web-identity trust policy for this cluster's provider, admitting one ServiceAccount.
fn trust_policy(issuer: &Issuer, i: usize) -> String {
    let (ns, name) = subject(i);
    test_support::operator::trust_policy(issuer.host_path(), &ns, &name)
}

/// `audit trust` at this size: list every role at the default rate, evaluate every trust
/// policy against the ServiceAccounts; whether the calls stayed within one per page and each
/// role was found to admit exactly the one ServiceAccount its policy names.
async fn audit_trust(
    moto: &Moto,
    issuer: &Issuer,
    roles: &[RoleArn],
    service_accounts: usize,
) -> bool {
    let rate = 10;
    let config = AwsFactsConfig {
        calls_per_second: rate,
        burst: rate,
        ..AwsFactsConfig::default()
    };
    let facts = AwsFacts::from_loader(moto.loader(), &config).await;
    let start = Instant::now();
    let listed = facts
        .list_roles(roles[0].account())
        .await
        .expect("roles are listed");
    let listing = start.elapsed().as_secs_f64();
    let calls = facts.call_stats().calls("ListRoles");
    let pages = roles
        .len()
        .div_ceil(irsa_aws::LIST_ROLES_PAGE_SIZE as usize) as u64;
    let accounts: Vec<ServiceAccount> = (0..service_accounts)
        .map(|i| {
            let (namespace, name) = subject(i % roles.len());
            ServiceAccount {
                namespace,
                name: format!("{name}-{}", i / roles.len()),
                annotations: [(ROLE_ARN.to_string(), roles[i % roles.len()].to_string())].into(),
                ..ServiceAccount::default()
            }
        })
        .chain((0..roles.len()).map(|i| {
            let (namespace, name) = subject(i);
            ServiceAccount {
                namespace,
                name,
                ..ServiceAccount::default()
            }
        }))
        .collect();
    let start = Instant::now();
    let audited = irsa_core::trust_audit::audit_trust(issuer, &listed, &accounts, &[]);
    let evaluation = start.elapsed().as_secs_f64();
    let admitting = audited.iter().filter(|a| a.admitted_count == 1).count();
    // A burst of `rate` pages goes at once; each further one waits for the rate.
    let floor = pages.saturating_sub(u64::from(rate)) as f64 / f64::from(rate);
    println!(
        "audit trust: {} roles listed in {calls} ListRoles calls (bound {pages}), {listing:.2}s (rate floor {floor:.1}s at {rate}/s, burst {rate}); {} trust policies evaluated against {} ServiceAccounts in {evaluation:.2}s, {admitting} admit exactly their one",
        listed.len(),
        audited.len(),
        accounts.len()
    );
    calls <= pages && admitting == roles.len()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench");
    let service_accounts = arg(&args, "--service-accounts", if full { 10_000 } else { 500 });
    let role_count = arg(&args, "--roles", if full { 1_000 } else { 50 });
    let rate = arg(&args, "--rate", 2_000) as u32;

    let moto = Moto::start();
    let admin = Clients::new(&moto.loader().load().await);
    let issuer = Issuer::parse(
        "https://oidc.eks.us-east-1.amazonaws.com/id/BENCH0000000000000000000000000000",
    )
    .unwrap();
    admin
        .iam
        .create_open_id_connect_provider()
        .url(issuer.url())
        .client_id_list("sts.amazonaws.com")
        .send()
        .await
        .unwrap();
    let setup = Instant::now();
    let mut roles = Vec::with_capacity(role_count);
    for i in 0..role_count {
        let out = admin
            .iam
            .create_role()
            .role_name(format!("role-{i}"))
            .assume_role_policy_document(trust_policy(&issuer, i))
            .send()
            .await
            .unwrap();
        roles.push(RoleArn::parse(out.role().unwrap().arn()).unwrap());
    }
    eprintln!(
        "set-up: {role_count} roles in moto in {:.1}s",
        setup.elapsed().as_secs_f64()
    );

    let config = AwsFactsConfig {
        calls_per_second: rate,
        burst: rate,
        max_concurrent_calls: 16,
        ..AwsFactsConfig::default()
    };
    let facts = Arc::new(AwsFacts::from_loader(moto.loader(), &config).await);
    let cold = sweep(&facts, &roles, &issuer, service_accounts).await;
    let after_cold = facts.call_stats().snapshot();
    let warm = sweep(&facts, &roles, &issuer, service_accounts).await;
    let after_warm = facts.call_stats().snapshot();

    // Lower bound: one GetRole per role, one provider list and one provider get, one identity.
    let bound = role_count as u64 + 3;
    let total = |s: &[irsa_aws::CallCount]| s.iter().map(|c| c.count).sum::<u64>();
    println!("irsa-aws resolve: {service_accounts} ServiceAccounts over {role_count} roles, rate {rate}/s, 16 concurrent");
    println!("{:<28} {:>10} {:>10}", "operation", "cold", "warm");
    for c in &after_cold {
        let warm_count = after_warm
            .iter()
            .find(|w| (w.operation, w.outcome) == (c.operation, c.outcome))
            .map_or(0, |w| w.count - c.count);
        println!(
            "{:<28} {:>10} {:>10}",
            format!("{}:{} {}", c.service, c.operation, c.outcome.as_str()),
            c.count,
            warm_count
        );
    }
    let cold_calls = total(&after_cold);
    let warm_calls = total(&after_warm) - cold_calls;
    println!(
        "{:<28} {:>10} {:>10}",
        "total calls", cold_calls, warm_calls
    );
    println!("{:<28} {:>10} {:>10}", "lower bound", bound, 0);
    println!("{:<28} {:>10.2} {:>10.3}", "wall time (s)", cold, warm);
    println!("peak concurrent calls: {}", facts.peak_concurrent_calls());
    let audited = audit_trust(&moto, &issuer, &roles, service_accounts).await;
    drop(moto);
    if cold_calls > bound || warm_calls > 0 {
        eprintln!("FAIL: calls exceed the lower bound");
        std::process::exit(1);
    }
    if !audited {
        eprintln!("FAIL: audit trust listed with more calls than pages, or misjudged a role");
        std::process::exit(1);
    }
}
