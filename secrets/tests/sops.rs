//! sops bundles: sealed and opened by this crate, files written by real sops opened, and
//! every kind of tampering (a value, a moved value, a dropped value, a plaintext value, the
//! MAC) refused with a message that names the key, never the value.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a broken fixture should fail the test at once, with its cause"
)]

mod support;

use std::path::Path;

use agentlab_secrets::{AgeKey, BundleFormat, decrypt_sops_file, load_bundle, seal, write_identity};
use support::{BUNDLE, REFERENCE_IDENTITY, identity_file, sops_references, yaml_value};

fn sealed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = dir.join("age.key");
    write_identity(&key).unwrap();
    let plain = dir.join("plain.yaml");
    std::fs::write(&plain, BUNDLE).unwrap();
    let out = dir.join("prod.sops.yaml");
    seal(&key, &plain, &out).unwrap();
    (key, out)
}

fn refusal(path: &Path, key: &Path) -> String {
    let key = AgeKey::load(key).unwrap();
    match decrypt_sops_file(path, &key) {
        Ok(_) => panic!("{} decrypted", path.display()),
        Err(e) => {
            assert_eq!(e.code(), "v1/secrets/decrypt_failed", "{e}");
            let message = e.to_string();
            for secret in ["sk-demo-4242", "ghp_tok3n", "8080"] {
                assert!(!message.contains(secret), "the message shows a value: {message}");
            }
            message
        }
    }
}

#[test]
fn a_sealed_sops_bundle_loads_and_holds_no_value_in_the_clear() {
    let dir = tempfile::tempdir().unwrap();
    let (key, out) = sealed(dir.path());
    let text = std::fs::read_to_string(&out).unwrap();
    for secret in ["sk-demo-4242", "ghp_tok3n", "8080"] {
        assert!(!text.contains(secret), "{secret} in the clear:\n{text}");
    }
    let document = yaml_value(&text);
    assert_eq!(document["metadata"]["owner_unencrypted"], "ops", "an _unencrypted key stays readable");
    assert_eq!(document["env"]["EMPTY"], "", "sops leaves empty strings as they are");
    assert!(
        document["env"]["PORT"].as_str().is_some_and(|v| v.starts_with("ENC[AES256_GCM,") && v.ends_with(",type:int]"))
    );
    assert!(document["env"]["FLAG"].as_str().is_some_and(|v| v.ends_with(",type:bool]")));
    assert_eq!(document["sops"]["unencrypted_suffix"], "_unencrypted");
    assert!(document["sops"]["version"].is_string() && document["sops"]["lastmodified"].is_string());
    let recipient = AgeKey::load(&key).unwrap().recipient();
    assert_eq!(document["sops"]["age"][0]["recipient"], recipient.as_str());
    assert!(
        document["sops"]["age"][0]["enc"].as_str().is_some_and(|e| e.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"))
    );
    assert_eq!(
        std::fs::metadata(&out).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777).unwrap(),
        0o600
    );

    let loaded = load_bundle(dir.path(), "prod", &key).unwrap();
    assert_eq!(loaded.format, BundleFormat::Sops);
    assert_eq!(loaded.bundle.env["DEMO_API_KEY"], "sk-demo-4242");
    assert_eq!(loaded.bundle.env["PORT"], "8080");
    assert_eq!(loaded.bundle.env["FLAG"], "true");
    assert_eq!(loaded.bundle.env["EMPTY"], "");
    assert_eq!(loaded.bundle.git.as_ref().and_then(|g| g.token.clone()).as_deref(), Some("ghp_tok3n"));
    assert_eq!(loaded.bundle.metadata["owner_unencrypted"], "ops");
}

