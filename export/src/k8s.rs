//! Kubernetes pods, sans-IO: the request for the pods of one node (a page at a time), the
//! pods a `PodList` page holds, and the resource attributes a pod gives the processes of
//! its containers. `io::kube` drives the connection and keeps the cache.
//!
//! A pod's workload is its controller: a ReplicaSet's pods belong to the Deployment whose
//! name is the ReplicaSet's without its last `-` segment (the pod-template hash; a
//! ReplicaSet made by hand is named as it is, and then named wrongly), a Job's to the
//! CronJob whose name is the Job's without its last `-` segment when that segment is all
//! digits (the schedule time), DaemonSets and StatefulSets as they are.

use serde_json::Value;

/// Pods kept per page asked for.
pub const PAGE: usize = 50;
/// Labels kept per pod (the first, in the API's order).
pub const LABELS_CAP: usize = 8;
/// Longest name, namespace, uid or label key or value kept (Kubernetes names are at most
/// 253 bytes; label values 63).
pub const VALUE_CAP: usize = 253;

/// What the agent keeps of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pod {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub node: Option<String>,
    /// The workload attributes: (`k8s.deployment.name`, `web`), (`k8s.replicaset.name`, …).
    pub workload: Vec<(&'static str, String)>,
    /// `k8s.pod.label.<key>` and the value, at most [`LABELS_CAP`].
    pub labels: Vec<(String, String)>,
}

impl Pod {
    /// The name of the workload the pod belongs to (Deployment, StatefulSet, DaemonSet,
    /// CronJob or Job), for `service.name`.
    pub fn workload_name(&self) -> Option<&str> {
        const ORDER: [&str; 5] = [
            "k8s.deployment.name",
            "k8s.statefulset.name",
            "k8s.daemonset.name",
            "k8s.cronjob.name",
            "k8s.job.name",
        ];
        ORDER.iter().find_map(|k| {
            self.workload
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        })
    }

