//! Bounding text for the API server: Event notes (1,024 bytes) and condition messages.

/// `s` cut to at most `max` bytes on a character boundary, with "…" when cut; the ellipsis is
/// counted, so the result never exceeds `max` (the API server refuses longer Event notes).
pub fn truncate(s: &str, max: usize) -> String {
    const ELLIPSIS: &str = "…";
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(ELLIPSIS.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ELLIPSIS}", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncation_never_exceeds_the_limit() {
        assert_eq!(truncate("short", 1024), "short");
        let exact = "a".repeat(1024);
        assert_eq!(truncate(&exact, 1024), exact);
        for len in [1025, 2000, 5000] {
            let cut = truncate(&"a".repeat(len), 1024);
            assert_eq!(cut.len(), 1024, "{len}");
            assert!(cut.ends_with('…'));
        }
        // Multi-byte characters are never split.
        let cut = truncate(&"é".repeat(1000), 1024);
        assert!(cut.len() <= 1024 && cut.ends_with('…'));
        assert!(cut.trim_end_matches('…').chars().all(|c| c == 'é'));
    }
}
