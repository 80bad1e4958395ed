//! `+modifier` resolution: `+small +secure` names the profile `secure-small`.
//!
//! Modifiers are lower-cased, de-duplicated, sorted and joined with `-`. The valid
//! modifiers are every `-`-separated token of every loaded profile name.

use super::suggest;
use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModifierError {
    #[error("no modifiers given: pass one or more `+name` arguments or --profile")]
    Empty,
    #[error("`{0}` is not a modifier: modifiers start with `+` and come after the flags")]
    NotAModifier(String),
    #[error("unknown modifier `+{token}`{}; valid modifiers: {}", hint(.suggestion), plus_list(.valid))]
    UnknownModifier { token: String, suggestion: Option<String>, valid: Vec<String> },
    #[error("no profile named `{name}` for these modifiers{}", did_you_mean(.suggestions))]
    NoSuchProfile { name: String, suggestions: Vec<String> },
}

fn hint(suggestion: &Option<String>) -> String {
    suggestion.as_ref().map(|s| format!(" (did you mean `+{s}`?)")).unwrap_or_default()
}

fn plus_list(valid: &[String]) -> String {
    valid.iter().map(|v| format!("+{v}")).collect::<Vec<_>>().join(" ")
}

fn did_you_mean(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", suggestions.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", "))
    }
}

/// Every modifier the given profile names make valid, sorted.
pub fn valid_modifiers<'a>(profile_names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let tokens: BTreeSet<String> = profile_names
        .into_iter()
        .flat_map(|name| name.split('-'))
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    tokens.into_iter().collect()
}

/// Resolves `+mod` arguments to the name of a loaded profile.
pub fn resolve(modifiers: &[String], profile_names: &[String]) -> Result<String, ModifierError> {
    let valid = valid_modifiers(profile_names.iter().map(String::as_str));
    let mut tokens = BTreeSet::new();
    for arg in modifiers {
        let token = arg.strip_prefix('+').ok_or_else(|| ModifierError::NotAModifier(arg.clone()))?;
        let token = token.trim().to_ascii_lowercase();
        if !valid.contains(&token) {
            let suggestion = suggest::nearest(&token, valid.iter().map(String::as_str)).map(str::to_string);
            return Err(ModifierError::UnknownModifier { token, suggestion, valid });
        }
        tokens.insert(token);
    }
    if tokens.is_empty() {
        return Err(ModifierError::Empty);
    }
    let name = tokens.into_iter().collect::<Vec<_>>().join("-");
    resolve_profile_name(&name, profile_names)
        .ok_or_else(|| ModifierError::NoSuchProfile { suggestions: suggest_profiles(&name, profile_names), name })
}

/// The loaded profile whose name matches `name` case-insensitively.
pub fn resolve_profile_name(name: &str, profile_names: &[String]) -> Option<String> {
    profile_names.iter().find(|p| p.eq_ignore_ascii_case(name)).cloned()
}

/// Up to three loaded profile names near `name`.
pub fn suggest_profiles(name: &str, profile_names: &[String]) -> Vec<String> {
    suggest::ranked(name, profile_names.iter().map(String::as_str), 3).into_iter().map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["yolo-ephemeral", "small", "secure", "secure-small", "interactive-dev"].map(String::from).to_vec()
    }

    #[test]
    fn modifiers_sort_dedupe_and_join() {
        let mods = ["+small", "+Secure", "+small"].map(String::from);
        assert_eq!(resolve(&mods, &names()), Ok("secure-small".to_string()));
        assert_eq!(resolve(&["+small".to_string()], &names()), Ok("small".to_string()));
    }

    #[test]
    fn unknown_modifier_lists_valid_ones_and_suggests() {
        let err = resolve(&["+smal".to_string()], &names()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("did you mean `+small`"), "{text}");
        assert!(text.contains("+secure"), "{text}");
    }

    #[test]
    fn a_combination_without_profile_is_refused_with_suggestions() {
        let err = resolve(&["+small".to_string(), "+dev".to_string()], &names()).unwrap_err();
        match err {
            ModifierError::NoSuchProfile { name, .. } => assert_eq!(name, "dev-small"),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn arguments_without_plus_are_refused() {
        assert!(matches!(resolve(&["small".to_string()], &names()), Err(ModifierError::NotAModifier(_))));
        assert_eq!(resolve(&[], &names()), Err(ModifierError::Empty));
    }
}
