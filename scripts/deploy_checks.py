"""What the schemas cannot check in deploy/ (run by scripts/validate-deploy.sh).

The Compose and Kubernetes schemas accept any well-typed file; these checks
catch what `docker compose config` or a cluster would refuse later, and the
rules the README promises for these files:

- compose: `depends_on` names services; named volumes are declared (and
  declared ones used); bind-mounted files and the build context exist;
  `$` is either `$$` or a well-formed `${VAR}`, `${VAR:-default}` or
  `${VAR:?message}`; every service has a health check; published ports are
  bound to 127.0.0.1; the admin key has no default; the test endpoints are
  not switched on.
- Kubernetes: kustomization.yaml lists every manifest but the example
  Secret and only files that exist; a PodDisruptionBudget sets one of
  minAvailable and maxUnavailable; the Deployment's ConfigMap/Secret names,
  Service and PodDisruptionBudget selectors and probe ports match; probes
  use the actuator paths; the container runs as non-root.
- Both: every ORDER_* variable they set is one the service reads (named in
  config/default.toml).
- Dockerfile: every workspace member's Cargo.toml is copied into the
  dependency-caching stage (a member missing there breaks `cargo build`).

Prints one line per problem and exits 1 if there is any.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"

# Any librdkafka property, dots as underscores.
PASS_THROUGH_PREFIX = "ORDER_KAFKA_PROPERTY_"

problems: list[str] = []


def problem(where: str, what: str) -> None:
    problems.append(f"{where}: {what}")


def load_all(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def known_variables() -> set[str]:
    text = (ROOT / "config" / "default.toml").read_text(encoding="utf-8")
    return set(re.findall(r"\bORDER_[A-Z0-9_]+\b", text))


def check_variable_names(where: str, names: list[str], known: set[str]) -> None:
    for name in names:
        if not name.startswith("ORDER_"):
            continue
        if name.startswith(PASS_THROUGH_PREFIX) and len(name) > len(PASS_THROUGH_PREFIX):
            continue
        if name not in known:
            problem(where, f"{name} is not a variable the service reads (config/default.toml)")


# --- compose ----------------------------------------------------------------

INTERPOLATION = re.compile(
    r"\$\$"  # a literal $
    r"|\$\{[A-Za-z_][A-Za-z0-9_]*(?:(?::?[-?+])[^}]*)?\}"  # ${VAR}, ${VAR:-x}, ${VAR:?msg}
    r"|\$[A-Za-z_][A-Za-z0-9_]*"  # $VAR
)


def strings_in(value, path: str = ""):
    """Every string of a YAML tree with its path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings_in(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from strings_in(v, f"{path}[{i}]")


def environment_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def check_compose(known: set[str]) -> None:
    where = "deploy/compose.yaml"
    (doc,) = load_all(DEPLOY / "compose.yaml")
    services: dict = doc.get("services") or {}
    declared_volumes = set((doc.get("volumes") or {}).keys())
    used_volumes: set[str] = set()

    for path, text in strings_in(doc):
        rest = INTERPOLATION.sub("", text)
        if "$" in rest:
            problem(where, f"{path}: malformed interpolation in {text!r} (a literal $ is $$)")

    for name, svc in services.items():
        at = f"{where}: services.{name}"
        deps = svc.get("depends_on") or []
        for dep in deps if isinstance(deps, list) else deps.keys():
            if dep not in services:
                problem(at, f"depends_on names no service: {dep}")
        for mount in svc.get("volumes") or []:
            source = mount.split(":", 1)[0] if isinstance(mount, str) else mount.get("source", "")
            if source.startswith((".", "/")):
                if not (DEPLOY / source).exists():
                    problem(at, f"bind mount source does not exist: {source}")
            elif source:
                used_volumes.add(source)
                if source not in declared_volumes:
                    problem(at, f"volume {source} is not declared under the top-level volumes")
        build = svc.get("build")
        if isinstance(build, dict):
            context = DEPLOY / build.get("context", ".")
            if not (context / build.get("dockerfile", "Dockerfile")).is_file():
                problem(at, f"no Dockerfile {build.get('dockerfile')} in {context}")
        if "healthcheck" not in svc:
            problem(at, "no healthcheck")
        for port in svc.get("ports") or []:
            loopback = (
                port.get("host_ip") == "127.0.0.1"
                if isinstance(port, dict)
                else str(port).startswith("127.0.0.1:")
            )
            if not loopback:
                problem(at, f"published port {port!r} is not bound to 127.0.0.1")
        env = environment_of(svc)
        check_variable_names(at, list(env), known)

    for volume in sorted(declared_volumes - used_volumes):
        problem(where, f"volume {volume} is declared but mounted by no service")

    env = environment_of(services.get("order-service", {}))
    key = env.get("ORDER_ADMIN_API_KEY", "")
    if not re.fullmatch(r"\$\{ORDER_ADMIN_API_KEY:\?[^}]*\}", key):
        problem(where, "ORDER_ADMIN_API_KEY must be required, without a default: ${ORDER_ADMIN_API_KEY:?…}")
    if env.get("ORDER_TEST_ENDPOINTS", "false").strip().lower() not in ("false", "0", "no", "off"):
        problem(where, "ORDER_TEST_ENDPOINTS must stay off in the production stack")


# --- Kubernetes -------------------------------------------------------------

ACTUATOR = {
    "startupProbe": "/actuator/health/liveness",
    "livenessProbe": "/actuator/health/liveness",
    "readinessProbe": "/actuator/health/readiness",
}


def check_kubernetes(known: set[str]) -> None:
    kustomization = K8S / "kustomization.yaml"
    (kust,) = load_all(kustomization)
    listed = list(kust.get("resources") or [])
    for name in listed:
        if not (K8S / name).is_file():
            problem("deploy/k8s/kustomization.yaml", f"lists a missing file: {name}")
    for f in sorted(K8S.glob("*.yaml")):
        if f.name not in listed and f.name not in ("kustomization.yaml", "secret.example.yaml"):
            problem("deploy/k8s/kustomization.yaml", f"does not list {f.name}")
    if "secret.example.yaml" in listed:
        problem("deploy/k8s/kustomization.yaml", "must not apply the example Secret's placeholders")

    by_kind: dict[str, list[tuple[str, dict]]] = {}
    for f in sorted(K8S.glob("*.yaml")):
        if f.name == "kustomization.yaml":
            continue
        for doc in load_all(f):
            by_kind.setdefault(doc.get("kind", "?"), []).append((f"deploy/k8s/{f.name}", doc))

    def names(kind: str) -> set[str]:
        return {d["metadata"]["name"] for _, d in by_kind.get(kind, [])}

    for kind in ("ConfigMap", "Secret"):
        for where, doc in by_kind.get(kind, []):
            keys = list((doc.get("data") or {}).keys()) + list((doc.get("stringData") or {}).keys())
            check_variable_names(where, keys, known)

    deployments = by_kind.get("Deployment", [])
    if len(deployments) != 1:
        problem("deploy/k8s", f"expected one Deployment, found {len(deployments)}")
        return
    where, dep = deployments[0]
    pod = dep["spec"]["template"]
    labels = pod["metadata"].get("labels") or {}
    selector = dep["spec"]["selector"].get("matchLabels") or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        problem(where, "spec.selector does not match the pod template's labels")

    spec = pod["spec"]
    if not (spec.get("securityContext") or {}).get("runAsNonRoot"):
        problem(where, "the pod must set securityContext.runAsNonRoot")
    for c in spec["containers"]:
        at = f"{where}: container {c['name']}"
        ports = {p.get("name") for p in c.get("ports") or []} | {
            p["containerPort"] for p in c.get("ports") or []
        }
        for probe, path in ACTUATOR.items():
            get = (c.get(probe) or {}).get("httpGet")
            if not get:
                problem(at, f"no {probe} (httpGet {path})")
                continue
            if get.get("path") != path:
                problem(at, f"{probe} should GET {path}, not {get.get('path')}")
            if get.get("port") not in ports:
                problem(at, f"{probe} port {get.get('port')!r} is not a container port")
        for src in c.get("envFrom") or []:
            for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                ref = (src.get(key) or {}).get("name")
                if ref and ref not in names(kind):
                    problem(at, f"envFrom {key} {ref} is not a {kind} in deploy/k8s")
        check_variable_names(at, [e["name"] for e in c.get("env") or []], known)
        if not (c.get("securityContext") or {}).get("readOnlyRootFilesystem"):
            problem(at, "securityContext.readOnlyRootFilesystem should be true")
    container_ports = {p.get("name") for c in spec["containers"] for p in c.get("ports") or []} | {
        p["containerPort"] for c in spec["containers"] for p in c.get("ports") or []
    }

    for where, svc in by_kind.get("Service", []):
        sel = svc["spec"].get("selector") or {}
        if not sel or any(labels.get(k) != v for k, v in sel.items()):
            problem(where, f"selector {sel} selects no pod of the Deployment")
        for p in svc["spec"].get("ports") or []:
            if p.get("targetPort", p.get("port")) not in container_ports:
                problem(where, f"targetPort {p.get('targetPort')!r} is not a container port")
    pdbs = by_kind.get("PodDisruptionBudget", [])
    if not pdbs:
        problem("deploy/k8s", "no PodDisruptionBudget")
    for where, pdb in pdbs:
        if ("minAvailable" in pdb["spec"]) == ("maxUnavailable" in pdb["spec"]):
            problem(where, "set exactly one of minAvailable and maxUnavailable")
        sel = pdb["spec"]["selector"].get("matchLabels") or {}
        if not sel or any(labels.get(k) != v for k, v in sel.items()):
            problem(where, f"selector {sel} selects no pod of the Deployment")


# --- Dockerfile ---------------------------------------------------------------


def check_dockerfile() -> None:
    where = "deploy/Dockerfile"
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text(encoding="utf-8"))
    copied = set(re.findall(r"^COPY\s+(crates/[^/\s]+)/Cargo\.toml\s", text, re.M))
    for member in workspace["workspace"]["members"]:
        if member not in copied:
            problem(where, f"the dependency stage does not copy {member}/Cargo.toml")
    if "/actuator/health/readiness" not in text:
        problem(where, "HEALTHCHECK should GET /actuator/health/readiness")


def main() -> int:
    known = known_variables()
    for check in (check_compose, check_kubernetes):
        try:
            check(known)
        except yaml.YAMLError as e:
            problem(check.__name__, f"YAML does not parse: {e}".replace("\n", " "))
    check_dockerfile()
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