#[test]
fn tampered_sops_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (key, out) = sealed(dir.path());
    let text = std::fs::read_to_string(&out).unwrap();
    let line_of = |key: &str| text.lines().find(|l| l.trim_start().starts_with(&format!("\"{key}\":"))).unwrap();
    let value_of = |key: &str| line_of(key).split_once(": ").unwrap().1.trim_matches('"').to_string();
    let write = |name: &str, contents: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    };

    // One bit of a value's ciphertext.
    let api = value_of("DEMO_API_KEY");
    let data_start = api.find("data:").unwrap() + 5;
    let mut flipped = api.clone().into_bytes();
    flipped[data_start] = if flipped[data_start] == b'A' { b'B' } else { b'A' };
    let message = refusal(&write("flip.sops.yaml", &text.replace(&api, std::str::from_utf8(&flipped).unwrap())), &key);
    assert!(message.contains("env.DEMO_API_KEY") && message.contains("authentication failed"), "{message}");

    // A value moved under another key: the key path is bound to it.
    let token = value_of("token");
    let swapped = text.replace(&token, "TOKEN").replace(&api, &token).replace("TOKEN", &api);
    let message = refusal(&write("swap.sops.yaml", &swapped), &key);
    assert!(message.contains("authentication failed"), "{message}");

    // A value dropped, or a plaintext value changed: only the MAC notices.
    let dropped = text.replace(&format!("{}\n", line_of("PORT")), "");
    let message = refusal(&write("drop.sops.yaml", &dropped), &key);
    assert!(message.contains("MAC mismatch"), "{message}");
    let relabelled = text.replace("\"owner_unencrypted\": \"ops\"", "\"owner_unencrypted\": \"mallory\"");
    assert_ne!(relabelled, text);
    let message = refusal(&write("label.sops.yaml", &relabelled), &key);
    assert!(message.contains("MAC mismatch"), "{message}");

    // The MAC itself: altered, or gone.
    let mac = value_of("mac");
    let message = refusal(&write("mac.sops.yaml", &text.replace(&mac, &api)), &key);
    assert!(message.contains("sops.mac cannot be decrypted"), "{message}");
    let no_mac = text.replace(&format!("{}\n", line_of("mac")), "");
    let message = refusal(&write("nomac.sops.yaml", &no_mac), &key);
    assert!(message.contains("sops.mac is missing"), "{message}");

    // A value replaced by plaintext where sops encrypts.
    let message = refusal(&write("plain.sops.yaml", &text.replace(&api, "sk-other")), &key);
    assert!(message.contains("env.DEMO_API_KEY") && message.contains("not an ENC"), "{message}");

    // Another daemon's key: the message names both recipients and the fix.
    let other = dir.path().join("other.key");
    let other_recipient = write_identity(&other).unwrap();
    let message = refusal(&out, &other);
    assert!(message.contains(&other_recipient) && message.contains("sops rotate -i --add-age"), "{message}");
}

#[test]
fn files_written_by_sops_itself_decrypt_to_their_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let key = AgeKey::load(&identity_file(dir.path(), REFERENCE_IDENTITY)).unwrap();
    let references = sops_references();
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&references).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_prefix("age_").and_then(|n| n.strip_suffix(".yaml")) else { continue };
        if stem.ends_with("_plaintext") {
            continue;
        }
        let plaintext = std::fs::read_to_string(references.join(format!("age_{stem}_plaintext.yaml"))).unwrap();
        let decrypted = decrypt_sops_file(&references.join(&name), &key).unwrap_or_else(|e| panic!("{name}: {e}"));
        let decrypted = String::from_utf8(decrypted).unwrap();
        assert_eq!(yaml_value(&decrypted), yaml_value(&plaintext), "{name}:\n{decrypted}");
        // The same file with one value's ciphertext changed is refused.
        let original = std::fs::read_to_string(references.join(&name)).unwrap();
        let tampered = original.replacen("data:", "data:AAAA", 1);
        let path = dir.path().join(&name);
        std::fs::write(&path, tampered).unwrap();
        assert!(decrypt_sops_file(&path, &key).is_err(), "{name} tampered still decrypts");
        checked.push(stem.to_string());
    }
    checked.sort();
    // example, suffix and regex rules both ways, MAC over encrypted values only.
    assert!(checked.len() >= 6, "{checked:?}");
    assert!(checked.contains(&"mac_only_encrypted".to_string()), "{checked:?}");
}
