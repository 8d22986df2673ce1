#!/usr/bin/env bash
# Validates deploy/ and the repository's shell scripts offline:
#   bash deploy/validate.sh
# 1. Herald's own rules: every YAML document parses; every Kubernetes object
#    has apiVersion, kind and metadata.name, sits in namespace herald, and
#    probes, grace periods, selectors, replicas and autoscaling targets line
#    up; kustomization.yaml names every manifest; the compose file has its
#    services, health checks and worker replicas.
# 2. The compose file against the Compose specification's JSON schema
#    (check-jsonschema's vendored copy).
# 3. Every Kubernetes object of a built-in kind against the Kubernetes
#    OpenAPI schemas, strictly (kubernetes-validate ships them offline).
# 4. KEDA's ScaledObject and TriggerAuthentication against a schema built
#    from KEDA's CRDs (cloudcoil-models-keda), strictly: unknown fields fail.
# 5. shellcheck on every shell script of the repository.
# 6. The Prometheus alerting rules (deploy/prometheus/herald-alerts.yaml):
#    `promtool check rules`, then `promtool test rules` on their unit tests.
#
# What it needs it installs, quietly and only once: shellcheck, python3's
# venv and promtool (Debian's prometheus package, installed without starting
# its server) from Debian's packages (apt, as root or through sudo), the Python tools
# from PyPI into a virtualenv of their own (HERALD_TOOLS_DIR, default
# ~/.cache/herald/validate). No check is skipped: a tool that cannot be
# installed fails the run. Needs no terminal; exits non-zero on any finding.
set -euo pipefail

DEPLOY="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$DEPLOY/.." && pwd)"
cd "$DEPLOY"

