//! Role and provider ARN parsing: never panics, and what parses prints back unchanged.
#![no_main]

use irsa_core::{OidcProviderArn, RoleArn};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| {
    if let Ok(arn) = RoleArn::parse(data) {
        assert_eq!(arn.to_string(), data);
    }
    if let Ok(arn) = OidcProviderArn::parse(data) {
        assert_eq!(arn.to_string(), data);
    }
});
