//! In-process test support for the actors: a temp store, the shipped profiles, `pve-sim`
//! reached by function call (no sockets, so tokio's paused clock works), the real `pve`
//! gateway, and the real root supervisor with the sandbox and job factories — the daemon's
//! wiring without its servers. Tests run with `#[tokio::test(start_paused = true)]`: leases,
//! probes, simulated Proxmox latencies and deadlines all pass in virtual time.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    dead_code,
    reason = "test support shared by several test binaries, each using part of it"
)]

use agentlab_actors::clock::Clock;
use agentlab_actors::job::{JobContext, JobFactory, JobSettings, SecretsSettings};
use agentlab_actors::model::{Refusal, SandboxState};
use agentlab_actors::profiles::ProfileRegistry;
use agentlab_actors::protocol::{CreateJobRequest, SandboxView};
use agentlab_actors::pve::GatewayLimits;
use agentlab_actors::root::{ActorDirectory, ROOT_ACTOR, RestartPolicy, RootArgs, RootMsg, RootSupervisor};
use agentlab_actors::sandbox::allocate::{SandboxRequest, allocate};
use agentlab_actors::sandbox::idle::{IdleSettings, SshSessions};
use agentlab_actors::sandbox::{SandboxContext, SandboxFactory, SandboxMsg, SandboxOp, SandboxSettings, Settled};
use agentlab_actors::store::{JobRecord, SandboxRecord, Store};
use agentlab_proxmox::{PveClient, TaskPolicy};
use agentlab_pve_sim::{InProcessTransport, LatencyModel, Sim, SimConfig};
use ractor::{Actor, ActorRef};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// One minute of lease and job time: a real minute (time is virtual anyway).
pub const MINUTE: Duration = Duration::from_secs(60);
/// How often each sandbox probes its VM.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(30);
/// The shipped profiles' template.
pub const TEMPLATE_VMID: u32 = 9000;

/// What to vary between scenarios.
#[derive(Clone)]
pub struct Options {
    pub nodes: Vec<String>,
    /// The simulator's latency factor (1.0: Proxmox's own durations, in virtual time).
    pub latency_factor: f64,
    /// Where the daemon looks for guest addresses (the simulator hands out 10.77.x.x).
    pub agent_subnet: &'static str,
    pub guest_agent_timeout: Duration,
    /// The Proxmox datacenter firewall at start (on: a set-up host; the harness has no
    /// host ruleset, so off means no isolation layer and provisioning is refused).
    pub datacenter_firewall: bool,
    /// More profiles (YAML documents), next to the shipped ones.
    pub extra_profiles: &'static str,
    /// Idle-stop (off unless a test turns it on) and where it sees SSH sessions.
    pub idle: IdleSettings,
    pub ssh_sessions: Arc<dyn SshSessions>,
}

/// SSH sessions as a test sets them.
pub struct FakeSessions(pub std::sync::Mutex<Result<usize, String>>);

impl SshSessions for FakeSessions {
    fn established(&self, _ip: std::net::Ipv4Addr) -> Result<usize, String> {
        self.0.lock().unwrap().clone()
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            nodes: vec!["pve1".into()],
            latency_factor: 1.0,
            agent_subnet: "10.77.0.0/16",
            guest_agent_timeout: Duration::from_secs(180),
            datacenter_firewall: true,
            extra_profiles: "",
            idle: IdleSettings { enabled: false, interval: MINUTE, minutes_default: 30, cpu_threshold: 0.05 },
            ssh_sessions: Arc::new(FakeSessions(std::sync::Mutex::new(Ok(0)))),
        }
    }
}

