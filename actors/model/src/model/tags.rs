//! Sandbox tags as Proxmox keeps them.
//!
//! Proxmox checks each tag against `PVE_TAG_RE` (pve-common `src/PVE/JSONSchema.pm`:
//! `[a-z0-9_][a-z0-9_\-\+\.]*`, case-insensitive) and then stores them lower-cased, sorted
//! and without duplicates (pve-guest-common `src/PVE/GuestHelpers.pm` get_unique_tags,
//! 349-378, unless the datacenter's `tag-style` says `case-sensitive`). Normalising them the
//! same way before they are recorded keeps the record equal to the VM.

/// Why a tag was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tag `{0}`: a tag starts with a letter, digit or `_` and has only letters, digits, `_`, `-`, `+`, `.`")]
pub struct InvalidTag(pub String);

pub fn is_valid(tag: &str) -> bool {
    let mut chars = tag.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '.'))
}

/// The tags as Proxmox will store them: checked, lower-cased, sorted, each once.
pub fn normalize(tags: &[String]) -> Result<Vec<String>, InvalidTag> {
    let mut out = Vec::with_capacity(tags.len());
    for tag in tags {
        if !is_valid(tag) {
            return Err(InvalidTag(tag.clone()));
        }
        out.push(tag.to_ascii_lowercase());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_kept_as_proxmox_keeps_them() {
        let given = ["Team-A", "blue", "team-a", "API.v2"].map(String::from);
        assert_eq!(normalize(&given), Ok(vec!["api.v2".to_string(), "blue".into(), "team-a".into()]));
        assert_eq!(normalize(&["-x".to_string()]), Err(InvalidTag("-x".into())));
        assert!(!is_valid("a b") && !is_valid("") && is_valid("_ok+1"));
    }
}
