//! Text normalization for case-insensitive matching, and HTML bodies turned into text.

use crate::message::{Body, BodyType};

use super::limits::{BODY_RENDER_WIDTH, MAX_BODY_BYTES, MAX_HTML_TAGS};

/// Normalizes text for case-insensitive "contains" matching; needles and haystacks both go through it.
///
/// - Unicode lower-casing (`char::to_lowercase`), plus the few full case foldings that lower-casing
///   alone misses: `ß` → `ss` (so "STRASSE" finds "Straße"), final `ς` → `σ`, long `ſ` → `s`.
/// - `İ` lower-cases to `i` + U+0307 (combining dot above); the dot is dropped after an `i`, so
///   "İstanbul", "ISTANBUL" and "istanbul" all match one another.
/// - Every run of whitespace (spaces, tabs, line breaks, no-break spaces) becomes one space, so a
///   phrase still matches when the HTML rendering or a folded header broke it across lines.
///
/// No Unicode normalization (NFC/NFD) is applied: a precomposed "é" and "e" + U+0301 differ.
pub(crate) fn normalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_space = false;
    for c in s.chars() {
        if c.is_whitespace() {
            if !in_space {
                out.push(' ');
                in_space = true;
            }
            continue;
        }
        in_space = false;
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
            continue;
        }
        for lower in c.to_lowercase() {
            match lower {
                'ß' => out.push_str("ss"),
                'ς' => out.push('σ'),
                'ſ' => out.push('s'),
                '\u{307}' if out.ends_with('i') => {}
                other => out.push(other),
            }
        }
    }
    out
}

/// Cuts `s` to at most `max` bytes, at a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The body as plain text: HTML rendered by `html2text` (no decorations, no wrapping of normal
/// text), plain text as is. If rendering fails the raw content is used, so words still match.
///
/// Bounded work on hostile input: bodies are cut at `MAX_BODY_BYTES`, and HTML also after its
/// first `MAX_HTML_TAGS` tags (counted as `<` characters). HTML parsing costs grow with the
/// square of the element nesting depth (an email of 256 KB of nested `<div>`s takes seconds to
/// parse), and the depth can never exceed the number of tags, so this caps the cost while normal
/// mail, even large newsletters, is rendered whole.
pub(crate) fn body_text(body: &Body) -> String {
    #[cfg(test)]
    RENDERS.with(|n| n.set(n.get() + 1));
    let content = truncate(&body.content, MAX_BODY_BYTES);
    match body.content_type {
        BodyType::Text => content.to_owned(),
        BodyType::Html => {
            let html = limit_tags(content, MAX_HTML_TAGS);
            html2text::config::plain_no_decorate()
                .allow_width_overflow()
                .no_table_borders()
                .string_from_read(html.as_bytes(), BODY_RENDER_WIDTH)
                .unwrap_or_else(|_| html.to_owned())
        }
    }
}

/// The prefix of `html` before its `(max + 1)`-th `<`.
fn limit_tags(html: &str, max: usize) -> &str {
    match html.match_indices('<').nth(max) {
        Some((end, _)) => &html[..end],
        None => html,
    }
}

#[cfg(test)]
thread_local! {
    /// How many bodies this thread rendered (tests check the once-per-evaluation cache).
    pub(crate) static RENDERS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html(s: &str) -> Body {
        Body {
            content_type: BodyType::Html,
            content: s.into(),
        }
    }

    #[test]
    fn normalize_lowercases_unicode_and_folds_sharp_s() {
        assert_eq!(normalize("ÄRGER über Straße"), "ärger über strasse");
        assert_eq!(normalize("STRASSE"), "strasse");
        assert_eq!(normalize("ẞ"), "ss");
        assert_eq!(normalize("ΣΟΦΟΣ"), normalize("σοφος"));
        assert_eq!(normalize("İstanbul"), "istanbul");
        assert_eq!(normalize("i\u{307}"), "i");
        assert_eq!(normalize("ISTANBUL"), normalize("İstanbul"));
    }

    #[test]
    fn normalize_collapses_whitespace_runs() {
        assert_eq!(normalize("a \t\r\n b\u{a0}\u{a0}c"), "a b c");
        assert_eq!(normalize("  x  "), " x ");
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("äää", 3), "ä");
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("abc", 0), "");
    }

    #[test]
    fn html_bodies_become_text_without_markup() {
        let text = body_text(&html(
            "<html><head><style>p{color:red}</style></head><body><p>Dear <b>customer</b>,</p>\
             <p>Invoice&nbsp;no. 42 &amp; more</p><table><tr><td>Total</td><td>10 €</td></tr></table>\
             <hr><a href=\"https://x.example/pay\">pay here</a></body></html>",
        ));
        assert!(text.contains("Dear customer,"), "{text}");
        assert!(normalize(&text).contains("invoice no. 42 & more"), "{text}");
        assert!(text.contains("Total") && text.contains("10 €"), "{text}");
        assert!(text.contains("pay here"), "{text}");
        assert!(
            !text.contains("<b>") && !text.contains("color:red"),
            "{text}"
        );
    }

    #[test]
    fn long_paragraphs_are_not_wrapped_mid_phrase() {
        let words = "lorem ipsum ".repeat(200);
        let text = body_text(&html(&format!("<p>{words}magic phrase here</p>")));
        assert!(text.contains("magic phrase here"));
    }

    #[test]
    fn plain_bodies_are_used_as_is() {
        let body = Body {
            content_type: BodyType::Text,
            content: "<b>not html</b>".into(),
        };
        assert_eq!(body_text(&body), "<b>not html</b>");
    }

    #[test]
    fn tag_limit_cuts_before_the_next_tag() {
        assert_eq!(limit_tags("<a><b>text<c>", 2), "<a><b>text");
        assert_eq!(limit_tags("<a><b>", 2), "<a><b>");
        assert_eq!(limit_tags("no tags", 0), "no tags");
        assert_eq!(limit_tags("ä<ö", 0), "ä");
    }

    #[test]
    fn deeply_nested_html_is_rendered_only_up_to_the_tag_cap() {
        // Parsing cost grows with nesting depth, and depth is bounded by the tag count: the cap
        // is what bounds the cost (measured in the rules bench, not timed here).
        for tag in ["div", "ul><li", "blockquote", "table><tr><td"] {
            let t = format!("<{tag}>");
            let nested = format!("<p>early words</p>{}deep text", t.repeat(MAX_HTML_TAGS));
            let text = body_text(&html(&nested));
            assert!(text.contains("early words"), "{tag}");
            assert!(
                !text.contains("deep text"),
                "{tag}: content past the tag cap must not be parsed"
            );
        }
    }

    #[test]
    fn broken_html_still_renders() {
        let text = body_text(&html("<div><p>unclosed <i>tags <table><tr><td>cell"));
        assert!(text.contains("unclosed") && text.contains("cell"), "{text}");
    }
}
