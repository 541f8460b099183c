#!/usr/bin/env bash
# Builds the multi-arch container image from cross/packaging/Containerfile with buildah (no
# container engine needed: the image is FROM scratch plus a COPY, so nothing runs inside a
# container), writes it as an OCI layout to target/oci, and checks it: one image per
# platform (linux/amd64, linux/arm64, linux/arm/v7), each holding only /telegen, the static
# binary of that architecture, which starts (under qemu-user for the ARM ones).
# Run after cross/cross.sh, which stages the binaries in target/image/{amd64,arm64,armv7}.
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${TELEGEN_IMAGE_TAG:-telegen:$(cargo metadata --no-deps --format-version 1 |
  python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "telegen"))')}
# buildah's own storage, apart from anything else on the machine, fresh each run.
STORE="$HOME/.cache/telegen/containers"
RUN=/tmp/telegen-containers-run
rm -rf "$STORE" "$RUN" target/oci
b() { buildah --root "$STORE" --runroot "$RUN" --storage-driver vfs "$@"; }

# The build context: only the staged binaries (the repository's target/ is gigabytes).
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
for arch in amd64 arm64 armv7; do
  [ -x "target/image/$arch/telegen" ] || { echo "image: target/image/$arch/telegen missing (run cross/cross.sh)"; exit 1; }
  mkdir -p "$ctx/target/image/$arch"
  cp "target/image/$arch/telegen" "$ctx/target/image/$arch/"
done

b build --quiet --platform linux/amd64,linux/arm64,linux/arm/v7 --manifest "localhost/$TAG" \
  -f cross/packaging/Containerfile "$ctx" >/dev/null
mkdir -p target/oci
b manifest push --quiet --all "localhost/$TAG" "oci:target/oci:$TAG"

python3 - "$TAG" <<'PY'
import hashlib, io, json, pathlib, subprocess, sys, tarfile, tempfile

tag = sys.argv[1]
root = pathlib.Path("target/oci")
blob = lambda d: (root / "blobs" / d.replace(":", "/")).read_bytes()
fail = lambda m: sys.exit(f"image: {m}")
index = json.loads((root / "index.json").read_text())
ref = [m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
if len(ref) != 1:
    fail(f"index.json names {tag} {len(ref)} times")
image_index = json.loads(blob(ref[0]["digest"]))
want = {("amd64", None): ("x86-64", None), ("arm64", None): ("aarch64", "qemu-aarch64-static"),
        ("arm", "v7"): ("ARM", "qemu-arm-static")}
seen = {}
for m in image_index["manifests"]:
    p = m["platform"]
    key = (p["architecture"], p.get("variant"))
    if key not in want:
        fail(f"unexpected platform {p}")
    data = blob(m["digest"])
    if hashlib.sha256(data).hexdigest() != m["digest"].split(":")[1]:
        fail(f"{key}: manifest digest mismatch")
    manifest = json.loads(data)
    config = json.loads(blob(manifest["config"]["digest"]))
    if config["architecture"] != p["architecture"] or config["config"].get("Entrypoint") != ["/telegen"]:
        fail(f"{key}: config {config['architecture']} {config['config'].get('Entrypoint')}")
    if len(manifest["layers"]) != 1:
        fail(f"{key}: {len(manifest['layers'])} layers, expected 1")
    layer = tarfile.open(fileobj=io.BytesIO(blob(manifest["layers"][0]["digest"])))
    names = [n.lstrip("./") for n in layer.getnames() if n.lstrip("./")]
    if names != ["telegen"]:
        fail(f"{key}: the image holds {names}, expected only telegen")
    with tempfile.TemporaryDirectory() as d:
        layer.extractall(d, filter="data")
        exe = pathlib.Path(d) / "telegen"
        kind = subprocess.run(["file", "-b", str(exe)], capture_output=True, text=True).stdout
        arch, runner = want[key]
        if arch not in kind or not ("statically linked" in kind or "static-pie" in kind):
            fail(f"{key}: /telegen is {kind.strip()}")
        cmd = ([runner] if runner else []) + [str(exe), "--version"]
        out = subprocess.run(cmd, capture_output=True, text=True).stdout
        if not out.startswith("telegen "):
            fail(f"{key}: `telegen --version` printed {out!r}")
    seen[key] = sum(l["size"] for l in manifest["layers"])
if set(seen) != set(want):
    fail(f"platforms {sorted(seen)}, expected {sorted(want)}")
sizes = ", ".join(f"{a}{'/' + v if v else ''} {s / 1048576:.2f} MiB" for (a, v), s in sorted(seen.items()))
print(f"image: ok, {tag} in target/oci for linux/amd64, linux/arm64, linux/arm/v7 (compressed layers: {sizes})")
PY
