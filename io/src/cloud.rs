//! The cloud the host runs in, from the instance metadata services AWS, GCP and Azure
//! serve at one link-local address: `cloud.provider`, `cloud.platform`, `cloud.region`,
//! `cloud.availability_zone`, `cloud.account.id`, `host.id`, `host.type`, `host.name`,
//! `host.image.id`.
//!
//! Asked once at start-up, the three at once, each on a non-blocking socket of the agent's
//! event loop: nothing waits for them. Each provider has `timeout_ms` (connection included)
//! to answer; the first answer that parses wins, the others are closed. Off-cloud nothing
//! answers (or the address is unreachable) and the resource has no `cloud.*` attribute;
//! that is one line at debug level. An answer that is not what the provider's documentation
//! describes is one warning.
//!
//! - AWS (IMDSv2): `PUT /latest/api/token` with a 60 s TTL, then
//!   `GET /latest/dynamic/instance-identity/document` with the token.
//! - GCP: `GET /computeMetadata/v1/?recursive=true` with `Metadata-Flavor: Google`.
//! - Azure: `GET /metadata/instance/compute?api-version=2021-02-01` with `Metadata: true`.

use crate::fetch::Fetch;
use mio::{Poll, Token};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};
use telegen_config::CloudProbe;
use telegen_export::cloud::{Attrs, Dmi, Next, Provider, Step, identify, on_response, request};

/// Reads what the firmware says of this machine: `/sys/class/dmi/id` (its serial and UUID
/// are readable by root only: read at start-up) and Xen's `/sys/hypervisor/uuid`. A field
/// that is missing is empty: boards without DMI (most ARM boards) have none.
pub fn read_dmi() -> Dmi {
    let f = |name: &str| {
        std::fs::read_to_string(format!("/sys/class/dmi/id/{name}")).unwrap_or_default()
    };
    Dmi {
        sys_vendor: f("sys_vendor"),
        product_name: f("product_name"),
        product_serial: f("product_serial"),
        product_uuid: f("product_uuid"),
        bios_vendor: f("bios_vendor"),
        board_asset_tag: f("board_asset_tag"),
        chassis_asset_tag: f("chassis_asset_tag"),
        hypervisor_uuid: std::fs::read_to_string("/sys/hypervisor/uuid").unwrap_or_default(),
    }
}

/// Whom the agent asks for cloud metadata, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Ask(Vec<Provider>, String),
    Skip(String),
}

/// Decides from the configuration and the machine's DMI data: a named service is asked for
/// the three providers on any machine; the default address only where the DMI data names a
/// cloud, and only that cloud's provider. Anywhere else no packet goes there.
pub fn plan(cfg: &CloudProbe, dmi: &Dmi) -> Plan {
    if cfg.named {
        return Plan::Ask(
            Provider::ALL.to_vec(),
            "named in the configuration".to_string(),
        );
    }
    match identify(dmi) {
        Some((p, why)) => Plan::Ask(vec![p], format!("{} VM: DMI {why}", p.name())),
        None if dmi.sys_vendor.trim().is_empty() && dmi.product_name.trim().is_empty() => {
            Plan::Skip("no DMI data names a cloud (this machine has none)".into())
        }
        None => Plan::Skip(format!(
            "DMI names no cloud ({} {})",
            dmi.sys_vendor.trim(),
            dmi.product_name.trim()
        )),
    }
}

/// How a probe ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Found(Attrs),
    NotHere(String),
    Malformed(String),
}

/// One provider's probe: one request at a time, each on a connection of its own.
struct Probe {
    provider: Provider,
    token: Token,
    step: Step,
    fetch: Option<Fetch>,
    end: Option<End>,
}

/// What the probes found, once every one has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Found(Provider, Attrs),
    /// No provider answered; why, per provider.
    NotFound(Vec<(Provider, String)>),
    /// A provider's service answered, but not as documented.
    Malformed(Provider, String),
}

/// The probes of the three providers, driven by the agent's event loop.
pub struct Cloud {
    probes: Vec<Probe>,
    addr: SocketAddr,
    authority: String,
    deadline: Instant,
}

