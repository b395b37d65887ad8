//! IAM condition operators and their evaluation, in three-valued logic: a key irsa-doctor cannot
//! see offline makes the result `Unknown` rather than a guess.

use std::ops::{BitAnd, BitOr, Not};

use thiserror::Error;
use wildmatch::WildMatch;

/// True, False, or cannot tell (Kleene logic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tri {
    /// Holds.
    True,
    /// Does not hold.
    False,
    /// Depends on something not known.
    Unknown,
}

impl From<bool> for Tri {
    fn from(b: bool) -> Tri {
        if b {
            Tri::True
        } else {
            Tri::False
        }
    }
}

impl BitAnd for Tri {
    type Output = Tri;
    fn bitand(self, rhs: Tri) -> Tri {
        match (self, rhs) {
            (Tri::False, _) | (_, Tri::False) => Tri::False,
            (Tri::True, Tri::True) => Tri::True,
            _ => Tri::Unknown,
        }
    }
}

impl BitOr for Tri {
    type Output = Tri;
    fn bitor(self, rhs: Tri) -> Tri {
        match (self, rhs) {
            (Tri::True, _) | (_, Tri::True) => Tri::True,
            (Tri::False, Tri::False) => Tri::False,
            _ => Tri::Unknown,
        }
    }
}

impl Not for Tri {
    type Output = Tri;
    fn not(self) -> Tri {
        match self {
            Tri::True => Tri::False,
            Tri::False => Tri::True,
            Tri::Unknown => Tri::Unknown,
        }
    }
}

/// The comparison an operator makes, without its set prefix or `IfExists` suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseOperator {
    /// Exact, case-sensitive.
    StringEquals,
    /// Negation of StringEquals.
    StringNotEquals,
    /// Exact, case-insensitive.
    StringEqualsIgnoreCase,
    /// Negation of StringEqualsIgnoreCase.
    StringNotEqualsIgnoreCase,
    /// Case-sensitive with `*` and `?`.
    StringLike,
    /// Negation of StringLike.
    StringNotLike,
    /// ARN equality (compared as text).
    ArnEquals,
    /// ARN pattern (`*`, `?`).
    ArnLike,
    /// Negation of ArnEquals.
    ArnNotEquals,
    /// Negation of ArnLike.
    ArnNotLike,
    /// `true` / `false`.
    Bool,
    /// Whether the key is absent (`true`) or present (`false`).
    Null,
    /// Operators irsa-doctor does not evaluate (numeric, date, IP, binary): results are Unknown.
    Opaque(&'static str),
}

const OPAQUE: [&str; 13] = [
    "NumericEquals",
    "NumericNotEquals",
    "NumericLessThan",
    "NumericLessThanEquals",
    "NumericGreaterThan",
    "NumericGreaterThanEquals",
    "DateEquals",
    "DateNotEquals",
    "DateLessThan",
    "DateLessThanEquals",
    "DateGreaterThan",
    "DateGreaterThanEquals",
    "BinaryEquals",
];

impl BaseOperator {
    fn parse(name: &str) -> Option<BaseOperator> {
        use BaseOperator::*;
        Some(match name {
            "StringEquals" => StringEquals,
            "StringNotEquals" => StringNotEquals,
            "StringEqualsIgnoreCase" => StringEqualsIgnoreCase,
            "StringNotEqualsIgnoreCase" => StringNotEqualsIgnoreCase,
            "StringLike" => StringLike,
            "StringNotLike" => StringNotLike,
            "ArnEquals" => ArnEquals,
            "ArnLike" => ArnLike,
            "ArnNotEquals" => ArnNotEquals,
            "ArnNotLike" => ArnNotLike,
            "Bool" => Bool,
            "Null" => Null,
            "IpAddress" => Opaque("IpAddress"),
            "NotIpAddress" => Opaque("NotIpAddress"),
            other => Opaque(OPAQUE.into_iter().find(|o| *o == other)?),
        })
    }

    /// Negated operators hold when no value matches, and when the key is absent.
    pub fn is_negated(self) -> bool {
        use BaseOperator::*;
        matches!(
            self,
            StringNotEquals | StringNotEqualsIgnoreCase | StringNotLike | ArnNotEquals | ArnNotLike
        ) || matches!(self, Opaque(name) if name.contains("Not"))
    }

    /// Operators that expand `*` and `?` (IAM's ARN operators all do, segment by segment).
    pub fn is_like(self) -> bool {
        use BaseOperator::*;
        matches!(
            self,
            StringLike | StringNotLike | ArnLike | ArnNotLike | ArnEquals | ArnNotEquals
        )
    }

    /// The positive comparison of one request value with one policy value.
    fn matches(self, request: &str, policy: &str) -> Tri {
        use BaseOperator::*;
        match self {
            StringEquals | StringNotEquals => (request == policy).into(),
            StringEqualsIgnoreCase | StringNotEqualsIgnoreCase => {
                request.to_lowercase().eq(&policy.to_lowercase()).into()
            }
            StringLike | StringNotLike => like(policy, request).into(),
            ArnEquals | ArnNotEquals | ArnLike | ArnNotLike => arn_like(policy, request).into(),
            Bool => request.eq_ignore_ascii_case(policy).into(),
            Null | Opaque(_) => Tri::Unknown,
        }
    }
}

