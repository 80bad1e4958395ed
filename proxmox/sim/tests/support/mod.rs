//! Shared by the Proxmox crate's integration tests: an in-process simulator and clients for
//! both backends pointed at it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a broken fixture should fail the test at once, with its cause"
)]
#![allow(dead_code)]

use agentlab_proxmox::shell::{ShellConfig, ShellTransport};
use agentlab_proxmox::{Pve, PveClient, TaskPolicy};
use agentlab_pve_sim::{SimConfig, SimHandle, TEST_TOKEN};
use std::path::PathBuf;
use std::time::Duration;

pub struct Env {
    pub sim: SimHandle,
    pub dir: tempfile::TempDir,
}

pub async fn sim_with(adjust: impl FnOnce(&mut SimConfig)) -> Env {
    agentlab_proxmox::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let mut config = SimConfig::for_tests(dir.path().join("sim"));
    adjust(&mut config);
    let sim = agentlab_pve_sim::start(config).await.expect("sim");
    Env { sim, dir }
}

pub async fn sim() -> Env {
    sim_with(|_| {}).await
}

pub fn policy() -> TaskPolicy {
    TaskPolicy {
        first_poll: Duration::from_millis(5),
        max_poll: Duration::from_millis(50),
        deadline: Duration::from_secs(30),
    }
}

impl Env {
    pub fn api(&self) -> PveClient {
        self.api_with(TEST_TOKEN, Duration::from_secs(10))
    }

    pub fn api_with(&self, token: &str, timeout: Duration) -> PveClient {
        PveClient::new(self.sim.api_transport(token, timeout).unwrap(), policy())
    }

    /// `pvesh` is the simulator binary under that name.
    pub fn pvesh(&self) -> PathBuf {
        self.personality("pvesh")
    }

    /// `qm`, likewise.
    pub fn qm(&self) -> PathBuf {
        self.personality("qm")
    }

    fn personality(&self, name: &str) -> PathBuf {
        let link = self.dir.path().join("bin").join(name);
        if !link.exists() {
            std::fs::create_dir_all(self.dir.path().join("bin")).unwrap();
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_pve-sim"), &link).unwrap();
        }
        link
    }

    pub fn shell(&self) -> PveClient {
        self.shell_with(Duration::from_secs(20))
    }

    pub fn shell_with(&self, timeout: Duration) -> PveClient {
        let transport = ShellTransport::new(ShellConfig {
            pvesh: self.pvesh(),
            timeout,
            task_deadline: timeout,
            local_node: "pve1".into(),
            env: vec![("PVE_SIM_ADMIN".into(), self.sim.admin_url()), ("PVE_SIM_NODE".into(), "pve1".into())],
        });
        PveClient::new(transport, policy())
    }

    pub fn snippets_dir(&self) -> PathBuf {
        self.dir.path().join("sim/local/snippets")
    }

    /// Every request the clients sent passed schema validation (tests that send bad
    /// requests on purpose use their own simulator).
    pub fn assert_all_requests_valid(&self) {
        let rejected = self.sim.sim.refused_requests();
        assert!(rejected.is_empty(), "requests the simulator rejected:\n{}", rejected.join("\n"));
    }
}

/// Polls until `check` holds (bounded).
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

pub fn as_pve(client: &PveClient) -> &dyn Pve {
    client
}
