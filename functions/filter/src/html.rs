//! Reads HTML the way a filter needs it: the text a reader would see, the
//! element names used, the images, and the links. This is not a sanitiser
//! and renders nothing: it only has to be bounded and never fail, so a
//! small scanner does; an HTML5 parser would add a large dependency to the
//! filter function for no better verdict.

use std::collections::BTreeSet;

/// At most this many links are taken from one document.
const MAX_LINKS: usize = 500;

#[derive(Debug, Default)]
pub struct Document {
    pub text: String,
    /// Distinct element names, lower-cased.
    pub tags: BTreeSet<String>,
    pub images: usize,
    /// `href` of `a`/`area`, `src` of `img`, `action` of `form`.
    pub links: Vec<String>,
}

/// Reads `markup`.
pub fn read(markup: &str) -> Document {
    let mut doc = Document::default();
    let mut rest = markup;
    let mut skip_until: Option<&'static str> = None;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            if skip_until.is_none() {
                push_text(&mut doc.text, rest);
            }
            break;
        };
        if skip_until.is_none() {
            push_text(&mut doc.text, &rest[..lt]);
        }
        rest = &rest[lt..];
        if rest.starts_with("<!--") {
            rest = rest.find("-->").map_or("", |e| &rest[e + 3..]);
            continue;
        }
        let Some(gt) = rest.find('>') else { break };
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        let closing = tag.starts_with('/');
        let body = tag.trim_start_matches('/');
        let name_end = body
            .find(|c: char| c.is_whitespace() || c == '/')
            .unwrap_or(body.len());
        let name = body[..name_end].to_ascii_lowercase();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
            continue;
        }
        if let Some(end) = skip_until {
            if closing && name == end {
                skip_until = None;
            }
            continue;
        }
        if doc.tags.len() < 200 {
            doc.tags.insert(name.clone());
        }
        if closing {
            continue;
        }
        let attrs = &body[name_end..];
        match name.as_str() {
            "script" => skip_until = Some("script"),
            "style" => skip_until = Some("style"),
            "img" => {
                doc.images += 1;
                link(&mut doc.links, attrs, "src");
            }
            "a" | "area" => link(&mut doc.links, attrs, "href"),
            "form" => link(&mut doc.links, attrs, "action"),
            "br" | "p" | "div" | "tr" | "li" | "td" | "h1" | "h2" | "h3" => doc.text.push(' '),
            _ => {}
        }
    }
    doc
}

fn link(links: &mut Vec<String>, attrs: &str, name: &str) {
    if links.len() >= MAX_LINKS {
        return;
    }
    if let Some(value) = attribute(attrs, name) {
        links.push(decode_entities(&value));
    }
}

/// The value of attribute `name` in `attrs` (quoted or not).
fn attribute(attrs: &str, name: &str) -> Option<String> {
    let lower = attrs.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find(name) {
        let start = from + at;
        from = start + name.len();
        let before_ok = start == 0 || lower.as_bytes()[start - 1].is_ascii_whitespace();
        let after = lower[from..].trim_start();
        if !before_ok || !after.starts_with('=') {
            continue;
        }
        let value_start = attrs.len() - after.len() + 1;
        let value = attrs[value_start..].trim_start();
        return Some(match value.chars().next() {
            Some(q @ ('"' | '\'')) => value[1..].split(q).next().unwrap_or("").to_string(),
            _ => value
                .split(|c: char| c.is_whitespace())
                .next()
                .unwrap_or("")
                .to_string(),
        });
    }
    None
}

fn push_text(out: &mut String, text: &str) {
    if text.contains('&') {
        out.push_str(&decode_entities(text));
    } else {
        out.push_str(text);
    }
}

/// Decodes the character references people use to hide words from
/// filters: named ones of the common kind and numeric ones.
pub fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let end = rest[1..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '#'))
            .map_or(rest.len(), |e| e + 1);
        let name = &rest[1..end];
        let decoded = match name {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some(' '),
            _ => name.strip_prefix('#').and_then(|n| {
                let code = match n.strip_prefix(['x', 'X']) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => n.parse().ok(),
                };
                code.and_then(char::from_u32)
            }),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end..];
                if rest.starts_with(';') {
                    rest = &rest[1..];
                }
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_links_and_hidden_parts() {
        let doc = read(
            "<html><head><style>p{color:red}</style><script>alert(1)</script></head>\
             <body><p>Buy&nbsp;n&#111;w</p><a href=\"http://x.example/a?b=1&amp;c\">here</a>\
             <img src='http://img.example/1.gif'><!-- hidden words --><A HREF=http://y.example>y</A></body></html>",
        );
        assert!(doc.text.contains("Buy now"), "{}", doc.text);
        assert!(!doc.text.contains("color"), "{}", doc.text);
        assert!(!doc.text.contains("alert"), "{}", doc.text);
        assert!(!doc.text.contains("hidden"), "{}", doc.text);
        assert_eq!(
            doc.links,
            [
                "http://x.example/a?b=1&c",
                "http://img.example/1.gif",
                "http://y.example"
            ]
        );
        assert_eq!(doc.images, 1);
        assert!(doc.tags.contains("a") && doc.tags.contains("img"));
    }

    #[test]
    fn broken_markup_ends() {
        for m in ["<", "<a href=", "<!--", "&#xFFFFFFFF;", "&", "<<<>>>", "<p"] {
            let _ = read(m);
        }
        assert_eq!(decode_entities("&#xFFFFFFFF; &x"), "&#xFFFFFFFF; &x");
    }
}
