//! The EKS Pod Identity API stand-in speaks the real wire format: the `aws` CLI (botocore, the
//! same service model the SDK is generated from) creates, lists, describes and deletes
//! associations through it, describes the cluster's issuer, and the webhook's view of which ServiceAccounts are associated
//! follows.

use std::process::Command;

use control_plane::eks::Eks;
use serde_json::Value;

/// `aws eks …` against the stand-in; the parsed JSON output, or a panic with stderr.
fn aws(eks: &Eks, args: &[&str]) -> Result<Value, String> {
    let out = Command::new("aws")
        .arg("eks")
        .args(args)
        .args(["--output", "json"])
        .env("AWS_ENDPOINT_URL_EKS", &eks.url)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_PAGER", "")
        .output()
        .expect("the aws CLI (make venv installs it in .venv/bin)");
    match out.status.success() {
        true => Ok(serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

#[test]
fn the_aws_cli_manages_associations_through_the_stand_in() {
    let eks = Eks::start("local", "123456789012");
    let associated = eks.associated();
    let created = aws(
        &eks,
        &[
            "create-pod-identity-association",
            "--cluster-name",
            "local",
            "--namespace",
            "ledger",
            "--service-account",
            "writer",
            "--role-arn",
            "arn:aws:iam::123456789012:role/ledger",
            "--target-role-arn",
            "arn:aws:iam::210987654321:role/ledger-target",
        ],
    )
    .unwrap();
    let association = &created["association"];
    assert_eq!(association["serviceAccount"], "writer");
    assert_eq!(
        association["targetRoleArn"],
        "arn:aws:iam::210987654321:role/ledger-target"
    );
    assert!(
        association["externalId"]
            .as_str()
            .is_some_and(|id| id.len() == 36),
        "{association}"
    );
    assert!(associated("ledger", "writer"));
    assert!(!associated("ledger", "reader"));

    // One association per ServiceAccount, as EKS allows.
    let again = aws(
        &eks,
        &[
            "create-pod-identity-association",
            "--cluster-name",
            "local",
            "--namespace",
            "ledger",
            "--service-account",
            "writer",
            "--role-arn",
            "arn:aws:iam::123456789012:role/other",
        ],
    )
    .unwrap_err();
    assert!(again.contains("ResourceInUseException"), "{again}");
    aws(
        &eks,
        &[
            "create-pod-identity-association",
            "--cluster-name",
            "local",
            "--namespace",
            "ledger",
            "--service-account",
            "reader",
            "--role-arn",
            "arn:aws:iam::123456789012:role/reader",
        ],
    )
    .unwrap();

    // The CLI follows the one-per-page pagination to the end.
    let listed = aws(
        &eks,
        &["list-pod-identity-associations", "--cluster-name", "local"],
    )
    .unwrap();
    let names: Vec<&str> = listed["associations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["serviceAccount"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["writer", "reader"]);
    let id = association["associationId"].as_str().unwrap();
    let described = aws(
        &eks,
        &[
            "describe-pod-identity-association",
            "--cluster-name",
            "local",
            "--association-id",
            id,
        ],
    )
    .unwrap();
    assert_eq!(
        described["association"]["roleArn"],
        "arn:aws:iam::123456789012:role/ledger"
    );

    aws(
        &eks,
        &[
            "delete-pod-identity-association",
            "--cluster-name",
            "local",
            "--association-id",
            id,
        ],
    )
    .unwrap();
    assert!(!associated("ledger", "writer"));
    let missing = aws(
        &eks,
        &[
            "describe-pod-identity-association",
            "--cluster-name",
            "local",
            "--association-id",
            id,
        ],
    )
    .unwrap_err();
    assert!(missing.contains("ResourceNotFoundException"), "{missing}");
    let other = aws(
        &eks,
        &["list-pod-identity-associations", "--cluster-name", "prod"],
    )
    .unwrap_err();
    assert!(other.contains("ResourceNotFoundException"), "{other}");
}
