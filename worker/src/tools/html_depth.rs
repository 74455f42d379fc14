//! Flattening HTML nested deeper than a converter can walk.
//!
//! The HTML-to-Markdown converter recurses once per element level, so a page of a hundred
//! thousand unclosed `<div>`s (a few hundred kilobytes) overflows the stack of the thread that
//! converts it and kills the worker. Before conversion, [`limit_depth`] walks the tags with a
//! stack of open elements and drops the start and end tags of elements that would open deeper
//! than the limit: their text stays, merged into the deepest element kept. Real pages nest a few
//! dozen levels, so they pass unchanged.
//!
//! This is a scanner, not a parser: it knows what decides nesting (void elements, self-closing
//! tags, raw-text elements whose content is not markup, comments, quoted attribute values, and
//! elements like `<li>` and `<p>` that a new sibling closes) and copies everything else as is.

/// Deepest element nesting kept.
pub const MAX_HTML_DEPTH: usize = 256;

/// Elements that never have content.
const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr",
];
/// Elements whose content is text up to their end tag.
const RAW_TEXT: &[&str] = &[
    "script",
    "style",
    "textarea",
    "title",
    "xmp",
    "iframe",
    "noembed",
    "noframes",
    "plaintext",
];
/// Elements an open one of the same name closes (`<li>a<li>b`).
const SELF_CLOSING_SIBLINGS: &[&str] = &[
    "p", "li", "dt", "dd", "option", "optgroup", "tr", "td", "th", "rb", "rt", "rp", "tbody",
    "thead", "tfoot",
];

/// The lowercase tag name at the start of `rest` (after `<` or `</`), and its length.
fn tag_name(rest: &str) -> (String, usize) {
    let len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == ':' || c == '_'))
        .unwrap_or(rest.len());
    (rest[..len].to_ascii_lowercase(), len)
}

/// Where the tag starting at `from` (just after its name) ends: the index after its `>`,
/// skipping quoted attribute values; and whether it ends with `/>`.
fn tag_end(html: &str, from: usize) -> (usize, bool) {
    let bytes = html.as_bytes();
    let mut quote = None;
    let mut i = from;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'>' => return (i + 1, i > from && bytes[i - 1] == b'/'),
            None => {}
        }
        i += 1;
    }
    (bytes.len(), false)
}

/// Where the end tag of `name` (any case) starts, at or after `from`.
fn find_end_tag(html: &str, from: usize, name: &str) -> Option<usize> {
    let mut at = from;
    while let Some(offset) = html.get(at..)?.find("</") {
        let start = at + offset;
        let candidate = html.get(start + 2..start + 2 + name.len());
        if candidate.is_some_and(|c| c.eq_ignore_ascii_case(name)) {
            return Some(start);
        }
        at = start + 2;
    }
    None
}

/// `html` with elements deeper than `max_depth` unwrapped (their tags dropped, their content
/// kept).
pub fn limit_depth(html: &str, max_depth: usize) -> String {
    let mut out = String::with_capacity(html.len());
    let mut open: Vec<String> = Vec::new();
    let mut i = 0;
    while let Some(offset) = html[i..].find('<') {
        let at = i + offset;
        out.push_str(&html[i..at]);
        let rest = &html[at + 1..];
        if let Some(comment) = rest.strip_prefix("!--") {
            let end = comment
                .find("-->")
                .map_or(html.len(), |e| at + 1 + 3 + e + 3);
            out.push_str(&html[at..end]);
            i = end;
            continue;
        }
        if rest.starts_with('!') || rest.starts_with('?') {
            let end = rest.find('>').map_or(html.len(), |e| at + 1 + e + 1);
            out.push_str(&html[at..end]);
            i = end;
            continue;
        }
        if let Some(after_slash) = rest.strip_prefix('/') {
            let (name, len) = tag_name(after_slash);
            if name.is_empty() {
                out.push('<');
                i = at + 1;
                continue;
            }
            let (end, _) = tag_end(html, at + 2 + len);
            if let Some(position) = open.iter().rposition(|n| *n == name) {
                open.truncate(position);
                out.push_str(&html[at..end]);
            }
            // An end tag for an element never kept (or never opened) is dropped.
            i = end;
            continue;
        }
        let (name, len) = tag_name(rest);
        if name.is_empty() || !rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
            out.push('<');
            i = at + 1;
            continue;
        }
        let (end, self_closing) = tag_end(html, at + 1 + len);
        if RAW_TEXT.contains(&name.as_str()) {
            // Copied through its end tag: its content is not markup.
            let body_end = find_end_tag(html, end, &name).map_or(html.len(), |close_at| {
                tag_end(html, close_at + 2 + name.len()).0
            });
            out.push_str(&html[at..body_end]);
            i = body_end;
            continue;
        }
        if VOID.contains(&name.as_str()) || self_closing {
            out.push_str(&html[at..end]);
            i = end;
            continue;
        }
        if SELF_CLOSING_SIBLINGS.contains(&name.as_str()) {
            if let Some(position) = open.iter().rposition(|n| *n == name) {
                open.truncate(position);
            }
        }
        if open.len() < max_depth {
            open.push(name);
            out.push_str(&html[at..end]);
        }
        i = end;
    }
    out.push_str(&html[i..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_pages_pass_unchanged() {
        let page = "<!DOCTYPE html><html><head><title>a < b</title><style>p > a {}</style>\
                    <script>if (a<b) { x = '</div>'; }</script></head><body>\
                    <!-- <div> in a comment --><ul><li>one<li>two</ul>\
                    <p class=\"x>y\">text<br/><img src=a.png>more</p></body></html>";
        assert_eq!(limit_depth(page, MAX_HTML_DEPTH), page);
    }

    #[test]
    fn elements_past_the_limit_are_unwrapped_and_their_text_kept() {
        let html = format!("{}deep{}", "<div>".repeat(10), "</div>".repeat(10));
        let limited = limit_depth(&html, 3);
        assert_eq!(limited, "<div><div><div>deep</div></div></div>");
    }

    #[test]
    fn unclosed_siblings_do_not_count_as_nesting() {
        let html = format!("<ul>{}</ul>", "<li>item".repeat(1000));
        assert_eq!(limit_depth(&html, 4), html);
    }

    #[test]
    fn stray_angle_brackets_and_unmatched_end_tags() {
        assert_eq!(limit_depth("1 < 2 <3", 4), "1 < 2 <3");
        assert_eq!(limit_depth("a</b>c", 4), "ac");
        assert_eq!(limit_depth("<a href='x", 4), "<a href='x");
    }
}
