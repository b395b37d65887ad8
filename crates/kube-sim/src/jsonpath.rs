//! The subset of kubectl/CRD JSONPath used by `additionalPrinterColumns`: fields, indexes, `[*]` and equality filters.

use serde_json::Value;

/// Evaluates `path` (e.g. `.status.conditions[?(@.type=="Ready")].status`) against `obj`.
///
/// A path through `[*]` yields an array of every match; otherwise the first match is returned, as
/// kubectl does for printer columns. `None` when nothing matches or the path is not understood.
pub fn eval(path: &str, obj: &Value) -> Option<Value> {
    let steps = parse(path)?;
    let mut nodes = vec![obj];
    let mut wildcard = false;
    for step in &steps {
        nodes = nodes
            .into_iter()
            .flat_map(|node| step.apply(node))
            .collect();
        wildcard |= matches!(step, Step::Wildcard);
    }
    match nodes.as_slice() {
        [] => None,
        _ if wildcard => Some(Value::Array(nodes.into_iter().cloned().collect())),
        [first, ..] => Some((*first).clone()),
    }
}

#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    Wildcard,
    Filter {
        path: Vec<String>,
        literal: String,
        negated: bool,
    },
}

impl Step {
    fn apply<'a>(&self, node: &'a Value) -> Vec<&'a Value> {
        match self {
            Step::Field(name) => node.get(name).into_iter().collect(),
            Step::Index(i) => {
                let Value::Array(items) = node else {
                    return Vec::new();
                };
                // Negative indexes count from the end, as in kubectl.
                let index = if *i < 0 {
                    i64::try_from(items.len())
                        .ok()
                        .and_then(|len| len.checked_add(*i))
                } else {
                    Some(*i)
                };
                index
                    .and_then(|i| usize::try_from(i).ok())
                    .and_then(|i| items.get(i))
                    .into_iter()
                    .collect()
            }
            Step::Wildcard => match node {
                Value::Array(items) => items.iter().collect(),
                Value::Object(map) => map.values().collect(),
                _ => Vec::new(),
            },
            Step::Filter {
                path,
                literal,
                negated,
            } => match node {
                Value::Array(items) => items
                    .iter()
                    .filter(|item| {
                        path.iter()
                            .try_fold(*item, |v, seg| v.get(seg))
                            .is_some_and(|v| (scalar_text(v) == *literal) != *negated)
                    })
                    .collect(),
                _ => Vec::new(),
            },
        }
    }
}

