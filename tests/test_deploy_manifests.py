"""The Kubernetes manifests in deploy/k8s and the Tiltfile, checked offline.

Every kustomization reference resolves; every overlay renders; every rendered
object is valid against the Kubernetes JSON schemas (kubernetes-validate, strict);
and every workload agrees with what the code reads (jangkau.runtime.config and
jangkau.runtime.auth): commands, ports, probes, environment, tokens, volumes and
the calls its NetworkPolicies allow.

The project's dependencies ship no kustomize, so `render` below is a small one
that handles exactly the kustomize features deploy/k8s uses (resources,
components, namespace, images, strategic-merge patches matched by kind and name,
JSON 6902 patches with a kind/name target) and raises `KustomizeError` on
anything else. Where a `kubectl` is at hand (one comes with this machine's
image), a test checks that its built-in kustomize renders the very same objects.
"""

from __future__ import annotations

import ast
import copy
import functools
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from jangkau.cli.main import build_parser
from jangkau.runtime.auth import DEV_TENANT, DEV_TOKEN, Role, TokenBook
from jangkau.runtime.config import ENV_VARS, SERVICE_ADDR_VARS

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
TILTFILE = ROOT / "Tiltfile"
DOCKERFILE = ROOT / "Dockerfile"

TREES = {
    "base": K8S / "base",
    "dev": K8S / "overlays" / "dev",
    "prod": K8S / "overlays" / "prod",
}
OVERLAYS = ("dev", "prod")
# The oldest Kubernetes minor these manifests target, and the newest the schemas cover.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")

IMAGE = "jangkau"
TOKENS_SECRET = "jangkau-tokens"
# Objects an overlay uses but does not contain: the operator creates them.
EXTERNAL = {"prod": {("Secret", TOKENS_SECRET)}}
# Servers that own a DuckDB file with one writer process (jangkau.runtime.store).
SINGLE_WRITERS = ("audience", "budget", "metrics")
# Processes whose DuckDB file must outlive the pod: the single writers, and the
# rebalancer's state (what platforms accepted, how far reports were pulled).
PERSISTENT = (*SINGLE_WRITERS, "rebalancer")
# Who calls whom (DESIGN.md section 3); NetworkPolicies must allow these and no more.
CALLS = {
    "budget": {"metrics", "audience"},
    "rebalancer": {"budget", "metrics"},
}
API_CLIENT_LABELS = {"jangkau/api-client": "true"}
API_SERVICES = {"audience", "budget", "metrics"}

Obj = dict[str, Any]


# --------------------------------------------------------------------------- #
# A small kustomize: exactly the features deploy/k8s uses, and nothing else.  #
# --------------------------------------------------------------------------- #


class KustomizeError(Exception):
    """A kustomization this renderer does not handle, or one that is broken."""


_API_VERSIONS = {
    "Kustomization": "kustomize.config.k8s.io/v1beta1",
    "Component": "kustomize.config.k8s.io/v1alpha1",
}
_KUSTOMIZATION_FIELDS = {
    "apiVersion",
    "kind",
    "resources",
    "components",
    "namespace",
    "patches",
    "images",
}
_PATCH_FIELDS = {"path", "patch", "target"}
_TARGET_FIELDS = {"kind", "name"}
_IMAGE_FIELDS = {"name", "newName", "newTag", "digest"}
_JSON6902_OPS = {"add", "replace", "remove"}
_CLUSTER_SCOPED = {"Namespace"}
_NAMESPACED = {
    "ConfigMap",
    "CronJob",
    "Deployment",
    "NetworkPolicy",
    "PersistentVolumeClaim",
    "PodDisruptionBudget",
    "Secret",
    "Service",
    "ServiceAccount",
    "StatefulSet",
}
# Strategic-merge keys of the lists patches here merge into; other lists are refused,
# except those replaced whole (as Kubernetes' patch strategy says for them).
_MERGE_KEYS = {"containers": "name", "env": "name", "volumeMounts": "mountPath", "volumes": "name"}
_REPLACED_LISTS = {"args", "command"}


def render(directory: Path) -> list[Obj]:
    """The objects `kustomize build directory` gives, for the features listed above."""
    return _accumulate(directory, "Kustomization", [])


def load_kustomization(directory: Path, kind: str) -> dict[str, Any]:
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    document = yaml.safe_load(path.read_text())
    if document.get("kind") != kind or document.get("apiVersion") != _API_VERSIONS[kind]:
        raise KustomizeError(f"{path}: expected kind {kind} ({_API_VERSIONS[kind]})")
    unknown = set(document) - _KUSTOMIZATION_FIELDS
    if unknown:
        raise KustomizeError(f"{path}: fields {sorted(unknown)} are not handled by this renderer")
    return document


def _accumulate(directory: Path, kind: str, inherited: list[Obj]) -> list[Obj]:
    kustomization = load_kustomization(directory, kind)
    objects = list(inherited)
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            added = _accumulate(path, "Kustomization", [])
        elif path.is_file():
            added = read_objects(path)
        else:
            raise KustomizeError(f"{directory}: resource {entry} does not exist")
        for obj in added:
            if any(_identity(obj) == _identity(known) for known in objects):
                raise KustomizeError(f"{directory}: {_identity(obj)} is defined twice")
            objects.append(obj)
    for entry in kustomization.get("components", []):
        objects = _accumulate(directory / entry, "Component", objects)
    # kustomize's order: patches, then the namespace, then images.
    for patch in kustomization.get("patches", []):
        objects = _apply_patch(directory, patch, objects)
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] not in _CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = kustomization["namespace"]
    for image in kustomization.get("images", []):
        _set_image(image, objects)
    return objects


