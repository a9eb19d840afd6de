//! Line numbers for refusals: where each YAML document of a rule file starts, and where a key
//! sits inside one. The parser gives values, not positions; these scans give the positions a
//! person needs to find the problem.

/// One YAML document of a file: its first line (1-based) and its text.
#[derive(Debug, Clone, Copy)]
pub struct Doc<'a> {
    pub line: u32,
    pub text: &'a str,
}

/// Splits a YAML stream at `---` lines. A file without separators is one document.
pub fn documents(text: &str) -> Vec<Doc<'_>> {
    let mut docs = Vec::new();
    let mut start_byte = 0usize;
    let mut start_line = 1u32;
    let mut offset = 0usize;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let n = u32::try_from(i).unwrap_or(u32::MAX).saturating_add(1);
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") {
            let body = &text[start_byte..offset];
            if !body.trim().is_empty() {
                docs.push(Doc {
                    line: start_line,
                    text: body,
                });
            }
            start_byte = offset + line.len();
            start_line = n.saturating_add(1);
        }
        offset += line.len();
    }
    let body = &text[start_byte..];
    if !body.trim().is_empty() {
        docs.push(Doc {
            line: start_line,
            text: body,
        });
    }
    docs
}

/// The line of the first key `key` (bare, or followed by `|modifiers`) in `doc`.
pub fn key_line(doc: &Doc<'_>, key: &str) -> Option<u32> {
    for (i, line) in doc.text.lines().enumerate() {
        let mut t = line.trim_start();
        if let Some(rest) = t.strip_prefix("- ") {
            t = rest.trim_start();
        }
        let t = t.trim_start_matches(['\'', '"']);
        if let Some(rest) = t.strip_prefix(key) {
            let rest = rest.trim_start_matches(['\'', '"']);
            if rest.starts_with(':') || (rest.starts_with('|') && !key.is_empty()) {
                let i = u32::try_from(i).unwrap_or(u32::MAX);
                return Some(doc.line.saturating_add(i));
            }
        }
    }
    None
}

/// The line of the first occurrence of `needle` anywhere in `doc`.
pub fn text_line(doc: &Doc<'_>, needle: &str) -> Option<u32> {
    doc.text.lines().enumerate().find_map(|(i, l)| {
        l.contains(needle).then(|| {
            doc.line
                .saturating_add(u32::try_from(i).unwrap_or(u32::MAX))
        })
    })
}

/// Turns a parser message's `line N` (relative to the document) into a file line.
pub fn parser_line(doc: &Doc<'_>, message: &str) -> Option<u32> {
    let at = message.find("line ")?;
    let digits: String = message[at + 5..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let n: u32 = digits.parse().ok()?;
    Some(doc.line.saturating_add(n.saturating_sub(1)))
}

/// The first line where `doc` nests deeper than `max` (flow brackets, or block indentation at
/// two columns a level), so the YAML parser never recurses that deep.
pub fn too_deep(doc: &Doc<'_>, max: usize) -> Option<(u32, String)> {
    let mut depth = 0usize;
    for (i, line) in doc.text.lines().enumerate() {
        let n = doc
            .line
            .saturating_add(u32::try_from(i).unwrap_or(u32::MAX));
        let indent = line.len() - line.trim_start_matches([' ', '-']).len();
        if indent / 2 > max {
            return Some((
                n,
                format!("YAML nested deeper than {max} levels (indentation)"),
            ));
        }
        let mut quote: Option<char> = None;
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '#') => break,
                (None, '[' | '{') => {
                    depth += 1;
                    if depth > max {
                        return Some((n, format!("YAML nested deeper than {max} levels")));
                    }
                }
                (None, ']' | '}') => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_and_keys() {
        let text = "title: a\ndetection:\n  sel:\n    Image|endswith: x\n---\ntitle: b\nid: 1\n";
        let docs = documents(text);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].line, 6);
        assert_eq!(key_line(&docs[0], "Image"), Some(4));
        assert_eq!(key_line(&docs[1], "id"), Some(7));
        assert_eq!(key_line(&docs[1], "Image"), None);
    }
}
