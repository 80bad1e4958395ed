//! Where a named bundle lives in the secrets directory (an age file `name.age`, or a sops file
//! `name.sops.yaml`), and why a name that resolves to neither is refused (plaintext, two
//! bundles of one name, or simply missing).

use std::path::{Path, PathBuf};

use crate::error::BundleError;

const PLAINTEXT_EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// How a bundle file is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleFormat {
    /// One age file (binary or armored) holding the YAML bundle.
    Age,
    /// A sops file whose data key is sealed to the daemon's age recipient.
    Sops,
}

/// A bundle file found by [`locate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub path: PathBuf,
    pub format: BundleFormat,
}

/// Resolves bundle `name` in `secrets_dir`.
///
/// `name`, `name.age` or `name.sops.{yaml,yml,json}` is looked up (a name that already ends in
/// one of those is taken as the file name). An age and a sops file of one name are refused
/// rather than one silently chosen; a plaintext file where the bundle should be is an error
/// that says how to fix it, and a missing bundle lists the bundles that do exist.
pub fn locate(secrets_dir: &Path, name: &str) -> Result<Located, BundleError> {
    if !is_plain_name(name) {
        return Err(BundleError::InvalidName { name: name.to_string() });
    }
    let age_path =
        if name.ends_with(".age") { secrets_dir.join(name) } else { secrets_dir.join(format!("{name}.age")) };
    let stem = name.strip_suffix(".age").unwrap_or(name);
    let sops = sops_candidates(secrets_dir, stem);
    let sops_found = if name.ends_with(".age") { None } else { sops.iter().find(|p| p.is_file()) };
    match (age_path.is_file() && !is_sops_name(stem), sops_found) {
        (true, Some(sops_path)) => {
            return Err(BundleError::Ambiguous { name: name.to_string(), paths: vec![age_path, sops_path.clone()] });
        }
        (true, None) => return Ok(Located { path: age_path, format: BundleFormat::Age }),
        (false, Some(sops_path)) => return Ok(Located { path: sops_path.clone(), format: BundleFormat::Sops }),
        (false, None) => {}
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
        available: bundle_names(secrets_dir),
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
    sops_stem(name).is_some()
}

/// `prod` for `prod.sops.yaml`, `prod.sops.yml` or `prod.sops.json`.
fn sops_stem(name: &str) -> Option<&str> {
    PLAINTEXT_EXTENSIONS
        .iter()
        .find_map(|ext| name.strip_suffix(ext).and_then(|rest| rest.strip_suffix(".sops.")))
        .filter(|stem| !stem.is_empty())
}

/// Whether `path` names a sops bundle file (`*.sops.yaml`, `.yml`, `.json`).
pub fn is_sops_path(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(is_sops_name)
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

/// Names of the `*.age` and `*.sops.{yaml,yml,json}` files in `dir`, sorted and deduplicated;
/// empty when the directory cannot be read (the not-found message then says "none", which is
/// also the truth for the caller).
pub fn bundle_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|entry| entry.file_name().to_str().map(str::to_string))
        .filter_map(|file| {
            let stem = file.strip_suffix(".age").filter(|stem| !stem.is_empty()).or_else(|| sops_stem(&file));
            stem.filter(|stem| is_plain_name(stem)).map(str::to_string)
        })
        .collect();
    names.sort();
    names.dedup();
    names
}
