//! Schema v1: what parses, what is refused with which message, and that summaries, `Debug`
//! and error messages never carry a secret value.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a broken fixture should fail the test at once, with its cause"
)]

use agentlab_secrets::{BundleError, SecretsBundle};

const FULL: &str = r#"
version: 1
metadata:
  owner: platform-team
git:
  username: bot
  token: ghp_SECRETtoken123
  ssh_private_key: |
    -----BEGIN OPENSSH PRIVATE KEY-----
    SECRETKEYMATERIAL
    -----END OPENSSH PRIVATE KEY-----
  ssh_public_key: ssh-ed25519 AAAApublic bot
  known_hosts: github.com ssh-ed25519 AAAAhost
env:
  OPENAI_API_KEY: sk-SECRETopenai
  PORT: 8080
  DEBUG: true
  RATIO: 1.50
claude:
  settings:
    model: opus
    env:
      ANTHROPIC_API_KEY: sk-ant-SECRETclaude
artifact:
  endpoint: https://artifacts.invalid
  token: SECRETartifact
ssh:
  keys:
    deploy:
      key: SECRETsshdeploykey
      type: ed25519
      comment: deploy key
tailscale:
  authkey: tskey-auth-SECRET
  admin_api_key: tskey-api-SECRET
  tailnet: example.ts.net
  hostname_template: agent-{job}
  tags: [tag:agent]
  extra_args: [--ssh]
"#;

const SECRETS: [&str; 9] = [
    "ghp_SECRETtoken123",
    "SECRETKEYMATERIAL",
    "sk-SECRETopenai",
    "sk-ant-SECRETclaude",
    "SECRETartifact",
    "SECRETsshdeploykey",
    "tskey-auth-SECRET",
    "tskey-api-SECRET",
    "8080",
];

fn parse(text: &str) -> SecretsBundle {
    SecretsBundle::parse_yaml(text, "test.yaml").unwrap()
}

fn parse_err(text: &str) -> BundleError {
    match SecretsBundle::parse_yaml(text, "origin/test.yaml") {
        Ok(bundle) => panic!("expected an error, parsed {bundle:?}"),
        Err(e) => e,
    }
}

#[test]
fn full_bundle_parses_with_scalars_kept_verbatim() {
    let bundle = parse(FULL);
    let git = bundle.git.as_ref().unwrap_or_else(|| panic!("git section missing"));
    assert_eq!(git.username.as_deref(), Some("bot"));
    assert_eq!(git.token.as_deref(), Some("ghp_SECRETtoken123"));
    assert_eq!(bundle.env.get("PORT").map(String::as_str), Some("8080"));
    assert_eq!(bundle.env.get("DEBUG").map(String::as_str), Some("true"));
    assert_eq!(bundle.env.get("RATIO").map(String::as_str), Some("1.50"));
    assert_eq!(bundle.metadata.get("owner").map(String::as_str), Some("platform-team"));
    let tailscale = bundle.tailscale.as_ref().unwrap_or_else(|| panic!("tailscale missing"));
    assert_eq!(tailscale.tags, vec!["tag:agent".to_string()]);
    let ssh = bundle.ssh.as_ref().unwrap_or_else(|| panic!("ssh missing"));
    assert_eq!(ssh.keys["deploy"].key_type.as_deref(), Some("ed25519"));
    let json = bundle.claude_settings_json().unwrap_or_else(|| panic!("no claude settings"));
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["model"], "opus");
}

#[test]
fn empty_and_comment_only_documents_are_empty_bundles() {
    for text in ["", "# nothing yet\n", "version: 1\n", "metadata:\nenv:\ngit:\nssh:\n  keys:\n"] {
        let bundle = parse(text);
        assert!(bundle.secret_values().is_empty());
        assert!(bundle.env.is_empty());
    }
}

#[test]
fn unknown_field_is_named_with_origin_and_line() {
    let err = parse_err("git:\n  username: bot\n  tokne: ghp_SECRETtoken123\n");
    let message = err.to_string();
    assert_eq!(err.code(), "v1/secrets/invalid_bundle");
    assert!(message.contains("tokne"), "{message}");
    assert!(message.contains("origin/test.yaml"), "{message}");
    assert!(message.contains("line 3"), "{message}");
    assert!(!message.contains("SECRET"), "error leaks a value: {message}");

    let top = parse_err("secrets:\n  a: b\n").to_string();
    assert!(top.contains("secrets"), "{top}");
}