    /// Its resource attributes, in a fixed order (its uid is the container's, given with
    /// the container's attributes).
    pub fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        [
            ("k8s.pod.name", Some(self.name.as_str())),
            ("k8s.namespace.name", Some(self.namespace.as_str())),
            ("k8s.node.name", self.node.as_deref()),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .chain(self.workload.iter().map(|(k, v)| (*k, v.as_str())))
        .chain(self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

/// One page of a node's pods.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    pub pods: Vec<Pod>,
    /// `metadata.continue`: the next page's token, when there is one.
    pub next: Option<String>,
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
fn encode(v: &str, out: &mut String) {
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// The request for a page of the pods on `node` (`next`: the previous page's token), with
/// the service account's bearer `token` (never logged).
pub fn pods_request(authority: &str, node: &str, next: Option<&str>, token: &str) -> Vec<u8> {
    let mut path = String::from("/api/v1/pods?fieldSelector=");
    encode(&format!("spec.nodeName={node}"), &mut path);
    path.push_str(&format!("&limit={PAGE}"));
    if let Some(n) = next {
        path.push_str("&continue=");
        encode(n, &mut path);
    }
    format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: telegen/{}\r\n\
         Accept: application/json\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes()
}

fn text(v: &Value, key: &str) -> Option<String> {
    let s = v.get(key)?.as_str()?;
    (!s.is_empty() && s.len() <= VALUE_CAP).then(|| s.to_string())
}

/// `name` without its last `-` segment, when that segment passes `is_suffix`.
fn strip_suffix(name: &str, is_suffix: impl Fn(&str) -> bool) -> Option<String> {
    let (base, last) = name.rsplit_once('-')?;
    (!base.is_empty() && is_suffix(last)).then(|| base.to_string())
}

/// The workload attributes of a pod whose controller is `kind` `name`.
pub fn workload(kind: &str, name: &str) -> Vec<(&'static str, String)> {
    let n = name.to_string();
    match kind {
        "ReplicaSet" => {
            let mut w = vec![("k8s.replicaset.name", n)];
            let hash = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
            if let Some(d) = strip_suffix(name, hash) {
                w.insert(0, ("k8s.deployment.name", d));
            }
            w
        }
        "Job" => {
            let mut w = vec![("k8s.job.name", n)];
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if let Some(c) = strip_suffix(name, digits) {
                w.insert(0, ("k8s.cronjob.name", c));
            }
            w
        }
        "DaemonSet" => vec![("k8s.daemonset.name", n)],
        "StatefulSet" => vec![("k8s.statefulset.name", n)],
        _ => Vec::new(),
    }
}

fn pod(item: &Value) -> Option<Pod> {
    let meta = item.get("metadata")?;
    let mut labels = Vec::new();
    if let Some(l) = meta.get("labels").and_then(Value::as_object) {
        for (k, v) in l.iter().take(LABELS_CAP) {
            if let Some(v) = v.as_str().filter(|v| v.len() <= VALUE_CAP)
                && k.len() <= VALUE_CAP
            {
                labels.push((format!("k8s.pod.label.{k}"), v.to_string()));
            }
        }
    }
    let owner = meta
        .get("ownerReferences")
        .and_then(Value::as_array)
        .and_then(|o| {
            o.iter()
                .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        });
    let workload = owner
        .and_then(|o| Some((text(o, "kind")?, text(o, "name")?)))
        .map(|(k, n)| workload(&k, &n))
        .unwrap_or_default();
    Some(Pod {
        uid: text(meta, "uid")?,
        name: text(meta, "name")?,
        namespace: text(meta, "namespace")?,
        node: item.get("spec").and_then(|s| text(s, "nodeName")),
        workload,
        labels,
    })
}

/// The pods of a `PodList` page. Items without a name, namespace or uid are skipped.
pub fn parse_pod_list(body: &[u8]) -> Result<Page, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    if v.get("kind").and_then(Value::as_str) != Some("PodList") {
        return Err("not a PodList".into());
    }
    let items = v
        .get("items")
        .and_then(Value::as_array)
        .ok_or("a PodList without items")?;
    let next = v
        .get("metadata")
        .and_then(|m| text(m, "continue"))
        .filter(|c| c.len() <= 4096);
    Ok(Page {
        pods: items.iter().filter_map(pod).collect(),
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page laid out as the Kubernetes API reference shows a `PodList` (core/v1), with
    /// values of our own.
    const PAGE_1: &str = include_str!("../../io/tests/support/kubernetes/pods-page-1.json");

    #[test]
    fn a_pod_list_page() {
        let page = parse_pod_list(PAGE_1.as_bytes()).unwrap();
        assert_eq!(
            page.next.as_deref(),
            Some("eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MTIzNDV9")
        );
        assert_eq!(page.pods.len(), 2);
        let web = &page.pods[0];
        assert_eq!(web.name, "web-5d9c8b7f6d-x7k2p");
        assert_eq!(web.namespace, "shop");
        assert_eq!(web.uid, "0cd7e3ac-1d38-4a1e-8e17-5a5c0e5d8f4f");
        assert_eq!(web.node.as_deref(), Some("edge-1"));
        assert_eq!(web.workload_name(), Some("web"));
        let attrs: Vec<(&str, &str)> = web.attributes().collect();
        assert!(attrs.contains(&("k8s.deployment.name", "web")));
        assert!(attrs.contains(&("k8s.replicaset.name", "web-5d9c8b7f6d")));
        assert!(attrs.contains(&("k8s.pod.label.app", "web")));
        let agent = &page.pods[1];
        assert_eq!(
            agent.workload,
            [("k8s.daemonset.name", "telegen".to_string())]
        );
    }

    #[test]
    fn workloads_and_requests() {
        assert_eq!(
            workload("Job", "backup-29012345"),
            [
                ("k8s.cronjob.name", "backup".to_string()),
                ("k8s.job.name", "backup-29012345".to_string())
            ]
        );
        assert_eq!(
            workload("Job", "migrate"),
            [("k8s.job.name", "migrate".to_string())]
        );
        assert_eq!(workload("Node", "x"), []);
        let r = String::from_utf8(pods_request("10.96.0.1", "edge-1", Some("a+b"), "T")).unwrap();
        assert!(r.starts_with(
            "GET /api/v1/pods?fieldSelector=spec.nodeName%3Dedge-1&limit=50&continue=a%2Bb HTTP/1.1\r\n"
        ));
        assert!(r.contains("Authorization: Bearer T\r\n"));
        assert!(parse_pod_list(b"{\"kind\":\"Status\"}").is_err());
        assert!(parse_pod_list(b"{\"kind\":\"PodList\"}").is_err());
        let empty = parse_pod_list(b"{\"kind\":\"PodList\",\"items\":[{}]}").unwrap();
        assert!(empty.pods.is_empty() && empty.next.is_none());
    }
}
