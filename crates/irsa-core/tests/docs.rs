//! The troubleshooting guide has exactly one entry per catalogue reason.

use std::collections::BTreeSet;

use irsa_core::Reason;

#[test]
fn troubleshooting_guide_has_one_entry_per_reason() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/troubleshooting.md");
    let guide = std::fs::read_to_string(path).unwrap();
    let headings: Vec<&str> = guide
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(str::trim)
        .collect();
    let unique: BTreeSet<&str> = headings.iter().copied().collect();
    assert_eq!(unique.len(), headings.len(), "a reason has two entries");
    let catalogue: BTreeSet<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    let missing: Vec<_> = catalogue.difference(&unique).collect();
    let unknown: Vec<_> = unique.difference(&catalogue).collect();
    assert!(
        missing.is_empty(),
        "reasons without an entry in docs/troubleshooting.md: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "entries for reasons not in the catalogue: {unknown:?}"
    );
}
