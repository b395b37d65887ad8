//! Reading the files `lint` is given: ServiceAccount manifests, workloads (with the ConfigMaps
//! and Secrets their `envFrom` names), and role trust policies. Every file is bounded in size
//! before it is read and parsed within bounds ([`yaml`]); workloads are checked for shape
//! ([`shape`]) before the audit reads them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use irsa_core::manifest::{service_accounts_in, ManifestError};
use irsa_core::workloads::{env_sources_in, workloads_in, EnvSources, Workload};
use irsa_core::{RoleArn, RoleArnError, ServiceAccount};
use serde_json::Value;
use thiserror::Error;

pub mod shape;
pub mod yaml;

use yaml::{YamlError, MAX_INPUT_BYTES};

/// Why an input file cannot be used. Every message names the file; the underlying error is the
/// `source`, which `{:#}` prints after it (so the message does not repeat it).
#[derive(Debug, Error)]
pub enum InputError {
    /// The file could not be read.
    #[error("{path}: cannot read")]
    Read {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The file is larger than one input may be.
    #[error("{path}: {bytes} bytes, more than the {MAX_INPUT_BYTES} one input may have; split it")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// A document in the file is not usable YAML or JSON.
    #[error("{path}: document {document}: {problem}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The document's position in the file, from 1.
        document: usize,
        /// What is wrong with it.
        problem: YamlError,
    },
    /// A workload, ConfigMap or Secret has a field of the wrong shape, or a misspelled one.
    #[error("{path}: document {document}: {object}: {field}{line}: {problem}", line = .line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Shape {
        /// The file.
        path: PathBuf,
        /// The document's position in the file, from 1.
        document: usize,
        /// The object, e.g. `Deployment shop/api`.
        object: String,
        /// The field's path in the document.
        field: String,
        /// Its line, when known.
        line: Option<usize>,
        /// What is wrong and what was expected.
        problem: String,
    },
    /// A ServiceAccount manifest cannot be read as one.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The file is not `aws iam get-role` output, or lacks part of it.
    #[error("{path}: not the JSON `aws iam get-role` prints ({detail}); for a bare trust policy pass --role ROLE_ARN={path}")]
    NotGetRole {
        /// The file.
        path: PathBuf,
        /// What is missing.
        detail: String,
    },
    /// `Role.Arn` in `aws iam get-role` output is not a role ARN.
    #[error("{path}: Role.Arn {found:?} is not a role ARN")]
    BadGetRoleArn {
        /// The file.
        path: PathBuf,
        /// The ARN as given.
        found: String,
        /// Why it is not a role ARN.
        source: RoleArnError,
    },
    /// The ARN of a `--role ROLE_ARN=FILE` argument is not a role ARN.
    #[error("--role {spec}")]
    BadRoleArn {
        /// The argument as given.
        spec: String,
        /// Why it is not a role ARN.
        source: RoleArnError,
    },
    /// A `--role` argument is an ARN without `=FILE`.
    #[error("--role {spec}: expected ROLE_ARN=FILE (or FILE holding `aws iam get-role` output)")]
    ArnWithoutFile {
        /// The argument as given.
        spec: String,
    },
    /// The file of a `--role ROLE_ARN=FILE` argument holds `aws iam get-role` output for another role.
    #[error("--role {spec}: {path} holds the role {found}, not {expected}")]
    RoleArnDisagrees {
        /// The argument as given.
        spec: String,
        /// The file.
        path: PathBuf,
        /// The role ARN in the file.
        found: String,
        /// The role ARN in the argument.
        expected: String,
    },
    /// Two inputs give the trust policy of the same role.
    #[error("the trust policy of {arn} is given twice ({first} and {second})")]
    DuplicateRole {
        /// The role's ARN.
        arn: String,
        /// The file given first.
        first: PathBuf,
        /// The file given second.
        second: PathBuf,
    },
}

/// The text of a file, refused before it is read when it is larger than one input may be.
fn read(path: &Path) -> Result<String, InputError> {
    let io = |source| InputError::Read {
        path: path.to_path_buf(),
        source,
    };
    let bytes = std::fs::metadata(path).map_err(io)?.len();
    if bytes > MAX_INPUT_BYTES as u64 {
        return Err(InputError::TooLarge {
            path: path.to_path_buf(),
            bytes,
        });
    }
    std::fs::read_to_string(path).map_err(io)
}

/// The documents of a file, parsed within bounds.
fn documents(path: &Path) -> Result<Vec<yaml::Document>, InputError> {
    let text = read(path)?;
    yaml::parse(&text).map_err(|(document, problem)| InputError::Yaml {
        path: path.to_path_buf(),
        document,
        problem,
    })
}

/// Each object of a document with its path prefix: the document itself, or the items of a
/// `kind: List` (nested ones too), as `items[3].`.
fn objects<'a>(doc: &'a Value, prefix: String, out: &mut Vec<(String, &'a Value)>) {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind == "List" || kind.ends_with("List") {
        for (i, item) in doc
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            objects(item, format!("{prefix}items[{i}]."), out);
        }
    } else {
        out.push((prefix, doc));
    }
}

