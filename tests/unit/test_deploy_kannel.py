"""The SMS gateway in the deployments (Kannel: bearerbox + smsbox): its image target,
its Kubernetes Deployment, Service and network policies, its compose services, and the
notifications service pointed at it in both; and deploy/kannel/container.py, which
writes each box's configuration in the container. Without a container engine or a
cluster, like test_deploy_manifests.py, whose kustomize subset and policy reading this
reuses. The boxes themselves run on that configuration in
tests/integration/test_kannel_container.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dockerfile
import pytest
import yaml

from deploy.kannel import container
from relais_notifications.settings import NotificationsSettings
from tests.unit.test_deploy_manifests import (
    COMPOSE,
    DEPLOY,
    DOCKERFILE,
    K8S,
    SECRET_WORDS,
    _selects,
    egress_allowed,
    kustomize,
    of_kind,
)

KANNEL = "relais-kannel"
SECRETS = {"RELAIS_KANNEL_PASSWORD": "sendsms-password", "RELAIS_KANNEL_DLR_SECRET": "dlr-secret",
           "RELAIS_KANNEL_MO_SECRET": "mo-secret"}
ENV = {"RELAIS_KANNEL_ADMIN_PASSWORD": "a" * 24, "RELAIS_KANNEL_PASSWORD": "p" * 24,
       "RELAIS_KANNEL_MO_SECRET": "m" * 24, "RELAIS_KANNEL_MO_URL": "http://notifications:8002/kannel/mo"}


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return kustomize(K8S)


def pod_labels(rendered: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {n: d["spec"]["template"]["metadata"]["labels"] for n, d in of_kind(rendered, "Deployment").items()}


def env_of(container_spec: dict[str, Any]) -> dict[str, Any]:
    return {v["name"]: v.get("value", v.get("valueFrom")) for v in container_spec.get("env", [])}


# --------------------------------------------------------------------------- the image

def test_the_image_has_a_kannel_target_from_debian_packages() -> None:
    instructions = list(dockerfile.parse_file(str(DOCKERFILE)))
    starts = [i for i, c in enumerate(instructions) if c.cmd == "FROM"]
    stages = {instructions[s].value[-1]: instructions[s:e] for s, e in zip(starts, [*starts[1:], None], strict=True)}
    stage = stages["kannel"]
    assert stage[0].value[0] == "${PYTHON_IMAGE}"   # no other base image to pull
    assert list(stages)[-1] == "runtime"            # still the default target
    run = " ".join(v for c in stage if c.cmd == "RUN" for v in c.value)
    assert re.search(r"apt-get install -y --no-install-recommends kannel kannel-extras", run)
    users = [c.value[0] for c in stage if c.cmd == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"
    (entry,) = [c for c in stage if c.cmd == "ENTRYPOINT"]
    assert entry.json and list(entry.value) == ["python", "-m", "deploy.kannel.container"]
    copied = {source for c in stage if c.cmd == "COPY" for source in c.value[:-1]}
    assert "deploy/kannel/container.py" in copied and "deploy/kannel/config.py" in copied
    assert not any(SECRET_WORDS.search(v.split("=")[0]) for c in stage if c.cmd in ("ENV", "ARG") for v in c.value)


# --------------------------------------------------------------------------- Kubernetes

def test_kannel_deployment_two_boxes_one_pod(rendered: list[dict[str, Any]]) -> None:
    deployment = of_kind(rendered, "Deployment")[KANNEL]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    # One bearerbox: delivery reports are matched in its memory, and binds are counted.
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    assert spec["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "kannel"
    boxes = {c["name"]: c for c in pod["containers"]}
    assert set(boxes) == {"bearerbox", "smsbox"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for name, box in boxes.items():
        assert box["args"] == [name]
        assert re.fullmatch(r"[\w./-]+/relais-kannel:(?!latest$)[\w.-]+", box["image"]), box["image"]
        hardening = box["securityContext"]
        assert hardening["readOnlyRootFilesystem"] is True and hardening["allowPrivilegeEscalation"] is False
        assert hardening["capabilities"] == {"drop": ["ALL"]}
        assert box["resources"]["requests"]["memory"] == box["resources"]["limits"]["memory"]
        assert "/tmp" in {m["mountPath"] for m in box["volumeMounts"]}
        assert not any("subPath" in m for m in box["volumeMounts"])
        assert box["livenessProbe"]["exec"]["command"][-2:] == ["probe", name]
        unknown = set(env_of(box)) - set(container.VARIABLES)
        assert not unknown, f"{name}: variables deploy/kannel/container.py does not read: {unknown}"
    # Only smsbox listens on the network, on sendsms; the Service points there.
    assert "ports" not in boxes["bearerbox"]
    assert boxes["smsbox"]["ports"] == [{"name": "sendsms", "containerPort": container.SENDSMS_PORT,
                                         "protocol": "TCP"}]
    service = of_kind(rendered, "Service")[KANNEL]["spec"]
    assert service["ports"] == [{"name": "sendsms", "port": container.SENDSMS_PORT, "targetPort": "sendsms",
                                 "protocol": "TCP"}]
    assert _selects({"matchLabels": service["selector"]}, spec["template"]["metadata"]["labels"])


def test_each_box_holds_its_own_secrets_only(rendered: list[dict[str, Any]]) -> None:
    pod = of_kind(rendered, "Deployment")[KANNEL]["spec"]["template"]["spec"]
    boxes = {c["name"]: c for c in pod["containers"]}
    bearerbox, smsbox = env_of(boxes["bearerbox"]), env_of(boxes["smsbox"])
    assert bearerbox["RELAIS_KANNEL_ADMIN_PASSWORD"] == {"secretKeyRef": {"name": "relais-kannel",
                                                                          "key": "admin-password"}}
    assert set(bearerbox) == {"RELAIS_KANNEL_ADMIN_PASSWORD", "RELAIS_KANNEL_SMSC_FILE"}
    smsc_volume = {v["name"]: v for v in pod["volumes"]}["smsc"]["secret"]
    assert smsc_volume["secretName"] == "relais-kannel-smsc"
    mounted = {m["mountPath"] for m in boxes["bearerbox"]["volumeMounts"] if m["name"] == "smsc"}
    assert bearerbox["RELAIS_KANNEL_SMSC_FILE"] == f"{mounted.pop()}/smsc.conf"
    assert "smsc" not in {m["name"] for m in boxes["smsbox"]["volumeMounts"]}
    assert smsbox["RELAIS_KANNEL_PASSWORD"] == {"secretKeyRef": {"name": "relais-kannel", "key": "sendsms-password"}}
    assert smsbox["RELAIS_KANNEL_MO_SECRET"] == {"secretKeyRef": {"name": "relais-kannel", "key": "mo-secret"}}
    assert "RELAIS_KANNEL_ADMIN_PASSWORD" not in smsbox and "RELAIS_KANNEL_DLR_SECRET" not in smsbox
    listed = (K8S / "SECRETS.md").read_text()
    assert "`relais-kannel`" in listed and "`relais-kannel-smsc`" in listed
    for key in ("sendsms-password", "dlr-secret", "mo-secret", "admin-password", "smsc.conf"):
        assert f"`{key}`" in listed, key


def test_notifications_sends_through_kannel_and_is_called_back(rendered: list[dict[str, Any]]) -> None:
    deployments = of_kind(rendered, "Deployment")
    services = of_kind(rendered, "Service")
    notifications = env_of(deployments["relais-notifications"]["spec"]["template"]["spec"]["containers"][0])
    assert notifications["RELAIS_SMS_GATEWAY"] == "kannel"
    for variable, key in SECRETS.items():
        assert notifications[variable] == {"secretKeyRef": {"name": "relais-kannel", "key": key}}, variable
    sendsms = urlsplit(notifications["RELAIS_KANNEL_SENDSMS_URL"])
    assert (sendsms.hostname, sendsms.port, sendsms.path) == (KANNEL, container.SENDSMS_PORT, "/cgi-bin/sendsms")
    assert sendsms.hostname in services
    smsbox = env_of({c["name"]: c for c in deployments[KANNEL]["spec"]["template"]["spec"]["containers"]}["smsbox"])
    notifications_port = services["relais-notifications"]["spec"]["ports"][0]["port"]
    for url, path in ((notifications["RELAIS_KANNEL_DLR_URL"], "/kannel/dlr"), (smsbox["RELAIS_KANNEL_MO_URL"],
                                                                                "/kannel/mo")):
        parts = urlsplit(url)
        assert (parts.hostname, parts.port, parts.path) == ("relais-notifications", notifications_port, path)
    assert notifications["RELAIS_SMS_SENDER"] == smsbox["RELAIS_SMS_SENDER"]
    # What the service would start with (placeholders for the Secrets' values).
    values = {k: v if isinstance(v, str) else "x" * 32 for k, v in notifications.items()
              if k.startswith(("RELAIS_SMS_", "RELAIS_KANNEL_"))}
    settings = NotificationsSettings.model_validate(values)
    assert settings.sms_gateway == "kannel" and settings.sms_sender == smsbox["RELAIS_SMS_SENDER"]


def ingress_allowed(policies: list[dict[str, Any]], labels: dict[str, str], source: dict[str, str] | None,
                    port: int | str) -> bool:
    """Whether a pod (`labels`) takes a connection on `port` from a pod of the namespace
    (`source`), or from outside it (`source` None: another namespace, an address)."""
    for policy in policies:
        if not _selects(policy["spec"]["podSelector"], labels) or "Ingress" not in policy["spec"]["policyTypes"]:
            continue
        for rule in policy["spec"].get("ingress", []):
            ports_ok = not rule.get("ports") or any(p.get("port") == port for p in rule["ports"])
            peers = rule.get("from")
            peers_ok = not peers or any(
                ("podSelector" in peer and "namespaceSelector" not in peer and source is not None
                 and _selects(peer["podSelector"], source)) or
                (source is None and ("namespaceSelector" in peer or "ipBlock" in peer))
                for peer in peers)
            if ports_ok and peers_ok:
                return True
    return False


def test_only_notifications_reaches_sendsms(rendered: list[dict[str, Any]]) -> None:
    policies = list(of_kind(rendered, "NetworkPolicy").values())
    pods = pod_labels(rendered)
    kannel = pods.pop(KANNEL)
    for name, labels in pods.items():
        wanted = name == "relais-notifications"
        assert egress_allowed(policies, labels, kannel, container.SENDSMS_PORT) == wanted, name
        assert ingress_allowed(policies, kannel, labels, "sendsms") == wanted, name
        assert not ingress_allowed(policies, kannel, labels, container.BOX_PORT), name
    assert not ingress_allowed(policies, kannel, None, "sendsms")       # no ingress controller, no Prometheus
    assert not ingress_allowed(policies, kannel, None, container.BOX_PORT)


def test_kannel_reaches_notifications_and_the_smsc_only(rendered: list[dict[str, Any]]) -> None:
    policies = list(of_kind(rendered, "NetworkPolicy").values())
    pods = pod_labels(rendered)
    kannel = pods.pop(KANNEL)
    # Its calls back: the notifications service's port, which takes them (the path
    # /kannel/* cannot be told apart by a NetworkPolicy: secrets guard it).
    assert egress_allowed(policies, kannel, pods["relais-notifications"], 8002)
    assert ingress_allowed(policies, pods["relais-notifications"], kannel, "http")
    for name, labels in pods.items():
        for port in (8000, 8001, 8003, 8004, 9093, 5432):
            assert not egress_allowed(policies, kannel, labels, port), (name, port)
    broker = {"strimzi.io/cluster": "relais", "strimzi.io/kind": "Kafka", "strimzi.io/name": "relais-kafka"}
    postgres = {"cnpg.io/cluster": "relais-db", "cnpg.io/instanceRole": "primary"}
    assert not egress_allowed(policies, kannel, broker, 9093) and not egress_allowed(policies, kannel, postgres, 5432)
    # Every way out of the Pod: DNS, the notifications service, the SMSC's addresses.
    outside = []
    for policy in policies:
        if not _selects(policy["spec"]["podSelector"], kannel):
            continue
        for rule in policy["spec"].get("egress", []):
            assert rule.get("to") and rule.get("ports"), (policy["metadata"]["name"], rule)
            for peer in rule["to"]:
                if "ipBlock" in peer:
                    outside.append((peer["ipBlock"], rule["ports"]))
                elif "namespaceSelector" in peer:
                    assert peer["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}, policy
                else:
                    assert _selects(peer["podSelector"], pods["relais-notifications"]), policy
    (smsc, ports), = outside
    assert smsc == {"cidr": "192.0.2.0/24"} and ports == [{"protocol": "TCP", "port": 2775}]
    smsc_policy = of_kind(rendered, "NetworkPolicy")["kannel-to-smsc"]
    assert smsc_policy["spec"]["egress"][0]["to"] == [{"ipBlock": smsc}]
    assert "replace" in (DEPLOY / "k8s" / "relais" / "networkpolicies.yaml").read_text().split(
        "name: kannel-to-smsc")[1].split("---")[0]


# --------------------------------------------------------------------------- compose

@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_kannel_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    holder = services["kannel"]
    assert holder["command"] == ["pause"] and sorted(holder["networks"]) == ["backend", "smsc"]
    assert compose["networks"]["smsc"] == {} and "ports" not in holder
    boxes = {name: services[f"kannel-{name}"] for name in ("bearerbox", "smsbox", "fakesmsc")}
    for name, service in {"kannel": holder, **boxes}.items():
        assert service["image"].startswith("${RELAIS_KANNEL_IMAGE:?"), name
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert "ports" not in service, name
    for name, service in boxes.items():
        assert service["command"] == [name] and service["network_mode"] == "service:kannel", name
    for name in ("bearerbox", "smsbox"):
        assert boxes[name]["healthcheck"]["test"][-2:] == ["probe", name]
        assert "profiles" not in boxes[name]
        env = boxes[name]["environment"]
        assert set(env) <= set(container.VARIABLES), name
        for variable, value in env.items():
            if SECRET_WORDS.search(variable):
                assert value == f"${{{variable}:?}}", (name, variable)   # from .env, required
    assert boxes["fakesmsc"]["profiles"] == ["try-sms"]
    assert "./secrets/kannel:/etc/kannel/smsc:ro" in boxes["bearerbox"]["volumes"]
    assert boxes["bearerbox"]["environment"]["RELAIS_KANNEL_SMSC_FILE"] == "/etc/kannel/smsc/smsc.conf"
    assert "RELAIS_KANNEL_ADMIN_PASSWORD" not in boxes["smsbox"]["environment"]
    assert boxes["smsbox"]["environment"]["RELAIS_KANNEL_MO_URL"] == "http://notifications:8002/kannel/mo"


def test_compose_notifications_sends_through_kannel(compose: dict[str, Any]) -> None:
    env = compose["services"]["notifications"]["environment"]
    smsbox = compose["services"]["kannel-smsbox"]["environment"]
    assert env["RELAIS_SMS_GATEWAY"] == "kannel"
    assert env["RELAIS_KANNEL_SENDSMS_URL"] == f"http://kannel:{container.SENDSMS_PORT}/cgi-bin/sendsms"
    assert env["RELAIS_KANNEL_DLR_URL"] == "http://notifications:8002/kannel/dlr"
    for variable in SECRETS:
        assert env[variable] == f"${{{variable}:?}}", variable
    assert env["RELAIS_KANNEL_PASSWORD"] == smsbox["RELAIS_KANNEL_PASSWORD"]
    assert env["RELAIS_KANNEL_MO_SECRET"] == smsbox["RELAIS_KANNEL_MO_SECRET"]
    assert env["RELAIS_SMS_SENDER"] == smsbox["RELAIS_SMS_SENDER"]
    assert "backend" in compose["services"]["notifications"]["networks"]
    example = (DEPLOY / "compose" / "env.example").read_text()
    for variable in ("RELAIS_KANNEL_IMAGE", "RELAIS_SMS_SENDER", *SECRETS, "RELAIS_KANNEL_ADMIN_PASSWORD"):
        assert re.search(rf"^{variable}=", example, re.M), variable
    assert "`kannel/smsc.conf`" in (DEPLOY / "compose" / "secrets" / "README.md").read_text()


# --------------------------------------------------------------------------- each box's configuration

def test_bearerbox_holds_the_smsc_and_listens_on_the_loopback() -> None:
    smsc = (DEPLOY / "kannel" / "smsc.example.conf").read_text()
    text = container.bearerbox_config(ENV, smsc)
    assert "smsc = smpp" in text and "smsc-password = PASSWORD" in text
    for line in ("admin-interface = 127.0.0.1", "smsbox-interface = 127.0.0.1", "box-allow-ip = 127.0.0.1",
                 "admin-allow-ip = 127.0.0.1", "dlr-storage = internal"):
        assert line in text.splitlines(), line
    assert ENV["RELAIS_KANNEL_PASSWORD"] not in text and ENV["RELAIS_KANNEL_MO_SECRET"] not in text
    assert re.findall(r"^group = (\S+)", text, re.M) == ["core", "smsbox", "smsc"]


def test_smsbox_holds_sendsms_and_the_replies_callback() -> None:
    text = container.smsbox_config(ENV)
    assert f"sendsms-port = {container.SENDSMS_PORT}" in text and "sendsms-interface" not in text
    assert f'get-url = "http://notifications:8002/kannel/mo?secret={"m" * 24}&from=%p&text=%a"' in text
    assert f"password = {'p' * 24}" in text and "global-sender = FranceSvcs" in text
    assert ENV["RELAIS_KANNEL_ADMIN_PASSWORD"] not in text and "group = smsc" not in text


@pytest.mark.parametrize("smsc", ["", "group = core\nadmin-port = 1\n",
                                  "group = smsc\nsmsc = fake\ngroup = sendsms-user\nusername = x\n"])
def test_the_smsc_file_holds_smsc_groups_only(smsc: str) -> None:
    with pytest.raises(container.ConfigError):
        container.bearerbox_config(ENV, smsc)


@pytest.mark.parametrize("variable, value", [
    ("RELAIS_KANNEL_PASSWORD", ""), ("RELAIS_KANNEL_PASSWORD", "short"),
    ("RELAIS_KANNEL_PASSWORD", "p" * 20 + "\ngroup = core"), ("RELAIS_KANNEL_MO_SECRET", "m" * 20 + '"'),
    ("RELAIS_KANNEL_MO_URL", "http://notifications:8002/kannel/mo?x=1"), ("RELAIS_SMS_SENDER", "France Services"),
])
def test_a_bad_value_stops_the_box(variable: str, value: str) -> None:
    with pytest.raises(container.ConfigError, match=variable):
        container.smsbox_config({**ENV, variable: value})


def test_written_for_its_owner_only(tmp_path: Path) -> None:
    smsc = tmp_path / "smsc.conf"
    smsc.write_text((DEPLOY / "kannel" / "smsc-fake.conf").read_text())
    env = {**ENV, "RELAIS_KANNEL_SMSC_FILE": str(smsc), "RELAIS_KANNEL_CONFIG_DIR": str(tmp_path / "conf")}
    for box in ("bearerbox", "smsbox"):
        path = container.write(box, env)
        assert path == tmp_path / "conf" / f"{box}.conf" and path.stat().st_mode & 0o777 == 0o600
    assert container.started_boxes(env) == ["bearerbox", "smsbox"]
    with pytest.raises(container.ConfigError, match="RELAIS_KANNEL_SMSC_FILE"):
        container.write("bearerbox", {**env, "RELAIS_KANNEL_SMSC_FILE": str(tmp_path / "missing.conf")})
