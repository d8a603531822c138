"""The container image, checked against the code without building it: the base
image, the ports it exposes, its entry point and default command, its user, and
the build context that .dockerignore lets in."""

from __future__ import annotations

import fnmatch
import functools
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

from jangkau.cli.main import build_parser
from jangkau.runtime.config import ENV_VARS, SERVICE_ADDR_VARS

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# What the image needs; the build context should hold these and nothing else.
CONTEXT = ("pyproject.toml", "constraints.txt", "services")


@functools.cache
def stages() -> tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...]:
    """(name, base, instructions) per stage; continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += stripped[:-1] + " " if stripped.endswith("\\") else stripped
        if not stripped.endswith("\\"):
            logical.append(pending)
            pending = ""
    arguments: dict[str, str] = {}
    found: list[tuple[str, str, list[tuple[str, str]]]] = []
    for line in logical:
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "ARG" and not found:
            name, _, default = rest.partition("=")
            arguments[name] = default
        elif instruction == "FROM":
            match = re.fullmatch(r"(\S+) AS (\S+)", rest, re.IGNORECASE)
            assert match, f"FROM {rest}: every stage is named"
            base = re.sub(r"\$\{(\w+)\}", lambda m: arguments[m[1]], match[1])
            found.append((match[2], base, []))
        else:
            found[-1][2].append((instruction, rest))
    return tuple((name, base, tuple(body)) for name, base, body in found)


def final_chain() -> list[tuple[str, str]]:
    """The instructions that make the default (last) stage, through the stages it builds on."""
    by_name = {name: (base, body) for name, base, body in stages()}
    name = stages()[-1][0]
    chain: list[tuple[str, str]] = []
    while name in by_name:
        base, body = by_name[name]
        chain = list(body) + chain
        name = base
    return chain


def last(instruction: str) -> str:
    values = [rest for kind, rest in final_chain() if kind == instruction]
    assert values, f"the image sets no {instruction}"
    return values[-1]


def default_port(service: str) -> int:
    return int(ENV_VARS[SERVICE_ADDR_VARS[service]][0].rsplit(":", 1)[1])


def test_every_stage_starts_from_a_pinned_python_slim_image_the_project_supports() -> None:
    names = {name for name, _, _ in stages()}
    external = {base for _, base, _ in stages() if base not in names}
    assert len(external) == 1
    (image,) = external
    match = re.fullmatch(r"python:(3\.\d+)\.\d+-slim(-[a-z]+)?", image)
    assert match, f"{image}: pin a patch release of a slim Python image"
    assert f">={match[1]}" in PYPROJECT["project"]["requires-python"]


def test_image_exposes_the_default_port_of_every_service() -> None:
    exposed = sorted(int(port) for port in last("EXPOSE").split())
    assert exposed == sorted(default_port(service) for service in SERVICE_ADDR_VARS)


def test_image_entry_point_is_the_jangkau_console_script() -> None:
    entrypoint = json.loads(last("ENTRYPOINT"))
    assert entrypoint == ["jangkau"]
    assert entrypoint[0] in PYPROJECT["project"]["scripts"]


def test_image_default_command_serves_a_service_the_cli_knows() -> None:
    command = json.loads(last("CMD"))
    assert build_parser().parse_args(command).command == "serve"
    assert command[1:] in ([name] for name in SERVICE_ADDR_VARS)


def jangkau_pod_users() -> set[Any]:
    users = set()
    for path in (ROOT / "deploy" / "k8s").rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            spec = (doc or {}).get("spec", {})
            spec = spec.get("jobTemplate", {}).get("spec", spec)
            pod = spec.get("template", {}).get("spec", {}) if isinstance(spec, dict) else {}
            if any(
                c.get("image", "").split(":")[0] == "jangkau" for c in pod.get("containers", [])
            ):
                users.add(pod["securityContext"]["runAsUser"])
    return users


def test_image_runs_as_the_numeric_non_root_user_the_manifests_name() -> None:
    user, _, group = last("USER").partition(":")
    assert user.isdigit() and int(user) > 0 and (group == "" or group.isdigit())
    assert jangkau_pod_users() == {int(user)}


def test_runtime_stages_build_nothing_and_take_the_venv_from_the_builder() -> None:
    runs = " ".join(rest for kind, rest in final_chain() if kind == "RUN")
    for tool in ("apt-get", "pip ", "gcc", "make ", "build-essential"):
        assert tool not in runs, tool
    copies = [rest for kind, rest in final_chain() if kind == "COPY"]
    assert "--from=builder /opt/venv /opt/venv" in copies


def test_builder_installs_the_pinned_dependencies_with_the_constraints() -> None:
    builder = next(body for name, _, body in stages() if name == "builder")
    runs = " ".join(rest for kind, rest in builder if kind == "RUN")
    assert "['project']['dependencies']" in runs and "--constraint constraints.txt" in runs
    unpinned = [d for d in PYPROJECT["project"]["dependencies"] if "==" not in d]
    assert unpinned == []


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` out of the context: the last pattern matching
    the path or one of its parent folders decides, `!` lets it back in."""

    def matches(pattern: list[str], parts: list[str]) -> bool:
        if not pattern:
            return not parts
        if pattern[0] == "**":
            return any(matches(pattern[1:], parts[i:]) for i in range(len(parts) + 1))
        return (
            bool(parts)
            and fnmatch.fnmatchcase(parts[0], pattern[0])
            and matches(pattern[1:], parts[1:])
        )

    parts = path.split("/")
    ignored = False
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip("/").split("/")
        if any(matches(pattern, parts[:end]) for end in range(1, len(parts) + 1)):
            ignored = not negated
    return ignored


def test_build_context_holds_only_what_the_image_needs() -> None:
    top_level = {p.name for p in ROOT.iterdir()}
    assert sorted(n for n in top_level - set(CONTEXT) if not dockerignored(n)) == []
    for needed in CONTEXT:
        assert not dockerignored(needed), needed
    assert not dockerignored("services/jangkau/v1/budget_pb2.py")
    for local in (
        "services/jangkau/__pycache__/config.cpython-311.pyc",
        "services/jangkau.egg-info/PKG-INFO",
        "services/.jangkau/metrics.duckdb",
    ):
        assert dockerignored(local), local


def test_every_file_the_dockerfile_copies_is_in_the_build_context() -> None:
    sources = [
        source
        for _, _, body in stages()
        for kind, rest in body
        if kind == "COPY" and not rest.startswith("--from")
        for source in rest.split()[:-1]
    ]
    assert sources
    for source in sources:
        assert (ROOT / source).exists() and not dockerignored(source.rstrip("/")), source
