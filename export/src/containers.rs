//! Container names from the container runtimes' own state files: what `container.name`
//! and the inferred `service.name` of a process in a container come from.
//!
//! Two layouts, parsed from bytes the caller read (sans-IO):
//! - containers/storage (podman, buildah, cri-o): `…/storage/<driver>-containers/containers.json`,
//!   an array of `{"id": "<64 hex>", "names": ["web", …], …}`.
//! - docker: `/var/lib/docker/containers/<id>/config.v2.json`, an object with `"ID"` and
//!   `"Name": "/web"`.
//!
//! Names longer than [`NAME_CAP`] bytes, ids that are not 64 lower-case hex digits and
//! entries without a name are left out; nothing here panics on input.

use serde::Deserialize;

/// Longest container name kept.
pub const NAME_CAP: usize = 128;

/// An id and the container's name.
pub type Named = ([u8; 64], String);

fn id(s: &str) -> Option<[u8; 64]> {
    let b = s.as_bytes();
    if b.len() != 64
        || !b
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    {
        return None;
    }
    let mut out = [0u8; 64];
    out.copy_from_slice(b);
    Some(out)
}

fn name(s: &str) -> Option<String> {
    let s = s.strip_prefix('/').unwrap_or(s);
    (!s.is_empty() && s.len() <= NAME_CAP && !s.contains(char::is_control)).then(|| s.into())
}

#[derive(Deserialize)]
struct StorageEntry {
    #[serde(default)]
    id: String,
    #[serde(default)]
    names: Vec<String>,
}

/// The containers of a containers/storage `containers.json`, each with its first name.
pub fn storage_names(json: &[u8]) -> Result<Vec<Named>, String> {
    let entries: Vec<StorageEntry> =
        serde_json::from_slice(json).map_err(|e| format!("containers.json: {e}"))?;
    Ok(entries
        .iter()
        .filter_map(|e| Some((id(&e.id)?, name(e.names.first()?)?)))
        .collect())
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(rename = "Name", default)]
    name: String,
}

/// The container a docker `config.v2.json` describes; `None` without a usable id or name.
pub fn docker_name(json: &[u8]) -> Result<Option<Named>, String> {
    let c: DockerConfig =
        serde_json::from_slice(json).map_err(|e| format!("config.v2.json: {e}"))?;
    Ok(id(&c.id).zip(name(&c.name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "00b458000745f3b0f093e95d9b19517b809447a31454c5456cf30e6c94650707";

    /// As buildah 1.28 (Debian 12) wrote it for `buildah from scratch`.
    #[test]
    fn containers_storage_names() {
        let json = format!(
            r#"[{{"id":"{ID}","names":["working-container"],"image":"","layer":"","metadata":"{{\"Type\":\"buildah 0.0.1\"}}","created":"2026-12-01T19:51:37.151Z","flags":{{"MountLabel":"","ProcessLabel":""}}}},
               {{"id":"xyz","names":["bad-id"]}},{{"id":"{ID}","names":[]}}]"#
        );
        let got = storage_names(json.as_bytes()).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0].0[..], ID.as_bytes());
        assert_eq!(got[0].1, "working-container");
        assert!(storage_names(b"{").is_err());
        assert!(storage_names(b"[]").unwrap().is_empty());
    }

    #[test]
    fn docker_config_names() {
        let json = format!(r#"{{"ID":"{ID}","Name":"/web","Config":{{"Image":"nginx"}}}}"#);
        let (i, n) = docker_name(json.as_bytes()).unwrap().unwrap();
        assert_eq!((&i[..], n.as_str()), (ID.as_bytes(), "web"));
        let long = format!(r#"{{"ID":"{ID}","Name":"/{}"}}"#, "x".repeat(NAME_CAP + 1));
        assert_eq!(docker_name(long.as_bytes()).unwrap(), None);
        assert!(docker_name(b"[1]").is_err());
    }
}
