//! The `:sub` values a trust policy names, told apart: subjects of ServiceAccounts that exist,
//! that could exist but do not (whoever creates one gets the role), and that no ServiceAccount
//! can ever have (an upper-case letter, a `*` compared literally); and the ServiceAccount a
//! value nearly names, so that a message can point at it.

use std::collections::BTreeMap;

use crate::condition::{like, BaseOperator};
use crate::issuer::Issuer;
use crate::kube_names::{is_dns1123_label, is_dns1123_subdomain};
use crate::policy::Statement;
use crate::trust::{classify_key, KeyKind};
use crate::ServiceAccount;

use super::SUBJECT_PREFIX;

/// How far (Damerau-Levenshtein) a name may be from a ServiceAccount's to count as a near miss.
const NEAR_DISTANCE: usize = 2;

/// The `:sub` values the Allow statements trusting this cluster compare with.
#[derive(Default)]
pub(super) struct SubValues {
    /// Exact subjects as (namespace, name), and whether every operator comparing them ignores
    /// case.
    pub exact: BTreeMap<(String, String), bool>,
    /// Patterns with `*` or `?` under a `Like` operator, as written.
    pub patterns: Vec<String>,
    /// Every value as written, exact or not, for near-miss explanations.
    pub written: Vec<String>,
}

/// The `:sub` values of `statements` (non-negated operators).
pub(super) fn sub_values(issuer: &Issuer, statements: &[&Statement]) -> SubValues {
    let mut out = SubValues::default();
    for st in statements {
        for c in &st.conditions {
            let base = c.operator.base;
            if classify_key(&c.key, issuer) != KeyKind::Subject
                || base.is_negated()
                || base == BaseOperator::Null
            {
                continue;
            }
            let ignore_case = base == BaseOperator::StringEqualsIgnoreCase;
            for value in &c.values {
                out.written.push(value.clone());
                if base.is_like() && value.contains(['*', '?']) {
                    if !out.patterns.contains(value) {
                        out.patterns.push(value.clone());
                    }
                } else if let Some(pair) = parse_subject(value) {
                    let all = out.exact.entry(pair).or_insert(true);
                    *all &= ignore_case;
                }
            }
        }
    }
    out.patterns.sort();
    out
}

/// `system:serviceaccount:NS:NAME` as (NS, NAME).
pub(super) fn parse_subject(value: &str) -> Option<(String, String)> {
    let (ns, name) = value.strip_prefix(SUBJECT_PREFIX)?.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':'))
        .then(|| (ns.to_string(), name.to_string()))
}

/// Whether a ServiceAccount could be called `namespace/name`.
pub(super) fn can_exist(namespace: &str, name: &str) -> bool {
    is_dns1123_label(namespace) && is_dns1123_subdomain(name)
}

/// What an exact subject value names.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Named<'a> {
    /// An existing ServiceAccount (compared as the operator compares: case-insensitively too).
    Existing,
    /// A ServiceAccount that could exist but does not.
    Missing,
    /// Nothing any ServiceAccount can be called; the nearest existing one, if any.
    Impossible(Option<&'a ServiceAccount>),
}

