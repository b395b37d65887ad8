//! IAM policy documents as IAM accepts them: parsed from raw or URL-encoded JSON into a typed model.

use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};
use thiserror::Error;

use crate::condition::{Condition, Operator};

/// Why a document is not a usable IAM policy. `at` is a JSON path such as `Statement[1].Effect`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    /// The document, once decoded, is not valid JSON.
    #[error("the document is not valid JSON ({detail}){hint}")]
    NotJson {
        /// The JSON parser's message.
        detail: String,
        /// Advice appended when the document does not start with `{`; empty otherwise.
        hint: &'static str,
    },
    /// The URL-encoded document decodes to bytes that are not UTF-8.
    #[error("the URL-encoded document does not decode to UTF-8")]
    BadEncoding,
    #[error("{at}: {problem}")]
    /// The JSON is not a valid policy.
    Invalid {
        /// Where, e.g. `Statement[1].Effect`.
        at: String,
        /// What is wrong, and the fix.
        problem: String,
    },
}

fn invalid(at: impl Into<String>, problem: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        at: at.into(),
        problem: problem.into(),
    }
}

/// Allow or Deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Grants when it matches, unless a Deny matches too.
    Allow,
    /// Refuses when it matches, whatever allows.
    Deny,
}

/// The principals a statement names: `"*"` or typed lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principals {
    /// `"*"` (or `{"AWS": "*"}`): anyone.
    Any,
    /// `{"Federated": [...], "AWS": [...], ...}`.
    Typed(Vec<(String, Vec<String>)>),
}

impl Principals {
    /// The values listed under one principal type, e.g. `Federated`.
    pub fn of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let typed = match self {
            Principals::Any => None,
            Principals::Typed(t) => Some(t),
        };
        typed
            .into_iter()
            .flatten()
            .filter(move |(k, _)| k == kind)
            .flat_map(|(_, v)| v.iter().map(String::as_str))
    }
}

/// `Action` or `NotAction`, each a list of patterns with `*` and `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionSpec {
    /// The statement covers these actions.
    Action(Vec<String>),
    /// The statement covers every action except these.
    NotAction(Vec<String>),
}

/// One statement of a policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// Position in the document, from 0.
    pub index: usize,
    /// The `Sid`, if any.
    pub sid: Option<String>,
    /// Allow or Deny.
    pub effect: Effect,
    /// Whom it applies to (trust policies do not allow `NotPrincipal`).
    pub principal: Principals,
    /// What it applies to.
    pub action: ActionSpec,
    /// Every condition, flattened: operator × key with its values.
    pub conditions: Vec<Condition>,
}

impl Statement {
    /// `statement 2 ("AllowS3Reader")`: how messages name a statement.
    pub fn label(&self) -> String {
        match &self.sid {
            Some(sid) if !sid.is_empty() => format!("statement {} ({sid:?})", self.index + 1),
            _ => format!("statement {}", self.index + 1),
        }
    }
}

/// A parsed policy document.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDocument {
    /// `Version`, when given.
    pub version: Option<String>,
    /// The statements in document order.
    pub statements: Vec<Statement>,
}

impl PolicyDocument {
    /// Parses a trust policy given raw or URL-encoded, as `GetRole` returns it.
    pub fn parse(text: &str) -> Result<PolicyDocument, PolicyError> {
        let decoded = decode(text)?;
        let value: Value = serde_json::from_str(&decoded).map_err(|e| PolicyError::NotJson {
            detail: e.to_string(),
            hint: if decoded.trim_start().starts_with('{') {
                ""
            } else {
                "; expected a JSON object, raw or URL-encoded"
            },
        })?;
        PolicyDocument::from_value(&value)
    }

    /// Interprets an already parsed JSON value.
    pub fn from_value(value: &Value) -> Result<PolicyDocument, PolicyError> {
        let obj = value
            .as_object()
            .ok_or_else(|| invalid("(document)", "a policy must be a JSON object"))?;
        reject_unknown_keys(obj, DOCUMENT_KEYS, "(document)")?;
        let version = match obj.get("Version") {
            None => None,
            Some(Value::String(v)) if v == "2012-10-17" || v == "2008-10-17" => Some(v.clone()),
            Some(other) => {
                return Err(invalid(
                    "Version",
                    format!("expected \"2012-10-17\", found {other}"),
                ))
            }
        };
        let statements = match obj.get("Statement") {
            None => {
                return Err(invalid(
                    "Statement",
                    "missing; a policy needs at least one statement",
                ))
            }
            Some(Value::Array(items)) if items.is_empty() => {
                return Err(invalid(
                    "Statement",
                    "empty; a policy needs at least one statement",
                ))
            }
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| parse_statement(i, v, &format!("Statement[{i}]")))
                .collect::<Result<Vec<_>, _>>()?,
            Some(single) => vec![parse_statement(0, single, "Statement")?],
        };
        Ok(PolicyDocument {
            version,
            statements,
        })
    }
}

