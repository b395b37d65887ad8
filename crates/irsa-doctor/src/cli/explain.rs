//! `irsa-doctor explain [REASON]`: a reason's entry of the troubleshooting guide, in the terminal.
//!
//! The text is `docs/troubleshooting.md` itself, compiled in, so the command and the guide cannot
//! drift apart; irsa-core's docs test keeps one entry per catalogue reason.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use clap::Args;
use irsa_core::Reason;
use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};
use thiserror::Error;

/// The troubleshooting guide, one `## Reason` entry per catalogue reason.
pub const GUIDE: &str = include_str!("../../../../docs/troubleshooting.md");

/// Where the guide is published: the workspace's `repository`, branch `main`.
pub const GUIDE_URL: &str = concat!(
    env!("CARGO_PKG_REPOSITORY"),
    "/blob/main/docs/troubleshooting.md"
);

/// Arguments of `irsa-doctor explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// A reason, e.g. TrustPolicySubjectMismatch (any case); lists every reason when omitted.
    reason: Option<String>,
}

/// Why `explain` cannot show an entry.
#[derive(Debug, Error)]
pub enum ExplainError {
    /// The name is not a catalogue reason.
    #[error(
        "unknown reason {given:?}{} (explain without a reason lists them all)",
        did_you_mean(suggestions)
    )]
    UnknownReason {
        /// The name as given.
        given: String,
        /// The closest reason names, best first.
        suggestions: Vec<Reason>,
    },
    /// Standard output could not be written.
    #[error("writing to standard output")]
    Write(#[source] std::io::Error),
    /// The built-in guide has no entry for a catalogue reason: a build from mismatched sources.
    #[error("the built-in troubleshooting guide has no entry for {0}; see {GUIDE_URL}")]
    NoEntry(Reason),
}