/// IAM's `StringLike`: `*` any run of characters, `?` one character, case-sensitive.
pub fn like(pattern: &str, value: &str) -> bool {
    WildMatch::new(pattern).matches(value)
}

/// IAM's ARN matching: the six colon-separated fields are matched one by one, so `*` never
/// spans a colon.
pub fn arn_like(pattern: &str, value: &str) -> bool {
    let (p, v): (Vec<&str>, Vec<&str>) = (
        pattern.splitn(6, ':').collect(),
        value.splitn(6, ':').collect(),
    );
    p.len() == 6 && v.len() == 6 && p.iter().zip(&v).all(|(p, v)| like(p, v))
}

/// `ForAnyValue:` / `ForAllValues:` for multi-valued keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetQualifier {
    /// At least one request value must satisfy the operator.
    ForAnyValue,
    /// Every request value must satisfy it; holds on an absent key.
    ForAllValues,
}

/// A condition operator as written, e.g. `ForAnyValue:StringLikeIfExists`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// The name as written in the policy.
    pub name: String,
    /// Set qualifier, if any.
    pub set: Option<SetQualifier>,
    /// The comparison.
    pub base: BaseOperator,
    /// `IfExists`: holds when the key is absent.
    pub if_exists: bool,
}

/// An operator name IAM would reject.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown condition operator {name:?}{hint}")]
pub struct UnknownOperator {
    name: String,
    hint: String,
}

impl Operator {
    /// Parses an operator name; names are case-sensitive, as in IAM.
    pub fn parse(name: &str) -> Result<Operator, UnknownOperator> {
        let (set, rest) = if let Some(r) = name.strip_prefix("ForAnyValue:") {
            (Some(SetQualifier::ForAnyValue), r)
        } else if let Some(r) = name.strip_prefix("ForAllValues:") {
            (Some(SetQualifier::ForAllValues), r)
        } else {
            (None, name)
        };
        let (rest, if_exists) = match rest.strip_suffix("IfExists") {
            Some(r) => (r, true),
            None => (rest, false),
        };
        let base = BaseOperator::parse(rest)
            .filter(|b| !(if_exists && *b == BaseOperator::Null))
            .ok_or_else(|| UnknownOperator {
                name: name.to_string(),
                hint: suggest_operator(rest),
            })?;
        Ok(Operator {
            name: name.to_string(),
            set,
            base,
            if_exists,
        })
    }
}

fn suggest_operator(name: &str) -> String {
    const KNOWN: [&str; 8] = [
        "StringEquals",
        "StringNotEquals",
        "StringEqualsIgnoreCase",
        "StringLike",
        "StringNotLike",
        "ArnLike",
        "ArnEquals",
        "Null",
    ];
    KNOWN
        .into_iter()
        .map(|k| {
            (
                strsim::levenshtein(&name.to_lowercase(), &k.to_lowercase()),
                k,
            )
        })
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, k)| format!("; did you mean {k:?}?"))
        .unwrap_or_default()
}

/// One operator applied to one key with its policy values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The operator.
    pub operator: Operator,
    /// The key as written (keys are case-insensitive).
    pub key: String,
    /// The policy values (any may match).
    pub values: Vec<String>,
}

/// What the request context holds for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValue {
    /// The key is present with these values.
    Present(Vec<String>),
    /// The key is not in the request.
    Absent,
    /// The key may be present, but its value cannot be known offline.
    Unknowable,
}

impl Condition {
    /// Evaluates the condition against what the request holds for its key.
    pub fn evaluate(&self, value: &KeyValue) -> Tri {
        let op = &self.operator;
        let values = match value {
            KeyValue::Unknowable => return Tri::Unknown,
            KeyValue::Absent => return self.evaluate_absent(),
            KeyValue::Present(values) => values,
        };
        if op.base == BaseOperator::Null {
            return self.any_policy_value(|p| p.eq_ignore_ascii_case("false"));
        }
        let each = |request: &str| self.value_satisfies(request);
        match op.set {
            Some(SetQualifier::ForAllValues) => {
                values.iter().fold(Tri::True, |acc, v| acc & each(v))
            }
            // A single-valued key behaves as ForAnyValue over its one value.
            _ => values.iter().fold(Tri::False, |acc, v| acc | each(v)),
        }
    }

    fn evaluate_absent(&self) -> Tri {
        let op = &self.operator;
        if op.base == BaseOperator::Null {
            return self.any_policy_value(|p| p.eq_ignore_ascii_case("true"));
        }
        match op.set {
            Some(SetQualifier::ForAllValues) => Tri::True,
            Some(SetQualifier::ForAnyValue) => Tri::False,
            None => (op.if_exists || op.base.is_negated()).into(),
        }
    }