def read_objects(path: Path) -> list[Obj]:
    objects = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    for obj in objects:
        if obj.get("kind") not in _NAMESPACED | _CLUSTER_SCOPED:
            raise KustomizeError(f"{path}: kind {obj.get('kind')!r} is not handled")
    return objects


def _identity(obj: Obj) -> tuple[str, str, str]:
    metadata = obj["metadata"]
    return (obj["kind"], metadata.get("namespace", ""), metadata["name"])


def _apply_patch(directory: Path, entry: dict[str, Any], objects: list[Obj]) -> list[Obj]:
    unknown = set(entry) - _PATCH_FIELDS
    if unknown or ("path" in entry) == ("patch" in entry):
        raise KustomizeError(f"{directory}: patch {entry}: needs exactly one of path or patch")
    if "path" in entry:
        path = directory / entry["path"]
        if not path.is_file():
            raise KustomizeError(f"{directory}: patch {entry['path']} does not exist")
        text = path.read_text()
    else:
        text = entry["patch"]
    documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    if len(documents) == 1 and isinstance(documents[0], list):
        target = entry.get("target")
        if target is None or set(target) - _TARGET_FIELDS:
            raise KustomizeError(f"{directory}: a JSON 6902 patch needs a kind/name target")
        matched = [obj for obj in objects if all(obj_field(obj, k) == v for k, v in target.items())]
        if not matched:
            raise KustomizeError(f"{directory}: patch target {target} matches nothing")
        for obj in matched:
            _apply_json6902(obj, documents[0])
        return objects
    if "target" in entry:
        raise KustomizeError(f"{directory}: strategic-merge patches with a target are not handled")
    patched = list(objects)
    for document in documents:
        wanted = (document["apiVersion"], document["kind"], document["metadata"]["name"])
        index = next(
            (
                i
                for i, obj in enumerate(patched)
                if (obj["apiVersion"], obj["kind"], obj["metadata"]["name"]) == wanted
            ),
            None,
        )
        if index is None:
            raise KustomizeError(f"{directory}: patch for {wanted} matches nothing")
        patched[index] = _merge(patched[index], document, "")
    return patched


def obj_field(obj: Obj, field: str) -> str:
    return obj["kind"] if field == "kind" else obj["metadata"]["name"]


def _merge(base: Any, patch: Any, key: str) -> Any:
    if isinstance(patch, dict):
        directives = [k for k in patch if k.startswith("$")]
        if directives:
            raise KustomizeError(f"strategic-merge directives {directives} are not handled")
        if not isinstance(base, dict):
            return copy.deepcopy(patch)
        merged = dict(base)
        for k, value in patch.items():
            if value is None:
                merged.pop(k, None)
            elif k in base:
                merged[k] = _merge(base[k], value, k)
            else:
                merged[k] = copy.deepcopy(value)
        return merged
    if isinstance(patch, list):
        if key in _REPLACED_LISTS or not isinstance(base, list):
            return copy.deepcopy(patch)
        if key not in _MERGE_KEYS:
            raise KustomizeError(f"merging into the list {key!r} is not handled")
        merge_key = _MERGE_KEYS[key]
        by_key = {item[merge_key]: item for item in base}
        # As kustomize does: the patch's items in its order, then the untouched ones.
        merged_items = [
            _merge(by_key[item[merge_key]], item, "")
            if item[merge_key] in by_key
            else copy.deepcopy(item)
            for item in patch
        ]
        touched = {item[merge_key] for item in patch}
        return merged_items + [copy.deepcopy(i) for i in base if i[merge_key] not in touched]
    return patch


def _apply_json6902(obj: Obj, operations: list[dict[str, Any]]) -> None:
    for operation in operations:
        if operation.get("op") not in _JSON6902_OPS or set(operation) - {"op", "path", "value"}:
            raise KustomizeError(f"JSON 6902 operation {operation} is not handled")
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in operation["path"].split("/")[1:]]
        parent: Any = obj
        try:
            for token in tokens[:-1]:
                parent = parent[int(token)] if isinstance(parent, list) else parent[token]
            last = tokens[-1]
            if isinstance(parent, list):
                if operation["op"] == "add":
                    index = len(parent) if last == "-" else int(last)
                    parent.insert(index, copy.deepcopy(operation["value"]))
                    continue
                parent[int(last)]  # noqa: B018 (replace and remove need it to exist)
                index = int(last)
            else:
                if operation["op"] != "add":
                    parent[last]  # noqa: B018
                index = last
        except (KeyError, IndexError, ValueError, TypeError):
            raise KustomizeError(f"JSON 6902 path {operation['path']} does not exist") from None
        if operation["op"] == "remove":
            del parent[index]
        else:
            parent[index] = copy.deepcopy(operation["value"])


