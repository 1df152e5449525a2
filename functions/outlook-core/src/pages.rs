//! Small server-rendered HTML pages. `maud` escapes every interpolated value, so text echoed
//! from a request (an error description, an address) can never become markup.

use maud::{DOCTYPE, Markup, PreEscaped, html};

/// Headers every page is served with: no caching (pages can carry account names), no referrer
/// (callback URLs carry codes), and a CSP that allows no scripts.
pub const PAGE_HEADERS: &[(&str, &str)] = &[
    ("content-type", "text/html; charset=utf-8"),
    ("cache-control", "no-store"),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
];

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:44rem;margin:3rem auto;\
padding:0 1rem;color:#1b1b1b;line-height:1.5}h1{font-size:1.5rem}.ok{border-left:4px solid #107c10;padding-left:1rem}\
.problem{border-left:4px solid #c50f1f;padding-left:1rem}.fix{background:#f3f2f1;padding:.75rem 1rem;border-radius:4px}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.4rem;border-bottom:1px solid #ddd;vertical-align:top}\
.badge{display:inline-block;padding:0 .5rem;border-radius:1rem;font-size:.85rem;background:#e1dfdd}\
.badge.good{background:#dff6dd}.badge.bad{background:#fde7e9}.button{display:inline-block;padding:.5rem 1rem;\
background:#0f6cbd;color:#fff;text-decoration:none;border-radius:4px;border:0;font-size:1rem;cursor:pointer}\
.recommended{font-size:.8rem;color:#107c10;font-weight:600}code{background:#f3f2f1;padding:0 .25rem}";

/// A whole page around `body`.
pub fn layout(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body { (body) }
        }
    }
    .into_string()
}

/// The outcome of a connect flow, as the person who went through it sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultPage {
    pub status: u16,
    pub success: bool,
    pub title: String,
    pub message: String,
    /// What to do next, when something went wrong.
    pub fix: Option<String>,
    /// Per-mailbox lines: (address, state, detail).
    pub mailboxes: Vec<(String, String, String)>,
    /// A link back to where the person can try again or see the status.
    pub link: Option<(String, String)>,
}

impl ResultPage {
    pub fn problem(
        status: u16,
        title: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            status,
            success: false,
            title: title.into(),
            message: message.into(),
            fix: Some(fix.into()),
            mailboxes: Vec::new(),
            link: None,
        }
    }

    pub fn render(&self) -> String {
        let class = if self.success { "ok" } else { "problem" };
        layout(
            &self.title,
            html! {
                div class=(class) {
                    h1 { (self.title) }
                    p { (self.message) }
                }
                @if let Some(fix) = &self.fix {
                    p class="fix" { strong { "What to do: " } (fix) }
                }
                @if !self.mailboxes.is_empty() {
                    h2 { "Mailboxes" }
                    table {
                        tr { th { "Mailbox" } th { "State" } th { "Details" } }
                        @for (address, state, detail) in &self.mailboxes {
                            tr { td { (address) } td { span class="badge" { (state) } } td { (detail) } }
                        }
                    }
                }
                @if let Some((label, href)) = &self.link {
                    p { a class="button" href=(href) { (label) } }
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_values_are_escaped() {
        let mut page = ResultPage::problem(
            400,
            "Sign-in failed",
            "<script>alert(1)</script>",
            "Try \"again\" & again",
        );
        page.mailboxes.push((
            "<b>x</b>@contoso.com".into(),
            "blocked".into(),
            "<img src=x>".into(),
        ));
        let html = page.render();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("<img src=x>"));
        assert!(!html.contains("<b>x</b>"));
        assert!(html.contains("Try &quot;again&quot; &amp; again"));
    }

    #[test]
    fn pages_allow_no_scripts() {
        let csp = PAGE_HEADERS
            .iter()
            .find(|(name, _)| *name == "content-security-policy")
            .unwrap()
            .1;
        assert!(csp.contains("default-src 'none'"));
        assert!(!csp.contains("script-src"));
    }
}