/// Decodes a URL-encoded document; raw JSON passes through.
fn decode(text: &str) -> Result<String, PolicyError> {
    let trimmed = text.trim();
    if trimmed.starts_with('{') || !trimmed.contains('%') {
        return Ok(trimmed.to_string());
    }
    percent_decode_str(trimmed)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| PolicyError::BadEncoding)
}

fn parse_statement(index: usize, value: &Value, at: &str) -> Result<Statement, PolicyError> {
    let obj = value
        .as_object()
        .ok_or_else(|| invalid(at, "a statement must be a JSON object"))?;
    reject_unknown_keys(obj, STATEMENT_KEYS, at)?;
    let sid = match obj.get("Sid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(invalid(
                format!("{at}.Sid"),
                format!("expected a string, found {other}"),
            ))
        }
    };
    let effect = match obj.get("Effect") {
        Some(Value::String(e)) if e == "Allow" => Effect::Allow,
        Some(Value::String(e)) if e == "Deny" => Effect::Deny,
        Some(other) => {
            return Err(invalid(
                format!("{at}.Effect"),
                format!("expected \"Allow\" or \"Deny\" (case-sensitive), found {other}"),
            ))
        }
        None => {
            return Err(invalid(
                format!("{at}.Effect"),
                "missing; set \"Allow\" or \"Deny\"",
            ))
        }
    };
    let principal = match (obj.get("Principal"), obj.get("NotPrincipal")) {
        (_, Some(_)) => {
            return Err(invalid(
                format!("{at}.NotPrincipal"),
                "IAM role trust policies do not support NotPrincipal; name the provider in Principal.Federated",
            ))
        }
        (Some(p), None) => parse_principals(p, &format!("{at}.Principal"))?,
        (None, None) => {
            return Err(invalid(
                at,
                "has no Principal; a trust policy statement must name who may assume the role",
            ))
        }
    };
    let action = match (obj.get("Action"), obj.get("NotAction")) {
        (Some(a), None) => ActionSpec::Action(string_list(a, &format!("{at}.Action"))?),
        (None, Some(a)) => ActionSpec::NotAction(string_list(a, &format!("{at}.NotAction"))?),
        (Some(_), Some(_)) => return Err(invalid(at, "has both Action and NotAction; keep one")),
        (None, None) => {
            return Err(invalid(
                at,
                "has no Action; add \"Action\": \"sts:AssumeRoleWithWebIdentity\"",
            ))
        }
    };
    let conditions = match obj.get("Condition") {
        None => Vec::new(),
        Some(Value::Object(block)) => parse_conditions(block, &format!("{at}.Condition"))?,
        Some(other) => {
            return Err(invalid(
                format!("{at}.Condition"),
                format!("expected an object of operators, found {other}"),
            ))
        }
    };
    Ok(Statement {
        index,
        sid,
        effect,
        principal,
        action,
        conditions,
    })
}

const DOCUMENT_KEYS: &[&str] = &["Version", "Id", "Statement"];
const STATEMENT_KEYS: &[&str] = &[
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Condition",
];
const PRINCIPAL_TYPES: &[&str] = &["AWS", "Federated", "Service", "CanonicalUser"];

/// IAM refuses documents with keys it does not know (`Conditions`, `Resource` in a trust policy);
/// ignoring them would turn a rejected document into a verdict.
fn reject_unknown_keys(
    obj: &Map<String, Value>,
    known: &[&str],
    at: &str,
) -> Result<(), PolicyError> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(key) => Err(invalid(
            format!("{at}.{key}"),
            format!("IAM does not accept {key:?} here{}", nearest(key, known)),
        )),
    }
}

fn nearest(found: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|k| {
            (
                strsim::damerau_levenshtein(&found.to_lowercase(), &k.to_lowercase()),
                k,
            )
        })
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, k)| format!("; did you mean {k:?}?"))
        .unwrap_or_else(|| format!("; expected one of {known:?}"))
}