/// `Deployment shop/api`, in messages.
fn object_name(doc: &Value, default_namespace: &str) -> String {
    let text = |p: &str| doc.pointer(p).and_then(Value::as_str);
    format!(
        "{} {}/{}",
        text("/kind").unwrap_or("object"),
        text("/metadata/namespace").unwrap_or(default_namespace),
        text("/metadata/name").unwrap_or("(no name)")
    )
}

/// Where a ServiceAccount was read: what `lint --format sarif|github` points findings at.
/// (irsa-core's ServiceAccount knows nothing of files; the mapping stays here.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLocation {
    /// The file, as given on the command line.
    pub path: PathBuf,
    /// The line, from 1, of the ServiceAccount's `metadata.name`, when it could be found.
    pub line: Option<usize>,
}

/// A ServiceAccount and where it was read.
#[derive(Debug, Clone)]
pub struct LocatedServiceAccount {
    /// The ServiceAccount.
    pub account: ServiceAccount,
    /// Its file and line.
    pub location: SourceLocation,
}

/// Every ServiceAccount in a YAML or JSON file of one or more documents, with the line of each;
/// `namespace` is used for manifests that set none.
pub fn read_service_accounts(
    path: &Path,
    namespace: &str,
) -> Result<Vec<LocatedServiceAccount>, InputError> {
    let mut out = Vec::new();
    for (i, doc) in documents(path)?.iter().enumerate() {
        let at = format!("{}, document {}", path.display(), i + 1);
        let mut found = Vec::new();
        objects(&doc.value, String::new(), &mut found);
        for (prefix, object) in found {
            for account in service_accounts_in(object, &at, namespace)? {
                let line = doc.line(&format!("{prefix}metadata.name"));
                out.push(LocatedServiceAccount {
                    account,
                    location: SourceLocation {
                        path: path.to_path_buf(),
                        line,
                    },
                });
            }
        }
    }
    Ok(out)
}

/// What a file of workloads holds for the audit.
#[derive(Debug, Default)]
pub struct WorkloadFile {
    /// Every Pod and pod template (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob).
    pub workloads: Vec<Workload>,
    /// The key names of its ConfigMaps and Secrets, for `envFrom`.
    pub env_sources: EnvSources,
    /// Fields the API types do not know, ignored: said on standard error.
    pub warnings: Vec<String>,
}

/// Every Pod and pod template in a YAML or JSON file of one or more documents (`kind: List`
/// included), checked for shape, and the key names of its ConfigMaps and Secrets; `namespace` is
/// used for manifests that set none.
pub fn read_workloads(path: &Path, namespace: &str) -> Result<WorkloadFile, InputError> {
    let mut file = WorkloadFile::default();
    for (i, doc) in documents(path)?.iter().enumerate() {
        let mut found = Vec::new();
        objects(&doc.value, String::new(), &mut found);
        for (prefix, object) in found {
            let kind = object
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let checked = shape::check(kind, object, &prefix);
            let name = || object_name(object, namespace);
            if let Some(e) = checked.error {
                return Err(InputError::Shape {
                    path: path.to_path_buf(),
                    document: i + 1,
                    object: name(),
                    line: doc.line(&e.field),
                    field: e.field,
                    problem: e.problem,
                });
            }
            for w in checked.unknown {
                let line = doc
                    .line(&w.field)
                    .map(|l| format!(" (line {l})"))
                    .unwrap_or_default();
                file.warnings.push(format!(
                    "{}: document {}: {}: {}{line}: {}",
                    path.display(),
                    i + 1,
                    name(),
                    w.field,
                    w.problem
                ));
            }
            file.workloads.extend(workloads_in(object, namespace));
            env_sources_in(object, namespace, &mut file.env_sources);
        }
    }
    Ok(file)
}

/// The key names of the ConfigMaps and Secrets in a file of manifests (values are not kept).
pub fn read_env_sources(path: &Path, namespace: &str) -> Result<EnvSources, InputError> {
    let mut sources = EnvSources::new();
    for doc in documents(path)? {
        env_sources_in(&doc.value, namespace, &mut sources);
    }
    Ok(sources)
}

/// A role's trust policy and the file it came from.
#[derive(Debug, Clone)]
pub struct RoleInput {
    /// The trust policy text, raw or URL-encoded JSON, handed to the engine as is.
    pub trust_policy: String,
    /// Where it came from.
    pub source: PathBuf,
}

/// Trust policies by role ARN.
#[derive(Debug, Default)]
pub struct Roles {
    by_arn: BTreeMap<RoleArn, RoleInput>,
}

