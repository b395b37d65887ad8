//! Resolves the AWS facts of N ServiceAccounts over R distinct roles against moto, cold and warm,
//! and prints the calls made against the lower bound (one GetRole per distinct role, plus the
//! provider look-ups and the operator's identity). Exits non-zero if the bound is exceeded.
//!
//! `cargo bench -p irsa-aws --bench resolve` runs 10,000 ServiceAccounts over 1,000 roles;
//! under `cargo test` (no `--bench` argument) it runs a small smoke size.
//! Options: `--service-accounts N`, `--roles R`, `--rate CALLS_PER_SECOND`.

use std::sync::Arc;
use std::time::Instant;

use irsa_aws::{AwsFacts, AwsFactsConfig, Clients, Lane};
use irsa_core::{Fact, Issuer, RoleArn};
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
            .assume_role_policy_document(r#"{"Version":"2012-10-17","Statement":[]}"#)
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
    drop(moto);
    if cold_calls > bound || warm_calls > 0 {
        eprintln!("FAIL: calls exceed the lower bound");
        std::process::exit(1);
    }
}