/// Strings compare by content, anything else by its JSON text (so `@.port==80` works).
fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn parse(path: &str) -> Option<Vec<Step>> {
    let path = path.trim();
    // kubectl's `{.a.b}` template form is accepted too.
    let path = path
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(path)
        .trim();
    let path = path.strip_prefix('$').unwrap_or(path);
    // kubectl tolerates a missing leading dot (`metadata.name`).
    let chars: Vec<char> = if path.is_empty() || path.starts_with(['.', '[']) {
        path.chars().collect()
    } else {
        std::iter::once('.').chain(path.chars()).collect()
    };
    let mut parser = Parser { chars, pos: 0 };
    let mut steps = Vec::new();
    while let Some(c) = parser.next() {
        steps.push(match c {
            '.' if parser.eat('*') => Step::Wildcard,
            '.' => Step::Field(parser.identifier()?),
            '[' => parser.bracket()?,
            _ => return None,
        });
    }
    Some(steps)
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> String {
        let mut out = String::new();
        while let Some(c) = self.peek().filter(|&c| keep(c)) {
            out.push(c);
            self.pos += 1;
        }
        out
    }

    /// A dotted name segment; `None` if empty (as in `..`, which is not supported).
    fn identifier(&mut self) -> Option<String> {
        let name = self.take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '/' | ':'));
        (!name.is_empty()).then_some(name)
    }

    /// After `[`: `*`, `?(...)`, a quoted key or an integer index, then `]`.
    fn bracket(&mut self) -> Option<Step> {
        self.skip_whitespace();
        let step = match self.peek()? {
            '*' => {
                self.pos += 1;
                Step::Wildcard
            }
            '?' => {
                self.pos += 1;
                self.filter()?
            }
            '\'' | '"' => Step::Field(self.quoted()?),
            _ => {
                let digits = self.take_while(|c| c.is_ascii_digit() || c == '-');
                Step::Index(digits.parse().ok()?)
            }
        };
        self.skip_whitespace();
        self.eat(']').then_some(step)
    }

    /// After `?`: `(@.a.b == 'literal')` or with `!=`.
    fn filter(&mut self) -> Option<Step> {
        self.skip_whitespace();
        if !self.eat('(') {
            return None;
        }
        self.skip_whitespace();
        if !self.eat('@') {
            return None;
        }
        let mut path = Vec::new();
        while self.eat('.') {
            path.push(self.identifier()?);
        }
        self.skip_whitespace();
        let negated = match (self.next()?, self.next()?) {
            ('=', '=') => false,
            ('!', '=') => true,
            _ => return None,
        };
        self.skip_whitespace();
        let literal = match self.peek()? {
            '\'' | '"' => self.quoted()?,
            _ => Some(self.take_while(|c| !c.is_whitespace() && c != ')'))
                .filter(|l| !l.is_empty())?,
        };
        self.skip_whitespace();
        self.eat(')').then_some(Step::Filter {
            path,
            literal,
            negated,
        })
    }

    /// A single- or double-quoted string; a backslash escapes the next character.
    fn quoted(&mut self) -> Option<String> {
        let quote = self.next()?;
        let mut out = String::new();
        loop {
            match self.next()? {
                '\\' => out.push(self.next()?),
                c if c == quote => return Some(out),
                c => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "metadata": {
                "name": "web-0",
                "labels": {"app.kubernetes.io/name": "web", "tier": "front"},
                "creationTimestamp": "2024-01-01T00:00:00Z"
            },
            "spec": {
                "replicas": 3,
                "paused": false,
                "containers": [
                    {"name": "app", "image": "app:1", "ports": [{"containerPort": 80}, {"containerPort": 443}]},
                    {"name": "sidecar", "image": "side:1"}
                ]
            },
            "status": {
                "conditions": [
                    {"type": "Initialized", "status": "True"},
                    {"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
                    {"type": "Ready", "status": "Duplicate"}
                ]
            }
        })
    }

    #[test]
    fn dotted_fields() {
        let p = pod();
        assert_eq!(eval(".metadata.name", &p), Some(json!("web-0")));
        assert_eq!(eval(".spec.replicas", &p), Some(json!(3)));
        assert_eq!(eval(".spec.paused", &p), Some(json!(false)));
        assert_eq!(eval(".metadata.labels.tier", &p), Some(json!("front")));
        assert_eq!(
            eval(".metadata.labels", &p),
            Some(json!({"app.kubernetes.io/name": "web", "tier": "front"}))
        );
    }

    #[test]
    fn root_prefixes_and_braces() {
        let p = pod();
        for path in [
            "$.metadata.name",
            "{.metadata.name}",
            "{$.metadata.name}",
            "metadata.name",
            "  .metadata.name  ",
        ] {
            assert_eq!(eval(path, &p), Some(json!("web-0")), "{path}");
        }
        assert_eq!(eval("$", &p), Some(p.clone()));
        assert_eq!(eval("", &p), Some(p.clone()));
    }

    #[test]
    fn indexes() {
        let p = pod();
        assert_eq!(eval(".spec.containers[0].name", &p), Some(json!("app")));
        assert_eq!(eval(".spec.containers[1].image", &p), Some(json!("side:1")));
        assert_eq!(
            eval(".spec.containers[ 1 ].name", &p),
            Some(json!("sidecar"))
        );
        assert_eq!(
            eval(".spec.containers[-1].name", &p),
            Some(json!("sidecar"))
        );
        assert_eq!(
            eval(".spec.containers[0].ports[1].containerPort", &p),
            Some(json!(443))
        );
        assert_eq!(eval(".spec.containers[2].name", &p), None);
        assert_eq!(eval(".spec.containers[-3].name", &p), None);
        assert_eq!(eval(".metadata[0]", &p), None);
    }

    #[test]
    fn quoted_keys() {
        let p = pod();
        assert_eq!(
            eval(".metadata.labels['app.kubernetes.io/name']", &p),
            Some(json!("web"))
        );
        assert_eq!(
            eval(r#".metadata.labels["tier"]"#, &p),
            Some(json!("front"))
        );
        assert_eq!(eval("['metadata']['name']", &p), Some(json!("web-0")));
    }

    #[test]
    fn wildcards_return_arrays() {
        let p = pod();
        assert_eq!(
            eval(".spec.containers[*].name", &p),
            Some(json!(["app", "sidecar"]))
        );
        assert_eq!(
            eval(".spec.containers[*].ports[*].containerPort", &p),
            Some(json!([80, 443]))
        );
        assert_eq!(eval(".spec.containers[0].name", &p), Some(json!("app")));
        assert_eq!(eval(".spec.containers[*].missing", &p), None);
        assert_eq!(
            eval(".spec.containers[*].image", &p),
            Some(json!(["app:1", "side:1"]))
        );
        assert_eq!(
            eval(".metadata.labels.*", &p).map(|v| v.as_array().map(Vec::len)),
            Some(Some(2))
        );
        assert_eq!(
            eval(".spec.containers[*]", &json!({"spec": {"containers": []}})),
            None
        );
        assert_eq!(eval(".spec.replicas[*]", &p), None);
    }

    #[test]
    fn filters_return_first_match_field() {
        let p = pod();
        for path in [
            r#".status.conditions[?(@.type=="Ready")].status"#,
            ".status.conditions[?(@.type=='Ready')].status",
            r#".status.conditions[?( @.type == "Ready" )].status"#,
            r#"{.status.conditions[?(@.type=="Ready")].status}"#,
        ] {
            assert_eq!(eval(path, &p), Some(json!("False")), "{path}");
        }
        assert_eq!(
            eval(r#".status.conditions[?(@.type=="Ready")].reason"#, &p),
            Some(json!("ContainersNotReady"))
        );
        assert_eq!(
            eval(r#".status.conditions[?(@.type=="Missing")].status"#, &p),
            None
        );
        assert_eq!(
            eval(r#".status.conditions[?(@.type=="Initialized")].reason"#, &p),
            None
        );
        assert_eq!(
            eval(r#".status.conditions[?(@.type!="Initialized")].status"#, &p),
            Some(json!("False"))
        );
        assert_eq!(eval(".status.missing[?(@.type=='Ready')].status", &p), None);
        assert_eq!(eval(".metadata[?(@.type=='Ready')]", &p), None);
    }

    #[test]
    fn filters_on_nested_and_non_string_fields() {
        let p = pod();
        assert_eq!(
            eval(".spec.containers[0].ports[?(@.containerPort==443)]", &p),
            Some(json!({"containerPort": 443}))
        );
        assert_eq!(
            eval(
                ".spec.containers[0].ports[?(@.containerPort=='80')].containerPort",
                &p
            ),
            Some(json!(80))
        );
        let obj = json!({"items": [{"a": {"b": "x"}, "v": 1}, {"a": {"b": "y"}, "v": 2}]});
        assert_eq!(eval(".items[?(@.a.b=='y')].v", &obj), Some(json!(2)));
        assert_eq!(
            eval(".tags[?(@=='b')]", &json!({"tags": ["a", "b"]})),
            Some(json!("b"))
        );
        assert_eq!(
            eval(
                r#".items[?(@.a.b=="it's")]"#,
                &json!({"items": [{"a": {"b": "it's"}}]})
            ),
            Some(json!({"a": {"b": "it's"}}))
        );
        assert_eq!(
            eval(
                r".items[?(@.k=='a\'b')].k",
                &json!({"items": [{"k": "a'b"}]})
            ),
            Some(json!("a'b"))
        );
    }

    #[test]
    fn wildcard_then_filter_collects_all_matches() {
        let obj = json!({"groups": [
            {"items": [{"t": "a", "v": 1}, {"t": "b", "v": 2}]},
            {"items": [{"t": "a", "v": 3}]}
        ]});
        assert_eq!(
            eval(".groups[*].items[?(@.t=='a')].v", &obj),
            Some(json!([1, 3]))
        );
    }

    #[test]
    fn missing_paths_are_none() {
        let p = pod();
        assert_eq!(eval(".metadata.nope", &p), None);
        assert_eq!(eval(".spec.replicas.deeper", &p), None);
        assert_eq!(eval(".status.phase", &json!({})), None);
        assert_eq!(eval(".a", &json!("scalar")), None);
        assert_eq!(eval(".a", &Value::Null), None);
    }

    #[test]
    fn unsupported_or_malformed_paths_are_none() {
        let p = pod();
        for path in [
            ".",
            "..metadata",
            ".metadata..name",
            ".spec.containers[",
            ".spec.containers[0",
            ".spec.containers[]",
            ".spec.containers[a]",
            ".spec.containers[0:1]",
            ".spec.containers[1-]",
            ".spec.containers[99999999999999999999999]",
            ".status.conditions[?(@.type=='Ready'",
            ".status.conditions[?(@.type='Ready')]",
            ".status.conditions[?(@.type)]",
            ".status.conditions[?(@.type==)]",
            ".status.conditions[?@.type=='Ready']",
            ".status.conditions[?(type=='Ready')]",
            ".status.conditions[?(@.type=='Ready)]",
            "['unterminated",
            "metadata name",
            ".metadata.name extra",
            ".a]",
            "{.a",
            "$$",
            "#",
            ".spec.containers[*]x",
        ] {
            assert_eq!(eval(path, &p), None, "{path:?}");
        }
    }

    #[test]
    fn never_panics_on_arbitrary_input() {
        let p = pod();
        let alphabet = [
            ".",
            "[",
            "]",
            "*",
            "?",
            "(",
            ")",
            "@",
            "=",
            "!",
            "'",
            "\"",
            "\\",
            "-",
            "0",
            "9",
            "$",
            "{",
            "}",
            " ",
            "é",
            "a",
            "status",
            "conditions",
            "type",
            "Ready",
        ];
        // Deterministic pseudo-random strings built from the characters the parser cares about.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 12) as usize;
            let path: String = (0..len)
                .map(|i| alphabet[((seed >> (i * 5)) % alphabet.len() as u64) as usize])
                .collect();
            let _ = eval(&path, &p);
        }
        assert_eq!(eval(&format!(".{}", "a.".repeat(1000)), &p), None);
        assert_eq!(eval(".spec.containers[-9223372036854775808]", &p), None);
    }
}
