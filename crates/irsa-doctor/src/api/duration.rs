//! IrsaCheck durations: Go-style `1h30m`, parsed exactly as the CRD's pattern and CEL rules admit them.

use std::time::Duration;

use super::validation::SpecError;

/// A Go-style duration restricted to whole hours, minutes and seconds in that order. Every value it
/// admits is also a valid Go `time.ParseDuration` input, so the CEL `duration()` rules below can rely on it.
pub(crate) const DURATION_PATTERN: &str =
    r"^([0-9]+h([0-9]+m)?([0-9]+s)?|[0-9]+m([0-9]+s)?|[0-9]+s)$";

/// Long enough for any sensible duration; bounds the cost the API server estimates for the CEL rules.
pub(crate) const DURATION_MAX_LENGTH: usize = 32;

/// Go's `time.ParseDuration` refuses more than `i64::MAX` nanoseconds; so does [`parse_duration`],
/// so that every value it takes also passes the CEL `duration()` rules.
pub(crate) const GO_MAX_SECONDS: u64 = 9_223_372_036;

/// A duration bound, kept with its spelling so schema rules and error messages show it as users write it.
pub(crate) struct Limit {
    pub(crate) value: Duration,
    pub(crate) text: &'static str,
}

/// Each run calls IAM and STS and may start a probe pod: more often than this only burns AWS quota.
pub(crate) const MIN_INTERVAL: Limit = Limit {
    value: Duration::from_secs(60),
    text: "1m",
};

/// Scheduling the probe pod and pulling the aws-cli image rarely fits in less.
pub(crate) const MIN_PROBE_TIMEOUT: Limit = Limit {
    value: Duration::from_secs(10),
    text: "10s",
};

/// A probe that has not finished by then is stuck; its pod must not linger.
pub(crate) const MAX_PROBE_TIMEOUT: Limit = Limit {
    value: Duration::from_secs(15 * 60),
    text: "15m",
};

/// `value` as a duration within `min` and `max`, or why not, naming `field`.
pub(crate) fn bounded(
    field: &'static str,
    value: &str,
    min: &Limit,
    max: Option<&Limit>,
) -> Result<Duration, SpecError> {
    let duration = parse_duration(value).ok_or_else(|| SpecError::DurationSyntax {
        field,
        value: value.to_string(),
    })?;
    if duration < min.value {
        return Err(SpecError::DurationTooShort {
            field,
            value: value.to_string(),
            min: min.text,
        });
    }
    if let Some(max) = max.filter(|max| duration > max.value) {
        return Err(SpecError::DurationTooLong {
            field,
            value: value.to_string(),
            max: max.text,
        });
    }
    Ok(duration)
}

/// Parses exactly what the schema admits: [`DURATION_PATTERN`] (`[<n>h][<n>m][<n>s]`, at least one
/// part), at most [`DURATION_MAX_LENGTH`] characters, and no more than Go can represent.
///
/// Hand-written rather than `humantime` (which also takes "1 hour", "2days") or
/// `kube::core::Duration` (fractions, ns/µs/ms, negatives, and a panic on overflow), so that the
/// CLI accepts the same spellings as the API server and huge numbers are an error, not a panic.
pub(crate) fn parse_duration(value: &str) -> Option<Duration> {
    if value.is_empty() || value.len() > DURATION_MAX_LENGTH {
        return None;
    }
    // Consumed as units are seen, which enforces their order and at most one of each.
    let mut units = [('h', 3600u64), ('m', 60), ('s', 1)].into_iter();
    let mut rest = value;
    let mut seconds = 0u64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let count: u64 = rest[..digits].parse().ok()?;
        let unit = rest[digits..].chars().next()?;
        let (_, scale) = units.find(|(u, _)| *u == unit)?;
        seconds = seconds.checked_add(count.checked_mul(scale)?)?;
        // Units are single ASCII bytes.
        rest = &rest[digits + 1..];
    }
    (seconds <= GO_MAX_SECONDS).then(|| Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_durations_parse() {
        for (text, seconds) in [
            ("90s", 90),
            ("30m", 1800),
            ("1h", 3600),
            ("1h30m", 5400),
            ("1h30s", 3630),
            ("2m5s", 125),
            ("1h2m3s", 3723),
            ("0s", 0),
            ("010m", 600),
            ("2562047h47m16s", GO_MAX_SECONDS),
        ] {
            assert_eq!(
                parse_duration(text),
                Some(Duration::from_secs(seconds)),
                "{text}"
            );
        }
    }

    #[test]
    fn other_spellings_are_refused() {
        for text in [
            "",
            "1",
            "h",
            "1d",
            "1 h",
            " 1h",
            "1h ",
            "1.5h",
            "-1h",
            "+1h",
            "1H",
            "300ms",
            "30m1h",
            "1h1h",
            "1h 30m",
            "1hour",
            "PT1H",
            "99999999999999999999s",
            "9999999999999999999h",
            "2562047h47m17s",
            "00000000000000000000000000000001h",
        ] {
            assert_eq!(parse_duration(text), None, "{text:?}");
        }
    }
}
