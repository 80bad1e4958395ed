//! Identity files, sealing and decrypting with the age crate: round trips in both age formats,
//! and the refusals (wrong key, unsafe key permissions, broken or oversized bundles).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a broken fixture should fail the test at once, with its cause"
)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use agentlab_secrets::{
    AgeKey, BundleError, MAX_PLAINTEXT_BYTES, SecretsBundle, decrypt_file, encrypt_to, load_bundle, seal,
    write_identity,
};

const BUNDLE: &str = "git:\n  token: ghp_SECRET\nenv:\n  API_KEY: sk-SECRET\n";

fn key_in(dir: &Path, file: &str) -> (PathBuf, String) {
    let path = dir.join(file);
    let recipient = write_identity(&path).unwrap();
    (path, recipient)
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn expect_err<T>(result: Result<T, BundleError>, code: &str) -> String {
    match result {
        Ok(_) => panic!("expected {code}, got Ok"),
        Err(e) => {
            assert_eq!(e.code(), code, "{e}");
            e.to_string()
        }
    }
}

#[test]
fn seal_then_load_round_trips_armored() {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = key_in(dir.path(), "key.txt");
    let plain = dir.path().join("plain.yaml");
    write(&plain, BUNDLE.as_bytes());
    let out = dir.path().join("prod.age");

    let sealed = seal(&key, &plain, &out).unwrap();
    assert_eq!(sealed.recipient, recipient);
    assert_eq!(sealed.summary.env_names, ["API_KEY"]);
    assert_eq!(mode(&out), 0o600);
    let ciphertext = std::fs::read_to_string(&out).unwrap();
    assert!(ciphertext.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"), "{ciphertext}");
    assert!(!ciphertext.contains("SECRET"));

    let loaded = load_bundle(dir.path(), "prod", &key).unwrap();
    assert_eq!(loaded.path, out);
    assert_eq!(loaded.bundle, SecretsBundle::parse_yaml(BUNDLE, "expected").unwrap());

    // Sealing again replaces the old file atomically; no temp files are left behind.
    seal(&key, &plain, &out).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn binary_age_files_decrypt_too() {
    let dir = tempfile::tempdir().unwrap();
    let (key_path, _) = key_in(dir.path(), "key.txt");
    let key = AgeKey::load(&key_path).unwrap();
    let recipients = key.recipients();
    let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient)).unwrap();
    let mut binary = Vec::new();
    let mut writer = encryptor.wrap_output(&mut binary).unwrap();
    writer.write_all(BUNDLE.as_bytes()).unwrap();
    writer.finish().unwrap();
    assert!(binary.starts_with(b"age-encryption.org/v1"));
    let path = dir.path().join("bin.age");
    write(&path, &binary);
    assert_eq!(decrypt_file(&path, &key).unwrap(), BUNDLE.as_bytes());
}

#[test]
fn wrong_key_names_this_daemons_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let (other_key, _) = key_in(dir.path(), "other.txt");
    let (daemon_key, daemon_recipient) = key_in(dir.path(), "daemon.txt");
    let plain = dir.path().join("plain.yaml");
    write(&plain, BUNDLE.as_bytes());
    seal(&other_key, &plain, &dir.path().join("prod.age")).unwrap();

    let message = expect_err(load_bundle(dir.path(), "prod", &daemon_key), "v1/secrets/decrypt_failed");
    assert!(message.contains("not encrypted to this daemon's key"), "{message}");
    assert!(message.contains(&daemon_recipient), "{message}");
}

#[test]
fn damaged_or_foreign_files_fail_to_decrypt() {
    let dir = tempfile::tempdir().unwrap();
    let (key_path, _) = key_in(dir.path(), "key.txt");
    let key = AgeKey::load(&key_path).unwrap();
    write(&dir.path().join("plain.age"), BUNDLE.as_bytes());
    expect_err(decrypt_file(&dir.path().join("plain.age"), &key), "v1/secrets/decrypt_failed");

    let mut ciphertext = Vec::new();
    let recipients = key.recipients();
    let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient)).unwrap();
    let mut writer = encryptor.wrap_output(&mut ciphertext).unwrap();
    writer.write_all(BUNDLE.as_bytes()).unwrap();
    writer.finish().unwrap();
    let last = ciphertext.len() - 1;
    ciphertext[last] ^= 0x01;
    write(&dir.path().join("tampered.age"), &ciphertext);
    expect_err(decrypt_file(&dir.path().join("tampered.age"), &key), "v1/secrets/decrypt_failed");
}

