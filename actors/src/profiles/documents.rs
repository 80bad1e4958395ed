//! Splitting a YAML stream into its documents, keeping each one's first line so errors can
//! name the document a user sees in the file (a loader that loses documents leaves the user guessing which one is wrong).

/// One document of a file: its 1-based index and the text, with the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document<'a> {
    pub index: usize,
    pub first_line: usize,
    pub text: &'a str,
}

/// A `---` at column 0 always starts a document in YAML (block scalars must be indented),
/// and `...` ends one. Leading directives before the first `---` belong to the first.
pub fn split(text: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1usize;
    let mut offset = 0usize;
    let mut seen_content = false;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_start = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t");
        let is_end = bare == "...";
        if is_start || is_end {
            if seen_content || is_end || start != offset {
                docs.push((start, offset, start_line));
            }
            // A `--- value` line carries content of the new document after the marker.
            start = if is_start && bare.len() > 3 { offset + 3 } else { offset + line.len() };
            start_line = n + 1 + usize::from(!(is_start && bare.len() > 3));
            seen_content = is_start && bare.len() > 3;
        } else if !bare.trim().is_empty() {
            seen_content = true;
        }
        offset += line.len();
    }
    if start < text.len() {
        docs.push((start, text.len(), start_line));
    }
    docs.into_iter()
        .enumerate()
        .map(|(i, (from, to, first_line))| Document { index: i + 1, first_line, text: &text[from..to] })
        .collect()
}

/// True when a document holds nothing but comments, directives and blank lines.
pub fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t.starts_with('%')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_markers_and_keeps_first_lines() {
        let text = "# header comment\n---\nname: a\n---\nname: b\nx: 1\n...\n---\nname: c\n";
        let docs = split(text);
        let summary: Vec<(usize, usize, bool)> =
            docs.iter().map(|d| (d.index, d.first_line, is_blank(d.text))).collect();
        assert_eq!(summary, vec![(1, 1, true), (2, 3, false), (3, 5, false), (4, 9, false)]);
        assert_eq!(docs[2].text, "name: b\nx: 1\n");
    }

    #[test]
    fn a_file_without_markers_is_one_document() {
        let docs = split("name: a\ntemplate_vmid: 9000\n");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].first_line, 1);
    }

    #[test]
    fn indented_dashes_in_block_scalars_do_not_split() {
        let docs = split("name: a\ndescription: |\n  ---\n  still a\n");
        assert_eq!(docs.len(), 1);
    }
}
