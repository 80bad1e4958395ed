//! Starting the simulator: the initial cluster, the TLS API listener and the admin listener.

use super::engine::Sim;
use super::http::{self, DROP_HEADER};
use super::world::{NodeEntry, Storage, StorageKind, Vm, VolumeEntry, World};
use super::{SimConfig, admin, tls};
use agentlab_proxmox::PveError;
use agentlab_proxmox::api::{ApiConfig, ApiTransport, Fingerprint, TlsTrust};
use axum::Router;
use axum::routing::any;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

/// A running simulator; stops when dropped.
pub struct SimHandle {
    pub api_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub fingerprint: String,
    pub sim: Arc<Sim>,
    stop: watch::Sender<bool>,
}

impl SimHandle {
    /// `https://127.0.0.1:PORT`.
    pub fn api_url(&self) -> String {
        format!("https://{}", self.api_addr)
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr)
    }

    /// The HTTPS transport a client uses to reach this simulator: its certificate pinned,
    /// authenticated with `token`.
    pub fn api_transport(&self, token: &str, timeout: std::time::Duration) -> Result<ApiTransport, PveError> {
        let fingerprint = Fingerprint::parse(&self.fingerprint).map_err(PveError::Config)?;
        ApiTransport::new(ApiConfig {
            url: self.api_url(),
            token: token.into(),
            trust: TlsTrust::Fingerprint(fingerprint),
            timeout,
        })
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

const GIB: u64 = 1024 * 1024 * 1024;

/// The cluster at start: nodes, `local` (dir, snippets) and `local-lvm` (LVM-thin), and the
/// templates (`VMID` on the first node, or `VMID@NODE`).
pub fn initial_world(config: &SimConfig) -> Result<World, String> {
    std::fs::create_dir_all(config.local_storage_path.join("snippets"))
        .map_err(|e| format!("cannot create {}: {e}", config.local_storage_path.display()))?;
    let mut storages = BTreeMap::new();
    let dir_content = ["backup", "import", "iso", "snippets", "vztmpl"].map(String::from).to_vec();
    storages.insert(
        "local".to_string(),
        Storage::new("local", StorageKind::Dir, dir_content, Some(config.local_storage_path.clone()), 100 * GIB),
    );
    storages.insert(
        "local-lvm".to_string(),
        Storage::new("local-lvm", StorageKind::LvmThin, vec!["images".into(), "rootdir".into()], None, 500 * GIB),
    );
    let nodes: Vec<NodeEntry> =
        config.nodes.iter().map(|n| NodeEntry { name: n.clone(), maxmem: 64 * GIB, maxcpu: 16 }).collect();
    let first = nodes.first().map(|n| n.name.clone()).ok_or("at least one node is needed")?;
    let mut world = World {
        containers: BTreeMap::new(),
        nodes,
        vms: BTreeMap::new(),
        storages,
        cluster_firewall: serde_json::Map::from_iter([(
            "enable".to_string(),
            serde_json::Value::from(u8::from(config.datacenter_firewall)),
        )]),
        groups: BTreeMap::new(),
        ipsets: BTreeMap::new(),
        host_firewall: BTreeMap::new(),
        next_pid: 4000,
        guest_subnet: config.guest_subnet,
        freed_volumes: Vec::new(),
    };
    let image = |vmid: u32| config.qemu.as_ref().and_then(|q| q.images.get(&vmid).cloned());
    for &vmid in &config.templates {
        add_template(&mut world, vmid, &first, image(vmid));
    }
    for (vmid, node) in &config.placed_templates {
        add_template(&mut world, *vmid, node, image(*vmid));
    }
    Ok(world)
}

/// A template with an 8 GiB boot disk (whose content is `image`, for the QEMU runtime) and
/// a cloud-init drive, as Proxmox's cloud-init guide builds one.
pub fn add_template(world: &mut World, vmid: u32, node: &str, image: Option<PathBuf>) {
    let lvm = world.storages.get_mut("local-lvm");
    if let Some(lvm) = lvm {
        for name in [format!("base-{vmid}-disk-0"), format!("vm-{vmid}-cloudinit")] {
            let cloudinit = name.ends_with("cloudinit");
            let size = if cloudinit { 4 * 1024 * 1024 } else { 8 * GIB };
            lvm.volumes.insert(
                name.clone(),
                VolumeEntry {
                    image: image.clone().filter(|_| !cloudinit),
                    ..VolumeEntry::new(&name, Some(vmid), size, "raw")
                },
            );
        }
    }
    let config: BTreeMap<String, String> = [
        ("name", format!("agentlab-template-{vmid}")),
        ("cores", "2".into()),
        ("memory", "2048".into()),
        ("ostype", "l26".into()),
        ("agent", "1".into()),
        ("boot", "order=scsi0".into()),
        ("scsihw", "virtio-scsi-single".into()),
        ("scsi0", format!("local-lvm:base-{vmid}-disk-0,discard=on,size=8G")),
        ("ide2", format!("local-lvm:vm-{vmid}-cloudinit,media=cdrom")),
        ("net0", "virtio=BC:24:11:00:00:01,bridge=vmbr1".into()),
        ("ipconfig0", "ip=dhcp".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut vm = Vm::new(vmid, node, config, 0);
    vm.template = true;
    world.vms.insert(vmid, vm);
}

/// Starts both listeners. Returns once they accept connections.
pub async fn start(config: SimConfig) -> Result<SimHandle, String> {
    agentlab_proxmox::install_crypto_provider();
    let identity = tls::load_or_create(&config.state_dir)?;
    let fingerprint = identity.fingerprint.to_string();
    let world = initial_world(&config)?;
    let api_listener =
        TcpListener::bind(config.listen).await.map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let admin_listener = TcpListener::bind(config.admin_listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.admin_listen))?;
    let api_addr = api_listener.local_addr().map_err(|e| e.to_string())?;
    let admin_addr = admin_listener.local_addr().map_err(|e| e.to_string())?;
    let sim = Arc::new(Sim::new(config, world, fingerprint.clone()));
    let (stop, stopped) = watch::channel(false);

    let api_sim = Arc::clone(&sim);
    let router: Router = Router::new().route(
        "/{*path}",
        any(move |method, uri, headers, body| http::api(Arc::clone(&api_sim), method, uri, headers, body)),
    );
    let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(&identity)?);
    tokio::spawn(serve_tls(api_listener, acceptor, router, stopped.clone()));

    let admin_router = admin::router(Arc::clone(&sim));
    let mut admin_stop = stopped;
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = admin_stop.wait_for(|s| *s).await;
        };
        let _ = axum::serve(admin_listener, admin_router).with_graceful_shutdown(shutdown).await;
    });
    Ok(SimHandle { api_addr, admin_addr, fingerprint, sim, stop })
}

#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DropConnection {}

async fn serve_tls(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    router: Router,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok((tcp, _)) = accepted else { continue };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            // A client that refuses our certificate ends the handshake; nothing to do.
            let Ok(stream) = acceptor.accept(tcp).await else { return };
            let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let router = router.clone();
                async move {
                    let response =
                        router.oneshot(request.map(axum::body::Body::new)).await.unwrap_or_else(|e| match e {});
                    if response.headers().contains_key(DROP_HEADER) {
                        // An error from the service makes hyper close the connection unanswered.
                        return Err(DropConnection);
                    }
                    Ok(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
