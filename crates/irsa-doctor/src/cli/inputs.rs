//! Reading the files `lint` is given: ServiceAccount manifests and role trust policies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use irsa_core::manifest::{service_accounts_in, ManifestError};
use irsa_core::{RoleArn, RoleArnError, ServiceAccount};
use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

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
    /// A document in the file is neither YAML nor JSON.
    #[error("{path}: document {document}: invalid YAML or JSON: {detail}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The document's position in the file, from 1.
        document: usize,
        /// The parser's message.
        detail: String,
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

fn read(path: &Path) -> Result<String, InputError> {
    std::fs::read_to_string(path).map_err(|source| InputError::Read {
        path: path.to_path_buf(),
        source,
    })
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
    let text = read(path)?;
    let lines = manifest_lines::service_account_name_lines(&text);
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
        let value = Value::deserialize(doc).map_err(|e| InputError::Syntax {
            path: path.to_path_buf(),
            document: i + 1,
            detail: e.to_string(),
        })?;
        let accounts = service_accounts_in(
            &value,
            &format!("{}, document {}", path.display(), i + 1),
            namespace,
        )?;
        for (j, account) in accounts.into_iter().enumerate() {
            // The second parser walked the same documents in the same order; a name that does
            // not agree (an alias, a document it split differently) leaves the line unknown
            // rather than pointing at the wrong one.
            let line = lines
                .get(i)
                .and_then(|doc| doc.get(j))
                .and_then(|found| found.as_ref())
                .filter(|(name, _)| *name == account.name)
                .map(|(_, line)| *line);
            out.push(LocatedServiceAccount {
                account,
                location: SourceLocation {
                    path: path.to_path_buf(),
                    line,
                },
            });
        }
    }
    Ok(out)
}

/// Every Pod and pod template (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob) in a
/// YAML or JSON file of one or more documents (`kind: List` included); `namespace` is used for
/// manifests that set none.
pub fn read_workloads(
    path: &Path,
    namespace: &str,
) -> Result<Vec<irsa_core::workloads::Workload>, InputError> {
    let text = read(path)?;
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
        let value = Value::deserialize(doc).map_err(|e| InputError::Syntax {
            path: path.to_path_buf(),
            document: i + 1,
            detail: e.to_string(),
        })?;
        out.extend(irsa_core::workloads::workloads_in(&value, namespace));
    }
    Ok(out)
}

/// Lines of `metadata.name` in manifests. serde's YAML parser keeps no positions, so the text is
/// walked a second time with yaml-rust2's event parser, whose every event carries its line.
mod manifest_lines {
    use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
    use yaml_rust2::scanner::Marker;

    /// A YAML node with the line of each scalar.
    enum Node {
        Scalar(String, usize),
        Sequence(Vec<Node>),
        /// Keys and values, alternating.
        Mapping(Vec<Node>),
        /// An alias: its target is not followed.
        Alias,
    }

    impl Node {
        fn get(&self, key: &str) -> Option<(&Node, &Node)> {
            let Node::Mapping(items) = self else {
                return None;
            };
            items.chunks(2).find_map(|pair| match pair {
                [k @ Node::Scalar(s, _), v] if s == key => Some((k, v)),
                _ => None,
            })
        }

        fn scalar(&self) -> Option<(&str, usize)> {
            match self {
                Node::Scalar(s, line) => Some((s, *line)),
                _ => None,
            }
        }
    }

    #[derive(Default)]
    struct Builder {
        documents: Vec<Node>,
        open: Vec<Node>,
    }

    impl Builder {
        fn add(&mut self, node: Node) {
            match self.open.last_mut() {
                Some(Node::Sequence(items) | Node::Mapping(items)) => items.push(node),
                _ => self.open.push(node),
            }
        }
    }

    impl MarkedEventReceiver for Builder {
        fn on_event(&mut self, event: Event, mark: Marker) {
            match event {
                Event::Scalar(value, ..) => self.add(Node::Scalar(value, mark.line())),
                Event::Alias(_) => self.add(Node::Alias),
                Event::SequenceStart(..) => self.open.push(Node::Sequence(Vec::new())),
                Event::MappingStart(..) => self.open.push(Node::Mapping(Vec::new())),
                Event::SequenceEnd | Event::MappingEnd => {
                    if let Some(node) = self.open.pop() {
                        self.add(node);
                    }
                }
                Event::DocumentEnd => {
                    let root = self.open.pop().unwrap_or(Node::Alias);
                    self.open.clear();
                    self.documents.push(root);
                }
                Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart => {}
            }
        }
    }

    /// Per document, per ServiceAccount in the order irsa-core's `service_accounts_in` reads
    /// them (`kind: List` flattened): its name and the line of `name:`. Empty when the text does
    /// not parse: lines are then unknown, and serde's parser reports the error.
    pub(super) fn service_account_name_lines(text: &str) -> Vec<Vec<Option<(String, usize)>>> {
        let mut builder = Builder::default();
        if Parser::new_from_str(text).load(&mut builder, true).is_err() {
            return Vec::new();
        }
        builder
            .documents
            .iter()
            .map(|doc| {
                let mut found = Vec::new();
                collect(doc, &mut found);
                found
            })
            .collect()
    }

    fn collect(node: &Node, out: &mut Vec<Option<(String, usize)>>) {
        let kind = node
            .get("kind")
            .and_then(|(_, v)| v.scalar())
            .map(|(k, _)| k);
        match kind {
            Some("ServiceAccount") => out.push(
                node.get("metadata")
                    .and_then(|(_, meta)| meta.get("name"))
                    .and_then(|(key, value)| {
                        Some((value.scalar()?.0.to_string(), key.scalar()?.1))
                    }),
            ),
            Some(k) if k == "List" || k.ends_with("List") => {
                if let Some((_, Node::Sequence(items))) = node.get("items") {
                    for item in items {
                        collect(item, out);
                    }
                }
            }
            _ => {}
        }
    }
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
    use super::manifest_lines::service_account_name_lines;

    fn found(name: &str, line: usize) -> Option<(String, usize)> {
        Some((name.to_string(), line))
    }

    #[test]
    fn name_lines_follow_documents_lists_and_flow_style() {
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
        assert_eq!(
            service_account_name_lines(text),
            vec![
                vec![found("first", 6)],
                vec![],
                vec![found("second", 16), found("third", 23)],
            ]
        );
    }

    #[test]
    fn name_lines_in_json() {
        let text =
            "{\n  \"kind\": \"ServiceAccount\",\n  \"metadata\": {\n    \"name\": \"sa\"\n  }\n}\n";
        assert_eq!(service_account_name_lines(text), vec![vec![found("sa", 4)]]);
    }
}
