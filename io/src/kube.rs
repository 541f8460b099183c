//! The pods of this node, from the Kubernetes API server: `GET /api/v1/pods` for
//! `spec.nodeName`, a page of 50 at a time, over TLS trusting only the service account's CA,
//! with its bearer token. Asked at start-up and every `refresh_ms`, on a non-blocking socket
//! of the agent's event loop; each request has 10 s. The cache (by pod uid) is replaced
//! when a whole listing is in, so a failed refresh keeps the previous one. Bounded:
//! `max_pods`, beyond which pods are counted as `pod_table_full`.
//!
//! Processes whose cgroup names a pod (`telegen_core::cgroup`) get that pod's name,
//! namespace, node, workload and labels on their resource.

use crate::fetch::Fetch;
use mio::{Poll, Token};
use rustls::pki_types::ServerName;
use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use telegen_config::{Endpoint, KubeApi, Kubernetes, Scheme};
use telegen_core::selfmetrics::{AgentCounters, DropReason};
use telegen_export::k8s::{self, Pod};

/// How long one page may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes one cached pod may take at most: its strings at their caps.
pub const POD_BYTES_MAX: usize = core::mem::size_of::<Pod>()
    + 4 * k8s::VALUE_CAP
    + 4 * (24 + k8s::VALUE_CAP)
    + k8s::LABELS_CAP * (2 * k8s::VALUE_CAP + 14 + 48);

/// Where the API server is, when the agent is to ask it: the configured URL, or in a pod
/// (`auto`) the address of the `kubernetes` service from the environment.
pub fn endpoint(cfg: &Kubernetes) -> Option<Endpoint> {
    match &cfg.api {
        KubeApi::Off => None,
        KubeApi::Url(e) => Some(e.clone()),
        KubeApi::Auto => {
            let host = std::env::var("KUBERNETES_SERVICE_HOST").ok()?;
            let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host
            };
            Endpoint::parse(&format!("https://{host}:{port}")).ok()
        }
    }
}

/// The node whose pods are asked for.
fn node_name(cfg: &Kubernetes) -> Option<String> {
    cfg.node_name
        .clone()
        .or_else(|| std::env::var("K8S_NODE_NAME").ok())
        .or_else(|| std::env::var("NODE_NAME").ok())
        .filter(|n| !n.is_empty())
        .or_else(|| Some(crate::procfs::uname().0))
}

/// The API client and its cache.
pub struct Kube {
    endpoint: Endpoint,
    addr: SocketAddr,
    tls: (Arc<rustls::ClientConfig>, ServerName<'static>),
    token_file: PathBuf,
    token: String,
    node: String,
    refresh: Duration,
    max_pods: usize,
    token_id: Token,
    fetch: Option<Fetch>,
    /// When the request in flight gives up, or the next listing starts.
    wake: Instant,
    /// The listing being read.
    listing: HashMap<String, Arc<Pod>>,
    pods: HashMap<String, Arc<Pod>>,
    /// The last failure, logged once until a listing succeeds.
    failing: Option<String>,
    listings: u64,
}

impl Kube {
    /// The client for `cfg`, or `None` when the agent is not to ask (off, or not in a
    /// cluster). Reads the token and the CA now, while it may.
    pub fn new(cfg: &Kubernetes, token_id: Token, now: Instant) -> Result<Option<Self>, String> {
        let Some(endpoint) = endpoint(cfg) else {
            if cfg.api == KubeApi::Auto {
                log::debug!("not in a Kubernetes pod (no KUBERNETES_SERVICE_HOST): no pod names");
            }
            return Ok(None);
        };
        if endpoint.scheme != Scheme::Https {
            return Err(format!(
                "{endpoint}: the API server is asked over https only"
            ));
        }
        let token = read_token(&cfg.token_file)?;
        let config = crate::tls::ca_config(&cfg.ca_file)?;
        let name = ServerName::try_from(endpoint.host.clone())
            .map_err(|e| format!("{endpoint}: invalid TLS server name: {e}"))?;
        let addr = (endpoint.host.as_str(), endpoint.port)
            .to_socket_addrs()
            .map_err(|e| format!("{endpoint}: {e}"))?
            .next()
            .ok_or_else(|| format!("{endpoint}: no address"))?;
        let node = node_name(cfg).ok_or("no node name")?;
        log::info!("Kubernetes: pods of node {node} from {endpoint}");
        Ok(Some(Self {
            endpoint,
            addr,
            tls: (config, name),
            token_file: cfg.token_file.clone(),
            token,
            node,
            refresh: Duration::from_millis(cfg.refresh_ms),
            max_pods: cfg.max_pods,
            token_id,
            fetch: None,
            wake: now,
            listing: HashMap::new(),
            pods: HashMap::with_capacity(cfg.max_pods),
            failing: None,
            listings: 0,
        }))
    }

