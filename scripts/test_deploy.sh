#!/usr/bin/env bash
# The Kubernetes manifests under deploy/k8s/ (issue 15): they cannot run here (no
# cluster), so this checks what can be checked without one:
#  - every manifest against the Kubernetes API schema (PyPI kubernetes-validate,
#    --strict: unknown fields are errors), and a deliberately broken copy is refused
#    (the validator really validates);
#  - the indexed Job shards the way `nexttile embed` expects: completionMode Indexed
#    and `--shards` equal to `completions` (each index one shard);
#  - every flag the Jobs pass exists in `nexttile embed --help` / `nexttile select --help`.
# Needs target/debug/nexttile (cargo build). Makes a venv under target/deploy-venv.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/lib.sh

k8s_version=1.30.0
venv=$root/target/deploy-venv
if ! "$venv/bin/kubernetes-validate" --version >/dev/null 2>&1; then
  echo "[deploy] installing kubernetes-validate in $venv" >&2
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    ensure_debian_packages deploy python3-venv
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==1.37.0"
fi
[ -x target/debug/nexttile ] || cargo build --quiet --bin nexttile

"$venv/bin/kubernetes-validate" --strict --quiet -k "$k8s_version" deploy/k8s/*.yaml

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Broken copies must be refused: a count that is not a number, and (strict) a field
# the API does not have.
sed 's/completions: 8/completions: eight/' deploy/k8s/embed-job.yaml >"$tmp/broken-type.yaml"
sed 's/completionMode: Indexed/completionModes: Indexed/' deploy/k8s/embed-job.yaml >"$tmp/broken-field.yaml"
for broken in "$tmp"/broken-*.yaml; do
  if "$venv/bin/kubernetes-validate" --strict --quiet -k "$k8s_version" "$broken" >/dev/null 2>&1; then
    echo "[deploy] $(basename "$broken") passed validation: the check checks nothing" >&2
    exit 1
  fi
done

target/debug/nexttile embed --help >"$tmp/embed.txt"
target/debug/nexttile select --help >"$tmp/select.txt"
"$venv/bin/python" - "$tmp" deploy/k8s/*.yaml <<'PY'
import sys, yaml

tmp, files = sys.argv[1], sys.argv[2:]
helps = {sub: open(f"{tmp}/{sub}.txt").read() for sub in ("embed", "select")}
jobs = 0
for path in files:
    for doc in yaml.safe_load_all(open(path)):
        if not doc or doc.get("kind") != "Job":
            continue
        jobs += 1
        spec = doc["spec"]
        for c in spec["template"]["spec"]["containers"]:
            args = c["args"]
            sub = args[0]
            assert c["command"] == ["nexttile"] and sub in helps, (path, c["command"], sub)
            for flag in (a for a in args if a.startswith("--")):
                assert f"{flag} " in helps[sub], f"{path}: nexttile {sub} has no {flag}"
            if sub == "embed":
                assert spec.get("completionMode") == "Indexed", f"{path}: embed needs an Indexed Job"
                shards = int(args[args.index("--shards") + 1])
                assert shards == spec["completions"], \
                    f"{path}: --shards {shards} but completions {spec['completions']}: each index must be one shard"
assert jobs >= 2, f"expected the embed and select Jobs, found {jobs}"
print(f"[deploy] {len(files)} manifests valid against the Kubernetes schema; the Jobs' flags exist; embed shards = completions")
PY
