"""The worker image, checked without a Docker engine.

The hadolint config gives a reason for every rule it ignores (hadolint itself runs in
tests/integration/test_hadolint.py); the Dockerfile installs the project's
dependencies and `worker` extra before it copies the source, pins the CUDA wheels to what
TensorFlow was built with, runs `ablate worker` as a non-root user and pings exactly that worker
in its health check; its `ABLATE_*` variables are `Settings` fields with valid values.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import pytest
import yaml

from service.settings import Settings
from tests.conftest import REPO

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

DOCKERFILE = REPO / "Dockerfile"
HADOLINT_CONFIG = REPO / ".hadolint.yaml"


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        keyword, _, args = (current + stripped).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return instructions


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    return dockerfile_instructions(DOCKERFILE.read_text())


def only(instructions: list[tuple[str, str]], keyword: str) -> list[tuple[int, str]]:
    return [(i, args) for i, (kw, args) in enumerate(instructions) if kw == keyword]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def env_pairs(instructions: list[tuple[str, str]]) -> dict[str, str]:
    pairs = {}
    for _, args in only(instructions, "ENV"):
        for token in shlex.split(args):
            key, sep, value = token.partition("=")
            assert sep, f"ENV {args!r}: use the KEY=value form"
            pairs[key] = value
    return pairs


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_every_ignored_hadolint_rule_gives_its_reason():
    config = yaml.safe_load(HADOLINT_CONFIG.read_text()) or {}
    assert config.get("failure-threshold") == "warning"
    lines = HADOLINT_CONFIG.read_text().splitlines()
    for rule in config.get("ignored") or []:
        line = next(line for line in lines if rule in line and not line.lstrip().startswith("#"))
        assert "#" in line and line.split("#", 1)[1].strip(), f"{rule}: say why it is ignored"


def test_dockerfile_base_image_is_pinned(instructions):
    froms = only(instructions, "FROM")
    assert froms, "no FROM"
    for _, args in froms:
        image = args.split()[0]
        name, _, tag = image.split("@")[0].rpartition(":")
        assert name and "/" not in tag, f"FROM {image}: pin a tag"
        assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"FROM {image}: pin a version"


# The image runs Python 3.11; the tests may run on 3.10, where tomllib is tomli.
TOMLLIB_ON_PY310 = (
    "import sys\nif sys.version_info < (3, 11):\n    import tomli; sys.modules['tomllib'] = tomli\n"
)


def dependency_install(instructions) -> tuple[int, str]:
    """The first RUN that pip-installs: the dependency layer."""
    return next((i, args) for i, args in only(instructions, "RUN") if "pip install" in args)


def test_dockerfile_installs_the_dependencies_and_worker_extra_from_pyproject(instructions):
    index, run = dependency_install(instructions)
    project = pyproject()
    expected = project["dependencies"] + project["optional-dependencies"]["worker"]
    if ".[worker]" not in run:
        # Requirements generated from pyproject.toml at build time: run the same snippet here.
        match = re.search(r'python3? -c "(.+?)"\s*>', run)
        assert match, f"the dependency step neither installs .[worker] nor generates them: {run}"
        done = subprocess.run(
            [sys.executable, "-c", TOMLLIB_ON_PY310 + match.group(1)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert done.stdout.split() == expected
    # TensorFlow's GPU build: the CUDA and cuDNN wheels come with its `and-cuda` extra.
    assert "tensorflow[and-cuda]" in run
    assert all(
        "--no-cache-dir" in args for _, args in only(instructions, "RUN") if "pip install" in args
    )
    # Only packaging metadata is in the image when the dependency layer is built.
    for i, copy in only(instructions, "COPY"):
        if i < index:
            assert set(copy.split()[:-1]) <= {
                "pyproject.toml",
                "README.md",
                "setup.cfg",
                CONSTRAINTS_IN_REPO,
            }, copy


CONSTRAINTS_IN_REPO = "infra/constraints-cuda.txt"


def constraint_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / CONSTRAINTS_IN_REPO).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"{CONSTRAINTS_IN_REPO}: {line!r} is not pinned with =="
            pins[name.strip()] = version.strip()
    return pins


def test_the_cuda_wheels_are_pinned_to_what_tensorflow_was_built_with(instructions):
    from importlib.metadata import requires, version

    _, run = dependency_install(instructions)
    assert "-c constraints-cuda.txt" in run and "tensorflow[and-cuda]==${TENSORFLOW_VERSION}" in run
    tensorflow = env_pairs(instructions).get("TENSORFLOW_VERSION") or next(
        args.split("=", 1)[1]
        for _, args in only(instructions, "ARG")
        if args.startswith("TENSORFLOW_VERSION=")
    )
    assert tensorflow == version("tensorflow"), "the image's TensorFlow is the one the tests run"
    # Every NVIDIA wheel of the extra is pinned, each to the lower bound TensorFlow declares.
    declared = {}
    for requirement in requires("tensorflow") or []:
        if 'extra == "and-cuda"' in requirement:
            spec = requirement.split(";")[0]
            name = re.match(r"[A-Za-z0-9_.-]+", spec).group(0)
            declared[name] = re.search(r">=([0-9.]+)", spec).group(1)
    assert declared and constraint_pins() == declared
    assert "525.60.13" in (REPO / CONSTRAINTS_IN_REPO).read_text()  # the minimum driver, documented


def test_the_cuda_jit_cache_is_a_large_cache_in_a_folder_the_worker_owns(instructions):
    env = env_pairs(instructions)
    assert env["CUDA_CACHE_PATH"] == "/var/cache/ablate/cuda"
    assert int(env["CUDA_CACHE_MAXSIZE"]) == 4 * 2**30  # CUDA's largest
    # Owned by the worker's user: a named volume mounted there starts with this owner.
    assert any(
        "install -d -o 10001 -g 10001 /var/cache/ablate /var/cache/ablate/cuda" in args
        for _, args in only(instructions, "RUN")
    )


def test_the_image_holds_the_gpu_check_and_what_it_reads():
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    for path in (
        "bench/gpu_check.py",
        "bench/gpu_check_run.py",
        "bench/gpu_packing.py",
        "examples/seed-study.yaml",
        CONSTRAINTS_IN_REPO,
    ):
        assert f"!{path}" in ignored, f"{path} is kept out of the build context"
        assert (REPO / path).exists()


def test_dockerfile_copies_the_source_after_the_dependencies(instructions):
    dependencies, _ = dependency_install(instructions)
    copies = {args.split()[0].rstrip("/"): i for i, args in only(instructions, "COPY")}
    assert {"service", "workers"} <= copies.keys(), "COPY service/ and workers/"
    assert dependencies < copies["service"] and dependencies < copies["workers"]
    project_install = [
        i for i, args in only(instructions, "RUN") if "pip install" in args and "--no-deps" in args
    ]
    assert project_install and project_install[-1] > max(copies["service"], copies["workers"])


def test_dockerfile_sets_the_container_environment(instructions, clean_env):
    env = env_pairs(instructions)
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("PYTHONUNBUFFERED") == "1"
    assert env.get("ABLATE_LOG_FORMAT") == "json"
    for key in env:
        if key.startswith("ABLATE_"):
            field = key.removeprefix("ABLATE_").lower()
            assert field in Settings.model_fields, f"{key} is not a Settings field"
    ablate_env = {
        k.removeprefix("ABLATE_").lower(): v for k, v in env.items() if k.startswith("ABLATE_")
    }
    Settings(**ablate_env)  # valid values, not just valid names
    assert only(instructions, "WORKDIR")[-1][1] == "/app"


def test_dockerfile_runs_ablate_worker_as_a_non_root_user(instructions):
    users = only(instructions, "USER")
    assert users, "no USER: the worker would run as root"
    user = users[-1][1].split(":")[0]
    assert user not in ("root", "0")
    ((entry_index, entrypoint),) = only(instructions, "ENTRYPOINT")
    assert users[-1][0] < entry_index
    argv = exec_form(entrypoint)
    assert argv[:2] == ["ablate", "worker"]
    # The options exist on `ablate worker` (parsing fails on an unknown one).
    from service.cli import cli

    cli.commands["worker"].make_context("worker", argv[2:])
    assert only(instructions, "STOPSIGNAL")[-1][1] == "SIGTERM"


def test_health_check_pings_this_worker_through_celery(instructions):
    ((_, healthcheck),) = only(instructions, "HEALTHCHECK")
    options, _, command = healthcheck.partition(" CMD ")
    for option in ("--interval=", "--timeout=", "--start-period="):
        assert option in options
    argv = exec_form(command)
    assert argv[:2] == ["/bin/sh", "-c"], "a shell, so that $HOSTNAME expands"
    celery = shlex.split(argv[2].split("||")[0])
    assert celery[0] == "celery" and "inspect" in celery
    # Celery's own CLI parses it: the global options, then `inspect ping` and its options.
    from celery.bin.celery import celery as celery_cli
    from celery.bin.control import inspect as inspect_cli

    split = celery.index("inspect")
    assert celery_cli.make_context("celery", celery[1:split]).params["app"] == "workers.app"
    ping = inspect_cli.make_context("inspect", celery[split + 1 :])
    assert ping.params["command"] == "ping" and ping.params["timeout"]
    # ... and it names the node this container's worker runs as.
    ((_, entrypoint),) = only(instructions, "ENTRYPOINT")
    hostname = next(
        a.split("=", 1)[1] for a in exec_form(entrypoint) if a.startswith("--hostname=")
    )
    assert ping.params["destination"] == [hostname.replace("%h", "$HOSTNAME")]
