//! Containers from `/proc/PID/cgroup`: the container id, its runtime and the Kubernetes pod,
//! read from the cgroup paths each runtime creates (cgroup v1 and v2, the cgroupfs and the
//! systemd drivers). Sans-IO: the caller reads the file.
//!
//! Paths recognised (ID is 64 hex digits, UID a pod uid, `-` or `_` separated):
//! - docker: `/docker/ID`, `/system.slice/docker-ID.scope`
//! - containerd: `/kubepods/…/podUID/ID`, `…/cri-containerd-ID.scope`, nerdctl's
//!   `/default/ID` and `nerdctl-ID.scope`
//! - cri-o: `…/crio-ID.scope`, `…/crio/ID`, `/kubepods/…/podUID/crio-ID`
//! - podman: `…/libpod-ID.scope`, `/libpod_parent/libpod-ID` (not `libpod-conmon-ID`, the
//!   monitor beside the container)
//!
//! A Kubernetes path without a runtime marker (`/kubepods/…/podUID/ID`) is containerd's, the
//! runtime of most clusters; the pod uid is kept either way.

/// The runtime that made a container's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Runtime {
    Docker,
    Containerd,
    CriO,
    Podman,
}

impl Runtime {
    /// `container.runtime` (the names the semantic conventions use).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Docker => "docker",
            Self::Containerd => "containerd",
            Self::CriO => "cri-o",
            Self::Podman => "podman",
        }
    }
}

/// A container a process runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Container {
    /// `container.id`: 64 lower-case hex digits.
    pub id: [u8; 64],
    pub runtime: Runtime,
    /// `k8s.pod.uid`, canonical (8-4-4-4-12, lower case), when the path names a pod.
    pub pod_uid: Option<[u8; 36]>,
}

impl Container {
    pub fn id_str(&self) -> &str {
        core::str::from_utf8(&self.id).unwrap_or("")
    }
    pub fn pod_uid_str(&self) -> Option<&str> {
        self.pod_uid
            .as_ref()
            .and_then(|u| core::str::from_utf8(u).ok())
    }
}

/// The container of the process whose `/proc/PID/cgroup` is `text`, if any: the first line
/// (v1 hierarchies and the v2 `0::` line alike) whose path names one.
pub fn container(text: &str) -> Option<Container> {
    text.lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .find_map(from_path)
}

/// The container a cgroup path names, if any.
pub fn from_path(path: &str) -> Option<Container> {
    let mut pod_uid = None;
    let mut kube = false;
    let mut found = None;
    let mut prev = "";
    for seg in path.split('/') {
        if seg.starts_with("kubepods") {
            kube = true;
        }
        if let Some(uid) = pod_segment(seg) {
            pod_uid = Some(uid);
        }
        let seg_id = seg.strip_suffix(".scope").unwrap_or(seg);
        let hit = if let Some(id) = seg_id.strip_prefix("docker-") {
            hex64(id).map(|id| (id, Runtime::Docker))
        } else if let Some(id) = seg_id.strip_prefix("cri-containerd-") {
            hex64(id).map(|id| (id, Runtime::Containerd))
        } else if let Some(id) = seg_id.strip_prefix("nerdctl-") {
            hex64(id).map(|id| (id, Runtime::Containerd))
        } else if let Some(id) = seg_id.strip_prefix("crio-") {
            hex64(id).map(|id| (id, Runtime::CriO))
        } else if let Some(id) = seg_id.strip_prefix("libpod-") {
            hex64(id).map(|id| (id, Runtime::Podman))
        } else if let Some(id) = hex64(seg) {
            let runtime = match prev {
                "docker" => Some(Runtime::Docker),
                "crio" => Some(Runtime::CriO),
                "default" => Some(Runtime::Containerd),
                _ if kube => Some(Runtime::Containerd),
                _ => None,
            };
            runtime.map(|r| (id, r))
        } else {
            None
        };
        if hit.is_some() {
            found = hit;
        }
        prev = seg;
    }
    let (id, runtime) = found?;
    Some(Container {
        id,
        runtime,
        pod_uid,
    })
}

