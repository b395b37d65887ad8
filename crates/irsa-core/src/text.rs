//! Text that came from users (annotation values, names, trust-policy values, probe output) made
//! safe to show: in a terminal, a log line, a status condition or an Event.
//!
//! Control characters can recolour or rewrite a terminal (`ESC [31m`, `ESC ]8;;`), and Unicode
//! format characters are invisible or reorder what is displayed (U+202E RIGHT-TO-LEFT OVERRIDE
//! makes `x\u{202e}txt.exe` read as `xexe.txt`). A finding quoting such a value must show it as
//! written, byte for byte, without letting it act.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `s` with every control character, line or paragraph separator and Unicode format character
/// (general category Cf: zero-width, bidirectional and other invisible characters) escaped the
/// way Rust's `{:?}` writes them: `\n`, `\r`, `\t`, otherwise `\u{1b}`, `\u{202e}`.
///
/// Messages are single lines, so line breaks are escaped too. Backslashes are left alone, which
/// makes escaping idempotent: messages that quote values with `{:?}` (already escaped) and are
/// escaped again as a whole come out unchanged. Borrows when there is nothing to escape.
pub fn escape_untrusted(s: &str) -> Cow<'_, str> {
    let Some(first) = s.find(needs_escape) else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len() + 16);
    out.push_str(&s[..first]);
    for c in s[first..].chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// [`escape_untrusted`] into an owned string, reusing `s` when nothing needed escaping.
pub fn escape_untrusted_owned(s: String) -> String {
    match escape_untrusted(&s) {
        Cow::Borrowed(_) => s,
        Cow::Owned(escaped) => escaped,
    }
}

/// C0, DEL and C1 controls; U+2028 and U+2029, which some viewers render as line breaks; and
/// every format character.
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') || is_format(c)
}

/// Unicode general category Cf (format), as of Unicode 16.0. The standard library has no
/// category tables and the list is short and stable (new Cf characters are rare), so it is
/// written out rather than pulled in as a dependency.
fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_text_is_borrowed_unchanged() {
        for s in [
            "",
            "arn:aws:iam::111122223333:role/s3-reader",
            "système: 日本語 — ok ✓ \\u{1b} stays as written",
        ] {
            assert!(
                matches!(escape_untrusted(s), Cow::Borrowed(b) if b == s),
                "{s}"
            );
        }
    }

    #[test]
    fn terminal_escapes_and_bidi_overrides_are_escaped() {
        assert_eq!(
            escape_untrusted("role/x\u{1b}[31m\u{202e}"),
            "role/x\\u{1b}[31m\\u{202e}"
        );
        assert_eq!(escape_untrusted("a\nb\r\tc"), "a\\nb\\r\\tc");
        assert_eq!(
            escape_untrusted("\0\u{7f}\u{85}\u{9b}"),
            "\\u{0}\\u{7f}\\u{85}\\u{9b}"
        );
        assert_eq!(
            escape_untrusted("\u{200b}\u{200f}\u{2066}\u{2069}\u{2060}\u{feff}\u{2028}\u{2029}"),
            "\\u{200b}\\u{200f}\\u{2066}\\u{2069}\\u{2060}\\u{feff}\\u{2028}\\u{2029}"
        );
        // Other format characters: soft hyphen, Arabic number sign, a language tag.
        assert_eq!(
            escape_untrusted("\u{ad}\u{600}\u{e0041}"),
            "\\u{ad}\\u{600}\\u{e0041}"
        );
    }

    /// The escapes read exactly as `{:?}` writes these characters, so a message that quotes a
    /// value with `{:?}` and one escaped here look alike.
    #[test]
    fn escapes_match_rusts_debug_form() {
        for c in [
            '\u{1b}', '\u{7f}', '\u{85}', '\u{202e}', '\u{200b}', '\u{feff}', '\u{ad}', '\n', '\t',
            '\r',
        ] {
            let debug = format!("{:?}", c.to_string());
            assert_eq!(
                escape_untrusted(&c.to_string()),
                debug.trim_matches('"'),
                "{c:?}"
            );
        }
    }

    #[test]
    fn escaping_is_idempotent_and_leaves_nothing_to_escape() {
        let mut all = String::new();
        for cp in (0..0x3000).chain(0xFE00..0x1_0000).chain(0xE0000..0xE0100) {
            if let Some(c) = char::from_u32(cp) {
                all.push(c);
            }
        }
        let once = escape_untrusted(&all).into_owned();
        assert!(!once.chars().any(needs_escape));
        assert_eq!(escape_untrusted(&once), once.as_str());
        assert_eq!(escape_untrusted_owned(all), once);
    }
}

