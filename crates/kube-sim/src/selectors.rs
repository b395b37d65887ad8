//! Kubernetes label and field selectors: parsing the `labelSelector` / `fieldSelector` query syntax and matching objects against it.

use std::borrow::Cow;

use serde_json::Value;

/// A parsed label selector; the empty selector matches every object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<LabelRequirement>,
}

/// One comma-separated term; `=`/`==` and `!=` are single-value `in`/`notin`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelRequirement {
    In(String, Vec<String>),
    /// Also true when the key is absent, as in Kubernetes.
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl LabelSelector {
    /// Parses label-selector syntax, e.g. `app=web, tier in (a,b), !legacy`.
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        let requirements = split_label_terms(s)?
            .into_iter()
            .map(parse_label_requirement)
            .collect::<Result<_, _>>()?;
        Ok(LabelSelector { requirements })
    }

    /// Whether an object whose `metadata.labels` is `labels` (absent = no labels) satisfies every requirement.
    pub fn matches(&self, labels: Option<&Value>) -> bool {
        let get = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        let is_in =
            |key: &str, values: &[String]| get(key).is_some_and(|l| values.iter().any(|v| v == l));
        self.requirements.iter().all(|r| match r {
            LabelRequirement::In(key, values) => is_in(key, values),
            LabelRequirement::NotIn(key, values) => !is_in(key, values),
            LabelRequirement::Exists(key) => get(key).is_some(),
            LabelRequirement::DoesNotExist(key) => get(key).is_none(),
        })
    }
}

/// Splits on commas outside parentheses, since `in (a,b)` sets contain commas.
fn split_label_terms(s: &str) -> Result<Vec<&str>, String> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_set = false;
    for (i, c) in s.char_indices() {
        match c {
            '(' if in_set => return Err(format!("invalid label selector {s:?}: nested '('")),
            '(' => in_set = true,
            ')' if !in_set => return Err(format!("invalid label selector {s:?}: unmatched ')'")),
            ')' => in_set = false,
            ',' if !in_set => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_set {
        return Err(format!("invalid label selector {s:?}: unclosed '('"));
    }
    terms.push(&s[start..]);
    let terms: Vec<&str> = terms.into_iter().map(str::trim).collect();
    if terms.iter().any(|t| t.is_empty()) {
        return Err(format!("invalid label selector {s:?}: empty requirement"));
    }
    Ok(terms)
}

fn parse_label_requirement(req: &str) -> Result<LabelRequirement, String> {
    let err = |why: String| format!("invalid label selector requirement {req:?}: {why}");
    if let Some(key) = req.strip_prefix('!') {
        return Ok(LabelRequirement::DoesNotExist(
            label_key(key.trim()).map_err(err)?,
        ));
    }
    if let Some(open) = req.find('(') {
        let (head, set) = req.split_at(open);
        let inner = set
            .strip_prefix('(')
            .and_then(|rest| rest.strip_suffix(')'))
            .ok_or_else(|| err("expected the value set to end the requirement".into()))?;
        let mut words = head.split_whitespace();
        let (key, op) = match (words.next(), words.next(), words.next()) {
            (Some(key), Some(op), None) => (label_key(key).map_err(err)?, op),
            _ => {
                return Err(err(
                    "expected `<key> in (...)` or `<key> notin (...)`".into()
                ))
            }
        };
        // `()` is the set holding only the empty value, as in Kubernetes.
        let values = inner
            .split(',')
            .map(|v| label_value(v.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        return match op {
            "in" => Ok(LabelRequirement::In(key, values)),
            "notin" => Ok(LabelRequirement::NotIn(key, values)),
            other => Err(err(format!("unknown set operator {other:?}"))),
        };
    }
    if let Some(pos) = req.find(['!', '=']) {
        let (key, rest) = req.split_at(pos);
        let key = label_key(key.trim()).map_err(err)?;
        let (negated, value) = if let Some(v) = rest.strip_prefix("!=") {
            (true, v)
        } else if let Some(v) = rest.strip_prefix("==").or_else(|| rest.strip_prefix('=')) {
            (false, v)
        } else {
            return Err(err("expected '=', '==' or '!='".into()));
        };
        let values = vec![label_value(value.trim()).map_err(err)?];
        return Ok(if negated {
            LabelRequirement::NotIn(key, values)
        } else {
            LabelRequirement::In(key, values)
        });
    }
    Ok(LabelRequirement::Exists(label_key(req).map_err(err)?))
}

/// Loose validation of `[prefix/]name`: enough to reject malformed syntax, not a full DNS check.
fn label_key(key: &str) -> Result<String, String> {
    let valid_chars = key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    let parts_ok = key.split('/').count() <= 2 && key.split('/').all(|p| !p.is_empty());
    if key.is_empty() || !valid_chars || !parts_ok {
        return Err(format!("invalid label key {key:?}"));
    }
    Ok(key.to_owned())
}

fn label_value(value: &str) -> Result<String, String> {
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Ok(value.to_owned())
    } else {
        Err(format!("invalid label value {value:?}"))
    }
}

/// A parsed field selector; the empty selector matches every object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldRequirement {
    path: Vec<String>,
    value: String,
    negated: bool,
}

impl FieldSelector {
    /// Parses field-selector syntax, e.g. `metadata.name=web,status.phase!=Running`; `\,`, `\=` and `\\` escape values.
    pub fn parse(s: &str) -> Result<FieldSelector, String> {
        let requirements = split_unescaped(s, ',')
            .into_iter()
            .map(str::trim)
            // Kubernetes skips empty terms in field selectors.
            .filter(|t| !t.is_empty())
            .map(parse_field_requirement)
            .collect::<Result<_, _>>()?;
        Ok(FieldSelector { requirements })
    }

    /// Whether `obj` satisfies every requirement; a missing field compares as the empty string.
    pub fn matches(&self, obj: &Value) -> bool {
        self.requirements
            .iter()
            .all(|r| (field_text(obj, &r.path) == r.value) != r.negated)
    }
}

fn parse_field_requirement(term: &str) -> Result<FieldRequirement, String> {
    let err = |why: &str| format!("invalid field selector requirement {term:?}: {why}");
    let pos = split_unescaped(term, '=')
        .first()
        .map(|head| head.len())
        .filter(|&p| p < term.len())
        .ok_or_else(|| err("expected '=', '==' or '!='"))?;
    let (mut path, rest) = term.split_at(pos);
    let (negated, value) = match path.strip_suffix('!') {
        Some(p) => {
            path = p;
            (true, &rest[1..])
        }
        None => (false, rest.strip_prefix("==").unwrap_or(&rest[1..])),
    };
    let path = path.trim();
    let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
    if segments
        .iter()
        .any(|s| s.is_empty() || s.contains(|c: char| c.is_whitespace() || "\\!=".contains(c)))
    {
        return Err(err("invalid field path"));
    }
    let value = unescape_field_value(value.trim()).map_err(|why| err(&why))?;
    Ok(FieldRequirement {
        path: segments,
        value,
        negated,
    })
}

/// Splits at `sep` characters not preceded by a backslash escape; escapes are kept.
fn split_unescaped(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

fn unescape_field_value(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                _ => return Err("invalid escape sequence in value".into()),
            },
            '=' | ',' => return Err(format!("unescaped {c:?} in value")),
            _ => out.push(c),
        }
    }
    Ok(out)
}