/// Actor names are process-wide (`root`, `pve`, `sandbox:<vmid>`): harnesses in one test
/// process (plain `cargo test`) run one at a time, each stopping its actors at the end.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Harness {
    _serial: tokio::sync::MutexGuard<'static, ()>,
    pub dir: tempfile::TempDir,
    pub sim: Arc<Sim>,
    pub store: Arc<Store>,
    pub sandboxes: Arc<SandboxContext>,
    pub jobs: Arc<JobContext>,
    pub root: ActorRef<RootMsg>,
    /// Where Proxmox (the simulator) reads `local`'s snippets.
    pub snippets_dir: PathBuf,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::with(Options::default()).await
    }

    pub async fn with(options: Options) -> Harness {
        let serial = SERIAL.lock().await;
        let dir = tempfile::tempdir().unwrap();
        let mut sim_config = SimConfig::for_tests(dir.path().join("sim"));
        sim_config.nodes = options.nodes.clone();
        sim_config.latency = LatencyModel::scaled(options.latency_factor);
        sim_config.datacenter_firewall = options.datacenter_firewall;
        let snippets_dir = sim_config.local_storage_path.join("snippets");
        let transport = InProcessTransport::start(sim_config).unwrap();
        let sim = Arc::clone(&transport.sim);
        let pve = Arc::new(PveClient::new(transport, TaskPolicy::default()));

        let store = Arc::new(Store::open(&dir.path().join("agentlab.db")).unwrap());
        let profiles_dir = dir.path().join("profiles");
        std::fs::create_dir_all(&profiles_dir).unwrap();
        let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../profiles/defaults.yaml");
        std::fs::copy(shipped, profiles_dir.join("defaults.yaml")).unwrap();
        if !options.extra_profiles.is_empty() {
            std::fs::write(profiles_dir.join("extra.yaml"), options.extra_profiles).unwrap();
        }
        let rules = agentlab_actors::profiles::ProfileRules { api_token: true };
        let profiles = Arc::new(ProfileRegistry::load(profiles_dir, rules).unwrap());
        let directory = ActorDirectory::default();
        let sandboxes = Arc::new(SandboxContext {
            store: Arc::clone(&store),
            profiles: Arc::clone(&profiles),
            gateway: agentlab_actors::pve::gateway(),
            settings: SandboxSettings {
                node: None,
                snippets_dir: None,
                host_node: "pve1".into(),
                proxmox_is_root: false,
                snippet_storage: "local".into(),
                ssh_public_key: None,
                controller_url: "http://10.77.0.1:8844".into(),
                agent_subnet: options.agent_subnet.parse().unwrap(),
                gateway_ip: "10.77.0.1".parse().unwrap(),
                listener_ports: vec![8844, 8846],
                agent_bridge: "vmbr1".into(),
                allowlist_dns_server: "127.0.0.1:53".parse().unwrap(),
                provisioning_timeout: Duration::from_secs(600),
                guest_agent_timeout: options.guest_agent_timeout,
                probe_interval: PROBE_INTERVAL,
                lease_minute: MINUTE,
                ip_poll_interval: Duration::from_secs(2),
                vmid_range: 1000..=1999,
                clock: Clock::following_tokio(),
                max_ttl_minutes: 7 * 24 * 60,
                idle: options.idle.clone(),
            },
            directory: directory.clone(),
            orphans: Default::default(),
            host_table: None,
            ssh_sessions: Arc::clone(&options.ssh_sessions),
            claims: Default::default(),
        });
        let jobs = Arc::new(JobContext {
            store: Arc::clone(&store),
            profiles,
            sandboxes: Arc::clone(&sandboxes),
            settings: JobSettings {
                secrets: SecretsSettings {
                    dir: dir.path().join("secrets"),
                    default_bundle: "default".into(),
                    identity_path: dir.path().join("keys/age.key"),
                },
                artifact_upload_url: "http://10.77.0.1:8846/upload".into(),
                artifact_dir: dir.path().join("artifacts"),
                artifact_token_ttl: Duration::from_secs(3600),
                release_retry: Duration::from_secs(10),
                log_max_bytes: 64 * 1024 * 1024,
            },
            directory: directory.clone(),
        });
        let args = RootArgs {
            store: Arc::clone(&store),
            pve,
            pve_probe_interval: Duration::from_secs(30),
            pve_limits: GatewayLimits::default(),
            factories: vec![
                Arc::new(SandboxFactory { ctx: Arc::clone(&sandboxes) }),
                Arc::new(JobFactory { ctx: Arc::clone(&jobs) }),
            ],
            directory,
            policy: RestartPolicy::default(),
        };
        let (root, _) = Actor::spawn(Some(ROOT_ACTOR.to_string()), RootSupervisor, args).await.unwrap();
        Harness { _serial: serial, dir, sim, store, sandboxes, jobs, root, snippets_dir }
    }

    /// Stops every actor (the root drains its children) so the next harness in this
    /// process can use the same names. Every test ends with it.
    pub async fn stop(self) {
        self.root.stop_and_wait(Some("test over".into()), Some(Duration::from_secs(60))).await.unwrap();
    }

    /// Records a sandbox of `profile` as `sandbox new` does and starts its actor (it is
    /// still provisioning when this returns).
    pub async fn create_sandbox(&self, profile: &str, ttl_minutes: Option<u32>, keepalive: bool) -> u32 {
        let request =
            SandboxRequest { profile: profile.into(), ttl_minutes, keepalive: Some(keepalive), ..Default::default() };
        let record = allocate(&self.sandboxes, &request).await.unwrap();
        agentlab_actors::root::request_spawn("sandbox", &record.vmid.to_string()).await.unwrap();
        record.vmid
    }

    /// A sandbox as `sandbox new` gives it: READY.
    pub async fn ready_sandbox(&self, ttl_minutes: Option<u32>, keepalive: bool) -> u32 {
        let vmid = self.create_sandbox("yolo-ephemeral", ttl_minutes, keepalive).await;
        match self.settled(vmid).await {
            Settled::Ready(view) => assert_eq!(view.state, SandboxState::Ready),
            Settled::Failed(view) => panic!("sandbox {vmid} failed: {view:?}"),
        }
        vmid
    }

    /// Waits until the sandbox's provisioning is over.
    pub async fn settled(&self, vmid: u32) -> Settled {
        let actor = self.sandbox_actor(vmid);
        actor.call(SandboxMsg::WaitSettled, Some(Duration::from_secs(3600))).await.unwrap().unwrap()
    }

    /// `sandbox destroy [--force]`, as the API sends it.
    pub async fn destroy(&self, vmid: u32, force: bool) -> Result<SandboxView, Refusal> {
        let actor = self.sandbox_actor(vmid);
        actor
            .call(|reply| SandboxMsg::Destroy { force, by: None, reply }, Some(Duration::from_secs(3600)))
            .await
            .unwrap()
            .unwrap()
    }

    /// An operator operation, as the API sends it.
    pub async fn operate(&self, vmid: u32, op: SandboxOp, force: bool) -> Result<SandboxView, Refusal> {
        let actor = self.sandbox_actor(vmid);
        actor
            .call(|reply| SandboxMsg::Operate { op, force, by: None, reply }, Some(Duration::from_secs(3600)))
            .await
            .unwrap()
            .unwrap()
    }

    pub fn sandbox_actor(&self, vmid: u32) -> ActorRef<SandboxMsg> {
        agentlab_actors::sandbox::actor_of(vmid).unwrap_or_else(|| panic!("sandbox {vmid} has no actor"))
    }

    pub fn sandbox(&self, vmid: u32) -> SandboxRecord {
        self.store.get_sandbox(vmid).unwrap().unwrap()
    }

    pub fn job(&self, id: &str) -> JobRecord {
        self.store.get_job(id).unwrap().unwrap()
    }

    /// Records a job as `job run` does and starts its actor.
    pub async fn create_job(&self, keepalive: bool) -> JobRecord {
        let request = CreateJobRequest {
            repo_url: "https://example.invalid/repo.git".into(),
            git_ref: None,
            profile: "yolo-ephemeral".into(),
            task: "make the tests pass".into(),
            mode: None,
            agent: None,
            ttl_minutes: Some(30),
            keepalive: Some(keepalive),
            workspace_id: None,
            workspace_create: None,
            workspace_wait_seconds: None,
        };
        let job = agentlab_actors::job::create::create(&self.jobs, &request, None).await.unwrap();
        agentlab_actors::root::request_spawn("job", &job.id).await.unwrap();
        job
    }

    /// The kinds of a sandbox's events, oldest first.
    pub fn sandbox_event_kinds(&self, vmid: u32) -> Vec<String> {
        self.store
            .sandbox_events(vmid, agentlab_actors::store::EventPage::Tail(1000))
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }

    /// Whether the simulator still has the VM.
    pub fn vm_exists(&self, vmid: u32) -> bool {
        self.sim.world().vms.contains_key(&vmid)
    }

    /// Whether the simulated VM is running.
    pub fn vm_running(&self, vmid: u32) -> bool {
        self.sim.world().vms.get(&vmid).is_some_and(|vm| vm.power == agentlab_pve_sim::PowerState::Running)
    }
}

/// Polls `check` on the tokio clock (virtual under `start_paused`) until it holds; fails
/// after `within` of that clock, saying what was awaited.
pub async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Lets every actor and task run until time must pass (a real await point for the mailboxes).
pub async fn let_actors_run(duration: Duration) {
    tokio::time::sleep(duration).await;
}
