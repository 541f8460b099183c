#!/usr/bin/env python3
"""Validates the packaging with what this machine's registries offer.

- systemd unit: `systemd-analyze verify` must accept it without a single warning.
- Kubernetes manifest: `kubernetes-validate --strict` against the bundled API schemas.
- Helm chart: rendered by Helm's own Go SDK (v4, through PyPI's helm-python-sdk, which
  bundles it as a C library: no helm binary needed), with its defaults and with overrides;
  `helm lint` reports no error or warning; each rendering passes
  `kubernetes-validate --strict`; the default rendering's pod (host PID, security context,
  capabilities, resources, volumes, arguments) equals the plain manifest's; every
  `.Values.x.y` the templates use exists in values.yaml.
- One fact in three places: the capabilities the unit bounds, the manifest adds and the chart
  adds must be the same set.
Usage: validate.py TELEGEN_BINARY (run with the venv's python: it needs PyYAML).
"""
import pathlib
import re
import subprocess
import sys
import tempfile

import yaml

here = pathlib.Path(__file__).parent
binary = sys.argv[1]
failures = []

# systemd
unit = (here / "telegen.service").read_text()
with tempfile.TemporaryDirectory() as d:
    path = pathlib.Path(d) / "telegen.service"
    path.write_text(unit.replace("/usr/local/bin/telegen", binary))
    r = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    out = (r.stdout + r.stderr).strip()
    if r.returncode != 0 or out:
        failures.append(f"systemd-analyze verify: {out or r.returncode}")
unit_caps = set()
for line in unit.splitlines():
    if line.startswith("CapabilityBoundingSet="):
        unit_caps = {c.removeprefix("CAP_") for c in line.split("=", 1)[1].split()}

# Kubernetes
manifest = here / "kubernetes" / "daemonset.yaml"
venv_bin = pathlib.Path(sys.executable).parent
r = subprocess.run([str(venv_bin / "kubernetes-validate"), "--strict", str(manifest)], capture_output=True, text=True)
if r.returncode != 0:
    failures.append(f"kubernetes-validate: {r.stdout}{r.stderr}")
docs = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
ds = next(d for d in docs if d["kind"] == "DaemonSet")
manifest_caps = set(ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["add"])

# Helm
chart = here / "helm" / "telegen"
meta = yaml.safe_load((chart / "Chart.yaml").read_text())
for key in ["apiVersion", "name", "version", "appVersion"]:
    if key not in meta:
        failures.append(f"Chart.yaml lacks {key}")
values = yaml.safe_load((chart / "values.yaml").read_text())
template = (chart / "templates" / "daemonset.yaml").read_text()
for ref in sorted(set(re.findall(r"\.Values((?:\.[A-Za-z_]+)+)", template))):
    node = values
    for part in ref.strip(".").split("."):
        if not isinstance(node, dict) or part not in node:
            failures.append(f"template uses .Values{ref}, which values.yaml does not define")
            break
        node = node[part]
import helm_python as helm

lint = helm.lint(str(chart))
for msg in lint["messages"]:
    # Severity 2 is a warning, 3 an error; 1 ("icon is recommended") is advice.
    if msg["severity"] >= 2:
        failures.append(f"helm lint: {msg['path']}: {msg['error']}")
failures += [f"helm lint: {e}" for e in lint["errors"]]


def render(overrides):
    with helm.Chart.load(str(chart)) as c:
        out = c.render(overrides, name="telegen", namespace="telegen")
    text = "\n---\n".join(out.values())
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    r = subprocess.run([str(venv_bin / "kubernetes-validate"), "--strict", f.name], capture_output=True, text=True)
    pathlib.Path(f.name).unlink()
    if r.returncode != 0:
        failures.append(f"rendered chart {overrides}: kubernetes-validate: {r.stdout}{r.stderr}")
    rendered = [d for d in yaml.safe_load_all(text) if d]
    return next(d for d in rendered if d["kind"] == "DaemonSet")


def pod(d):
    spec = d["spec"]["template"]["spec"]
    c = spec["containers"][0]
    return {
        "hostPID": spec.get("hostPID"),
        "serviceAccountName": spec.get("serviceAccountName"),
        # The downward API variables the agent reads for its own pod.
        "downward": sorted(e["name"] for e in c.get("env", []) if "valueFrom" in e),
        "tolerations": spec.get("tolerations"),
        "args": c.get("args"),
        "securityContext": c["securityContext"],
        "resources": c["resources"],
        "volumeMounts": c["volumeMounts"],
        "volumes": spec["volumes"],
    }


default = render({})
if pod(default) != pod(ds):
    failures.append(f"the chart's default pod differs from the manifest's:\n  chart    {pod(default)}\n  manifest {pod(ds)}")
chart_caps = set(default["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["add"])
custom = render({"spool": {"enabled": False}, "seccomp": "kill", "resourceAttributes": "k8s.cluster.name=edge"})
c = custom["spec"]["template"]["spec"]["containers"][0]
if c["args"] != ["--seccomp", "kill"]:
    failures.append(f"overrides: args {c['args']}")
if any(v["name"] == "spool" for v in custom["spec"]["template"]["spec"]["volumes"]):
    failures.append("overrides: spool disabled but its volume is still there")
if {"name": "OTEL_RESOURCE_ATTRIBUTES", "value": "k8s.cluster.name=edge"} not in c["env"]:
    failures.append(f"overrides: env {c['env']}")

if not (unit_caps == manifest_caps == chart_caps):
    failures.append(f"capabilities differ: unit {sorted(unit_caps)}, manifest {sorted(manifest_caps)}, chart {sorted(chart_caps)}")

for f in failures:
    print("packaging:", f)
print(f"packaging: {'FAILED' if failures else 'ok'} (unit, manifest, chart rendered by Helm {helm.helm_sdk_version()}; {len(unit_caps)} capabilities at start-up)")
sys.exit(1 if failures else 0)
