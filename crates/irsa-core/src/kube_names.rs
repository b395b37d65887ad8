//! Kubernetes object names: what a namespace or a ServiceAccount can be called, so that a
//! trust policy naming something no object can be called is told apart from one naming an
//! object that does not exist (yet).

/// The longest DNS-1123 subdomain (a ServiceAccount's name).
pub const SUBDOMAIN_MAX_LENGTH: usize = 253;
/// The longest DNS-1123 label (a namespace's name).
pub const LABEL_MAX_LENGTH: usize = 63;

/// A DNS-1123 label: lower-case letters, digits and `-`, starting and ending with a letter or
/// digit, at most 63 characters. What a namespace may be called.
pub fn is_dns1123_label(name: &str) -> bool {
    name.len() <= LABEL_MAX_LENGTH && label_ok(name)
}

/// A DNS-1123 subdomain: labels joined by `.`, at most 253 characters. What a ServiceAccount
/// may be called.
pub fn is_dns1123_subdomain(name: &str) -> bool {
    name.len() <= SUBDOMAIN_MAX_LENGTH && name.split('.').all(label_ok)
}

fn label_ok(label: &str) -> bool {
    !label.is_empty()
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dns1123() {
        for ok in ["a", "web-cache", "a.b-c.d", "0"] {
            assert!(is_dns1123_subdomain(ok), "{ok}");
        }
        for bad in ["", "Web", "a_b", "-a", "a-", "a..b", "*", &"a".repeat(254)] {
            assert!(!is_dns1123_subdomain(bad), "{bad}");
        }
        assert!(is_dns1123_label("kube-system"));
        assert!(!is_dns1123_label("a.b"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
    }
}