#[test]
fn type_errors_do_not_quote_values() {
    let message = parse_err("git:\n  token: [ghp_SECRETtoken123]\n").to_string();
    assert!(message.contains("line 2"), "{message}");
    assert!(!message.contains("SECRET"), "error leaks a value: {message}");
    let message = parse_err("git:\n  token: {a: SECRET\n").to_string();
    assert!(!message.contains("SECRET"), "error leaks a value: {message}");
}

#[test]
fn env_names_are_validated() {
    for good in ["A", "_x", "PATH_2", "a1"] {
        parse(&format!("env:\n  {good}: v\n"));
    }
    for bad in ["1A", "A-B", "A.B", "\"A B\"", "\"\""] {
        let err = parse_err(&format!("env:\n  {bad}: SECRETvalue\n"));
        let message = err.to_string();
        assert!(message.contains("env."), "{bad}: {message}");
        assert!(message.contains("[A-Za-z_]"), "{bad}: {message}");
        assert!(!message.contains("SECRETvalue"), "{message}");
    }
}

#[test]
fn null_env_value_is_refused() {
    let message = parse_err("env:\n  EMPTY:\n").to_string();
    assert!(message.contains("env.EMPTY has no value"), "{message}");
    assert!(message.contains("line 2"), "{message}");
}

#[test]
fn version_must_be_one() {
    let message = parse_err("version: 2\n").to_string();
    assert!(message.contains("version: 2 is not supported"), "{message}");
}

#[test]
fn claude_settings_and_settings_json_are_exclusive() {
    let both = "claude:\n  settings: {model: opus}\n  settings_json: '{\"model\": \"opus\"}'\n";
    assert!(parse_err(both).to_string().contains("not both"));

    let json = parse("claude:\n  settings_json: '{\"model\": \"opus\"}'\n");
    assert_eq!(json.claude_settings_json().as_deref(), Some("{\"model\": \"opus\"}"));

    let not_json = parse_err("claude:\n  settings_json: 'SECRET not json'\n").to_string();
    assert!(not_json.contains("settings_json: not valid JSON"), "{not_json}");
    assert!(!not_json.contains("SECRET"), "{not_json}");

    let not_mapping = parse_err("claude:\n  settings: [1, 2]\n").to_string();
    assert!(not_mapping.contains("claude.settings: must be a mapping"), "{not_mapping}");
}

#[test]
fn secret_values_cover_every_secret_and_no_public_field() {
    let values = parse(FULL).secret_values();
    for secret in SECRETS {
        assert!(values.iter().any(|v| v.contains(secret)), "{secret} missing from secret_values");
    }
    assert!(values.iter().any(|v| v == "sk-ant-SECRETclaude"), "claude env value must be redacted on its own");
    for public in ["bot", "platform-team", "example.ts.net", "tag:agent", "ssh-ed25519 AAAApublic bot"] {
        assert!(!values.iter().any(|v| v == public), "{public} is not secret");
    }
    assert!(values.windows(2).all(|w| w[0].len() >= w[1].len()), "longest first: {}", values.len());
}

#[test]
fn summary_has_names_and_flags_but_no_values() {
    let bundle = parse(FULL);
    let summary = bundle.summary();
    assert_eq!(summary.sections, ["version", "metadata", "git", "env", "claude", "artifact", "ssh", "tailscale"]);
    assert_eq!(summary.env_names, ["DEBUG", "OPENAI_API_KEY", "PORT", "RATIO"]);
    assert!(summary.git.token && summary.git.username && summary.git.ssh_private_key && summary.git.known_hosts);
    assert!(summary.claude_settings && summary.tailscale_authkey);
    let json = serde_json::to_string(&summary).unwrap();
    for secret in SECRETS {
        assert!(!json.contains(secret), "summary leaks {secret}: {json}");
    }

    let partial = parse("git:\n  username: bot\n").summary();
    assert_eq!(partial.sections, ["git"]);
    assert!(partial.git.username && !partial.git.token && !partial.tailscale_authkey && !partial.claude_settings);
}

#[test]
fn debug_prints_no_values() {
    let debug = format!("{:?}", parse(FULL));
    assert!(debug.contains("OPENAI_API_KEY"), "{debug}");
    for secret in SECRETS {
        assert!(!debug.contains(secret), "Debug leaks {secret}: {debug}");
    }
}
