//! The supervision machinery with a throw-away entity kind: restart from the record,
//! sibling isolation, giving up, and the debug tree.

use super::*;
use crate::model::{SandboxEvent, SandboxState, sandbox_state};
use crate::store::{SandboxRecord, Store};
use agentlab_proxmox::api::{ApiConfig, ApiTransport, TlsTrust};
use agentlab_proxmox::{PveClient, TaskPolicy};
use ractor::{RpcReplyPort, SpawnErr, call_t};
use std::sync::atomic::{AtomicU32, Ordering};

/// An entity actor that loads a sandbox record, answers `Get` and panics on `Crash`.
struct ProbeEntity {
    store: Arc<Store>,
    spawns: Arc<AtomicU32>,
    directory: ActorDirectory,
}

enum ProbeMsg {
    Get(RpcReplyPort<(SandboxState, u32)>),
    Crash,
}

struct ProbeState {
    record: SandboxRecord,
    generation: u32,
}

impl Actor for ProbeEntity {
    type Msg = ProbeMsg;
    type State = ProbeState;
    type Arguments = (u32, String);

    async fn pre_start(
        &self,
        _me: ActorRef<ProbeMsg>,
        (vmid, name): (u32, String),
    ) -> Result<ProbeState, ActorProcessingErr> {
        let record = self.store.get_sandbox(vmid)?.ok_or_else(|| format!("no record {vmid}"))?;
        self.directory.set_state(&name, record.state.as_str());
        let generation = self.spawns.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(ProbeState { record, generation })
    }

    async fn handle(
        &self,
        _me: ActorRef<ProbeMsg>,
        msg: ProbeMsg,
        state: &mut ProbeState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ProbeMsg::Get(reply) => {
                let _ = reply.send((state.record.state, state.generation));
            }
            ProbeMsg::Crash => panic!("probe {} exploded", state.record.vmid),
        }
        Ok(())
    }
}

struct ProbeFactory {
    store: Arc<Store>,
    directory: ActorDirectory,
    spawns: HashMap<u32, Arc<AtomicU32>>,
}

impl EntityFactory for ProbeFactory {
    fn kind(&self) -> &'static str {
        "probe"
    }

    fn live_ids(&self) -> Result<Vec<String>, EntityError> {
        let ids = self.store.live_sandbox_vmids()?;
        Ok(ids.into_iter().map(|v| v.to_string()).collect())
    }

    fn spawn(&self, id: String, name: String, supervisor: ActorCell) -> SpawnFuture {
        let vmid: u32 = id.parse().unwrap_or(0);
        let actor = ProbeEntity {
            store: Arc::clone(&self.store),
            spawns: self.spawns.get(&vmid).cloned().unwrap_or_default(),
            directory: self.directory.clone(),
        };
        Box::pin(async move {
            let (actor_ref, _) = Actor::spawn_linked(Some(name.clone()), actor, (vmid, name), supervisor).await?;
            Ok::<ActorCell, SpawnErr>(actor_ref.get_cell())
        })
    }

    fn give_up(&self, id: &str, reason: &str) -> Result<(), EntityError> {
        let vmid: u32 = id.parse().unwrap();
        let record = self.store.get_sandbox(vmid)?.unwrap();
        let to = sandbox_state::transition(record.state, SandboxEvent::Fail).unwrap();
        Ok(self.store.transition_sandbox(vmid, record.state, to, Some(reason), None)?)
    }
}

/// The root's name is process-wide: under plain `cargo test` these run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Harness {
    _serial: tokio::sync::MutexGuard<'static, ()>,
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    root: ActorRef<RootMsg>,
    spawns: HashMap<u32, Arc<AtomicU32>>,
}

async fn start(vmids: &[u32], policy: RestartPolicy) -> Harness {
    let serial = SERIAL.lock().await;
    agentlab_proxmox::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("agentlab.db")).unwrap());
    for vmid in vmids {
        let record = crate::store::SandboxRecord::sample(*vmid, SandboxState::Ready);
        store.insert_sandbox(&record, None).unwrap();
    }
    let directory = ActorDirectory::default();
    let spawns: HashMap<u32, Arc<AtomicU32>> = vmids.iter().map(|v| (*v, Arc::default())).collect();
    let factory = ProbeFactory { store: Arc::clone(&store), directory: directory.clone(), spawns: spawns.clone() };
    // A real API client pointed at a closed port: Proxmox is simply unreachable here.
    let transport = ApiTransport::new(ApiConfig {
        url: "https://127.0.0.1:1".into(),
        token: "root@pam!t=x".into(),
        trust: TlsTrust::Insecure,
        timeout: Duration::from_secs(2),
    })
    .unwrap();
    let pve = PveClient::new(transport, TaskPolicy::default());
    let args = RootArgs {
        store: Arc::clone(&store),
        pve: Arc::new(pve),
        pve_probe_interval: Duration::from_secs(60),
        pve_limits: crate::pve::GatewayLimits::default(),
        factories: vec![Arc::new(factory)],
        directory,
        policy,
    };
    let (root, _) = Actor::spawn(Some(ROOT_ACTOR.to_string()), RootSupervisor, args).await.unwrap();
    Harness { _serial: serial, _dir: dir, store, root, spawns }
}