def split_image(reference: str) -> tuple[str, str]:
    """`registry:5000/jangkau:0.1.0` -> (`registry:5000/jangkau`, `:0.1.0`); digests alike."""
    name, at, digest = reference.partition("@")
    if at:
        return name, at + digest
    head, colon, tag = name.rpartition(":")
    return (head, colon + tag) if colon and "/" not in tag else (name, "")


def _set_image(entry: dict[str, Any], objects: list[Obj]) -> None:
    if set(entry) - _IMAGE_FIELDS:
        raise KustomizeError(f"images entry {entry}: fields not handled")
    for obj in objects:
        for container in containers(obj):
            name, suffix = split_image(container["image"])
            if name != entry["name"]:
                continue
            if "digest" in entry:
                suffix = "@" + entry["digest"]
            elif "newTag" in entry:
                suffix = ":" + str(entry["newTag"])
            container["image"] = entry.get("newName", name) + suffix


# --------------------------------------------------------------------------- #
# Reading rendered objects.                                                   #
# --------------------------------------------------------------------------- #


@functools.cache
def rendered(tree: str) -> list[Obj]:
    return render(TREES[tree])


def pod_spec(obj: Obj) -> dict[str, Any] | None:
    if obj["kind"] in ("Deployment", "StatefulSet"):
        return obj["spec"]["template"]["spec"]
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def pod_labels(obj: Obj) -> dict[str, str]:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    return obj["spec"]["template"]["metadata"]["labels"]


def containers(obj: Obj) -> list[dict[str, Any]]:
    spec = pod_spec(obj)
    return [] if spec is None else spec.get("initContainers", []) + spec["containers"]


def workloads(objects: list[Obj]) -> list[Obj]:
    return [obj for obj in objects if pod_spec(obj) is not None]


def jangkau_containers(objects: list[Obj]) -> Iterator[tuple[Obj, dict[str, Any]]]:
    for obj in workloads(objects):
        for container in containers(obj):
            if split_image(container["image"])[0].rsplit("/", 1)[-1] == IMAGE:
                yield obj, container


def servers(objects: list[Obj]) -> Iterator[tuple[Obj, dict[str, Any], str]]:
    """Each `jangkau serve <name>` container, with <name>."""
    for obj, container in jangkau_containers(objects):
        if container.get("args", [])[:1] == ["serve"]:
            yield obj, container, container["args"][1]


def find(objects: list[Obj], kind: str, name: str) -> Obj | None:
    return next(
        (o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name),
        None,
    )


def find_workload(objects: list[Obj], name: str) -> Obj:
    matches = [obj for obj in workloads(objects) if obj["metadata"]["name"] == name]
    assert len(matches) == 1, name
    return matches[0]


def default_port(service: str) -> int:
    return int(ENV_VARS[SERVICE_ADDR_VARS[service]][0].rsplit(":", 1)[1])


def environment(container: dict[str, Any], objects: list[Obj]) -> dict[str, Any]:
    """The variables the process sees: envFrom ConfigMaps, then env (which wins)."""
    variables: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, f"envFrom {source}: only whole ConfigMaps"
        config_map = find(objects, "ConfigMap", source["configMapRef"]["name"])
        assert config_map is not None, f"ConfigMap {source['configMapRef']['name']} is missing"
        variables.update(config_map.get("data", {}))
    for variable in container.get("env", []):
        variables[variable["name"]] = variable.get("value", variable.get("valueFrom"))
    return variables


def workload_params(trees: tuple[str, ...] = OVERLAYS) -> list[Any]:
    return [
        pytest.param(tree, obj["metadata"]["name"], id=f"{tree}-{obj['metadata']['name']}")
        for tree in trees
        for obj in workloads(rendered(tree))
    ]


def process_params() -> list[Any]:
    """Every workload running the jangkau image, per overlay."""
    return [
        pytest.param(tree, obj["metadata"]["name"], id=f"{tree}-{obj['metadata']['name']}")
        for tree in OVERLAYS
        for obj, _ in jangkau_containers(rendered(tree))
    ]


def process(tree: str, name: str) -> tuple[Obj, dict[str, Any]]:
    obj = find_workload(rendered(tree), name)
    (container,) = containers(obj)
    return obj, container


def server_params() -> list[Any]:
    return [
        pytest.param(tree, name, id=f"{tree}-{name}")
        for tree in OVERLAYS
        for _, _, name in servers(rendered(tree))
    ]


def server(tree: str, name: str) -> tuple[Obj, dict[str, Any]]:
    for obj, container, served in servers(rendered(tree)):
        if served == name:
            return obj, container
    raise AssertionError(f"{tree}: no container runs `jangkau serve {name}`")


# --------------------------------------------------------------------------- #
# References and rendering.                                                   #
# --------------------------------------------------------------------------- #


def all_kustomizations() -> list[Path]:
    return sorted(path.parent for path in K8S.rglob("kustomization.yaml"))