/// The whole diagnosis, fed values a user could write: nothing in the report lets a control or
/// format character through, and the quoted values read escaped.
#[cfg(test)]
mod diagnosis_tests {
    use std::collections::BTreeMap;

    use super::needs_escape;
    use crate::annotations::ROLE_ARN;
    use crate::{diagnose, Facts, Issuer, Reason, Report, ServiceAccount};

    const HOSTILE_ARN: &str = "arn:aws:iam::123456789012:role/x\u{1b}[31m\u{202e}";
    const ESCAPED_ARN: &str = "arn:aws:iam::123456789012:role/x\\u{1b}[31m\\u{202e}";
    const ISSUER: &str =
        "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";

    fn account(namespace: &str, name: &str, annotations: &[(&str, &str)]) -> ServiceAccount {
        ServiceAccount {
            namespace: namespace.into(),
            name: name.into(),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            ..Default::default()
        }
    }

    /// Every text of the report, with where it is.
    fn texts(report: &Report) -> Vec<(String, &str)> {
        let mut all = vec![(
            "serviceAccount".to_string(),
            report.service_account.as_str(),
        )];
        all.extend(report.role_arn.as_deref().map(|r| ("roleArn".into(), r)));
        all.extend(
            report
                .findings
                .iter()
                .map(|f| (format!("finding {}", f.reason), f.message.as_str())),
        );
        all.extend(
            report
                .conditions
                .iter()
                .map(|c| (format!("condition {}", c.type_), c.message.as_str())),
        );
        all
    }

    fn assert_all_escaped(report: &Report) {
        for (at, text) in texts(report) {
            assert!(!text.chars().any(needs_escape), "{at}: {text:?}");
        }
    }

    #[test]
    fn a_hostile_role_arn_annotation_reads_escaped() {
        let report = diagnose(&Facts::for_service_account(account(
            "reports",
            "s3-reader",
            &[(ROLE_ARN, HOSTILE_ARN)],
        )));
        assert_all_escaped(&report);
        assert_eq!(report.role_arn.as_deref(), Some(ESCAPED_ARN));
        let malformed = report
            .findings
            .iter()
            .find(|f| f.reason == Reason::RoleArnMalformed)
            .expect("RoleArnMalformed");
        assert!(
            malformed.message.contains(ESCAPED_ARN),
            "{}",
            malformed.message
        );
        assert!(
            report.ready().message.contains(ESCAPED_ARN),
            "{}",
            report.ready().message
        );
    }

    /// `lint` reads names from files, where nothing validates them; trust policies are the
    /// user's too.
    #[test]
    fn hostile_names_and_trust_policy_values_read_escaped() {
        let name = "s3\u{1b}]8;;http://evil\u{7}reader\u{2066}";
        let sa = account(
            "reports\n",
            name,
            &[(ROLE_ARN, "arn:aws:iam::123456789012:role/s3-reader")],
        );
        let host_path = ISSUER.trim_start_matches("https://");
        let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": format!("arn:aws:iam::123456789012:oidc-provider/{host_path}")},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{host_path}:sub"): "system:serviceaccount:reports:other\u{1b}[2J\u{202e}",
                format!("{host_path}:aud"): "sts.amazonaws.com"}}}]})
        .to_string();
        let facts = Facts::offline(sa, Issuer::parse(ISSUER).unwrap(), None, |_| {
            Some(policy.clone())
        });
        let report = diagnose(&facts);
        assert_all_escaped(&report);
        assert_eq!(
            report.service_account,
            "reports\\n/s3\\u{1b}]8;;http://evil\\u{7}reader\\u{2066}"
        );
        assert!(
            report
                .reasons_at_least(crate::Severity::Error)
                .contains(&Reason::TrustPolicySubjectMismatch),
            "{:?}",
            report.findings
        );
    }
}