fn field_text<'a>(obj: &'a Value, path: &[String]) -> Cow<'a, str> {
    match path.iter().try_fold(obj, |v, seg| v.get(seg)) {
        None | Some(Value::Null) => Cow::Borrowed(""),
        Some(Value::String(s)) => Cow::Borrowed(s),
        Some(other) => Cow::Owned(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn label_match(selector: &str, labels: Value) -> bool {
        LabelSelector::parse(selector)
            .unwrap_or_else(|e| panic!("{selector:?} should parse: {e}"))
            .matches(Some(&labels))
    }

    fn field_match(selector: &str, obj: &Value) -> bool {
        FieldSelector::parse(selector)
            .unwrap_or_else(|e| panic!("{selector:?} should parse: {e}"))
            .matches(obj)
    }

    #[test]
    fn empty_label_selector_matches_everything() {
        for s in ["", "   "] {
            let sel = LabelSelector::parse(s).unwrap();
            assert_eq!(sel, LabelSelector::default());
            assert!(sel.matches(None));
            assert!(sel.matches(Some(&json!({"a": "b"}))));
        }
    }

    #[test]
    fn equality_operators() {
        let labels = json!({"app": "web", "tier": "front"});
        assert!(label_match("app=web", labels.clone()));
        assert!(label_match("app==web", labels.clone()));
        assert!(!label_match("app=db", labels.clone()));
        assert!(label_match("app!=db", labels.clone()));
        assert!(!label_match("app!=web", labels.clone()));
        assert!(label_match("app=web,tier=front", labels.clone()));
        assert!(!label_match("app=web,tier=back", labels));
    }

    #[test]
    fn not_equal_and_notin_match_absent_keys() {
        let sel = LabelSelector::parse("app!=web").unwrap();
        assert!(sel.matches(None));
        assert!(sel.matches(Some(&json!({"other": "x"}))));
        let sel = LabelSelector::parse("app notin (web,db)").unwrap();
        assert!(sel.matches(None));
        assert!(sel.matches(Some(&json!({"app": "cache"}))));
        assert!(!sel.matches(Some(&json!({"app": "db"}))));
    }

    #[test]
    fn equality_does_not_match_absent_key() {
        let sel = LabelSelector::parse("app=web").unwrap();
        assert!(!sel.matches(None));
        assert!(!sel.matches(Some(&json!({}))));
    }

    #[test]
    fn set_operators() {
        let labels = json!({"env": "prod"});
        assert!(label_match("env in (prod,staging)", labels.clone()));
        assert!(label_match("env in (prod)", labels.clone()));
        assert!(!label_match("env in (dev,staging)", labels.clone()));
        assert!(!label_match("missing in (prod)", labels.clone()));
        assert!(label_match("env notin (dev)", labels.clone()));
        assert!(!label_match("env notin (dev, prod)", labels));
    }

    #[test]
    fn empty_set_means_the_empty_value() {
        assert!(label_match("env in ()", json!({"env": ""})));
        assert!(!label_match("env in ()", json!({"env": "x"})));
        assert!(label_match("env=", json!({"env": ""})));
    }

    #[test]
    fn existence_operators() {
        let labels = json!({"app": "web"});
        assert!(label_match("app", labels.clone()));
        assert!(!label_match("tier", labels.clone()));
        assert!(label_match("!tier", labels.clone()));
        assert!(!label_match("!app", labels.clone()));
        assert!(label_match("! tier", labels));
        assert!(LabelSelector::parse("!x").unwrap().matches(None));
        assert!(!LabelSelector::parse("x").unwrap().matches(None));
    }

    #[test]
    fn whitespace_is_tolerated() {
        let labels = json!({"app": "web", "env": "prod", "tier": "a"});
        assert!(label_match(
            "  app = web ,env   in(prod , dev),  tier != b , !gone ",
            labels
        ));
    }

    #[test]
    fn prefixed_keys_and_dotted_values() {
        let labels = json!({"app.kubernetes.io/name": "my-app_v1.2"});
        assert!(label_match(
            "app.kubernetes.io/name=my-app_v1.2",
            labels.clone()
        ));
        assert!(label_match("app.kubernetes.io/name", labels));
    }

    #[test]
    fn mixed_requirements_all_must_hold() {
        let sel = "app in (web,api),!canary,env!=dev,tier";
        assert!(label_match(
            sel,
            json!({"app": "api", "env": "prod", "tier": "1"})
        ));
        assert!(!label_match(sel, json!({"app": "api", "env": "prod"})));
        assert!(!label_match(
            sel,
            json!({"app": "api", "tier": "1", "canary": "y"})
        ));
        assert!(!label_match(
            sel,
            json!({"app": "api", "tier": "1", "env": "dev"})
        ));
    }

    #[test]
    fn non_string_or_non_object_labels_do_not_panic() {
        let sel = LabelSelector::parse("a=1").unwrap();
        assert!(!sel.matches(Some(&json!({"a": 1}))));
        assert!(!sel.matches(Some(&json!(["a"]))));
        assert!(!sel.matches(Some(&Value::Null)));
    }

    #[test]
    fn invalid_label_selectors_name_the_requirement() {
        let cases = [
            ("app=web,tier in (a,b", "unclosed"),
            ("app)", "unmatched"),
            ("a in ((b))", "nested"),
            ("app=web,", "empty requirement"),
            (",app", "empty requirement"),
            ("app=web,x y", "\"x y\""),
            ("app=web,env within (a)", "\"env within (a)\""),
            ("env in (a) b", "\"env in (a) b\""),
            ("in (a)", "\"in (a)\""),
            ("a=b c", "\"a=b c\""),
            ("a!b", "\"a!b\""),
            ("a===b", "\"a===b\""),
            ("=b", "\"=b\""),
            ("a>1", "\"a>1\""),
            ("!", "\"!\""),
            ("a/b/c", "\"a/b/c\""),
            ("a in (b c)", "\"a in (b c)\""),
        ];
        for (selector, needle) in cases {
            let err = LabelSelector::parse(selector).expect_err(selector);
            assert!(
                err.contains(needle),
                "{selector:?}: error {err:?} lacks {needle:?}"
            );
        }
    }

    fn pod() -> Value {
        json!({
            "metadata": {"name": "web-0", "namespace": "default", "generation": 3},
            "spec": {"serviceAccountName": "sa", "hostNetwork": false},
            "status": {"phase": "Running"}
        })
    }

    #[test]
    fn empty_field_selector_matches_everything() {
        for s in ["", " ", ",", " , "] {
            assert!(field_match(s, &pod()));
            assert_eq!(FieldSelector::parse(s).unwrap(), FieldSelector::default());
        }
    }

    #[test]
    fn field_equality_operators() {
        let p = pod();
        assert!(field_match("metadata.name=web-0", &p));
        assert!(field_match("metadata.name==web-0", &p));
        assert!(!field_match("metadata.name=web-1", &p));
        assert!(field_match("metadata.name!=web-1", &p));
        assert!(!field_match("metadata.name!=web-0", &p));
        assert!(field_match(
            "metadata.namespace=default,status.phase=Running",
            &p
        ));
        assert!(!field_match(
            "metadata.namespace=default,status.phase=Pending",
            &p
        ));
        assert!(field_match(" spec.serviceAccountName = sa ", &p));
    }

    #[test]
    fn missing_field_is_the_empty_string() {
        let p = pod();
        assert!(field_match("spec.nodeName=", &p));
        assert!(!field_match("spec.nodeName!=", &p));
        assert!(!field_match("spec.nodeName=node-1", &p));
        let scheduled = json!({"spec": {"nodeName": "node-1"}});
        assert!(field_match("spec.nodeName!=", &scheduled));
        assert!(field_match("spec.nodeName=node-1", &scheduled));
        assert!(field_match(
            "spec.nodeName=",
            &json!({"spec": {"nodeName": null}})
        ));
        assert!(field_match("a.b.c=", &json!("scalar")));
    }

    #[test]
    fn non_string_scalars_compare_by_json_text() {
        let p = pod();
        assert!(field_match("metadata.generation=3", &p));
        assert!(field_match("spec.hostNetwork=false", &p));
        assert!(field_match("spec.hostNetwork!=true", &p));
    }

    #[test]
    fn event_fields() {
        let event = json!({
            "type": "Warning",
            "reason": "FailedMount",
            "involvedObject": {"kind": "Pod", "name": "web-0", "namespace": "default", "uid": "u-1"},
            "regarding": {"name": "web-0"}
        });
        assert!(field_match(
            "involvedObject.kind=Pod,involvedObject.name=web-0,involvedObject.namespace=default,involvedObject.uid=u-1",
            &event
        ));
        assert!(field_match(
            "type=Warning,reason=FailedMount,regarding.name=web-0",
            &event
        ));
        assert!(!field_match("type=Normal", &event));
    }

    #[test]
    fn escaped_values() {
        let obj = json!({"metadata": {"name": "a,b=c\\d"}});
        assert!(field_match(r"metadata.name=a\,b\=c\\d", &obj));
        assert!(!field_match(r"metadata.name=a\,b", &obj));
    }

    #[test]
    fn invalid_field_selectors_name_the_requirement() {
        let cases = [
            ("metadata.name", "\"metadata.name\""),
            ("status.phase=Running,bogus", "\"bogus\""),
            ("=x", "\"=x\""),
            ("!=x", "\"!=x\""),
            ("a..b=x", "\"a..b=x\""),
            (".a=x", "\".a=x\""),
            ("a b=x", "\"a b=x\""),
            ("a=b=c", "\"a=b=c\""),
            ("a===b", "\"a===b\""),
            (r"a=b\x", r#""a=b\\x""#),
            ("a=b\\", r#""a=b\\""#),
        ];
        for (selector, needle) in cases {
            let err = FieldSelector::parse(selector).expect_err(selector);
            assert!(
                err.contains(needle),
                "{selector:?}: error {err:?} lacks {needle:?}"
            );
        }
    }

    #[test]
    fn non_ascii_input_does_not_panic() {
        let _ = LabelSelector::parse("é=ü,(ß)");
        let _ = LabelSelector::parse("a in (é");
        let _ = FieldSelector::parse("é!=ü,ö==\\é");
        assert!(field_match(
            "metadata.name=naïve",
            &json!({"metadata": {"name": "naïve"}})
        ));
    }
}
