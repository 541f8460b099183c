//! Cloud instance metadata, sans-IO: the requests the agent sends to the metadata services
//! of AWS (IMDSv2), GCP and Azure, and what their answers mean, as OTel resource
//! attributes. `io::cloud` drives the sockets.

use crate::http::{Response, header_ok};
use serde_json::Value;

/// A cloud provider's metadata service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Aws,
    Gcp,
    Azure,
}

impl Provider {
    pub const ALL: [Self; 3] = [Self::Aws, Self::Gcp, Self::Azure];

    /// `cloud.provider`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::Gcp => "gcp",
            Self::Azure => "azure",
        }
    }

    pub fn first_step(self) -> Step {
        match self {
            Self::Aws => Step::AwsToken,
            Self::Gcp => Step::Gcp,
            Self::Azure => Step::Azure,
        }
    }
}

/// What the machine's firmware says of it (`/sys/class/dmi/id`, and Xen's
/// `/sys/hypervisor/uuid`): each field as read, empty when absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dmi {
    pub sys_vendor: String,
    pub product_name: String,
    pub product_serial: String,
    pub product_uuid: String,
    pub bios_vendor: String,
    pub board_asset_tag: String,
    pub chassis_asset_tag: String,
    pub hypervisor_uuid: String,
}

/// Azure sets this chassis asset tag on every VM (cloud-init's ds-identify looks for it).
const AZURE_ASSET_TAG: &str = "7783-7084-3265-9085-8269-3286-77";

/// The cloud the DMI data names, and which field said so; `None` on any other machine
/// (every edge board, a laptop, a VM of another hypervisor), where no metadata service is
/// asked. The rules are cloud-init's ds-identify's: Azure by its chassis asset tag; GCP by
/// its product name or `GoogleCloud-` serial; AWS by the "Amazon EC2" vendor of Nitro
/// instances or the `ec2` prefix of a Xen instance's UUID.
pub fn identify(d: &Dmi) -> Option<(Provider, &'static str)> {
    let t = |s: &str| s.trim().to_string();
    let (vendor, product, bios) = (t(&d.sys_vendor), t(&d.product_name), t(&d.bios_vendor));
    let ec2_uuid = |u: &str| u.trim().to_ascii_lowercase().starts_with("ec2");
    if d.chassis_asset_tag.trim() == AZURE_ASSET_TAG {
        Some((Provider::Azure, "chassis_asset_tag is Azure's"))
    } else if product == "Google Compute Engine" {
        Some((Provider::Gcp, "product_name is Google Compute Engine"))
    } else if d.product_serial.trim().starts_with("GoogleCloud-") {
        Some((Provider::Gcp, "product_serial is GoogleCloud-"))
    } else if vendor == "Amazon EC2" {
        Some((Provider::Aws, "sys_vendor is Amazon EC2"))
    } else if bios == "Amazon EC2" {
        Some((Provider::Aws, "bios_vendor is Amazon EC2"))
    } else if ec2_uuid(&d.product_uuid) {
        Some((Provider::Aws, "product_uuid starts with ec2"))
    } else if ec2_uuid(&d.hypervisor_uuid) {
        Some((Provider::Aws, "the Xen hypervisor uuid starts with ec2"))
    } else {
        None
    }
}

/// One request of a provider's probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    AwsToken,
    /// The instance identity document, with the session token.
    AwsDocument(String),
    Gcp,
    Azure,
}

/// Resource attributes found.
pub type Attrs = Vec<(String, String)>;

/// The request bytes of `step`, to the service at `authority`.
pub fn request(step: &Step, authority: &str) -> Vec<u8> {
    let (method, path, header) = match step {
        Step::AwsToken => (
            "PUT",
            "/latest/api/token",
            "X-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: 0\r\n".to_string(),
        ),
        Step::AwsDocument(token) => (
            "GET",
            "/latest/dynamic/instance-identity/document",
            format!("X-aws-ec2-metadata-token: {token}\r\n"),
        ),
        Step::Gcp => (
            "GET",
            "/computeMetadata/v1/?recursive=true",
            "Metadata-Flavor: Google\r\n".to_string(),
        ),
        Step::Azure => (
            "GET",
            "/metadata/instance/compute?api-version=2021-02-01",
            "Metadata: true\r\n".to_string(),
        ),
    };
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: telegen/{}\r\n\
         {header}Connection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes()
}