impl Cloud {
    /// Starts the probes of `providers` (at most three); tokens from `base` on are theirs.
    pub fn start(
        cfg: &CloudProbe,
        providers: &[Provider],
        poll: &Poll,
        base: Token,
        now: Instant,
    ) -> Result<Self, String> {
        let e = &cfg.endpoint;
        let addr = (e.host.as_str(), e.port)
            .to_socket_addrs()
            .map_err(|err| format!("{}: {err}", e.host))?
            .next()
            .ok_or_else(|| format!("{}: no address", e.host))?;
        let mut c = Self {
            probes: Vec::with_capacity(3),
            addr,
            authority: e.authority(),
            deadline: now + Duration::from_millis(cfg.timeout_ms),
        };
        for (i, &p) in providers.iter().take(Provider::ALL.len()).enumerate() {
            let mut probe = Probe {
                provider: p,
                token: Token(base.0 + i),
                step: p.first_step(),
                fetch: None,
                end: None,
            };
            ask(c.addr, &c.authority, &mut probe, poll);
            c.probes.push(probe);
        }
        Ok(c)
    }

    /// When the probes give up.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether `token` is one of the probes'.
    pub fn owns(&self, token: Token) -> bool {
        self.probes.iter().any(|p| p.token == token)
    }

    /// Moves the probe of `token` on; the outcome once every probe has ended.
    pub fn on_ready(&mut self, poll: &Poll, token: Token) -> Option<Outcome> {
        let i = self.probes.iter().position(|p| p.token == token)?;
        let (addr, authority) = (self.addr, self.authority.as_str());
        let p = &mut self.probes[i];
        if p.end.is_none() {
            match pump(p) {
                Ok(None) => {}
                Ok(Some(r)) => {
                    close(p, poll);
                    match on_response(&p.step, &r) {
                        Next::Ask(step) => {
                            p.step = step;
                            ask(addr, authority, p, poll);
                        }
                        Next::Found(a) => p.end = Some(End::Found(a)),
                        Next::NotHere(why) => p.end = Some(End::NotHere(why)),
                        Next::Malformed(why) => p.end = Some(End::Malformed(why)),
                    }
                }
                Err(e) => {
                    close(p, poll);
                    p.end = Some(End::NotHere(e));
                }
            }
        }
        self.outcome(poll)
    }

    /// Past the deadline, the probes still waiting end; the outcome once all have.
    pub fn on_timer(&mut self, poll: &Poll, now: Instant) -> Option<Outcome> {
        if now < self.deadline {
            return None;
        }
        for p in &mut self.probes {
            if p.end.is_none() {
                close(p, poll);
                p.end = Some(End::NotHere("no answer in time".into()));
            }
        }
        self.outcome(poll)
    }

    /// The first provider found ends the others; otherwise the outcome once all ended.
    fn outcome(&mut self, poll: &Poll) -> Option<Outcome> {
        if let Some(p) = self
            .probes
            .iter()
            .find(|p| matches!(p.end, Some(End::Found(_))))
        {
            let Some(End::Found(a)) = &p.end else {
                return None;
            };
            let found = Outcome::Found(p.provider, a.clone());
            for p in &mut self.probes {
                close(p, poll);
            }
            return Some(found);
        }
        if self.probes.iter().any(|p| p.end.is_none()) {
            return None;
        }
        if let Some(p) = self
            .probes
            .iter()
            .find(|p| matches!(p.end, Some(End::Malformed(_))))
            && let Some(End::Malformed(why)) = &p.end
        {
            return Some(Outcome::Malformed(p.provider, why.clone()));
        }
        Some(Outcome::NotFound(
            self.probes
                .iter()
                .map(|p| match &p.end {
                    Some(End::NotHere(why)) => (p.provider, why.clone()),
                    _ => (p.provider, String::new()),
                })
                .collect(),
        ))
    }
}

/// Opens a connection for the probe's current step.
fn ask(addr: SocketAddr, authority: &str, p: &mut Probe, poll: &Poll) {
    match Fetch::start(addr, p.token, poll, request(&p.step, authority), None) {
        Ok(f) => p.fetch = Some(f),
        Err(e) => p.end = Some(End::NotHere(e)),
    }
}

fn close(p: &mut Probe, poll: &Poll) {
    if let Some(f) = p.fetch.take() {
        f.close(poll);
    }
}

/// Moves the probe's request on; its response once whole.
fn pump(p: &mut Probe) -> Result<Option<telegen_export::http::Response>, String> {
    match p.fetch.as_mut() {
        Some(f) => f.on_ready(),
        None => Ok(None),
    }
}
