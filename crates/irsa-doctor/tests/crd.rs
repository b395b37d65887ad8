//! The committed `crds/irsacheck.yaml` must be exactly what `irsa-doctor crd` prints, so the CRD
//! users install never drifts from the Rust types the operator reads and writes.

use std::path::Path;
use std::process::Command;

const REGENERATE: &str = "cargo run -p irsa-doctor -- crd > crds/irsacheck.yaml";

#[test]
fn committed_crd_matches_the_rust_types() {
    let output = Command::new(env!("CARGO_BIN_EXE_irsa-doctor"))
        .arg("crd")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "irsa-doctor crd failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let generated = String::from_utf8(output.stdout).unwrap();

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds/irsacheck.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; generate it with `{REGENERATE}`",
            path.display()
        )
    });

    if committed != generated {
        // Point at the first difference: the whole CRD is too long to read in a test failure.
        let difference = committed
            .lines()
            .zip(generated.lines())
            .enumerate()
            .find(|(_, (c, g))| c != g)
            .map(|(i, (c, g))| {
                format!(
                    "first difference at line {}:\n  committed: {c}\n  generated: {g}",
                    i + 1
                )
            })
            .unwrap_or_else(|| {
                format!(
                    "the common lines agree; the committed file has {} lines and {} bytes, the \
                     generated one {} lines and {} bytes (trailing lines or line endings differ)",
                    committed.lines().count(),
                    committed.len(),
                    generated.lines().count(),
                    generated.len()
                )
            });
        panic!(
            "crds/irsacheck.yaml is out of date with the IrsaCheck types; regenerate it from the \
             repository root with `{REGENERATE}` and commit it.\n{difference}"
        );
    }
}
