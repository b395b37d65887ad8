//! Test support, never shipped: a real Kubernetes control plane on loopback — etcd,
//! kube-apiserver and kube-controller-manager, the binaries a cluster runs, built from the Go
//! module proxy by `make control-plane` — with RBAC enforced, an EKS-shaped service-account
//! issuer, an audit log that tells which identity made which request, and the pieces no real
//! component can play here: a node agent that runs pods as local processes
//! ([`node`]), and the EKS pod identity webhook's mutation served as a real admission webhook
//! over TLS ([`webhook`]).

pub mod audit;
pub mod binaries;
pub mod eks;
pub mod faults;
pub mod kubeconfig;
pub mod node;
pub mod pki;
mod process;
pub mod webhook;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};

use process::Process;

/// The admin's static token (member of `system:masters`).
const ADMIN_USER: &str = "admin";
/// How long start-up may take before it is an error.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How to start the control plane.
#[derive(Debug, Clone)]
pub struct Options {
    /// The service-account issuer; an EKS-shaped URL with a fresh id when `None`.
    pub issuer: Option<String>,
    /// Also run kube-controller-manager (ServiceAccount, token, garbage-collector, namespace,
    /// Deployment, ReplicaSet and root-CA publisher controllers).
    pub controller_manager: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            issuer: None,
            controller_manager: true,
        }
    }
}