fn fast_policy() -> RestartPolicy {
    RestartPolicy {
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        window: Duration::from_secs(600),
        max_failures: 5,
    }
}

fn probe(vmid: u32) -> Option<ActorRef<ProbeMsg>> {
    ActorRef::<ProbeMsg>::where_is(format!("probe:{vmid}"))
}

/// Polls until `probe:vmid` answers with a generation of at least `generation`.
async fn wait_generation(vmid: u32, generation: u32) -> (SandboxState, u32) {
    for _ in 0..200 {
        if let Some(actor) = probe(vmid)
            && let Ok((state, g)) = call_t!(actor, ProbeMsg::Get, 200)
            && g >= generation
        {
            return (state, g);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("probe:{vmid} never reached generation {generation}");
}

#[tokio::test]
async fn a_panicking_entity_is_restarted_from_its_record_while_its_sibling_keeps_serving() {
    let h = start(&[1001, 1002], fast_policy()).await;
    assert_eq!(wait_generation(1001, 1).await, (SandboxState::Ready, 1));

    // Change the record while the actor is alive: the restarted actor must read this,
    // not anything the dead actor held in memory.
    h.store.transition_sandbox(1001, SandboxState::Ready, SandboxState::Stopped, None, None).unwrap();
    let crashing = probe(1001).unwrap_or_else(|| panic!("probe:1001 not registered"));
    crashing.send_message(ProbeMsg::Crash).unwrap();

    // The sibling answers throughout the crash and the restart.
    for _ in 0..10 {
        let sibling = probe(1002).unwrap_or_else(|| panic!("sibling gone"));
        let answer = call_t!(sibling, ProbeMsg::Get, 500).expect("sibling did not answer");
        assert_eq!(answer, (SandboxState::Ready, 1));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    assert_eq!(wait_generation(1001, 2).await, (SandboxState::Stopped, 2));
    assert_eq!(h.spawns[&1002].load(Ordering::SeqCst), 1, "the sibling was never restarted");

    let views = call_t!(h.root, RootMsg::DebugActors, 1000).unwrap();
    let restarted = views.iter().find(|v| v.name == "probe:1001").unwrap_or_else(|| panic!("{views:?}"));
    assert_eq!(restarted.restarts, 1);
    assert_eq!(restarted.state, "STOPPED");

    let events = h.store.recent_failures(10).unwrap_or_default();
    assert!(events.iter().any(|e| e.kind == "actor.restart.failed" && e.msg.contains("probe:1001")), "{events:?}");
    h.root.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn an_entity_failing_five_times_in_the_window_is_marked_failed_and_not_restarted() {
    let h = start(&[1001], fast_policy()).await;
    for generation in 1..=5 {
        wait_generation(1001, generation).await;
        let actor = probe(1001).unwrap_or_else(|| panic!("not registered"));
        actor.send_message(ProbeMsg::Crash).unwrap();
    }
    let mut record = None;
    for _ in 0..100 {
        record = h.store.get_sandbox(1001).ok().flatten();
        if record.as_ref().is_some_and(|r| r.state == SandboxState::Failed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let record = record.unwrap_or_else(|| panic!("record gone"));
    assert_eq!(record.state, SandboxState::Failed);
    assert!(record.error.unwrap_or_default().contains("failed 5 times"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(probe(1001).is_none(), "given-up entity must not be respawned");
    assert_eq!(h.spawns[&1001].load(Ordering::SeqCst), 5);
    h.root.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn debug_tree_shows_root_services_and_entities() {
    let h = start(&[1001], fast_policy()).await;
    wait_generation(1001, 1).await;
    let views = call_t!(h.root, RootMsg::DebugActors, 1000).unwrap();
    let names: Vec<(&str, Option<&str>, &str)> =
        views.iter().map(|v| (v.name.as_str(), v.parent.as_deref(), v.kind.as_str())).collect();
    assert_eq!(
        names,
        [
            ("root", None, "supervisor"),
            ("events", Some("root"), "service"),
            ("probe:1001", Some("root"), "probe"),
            ("pve", Some("root"), "service"),
        ]
    );
    assert!(views.iter().all(|v| v.status == "running"), "{views:?}");
    h.root.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn a_request_does_not_cut_a_failed_entitys_back_off_short() {
    let slow = RestartPolicy { base_delay: Duration::from_millis(600), ..fast_policy() };
    let h = start(&[1001], slow).await;
    assert_eq!(wait_generation(1001, 1).await, (SandboxState::Ready, 1));
    probe(1001).unwrap_or_else(|| panic!("probe:1001 not registered")).send_message(ProbeMsg::Crash).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // What a guest's report does when the job's actor is missing: ask for it.
    for _ in 0..20 {
        let asked = request_spawn("probe", "1001").await;
        assert!(matches!(asked, Err(SpawnError::NotStarted(_))), "{asked:?}");
    }
    assert_eq!(h.spawns[&1001].load(Ordering::SeqCst), 1, "not respawned during its back-off");
    assert_eq!(wait_generation(1001, 2).await.1, 2, "respawned once the back-off is over");
    h.root.stop_and_wait(None, None).await.unwrap();
}