/// What an answer to a step leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Ask(Step),
    Found(Attrs),
    /// Not this provider (an error status: someone else's service, or none).
    NotHere(String),
    /// This provider's service answered, but not as documented.
    Malformed(String),
}

pub fn on_response(step: &Step, r: &Response) -> Next {
    if r.status != 200 {
        return Next::NotHere(format!("HTTP {}", r.status));
    }
    let parsed = match step {
        Step::AwsToken => {
            let token = std::str::from_utf8(&r.body).unwrap_or("").trim();
            if token.is_empty() || token.len() > 512 || !header_ok("X", token) {
                return Next::Malformed("a session token that cannot be sent back".into());
            }
            return Next::Ask(Step::AwsDocument(token.to_string()));
        }
        Step::AwsDocument(_) => aws(&r.body),
        Step::Gcp => gcp(&r.body),
        Step::Azure => azure(&r.body),
    };
    match parsed {
        Ok(a) => Next::Found(a),
        Err(e) => Next::Malformed(e),
    }
}

/// Longest attribute value taken from a metadata document.
const VALUE_CAP: usize = 256;

fn json(body: &[u8]) -> Result<Value, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    if !v.is_object() {
        return Err("not a JSON object".into());
    }
    Ok(v)
}

/// A string (or a number, as GCP's instance id is) at `key` of `v`, within the cap.
fn text(v: &Value, key: &str) -> Option<String> {
    let s = match v.get(key)? {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!s.is_empty() && s.len() <= VALUE_CAP).then_some(s)
}

fn attrs(provider: Provider, platform: &str, pairs: &[(&str, Option<String>)]) -> Attrs {
    let mut out = vec![
        ("cloud.provider".to_string(), provider.name().to_string()),
        ("cloud.platform".to_string(), platform.to_string()),
    ];
    for (k, v) in pairs {
        if let Some(v) = v {
            out.push((k.to_string(), v.clone()));
        }
    }
    out
}

/// An EC2 instance identity document.
pub fn aws(body: &[u8]) -> Result<Attrs, String> {
    let v = json(body)?;
    let region = text(&v, "region").ok_or("no region")?;
    let id = text(&v, "instanceId").ok_or("no instanceId")?;
    Ok(attrs(
        Provider::Aws,
        "aws_ec2",
        &[
            ("cloud.region", Some(region)),
            ("cloud.availability_zone", text(&v, "availabilityZone")),
            ("cloud.account.id", text(&v, "accountId")),
            ("host.id", Some(id)),
            ("host.type", text(&v, "instanceType")),
            ("host.image.id", text(&v, "imageId")),
        ],
    ))
}

/// GCP's whole metadata tree (`instance` and `project`).
pub fn gcp(body: &[u8]) -> Result<Attrs, String> {
    let v = json(body)?;
    let instance = v.get("instance").ok_or("no instance")?;
    let project = v.get("project").ok_or("no project")?;
    let id = text(instance, "id").ok_or("no instance id")?;
    // `projects/NUMBER/zones/us-central1-a` and `projects/NUMBER/machineTypes/e2-medium`.
    let zone = text(instance, "zone")
        .and_then(|z| z.rsplit('/').next().map(str::to_string))
        .filter(|z| !z.is_empty())
        .ok_or("no zone")?;
    let region = zone
        .rsplit_once('-')
        .map(|(r, _)| r.to_string())
        .filter(|r| !r.is_empty())
        .ok_or("a zone without a region")?;
    let machine = text(instance, "machineType")
        .and_then(|m| m.rsplit('/').next().map(str::to_string))
        .filter(|m| !m.is_empty());
    Ok(attrs(
        Provider::Gcp,
        "gcp_compute_engine",
        &[
            ("cloud.region", Some(region)),
            ("cloud.availability_zone", Some(zone)),
            ("cloud.account.id", text(project, "projectId")),
            ("host.id", Some(id)),
            ("host.type", machine),
            ("host.name", text(instance, "name")),
            ("host.image.id", text(instance, "image")),
        ],
    ))
}

