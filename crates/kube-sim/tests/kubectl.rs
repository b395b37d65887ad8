//! `kubectl` — a real client nobody here wrote — against the standalone `kube-sim serve`.
//! Skipped (and said so) when kubectl is not on PATH.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .args(["serve", "--kubelet", "--kubeconfig"])
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The first line says it is serving.
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("serving"), "{line}");
    Server {
        child,
        kubeconfig,
        _dir: dir,
    }
}

fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let (success, out, err) = kubectl(kubeconfig, args, stdin);
    assert!(success, "kubectl {args:?} failed: {err}{out}");
    out
}

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
"#;

#[test]
fn kubectl_works_against_kube_sim() {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: kubectl is not on PATH");
        return;
    }
    let server = serve();
    let kc = server.kubeconfig.as_path();
    ok(
        kc,
        &["create", "-f", "-", "--validate=false"],
        Some("apiVersion: v1\nkind: Namespace\nmetadata: {name: apps}\n"),
    );
    ok(
        kc,
        &["create", "-f", "-", "--validate=false"],
        Some("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: s3-reader, namespace: apps, labels: {team: data}}\n"),
    );
    let yaml = ok(
        kc,
        &[
            "get",
            "serviceaccount",
            "s3-reader",
            "-n",
            "apps",
            "-o",
            "yaml",
        ],
        None,
    );
    assert!(
        yaml.contains("name: s3-reader") && yaml.contains("uid:"),
        "{yaml}"
    );
    let table = ok(kc, &["get", "sa", "-A", "-l", "team=data"], None);
    assert!(
        table.contains("NAMESPACE") && table.contains("apps") && table.contains("s3-reader"),
        "{table}"
    );
    assert!(!table.contains("default "), "the selector filters: {table}");

    // apply (client-side) creates, then patches with a strategic merge.
    let sa = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: applied\n  namespace: apps\n  annotations:\n    eks.amazonaws.com/role-arn: arn:aws:iam::111122223333:role/r\n";
    ok(kc, &["apply", "-f", "-", "--validate=false"], Some(sa));
    ok(
        kc,
        &["apply", "-f", "-", "--validate=false"],
        Some(&sa.replace("role/r", "role/r2")),
    );
    let got = ok(
        kc,
        &[
            "get",
            "sa",
            "applied",
            "-n",
            "apps",
            "-o",
            "jsonpath={.metadata.annotations.eks\\.amazonaws\\.com/role-arn}",
        ],
        None,
    );
    assert_eq!(got, "arn:aws:iam::111122223333:role/r2");
    ok(
        kc,
        &[
            "patch",
            "sa",
            "applied",
            "-n",
            "apps",
            "-p",
            r#"{"metadata":{"labels":{"patched":"yes"}}}"#,
        ],
        None,
    );
    assert!(ok(
        kc,
        &["get", "sa", "-n", "apps", "-l", "patched=yes", "-o", "name"],
        None
    )
    .contains("serviceaccount/applied"));

    // Watch: a line appears when a new object is created.
    let mut watch = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kc)
        .args([
            "get",
            "configmaps",
            "-n",
            "apps",
            "-w",
            "--output-watch-events",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    std::thread::sleep(Duration::from_millis(500));
    ok(
        kc,
        &["create", "-f", "-", "--validate=false"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: watched, namespace: apps}\n"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = false;
    while Instant::now() < deadline {
        match lines.next() {
            Some(Ok(l)) if l.contains("watched") => {
                seen = true;
                break;
            }
            Some(Ok(_)) => {}
            _ => break,
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(seen, "kubectl get -w did not show the new configmap");

    // Pods run (kubelet emulation) and their logs are served.
    ok(
        kc,
        &["create", "-f", "-", "--validate=false"],
        Some("apiVersion: v1\nkind: Pod\nmetadata: {name: hello, namespace: apps}\nspec:\n  containers:\n  - {name: c, image: busybox, command: [sh, -c, 'echo hello from kube-sim']}\n"),
    );
    let mut logs = String::new();
    for _ in 0..100 {
        let (_, out, _) = kubectl(kc, &["logs", "hello", "-n", "apps"], None);
        if out.contains("hello from kube-sim") {
            logs = out;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        logs.contains("hello from kube-sim"),
        "kubectl logs never showed the output"
    );

    // Custom resources after their CRD is applied, with printer columns.
    ok(kc, &["apply", "-f", "-", "--validate=false"], Some(CRD));
    ok(
        kc,
        &["apply", "-f", "-", "--validate=false"],
        Some("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1, namespace: apps}\nspec: {size: 3}\n"),
    );
    let widgets = ok(kc, &["get", "wd", "-n", "apps"], None);
    assert!(
        widgets.contains("SIZE") && widgets.contains("w1") && widgets.contains('3'),
        "{widgets}"
    );

    ok(kc, &["delete", "sa", "applied", "-n", "apps"], None);
    let (found, _, err) = kubectl(kc, &["get", "sa", "applied", "-n", "apps"], None);
    assert!(
        !found && err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
}
