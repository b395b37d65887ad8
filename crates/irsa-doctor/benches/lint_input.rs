//! `lint` on hostile and large inputs: every input of 1 MiB, whatever its shape, must be answered
//! (findings, or exit 2 naming the problem) within 1 s. Runs the real binary on each input given
//! as `--workload` and as `--service-account`, three times, and prints the slowest run next to the
//! target; exits non-zero when one is missed. `make bench-lint`.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
const TARGET: Duration = Duration::from_secs(1);
const ISSUER: &str = "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";

/// Repeats `unit` (and a tail) up to about 1 MiB.
fn fill(head: &str, unit: impl Fn(usize) -> String, tail: &str) -> String {
    let mut text = head.to_string();
    let mut i = 0;
    while text.len() + tail.len() < MIB {
        text.push_str(&unit(i));
        i += 1;
    }
    text.push_str(tail);
    text
}

fn deployment(i: usize) -> String {
    format!(
        "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n  namespace: shop\nspec:\n  selector:\n    matchLabels: {{app: a{i}}}\n  template:\n    metadata:\n      labels: {{app: a{i}}}\n    spec:\n      serviceAccountName: checkout\n      containers:\n      - name: app\n        image: app:1\n        env:\n        - {{name: LOG_LEVEL, value: info}}\n        envFrom:\n        - configMapRef: {{name: settings}}\n"
    )
}

/// The inputs: name and text.
fn inputs() -> Vec<(&'static str, String)> {
    let block_nesting = fill(
        "",
        |i| {
            let mut doc = format!("---\nkind: ConfigMap\nmetadata: {{name: n{i}}}\ndata:\n");
            for depth in 1..60 {
                doc.push_str(&" ".repeat(depth * 2));
                doc.push_str("a:\n");
            }
            doc
        },
        "",
    );
    let too_deep = {
        let mut doc = String::new();
        let mut depth = 0;
        while doc.len() < MIB {
            doc.push_str(&" ".repeat(depth % 4000));
            doc.push_str("a:\n");
            depth += 1;
        }
        doc
    };
    let env_vars = fill(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop}\nspec:\n  serviceAccountName: checkout\n  containers:\n  - name: app\n    image: app:1\n    env:\n",
        |i| format!("    - {{name: VAR_{i}, value: \"{i}\"}}\n"),
        "",
    );
    let aliases = {
        let mut doc = "base: &b [x, x, x, x, x, x, x, x, x, x]\n".to_string();
        let mut i = 0;
        while doc.len() < MIB {
            doc.push_str(&format!("k{i}: [*b, *b, *b, *b, *b, *b, *b, *b]\n"));
            i += 1;
        }
        doc
    };
    let bomb = {
        let mut doc = "a: &a [x, x, x, x, x, x, x, x, x, x]\n".to_string();
        for i in 0..9 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("l{}", i - 1)
            };
            doc.push_str(&format!(
                "l{i}: &l{i} [{}]\n",
                vec![format!("*{prev}"); 10].join(", ")
            ));
        }
        doc.push_str(&"# padding\n".repeat((MIB - doc.len()) / 10));
        doc
    };
    vec![
        ("1,000 Deployments", fill("", deployment, "")),
        ("one Pod with 20,000 variables", env_vars),
        ("ConfigMaps nested 60 deep", block_nesting),
        ("nesting deeper than the bound", too_deep),
        ("flow nesting [[[[…", "[".repeat(MIB)),
        ("aliases within the budget", aliases),
        ("billion laughs", bomb),
        (
            "many keys in one mapping",
            fill("data:\n", |i| format!("  key{i}: v\n"), ""),
        ),
        (
            "one 1 MiB scalar",
            format!("value: \"{}\"\n", "x".repeat(MIB - 12)),
        ),
        ("200,000 empty documents", "---\n".repeat(MIB / 4)),
        (
            "a duplicate key at the end",
            fill("data:\n", |i| format!("  key{i}: v\n"), "  key0: again\n"),
        ),
        (
            "binary noise",
            (0..MIB)
                .map(|i| char::from(b'!' + (i * 7 % 90) as u8))
                .collect(),
        ),
    ]
}

fn run(bin: &Path, flag: &str, file: &Path, sa: &Path) -> (Duration, i32) {
    let mut cmd = Command::new(bin);
    cmd.args(["lint", "--format", "json", "--issuer", ISSUER]);
    if flag == "--workload" {
        cmd.arg("--service-account").arg(sa);
    }
    cmd.arg(flag).arg(file);
    let started = Instant::now();
    let out = cmd.output().expect("the irsa-doctor binary runs");
    (started.elapsed(), out.status.code().unwrap_or(-1))
}

fn main() -> ExitCode {
    // `cargo bench` passes --bench: three timed runs of the optimised build against the target.
    // `cargo test --all-targets` runs this unoptimised: one run each, its exit status checked
    // (0, 1 or 2: never a crash), its time shown but not held to the target.
    let timed = std::env::args().any(|a| a == "--bench");
    let bin = Path::new(env!("CARGO_BIN_EXE_irsa-doctor"));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sa = dir.path().join("sa.yaml");
    std::fs::write(
        &sa,
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: checkout\n  namespace: shop\n  annotations:\n    eks.amazonaws.com/role-arn: arn:aws:iam::111122223333:role/checkout\n",
    )
    .expect("writing the ServiceAccount");
    println!(
        "{:<34} {:>9} {:<18} {:>10} {:>8}  verdict",
        "input", "bytes", "given as", "slowest", "target"
    );
    let mut missed = 0;
    for (i, (name, text)) in inputs().into_iter().enumerate() {
        let file = dir.path().join(format!("input-{i}.yaml"));
        std::fs::write(&file, &text).expect("writing the input");
        for flag in ["--workload", "--service-account"] {
            let times = if timed { 3 } else { 1 };
            let runs: Vec<(Duration, i32)> =
                (0..times).map(|_| run(bin, flag, &file, &sa)).collect();
            let slowest = runs.iter().map(|(d, _)| *d).max().unwrap_or_default();
            let code = runs[0].1;
            let ok = (slowest <= TARGET || !timed) && (0..=2).contains(&code);
            missed += usize::from(!ok);
            println!(
                "{name:<34} {:>9} {flag:<18} {:>8.3} s {:>6.1} s  {} (exit {code})",
                text.len(),
                slowest.as_secs_f64(),
                TARGET.as_secs_f64(),
                if ok { "ok" } else { "MISSED" }
            );
        }
    }
    if missed > 0 {
        eprintln!("{missed} run(s) missed the target");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
