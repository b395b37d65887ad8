//! YAML (and JSON, which is YAML) read the way `kubectl` reads manifests, within bounds: the
//! input's size is checked before parsing, nesting stops at [`MAX_DEPTH`] as soon as it is reached,
//! aliases may expand to at most [`MAX_NODES`] nodes, and a key given twice in one mapping is an
//! error (kubectl refuses it; a parser that keeps the last one would lose what the first said).
//! Plain scalars resolve as `sigs.k8s.io/yaml` resolves them (YAML 1.1: `yes`, `on`, `y` are
//! booleans), so a value kubectl would not take as a string is not one here either. Every mapping
//! key and sequence item keeps its line, for messages that point at it.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// At most this many bytes are parsed from one input.
pub const MAX_INPUT_BYTES: usize = 16 << 20;
/// At most this many levels of nesting (a pod template sits at about 12).
pub const MAX_DEPTH: usize = 64;
/// At most this many nodes in one input, aliases expanded.
pub const MAX_NODES: usize = 2_000_000;

/// Why a text is not usable YAML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlError {
    /// Larger than [`MAX_INPUT_BYTES`].
    #[error("{bytes} bytes, more than the {MAX_INPUT_BYTES} one input may have")]
    TooLarge {
        /// Its size.
        bytes: usize,
    },
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("line {line}: nested more than {MAX_DEPTH} levels deep")]
    TooDeep {
        /// Where the limit was reached.
        line: usize,
    },
    /// More than [`MAX_NODES`] nodes once aliases are expanded.
    #[error("line {line}: more than {MAX_NODES} nodes once aliases are expanded")]
    TooManyNodes {
        /// Where the limit was reached.
        line: usize,
    },
    /// A key given twice in one mapping.
    #[error("line {line}: key {key:?} of {at} is given twice (first on line {first}); kubectl refuses that, and only one of them can be meant")]
    DuplicateKey {
        /// The key.
        key: String,
        /// The mapping, e.g. `spec.template.spec.containers[0]`.
        at: String,
        /// The second occurrence.
        line: usize,
        /// The first.
        first: usize,
    },
    /// A mapping or sequence used as a key.
    #[error("line {line}: a mapping or list is used as a key; Kubernetes keys are strings")]
    ComplexKey {
        /// Where.
        line: usize,
    },
    /// An alias to an anchor not defined before it.
    #[error("line {line}: alias to an anchor that is not defined before it")]
    UnknownAnchor {
        /// Where.
        line: usize,
    },
    /// What the YAML scanner refused.
    #[error("invalid YAML or JSON at line {line} column {column}: {message}")]
    Syntax {
        /// Where.
        line: usize,
        /// Where on the line.
        column: usize,
        /// The scanner's message.
        message: String,
    },
}

/// One document of a YAML stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Its content (`null` for an empty document).
    pub value: Value,
    /// Line of each key and item, by path (`spec.template.spec.containers[0].env`).
    lines: HashMap<String, usize>,
}

impl Document {
    /// The line of the key or item at `path` (serde_path_to_error's form), if it was in the text.
    pub fn line(&self, path: &str) -> Option<usize> {
        self.lines.get(path).copied()
    }
}

/// A node being built.
struct Frame {
    node: Node,
    /// Its path, for lines and messages.
    path: String,
    /// Its anchor, when it has one.
    anchor: usize,
}

enum Node {
    Sequence(Vec<Value>),
    Mapping {
        map: Map<String, Value>,
        /// The key waiting for its value, and its line.
        key: Option<(String, usize)>,
        /// Line of each key given so far.
        seen: HashMap<String, usize>,
        /// Keys that came from a merge (`<<`), which a key of its own may override.
        merged: HashSet<String>,
    },
}

fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// The value of a scalar, resolved as `sigs.k8s.io/yaml` resolves it.
fn resolve(text: &str, style: TScalarStyle, tagged_str: bool) -> Value {
    if style != TScalarStyle::Plain || tagged_str {
        return Value::String(text.to_string());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Value::Bool(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Value::Bool(false)
        }
        _ => {}
    }
    let digits = text.trim_start_matches(['+', '-']);
    let negative = text.starts_with('-');
    let integer = if let Some(hex) = digits.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()
    } else if let Some(oct) = digits.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        digits.replace('_', "").parse::<i64>().ok()
    } else {
        None
    };
    if let Some(i) = integer {
        return Value::Number(Number::from(if negative { -i } else { i }));
    }
    let float_shaped = digits
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        && digits.bytes().any(|b| b.is_ascii_digit());
    if float_shaped {
        if let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(text.to_string())
}

/// How many nodes a value holds, for the alias budget.
fn size(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(size).sum::<usize>(),
        Value::Object(map) => 1 + map.values().map(size).sum::<usize>(),
        _ => 1,
    }
}

struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Value, usize)>,
    lines: HashMap<String, usize>,
    nodes: usize,
    documents: Vec<Document>,
    root: Option<Value>,
}

impl Builder {
    /// The path of the node about to be added, and the line to record for it.
    fn next_path(&self) -> String {
        match self.stack.last() {
            None => String::new(),
            Some(Frame {
                node: Node::Sequence(items),
                path,
                ..
            }) => format!("{path}[{}]", items.len()),
            Some(Frame {
                node: Node::Mapping {
                    key: Some((k, _)), ..
                },
                path,
                ..
            }) => child_path(path, k),
            // A key: its path is its mapping's.
            Some(Frame { path, .. }) => path.clone(),
        }
    }

    fn count(&mut self, n: usize, mark: Marker) -> Result<(), YamlError> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(YamlError::TooManyNodes { line: mark.line() });
        }
        Ok(())
    }

    /// Adds a finished value to the node being built (or makes it the document's root).
    fn add(&mut self, value: Value, anchor: usize, mark: Marker) -> Result<(), YamlError> {
        if anchor != 0 {
            let n = size(&value);
            self.anchors.insert(anchor, (value.clone(), n));
        }
        let Some(frame) = self.stack.last_mut() else {
            self.root = Some(value);
            return Ok(());
        };
        match &mut frame.node {
            Node::Sequence(items) => {
                // A mapping or list item's line was taken where it started.
                self.lines
                    .entry(format!("{}[{}]", frame.path, items.len()))
                    .or_insert(mark.line());
                items.push(value);
            }
            Node::Mapping {
                map,
                key,
                seen,
                merged,
            } => match key.take() {
                None => {
                    let Value::String(k) = scalar_key(value) else {
                        return Err(YamlError::ComplexKey { line: mark.line() });
                    };
                    if let Some(first) = seen.get(&k) {
                        if !merged.contains(&k) {
                            return Err(YamlError::DuplicateKey {
                                key: k,
                                at: if frame.path.is_empty() {
                                    "the document".to_string()
                                } else {
                                    frame.path.clone()
                                },
                                line: mark.line(),
                                first: *first,
                            });
                        }
                    }
                    self.lines.insert(child_path(&frame.path, &k), mark.line());
                    *key = Some((k, mark.line()));
                }
                Some((k, line)) if k == "<<" => {
                    let sources = match value {
                        Value::Array(items) => items,
                        other => vec![other],
                    };
                    for source in sources {
                        let Value::Object(entries) = source else {
                            return Err(YamlError::Syntax {
                                line,
                                column: 1,
                                message: "a merge key (<<) needs a mapping".to_string(),
                            });
                        };
                        for (k, v) in entries {
                            if !seen.contains_key(&k) {
                                seen.insert(k.clone(), line);
                                merged.insert(k.clone());
                                map.insert(k, v);
                            }
                        }
                    }
                }
                Some((k, line)) => {
                    merged.remove(&k);
                    seen.insert(k.clone(), line);
                    map.insert(k, value);
                }
            },
        }
        Ok(())
    }

    fn open(&mut self, node: Node, anchor: usize, mark: Marker) -> Result<(), YamlError> {
        if let Some(Frame {
            node: Node::Mapping { key: None, .. },
            ..
        }) = self.stack.last()
        {
            return Err(YamlError::ComplexKey { line: mark.line() });
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(YamlError::TooDeep { line: mark.line() });
        }
        self.count(1, mark)?;
        let path = self.next_path();
        if let Some(Frame {
            node: Node::Sequence(_),
            ..
        }) = self.stack.last()
        {
            self.lines.insert(path.clone(), mark.line());
        }
        self.stack.push(Frame { node, path, anchor });
        Ok(())
    }

    fn close(&mut self, mark: Marker) -> Result<(), YamlError> {
        let Some(frame) = self.stack.pop() else {
            return Ok(());
        };
        let value = match frame.node {
            Node::Sequence(items) => Value::Array(items),
            Node::Mapping { map, .. } => Value::Object(map),
        };
        self.add(value, frame.anchor, mark)
    }

    fn end_document(&mut self) {
        self.stack.clear();
        self.anchors.clear();
        self.documents.push(Document {
            value: self.root.take().unwrap_or(Value::Null),
            lines: std::mem::take(&mut self.lines),
        });
    }
}

