//! Changing bundles in place (set/unset env, git fields, SSH keys) in both formats, and rotating
//! the daemon's key: the rest of the bundle kept, bad changes refused with nothing written, and
//! after a rotation every bundle opens with the new key alone.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a broken fixture should fail the test at once, with its cause"
)]

mod support;

use std::path::{Path, PathBuf};

use agentlab_secrets::{
    AgeKey, BundleChange, BundleFormat, GitField, SopsLayout, edit_bundle, encrypt_sops, load_bundle, rotate_key, seal,
    write_identity,
};
use support::yaml_value;

const PLAIN: &str = "version: 1\nmetadata:\n  owner: ops\nenv:\n  B_KEY: \"b-value\"\n  A_KEY: \"a-value\"\n";

fn setup(file: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("age.key");
    write_identity(&key).unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    let plain = dir.path().join("plain.yaml");
    std::fs::write(&plain, PLAIN).unwrap();
    seal(&key, &plain, &dir.path().join("secrets").join(file)).unwrap();
    (dir, key)
}

fn secrets(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("secrets")
}

fn set_env(name: &str, value: &str) -> BundleChange {
    BundleChange::SetEnv { name: name.into(), value: value.into() }
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn env_git_and_ssh_changes_keep_the_rest_in_both_formats() {
    for (file, format) in [("prod.age", BundleFormat::Age), ("prod.sops.yaml", BundleFormat::Sops)] {
        let (dir, key_path) = setup(file);
        let key = AgeKey::load(&key_path).unwrap();
        let dir_path = secrets(&dir);

        let edited = edit_bundle(&dir_path, "prod", &key, &set_env("A_KEY", "a-new")).unwrap();
        assert_eq!((edited.format, edited.created), (format, false));
        edit_bundle(&dir_path, "prod", &key, &set_env("C_KEY", "c-value")).unwrap();
        edit_bundle(&dir_path, "prod", &key, &BundleChange::UnsetEnv { name: "B_KEY".into() }).unwrap();
        let token = BundleChange::SetGit { field: GitField::Token, value: "ghp_new".into() };
        edit_bundle(&dir_path, "prod", &key, &token).unwrap();
        let ssh = BundleChange::AddSshKey {
            name: "deploy".into(),
            key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIabc ops@laptop\n".into(),
            key_type: None,
            comment: None,
        };
        edit_bundle(&dir_path, "prod", &key, &ssh).unwrap();
        let private = BundleChange::AddSshKey {
            name: "oops".into(),
            key: "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n".into(),
            key_type: None,
            comment: None,
        };
        let refused = edit_bundle(&dir_path, "prod", &key, &private).unwrap_err();
        assert!(
            refused.to_string().contains("that is a private key") && !refused.to_string().contains("abc"),
            "{refused}"
        );

        let loaded = load_bundle(&dir_path, "prod", &key_path).unwrap();
        assert_eq!(loaded.format, format, "{file} keeps its format");
        let env: Vec<(&str, &str)> = loaded.bundle.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(env, [("A_KEY", "a-new"), ("C_KEY", "c-value")]);
        assert_eq!(loaded.bundle.metadata["owner"], "ops");
        assert_eq!(loaded.bundle.git.as_ref().and_then(|g| g.token.as_deref()), Some("ghp_new"));
        let keys = &loaded.bundle.ssh.as_ref().unwrap().keys;
        assert_eq!(keys["deploy"].key, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIabc ops@laptop");
        assert_eq!(keys["deploy"].key_type.as_deref(), Some("ssh-ed25519"));
        assert_eq!(keys["deploy"].comment.as_deref(), Some("ops@laptop"));

        // Refused, nothing written: a duplicate key, an entry that is not there, a bad name.
        let before = std::fs::read(dir_path.join(file)).unwrap();
        let duplicate = edit_bundle(&dir_path, "prod", &key, &ssh).unwrap_err();
        assert_eq!(duplicate.code(), "v1/secrets/invalid_change", "{duplicate}");
        let missing =
            edit_bundle(&dir_path, "prod", &key, &BundleChange::UnsetEnv { name: "NOPE".into() }).unwrap_err();
        assert!(missing.to_string().contains("env.NOPE is not in the bundle"), "{missing}");
        let bad = edit_bundle(&dir_path, "prod", &key, &set_env("1BAD", "x")).unwrap_err();
        assert_eq!(bad.code(), "v1/secrets/invalid_bundle", "{bad}");
        assert!(!bad.to_string().contains("x\""), "{bad}");
        assert_eq!(std::fs::read(dir_path.join(file)).unwrap(), before, "a refused change wrote nothing");

        edit_bundle(&dir_path, "prod", &key, &BundleChange::RemoveSshKey { name: "deploy".into() }).unwrap();
        let loaded = load_bundle(&dir_path, "prod", &key_path).unwrap();
        assert!(loaded.bundle.ssh.as_ref().is_none_or(|s| s.keys.is_empty()));
        let listed = files(&dir_path);
        assert_eq!(listed, [".agentlab-secrets.lock".to_string(), file.to_string()], "no temp file left");
    }
}

#[test]
fn setting_a_value_in_a_missing_bundle_creates_it_and_removing_from_one_is_refused() {
    let (dir, key_path) = setup("prod.age");
    let key = AgeKey::load(&key_path).unwrap();
    let removed = edit_bundle(&secrets(&dir), "new", &key, &BundleChange::UnsetEnv { name: "A".into() }).unwrap_err();
    assert_eq!(removed.code(), "v1/secrets/not_found", "{removed}");
    let edited = edit_bundle(&secrets(&dir), "new", &key, &set_env("A", "1")).unwrap();
    assert!(edited.created && edited.path.ends_with("new.age"), "{edited:?}");
    assert_eq!(load_bundle(&secrets(&dir), "new", &key_path).unwrap().bundle.env["A"], "1");
}

#[test]
fn rotating_the_key_reseals_every_bundle_to_the_new_key_alone() {
    let (dir, key_path) = setup("prod.age");
    let plain = dir.path().join("plain.yaml");
    seal(&key_path, &plain, &secrets(&dir).join("team.sops.yaml")).unwrap();
    let old_key_text = std::fs::read_to_string(&key_path).unwrap();
    let old = dir.path().join("old.key");
    std::fs::copy(&key_path, &old).unwrap();
    let old_recipient = AgeKey::load(&key_path).unwrap().recipient();

    let rotated = rotate_key(&secrets(&dir), &key_path).unwrap();
    assert_eq!(rotated.bundles, ["prod", "team"]);
    assert_eq!(rotated.retired, [old_recipient]);
    let new = AgeKey::load(&key_path).unwrap();
    assert_eq!(new.recipient(), rotated.recipient);
    assert_eq!(new.recipients().len(), 1, "the identity file holds the new key alone");
    assert_ne!(std::fs::read_to_string(&key_path).unwrap(), old_key_text);
    for name in ["prod", "team"] {
        assert_eq!(load_bundle(&secrets(&dir), name, &key_path).unwrap().bundle.env["A_KEY"], "a-value");
        let refused = load_bundle(&secrets(&dir), name, &old).unwrap_err();
        assert_eq!(refused.code(), "v1/secrets/decrypt_failed", "{name} still opens with the old key: {refused}");
    }
}

#[test]
fn a_bundle_the_key_cannot_open_stops_the_rotation_before_anything_changes() {
    let (dir, key_path) = setup("prod.age");
    let stranger = dir.path().join("stranger.key");
    write_identity(&stranger).unwrap();
    seal(&stranger, &dir.path().join("plain.yaml"), &secrets(&dir).join("other.age")).unwrap();
    let key_before = std::fs::read(&key_path).unwrap();
    let prod_before = std::fs::read(secrets(&dir).join("prod.age")).unwrap();
    let err = rotate_key(&secrets(&dir), &key_path).unwrap_err();
    assert_eq!(err.code(), "v1/secrets/decrypt_failed", "{err}");
    assert!(err.to_string().contains("other.age"), "{err}");
    assert_eq!(std::fs::read(&key_path).unwrap(), key_before);
    assert_eq!(std::fs::read(secrets(&dir).join("prod.age")).unwrap(), prod_before);
}

#[test]
fn a_sops_json_bundle_is_read_but_neither_changed_nor_rotated_into_yaml() {
    let (dir, key_path) = setup("prod.age");
    // A JSON sops file: the same document as JSON (keys in the order they were sealed in,
    // which the MAC covers: already sorted here, so either JSON map order keeps it).
    let plain = dir.path().join("sorted.yaml");
    std::fs::write(&plain, "env:\n  A_KEY: a-value\n  B_KEY: b-value\nversion: 1\n").unwrap();
    let yaml_path = dir.path().join("team.sops.yaml");
    seal(&key_path, &plain, &yaml_path).unwrap();
    let json = serde_json::to_string_pretty(&yaml_value(&std::fs::read_to_string(&yaml_path).unwrap())).unwrap();
    let json_path = secrets(&dir).join("team.sops.json");
    std::fs::write(&json_path, &json).unwrap();
    assert_eq!(load_bundle(&secrets(&dir), "team", &key_path).unwrap().bundle.env["B_KEY"], "b-value");

    let refused =
        edit_bundle(&secrets(&dir), "team", &AgeKey::load(&key_path).unwrap(), &set_env("C", "c")).unwrap_err();
    assert_eq!(refused.code(), "v1/secrets/unsupported", "{refused}");
    assert!(refused.to_string().contains("NAME.sops.yaml"), "{refused}");
    let key_before = std::fs::read(&key_path).unwrap();
    let rotation = rotate_key(&secrets(&dir), &key_path).unwrap_err();
    assert_eq!(rotation.code(), "v1/secrets/unsupported", "{rotation}");
    assert_eq!(std::fs::read(&key_path).unwrap(), key_before, "the rotation stopped before it began");
    assert_eq!(std::fs::read_to_string(&json_path).unwrap(), json);
}

#[test]
fn a_sops_bundle_keeps_its_team_recipients_through_changes_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let (key_path, team_path, old_path) =
        (dir.path().join("age.key"), dir.path().join("team.key"), dir.path().join("old.key"));
    write_identity(&key_path).unwrap();
    write_identity(&team_path).unwrap();
    let dir_path = dir.path().join("secrets");
    std::fs::create_dir(&dir_path).unwrap();
    let (daemon, team) = (AgeKey::load(&key_path).unwrap(), AgeKey::load(&team_path).unwrap());
    let both = [team.recipients(), daemon.recipients()].concat();
    std::fs::write(
        dir_path.join("prod.sops.yaml"),
        encrypt_sops(&SopsLayout::new(both.clone()), PLAIN.as_bytes()).unwrap(),
    )
    .unwrap();

    edit_bundle(&dir_path, "prod", &daemon, &set_env("A_KEY", "a-new")).unwrap();
    for key in [&key_path, &team_path] {
        assert_eq!(load_bundle(&dir_path, "prod", key).unwrap().bundle.env["A_KEY"], "a-new", "{}", key.display());
    }
    std::fs::copy(&key_path, &old_path).unwrap();
    rotate_key(&dir_path, &key_path).unwrap();
    assert_eq!(load_bundle(&dir_path, "prod", &key_path).unwrap().bundle.env["A_KEY"], "a-new");
    assert_eq!(
        load_bundle(&dir_path, "prod", &team_path).unwrap().bundle.env["A_KEY"],
        "a-new",
        "the team still opens it"
    );
    assert!(load_bundle(&dir_path, "prod", &old_path).is_err(), "the daemon's old key was dropped");

    // Also sealed to a PGP key: re-sealing here would drop it, so a change is refused.
    let text = std::fs::read_to_string(dir_path.join("prod.sops.yaml")).unwrap();
    let with_pgp = text.replace("\"sops\":\n", "\"sops\":\n  \"pgp\":\n    - \"fp\": \"0123456789ABCDEF\"\n");
    assert_ne!(with_pgp, text);
    std::fs::write(dir_path.join("prod.sops.yaml"), &with_pgp).unwrap();
    assert!(load_bundle(&dir_path, "prod", &key_path).is_ok(), "the age key still opens it");
    let refused =
        edit_bundle(&dir_path, "prod", &AgeKey::load(&key_path).unwrap(), &set_env("A_KEY", "x")).unwrap_err();
    assert_eq!(refused.code(), "v1/secrets/unsupported", "{refused}");
    assert!(refused.to_string().contains("pgp") && refused.to_string().contains("sops edit"), "{refused}");
    assert_eq!(std::fs::read_to_string(dir_path.join("prod.sops.yaml")).unwrap(), with_pgp);
}
