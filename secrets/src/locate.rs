//! Where a named bundle lives in the secrets directory, and why a name that does not resolve to
//! an age file is refused (plaintext, sops, or simply missing).

use std::path::{Path, PathBuf};

use crate::error::BundleError;

const PLAINTEXT_EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// Resolves bundle `name` to its age file in `secrets_dir`.
///
/// `name` or `name.age` is looked up; a plaintext or sops file where the age file should be is
/// an error that says how to fix it, and a missing bundle lists the bundles that do exist.
pub fn locate(secrets_dir: &Path, name: &str) -> Result<PathBuf, BundleError> {
    if !is_plain_name(name) {
        return Err(BundleError::InvalidName { name: name.to_string() });
    }
    let age_path =
        if name.ends_with(".age") { secrets_dir.join(name) } else { secrets_dir.join(format!("{name}.age")) };
    if age_path.is_file() {
        return Ok(age_path);
    }
    let stem = name.strip_suffix(".age").unwrap_or(name);

    let sops = sops_candidates(secrets_dir, stem);
    if let Some(path) = sops.iter().find(|p| p.is_file()) {
        return Err(BundleError::Unsupported {
            path: path.clone(),
            reason: "sops bundles are not supported; use an age-encrypted bundle \
                     (`sops -d` it, then encrypt the plaintext with `age -r <recipient>`)"
                .to_string(),
        });
    }
    let plaintext = plaintext_candidates(secrets_dir, stem);
    if let Some(path) = plaintext.iter().find(|p| p.is_file()) {
        return Err(BundleError::PlaintextRefused {
            plaintext: path.clone(),
            target: age_path,
            recipient: None,
            key_path: None,
        });
    }

    let mut looked_for = vec![age_path];
    looked_for.extend(sops);
    looked_for.extend(plaintext);
    Err(BundleError::NotFound {
        name: name.to_string(),
        dir: secrets_dir.to_path_buf(),
        looked_for,
        available: available_bundles(secrets_dir),
    })
}

/// `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$` without `..`: a file name in the secrets directory,
/// never a path out of it.
fn is_plain_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && !name.contains("..")
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn has_plaintext_extension(name: &str) -> bool {
    PLAINTEXT_EXTENSIONS.iter().any(|ext| name.strip_suffix(ext).is_some_and(|rest| rest.ends_with('.')))
}

fn is_sops_name(name: &str) -> bool {
    name.ends_with(".sops") || name.contains(".sops.")
}

fn sops_candidates(dir: &Path, stem: &str) -> Vec<PathBuf> {
    if is_sops_name(stem) {
        return vec![dir.join(stem)];
    }
    PLAINTEXT_EXTENSIONS.iter().map(|ext| dir.join(format!("{stem}.sops.{ext}"))).collect()
}

fn plaintext_candidates(dir: &Path, stem: &str) -> Vec<PathBuf> {
    if is_sops_name(stem) {
        return Vec::new();
    }
    if has_plaintext_extension(stem) {
        return vec![dir.join(stem)];
    }
    PLAINTEXT_EXTENSIONS.iter().map(|ext| dir.join(format!("{stem}.{ext}"))).collect()
}

/// Names of the `*.age` files in `dir`, sorted; empty when the directory cannot be read (the
/// not-found message then says "none", which is also the truth for the caller).
fn available_bundles(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str().map(str::to_string))
        .filter_map(|file| file.strip_suffix(".age").filter(|stem| !stem.is_empty()).map(str::to_string))
        .collect();
    names.sort();
    names
}
