//! Resolving bundle names in the secrets directory: age files found, plaintext and sops
//! refused with a fix, missing bundles listed, names that could escape the directory refused.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a broken fixture should fail the test at once, with its cause"
)]

use std::path::Path;

use agentlab_secrets::{BundleError, BundleFormat, Located, bundle_names, locate};

fn touch(dir: &Path, file: &str) {
    std::fs::write(dir.join(file), "x").unwrap();
}

fn locate_err(dir: &Path, name: &str) -> BundleError {
    match locate(dir, name) {
        Ok(found) => panic!("expected an error for {name:?}, found {}", found.path.display()),
        Err(e) => e,
    }
}

#[test]
fn finds_age_file_with_or_without_suffix() {
    let dir = tempfile::tempdir().unwrap();
    touch(dir.path(), "prod.age");
    for name in ["prod", "prod.age"] {
        let found = locate(dir.path(), name).unwrap();
        assert_eq!(found, Located { path: dir.path().join("prod.age"), format: BundleFormat::Age });
    }
}

#[test]
fn age_file_wins_over_plaintext_next_to_it() {
    let dir = tempfile::tempdir().unwrap();
    touch(dir.path(), "prod.age");
    touch(dir.path(), "prod.yaml");
    assert_eq!(locate(dir.path(), "prod").unwrap().path, dir.path().join("prod.age"));
}

#[test]
fn plaintext_is_refused_with_the_command_to_encrypt_it() {
    let dir = tempfile::tempdir().unwrap();
    for (file, name, target) in [
        ("a.yaml", "a", "a.age"),
        ("b.yml", "b", "b.age"),
        ("c.json", "c.age", "c.age"),
        ("d.yaml", "d.yaml", "d.yaml.age"),
    ] {
        touch(dir.path(), file);
        let err = locate_err(dir.path(), name);
        assert_eq!(err.code(), "v1/secrets/plaintext_refused", "{name}: {err}");
        let message = err.to_string();
        let (plain, out) = (dir.path().join(file), dir.path().join(target));
        let age_command = format!("age -r <recipient> -o {} {}", out.display(), plain.display());
        let seal_command =
            format!("agentlabd secrets seal --key <identity file> --in {} --out {}", plain.display(), out.display());
        assert!(message.contains("plaintext"), "{message}");
        assert!(message.contains(&age_command), "{message}\nmissing: {age_command}");
        assert!(message.contains(&seal_command), "{message}\nmissing: {seal_command}");
        assert!(message.contains(&format!("rm {}", plain.display())), "{message}");
    }
}

#[test]
fn sops_bundles_are_found_and_an_age_and_a_sops_file_of_one_name_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (file, name) in
        [("a.sops.yaml", "a"), ("b.sops.yml", "b"), ("c.sops.json", "c"), ("d.sops.yaml", "d.sops.yaml")]
    {
        touch(dir.path(), file);
        let found = locate(dir.path(), name).unwrap();
        assert_eq!(found, Located { path: dir.path().join(file), format: BundleFormat::Sops }, "{name}");
    }
    touch(dir.path(), "a.age");
    let err = locate_err(dir.path(), "a");
    assert_eq!(err.code(), "v1/secrets/ambiguous", "{err}");
    assert!(err.to_string().contains("a.age") && err.to_string().contains("a.sops.yaml"), "{err}");
    assert_eq!(locate(dir.path(), "a.age").unwrap().format, BundleFormat::Age, "the file name is unambiguous");
    assert_eq!(bundle_names(dir.path()), ["a", "b", "c", "d"]);
}

#[test]
fn not_found_lists_what_was_looked_for_and_what_exists() {
    let dir = tempfile::tempdir().unwrap();
    touch(dir.path(), "staging.age");
    touch(dir.path(), "dev.age");
    touch(dir.path(), "notes.txt");
    let err = locate_err(dir.path(), "prod");
    assert_eq!(err.code(), "v1/secrets/not_found");
    let message = err.to_string();
    assert!(message.contains(&dir.path().join("prod.age").display().to_string()), "{message}");
    assert!(message.contains(&dir.path().join("prod.yaml").display().to_string()), "{message}");
    assert!(message.contains("bundles present: dev, staging"), "{message}");
    assert!(!message.contains("notes"), "{message}");

    let missing_dir = dir.path().join("nope");
    let message = locate_err(&missing_dir, "prod").to_string();
    assert!(message.contains("bundles present: none"), "{message}");
}

#[test]
fn names_that_are_not_plain_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let long = "a".repeat(65);
    for name in ["", "../etc/passwd", "..", "a..b", "/etc/shadow", "a/b", ".hidden", "-flag", "a b", "é", &long] {
        let err = locate_err(dir.path(), name);
        assert_eq!(err.code(), "v1/secrets/invalid_name", "{name:?}: {err}");
        assert!(err.to_string().contains("is not a plain name"), "{err}");
    }
    let max = "a".repeat(64);
    touch(dir.path(), &format!("{max}.age"));
    locate(dir.path(), &max).unwrap();
    for name in ["A-1_b.c", "9x"] {
        assert_eq!(locate_err(dir.path(), name).code(), "v1/secrets/not_found", "{name}");
    }
}
