//! Wiring: store, Proxmox client, actor root, control socket, signals.

use crate::api::{self, AppState, Peer};
use crate::config::{Config, ProxmoxBackend};
use crate::socket;
use agentlab_actors::events;
use agentlab_actors::job::{JobContext, JobFactory, JobSettings, SecretsSettings};
use agentlab_actors::model::EventKind;
use agentlab_actors::profiles::ProfileRegistry;
use agentlab_actors::pve::rate_limit::{RateLimitedTransport, TokenBucket};
use agentlab_actors::root::{ActorDirectory, ROOT_ACTOR, RestartPolicy, RootArgs, RootSupervisor};
use agentlab_actors::sandbox::{SandboxContext, SandboxFactory, SandboxSettings};
use agentlab_actors::store::{NewEvent, Stage, Store};
use agentlab_proxmox::api::{ApiConfig, ApiTransport, TlsTrust};
use agentlab_proxmox::shell::{ShellConfig, ShellTransport};
use agentlab_proxmox::{Pve, PveClient, TaskPolicy};
use anyhow::Context;
use ractor::Actor;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

const PVE_PROBE_INTERVAL: Duration = Duration::from_secs(30);
const ROOT_STOP_GRACE: Duration = Duration::from_secs(20);

pub fn build_pve(config: &Config) -> anyhow::Result<Arc<dyn Pve>> {
    let rps = config.proxmox.rate_limit_rps;
    let bucket = Arc::new(TokenBucket::new(rps, rps));
    Ok(match &config.proxmox.backend {
        ProxmoxBackend::Api { url, token, trust } => {
            if *trust == TlsTrust::Insecure {
                tracing::warn!(
                    "proxmox_tls_insecure is set: the Proxmox certificate is NOT verified and the API token can be stolen by anyone on the path; pin it with proxmox_tls_fingerprint"
                );
            }
            let transport = ApiTransport::new(ApiConfig {
                url: url.clone(),
                token: token.clone(),
                trust: trust.clone(),
                timeout: config.proxmox.command_timeout,
            })
            .context("cannot set up the Proxmox API client")?;
            Arc::new(PveClient::new(RateLimitedTransport::new(transport, bucket), TaskPolicy::default()))
        }
        ProxmoxBackend::Shell => {
            let policy = TaskPolicy::default();
            let transport = ShellTransport::new(ShellConfig {
                pvesh: "pvesh".into(),
                timeout: config.proxmox.command_timeout,
                task_deadline: policy.deadline,
                local_node: host_node(config)?,
                env: Vec::new(),
            });
            Arc::new(PveClient::new(RateLimitedTransport::new(transport, bucket), policy))
        }
    })
}

/// This host's Proxmox node name: `host_node`, else its short hostname (pve-common
/// `PVE::INotify::nodename`).
fn host_node(config: &Config) -> anyhow::Result<String> {
    if let Some(node) = &config.host_node {
        return Ok(node.clone());
    }
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").context("cannot read this host's name")?;
    let short = hostname.trim().split('.').next().unwrap_or_default().to_string();
    anyhow::ensure!(!short.is_empty(), "this host has no name; set proxmox_node to its Proxmox node name");
    Ok(short)
}

/// A snippet storage Proxmox would not read our snippets from stops the daemon here, with
/// the fix, instead of failing every sandbox's start. Proxmox unreachable: checked again at
/// each sandbox's snippet step.
async fn check_snippet_storage(pve: &dyn Pve, config: &Config) -> anyhow::Result<()> {
    let storage = match tokio::time::timeout(Duration::from_secs(5), pve.storage_config(&config.snippet_storage)).await
    {
        Ok(Ok(storage)) => storage,
        Ok(Err(e))
            if e.class() == agentlab_proxmox::ErrorClass::NotFound
                || e.class() == agentlab_proxmox::ErrorClass::Validation =>
        {
            anyhow::bail!("snippet_storage `{}` is not a Proxmox storage: {e}", config.snippet_storage)
        }
        Ok(Err(e)) => {
            tracing::warn!(
                "cannot read snippet_storage `{}` from Proxmox yet ({e}); checked at each sandbox",
                config.snippet_storage
            );
            return Ok(());
        }
        Err(_) => {
            tracing::warn!(
                "Proxmox did not answer for snippet_storage `{}`; checked at each sandbox",
                config.snippet_storage
            );
            return Ok(());
        }
    };
    let dir = agentlab_actors::sandbox::snippet_storage::snippets_dir(&storage, config.snippets_dir.as_deref())?;
    tracing::info!("snippets go to {} (snippet_storage `{}`)", dir.display(), config.snippet_storage);
    Ok(())
}