    /// When [`Kube::on_timer`] has something to do.
    pub fn wake_at(&self) -> Instant {
        self.wake
    }

    /// The pod with `uid`, when the last listing had it.
    pub fn pod(&self, uid: &str) -> Option<Arc<Pod>> {
        self.pods.get(uid).cloned()
    }

    fn ask(&mut self, poll: &Poll, next: Option<&str>, now: Instant) {
        let req = k8s::pods_request(&self.endpoint.authority(), &self.node, next, &self.token);
        match Fetch::start(self.addr, self.token_id, poll, req, Some(self.tls.clone())) {
            Ok(f) => {
                self.fetch = Some(f);
                self.wake = now + REQUEST_TIMEOUT;
            }
            Err(e) => self.fail(e, now),
        }
    }

    fn fail(&mut self, why: String, now: Instant) {
        if self.failing.as_deref() != Some(why.as_str()) {
            log::warn!(
                "Kubernetes API {}: {why}; pods keep their last names, retrying in {} s",
                self.endpoint,
                self.refresh.as_secs()
            );
            self.failing = Some(why);
        }
        self.listing.clear();
        self.wake = now + self.refresh;
    }

    /// Starts a listing when one is due; gives up on a request past its time.
    pub fn on_timer(&mut self, poll: &Poll, now: Instant) {
        if now < self.wake {
            return;
        }
        if let Some(f) = self.fetch.take() {
            f.close(poll);
            self.fail("no answer within 10 s".into(), now);
            return;
        }
        // The token rotates (bound service account tokens expire): read it each time. As
        // `nobody` a token only root may read stays the one read at start-up.
        if let Ok(t) = read_token(&self.token_file) {
            self.token = t;
        }
        self.listing.clear();
        self.ask(poll, None, now);
    }

    /// Reads the page in flight; the next page, or the new cache once it is whole (then
    /// true).
    pub fn on_ready(&mut self, poll: &Poll, now: Instant, counters: &mut AgentCounters) -> bool {
        let Some(f) = self.fetch.as_mut() else {
            return false;
        };
        let r = match f.on_ready() {
            Ok(None) => return false,
            Ok(Some(r)) => r,
            Err(e) => {
                if let Some(f) = self.fetch.take() {
                    f.close(poll);
                }
                self.fail(e, now);
                return false;
            }
        };
        if let Some(f) = self.fetch.take() {
            f.close(poll);
        }
        if r.status != 200 {
            let hint = match r.status {
                401 => " (the service account token was refused)",
                403 => {
                    " (the service account may not list pods: see the ClusterRole in the manifest)"
                }
                _ => "",
            };
            self.fail(format!("HTTP {}{hint}", r.status), now);
            return false;
        }
        let page = match k8s::parse_pod_list(&r.body) {
            Ok(p) => p,
            Err(e) => {
                self.fail(e, now);
                return false;
            }
        };
        for pod in page.pods {
            if self.listing.len() >= self.max_pods {
                counters.drop(DropReason::PodTableFull, 1);
                continue;
            }
            self.listing.insert(pod.uid.clone(), Arc::new(pod));
        }
        if let Some(next) = page.next {
            self.ask(poll, Some(&next), now);
            return false;
        }
        self.pods = std::mem::take(&mut self.listing);
        self.listings += 1;
        if self.failing.take().is_some() || self.listings == 1 {
            log::info!("Kubernetes: {} pods on node {}", self.pods.len(), self.node);
        }
        self.wake = now + self.refresh;
        true
    }
}

fn read_token(path: &std::path::Path) -> Result<String, String> {
    let t = std::fs::read_to_string(path)
        .map_err(|e| format!("service account token {}: {e}", path.display()))?;
    let t = t.trim();
    if t.is_empty() || !telegen_export::http::header_ok("Authorization", t) {
        return Err(format!(
            "service account token {}: empty or not a header value",
            path.display()
        ));
    }
    Ok(t.to_string())
}