/// What `(namespace, name)` names among `service_accounts`.
pub(super) fn named<'a>(
    namespace: &str,
    name: &str,
    ignore_case: bool,
    service_accounts: &'a [ServiceAccount],
) -> Named<'a> {
    let equal = |a: &str, b: &str| {
        if ignore_case {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    if service_accounts
        .iter()
        .any(|sa| equal(&sa.namespace, namespace) && equal(&sa.name, name))
    {
        return Named::Existing;
    }
    let (ns, n) = if ignore_case {
        (namespace.to_ascii_lowercase(), name.to_ascii_lowercase())
    } else {
        (namespace.to_string(), name.to_string())
    };
    if can_exist(&ns, &n) {
        Named::Missing
    } else {
        Named::Impossible(nearest(&subject_of(namespace, name), service_accounts))
    }
}

/// The existing ServiceAccount a written `:sub` value nearly names: equal but for case, matched
/// if its `*` and `?` were wildcards, or the same namespace and a name a typo away.
pub(super) fn nearest<'a>(
    value: &str,
    service_accounts: &'a [ServiceAccount],
) -> Option<&'a ServiceAccount> {
    let subject = |sa: &ServiceAccount| subject_of(&sa.namespace, &sa.name);
    let parsed = parse_subject(value);
    service_accounts
        .iter()
        .find(|sa| subject(sa).eq_ignore_ascii_case(value))
        .or_else(|| {
            value
                .contains(['*', '?'])
                .then(|| service_accounts.iter().find(|sa| like(value, &subject(sa))))
                .flatten()
        })
        .or_else(|| {
            let (ns, name) = parsed.as_ref()?;
            service_accounts.iter().find(|sa| {
                sa.namespace.eq_ignore_ascii_case(ns)
                    && strsim::damerau_levenshtein(&sa.name, &name.to_ascii_lowercase())
                        <= NEAR_DISTANCE
            })
        })
}

/// What a written value has to do with `sa`, in words, when it nearly names it: for the
/// message about a ServiceAccount a role refuses.
pub(super) fn near_miss_of(sa: &ServiceAccount, written: &[String]) -> Option<String> {
    let own = subject_of(&sa.namespace, &sa.name);
    written.iter().find_map(|value| {
        if value == &own {
            return None;
        }
        if value.eq_ignore_ascii_case(&own) {
            return Some(format!("{value:?} differs from its subject only in case"));
        }
        if value.contains(['*', '?']) && like(value, &own) {
            return Some(format!(
                "{value:?} would match it as a StringLike pattern, but is compared literally"
            ));
        }
        let (ns, name) = parse_subject(value)?;
        if name == sa.name {
            return Some(format!(
                "{value:?} names the same ServiceAccount name in namespace {ns:?}"
            ));
        }
        (ns == sa.namespace && strsim::damerau_levenshtein(&name, &sa.name) <= NEAR_DISTANCE)
            .then(|| format!("{value:?} is a typo away from its subject"))
    })
}

/// `system:serviceaccount:NS:NAME`.
pub(super) fn subject_of(namespace: &str, name: &str) -> String {
    format!("{SUBJECT_PREFIX}{namespace}:{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(namespace: &str, name: &str) -> ServiceAccount {
        ServiceAccount {
            namespace: namespace.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn exact_values_name_existing_missing_or_impossible_service_accounts() {
        let cluster = [sa("web", "cache"), sa("ml", "batch")];
        assert_eq!(named("web", "cache", false, &cluster), Named::Existing);
        assert_eq!(named("web", "Cache", true, &cluster), Named::Existing);
        assert_eq!(named("web", "gone", false, &cluster), Named::Missing);
        assert_eq!(
            named("web", "Cache", false, &cluster),
            Named::Impossible(Some(&cluster[0]))
        );
        assert_eq!(
            named("ml", "x-y-z-*", false, &cluster),
            Named::Impossible(None)
        );
        assert_eq!(
            named("ml", "*", false, &cluster),
            Named::Impossible(Some(&cluster[1]))
        );
        assert_eq!(named("Nope", "X", false, &cluster), Named::Impossible(None));
    }

    #[test]
    fn near_misses_say_how_the_value_misses() {
        let web = sa("web", "cache");
        let near = |v: &str| near_miss_of(&web, &[v.to_string()]);
        assert!(near("system:serviceaccount:Web:cache")
            .unwrap()
            .contains("case"));
        assert!(near("system:serviceaccount:web:*")
            .unwrap()
            .contains("literally"));
        assert!(near("system:serviceaccount:api:cache")
            .unwrap()
            .contains("\"api\""));
        assert!(near("system:serviceaccount:web:cahce")
            .unwrap()
            .contains("typo"));
        assert_eq!(near("system:serviceaccount:web:cache"), None);
        assert_eq!(near("system:serviceaccount:ml:batch"), None);
    }
}