/// 64 hex digits, lower-cased.
fn hex64(s: &str) -> Option<[u8; 64]> {
    let b = s.as_bytes();
    if b.len() != 64 || !b.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut id = [0u8; 64];
    for (o, c) in id.iter_mut().zip(b) {
        *o = c.to_ascii_lowercase();
    }
    Some(id)
}

/// A pod uid from `podUID` (cgroupfs) or `kubepods-QOS-podUID.slice` (systemd, `_` for `-`).
fn pod_segment(seg: &str) -> Option<[u8; 36]> {
    let seg = seg.strip_suffix(".slice").unwrap_or(seg);
    let at = seg.rfind("pod")?;
    let uid = &seg[at + 3..];
    let b = uid.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut out = [0u8; 36];
    for (i, (o, &c)) in out.iter_mut().zip(b).enumerate() {
        let dash = matches!(i, 8 | 13 | 18 | 23);
        *o = match c {
            b'-' | b'_' if dash => b'-',
            c if !dash && c.is_ascii_hexdigit() => c.to_ascii_lowercase(),
            _ => return None,
        };
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::{String, ToString};

    const ID: &str = "7be92808767a667f35c8505cbf40d14e931ef6db5b0210329cf193b15ba9d605";
    const UID: &str = "0cd7e3ac-1d38-4a1e-8e17-5a5c0e5d8f4f";

    fn get(text: &str) -> Option<(String, &'static str, Option<String>)> {
        container(text).map(|c| {
            (
                c.id_str().to_string(),
                c.runtime.as_str(),
                c.pod_uid_str().map(str::to_string),
            )
        })
    }

    #[test]
    fn each_runtime_and_driver() {
        let uid_ = UID.replace('-', "_");
        let cases = [
            (
                format!("12:pids:/docker/{ID}\n0::/docker/{ID}\n"),
                "docker",
                false,
            ),
            (
                format!("0::/system.slice/docker-{ID}.scope\n"),
                "docker",
                false,
            ),
            (
                format!(
                    "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/cri-containerd-{ID}.scope\n"
                ),
                "containerd",
                true,
            ),
            (
                format!("11:memory:/kubepods/burstable/pod{UID}/{ID}\n"),
                "containerd",
                true,
            ),
            (format!("0::/default/{ID}\n"), "containerd", false),
            (
                format!("0::/system.slice/nerdctl-{ID}.scope\n"),
                "containerd",
                false,
            ),
            (
                format!(
                    "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/crio-{ID}.scope\n"
                ),
                "cri-o",
                true,
            ),
            (format!("0::/kubepods/pod{UID}/crio-{ID}\n"), "cri-o", true),
            (
                format!("0::/machine.slice/libpod-{ID}.scope/container\n"),
                "podman",
                false,
            ),
            (
                format!(
                    "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope\n"
                ),
                "podman",
                false,
            ),
        ];
        for (text, runtime, pod) in cases {
            let want = Some((ID.to_string(), runtime, pod.then(|| UID.to_string())));
            assert_eq!(get(&text), want, "{text}");
        }
    }

    #[test]
    fn hosts_and_lookalikes_are_no_container() {
        // This machine's own cgroup file (a 32-digit sandbox id is not a container).
        let here =
            "9:name=systemd:/\n4:memory:/process_api/ea2f9734c39af8bfe9534b440ee6eafc\n0::/\n";
        assert_eq!(get(here), None);
        for text in [
            "0::/init.scope\n",
            "0::/user.slice/user-1000.slice/session-3.scope\n",
            &format!("0::/machine.slice/libpod-conmon-{ID}.scope\n"),
            &format!("0::/system.slice/docker-{}.scope\n", &ID[1..]),
            &format!("0::/somewhere/{ID}\n"),
            "garbage",
            "",
        ] {
            assert_eq!(get(text), None, "{text}");
        }
        // Upper-case ids are reported in lower case.
        let upper = format!("0::/docker/{}\n", ID.to_uppercase());
        assert_eq!(get(&upper).unwrap().0, ID);
    }
}
