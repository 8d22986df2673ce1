#!/usr/bin/env bash
# Validates deploy/ offline:
#   bash deploy/validate.sh
# - parses every YAML document (PyYAML; installed with pip when missing);
# - checks each Kubernetes document has apiVersion, kind and metadata.name,
#   plus Herald's own rules (namespace, probes, grace period, selectors,
#   autoscaling targets) and the compose file's services;
# - runs kubeconform, docker compose config and shellcheck when present,
#   and says which it skipped.
set -euo pipefail

DEPLOY="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$DEPLOY"

command -v python3 >/dev/null 2>&1 || { echo "validate.sh: python3 is required" >&2; exit 1; }
if ! python3 -c 'import yaml' 2>/dev/null; then
    echo "PyYAML is missing: installing it with pip"
    python3 -m pip install --quiet --user pyyaml 2>/dev/null || python3 -m pip install --quiet pyyaml
fi

python3 - "$DEPLOY" <<'PY'
import glob, os, sys
import yaml

deploy = sys.argv[1]
errors = []
def err(where, msg):
    errors.append(f"{where}: {msg}")

def load(path):
    try:
        with open(path) as f:
            return [d for d in yaml.safe_load_all(f) if d is not None]
    except yaml.YAMLError as e:
        err(os.path.relpath(path, deploy), f"not valid YAML: {e}")
        return []

files = sorted(glob.glob(os.path.join(deploy, "**", "*.yaml"), recursive=True)
               + glob.glob(os.path.join(deploy, "**", "*.yml"), recursive=True))
count = 0
k8s = []
for path in files:
    rel = os.path.relpath(path, deploy)
    docs = load(path)
    count += len(docs)
    if rel.startswith("k8s" + os.sep):
        for i, d in enumerate(docs):
            where = f"{rel}#{i + 1}"
            if not isinstance(d, dict):
                err(where, "is not a mapping")
                continue
            if d.get("kind") == "Kustomization":
                for r in d.get("resources", []):
                    if not os.path.exists(os.path.join(os.path.dirname(path), r)):
                        err(where, f"resource {r} does not exist")
                continue
            for key in ("apiVersion", "kind"):
                if not d.get(key):
                    err(where, f"has no {key}")
            name = (d.get("metadata") or {}).get("name")
            if not name:
                err(where, "has no metadata.name")
            k8s.append((where, d))

# ---- Herald's rules for its manifests ----
by_kind = {}
for where, d in k8s:
    by_kind.setdefault(d.get("kind"), []).append((where, d))
    if d.get("kind") != "Namespace" and (d.get("metadata") or {}).get("namespace") != "herald":
        err(where, "should be in namespace herald")

deployments = {}
for where, d in by_kind.get("Deployment", []):
    name = d["metadata"]["name"]
    deployments[name] = d
    spec = d.get("spec", {})
    tmpl = spec.get("template", {})
    labels = (tmpl.get("metadata") or {}).get("labels") or {}
    match = (spec.get("selector") or {}).get("matchLabels") or {}
    if not match or any(labels.get(k) != v for k, v in match.items()):
        err(where, "selector.matchLabels does not match the pod labels")
    pod = tmpl.get("spec", {})
    if pod.get("terminationGracePeriodSeconds") != 40:
        err(where, "terminationGracePeriodSeconds should be 40")
    for c in pod.get("containers", []):
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            got = ((c.get(probe) or {}).get("httpGet") or {}).get("path")
            if got != path:
                err(where, f"container {c.get('name')}: {probe} should GET {path}")

expected_replicas = {"herald-producer": 2, "herald-scheduler": 2, "herald-worker": 2, "herald-sim": 1}
for name, n in expected_replicas.items():
    if name not in deployments:
        err("k8s", f"no Deployment {name}")
    elif deployments[name]["spec"].get("replicas") != n:
        err("k8s", f"Deployment {name} should have {n} replicas")

for where, d in by_kind.get("Service", []):
    sel = (d.get("spec") or {}).get("selector") or {}
    if not any(all(((dep["spec"]["template"].get("metadata") or {}).get("labels") or {}).get(k) == v
                   for k, v in sel.items()) for dep in deployments.values()):
        err(where, f"selector {sel} matches no Deployment")

queues = set()
for where, d in by_kind.get("ScaledObject", []):
    target = ((d.get("spec") or {}).get("scaleTargetRef") or {}).get("name")
    if target not in deployments:
        err(where, f"scales {target}, which is no Deployment here")
    for t in (d.get("spec") or {}).get("triggers", []):
        if t.get("type") == "rabbitmq":
            queues.add((t.get("metadata") or {}).get("queueName"))
for q in ("herald.central.email", "herald.central.wework"):
    if q not in queues:
        err("k8s/keda-scaledobject.yaml", f"no rabbitmq trigger on {q}")
for where, d in by_kind.get("HorizontalPodAutoscaler", []):
    target = ((d.get("spec") or {}).get("scaleTargetRef") or {}).get("name")
    if target not in deployments:
        err(where, f"scales {target}, which is no Deployment here")

# ---- compose ----
compose_path = os.path.join(deploy, "compose.yaml")
if os.path.exists(compose_path):
    docs = load(compose_path)
    services = (docs[0] if docs else {}).get("services") or {}
    for s in ("rabbitmq", "redis", "postgres", "herald-sim", "producer", "scheduler", "worker"):
        if s not in services:
            err("compose.yaml", f"no service {s}")
        elif not services[s].get("healthcheck"):
            err("compose.yaml", f"service {s} has no healthcheck")
    if ((services.get("worker") or {}).get("deploy") or {}).get("replicas") != 2:
        err("compose.yaml", "worker should have deploy.replicas: 2")
    for s in ("herald-sim", "producer", "scheduler", "worker"):
        hc = " ".join(map(str, ((services.get(s) or {}).get("healthcheck") or {}).get("test", [])))
        if "/readyz" not in hc:
            err("compose.yaml", f"service {s}'s healthcheck should GET /readyz")

for e in errors:
    print("error:", e)
print(f"yaml: {len(files)} files, {count} documents, {len(k8s)} Kubernetes objects: "
      + ("OK" if not errors else f"{len(errors)} problem(s)"))
sys.exit(1 if errors else 0)
PY

status=0
k8s_files=()
for f in k8s/*.yaml; do
    [ "$(basename "$f")" = kustomization.yaml ] || k8s_files+=("$f")
done
if command -v kubeconform >/dev/null 2>&1; then
    echo "kubeconform: checking ${#k8s_files[@]} files (CRDs such as KEDA's are skipped)"
    kubeconform -strict -summary -ignore-missing-schemas "${k8s_files[@]}" || status=1
else
    echo "kubeconform: not installed, skipped (schema checks of the Kubernetes objects)"
fi

if docker compose version >/dev/null 2>&1; then
    echo "docker compose config: checking compose.yaml"
    HERALD_ADMIN_TOKEN="${HERALD_ADMIN_TOKEN:-validate}" docker compose -f compose.yaml config -q || status=1
elif command -v docker-compose >/dev/null 2>&1; then
    echo "docker-compose config: checking compose.yaml"
    HERALD_ADMIN_TOKEN="${HERALD_ADMIN_TOKEN:-validate}" docker-compose -f compose.yaml config -q || status=1
else
    echo "docker compose: not installed, skipped (compose's own schema check)"
fi

if command -v shellcheck >/dev/null 2>&1; then
    echo "shellcheck: checking the scripts"
    shellcheck local/*.sh validate.sh || status=1
else
    echo "shellcheck: not installed, skipped"
fi
exit "$status"
