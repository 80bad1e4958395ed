//! Golden tests: the rendered text is reviewed as text. `AGENTLAB_BLESS=1` rewrites the
//! files after a deliberate change; the diff is then part of the commit.

use super::*;
use crate::host::{Binding, HostPolicy};
use std::path::PathBuf;

fn golden(name: &str, text: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("AGENTLAB_BLESS").is_some() {
        std::fs::write(&path, text).expect("write golden file");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (AGENTLAB_BLESS=1 writes it)", path.display()));
    assert_eq!(text, want, "{} differs: re-render with AGENTLAB_BLESS=1 if the change is meant", path.display());
}

pub(crate) fn sample_policy() -> HostPolicy {
    HostPolicy::new(
        "vmbr1".parse().expect("bridge"),
        "vmbr0".parse().expect("uplink"),
        "10.77.0.0/16".parse().expect("subnet"),
        "10.77.0.1".parse().expect("gateway"),
        vec![8844, 8846],
    )
    .expect("policy")
}

#[test]
fn a_host_without_sandboxes() {
    golden("empty.nft", &render(&sample_policy()));
}

#[test]
fn one_sandbox_per_mode() {
    let policy = sample_policy()
        .with_bindings(vec![
            Binding {
                vmid: 102,
                mac: "bc:24:11:00:01:02".parse().expect("mac"),
                ip: None,
                mode: Mode::Off,
                allow: vec![],
            },
            Binding {
                vmid: 101,
                mac: "bc:24:11:00:01:01".parse().expect("mac"),
                ip: Some("10.77.0.101".parse().expect("ip")),
                mode: Mode::Nat,
                allow: vec![],
            },
            Binding {
                vmid: 103,
                mac: "bc:24:11:00:01:03".parse().expect("mac"),
                ip: Some("10.77.0.103".parse().expect("ip")),
                mode: Mode::Allowlist,
                allow: vec!["140.82.112.0/20".parse().expect("net"), "203.0.113.7/32".parse().expect("net")],
            },
        ])
        .expect("bindings");
    let policy = HostPolicy { ssh_ingress: vec!["tailscale0".parse().expect("ifname")], ..policy };
    let text = render(&policy);
    golden("three_modes.nft", &text);
    // Sorted by vmid whatever the input order, so a re-render of the same state is identical.
    assert!(text.find("bc:24:11:00:01:01").expect("101") < text.find("bc:24:11:00:01:02").expect("102"));
}

#[test]
fn an_allowlist_sandbox_with_nothing_resolved_reaches_nothing() {
    let policy = sample_policy()
        .with_bindings(vec![Binding {
            vmid: 104,
            mac: "bc:24:11:00:01:04".parse().expect("mac"),
            ip: None,
            mode: Mode::Allowlist,
            allow: vec![],
        }])
        .expect("bindings");
    let text = render(&policy);
    assert!(text.contains("chain mode_allow_104 {\n    jump record_drop\n  }"), "{text}");
    assert!(!text.contains("set allow_104"));
}
