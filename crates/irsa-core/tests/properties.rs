//! Property tests: trust evaluation admits exactly what a policy names, and no input panics.

use irsa_core::condition::Tri;
use irsa_core::facts::Fact;
use irsa_core::trust::{evaluate, WebIdentityRequest};
use irsa_core::{
    diagnose, Facts, Issuer, OidcProviderArn, PolicyDocument, Role, RoleArn, ServiceAccount,
};
use proptest::prelude::*;

const ISSUER: &str = "https://oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF";

fn dns_label() -> impl Strategy<Value = String> {
    "[a-z0-9]([-a-z0-9]{0,14}[a-z0-9])?"
}

fn role() -> RoleArn {
    RoleArn::parse("arn:aws:iam::111122223333:role/app").unwrap()
}

fn request(ns: &str, name: &str) -> WebIdentityRequest {
    WebIdentityRequest::new(
        &Issuer::parse(ISSUER).unwrap(),
        &role(),
        ns,
        name,
        "sts.amazonaws.com",
    )
}

/// The trust policy eksctl writes for one ServiceAccount.
fn policy_for(ns: &str, name: &str, sub_operator: &str, sub_value: &str) -> PolicyDocument {
    let issuer = Issuer::parse(ISSUER).unwrap();
    let provider = issuer.provider_arn(role().partition(), role().account());
    let mut condition =
        serde_json::json!({"StringEquals": {issuer.condition_key("aud"): "sts.amazonaws.com"}});
    condition
        .as_object_mut()
        .unwrap()
        .entry(sub_operator)
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut()
        .unwrap()
        .insert(
            issuer.condition_key("sub"),
            sub_value.replace("{ns}", ns).replace("{name}", name).into(),
        );
    let doc = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": provider.to_string()},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": condition
        }]
    });
    PolicyDocument::from_value(&doc).unwrap()
}

proptest! {
    #[test]
    fn exact_policy_admits_its_service_account_and_no_other(
        ns in dns_label(), name in dns_label(), other_ns in dns_label(), other_name in dns_label()
    ) {
        let policy = policy_for(&ns, &name, "StringEquals", "system:serviceaccount:{ns}:{name}");
        let own = evaluate(&policy, &request(&ns, &name));
        prop_assert_eq!(own.allowed, Tri::True);
        prop_assert!(own.findings.is_empty(), "{:?}", own.findings);
        prop_assume!((ns.as_str(), name.as_str()) != (other_ns.as_str(), other_name.as_str()));
        prop_assert_eq!(evaluate(&policy, &request(&other_ns, &other_name)).allowed, Tri::False);
    }

    #[test]
    fn namespace_pattern_admits_exactly_that_namespace(
        ns in dns_label(), name in dns_label(), other_ns in dns_label()
    ) {
        let policy = policy_for(&ns, &name, "StringLike", "system:serviceaccount:{ns}:*");
        let own = evaluate(&policy, &request(&ns, &name));
        prop_assert_eq!(own.allowed, Tri::True);
        prop_assert_eq!(own.findings[0].reason, irsa_core::Reason::TrustPolicySubjectTooBroad);
        prop_assume!(ns != other_ns);
        prop_assert_eq!(evaluate(&policy, &request(&other_ns, &name)).allowed, Tri::False);
    }

    #[test]
    fn url_encoding_does_not_change_the_verdict(ns in dns_label(), name in dns_label(), probe in dns_label()) {
        let policy = policy_for(&ns, &name, "StringEquals", "system:serviceaccount:{ns}:{name}");
        let raw = format!(
            r#"{{"Statement":{{"Effect":"Allow","Principal":{{"Federated":"{}"}},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{{"StringEquals":{{"{}":"system:serviceaccount:{ns}:{name}"}}}}}}}}"#,
            request(&ns, &name).provider,
            Issuer::parse(ISSUER).unwrap().condition_key("sub"),
        );
        let encoded = percent_encoding::utf8_percent_encode(&raw, percent_encoding::NON_ALPHANUMERIC).to_string();
        let decoded = PolicyDocument::parse(&encoded).unwrap();
        for (n, s) in [(ns.as_str(), name.as_str()), (ns.as_str(), probe.as_str())] {
            prop_assert_eq!(evaluate(&decoded, &request(n, s)).allowed, evaluate(&policy, &request(n, s)).allowed);
        }
    }

    #[test]
    fn valid_role_arns_round_trip(
        partition in prop::sample::select(vec!["aws", "aws-cn", "aws-us-gov"]),
        account in "[0-9]{12}",
        path in prop::collection::vec("[a-zA-Z0-9_-]{1,8}", 0..3),
        name in "[a-zA-Z0-9+=,.@_-]{1,64}",
    ) {
        let path: String = path.iter().map(|p| format!("{p}/")).collect();
        let text = format!("arn:{partition}:iam::{account}:role/{path}{name}");
        let arn = RoleArn::parse(&text).unwrap();
        prop_assert_eq!(arn.to_string(), text);
        prop_assert_eq!(arn.name(), name.as_str());
    }

    #[test]
    fn parsers_never_panic(s in "\\PC{0,80}") {
        let _ = RoleArn::parse(&s);
        let _ = Issuer::parse(&s);
        let _ = OidcProviderArn::parse(&s);
        let _ = PolicyDocument::parse(&s);
    }

    #[test]
    fn diagnose_never_panics(
        annotations in prop::collection::btree_map("[ -~]{0,30}", "\\PC{0,40}", 0..4),
        role_arn in prop::option::of("arn:aws:iam::[0-9]{11,12}:role/[ -~]{0,12}"),
        policy in "\\PC{0,120}",
    ) {
        let mut annotations = annotations;
        if let Some(arn) = role_arn {
            annotations.insert("eks.amazonaws.com/role-arn".to_string(), arn);
        }
        let sa = ServiceAccount { namespace: "ns".into(), name: "sa".into(), annotations, ..Default::default() };
        let mut facts = Facts::for_service_account(sa);
        facts.issuer = Fact::Known(Issuer::parse(ISSUER).unwrap());
        facts.role = Fact::Known(Some(Role { trust_policy: policy }));
        facts.oidc_providers = Fact::Known(Vec::new());
        let report = diagnose(&facts);
        prop_assert!(report.conditions.len() >= 5);
    }
}
