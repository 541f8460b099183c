#!/usr/bin/env python3
"""Validates the packaging with what this machine's registries offer.

- systemd unit: `systemd-analyze verify` must accept it without a single warning.
- Kubernetes manifest: `kubernetes-validate --strict` against the bundled API schemas.
- Helm chart: Chart.yaml and values.yaml parse; every `.Values.x.y` the templates use exists
  in values.yaml; the rendered capabilities equal the manifest's. (No helm binary is
  available here, so the templates are not rendered.)
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
m = re.search(r'add: \[(.*?)\]', template)
chart_caps = {c.strip().strip('"') for c in m.group(1).split(",")} if m else set()

if not (unit_caps == manifest_caps == chart_caps):
    failures.append(f"capabilities differ: unit {sorted(unit_caps)}, manifest {sorted(manifest_caps)}, chart {sorted(chart_caps)}")

for f in failures:
    print("packaging:", f)
print(f"packaging: {'FAILED' if failures else 'ok'} (unit, manifest, chart; {len(unit_caps)} capabilities at start-up)")
sys.exit(1 if failures else 0)