# Pinned so that a finding means the manifests changed, not the tools.
PY_TOOLS=(
    "pyyaml==6.0.3"
    "jsonschema==4.26.0"
    "check-jsonschema==0.39.0"
    "kubernetes-validate==1.37.0"
    "cloudcoil.models.keda==2.16.1.0"
)
TOOLS_DIR="${HERALD_TOOLS_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/herald/validate}"
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf '%s\n' "$*"; }
die() { printf 'validate.sh: error: %s\n' "$*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "not root and sudo is missing: run this script as root"
    SUDO=(sudo -n)
fi

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* by hand (this script knows Debian and Ubuntu)"
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt: updating the package lists"
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        APT_UPDATED=1
    fi
    log "apt: installing $*"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

# ---- tools ----

need=()
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
command -v python3 >/dev/null 2>&1 || need+=(python3 python3-venv)
if [ "${#need[@]}" -gt 0 ]; then
    apt_install "${need[@]}"
fi
if ! command -v promtool >/dev/null 2>&1; then
    # Debian's prometheus package has promtool; its server must not start
    # here, so service starts are refused while it installs (unless a
    # policy is already in place, which is then left as it is).
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
        "${SUDO[@]}" chmod +x "$policy"
        own_policy=1
    fi
    apt_install prometheus || true
    [ "$own_policy" -eq 1 ] && "${SUDO[@]}" rm -f "$policy"
    command -v promtool >/dev/null 2>&1 || die "promtool could not be installed (apt: prometheus)"
fi

PY="$TOOLS_DIR/bin/python"
STAMP="$TOOLS_DIR/.herald-tools"
if [ ! -x "$PY" ] || [ "$(cat "$STAMP" 2>/dev/null || true)" != "${PY_TOOLS[*]}" ]; then
    log "tools: installing ${PY_TOOLS[*]} into $TOOLS_DIR"
    rm -rf "$TOOLS_DIR"
    mkdir -p "$(dirname "$TOOLS_DIR")"
    if ! python3 -m venv "$TOOLS_DIR" >/dev/null 2>&1; then
        # Debian's python3 needs python3-venv for venv's pip.
        rm -rf "$TOOLS_DIR"
        apt_install python3-venv
        python3 -m venv "$TOOLS_DIR" || die "python3 -m venv failed"
    fi
    "$PY" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
    "$PY" -m pip install --quiet "${PY_TOOLS[@]}" || die "pip could not install ${PY_TOOLS[*]}"
    printf '%s' "${PY_TOOLS[*]}" >"$STAMP"
fi

status=0
fail() { status=1; }

# ---- 1. Herald's rules ----

"$PY" - "$DEPLOY" <<'PY' || fail
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
                listed = set(d.get("resources", []))
                for r in listed:
                    if not os.path.exists(os.path.join(os.path.dirname(path), r)):
                        err(where, f"resource {r} does not exist")
                # hpa.yaml is the documented alternative to KEDA's ScaledObject.
                for f in sorted(glob.glob(os.path.join(os.path.dirname(path), "*.yaml"))):
                    name = os.path.basename(f)
                    if name not in listed | {"kustomization.yaml", "hpa.yaml"}:
                        err(where, f"{name} is in k8s/ but not among the resources")
                continue
            for key in ("apiVersion", "kind"):
                if not d.get(key):
                    err(where, f"has no {key}")
            name = (d.get("metadata") or {}).get("name")
            if not name:
                err(where, "has no metadata.name")
            k8s.append((where, d))

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
auths = {d["metadata"]["name"] for _, d in by_kind.get("TriggerAuthentication", [])}
for where, d in by_kind.get("ScaledObject", []):
    target = ((d.get("spec") or {}).get("scaleTargetRef") or {}).get("name")
    if target not in deployments:
        err(where, f"scales {target}, which is no Deployment here")
    for t in (d.get("spec") or {}).get("triggers", []):
        if t.get("type") == "rabbitmq":
            queues.add((t.get("metadata") or {}).get("queueName"))
        ref = (t.get("authenticationRef") or {}).get("name")
        if ref and ref not in auths:
            err(where, f"trigger refers to TriggerAuthentication {ref}, which is not here")
for q in ("herald.central.email", "herald.central.wework", "herald.central.webhook"):
    if q not in queues:
        err("k8s/keda-scaledobject.yaml", f"no rabbitmq trigger on {q}")
for where, d in by_kind.get("HorizontalPodAutoscaler", []):
    target = ((d.get("spec") or {}).get("scaleTargetRef") or {}).get("name")
    if target not in deployments:
        err(where, f"scales {target}, which is no Deployment here")

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
print(f"herald rules: {len(files)} YAML files, {count} documents, {len(k8s)} Kubernetes objects: "
      + ("OK" if not errors else f"{len(errors)} problem(s)"))
sys.exit(1 if errors else 0)
PY

# ---- 2. compose ----

if out=$("$TOOLS_DIR/bin/check-jsonschema" --builtin-schema vendor.compose-spec compose.yaml 2>&1); then
    log "compose schema: compose.yaml OK"
else
    printf '%s\n' "$out"
    log "compose schema: compose.yaml does not follow the Compose specification (above)"
    fail
fi

# ---- 3. Kubernetes schemas ----

k8s_files=()
for f in k8s/*.yaml; do
    [ "$(basename "$f")" = kustomization.yaml ] || k8s_files+=("$f")
done
# --strict refuses unknown fields. KEDA's kinds have no schema here (step 4
# checks them); every other kind must have one.
if out=$("$TOOLS_DIR/bin/kubernetes-validate" --strict --quiet "${k8s_files[@]}" 2>&1); then
    missing=$(printf '%s\n' "$out" | grep "Couldn't find schema" | grep -v 'api version keda.sh/' || true)
    if [ -n "$missing" ]; then
        printf '%s\n' "$missing"
        log "kubernetes schemas: a kind without a schema (above)"
        fail
    else
        log "kubernetes schemas: ${#k8s_files[@]} files OK (built-in kinds, strict)"
    fi
else
    printf '%s\n' "$out" | grep -v "Couldn't find schema for kind .* api version keda.sh/" || true
    log "kubernetes schemas: findings above"
    fail
fi

# ---- 4. KEDA ----

"$PY" - "${k8s_files[@]}" <<'PY' || fail
import sys
import jsonschema, yaml
from cloudcoil.models.keda import v1alpha1

def strict(node):
    # Like kubeconform -strict: an object with declared properties takes no others.
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for v in node.values():
            strict(v)
    elif isinstance(node, list):
        for v in node:
            strict(v)

validators = {}
for kind in ("ScaledObject", "ScaledJob", "TriggerAuthentication", "ClusterTriggerAuthentication"):
    schema = getattr(v1alpha1, kind).model_json_schema(by_alias=True, mode="validation")
    strict(schema)
    validators[kind] = jsonschema.Draft202012Validator(schema)

problems = checked = 0
for path in sys.argv[1:]:
    with open(path) as f:
        for i, d in enumerate(yaml.safe_load_all(f)):
            if not isinstance(d, dict) or not str(d.get("apiVersion", "")).startswith("keda.sh/"):
                continue
            where = f"{path}#{i + 1} {d.get('kind')}/{(d.get('metadata') or {}).get('name')}"
            if d.get("apiVersion") != "keda.sh/v1alpha1" or d.get("kind") not in validators:
                print(f"error: {where}: unknown KEDA kind or version {d.get('apiVersion')}")
                problems += 1
                continue
            checked += 1
            for e in validators[d["kind"]].iter_errors(d):
                field = ".".join(str(p) for p in e.absolute_path) or "(document)"
                print(f"error: {where}: {field}: {e.message}")
                problems += 1
print(f"keda schemas: {checked} objects: " + ("OK" if not problems else f"{problems} problem(s)"))
sys.exit(1 if problems or not checked else 0)
PY

# ---- 5. shellcheck ----

scripts=()
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    while IFS= read -r f; do
        [ -f "$ROOT/$f" ] || continue
        case "$f" in
            *.sh) scripts+=("$ROOT/$f") ;;
            *) head -n1 "$ROOT/$f" 2>/dev/null | grep -qE '^#!.*\b(ba)?sh\b' && scripts+=("$ROOT/$f") ;;
        esac
    done < <(git -C "$ROOT" ls-files -- ':!:*.rs' ':!:*.md' ':!:*.json' ':!:*.svg' ':!:*.lock' ':!:*.toml' ':!:*.yaml')
else
    while IFS= read -r f; do scripts+=("$f"); done < <(find "$ROOT" -path "$ROOT/target" -prune -o -name '*.sh' -print)
    [ -f "$ROOT/.ci/run" ] && scripts+=("$ROOT/.ci/run")
fi
if shellcheck --external-sources "${scripts[@]}"; then
    log "shellcheck: ${#scripts[@]} scripts OK"
else
    log "shellcheck: findings above"
    fail
fi

# ---- 6. Prometheus rules ----

if (cd "$DEPLOY/prometheus" && promtool check rules herald-alerts.yaml >/dev/null &&
    promtool test rules herald-alerts.test.yaml >/dev/null); then
    log "prometheus rules: herald-alerts.yaml checked, its unit tests pass"
else
    (cd "$DEPLOY/prometheus" && promtool check rules herald-alerts.yaml; promtool test rules herald-alerts.test.yaml) || true
    log "prometheus rules: findings above"
    fail
fi

if [ "$status" -eq 0 ]; then
    log "validate.sh: all checks passed"
else
    log "validate.sh: FAILED (findings above)"
fi
exit "$status"