/// A key as a string: Kubernetes keys are strings, so `1:` or `true:` is the text it reads as.
fn scalar_key(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(s),
        Value::Null => Value::String(String::new()),
        Value::Bool(b) => Value::String(b.to_string()),
        Value::Number(n) => Value::String(n.to_string()),
        other => other,
    }
}

/// Every document of `text`, within the bounds; an error names the document (from 1) it is in.
pub fn parse(text: &str) -> Result<Vec<Document>, (usize, YamlError)> {
    if text.len() > MAX_INPUT_BYTES {
        return Err((1, YamlError::TooLarge { bytes: text.len() }));
    }
    let mut parser = Parser::new_from_str(text);
    let mut b = Builder {
        stack: Vec::new(),
        anchors: HashMap::new(),
        lines: HashMap::new(),
        nodes: 0,
        documents: Vec::new(),
        root: None,
    };
    loop {
        let document = b.documents.len() + 1;
        let at = |e| (document, e);
        let (event, mark) = parser.next_token().map_err(|e| {
            at(YamlError::Syntax {
                line: e.marker().line(),
                column: e.marker().col() + 1,
                message: e.info().to_string(),
            })
        })?;
        match event {
            Event::StreamEnd => return Ok(b.documents),
            Event::DocumentEnd => b.end_document(),
            Event::Nothing | Event::StreamStart | Event::DocumentStart => {}
            Event::Scalar(text, style, anchor, tag) => {
                b.count(1, mark).map_err(at)?;
                let tagged_str = tag.is_some_and(|t| t.suffix == "str");
                let value = resolve(&text, style, tagged_str);
                b.add(value, anchor, mark).map_err(at)?;
            }
            Event::Alias(id) => {
                let n = b
                    .anchors
                    .get(&id)
                    .map(|(_, n)| *n)
                    .ok_or(YamlError::UnknownAnchor { line: mark.line() })
                    .map_err(at)?;
                // Counted before it is copied: an expansion over the budget is never built.
                b.count(n, mark).map_err(at)?;
                let value = b.anchors[&id].0.clone();
                b.add(value, 0, mark).map_err(at)?;
            }
            Event::SequenceStart(anchor, _) => {
                b.open(Node::Sequence(Vec::new()), anchor, mark)
                    .map_err(at)?;
            }
            Event::MappingStart(anchor, _) => {
                let node = Node::Mapping {
                    map: Map::new(),
                    key: None,
                    seen: HashMap::new(),
                    merged: HashSet::new(),
                };
                b.open(node, anchor, mark).map_err(at)?;
            }
            Event::SequenceEnd | Event::MappingEnd => b.close(mark).map_err(at)?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(text: &str) -> Document {
        let mut docs = parse(text).unwrap();
        assert_eq!(docs.len(), 1, "{text}");
        docs.remove(0)
    }

    #[test]
    fn reads_documents_with_the_lines_of_keys_and_items() {
        let text = "\
kind: Deployment
metadata:
  name: api
spec:
  template:
    spec:
      containers:
      - name: app
        env:
        - name: A
          value: \"1\"
---
# only a comment
---
{\"kind\": \"List\", \"items\": [{\"kind\": \"ConfigMap\"}]}
";
        let docs = parse(text).unwrap();
        assert_eq!(docs.len(), 3);
        assert_eq!(
            docs[0].value["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
            "1"
        );
        assert_eq!(docs[0].line("metadata.name"), Some(3));
        assert_eq!(docs[0].line("spec.template.spec.containers[0]"), Some(8));
        assert_eq!(
            docs[0].line("spec.template.spec.containers[0].env"),
            Some(9)
        );
        assert_eq!(docs[1].value, Value::Null);
        assert_eq!(docs[2].value["items"][0]["kind"], "ConfigMap");
    }

    #[test]
    fn resolves_scalars_as_kubectl_does() {
        let d = one("a: yes\nb: 'yes'\nc: 0x1F\nd: 1.5\ne: ~\nf: 007\ng: !!str 12\nh: 2024-01-01\ni: -3\nj: off\n");
        assert_eq!(
            d.value,
            json!({"a": true, "b": "yes", "c": 31, "d": 1.5, "e": null, "f": 7, "g": "12",
                   "h": "2024-01-01", "i": -3, "j": false})
        );
    }

    #[test]
    fn a_key_given_twice_is_an_error_naming_both_lines() {
        let text = "spec:\n  containers:\n  - name: app\n    env: []\n    image: x\n    env: [{name: A}]\n";
        let (doc, e) = parse(text).unwrap_err();
        assert_eq!(doc, 1);
        assert_eq!(
            e,
            YamlError::DuplicateKey {
                key: "env".into(),
                at: "spec.containers[0]".into(),
                line: 6,
                first: 4
            }
        );
        // A merge may be overridden by a key of the mapping's own.
        let merged = one("base: &b {a: 1, b: 2}\nx:\n  <<: *b\n  b: 3\n");
        assert_eq!(merged.value["x"], json!({"a": 1, "b": 3}));
    }

    #[test]
    fn input_size_nesting_and_alias_expansion_are_bounded() {
        // Flow nesting is refused by the scanner's own limit (256) before any event.
        let deep = "[".repeat(100_000);
        assert!(matches!(
            parse(&deep).unwrap_err().1,
            YamlError::TooDeep { .. } | YamlError::Syntax { line: 1, .. }
        ));
        let flow = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert!(matches!(
            parse(&flow).unwrap_err().1,
            YamlError::TooDeep { .. }
        ));
        let mut block = String::new();
        for i in 0..100 {
            block.push_str(&" ".repeat(i * 2));
            block.push_str("a:\n");
        }
        assert!(matches!(
            parse(&block).unwrap_err().1,
            YamlError::TooDeep { .. }
        ));
        let mut laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n".to_string();
        for i in 0..9 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("l{}", i - 1)
            };
            laughs.push_str(&format!("l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        assert!(matches!(
            parse(&laughs).unwrap_err().1,
            YamlError::TooManyNodes { .. }
        ));
        let big = "a".repeat(MAX_INPUT_BYTES + 1);
        assert!(matches!(
            parse(&big).unwrap_err().1,
            YamlError::TooLarge { .. }
        ));
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let (doc, e) = parse("a: 1\n---\nb: [1, 2\n").unwrap_err();
        assert_eq!(doc, 2);
        assert!(matches!(e, YamlError::Syntax { line: 4, .. }), "{e:?}");
        assert!(matches!(
            parse("? [a]\n: 1\n").unwrap_err().1,
            YamlError::ComplexKey { .. }
        ));
    }
}