#[test]
fn identity_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = key_in(dir.path(), "key.txt");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let message = expect_err(AgeKey::load(&key), "v1/secrets/key_unreadable");
    assert!(message.contains(&format!("chmod 600 {}", key.display())), "{message}");
    assert!(message.contains("0644"), "{message}");
    for loose in [0o640, 0o604, 0o660] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(loose)).unwrap();
        expect_err(AgeKey::load(&key), "v1/secrets/key_unreadable");
    }
    for strict in [0o600, 0o400] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(strict)).unwrap();
        AgeKey::load(&key).unwrap_or_else(|e| panic!("{strict:o}: {e}"));
    }
}

#[test]
fn missing_or_garbage_identity_file_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let message = expect_err(AgeKey::load(&dir.path().join("absent.txt")), "v1/secrets/key_unreadable");
    assert!(message.contains("secrets_age_key_path"), "{message}");
    assert!(message.contains("age-keygen -o"), "{message}");

    let garbage = dir.path().join("garbage.txt");
    write(&garbage, b"# comment\nAGE-SECRET-KEY-1NOTAKEYSECRETSTUFF\n");
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o600)).unwrap();
    let message = expect_err(AgeKey::load(&garbage), "v1/secrets/key_unreadable");
    assert!(message.contains("line 2"), "{message}");
    assert!(!message.contains("SECRETSTUFF"), "{message}");
}

#[test]
fn write_identity_is_private_in_age_keygen_format_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = key_in(dir.path(), "key.txt");
    assert_eq!(mode(&key), 0o600);
    let text = std::fs::read_to_string(&key).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("# created: 20"), "{text}");
    assert_eq!(lines[1], format!("# public key: {recipient}"));
    assert!(lines[2].starts_with("AGE-SECRET-KEY-1"), "{text}");
    assert_eq!(AgeKey::load(&key).unwrap().recipient(), recipient);

    let message = expect_err(write_identity(&key), "v1/secrets/io");
    assert!(message.contains("refusing to overwrite"), "{message}");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), text);
}

#[test]
fn broken_bundle_is_not_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = key_in(dir.path(), "key.txt");
    let plain = dir.path().join("plain.yaml");
    write(&plain, b"git:\n  tokne: x\n");
    let out = dir.path().join("prod.age");
    let message = expect_err(seal(&key, &plain, &out), "v1/secrets/invalid_bundle");
    assert!(message.contains("tokne"), "{message}");
    assert!(!out.exists());
}

#[test]
fn oversized_bundles_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (key_path, _) = key_in(dir.path(), "key.txt");
    let key = AgeKey::load(&key_path).unwrap();
    let too_big = format!("metadata:\n  pad: {}\n", "x".repeat(usize::try_from(MAX_PLAINTEXT_BYTES).unwrap_or(0)));
    let plain = dir.path().join("big.yaml");
    write(&plain, too_big.as_bytes());
    expect_err(seal(&key_path, &plain, &dir.path().join("big.age")), "v1/secrets/too_large");

    let ciphertext = encrypt_to(&key.recipients(), too_big.as_bytes()).unwrap();
    write(&dir.path().join("big.age"), &ciphertext);
    expect_err(decrypt_file(&dir.path().join("big.age"), &key), "v1/secrets/too_large");
}

#[test]
fn load_bundle_refuses_plaintext_naming_the_real_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (key, recipient) = key_in(keys.path(), "key.txt");
    write(&dir.path().join("prod.yaml"), BUNDLE.as_bytes());
    let message = expect_err(load_bundle(dir.path(), "prod", &key), "v1/secrets/plaintext_refused");
    let plain = dir.path().join("prod.yaml");
    let out = dir.path().join("prod.age");
    assert!(message.contains(&format!("age -r {recipient} -o {} {}", out.display(), plain.display())), "{message}");
    assert!(message.contains(&format!("--key {}", key.display())), "{message}");
}