/// Removes the `.upload-*.tmp` files uploads in flight left when the daemon died (security
/// review F12): never artifacts (those are linked into place only when complete), and up to
/// `artifact_max_bytes` each.
fn sweep_upload_leftovers(artifact_dir: &std::path::Path) {
    let Ok(jobs) = std::fs::read_dir(artifact_dir) else { return };
    let mut removed = 0;
    for job in jobs.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
        let Ok(files) = std::fs::read_dir(job.path()) else { continue };
        for file in files.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            if name.starts_with(".upload-") && name.ends_with(".tmp") && std::fs::remove_file(file.path()).is_ok() {
                removed += 1;
            }
        }
    }
    if removed > 0 {
        tracing::info!(removed, "removed temporary files of uploads a crash interrupted");
    }
}

/// How often allowlist domains that are due are looked up again and the egress counters
/// are folded into the record.
const HOST_TABLE_REFRESH: Duration = Duration::from_secs(30);

/// Loads the host ruleset at start, then keeps allowlist domains fresh and the egress
/// record folded in. A host where nft cannot run is reported by `status`, logged once.
fn keep_host_table(table: Arc<agentlab_actors::net::HostTable>, gateway: agentlab_actors::pve::Gateway) {
    tokio::spawn(async move {
        let first = Arc::clone(&table);
        match tokio::task::spawn_blocking(move || first.apply()).await {
            Ok(Ok(())) => tracing::info!("host ruleset loaded"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot load the host ruleset; `agentlab status` reports the host layer")
            }
            Err(e) => tracing::warn!(error = %e, "host ruleset task failed"),
        }
        let mut tick = tokio::time::interval(HOST_TABLE_REFRESH);
        tick.tick().await;
        loop {
            tick.tick().await;
            let keeper = Arc::clone(&table);
            let moved = tokio::task::spawn_blocking(move || {
                if keeper.state() != agentlab_actors::net::TableState::Loaded {
                    return false;
                }
                let moved = keeper.refresh_domains();
                let result = if moved { keeper.apply() } else { keeper.fold_egress().map(|_| ()) };
                if let Err(e) = result {
                    tracing::warn!(error = %e, "host ruleset refresh failed");
                }
                moved
            })
            .await
            .unwrap_or(false);
            // An allowlist domain moved: the Proxmox IP set follows.
            if moved {
                match table.allowlist_members() {
                    Ok(members) => {
                        if let Err(e) =
                            agentlab_actors::sandbox::firewall::sync_allowlist_ipset(&gateway, members).await
                        {
                            tracing::warn!(error = %e, "cannot bring the Proxmox allowlist IP set up to date");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot list the allowlist destinations"),
                }
            }
        }
    });
}

/// What sandbox actors need from the config; the SSH key is read once, here.
fn sandbox_settings(config: &Config) -> anyhow::Result<SandboxSettings> {
    let mut ssh_public_key = crate::ssh_key::ensure(&config.ssh_key_path)?;
    match &config.ssh_public_key_path {
        Some(path) => {
            let operator = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read ssh_public_key_path {}", path.display()))?;
            ssh_public_key.push('\n');
            ssh_public_key.push_str(operator.trim());
        }
        None => {
            tracing::info!("no ssh_public_key_path: sandboxes get only the daemon's SSH key (agentlab ssh as root)")
        }
    }
    let ssh_public_key = Some(ssh_public_key);
    Ok(SandboxSettings {
        node: config.proxmox.node.clone(),
        snippets_dir: config.snippets_dir.clone(),
        host_node: host_node(config)?,
        proxmox_is_root: matches!(config.proxmox.backend, ProxmoxBackend::Shell),
        snippet_storage: config.snippet_storage.clone(),
        ssh_public_key,
        controller_url: config.controller_url.clone(),
        agent_subnet: config.agent_subnet,
        gateway_ip: config.bootstrap_listen.ip(),
        listener_ports: vec![config.bootstrap_listen.port(), config.artifact_listen.port()],
        agent_bridge: config.agent_bridge.to_string(),
        allowlist_dns_server: config.allowlist_dns_server,
        provisioning_timeout: config.provisioning_timeout,
        guest_agent_timeout: config.guest_agent_timeout,
        probe_interval: config.sandbox_probe_interval.mul_f64(config.test_time_scale),
        lease_minute: config.lease_length(1),
        ip_poll_interval: Duration::from_secs(2).mul_f64(config.test_time_scale).max(Duration::from_millis(50)),
        vmid_range: config.vmid_min..=config.vmid_max,
        clock: agentlab_actors::clock::Clock::system(),
        max_ttl_minutes: config.max_ttl_minutes,
        idle: agentlab_actors::sandbox::idle::IdleSettings {
            enabled: config.idle_stop.enabled,
            interval: config.idle_stop.interval.mul_f64(config.test_time_scale),
            minutes_default: config.idle_stop.minutes_default,
            cpu_threshold: config.idle_stop.cpu_threshold,
        },
    })
}

pub async fn run(config: Config, profiles: ProfileRegistry) -> anyhow::Result<()> {
    let signals = Signals::install()?;
    let notifier = crate::notify::Notifier::from_env();
    let config = Arc::new(config);
    for dir in [&config.data_dir, &config.run_dir] {
        socket::create_private_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if let Some(parent) = config.db_path.parent() {
        socket::create_private_dir(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let store = Arc::new(Store::open(&config.db_path)?);
    // Before anything is served: no upload is in flight yet.
    socket::create_private_dir(&config.artifact_dir)
        .with_context(|| format!("cannot create artifact_dir {}", config.artifact_dir.display()))?;
    sweep_upload_leftovers(&config.artifact_dir);
    let pve = build_pve(&config)?;
    check_snippet_storage(pve.as_ref(), &config).await?;
    let profiles = Arc::new(profiles);

    let (listener, socket_guard) = socket::bind(&config.socket_path)?;
    let directory = ActorDirectory::default();
    let gateway = agentlab_actors::pve::gateway();
    let host_table = match config.host_ruleset {
        crate::config::HostRuleset::Managed => {
            let settings = crate::net_command::settings(&config).map_err(anyhow::Error::msg)?;
            let nft = agentlab_netfilter::nft::Nft::default();
            let table = Arc::new(agentlab_actors::net::HostTable::new(
                settings,
                nft,
                Arc::clone(&store),
                Arc::clone(&profiles),
            ));
            keep_host_table(Arc::clone(&table), gateway.clone());
            Some(table)
        }
        crate::config::HostRuleset::Off => None,
    };
    let sandboxes = Arc::new(SandboxContext {
        store: Arc::clone(&store),
        profiles: Arc::clone(&profiles),
        gateway: gateway.clone(),
        settings: sandbox_settings(&config)?,
        directory: directory.clone(),
        orphans: Default::default(),
        host_table,
        ssh_sessions: Arc::new(agentlab_netfilter::conntrack::Conntrack::default()),
        claims: Default::default(),
    });
    let jobs = Arc::new(JobContext {
        store: Arc::clone(&store),
        profiles: Arc::clone(&profiles),
        sandboxes: Arc::clone(&sandboxes),
        settings: JobSettings {
            secrets: SecretsSettings {
                dir: config.secrets_dir.clone(),
                default_bundle: config.secrets_bundle.clone(),
                identity_path: config.secrets_age_key_path.clone(),
            },
            artifact_upload_url: config.artifact_upload_url.clone(),
            artifact_dir: config.artifact_dir.clone(),
            artifact_token_ttl: config.artifact_token_ttl,
            release_retry: Duration::from_secs(10).mul_f64(config.test_time_scale).max(Duration::from_millis(500)),
            log_max_bytes: config.job_log_max_bytes,
        },
        directory: directory.clone(),
    });
    let retention = agentlab_actors::job::artifact_retention::spawn_periodic(
        Arc::clone(&store),
        Arc::clone(&profiles),
        agentlab_actors::job::artifact_retention::RetentionSettings {
            artifact_dir: config.artifact_dir.clone(),
            interval: config.artifact_retention_interval,
            max_total_bytes: config.artifact_retention_max_total_bytes,
        },
        agentlab_actors::clock::Clock::system(),
    );
    let shutdown = CancellationToken::new();
    // Pooled guests' held bootstrap fetches return at once when the daemon stops, so the
    // guest listeners drain in time.
    let claims = sandboxes.claims.clone();
    let stopping = shutdown.clone();
    tokio::spawn(async move {
        stopping.cancelled().await;
        claims.close();
    });
    // Bound before any actor starts: a job resumed after a restart has its runner reporting.
    let guest_listeners = crate::guest::serve(Arc::clone(&config), Arc::clone(&jobs), shutdown.clone()).await?;
    let metrics_listener =
        crate::metrics_listener::serve(Arc::clone(&config), Arc::clone(&store), shutdown.clone()).await?;
    let exposures = Arc::new(agentlab_actors::exposure::ExposureContext {
        store: Arc::clone(&store),
        publisher: Arc::new(agentlab_actors::exposure::TailscaleServe { program: config.tailscale_command.clone() }),
        health_interval: config.exposure_health_interval.mul_f64(config.test_time_scale),
        host_ports: config.exposure_port_min..=config.exposure_port_max,
    });
    let workspaces = Arc::new(agentlab_actors::workspace::WorkspaceContext {
        store: Arc::clone(&store),
        gateway: gateway.clone(),
        default_storage: config.workspace_storage.clone(),
        default_node: config.proxmox.node.clone(),
        vmid_range: config.vmid_min..=config.vmid_max,
        clock: agentlab_actors::clock::Clock::system(),
    });
    let sessions = Arc::new(agentlab_actors::session::SessionContext {
        store: Arc::clone(&store),
        sandboxes: Arc::clone(&sandboxes),
        workspaces: Arc::clone(&workspaces),
    });
    let args = RootArgs {
        store: Arc::clone(&store),
        pve,
        pve_probe_interval: PVE_PROBE_INTERVAL,
        pve_limits: config.proxmox.gateway_limits(),
        factories: vec![
            Arc::new(SandboxFactory { ctx: Arc::clone(&sandboxes) }),
            Arc::new(JobFactory { ctx: Arc::clone(&jobs) }),
            Arc::new(agentlab_actors::exposure::ExposureFactory { ctx: Arc::clone(&exposures) }),
            Arc::new(agentlab_actors::workspace::WorkspaceFactory { ctx: Arc::clone(&workspaces) }),
            Arc::new(agentlab_actors::session::SessionFactory { ctx: Arc::clone(&sessions) }),
            Arc::new(agentlab_actors::pool::PoolFactory { ctx: Arc::new(pool_context(&config, &sandboxes)) }),
        ],
        directory,
        policy: RestartPolicy::default(),
    };
    let (root, root_handle) = Actor::spawn(Some(ROOT_ACTOR.to_string()), RootSupervisor, args)
        .await
        .context("cannot start the actor root")?;
    events::emit(NewEvent::new(
        EventKind::DaemonStarted,
        Stage::Lifecycle,
        format!("agentlabd {} started (pid {})", env!("CARGO_PKG_VERSION"), std::process::id()),
    ));

    let state = AppState {
        config: Arc::clone(&config),
        store: Arc::clone(&store),
        profiles: Arc::clone(&profiles),
        root: root.clone(),
        gateway,
        sandboxes: Arc::clone(&sandboxes),
        jobs: Arc::clone(&jobs),
        exposures,
        workspaces,
        sessions,
        started_at: time::OffsetDateTime::now_utc(),
        started: tokio::time::Instant::now(),
        template_reports: Default::default(),
    };
    // The startup orphan scan: reports (and starts the grace period of) AgentLab's VMs
    // (tagged, or carrying the clone-time marker) that no record owns; `sandbox reconcile
    // --apply` removes them later.
    let scan = Arc::clone(&sandboxes);
    tokio::spawn(async move {
        match agentlab_actors::sandbox::reconcile::reconcile(&scan, &scan.orphans, false, Duration::ZERO).await {
            Ok(report) if !report.orphans.is_empty() => {
                let vmids: Vec<u32> = report.orphans.iter().map(|o| o.vmid).collect();
                tracing::warn!(
                    ?vmids,
                    "AgentLab VMs without a record; `agentlab sandbox reconcile --apply` removes them after orphan_grace_period"
                );
                let _ = scan.store.append_event(&NewEvent::new(
                    EventKind::OrphansFound,
                    Stage::Recovery,
                    format!("orphan VMs: {vmids:?}"),
                ));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "startup orphan scan failed"),
        }
    });
    let profile_count = profiles.snapshot().profiles.len();
    let signals = tokio::spawn(handle_signals(signals, Arc::clone(&profiles), shutdown.clone(), notifier.clone()));
    tracing::info!(socket = %config.socket_path.display(), profiles = profile_count, "agentlabd ready");
    // The control socket, the guest listeners (and metrics) are bound and the actor root is
    // up: what `systemctl start` and units ordered after ours wait for.
    notifier.ready(&format!("serving {}; {profile_count} profiles", config.socket_path.display()));
    let watchdog = keep_watchdog(&notifier, root.clone(), Arc::clone(&store));

    let app = api::router(state).into_make_service_with_connect_info::<Peer>();
    let serve = axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let served = serve.await;
    signals.abort();
    retention.abort();
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    shutdown.cancel();
    for listener in guest_listeners.into_iter().chain(metrics_listener) {
        let _ = tokio::time::timeout(Duration::from_secs(5), listener).await;
    }

    tracing::info!("stopping actors");
    // What the events actor holds first (stopping it drops its mailbox), so the stop is last;
    // then written directly, as the events actor is about to stop with everything else.
    if !events::flush(Duration::from_secs(5)).await {
        tracing::warn!("the events actor did not confirm its queued events before the stop");
    }
    if let Err(e) =
        store.append_event(&NewEvent::new(EventKind::DaemonStopping, Stage::Lifecycle, "agentlabd stopping"))
    {
        tracing::warn!(error = %e, "cannot record the stop event");
    }
    if let Err(e) = root.stop_and_wait(Some("daemon shutting down".into()), Some(ROOT_STOP_GRACE)).await {
        tracing::warn!(error = %e, "actors did not stop in time");
    }
    let _ = root_handle.await;
    drop(socket_guard);
    served.context("control API failed")?;
    tracing::info!("agentlabd stopped");
    Ok(())
}

/// The warm pool's limits from the config (its look interval scaled for tests).
fn pool_context(config: &Config, sandboxes: &Arc<SandboxContext>) -> agentlab_actors::pool::PoolContext {
    agentlab_actors::pool::PoolContext {
        sandboxes: Arc::clone(sandboxes),
        limits: pool_limits(config),
        interval: config.pool.check_interval.mul_f64(config.test_time_scale).max(Duration::from_millis(200)),
    }
}

pub fn pool_limits(config: &Config) -> agentlab_actors::pool::plan::Limits {
    agentlab_actors::pool::plan::Limits {
        max_total: config.pool.max_total,
        concurrency: config.pool.refill_concurrency,
    }
}

/// With `WatchdogSec=` set, pings systemd at half the interval while the daemon is alive:
/// the actor root runs and the database answers a read within the interval. A daemon that
/// is wedged (a stuck database, a dead root) stops pinging and systemd restarts it.
fn keep_watchdog(
    notifier: &crate::notify::Notifier,
    root: ractor::ActorRef<agentlab_actors::root::RootMsg>,
    store: Arc<Store>,
) -> Option<tokio::task::JoinHandle<()>> {
    let interval = notifier.watchdog_interval()?;
    let notifier = notifier.clone();
    tracing::info!(?interval, "systemd watchdog on");
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval / 2);
        loop {
            tick.tick().await;
            if root.get_status() != ractor::ActorStatus::Running {
                tracing::error!("the actor root is not running: not pinging the systemd watchdog");
                continue;
            }
            let reader = Arc::clone(&store);
            let read = tokio::task::spawn_blocking(move || reader.count_sandboxes_by_state().is_ok());
            match tokio::time::timeout(interval / 2, read).await {
                Ok(Ok(true)) => notifier.watchdog(),
                _ => tracing::error!("the database did not answer: not pinging the systemd watchdog"),
            }
        }
    }))
}

/// The signals the daemon reacts to, installed before the socket exists so that no early
/// SIGHUP or SIGTERM hits the default action (which would kill the process).
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            hup: signal(SignalKind::hangup()).context("cannot handle SIGHUP")?,
        })
    }
}

/// SIGTERM/SIGINT stop the daemon; SIGHUP reloads profiles (a bad set keeps the old one).
async fn handle_signals(
    mut signals: Signals,
    profiles: Arc<ProfileRegistry>,
    shutdown: CancellationToken,
    notifier: crate::notify::Notifier,
) {
    loop {
        tokio::select! {
            _ = signals.term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = signals.int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = signals.hup.recv() => {
                match profiles.reload() {
                    Ok(count) => {
                        tracing::info!(count, "SIGHUP: profiles reloaded");
                        // A pool size or a pooled profile may have changed.
                        agentlab_actors::pool::nudge();
                        notifier.status(&format!("{count} profiles (reloaded)"));
                        events::emit(NewEvent::new(EventKind::ProfilesReloaded, Stage::Lifecycle, format!("{count} profiles loaded")));
                    }
                    Err(errors) => {
                        tracing::error!(%errors, "SIGHUP: profiles NOT reloaded; the previous set stays in use");
                        events::emit(NewEvent::new(EventKind::ProfilesReloadFailed, Stage::Lifecycle, errors.to_string()));
                    }
                }
            }
        }
    }
    notifier.stopping();
    shutdown.cancel();
}