/// A running control plane; every process is stopped and every file removed on drop.
pub struct ControlPlane {
    // Dropped in reverse start order (see Drop): controller-manager, API server, etcd.
    etcd: Process,
    apiserver: std::sync::Mutex<Option<Process>>,
    /// How the API server is started, to start it again.
    apiserver_command: (PathBuf, Vec<String>),
    controller_manager: Option<Process>,
    url: String,
    ca_pem: String,
    admin_token: String,
    kubeconfig: PathBuf,
    issuer: String,
    version: String,
    audit_log: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        drop(self.controller_manager.take());
        drop(self.apiserver.get_mut().map(Option::take));
        // etcd goes with the fields.
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_for_port(port: u16, what: &str, process: &mut Process) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        process.check_alive()?;
        if Instant::now() > deadline {
            bail!("{what} did not listen on 127.0.0.1:{port} within {START_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A random lower-case hex id, like EKS's issuer ids.
fn random_id() -> String {
    let bytes = pki::random_bytes(16);
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and (by default) kube-controller-manager, and waits until
    /// the API server answers `/readyz`.
    pub async fn start() -> anyhow::Result<ControlPlane> {
        Self::start_with(Options::default()).await
    }

    /// Starts with `options`.
    pub async fn start_with(options: Options) -> anyhow::Result<ControlPlane> {
        let bin = binaries::Binaries::locate()?;
        let dir = tempfile::tempdir().context("creating the control plane's directory")?;
        let root = dir.path().to_path_buf();
        let issuer = options.issuer.clone().unwrap_or_else(|| {
            format!(
                "https://oidc.eks.us-east-1.amazonaws.com/id/{}",
                random_id()
            )
        });

        let sa_key = root.join("sa.key");
        std::fs::write(&sa_key, pki::rsa_private_key_pem()?)?;
        let admin_token = hex(&pki::random_bytes(24));
        let tokens = root.join("tokens.csv");
        std::fs::write(
            &tokens,
            format!("{admin_token},{ADMIN_USER},{ADMIN_USER}-uid,\"system:masters\"\n"),
        )?;
        let audit_policy = root.join("audit-policy.yaml");
        std::fs::write(&audit_policy, audit::POLICY)?;
        let audit_log = root.join("audit.log");

        let (etcd_port, peer_port) = (free_port()?, free_port()?);
        let mut etcd = Process::spawn(
            "etcd",
            std::process::Command::new(&bin.etcd).args([
                "--name=test",
                &format!("--data-dir={}", root.join("etcd").display()),
                &format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
                &format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
                &format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
                &format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
                &format!("--initial-cluster=test=http://127.0.0.1:{peer_port}"),
                // A test's data need not survive a power cut.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ]),
            &root,
        )?;
        wait_for_port(etcd_port, "etcd", &mut etcd)?;

        let api_port = free_port()?;
        let cert_dir = root.join("certs");
        let apiserver_args: Vec<String> = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            // With a loopback advertise address the default reconciler only complains.
            "--endpoint-reconciler-type=none".into(),
            format!("--secure-port={api_port}"),
            format!("--cert-dir={}", cert_dir.display()),
            "--authorization-mode=Node,RBAC".into(),
            format!("--token-auth-file={}", tokens.display()),
            format!("--service-account-issuer={issuer}"),
            format!("--service-account-signing-key-file={}", sa_key.display()),
            format!("--service-account-key-file={}", sa_key.display()),
            "--api-audiences=https://kubernetes.default.svc,sts.amazonaws.com".into(),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            format!("--audit-policy-file={}", audit_policy.display()),
            format!("--audit-log-path={}", audit_log.display()),
            "--audit-log-format=json".into(),
            "--audit-log-mode=blocking".into(),
            // The node agent serves pods/log on loopback.
            "--kubelet-preferred-address-types=InternalIP".into(),
        ];
        let mut apiserver = Process::spawn(
            "kube-apiserver",
            std::process::Command::new(&bin.kube_apiserver).args(&apiserver_args),
            &root,
        )?;
        wait_for_port(api_port, "kube-apiserver", &mut apiserver)?;
        let url = format!("https://127.0.0.1:{api_port}");
        let ca_pem = std::fs::read_to_string(cert_dir.join("apiserver.crt"))
            .context("reading the API server's self-signed certificate")?;
        let kubeconfig = root.join("admin.kubeconfig");
        kubeconfig::write(&kubeconfig, &url, &ca_pem, &admin_token)?;
        let mut plane = ControlPlane {
            etcd,
            apiserver: std::sync::Mutex::new(Some(apiserver)),
            apiserver_command: (bin.kube_apiserver.clone(), apiserver_args),
            controller_manager: None,
            url,
            ca_pem,
            admin_token,
            kubeconfig,
            issuer,
            version: String::new(),
            audit_log,
            dir,
        };
        plane.wait_ready().await?;
        if options.controller_manager {
            let cm = Process::spawn(
                "kube-controller-manager",
                std::process::Command::new(&bin.kube_controller_manager).args([
                    &format!("--kubeconfig={}", plane.kubeconfig.display()),
                    "--leader-elect=false",
                    "--controllers=serviceaccount-controller,serviceaccount-token-controller,resourcequota-controller,garbage-collector-controller,namespace-controller,deployment-controller,replicaset-controller,root-ca-certificate-publisher-controller",
                    "--use-service-account-credentials=false",
                    // A quota on a custom resource is first counted at a resync (5 minutes by
                    // default); tests cannot wait that long.
                    "--resource-quota-sync-period=5s",
                    &format!("--service-account-private-key-file={}", sa_key.display()),
                    "--bind-address=127.0.0.1",
                    &format!("--secure-port={}", free_port()?),
                ]),
                plane.dir.path(),
            )?;
            plane.controller_manager = Some(cm);
        }
        Ok(plane)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let client = self.client()?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.etcd.check_alive()?;
            if let Some(apiserver) = self.apiserver.get_mut().unwrap().as_mut() {
                apiserver.check_alive()?;
            }
            let ready = client
                .request_text(http::Request::get("/readyz").body(Vec::new())?)
                .await;
            if matches!(ready.as_deref(), Ok("ok")) {
                break;
            }
            if Instant::now() > deadline {
                bail!("kube-apiserver was not ready within {START_TIMEOUT:?}: {ready:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let info = client.apiserver_version().await?;
        self.version = info.git_version;
        Ok(())
    }

    /// Stops kube-apiserver (etcd keeps the data), waits `down`, and starts it again on the same
    /// port; returns once it answers `/readyz`. Its watch cache starts afresh, so a watch from an
    /// older resource version is answered 410 (too old resource version), as after a real
    /// restart.
    pub async fn restart_api_server(&self, down: Duration) -> anyhow::Result<()> {
        drop(self.apiserver.lock().unwrap().take());
        tokio::time::sleep(down).await;
        let (bin, args) = &self.apiserver_command;
        let port: u16 = self.url.rsplit(':').next().unwrap_or_default().parse()?;
        // The port is free once the old process has gone; binding it is the API server's job.
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).is_ok() {
            if Instant::now() > deadline {
                bail!("kube-apiserver's port {port} was still taken after {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let process = Process::spawn(
            "kube-apiserver",
            std::process::Command::new(bin).args(args),
            self.dir.path(),
        )?;
        *self.apiserver.lock().unwrap() = Some(process);
        let client = self.client()?;
        loop {
            let ready = client
                .request_text(http::Request::get("/readyz").body(Vec::new())?)
                .await;
            if matches!(ready.as_deref(), Ok("ok")) {
                return Ok(());
            }
            if let Some(p) = self.apiserver.lock().unwrap().as_mut() {
                p.check_alive()?;
            }
            if Instant::now() > deadline {
                bail!("kube-apiserver was not ready again within {START_TIMEOUT:?}: {ready:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The API server's certificate chain (PEM), to trust it.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The admin's kubeconfig (a `system:masters` token).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A client with the admin's credentials.
    pub fn client(&self) -> anyhow::Result<kube::Client> {
        kubeconfig::client(&self.url, &self.ca_pem, &self.admin_token)
    }

    /// The service-account issuer (EKS-shaped).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The API server's version, e.g. `v1.36.3`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// A directory that lives as long as the control plane.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A kubeconfig authenticating as ServiceAccount `namespace/name` with a token from the
    /// TokenRequest API (valid for a day), written next to the control plane's files.
    pub async fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<PathBuf> {
        let token = self
            .service_account_token(namespace, name, &[], 86_400)
            .await?;
        let path = self
            .dir
            .path()
            .join(format!("{namespace}.{name}.kubeconfig"));
        kubeconfig::write(&path, &self.url, &self.ca_pem, &token)?;
        Ok(path)
    }

    /// A token for ServiceAccount `namespace/name` from the TokenRequest API.
    pub async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        audiences: &[String],
        expiration_seconds: i64,
    ) -> anyhow::Result<String> {
        let request: TokenRequest = serde_json::from_value(serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"audiences": audiences, "expirationSeconds": expiration_seconds},
        }))?;
        let api: Api<ServiceAccount> = Api::namespaced(self.client()?, namespace);
        let created: TokenRequest = api
            .create_subresource("token", name, &PostParams::default(), &request)
            .await
            .with_context(|| format!("requesting a token for ServiceAccount {namespace}/{name}"))?;
        Ok(created.status.map(|s| s.token).unwrap_or_default())
    }

    /// The resident memory of kube-apiserver and etcd, now and at their peak, in KiB.
    pub fn memory_kib(&self) -> ServerMemory {
        let apiserver = self
            .apiserver
            .lock()
            .unwrap()
            .as_ref()
            .and_then(Process::memory_kib);
        ServerMemory {
            apiserver,
            etcd: self.etcd.memory_kib(),
        }
    }

    /// Requests whose User-Agent starts with `agent`, counted by (API group, resource, verb),
    /// from the API server's audit log.
    pub fn requests_from(&self, agent: &str) -> anyhow::Result<audit::Requests> {
        audit::requests_from(&self.audit_log, agent)
    }
}

/// Resident memory (now, peak) in KiB of the control plane's servers; `None` for one that has
/// exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerMemory {
    /// kube-apiserver.
    pub apiserver: Option<(u64, u64)>,
    /// etcd.
    pub etcd: Option<(u64, u64)>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
