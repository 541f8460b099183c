//! Container names from the container runtimes' state on this host: containers/storage
//! (podman, buildah, cri-o) under `/var/lib/containers/storage`, and docker under
//! `/var/lib/docker/containers`. Both are readable by root only: they are read at start-up,
//! before privileges are dropped, and read again for a container not known yet only while
//! the agent still is root (`--user root`), at most every [`REREAD`]. Bounded at
//! [`CAPACITY`] names; the parsing is `telegen_export::containers`.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use telegen_export::containers::{Named, docker_name, storage_names};

/// Names kept at most.
pub const CAPACITY: usize = 256;
/// The least time between two readings of the state for unknown containers.
pub const REREAD: Duration = Duration::from_secs(10);

const STORAGE: &str = "/var/lib/containers/storage";
const DOCKER: &str = "/var/lib/docker/containers";

/// Container ids and their names.
#[derive(Default)]
pub struct ContainerNames {
    names: HashMap<[u8; 64], String>,
    /// When the state was last read; `None` when it never was (no reading was asked for).
    read_at: Option<Instant>,
}

impl ContainerNames {
    /// Reads every runtime's state now.
    pub fn read(now: Instant) -> Self {
        let mut n = Self::default();
        n.reread(now);
        let found = n.names.len();
        if found > 0 {
            log::info!("container names: {found} from the runtimes' state");
        } else {
            log::debug!("container names: no runtime state found");
        }
        n
    }

    fn reread(&mut self, now: Instant) {
        self.read_at = Some(now);
        let mut all = Vec::new();
        // containers/storage keeps one containers.json per storage driver.
        for dir in read_dir(Path::new(STORAGE)) {
            let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with("-containers") {
                parse(&dir.join("containers.json"), storage_names, &mut all);
            }
        }
        for dir in read_dir(Path::new(DOCKER)) {
            let one = |b: &[u8]| docker_name(b).map(|n| n.into_iter().collect());
            parse(&dir.join("config.v2.json"), one, &mut all);
        }
        if all.len() > CAPACITY {
            log::warn!(
                "container names: {} containers, the first {CAPACITY} are named",
                all.len()
            );
        }
        self.names = all.into_iter().take(CAPACITY).collect();
    }

    /// The name of container `id`; an unknown one has the state read again when the agent
    /// may (it is root, and [`REREAD`] has passed since the last reading).
    pub fn name(&mut self, id: &[u8; 64], now: Instant) -> Option<&str> {
        if !self.names.contains_key(id)
            && let Some(at) = self.read_at
            && now.saturating_duration_since(at) >= REREAD
            && crate::privileges::is_root()
        {
            self.reread(now);
        }
        self.names.get(id).map(String::as_str)
    }
}

fn read_dir(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// Reads and parses one state file (at most 16 MiB); a file that does not parse is one
/// debug line (runtimes rewrite them in place).
fn parse(path: &Path, parser: impl Fn(&[u8]) -> Result<Vec<Named>, String>, out: &mut Vec<Named>) {
    use std::io::Read;
    let Ok(f) = std::fs::File::open(path) else {
        return;
    };
    let mut bytes = Vec::new();
    if f.take(16 << 20).read_to_end(&mut bytes).is_err() {
        return;
    }
    match parser(&bytes) {
        Ok(named) => out.extend(named),
        Err(e) => log::debug!("{}: {e}", path.display()),
    }
}