fn parse_principals(value: &Value, at: &str) -> Result<Principals, PolicyError> {
    match value {
        Value::String(s) if s == "*" => Ok(Principals::Any),
        Value::Object(map) => {
            reject_unknown_keys(map, PRINCIPAL_TYPES, at)?;
            let mut typed = Vec::with_capacity(map.len());
            for (kind, v) in map {
                let values = string_list(v, &format!("{at}.{kind}"))?;
                if kind == "AWS" && values.iter().any(|v| v == "*") {
                    return Ok(Principals::Any);
                }
                typed.push((kind.clone(), values));
            }
            Ok(Principals::Typed(typed))
        }
        other => Err(invalid(
            at,
            format!("expected \"*\" or an object such as {{\"Federated\": \"<provider ARN>\"}}, found {other}"),
        )),
    }
}

/// A string or an array of strings; IAM also takes numbers and booleans and reads them as text.
fn string_list(value: &Value, at: &str) -> Result<Vec<String>, PolicyError> {
    match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| scalar(v, &format!("{at}[{i}]")))
            .collect(),
        other => Ok(vec![scalar(other, at)?]),
    }
}

fn scalar(value: &Value, at: &str) -> Result<String, PolicyError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(invalid(at, format!("expected a string, found {other}"))),
    }
}

fn parse_conditions(block: &Map<String, Value>, at: &str) -> Result<Vec<Condition>, PolicyError> {
    let mut out = Vec::new();
    for (op_name, keys) in block {
        let op_at = format!("{at}.{op_name}");
        let operator = Operator::parse(op_name).map_err(|e| invalid(&op_at, e.to_string()))?;
        let keys = keys.as_object().ok_or_else(|| {
            invalid(
                &op_at,
                format!("expected an object of condition keys, found {keys}"),
            )
        })?;
        for (key, values) in keys {
            out.push(Condition {
                operator: operator.clone(),
                key: key.clone(),
                values: string_list(values, &format!("{op_at}.{key}"))?,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/X"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEquals":{"oidc.eks.us-east-1.amazonaws.com/id/X:sub":"system:serviceaccount:a:b"}}}]}"#;

    #[test]
    fn accepts_raw_and_url_encoded_documents() {
        let encoded: String =
            percent_encoding::utf8_percent_encode(RAW, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        assert!(encoded.starts_with("%7B"));
        assert_eq!(
            PolicyDocument::parse(RAW).unwrap(),
            PolicyDocument::parse(&encoded).unwrap()
        );
    }

    #[test]
    fn accepts_iam_shorthands() {
        let doc = PolicyDocument::parse(
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":["sts:*"],
                "Condition":{"StringLike":{"k":["a","b"]},"Bool":{"flag":true}}}}"#,
        )
        .unwrap();
        let st = &doc.statements[0];
        assert_eq!(st.principal, Principals::Any);
        assert_eq!(st.action, ActionSpec::Action(vec!["sts:*".into()]));
        assert_eq!(st.conditions.len(), 2);
        assert!(st.conditions.iter().any(|c| c.values == ["true"]));
        let aws_star = PolicyDocument::parse(
            r#"{"Statement":[{"Effect":"Deny","Principal":{"AWS":"*"},"NotAction":"iam:*"}]}"#,
        )
        .unwrap();
        assert_eq!(aws_star.statements[0].principal, Principals::Any);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("not json", "not valid JSON"),
            (r#"{"Statement":[]}"#, "Statement: empty"),
            (
                r#"{"Statement":[{"Effect":"allow","Principal":"*","Action":"x"}]}"#,
                "Statement[0].Effect",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"x"}}"#,
                "has no Principal",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*"}}"#,
                "has no Action",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"x","Condition":{"StringEqual":{"k":"v"}}}}"#,
                "Statement.Condition.StringEqual",
            ),
            (r#"{"Version":"2020-01-01","Statement":{}}"#, "Version"),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"x","Conditions":{}}}"#,
                "Statement.Conditions: IAM does not accept \"Conditions\" here; did you mean \"Condition\"?",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":{"federated":"x"},"Action":"x"}}"#,
                "did you mean \"Federated\"?",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","NotPrincipal":{"AWS":"x"},"Action":"x"}}"#,
                "do not support NotPrincipal",
            ),
        ];
        for (doc, expected) in cases {
            let err = PolicyDocument::parse(doc).unwrap_err().to_string();
            assert!(err.contains(expected), "{doc} -> {err}");
        }
    }
}
