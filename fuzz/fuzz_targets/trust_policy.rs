//! Policy parsing and the whole diagnosis over an arbitrary trust policy: never panics.
#![no_main]

use irsa_core::facts::Fact;
use irsa_core::{diagnose, Facts, Issuer, Role, ServiceAccount};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| {
    let sa = ServiceAccount {
        namespace: "reports".into(),
        name: "s3-reader".into(),
        annotations: [(
            "eks.amazonaws.com/role-arn".to_string(),
            "arn:aws:iam::111122223333:role/s3-reader".to_string(),
        )]
        .into(),
        ..ServiceAccount::default()
    };
    let mut facts = Facts::for_service_account(sa);
    facts.issuer = Fact::Known(
        Issuer::parse("https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE").unwrap(),
    );
    facts.role = Fact::Known(Some(Role { trust_policy: data.to_string() }));
    let _ = diagnose(&facts);
});
