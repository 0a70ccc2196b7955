//! Model READMEs: Markdown rendered to HTML on the server and sanitised, so that script
//! tags, event handlers and `javascript:` links never reach a browser.

use pulldown_cmark::{Options, Parser, html};

/// Renders Markdown (CommonMark + tables, strikethrough, task lists) to safe HTML.
pub fn render(markdown: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut raw = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut raw, Parser::new_ext(markdown, options));
    ammonia::Builder::default().link_rel(Some("noopener noreferrer nofollow")).clean(&raw).to_string()
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn markdown_renders_and_dangerous_html_is_removed() {
        let html = render("# Title\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n**bold** [ok](https://example.com)");
        assert!(html.contains("<h1>Title</h1>") && html.contains("<table>") && html.contains("<strong>bold</strong>"));
        assert!(html.contains(r#"href="https://example.com""#));
        let evil = render(
            "<script>alert(1)</script>\n\n[x](javascript:alert(1)) <img src=x onerror=alert(1)> \
             <a href=\"JaVaScRiPt:alert(1)\">y</a> <iframe src=\"https://evil\"></iframe>",
        );
        let lower = evil.to_lowercase();
        assert!(!lower.contains("<script") && !lower.contains("javascript:"), "{evil}");
        assert!(!lower.contains("onerror") && !lower.contains("<iframe"), "{evil}");
    }
}