impl Roles {
    /// Adds one `--role` argument: `ROLE_ARN=FILE`, or `FILE` holding `aws iam get-role` output.
    pub fn add_spec(&mut self, spec: &str) -> Result<(), InputError> {
        match spec.strip_prefix("arn:").and(spec.rsplit_once('=')) {
            Some((arn, file)) => {
                let arn = RoleArn::parse(arn).map_err(|source| InputError::BadRoleArn {
                    spec: spec.to_string(),
                    source,
                })?;
                let path = PathBuf::from(file);
                let (found, trust_policy) = policy_file(&path)?;
                if let Some(found) = found.filter(|f| *f != arn) {
                    return Err(InputError::RoleArnDisagrees {
                        spec: spec.to_string(),
                        path,
                        found: found.to_string(),
                        expected: arn.to_string(),
                    });
                }
                self.insert(arn, trust_policy, path)
            }
            None if spec.starts_with("arn:") => Err(InputError::ArnWithoutFile {
                spec: spec.to_string(),
            }),
            None => {
                let path = PathBuf::from(spec);
                match policy_file(&path)? {
                    (Some(arn), trust_policy) => self.insert(arn, trust_policy, path),
                    (None, _) => Err(InputError::NotGetRole {
                        path,
                        detail: "no Role.Arn".to_string(),
                    }),
                }
            }
        }
    }

    /// Adds the trust policy of a role known from elsewhere (`--trust-policy`).
    pub fn add_file_for(&mut self, arn: RoleArn, path: &Path) -> Result<(), InputError> {
        let (_, trust_policy) = policy_file(path)?;
        self.insert(arn, trust_policy, path.to_path_buf())
    }

    fn insert(
        &mut self,
        arn: RoleArn,
        trust_policy: String,
        source: PathBuf,
    ) -> Result<(), InputError> {
        if let Some(first) = self.by_arn.get(&arn) {
            return Err(InputError::DuplicateRole {
                arn: arn.to_string(),
                first: first.source.clone(),
                second: source,
            });
        }
        self.by_arn.insert(
            arn,
            RoleInput {
                trust_policy,
                source,
            },
        );
        Ok(())
    }

    /// The trust policy given for a role.
    pub fn get(&self, arn: &RoleArn) -> Option<&RoleInput> {
        self.by_arn.get(arn)
    }
}

/// Reads a trust policy file: `aws iam get-role` output (role ARN and document), or a bare document.
/// A bare document is returned as text even if it is not valid JSON: judging it is the engine's job.
fn policy_file(path: &Path) -> Result<(Option<RoleArn>, String), InputError> {
    let text = read(path)?;
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(&text) else {
        return Ok((None, text));
    };
    let Some(role) = obj.get("Role") else {
        return Ok((None, text));
    };
    let not_get_role = |detail: &str| InputError::NotGetRole {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    };
    let arn = role
        .get("Arn")
        .and_then(Value::as_str)
        .ok_or_else(|| not_get_role("Role.Arn is missing"))?;
    let arn = RoleArn::parse(arn).map_err(|source| InputError::BadGetRoleArn {
        path: path.to_path_buf(),
        found: arn.to_string(),
        source,
    })?;
    let document = match role.get("AssumeRolePolicyDocument") {
        Some(Value::String(encoded)) => encoded.clone(),
        Some(doc @ Value::Object(_)) => doc.to_string(),
        _ => return Err(not_get_role("Role.AssumeRolePolicyDocument is missing")),
    };
    Ok((Some(arn), document))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn service_account_lines_follow_documents_and_lists() {
        let text = "\
# leading comment
apiVersion: v1
kind: ServiceAccount
metadata:
  namespace: a
  name: first
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: first
---
kind: List
items:
- kind: ServiceAccount
  metadata: {name: \"second\"}
- kind: ConfigMap
  metadata:
    name: cm
- kind: ServiceAccount
  metadata:
    annotations: {}
    name: third
";
        let f = file(text);
        let found: Vec<(String, Option<usize>)> = read_service_accounts(f.path(), "default")
            .unwrap()
            .into_iter()
            .map(|s| (s.account.name, s.location.line))
            .collect();
        assert_eq!(
            found,
            [
                ("first".to_string(), Some(6)),
                ("second".to_string(), Some(16)),
                ("third".to_string(), Some(23))
            ]
        );
        let json = file(
            "{\n  \"kind\": \"ServiceAccount\",\n  \"metadata\": {\n    \"name\": \"sa\"\n  }\n}\n",
        );
        assert_eq!(
            read_service_accounts(json.path(), "default").unwrap()[0]
                .location
                .line,
            Some(4)
        );
    }

    #[test]
    fn a_workload_of_the_wrong_shape_names_file_document_object_field_and_line() {
        let text = "kind: ConfigMap\nmetadata: {name: c}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\n  namespace: shop\nspec:\n  selector: {matchLabels: {app: api}}\n  template:\n    spec:\n      containers:\n      - name: app\n        env:\n          AWS_REGION: us-east-1\n";
        let f = file(text);
        let e = read_workloads(f.path(), "default").unwrap_err().to_string();
        assert!(
            e.contains(
                "document 2: Deployment shop/api: spec.template.spec.containers[0].env (line 15)"
            ),
            "{e}"
        );
        assert!(e.contains(&f.path().display().to_string()), "{e}");
        let dup = file("kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: app\n    env: []\n    env: [{name: A, value: b}]\n");
        let e = read_workloads(dup.path(), "default")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("document 1") && e.contains("\"env\"") && e.contains("line 7"),
            "{e}"
        );
    }
}