/// Azure's `compute` metadata.
pub fn azure(body: &[u8]) -> Result<Attrs, String> {
    let v = json(body)?;
    let region = text(&v, "location").ok_or("no location")?;
    let id = text(&v, "vmId").ok_or("no vmId")?;
    Ok(attrs(
        Provider::Azure,
        "azure_vm",
        &[
            ("cloud.region", Some(region)),
            // Empty outside availability zones: then absent.
            ("cloud.availability_zone", text(&v, "zone")),
            ("cloud.account.id", text(&v, "subscriptionId")),
            ("host.id", Some(id)),
            ("host.type", text(&v, "vmSize")),
            ("host.name", text(&v, "name")),
        ],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clouds_are_named_by_their_dmi_data_and_nothing_else_is() {
        // As the three clouds' VMs show them (values from their documentation and
        // cloud-init's ds-identify test data).
        let azure = Dmi {
            sys_vendor: "Microsoft Corporation\n".into(),
            product_name: "Virtual Machine\n".into(),
            chassis_asset_tag: "7783-7084-3265-9085-8269-3286-77\n".into(),
            ..Dmi::default()
        };
        assert_eq!(identify(&azure).map(|p| p.0), Some(Provider::Azure));
        // Hyper-V outside Azure: the same vendor and product, no asset tag.
        let hyperv = Dmi {
            chassis_asset_tag: String::new(),
            ..azure
        };
        assert_eq!(identify(&hyperv), None);
        let gce = Dmi {
            sys_vendor: "Google\n".into(),
            product_name: "Google Compute Engine\n".into(),
            bios_vendor: "Google\n".into(),
            ..Dmi::default()
        };
        assert_eq!(identify(&gce).map(|p| p.0), Some(Provider::Gcp));
        let nitro = Dmi {
            sys_vendor: "Amazon EC2\n".into(),
            product_name: "t3.micro\n".into(),
            board_asset_tag: "i-0123456789abcdef0\n".into(),
            ..Dmi::default()
        };
        assert_eq!(identify(&nitro).map(|p| p.0), Some(Provider::Aws));
        let xen = Dmi {
            sys_vendor: "Xen\n".into(),
            product_name: "HVM domU\n".into(),
            product_uuid: "EC2E1916-9099-7CAF-FD21-012345ABCDEF\n".into(),
            ..Dmi::default()
        };
        assert_eq!(identify(&xen).map(|p| p.0), Some(Provider::Aws));
        // A Xen VM elsewhere, QEMU, a board with no DMI at all: no cloud.
        let other_xen = Dmi {
            product_uuid: "4c4c4544-0042-3510-8052-b3c04f4e4d32".into(),
            ..xen
        };
        assert_eq!(identify(&other_xen), None);
        let qemu = Dmi {
            sys_vendor: "QEMU".into(),
            product_name: "Standard PC (Q35 + ICH9, 2009)".into(),
            ..Dmi::default()
        };
        assert_eq!(identify(&qemu), None);
        assert_eq!(identify(&Dmi::default()), None);
    }

    // Bodies laid out as each provider's documentation shows them (field names, nesting and
    // value formats), with values of our own. Sources: AWS "Instance identity documents"
    // (EC2 User Guide), Google "About VM metadata" (`recursive=true`), Microsoft "Azure
    // Instance Metadata Service" (the `compute` category, api-version 2021-02-01).
    const AWS: &str = include_str!("../../io/tests/support/metadata/aws-identity.json");
    const GCP: &str = include_str!("../../io/tests/support/metadata/gcp-recursive.json");
    const AZURE: &str = include_str!("../../io/tests/support/metadata/azure-compute.json");

    fn get<'a>(a: &'a Attrs, k: &str) -> Option<&'a str> {
        a.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn aws_identity_document() {
        let a = aws(AWS.as_bytes()).unwrap();
        assert_eq!(get(&a, "cloud.provider"), Some("aws"));
        assert_eq!(get(&a, "cloud.platform"), Some("aws_ec2"));
        assert_eq!(get(&a, "cloud.region"), Some("eu-central-1"));
        assert_eq!(get(&a, "cloud.availability_zone"), Some("eu-central-1b"));
        assert_eq!(get(&a, "cloud.account.id"), Some("210987654321"));
        assert_eq!(get(&a, "host.id"), Some("i-0a1b2c3d4e5f60718"));
        assert_eq!(get(&a, "host.type"), Some("t4g.small"));
        assert_eq!(get(&a, "host.image.id"), Some("ami-0f1e2d3c4b5a69788"));
        assert!(
            aws(b"{\"instanceId\": \"i-1\"}")
                .unwrap_err()
                .contains("region")
        );
        assert!(aws(b"<html>").unwrap_err().contains("not JSON"));
        assert!(aws(b"[1]").is_err());
    }

    #[test]
    fn gcp_metadata_tree() {
        let a = gcp(GCP.as_bytes()).unwrap();
        assert_eq!(get(&a, "cloud.provider"), Some("gcp"));
        assert_eq!(get(&a, "cloud.platform"), Some("gcp_compute_engine"));
        assert_eq!(get(&a, "cloud.region"), Some("europe-west4"));
        assert_eq!(get(&a, "cloud.availability_zone"), Some("europe-west4-a"));
        assert_eq!(get(&a, "cloud.account.id"), Some("edge-fleet-demo"));
        // A 64-bit number in the JSON: kept exact.
        assert_eq!(get(&a, "host.id"), Some("8141295766102245571"));
        assert_eq!(get(&a, "host.type"), Some("e2-small"));
        assert_eq!(get(&a, "host.name"), Some("gateway-7"));
        assert!(gcp(b"{\"instance\": {}}").is_err());
        // A zone with nothing before its dash has no region; a machine type ending in a
        // slash names none (both found by the fuzzer: an empty value is no attribute).
        let odd = br#"{"instance": {"id": 7, "zone": "projects/1/zones/-a",
            "machineType": "projects/1/machineTypes/"}, "project": {}}"#;
        assert!(gcp(odd).unwrap_err().contains("region"));
        let no_machine = br#"{"instance": {"id": 7, "zone": "projects/1/zones/eu-west4-a",
            "machineType": "projects/1/machineTypes/"}, "project": {}}"#;
        let a = gcp(no_machine).unwrap();
        assert_eq!(get(&a, "host.type"), None);
        assert!(a.iter().all(|(_, v)| !v.is_empty()));
    }

    #[test]
    fn azure_compute() {
        let a = azure(AZURE.as_bytes()).unwrap();
        assert_eq!(get(&a, "cloud.provider"), Some("azure"));
        assert_eq!(get(&a, "cloud.platform"), Some("azure_vm"));
        assert_eq!(get(&a, "cloud.region"), Some("westeurope"));
        assert_eq!(get(&a, "cloud.availability_zone"), None, "zone \"\": none");
        assert_eq!(
            get(&a, "cloud.account.id"),
            Some("6f0e8a3b-2c1d-4e5f-9a8b-7c6d5e4f3a2b")
        );
        assert_eq!(
            get(&a, "host.id"),
            Some("13f56399-bd52-4150-9748-7190aae1ff21")
        );
        assert_eq!(get(&a, "host.type"), Some("Standard_B2s"));
        assert!(
            azure(b"{\"location\": \"x\"}")
                .unwrap_err()
                .contains("vmId")
        );
    }

    #[test]
    fn requests_and_steps() {
        let r = String::from_utf8(request(&Step::AwsToken, "169.254.169.254")).unwrap();
        assert!(r.starts_with("PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\n"));
        assert!(r.contains("X-aws-ec2-metadata-token-ttl-seconds: 60\r\n"));
        let ok = |body: &str| Response {
            status: 200,
            body: body.as_bytes().to_vec(),
            close: true,
            retry_after: None,
        };
        assert_eq!(
            on_response(&Step::AwsToken, &ok("AQAEAB==\n")),
            Next::Ask(Step::AwsDocument("AQAEAB==".into()))
        );
        assert!(matches!(
            on_response(&Step::AwsToken, &ok("bad\r\ntoken")),
            Next::Malformed(_)
        ));
        let mut not_found = ok("");
        not_found.status = 404;
        assert_eq!(
            on_response(&Step::Gcp, &not_found),
            Next::NotHere("HTTP 404".into())
        );
        let r = String::from_utf8(request(&Step::AwsDocument("T".into()), "h")).unwrap();
        assert!(r.contains("X-aws-ec2-metadata-token: T\r\n"));
        assert!(matches!(
            on_response(&Step::Azure, &ok(AZURE)),
            Next::Found(_)
        ));
    }
}
