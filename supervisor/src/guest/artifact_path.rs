//! An artifact's path as a guest names it: relative, plain components only. The guest never
//! chooses where on the host a file lands beyond a name under its job's directory.

use std::path::{Component, Path, PathBuf};

const MAX_PATH_BYTES: usize = 255;

/// The relative path to store under `<artifact_dir>/<job>/`, or why it is refused.
pub fn checked(path: &str) -> Result<PathBuf, String> {
    let refuse = |why: &str| Err(format!("artifact path `{path}` refused: {why}"));
    if path.is_empty() || path.len() > MAX_PATH_BYTES {
        return refuse("it must be 1 to 255 bytes");
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return refuse("control characters and backslashes are not allowed");
    }
    // Bidirectional overrides and isolates make a name read as another one on a terminal
    // (`evil\u{202e}txt.sh`; security review F18).
    if path.chars().any(is_bidi_control) {
        return refuse("bidirectional control characters are not allowed");
    }
    let mut out = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => {
                let text = part.to_string_lossy();
                if text.starts_with('.') {
                    return refuse("no component may start with `.`");
                }
                out.push(part);
            }
            Component::CurDir => {}
            Component::ParentDir => return refuse("`..` is not allowed"),
            Component::RootDir | Component::Prefix(_) => return refuse("it must be relative"),
        }
    }
    if out.as_os_str().is_empty() {
        return refuse("it names no file");
    }
    Ok(out)
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The MIME type to store: the client's if it is a plain type, else by extension.
pub fn mime_for(path: &Path, content_type: Option<&str>) -> String {
    if let Some(ct) = content_type.map(|c| c.split(';').next().unwrap_or("").trim())
        && !ct.is_empty()
        && ct.len() < 100
        && ct.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '+' | '.'))
        && ct.contains('/')
    {
        return ct.to_string();
    }
    let name = path.to_string_lossy();
    let mime = if name.ends_with(".tar.gz") || name.ends_with(".tgz") || name.ends_with(".gz") {
        "application/gzip"
    } else if name.ends_with(".json") {
        "application/json"
    } else if name.ends_with(".txt") || name.ends_with(".log") {
        "text/plain"
    } else {
        "application/octet-stream"
    };
    mime.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_absolute_paths_are_refused() {
        assert_eq!(checked("agentlab-artifacts.tar.gz"), Ok(PathBuf::from("agentlab-artifacts.tar.gz")));
        assert_eq!(checked("./logs/run.log"), Ok(PathBuf::from("logs/run.log")));
        for bad in [
            "",
            "../x",
            "a/../../x",
            "/etc/passwd",
            ".hidden",
            "a/.git/config",
            "a\\b",
            "a\nb",
            ".",
            "evil\u{202e}txt.sh",
            "a\u{1b}[2J",
        ] {
            assert!(checked(bad).is_err(), "{bad:?}");
        }
        assert!(checked(&"a".repeat(256)).is_err());
    }

    #[test]
    fn mime_comes_from_a_sane_header_or_the_extension() {
        let p = Path::new("x.tar.gz");
        assert_eq!(mime_for(p, Some("application/gzip")), "application/gzip");
        assert_eq!(mime_for(p, Some("text/html\"><script>")), "application/gzip");
        assert_eq!(mime_for(Path::new("r.json"), None), "application/json");
        assert_eq!(mime_for(Path::new("bin"), None), "application/octet-stream");
    }
}
