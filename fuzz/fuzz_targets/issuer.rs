//! Issuer normalisation: never panics, and is idempotent.
#![no_main]

use irsa_core::Issuer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| {
    if let Ok(issuer) = Issuer::parse(data) {
        let again = Issuer::parse(&issuer.url()).expect("a normalised issuer parses");
        assert_eq!(again, issuer);
    }
});
