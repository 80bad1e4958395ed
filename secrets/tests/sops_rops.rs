//! sops files shared with a second, independent implementation (the `rops` crate) both ways:
//! what this crate seals, rops opens (its MAC check included); what rops seals, this crate
//! opens; and a rops file with a rule of its own, changed here, keeps its rule and still
//! opens in rops. One test in this binary: rops reads its private key only from the
//! environment.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a broken fixture should fail the test at once, with its cause"
)]

mod support;

use agentlab_secrets::{BundleChange, GitField, SopsLayout, decrypt_sops_file, edit_bundle, encrypt_sops};
use rops::cryptography::{cipher::AES256GCM, hasher::SHA512};
use rops::file::RopsFile;
use rops::file::builder::RopsFileBuilder;
use rops::file::format::YamlFileFormat;
use rops::file::metadata::PartialEncryptionConfig;
use rops::file::state::EncryptedFile;
use rops::integration::AgeIntegration;
use support::{BUNDLE, fresh_identity, yaml_value};

#[test]
fn sops_files_round_trip_with_rops_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let (identity, key) = fresh_identity(dir.path());
    let recipient = key.recipient();
    // The only test of this binary, so no other thread reads the environment meanwhile.
    #[allow(clippy::disallowed_methods, reason = "rops takes its private key from ROPS_AGE only")]
    // SAFETY: single-threaded at this point (one test in this binary, nothing spawned yet).
    unsafe {
        std::env::set_var("ROPS_AGE", &identity);
    }

    // rops 0.1.7 expects empty strings encrypted; sops leaves them as they are, as this crate
    // does (rops fixed it after 0.1.7, "fix: skip empty string as done in SOPS").
    let bundle = BUNDLE.replace("  EMPTY: \"\"\n", "");
    assert_ne!(bundle, BUNDLE);

    // Ours → rops.
    let ours = String::from_utf8(encrypt_sops(&SopsLayout::new(key.recipients()), bundle.as_bytes()).unwrap()).unwrap();
    let opened = ours
        .parse::<RopsFile<EncryptedFile<AES256GCM, SHA512>, YamlFileFormat>>()
        .unwrap_or_else(|e| panic!("rops cannot parse ours: {e}\n{ours}"))
        .decrypt::<YamlFileFormat>()
        .unwrap_or_else(|e| panic!("rops cannot decrypt ours: {e:?}\n{ours}"));
    assert_eq!(yaml_value(&opened.map().to_string()), yaml_value(&bundle));

    // rops refuses ours once a value is changed: its MAC check agrees with ours.
    let relabelled = ours.replace("\"owner_unencrypted\": \"ops\"", "\"owner_unencrypted\": \"mallory\"");
    assert_ne!(relabelled, ours);
    let refused = relabelled
        .parse::<RopsFile<EncryptedFile<AES256GCM, SHA512>, YamlFileFormat>>()
        .unwrap()
        .decrypt::<YamlFileFormat>();
    assert!(refused.is_err(), "rops accepted a changed plaintext value");

    // rops → ours. rops writes no rule unless told, where sops writes (and, reading a file
    // without one, assumes) `unencrypted_suffix: _unencrypted`; told, it writes what sops does.
    let theirs = RopsFileBuilder::<YamlFileFormat>::new(&bundle)
        .unwrap()
        .with_partial_encryption(PartialEncryptionConfig::UnencryptedSuffix("_unencrypted".into()))
        .add_integration_key::<AgeIntegration>(recipient.parse().unwrap())
        .encrypt::<AES256GCM, SHA512>()
        .unwrap()
        .to_string();
    let path = dir.path().join("theirs.sops.yaml");
    std::fs::write(&path, &theirs).unwrap();
    let plaintext = decrypt_sops_file(&path, &key).unwrap_or_else(|e| panic!("ours cannot open rops's: {e}\n{theirs}"));
    assert_eq!(yaml_value(std::str::from_utf8(&plaintext).unwrap()), yaml_value(&bundle));

    // rops → changed here → rops, with a team's own layout: only keys named `env` or `token`
    // encrypted, the MAC over the encrypted values only. The change keeps both.
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let rule = regex::Regex::new("^(env|token)$").unwrap();
    let team = RopsFileBuilder::<YamlFileFormat>::new(&bundle)
        .unwrap()
        .with_partial_encryption(PartialEncryptionConfig::EncryptedRegex(rule.into()))
        .mac_only_encrypted()
        .add_integration_key::<AgeIntegration>(recipient.parse().unwrap())
        .encrypt::<AES256GCM, SHA512>()
        .unwrap()
        .to_string();
    let team_path = secrets.join("team.sops.yaml");
    std::fs::write(&team_path, &team).unwrap();
    let set = BundleChange::SetEnv { name: "NEW_KEY".into(), value: "n3w-s3cret".into() };
    edit_bundle(&secrets, "team", &key, &set).unwrap_or_else(|e| panic!("{e}\n{team}"));
    let changed = std::fs::read_to_string(&team_path).unwrap();
    assert!(changed.contains("encrypted_regex") && changed.contains("^(env|token)$"), "{changed}");
    assert!(changed.contains("mac_only_encrypted"), "{changed}");
    assert!(changed.contains("bot") && !changed.contains("n3w-s3cret"), "the rule still decides: {changed}");
    let reopened = changed
        .parse::<RopsFile<EncryptedFile<AES256GCM, SHA512>, YamlFileFormat>>()
        .unwrap_or_else(|e| panic!("rops cannot parse the changed file: {e}\n{changed}"))
        .decrypt::<YamlFileFormat>()
        .unwrap_or_else(|e| panic!("rops cannot decrypt the changed file: {e:?}\n{changed}"));
    assert_eq!(yaml_value(&reopened.map().to_string())["env"]["NEW_KEY"], "n3w-s3cret");

    // A secret the file's rule would keep readable is refused, and the file is untouched.
    let private_key = BundleChange::SetGit { field: GitField::SshPrivateKey, value: "-----BEGIN k3y".into() };
    let refused = edit_bundle(&secrets, "team", &key, &private_key).unwrap_err();
    assert_eq!(refused.code(), "v1/secrets/invalid_change", "{refused}");
    let message = refused.to_string();
    assert!(message.contains("git.ssh_private_key would be stored in plaintext"), "{message}");
    assert!(message.contains("encrypted_regex `^(env|token)$`") && !message.contains("k3y"), "{message}");
    assert_eq!(std::fs::read_to_string(&team_path).unwrap(), changed);
    let token = BundleChange::SetGit { field: GitField::Token, value: "ghp_n3w".into() };
    edit_bundle(&secrets, "team", &key, &token).unwrap();
}