def test_every_kustomization_reference_resolves() -> None:
    broken = []
    for directory in all_kustomizations():
        document = yaml.safe_load((directory / "kustomization.yaml").read_text())
        for entry in document.get("resources", []):
            path = directory / entry
            if not (path.is_file() or (path / "kustomization.yaml").is_file()):
                broken.append(f"{directory.relative_to(ROOT)}: resource {entry}")
        for entry in document.get("components", []):
            path = directory / entry / "kustomization.yaml"
            if not path.is_file() or yaml.safe_load(path.read_text())["kind"] != "Component":
                broken.append(f"{directory.relative_to(ROOT)}: component {entry}")
        for patch in document.get("patches", []):
            if "path" in patch and not (directory / patch["path"]).is_file():
                broken.append(f"{directory.relative_to(ROOT)}: patch {patch['path']}")
    assert broken == []


def test_every_manifest_file_and_component_is_used() -> None:
    used: set[Path] = set()
    for directory in all_kustomizations():
        document = yaml.safe_load((directory / "kustomization.yaml").read_text())
        entries = document.get("resources", []) + document.get("components", [])
        entries += [patch["path"] for patch in document.get("patches", []) if "path" in patch]
        used |= {(directory / entry).resolve() for entry in entries}
    files = {p.resolve() for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml"}
    components = {p.resolve() for p in (K8S / "components").iterdir() if p.is_dir()}
    assert sorted(map(str, (files | components) - used)) == []


@pytest.mark.parametrize("tree", list(TREES))
def test_tree_renders_with_unique_objects(tree: str) -> None:
    identities = [_identity(obj) for obj in rendered(tree)]
    assert identities and len(identities) == len(set(identities))


def find_kubectl() -> str | None:
    beside_python = Path(sys.executable).with_name("kubectl")
    return str(beside_python) if beside_python.is_file() else shutil.which("kubectl")


@pytest.mark.parametrize("tree", list(TREES))
def test_renderer_agrees_with_kubectl_kustomize(tree: str) -> None:
    kubectl = find_kubectl()
    if kubectl is None:
        pytest.skip("no kubectl on PATH or beside the interpreter to compare with")
    built = subprocess.run(
        [kubectl, "kustomize", str(TREES[tree])],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    theirs = {_identity(o): o for o in yaml.safe_load_all(built) if o is not None}
    ours = {_identity(o): o for o in rendered(tree)}
    assert sorted(ours) == sorted(theirs)
    for identity, obj in ours.items():
        assert obj == theirs[identity], identity


def write_tree(root: Path, kustomization: str, **files: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "kustomization.yaml").write_text(kustomization)
    for name, text in files.items():
        (root / name.replace("_", ".")).write_text(text)
    return root


CONFIG_MAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  A: '1'\n"
KUSTOMIZATION = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"


def test_renderer_refuses_a_kustomize_field_it_does_not_handle(tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path,
        KUSTOMIZATION + "resources: [settings.yaml]\ncommonLabels: {a: b}\n",
        settings_yaml=CONFIG_MAP,
    )
    with pytest.raises(KustomizeError, match="commonLabels"):
        render(tree)


def test_renderer_refuses_a_missing_resource(tmp_path: Path) -> None:
    tree = write_tree(tmp_path, KUSTOMIZATION + "resources: [missing.yaml]\n")
    with pytest.raises(KustomizeError, match="missing.yaml does not exist"):
        render(tree)


def test_renderer_refuses_a_patch_that_matches_nothing(tmp_path: Path) -> None:
    patch = CONFIG_MAP.replace("name: settings", "name: other")
    tree = write_tree(
        tmp_path,
        KUSTOMIZATION + "resources: [settings.yaml]\npatches: [{path: patch.yaml}]\n",
        settings_yaml=CONFIG_MAP,
        patch_yaml=patch,
    )
    with pytest.raises(KustomizeError, match="matches nothing"):
        render(tree)


def test_renderer_merges_env_by_name_patch_first_as_kustomize_does() -> None:
    base = {"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
    patch = {"env": [{"name": "C", "value": "3"}, {"name": "A", "value": "9"}]}
    assert _merge(base, patch, "")["env"] == [
        {"name": "C", "value": "3"},
        {"name": "A", "value": "9"},
        {"name": "B", "value": "2"},
    ]


# --------------------------------------------------------------------------- #
# Schemas.                                                                    #
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("tree", list(TREES))
def test_every_object_is_valid_against_the_kubernetes_schema(tree: str, version: str) -> None:
    errors = []
    for obj in rendered(tree):
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            errors.append(f"{_identity(obj)} {where}: {error.message}")
    assert errors == []


# --------------------------------------------------------------------------- #
# Workloads against the code.                                                 #
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("tree", OVERLAYS)
def test_every_server_runs_a_service_jangkau_serve_knows(tree: str) -> None:
    served = []
    for obj, container, name in servers(rendered(tree)):
        assert container["args"] == ["serve", name]
        assert name in SERVICE_ADDR_VARS
        assert obj["metadata"]["name"] == container["name"] == name
        served.append(name)
    expected = set(SERVICE_ADDR_VARS) - ({"sandbox"} if tree == "prod" else set())
    assert sorted(served) == sorted(expected)


@pytest.mark.parametrize(("tree", "name"), server_params())
def test_server_port_is_the_default_port_of_its_address_variable(tree: str, name: str) -> None:
    _, container = server(tree, name)
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [
        ("grpc", default_port(name))
    ]


@pytest.mark.parametrize(("tree", "name"), server_params())
def test_server_listens_on_all_interfaces_at_its_port(tree: str, name: str) -> None:
    _, container = server(tree, name)
    listen = environment(container, rendered(tree))["JANGKAU_LISTEN_ADDR"]
    assert listen == f"0.0.0.0:{default_port(name)}"


@pytest.mark.parametrize(("tree", "name"), server_params())
def test_probes_are_native_grpc_on_the_server_port(tree: str, name: str) -> None:
    _, container = server(tree, name)
    assert "readinessProbe" in container and "livenessProbe" in container
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if probe in container:
            handler = {k for k in container[probe] if k in {"grpc", "httpGet", "tcpSocket", "exec"}}
            assert handler == {"grpc"}, probe
            assert container[probe]["grpc"] == {"port": default_port(name)}, probe


@pytest.mark.parametrize(("tree", "name"), server_params())
def test_service_names_its_port_grpc_and_targets_the_server(tree: str, name: str) -> None:
    obj, _ = server(tree, name)
    labels = pod_labels(obj)
    selecting = [
        s
        for s in rendered(tree)
        if s["kind"] == "Service"
        and all(labels.get(k) == v for k, v in s["spec"]["selector"].items())
    ]
    assert [s["metadata"]["name"] for s in selecting] == [name]
    port = default_port(name)
    assert selecting[0]["spec"]["ports"] == [
        {"name": "grpc", "port": port, "targetPort": "grpc", "protocol": "TCP"}
    ]


@pytest.mark.parametrize(("tree", "name"), workload_params())
def test_every_address_setting_names_a_service_on_that_port(tree: str, name: str) -> None:
    objects = rendered(tree)
    for container in containers(find_workload(objects, name)):
        for variable, value in environment(container, objects).items():
            if variable not in SERVICE_ADDR_VARS.values():
                continue
            host, port = value.rsplit(":", 1)
            service = find(objects, "Service", host)
            assert service is not None, f"{variable}={value}: no Service {host}"
            assert [p["port"] for p in service["spec"]["ports"]] == [int(port)]


@pytest.mark.parametrize("tree", OVERLAYS)
def test_every_environment_variable_set_is_one_the_code_reads(tree: str) -> None:
    objects = rendered(tree)
    unknown = {
        (obj["metadata"]["name"], variable)
        for obj, container in jangkau_containers(objects)
        for variable in environment(container, objects)
        if variable not in ENV_VARS
    }
    assert unknown == set()


@pytest.mark.parametrize(("tree", "name"), process_params())
def test_process_keeps_its_duckdb_files_on_a_writable_volume(tree: str, name: str) -> None:
    obj, container = process(tree, name)
    data_dir = environment(container, rendered(tree))["JANGKAU_DATA_DIR"]
    mounts = [m for m in container["volumeMounts"] if m["mountPath"] == data_dir]
    assert len(mounts) == 1 and not mounts[0].get("readOnly", False)
    if name in PERSISTENT:
        claims = [t["metadata"]["name"] for t in obj["spec"].get("volumeClaimTemplates", [])]
        volume = next((v for v in pod_spec(obj)["volumes"] if v["name"] == mounts[0]["name"]), {})
        claim = volume.get("persistentVolumeClaim", {}).get("claimName")
        assert mounts[0]["name"] in claims or (
            find(rendered(tree), "PersistentVolumeClaim", claim) is not None
        ), f"{name}: its DuckDB file must outlive the pod"


@pytest.mark.parametrize("tree", OVERLAYS)
def test_single_writers_are_statefulsets_of_one_with_no_autoscaler(tree: str) -> None:
    objects = rendered(tree)
    for name in SINGLE_WRITERS:
        obj, _ = server(tree, name)
        assert obj["kind"] == "StatefulSet" and obj["spec"]["replicas"] == 1
    assert [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"] == []


@pytest.mark.parametrize(("tree", "name"), process_params())
def test_process_reads_its_tokens_file_from_the_tokens_secret(tree: str, name: str) -> None:
    obj, container = process(tree, name)
    tokens_file = Path(environment(container, rendered(tree))["JANGKAU_TOKENS_FILE"])
    volumes = {v["name"]: v for v in pod_spec(obj)["volumes"]}
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(tokens_file.parent))
    secret = volumes[mount["name"]]["secret"]
    assert mount.get("readOnly") is True
    assert secret["secretName"] == TOKENS_SECRET
    assert secret["items"] == [{"key": "tokens.json", "path": tokens_file.name}]


@pytest.mark.parametrize("tree", OVERLAYS)
def test_rebalancer_runs_hourly_one_at_a_time_within_the_hour(tree: str) -> None:
    cron = find(rendered(tree), "CronJob", "rebalancer")
    assert cron is not None
    spec, job = cron["spec"], cron["spec"]["jobTemplate"]["spec"]
    assert spec["schedule"] == "0 * * * *"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert 0 < spec["startingDeadlineSeconds"] < 3600
    assert 0 < job["activeDeadlineSeconds"] < 3600
    assert job["backoffLimit"] >= 0
    (container,) = containers(cron)
    assert container["args"][0] == "rebalance"
    # The process stops itself between campaigns before Kubernetes stops it.
    own_limit = build_parser().parse_args(container["args"]).max_seconds
    assert (
        own_limit + pod_spec(cron)["terminationGracePeriodSeconds"] < job["activeDeadlineSeconds"]
    )


@pytest.mark.parametrize(("tree", "name"), process_params())
def test_process_arguments_are_a_command_the_jangkau_cli_accepts(tree: str, name: str) -> None:
    _, container = process(tree, name)
    assert "command" not in container, "the image's ENTRYPOINT is the jangkau command"
    parsed = build_parser().parse_args(container["args"])
    assert parsed.command in {"serve", "rebalance"}


@pytest.mark.parametrize("tree", OVERLAYS)
def test_rebalancer_presents_the_token_from_the_tokens_secret(tree: str) -> None:
    cron = find(rendered(tree), "CronJob", "rebalancer")
    (container,) = containers(cron)
    token = environment(container, rendered(tree))["JANGKAU_TOKEN"]
    assert token == {"secretKeyRef": {"name": TOKENS_SECRET, "key": "rebalancer-token"}}


def test_dev_tokens_are_the_development_tokens_of_the_code() -> None:
    secret = find(rendered("dev"), "Secret", TOKENS_SECRET)
    assert secret is not None
    book = TokenBook(json.loads(secret["stringData"]["tokens.json"])["tokens"])
    rebalancer = book.authenticate(f"Bearer {secret['stringData']['rebalancer-token']}")
    buyer = book.authenticate(f"Bearer {DEV_TOKEN}")
    assert (rebalancer.tenant, rebalancer.role) == (DEV_TENANT, Role.SERVICE)
    assert (buyer.tenant, buyer.role) == (DEV_TENANT, Role.BUYER)
    # Only digests at rest, even for development tokens.
    entries = json.loads(secret["stringData"]["tokens.json"])["tokens"]
    assert all(set(entry) == {"token_sha256", "tenant", "role"} for entry in entries)


@pytest.mark.parametrize("tree", OVERLAYS)
def test_every_config_map_secret_and_volume_claim_referenced_exists(tree: str) -> None:
    objects = rendered(tree)
    referenced = set()
    for obj in workloads(objects):
        for volume in pod_spec(obj).get("volumes", []):
            if "secret" in volume:
                referenced.add(("Secret", volume["secret"]["secretName"]))
            if "configMap" in volume:
                referenced.add(("ConfigMap", volume["configMap"]["name"]))
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                referenced.add(("PersistentVolumeClaim", claim))
        for container in containers(obj):
            for source in container.get("envFrom", []):
                referenced.add(("ConfigMap", source["configMapRef"]["name"]))
            for variable in container.get("env", []):
                secret_ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if secret_ref:
                    referenced.add(("Secret", secret_ref["name"]))
    missing = {ref for ref in referenced if find(objects, *ref) is None}
    assert missing == EXTERNAL.get(tree, set())


@pytest.mark.parametrize("tree", OVERLAYS)
def test_every_workload_has_its_own_service_account_without_api_token(tree: str) -> None:
    objects = rendered(tree)
    accounts = []
    for obj in workloads(objects):
        spec = pod_spec(obj)
        account = find(objects, "ServiceAccount", spec["serviceAccountName"])
        assert account is not None and account["automountServiceAccountToken"] is False
        assert spec["automountServiceAccountToken"] is False
        accounts.append(spec["serviceAccountName"])
    assert len(accounts) == len(set(accounts))


# --------------------------------------------------------------------------- #
# Security and resources.                                                     #
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(("tree", "name"), workload_params())
def test_containers_run_restricted(tree: str, name: str) -> None:
    obj = find_workload(rendered(tree), name)
    pod = pod_spec(obj)["securityContext"]
    for container in containers(obj):
        context = {**pod, **container["securityContext"]}
        assert context["runAsNonRoot"] is True
        assert isinstance(context["runAsUser"], int) and context["runAsUser"] > 0
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize(("tree", "name"), workload_params())
def test_containers_request_and_limit_cpu_and_memory(tree: str, name: str) -> None:
    for container in containers(find_workload(rendered(tree), name)):
        resources = container["resources"]
        for bound in ("requests", "limits"):
            assert set(resources[bound]) >= {"cpu", "memory"}, (container["name"], bound)
        for unit in ("cpu", "memory"):
            assert quantity(resources["requests"][unit]) <= quantity(resources["limits"][unit])


@pytest.mark.parametrize("tree", OVERLAYS)
def test_jangkau_containers_write_temporary_files_to_an_empty_dir(tree: str) -> None:
    for obj, container in jangkau_containers(rendered(tree)):
        volumes = {v["name"]: v for v in pod_spec(obj)["volumes"]}
        tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert len(tmp) == 1 and "emptyDir" in volumes[tmp[0]["name"]], obj["metadata"]["name"]


@pytest.mark.parametrize("tree", OVERLAYS)
def test_overlay_lives_in_one_namespace_that_enforces_restricted_pods(tree: str) -> None:
    objects = rendered(tree)
    (namespace,) = [o for o in objects if o["kind"] == "Namespace"]
    name = namespace["metadata"]["name"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {o["metadata"].get("namespace") for o in objects if o is not namespace} == {name}


def test_prod_runs_a_released_image_tag() -> None:
    images = {c["image"] for _, c in jangkau_containers(rendered("prod"))}
    assert len(images) == 1
    (image,) = images
    assert re.fullmatch(r"[\w./-]*jangkau(:\d+\.\d+\.\d+|@sha256:[0-9a-f]{64})", image), image


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity (100m, 1, 512Mi, 2Gi) as a number."""
    suffixes = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    match = re.fullmatch(r"([0-9.]+)(m|Ki|Mi|Gi|Ti)?", str(value))
    assert match, value
    return float(match[1]) * suffixes.get(match[2] or "", 1)


def test_prod_requests_at_least_what_dev_does() -> None:
    def requests(tree: str) -> dict[tuple[str, str], float]:
        return {
            (obj["metadata"]["name"], unit): quantity(container["resources"]["requests"][unit])
            for obj, container in jangkau_containers(rendered(tree))
            for unit in ("cpu", "memory")
        }

    prod, dev = requests("prod"), requests("dev")
    assert all(prod[key] >= dev[key] for key in prod)
    assert any(prod[key] > dev[key] for key in prod)


# --------------------------------------------------------------------------- #
# The network: each workload reaches only what it calls.                      #
# --------------------------------------------------------------------------- #


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"selector {selector}: only matchLabels is checked"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def allowed(policies: list[Obj], direction: str, labels: dict, peer: dict, port: int) -> bool:
    """Whether the NetworkPolicies let a pod with `labels` take (Ingress) or make
    (Egress) a TCP connection on `port` from or to a pod with `peer` labels, in
    the same namespace."""
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    applying = [
        p
        for p in policies
        if selects(p["spec"]["podSelector"], labels) and direction in p["spec"]["policyTypes"]
    ]
    if not applying:
        return True
    for policy in applying:
        for rule in policy["spec"].get(rules_key, []):
            peers = rule.get(peers_key)
            # A peer with a namespaceSelector or ipBlock is outside this namespace.
            if peers is not None and not any(
                set(p) == {"podSelector"} and selects(p["podSelector"], peer) for p in peers
            ):
                continue
            ports = rule.get("ports")
            if ports is None or any(
                p.get("protocol", "TCP") == "TCP" and p.get("port") == port for p in ports
            ):
                return True
    return False


def reachable(objects: list[Obj]) -> set[tuple[str, str, int]]:
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    pods = {o["metadata"]["name"]: pod_labels(o) for o in workloads(objects)}
    callers = {**pods, "api-client": API_CLIENT_LABELS}
    ports = {
        (o["metadata"]["name"], p["containerPort"])
        for o in workloads(objects)
        for c in containers(o)
        for p in c.get("ports", [])
    }
    return {
        (source, target, port)
        for source, labels in callers.items()
        for target, port in ports
        if source != target
        and allowed(policies, "Egress", labels, pods[target], port)
        and allowed(policies, "Ingress", pods[target], labels, port)
    }


@pytest.mark.parametrize("tree", OVERLAYS)
def test_network_policies_allow_exactly_the_calls_each_workload_makes(tree: str) -> None:
    objects = rendered(tree)
    names = {o["metadata"]["name"] for o in workloads(objects)}
    calls = {(caller, callee) for caller, callees in CALLS.items() for callee in callees}
    calls |= {("api-client", callee) for callee in API_SERVICES}
    if "sandbox" in names:
        calls.add(("rebalancer", "sandbox"))
    expected = {(a, b, default_port(b)) for a, b in calls}
    if "otel-collector" in names:
        expected |= {(name, "otel-collector", 4317) for name in names - {"otel-collector"}}
    assert reachable(objects) == expected


@pytest.mark.parametrize("tree", OVERLAYS)
def test_every_pod_may_resolve_service_names(tree: str) -> None:
    objects = rendered(tree)
    dns_policies = [
        o
        for o in objects
        if o["kind"] == "NetworkPolicy"
        and any(
            {"protocol": "UDP", "port": 53} in rule.get("ports", [])
            and any(
                p.get("namespaceSelector", {}).get("matchLabels")
                == {"kubernetes.io/metadata.name": "kube-system"}
                and p.get("podSelector", {}).get("matchLabels") == {"k8s-app": "kube-dns"}
                for p in rule.get("to", [])
            )
            for rule in o["spec"].get("egress", [])
        )
    ]
    for obj in workloads(objects):
        assert any(selects(p["spec"]["podSelector"], pod_labels(obj)) for p in dns_policies)


@pytest.mark.parametrize("tree", OVERLAYS)
def test_everything_is_denied_unless_a_policy_allows_it(tree: str) -> None:
    deny = find(rendered(tree), "NetworkPolicy", "default-deny")
    assert deny is not None
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


# --------------------------------------------------------------------------- #
# Overlays.                                                                   #
# --------------------------------------------------------------------------- #


def test_dev_runs_one_of_each_with_the_sandbox_market_and_tracing() -> None:
    objects = rendered("dev")
    servers_and_collector = [o for o in workloads(objects) if o["kind"] != "CronJob"]
    assert {o["spec"]["replicas"] for o in servers_and_collector} == {1}
    assert find(objects, "Deployment", "sandbox") is not None
    settings = find(objects, "ConfigMap", "jangkau-settings")["data"]
    assert settings["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4317"
    collector = find(objects, "Service", "otel-collector")
    assert [p["port"] for p in collector["spec"]["ports"]] == [4317]


def test_prod_leaves_out_the_sandbox_market_and_the_development_tokens() -> None:
    objects = rendered("prod")
    assert [o for o in objects if "sandbox" in o["metadata"]["name"]] == []
    assert [o for o in objects if o["kind"] == "Secret"] == []
    assert "JANGKAU_SANDBOX_ADDR" not in find(objects, "ConfigMap", "jangkau-settings")["data"]


def test_rebalancer_is_suspended_in_prod_only_until_a_real_platform_is_wired() -> None:
    # jangkau.rebalancer.wiring connects the sandbox adapter alone, and prod has no sandbox.
    assert find(rendered("prod"), "CronJob", "rebalancer")["spec"]["suspend"] is True
    assert "suspend" not in find(rendered("dev"), "CronJob", "rebalancer")["spec"]


def test_prod_disruption_budgets_keep_every_single_writer_up() -> None:
    objects = rendered("prod")
    budgets = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    for name in SINGLE_WRITERS:
        obj, _ = server("prod", name)
        covering = [b for b in budgets if selects(b["spec"]["selector"], pod_labels(obj))]
        assert len(covering) == 1 and covering[0]["spec"]["maxUnavailable"] == 0, name


# --------------------------------------------------------------------------- #
# The Tiltfile against the dev overlay and the Dockerfile.                    #
# --------------------------------------------------------------------------- #


@functools.cache
def tilt_calls() -> tuple[tuple[str, tuple[Any, ...], dict[str, Any]], ...]:
    """Every call in the Tiltfile (Starlark parses as Python), with literal arguments
    evaluated and module-level constants substituted; other arguments stay AST nodes."""
    tree = ast.parse(TILTFILE.read_text())
    constants = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Constant)
    }

    def value(node: ast.expr) -> Any:
        if isinstance(node, ast.Name) and node.id in constants:
            return constants[node.id]
        try:
            return ast.literal_eval(node)
        except ValueError:
            return node

    return tuple(
        (
            node.func.id,
            tuple(value(a) for a in node.args),
            {k.arg: value(k.value) for k in node.keywords if k.arg},
        )
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    )


def calls_of(function: str) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    return [(args, kwargs) for name, args, kwargs in tilt_calls() if name == function]


def test_tiltfile_deploys_the_dev_overlay() -> None:
    ((args, kwargs),) = calls_of("kustomize")
    assert TREES["dev"] == ROOT / args[0] and kwargs == {}


def test_tiltfile_resources_are_the_workloads_and_objects_of_the_dev_overlay() -> None:
    objects = rendered("dev")
    names = {o["metadata"]["name"] for o in workloads(objects)}
    resources = calls_of("k8s_resource")
    named = {args[0] for args, _ in resources if args}
    attached = [ref for _, kwargs in resources for ref in kwargs.get("objects", [])]
    assert named == names
    known = {f"{o['metadata']['name']}:{o['kind'].lower()}" for o in objects}
    assert sorted(set(attached) - known) == []
    # Workloads, and the Services Tilt pairs with them, aside: nothing is left uncategorised.
    loose = known - set(attached)
    loose -= {f"{o['metadata']['name']}:{o['kind'].lower()}" for o in workloads(objects)}
    loose -= {f"{o['metadata']['name']}:service" for o in objects if o["kind"] == "Service"}
    assert loose == set()


def test_tiltfile_forwards_audience_budget_and_metrics_on_their_ports() -> None:
    forwards = {
        args[0]: kwargs["port_forwards"]
        for args, kwargs in calls_of("k8s_resource")
        if args and "port_forwards" in kwargs
    }
    assert forwards == {
        name: [f"{default_port(name)}:{default_port(name)}"]
        for name in ("audience", "budget", "metrics")
    }


def test_tiltfile_labels_every_resource() -> None:
    resources = calls_of("k8s_resource") + calls_of("local_resource")
    labels = [tuple(kwargs.get("labels", ())) for _, kwargs in resources]
    assert all(len(group) == 1 for group in labels)
    assert {group[0] for group in labels} == {"services", "jobs", "infra"}


def test_tiltfile_generates_protos_with_make() -> None:
    (protos,) = [kwargs for args, kwargs in calls_of("local_resource") if args == ("protos",)]
    assert protos["cmd"] == "make protos" and protos["deps"] == ["protos/jangkau/v1"]
    assert "protos:" in (ROOT / "Makefile").read_text()


def test_tiltfile_builds_the_dev_stage_and_syncs_into_the_image_source_dir() -> None:
    ((args, kwargs),) = calls_of("docker_build_with_restart")
    dockerfile = DOCKERFILE.read_text()
    assert args[0] == IMAGE and kwargs["dockerfile"] == DOCKERFILE.name
    assert re.search(rf"^FROM \S+ AS {kwargs['target']}$", dockerfile, re.MULTILINE)
    assert kwargs["entrypoint"] == json.loads(re.search(r"^ENTRYPOINT (.+)$", dockerfile, re.M)[1])
    (sync,) = calls_of("sync")
    source, destination = sync[0]
    assert (ROOT / source / "jangkau").is_dir()
    assert re.search(rf"^COPY --from=builder {destination} {destination}$", dockerfile, re.M)
    assert kwargs["restart_file"].startswith(str(Path(destination).parent) + "/")