fn did_you_mean(suggestions: &[Reason]) -> String {
    match suggestions {
        [] => String::new(),
        [one] => format!("; did you mean {one}?"),
        many => format!(
            "; did you mean one of {}?",
            many.iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Prints the entry of the reason asked for, or the list of every reason.
pub fn run(args: &ExplainArgs) -> Result<ExitCode, ExplainError> {
    let text = match &args.reason {
        Some(name) => {
            let reason = find(name)?;
            let entry = entry(reason).ok_or(ExplainError::NoEntry(reason))?;
            format!("{}\nOnline: {}\n", render(entry), help_uri(reason))
        }
        None => list(),
    };
    super::output::emit(&text).map_err(ExplainError::Write)?;
    Ok(ExitCode::SUCCESS)
}

/// The reason named `name`, case-insensitively; else the closest names as suggestions.
pub fn find(name: &str) -> Result<Reason, ExplainError> {
    let wanted = name.trim().to_ascii_lowercase();
    if let Some(reason) = Reason::ALL
        .iter()
        .find(|r| r.as_str().to_ascii_lowercase() == wanted)
    {
        return Ok(*reason);
    }
    // Containment first (`SubjectMismatch` → TrustPolicySubjectMismatch), then edit distance
    // for typos; nothing when no name is reasonably close, rather than a random guess.
    let mut scored: Vec<(f64, Reason)> = Reason::ALL
        .iter()
        .map(|r| {
            let candidate = r.as_str().to_ascii_lowercase();
            let contained = wanted.len() >= 4 && candidate.contains(&wanted);
            let score = strsim::normalized_damerau_levenshtein(&wanted, &candidate);
            (if contained { 1.0 + score } else { score }, *r)
        })
        .filter(|(score, _)| *score >= 0.6)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    // Only the names about as close as the closest: one clear match is named alone.
    let best = scored.first().map_or(0.0, |(score, _)| *score);
    Err(ExplainError::UnknownReason {
        given: name.to_string(),
        suggestions: scored
            .into_iter()
            .take_while(|(score, _)| *score >= best - 0.05)
            .take(3)
            .map(|(_, r)| r)
            .collect(),
    })
}

/// The Markdown of a reason's entry: from its `## Reason` heading to the next `## ` heading.
pub fn entry(reason: Reason) -> Option<&'static str> {
    let heading = format!("## {reason}");
    let mut start = None;
    let mut offset = 0;
    let mut fenced = false;
    for line in GUIDE.split_inclusive('\n') {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with("## ") {
            match start {
                Some(s) => return Some(GUIDE[s..offset].trim_end()),
                None if line.trim_end() == heading => start = Some(offset),
                None => {}
            }
        }
        offset += line.len();
    }
    start.map(|s| GUIDE[s..].trim_end())
}

/// The guide's anchor for a reason on the published repository (GitHub's anchors are the
/// heading in lower case).
pub fn help_uri(reason: Reason) -> String {
    format!("{GUIDE_URL}#{}", reason.as_str().to_ascii_lowercase())
}

/// One line on a reason: the first sentence of its entry's **Cause:**, or, for the success
/// reasons that have none, of its description.
pub fn summary(reason: Reason) -> Option<String> {
    let entry = entry(reason)?;
    let mut paragraph: Option<String> = None;
    let mut label: Option<String> = None;
    let mut in_label = false;
    let mut fallback = None;
    for event in Parser::new(entry) {
        match event {
            Event::Start(Tag::Paragraph) => {
                paragraph = Some(String::new());
                label = None;
            }
            Event::Start(Tag::Strong) if paragraph.as_deref() == Some("") => in_label = true,
            Event::End(TagEnd::Strong) if in_label => in_label = false,
            Event::Text(t) if in_label => label.get_or_insert_with(String::new).push_str(&t),
            Event::Text(t) => {
                if let Some(p) = paragraph.as_mut() {
                    p.push_str(&t);
                }
            }
            Event::Code(c) => {
                if let Some(p) = paragraph.as_mut() {
                    let _ = write!(p, "`{c}`");
                }
            }
            Event::SoftBreak | Event::HardBreak => {
                if let Some(p) = paragraph.as_mut() {
                    p.push(' ');
                }
            }
            Event::End(TagEnd::Paragraph) => {
                let text = paragraph.take().unwrap_or_default();
                match label.as_deref() {
                    Some("Cause:") => return Some(first_sentence(&text)),
                    None if fallback.is_none() && !text.trim().is_empty() => {
                        fallback = Some(first_sentence(&text));
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    fallback
}

/// Up to the first full stop that ends a sentence (one followed by a capital letter or inline
/// code, not an abbreviation's), a stop inside inline code counting when the code ends the
/// sentence; a leading lower-case word capitalised.
fn first_sentence(text: &str) -> String {
    let text = text.trim();
    let mut in_code = false;
    let mut end = text.len();
    for (i, c) in text.char_indices() {
        let stop = match c {
            '`' => {
                in_code = !in_code;
                !in_code && text[..i].ends_with('.')
            }
            '.' => !in_code,
            _ => false,
        };
        if !stop
            || ["e.g.", "i.e.", "vs.", "cf."]
                .iter()
                .any(|a| text[..=i].ends_with(a))
        {
            continue;
        }
        let rest = &text[i + 1..];
        let next = rest.trim_start().chars().next();
        if rest.starts_with(' ') && next.is_some_and(|n| n.is_uppercase() || n == '`') {
            end = i + 1;
            break;
        }
    }
    let sentence = &text[..end];
    // "a read failed" reads better as "A read failed"; "irsa-doctor" keeps its spelling.
    let first_word = sentence.split(' ').next().unwrap_or_default();
    if first_word.chars().all(|c| c.is_ascii_lowercase()) {
        let mut out = first_word.to_ascii_uppercase()[..1].to_string();
        out.push_str(&sentence[1..]);
        return out;
    }
    sentence.to_string()
}

/// Every reason with its severity and summary, aligned like kubectl's tables.
pub fn list() -> String {
    let mut tw = tabwriter::TabWriter::new(Vec::new()).padding(3);
    let _ = writeln!(tw, "REASON\tSEVERITY\tSUMMARY");
    for reason in Reason::ALL {
        let summary = summary(*reason).unwrap_or_else(|| reason.remediation().to_string());
        let _ = writeln!(tw, "{reason}\t{}\t{summary}", reason.severity());
    }
    let _ = tw.flush();
    String::from_utf8(tw.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// Markdown as plain text for a terminal: headings underlined, emphasis markers dropped, links
/// to other entries reduced to their text (the reason names `explain` takes), lists and code
/// blocks indented, the source's line breaks kept.
pub fn render(markdown: &str) -> String {
    let mut r = Renderer::default();
    for event in Parser::new(markdown) {
        r.event(event);
    }
    let mut out = r.out.trim_end().to_string();
    out.push('\n');
    out
}

#[derive(Default)]
struct Renderer {
    out: String,
    /// Indentation of continuation lines, one entry per open list item or quote.
    indent: Vec<usize>,
    /// One entry per open list: the next number of an ordered list, `None` for bullets.
    lists: Vec<Option<u64>>,
    /// Destinations of the open links.
    links: Vec<String>,
    /// Where the open heading's text starts in `out`.
    heading: Option<usize>,
    in_code: bool,
    /// The next block is separated by a blank line.
    blank: bool,
    /// A list marker was just written: the item's first block continues its line.
    after_marker: bool,
}

impl Renderer {
    fn indent(&self) -> usize {
        self.indent.iter().sum()
    }

    fn at_line_start(&self) -> bool {
        self.out.is_empty() || self.out.ends_with('\n')
    }

    fn text(&mut self, text: &str) {
        for (i, line) in text.split('\n').enumerate() {
            if i > 0 {
                self.out.push('\n');
            }
            if line.is_empty() {
                continue;
            }
            if self.at_line_start() {
                let n = self.indent();
                self.out.extend(std::iter::repeat_n(' ', n));
            }
            self.out.push_str(line);
        }
    }

    /// Starts a block on its own line, after a blank line when the previous block asks for one.
    fn block(&mut self) {
        if std::mem::take(&mut self.after_marker) {
            return;
        }
        if self.out.is_empty() {
            self.blank = false;
            return;
        }
        if !self.out.ends_with('\n') {
            self.out.push('\n');
        }
        if std::mem::take(&mut self.blank) && !self.out.ends_with("\n\n") {
            self.out.push('\n');
        }
    }

    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(t) if self.in_code => {
                let pad = self.indent() + 4;
                for line in t.split_inclusive('\n') {
                    if line.trim_end_matches('\n').is_empty() {
                        self.out.push('\n');
                    } else {
                        self.out.extend(std::iter::repeat_n(' ', pad));
                        self.out.push_str(line);
                    }
                }
            }
            Event::Text(t) | Event::Html(t) | Event::InlineHtml(t) => self.text(&t),
            Event::Code(c) => self.text(&format!("`{c}`")),
            Event::SoftBreak | Event::HardBreak => self.out.push('\n'),
            Event::Rule => {
                self.block();
                self.text("----");
                self.out.push('\n');
                self.blank = true;
            }
            _ => {}
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Paragraph | Tag::HtmlBlock => self.block(),
            Tag::Heading { .. } => {
                self.block();
                self.heading = Some(self.out.len());
            }
            Tag::CodeBlock(_) => {
                self.block();
                self.in_code = true;
            }
            Tag::List(first) => {
                self.block();
                self.lists.push(first);
            }
            Tag::Item => {
                self.block();
                let marker = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        let m = format!("{n}. ");
                        *n += 1;
                        m
                    }
                    _ => "- ".to_string(),
                };
                self.text(&marker);
                self.indent.push(marker.len());
                self.after_marker = true;
            }
            Tag::BlockQuote(_) => {
                self.block();
                self.indent.push(2);
            }
            Tag::Link { dest_url, .. } => self.links.push(dest_url.to_string()),
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph | TagEnd::HtmlBlock => self.blank = true,
            TagEnd::Heading(level) => {
                if let Some(start) = self.heading.take() {
                    let width = self.out[start..].chars().count();
                    let rule = if level == HeadingLevel::H1 { '=' } else { '-' };
                    self.out.push('\n');
                    self.out.extend(std::iter::repeat_n(rule, width));
                }
                self.blank = true;
            }
            TagEnd::CodeBlock => {
                self.in_code = false;
                if !self.at_line_start() {
                    self.out.push('\n');
                }
                self.blank = true;
            }
            TagEnd::List(_) => {
                self.lists.pop();
                // Items of a tight list follow each other; the block after the whole list
                // gets its blank line.
                self.blank = self.lists.is_empty();
            }
            TagEnd::Item => {
                self.indent.pop();
                self.after_marker = false;
            }
            TagEnd::BlockQuote(_) => {
                self.indent.pop();
                self.blank = true;
            }
            TagEnd::Link => {
                // Links within the guide are to other entries, whose name is the link text;
                // only a web address adds information.
                if let Some(dest) = self.links.pop() {
                    if dest.starts_with("http://") || dest.starts_with("https://") {
                        self.text(&format!(" ({dest})"));
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_an_entry_and_a_one_line_summary() {
        for reason in Reason::ALL {
            let entry = entry(*reason).unwrap_or_else(|| panic!("no entry for {reason}"));
            assert!(entry.starts_with(&format!("## {reason}\n")), "{entry}");
            assert!(
                !entry[3..].contains("\n## "),
                "{reason}: the entry runs into the next"
            );
            let summary = summary(*reason).unwrap_or_else(|| panic!("no summary for {reason}"));
            assert!(
                (summary.ends_with('.') || summary.ends_with(".`"))
                    && !summary.contains('\n')
                    && summary.len() > 20,
                "{reason}: {summary:?}"
            );
        }
    }

    #[test]
    fn summary_is_the_first_sentence_of_the_cause() {
        assert_eq!(
            summary(Reason::TrustPolicySubjectMismatch).unwrap(),
            "The `:sub` condition does not admit `system:serviceaccount:<namespace>:<name>` for this ServiceAccount."
        );
        // A stop at the end of inline code ends the sentence; one inside it does not.
        assert_eq!(
            first_sentence("found none: `Unable to locate. Run it.` Nothing was injected."),
            "Found none: `Unable to locate. Run it.`"
        );
        assert_eq!(
            first_sentence("a guard (e.g. `x`). `y` is next."),
            "A guard (e.g. `x`)."
        );
        assert_eq!(
            first_sentence("irsa-doctor could not tell. Then."),
            "irsa-doctor could not tell."
        );
        // A success reason has no Cause: its description stands in.
        assert!(summary(Reason::ServiceAccountAnnotated)
            .unwrap()
            .starts_with("The ServiceAccount exists and carries"));
    }

    #[test]
    fn render_keeps_code_blocks_and_drops_markup() {
        let text = render(
            "## Title\n\n**Fix:** do [Other](#other), see [site](https://example.com).\n\n\
             - one\n  two\n- three\n\n```sh\nkubectl get sa\n\n# done\n```\n\nAfter.\n",
        );
        assert_eq!(
            text,
            "Title\n-----\n\nFix: do Other, see site (https://example.com).\n\n\
             - one\n  two\n- three\n\n    kubectl get sa\n\n    # done\n\nAfter.\n"
        );
    }

    #[test]
    fn find_is_case_insensitive_and_suggests_close_names() {
        assert_eq!(
            find("trustpolicysubjectmismatch").unwrap(),
            Reason::TrustPolicySubjectMismatch
        );
        let Err(ExplainError::UnknownReason { suggestions, .. }) =
            find("TrustPolicySubjectMismach")
        else {
            panic!("a typo is not a reason");
        };
        assert_eq!(suggestions[0], Reason::TrustPolicySubjectMismatch);
        let Err(ExplainError::UnknownReason { suggestions, .. }) = find("SubjectMismatch") else {
            panic!("a part is not a reason");
        };
        assert_eq!(suggestions[0], Reason::TrustPolicySubjectMismatch);
        let Err(ExplainError::UnknownReason { suggestions, .. }) = find("xyzzy") else {
            panic!("nonsense is not a reason");
        };
        assert!(suggestions.is_empty());
    }
}