    fn any_policy_value(&self, f: impl Fn(&str) -> bool) -> Tri {
        self.values.iter().any(|v| f(v)).into()
    }

    /// One request value against all policy values: positive operators need one match,
    /// negated operators need none.
    fn value_satisfies(&self, request: &str) -> Tri {
        let base = self.operator.base;
        let any = self
            .values
            .iter()
            .fold(Tri::False, |acc, p| acc | base.matches(request, p));
        if base.is_negated() {
            !any
        } else {
            any
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(op: &str, values: &[&str]) -> Condition {
        Condition {
            operator: Operator::parse(op).unwrap(),
            key: "k".into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn present(v: &str) -> KeyValue {
        KeyValue::Present(vec![v.to_string()])
    }

    #[test]
    fn string_operators_follow_iam() {
        use Tri::*;
        let table: &[(&str, &[&str], KeyValue, Tri)] = &[
            ("StringEquals", &["a", "b"], present("b"), True),
            ("StringEquals", &["A"], present("a"), False),
            ("StringEquals", &["a*"], present("ab"), False),
            ("StringEqualsIgnoreCase", &["A"], present("a"), True),
            ("StringNotEquals", &["a", "b"], present("b"), False),
            ("StringNotEquals", &["a"], present("c"), True),
            ("StringNotEqualsIgnoreCase", &["A"], present("a"), False),
            ("StringLike", &["a*"], present("abc"), True),
            ("StringLike", &["a?c"], present("abc"), True),
            ("StringLike", &["a?c"], present("abbc"), False),
            ("StringLike", &["A*"], present("abc"), False),
            ("StringNotLike", &["a*"], present("abc"), False),
            ("StringEquals", &["a"], KeyValue::Absent, False),
            ("StringNotEquals", &["a"], KeyValue::Absent, True),
            ("StringNotLike", &["a"], KeyValue::Absent, True),
            ("StringEqualsIfExists", &["a"], KeyValue::Absent, True),
            ("StringEqualsIfExists", &["a"], present("b"), False),
            ("ForAnyValue:StringEquals", &["a"], KeyValue::Absent, False),
            ("ForAllValues:StringEquals", &["a"], KeyValue::Absent, True),
            (
                "ForAllValues:StringEquals",
                &["a"],
                KeyValue::Present(vec!["a".into(), "b".into()]),
                False,
            ),
            (
                "ForAnyValue:StringEquals",
                &["a"],
                KeyValue::Present(vec!["b".into(), "a".into()]),
                True,
            ),
            (
                "ForAnyValue:StringNotEquals",
                &["a"],
                KeyValue::Present(vec!["b".into(), "a".into()]),
                True,
            ),
            (
                "ForAllValues:StringNotEquals",
                &["a"],
                KeyValue::Present(vec!["b".into(), "a".into()]),
                False,
            ),
            ("Null", &["true"], KeyValue::Absent, True),
            ("Null", &["false"], KeyValue::Absent, False),
            ("Null", &["false"], present("x"), True),
            ("Bool", &["true"], present("true"), True),
            (
                "ArnEquals",
                &["arn:aws:iam::*:oidc-provider/x"],
                present("arn:aws:iam::111122223333:oidc-provider/x"),
                True,
            ),
            (
                "ArnLike",
                &["arn:aws:iam::*"],
                present("arn:aws:iam::111122223333:oidc-provider/x"),
                False,
            ),
            (
                "ArnNotLike",
                &["arn:aws:iam::*:*"],
                present("arn:aws:iam::1:oidc-provider/x"),
                False,
            ),
            ("StringEquals", &["a"], KeyValue::Unknowable, Unknown),
            ("IpAddress", &["10.0.0.0/8"], present("10.0.0.1"), Unknown),
            ("NumericLessThan", &["1"], KeyValue::Absent, False),
            ("NumericNotEquals", &["1"], KeyValue::Absent, True),
        ];
        for (op, values, kv, expected) in table {
            assert_eq!(
                cond(op, values).evaluate(kv),
                *expected,
                "{op} {values:?} {kv:?}"
            );
        }
    }

    #[test]
    fn unknown_operators_are_rejected_with_a_hint() {
        let err = Operator::parse("StringEqual").unwrap_err().to_string();
        assert!(err.contains("did you mean \"StringEquals\""), "{err}");
        assert!(Operator::parse("stringequals").is_err());
        assert!(Operator::parse("NullIfExists").is_err());
        let op = Operator::parse("ForAnyValue:StringLikeIfExists").unwrap();
        assert_eq!(op.set, Some(SetQualifier::ForAnyValue));
        assert_eq!(op.base, BaseOperator::StringLike);
        assert!(op.if_exists);
    }

    #[test]
    fn kleene_logic() {
        use Tri::*;
        assert_eq!(True & Unknown, Unknown);
        assert_eq!(False & Unknown, False);
        assert_eq!(True | Unknown, True);
        assert_eq!(False | Unknown, Unknown);
        assert_eq!(!Unknown, Unknown);
    }
}
