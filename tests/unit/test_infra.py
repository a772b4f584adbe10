"""The worker image and the compose stack, checked without a Docker engine.

The hadolint config gives a reason for every rule it ignores (hadolint itself runs in
tests/integration/test_hadolint.py); the Dockerfile installs the project's
dependencies and `worker` extra before it copies the source, runs `ablate worker` as a non-root
user and pings exactly that worker in its health check. infra/compose.yaml wires Redis, the S3
server, the bucket step, the GPU workers and Flower with variables the code really reads:
`ABLATE_*` fields of `Settings`, and AWS variables that boto3 resolves.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import botocore.configprovider
import botocore.credentials
import pytest
import yaml

from service.settings import Settings

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "infra" / "compose.yaml"
ENV_EXAMPLE = REPO / "infra" / ".env.example"
HADOLINT_CONFIG = REPO / ".hadolint.yaml"

REQUIRED_SECRETS = ("ABLATE_REDIS_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# What `docker compose up` would be given: throwaway values for the variables it requires.
DUMMY_ENV = {
    "ABLATE_REDIS_PASSWORD": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "AWS_ACCESS_KEY_ID": "test-access-key-id",
    "AWS_SECRET_ACCESS_KEY": "test-secret-access-key",
}


# -- Dockerfile -------------------------------------------------------------------------------


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


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """Without the shell's ABLATE_* and AWS_* variables and ~/.aws files."""
    for key in [k for k in os.environ if k.startswith(("ABLATE_", "AWS_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    return monkeypatch


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


# -- compose ----------------------------------------------------------------------------------


class MissingVariable(Exception):
    pass


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<bare>\w+))"
)


def interpolate(value, env: dict[str, str]):
    """Compose's variable interpolation: ${VAR}, ${VAR:-default}, ${VAR:?error}, $$ -> $."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg, current = match.group("op"), match.group("arg"), env.get(name)
        unset = current is None or (op is not None and op.startswith(":") and current == "")
        if op in (":?", "?") and unset:
            raise MissingVariable(f"{name}: {arg}")
        if op in (":-", "-") and unset:
            return arg
        return current or ""

    return _VARIABLE.sub(substitute, value)


def referenced_variables(text: str) -> set[str]:
    return {
        m.group("name") or m.group("bare")
        for m in _VARIABLE.finditer(text)
        if not m.group("escaped")
    }


@pytest.fixture(scope="module")
def raw_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def compose(raw_compose) -> dict:
    return interpolate(raw_compose, DUMMY_ENV)


def service_env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def command_text(service: dict) -> str:
    command = service.get("command") or []
    return command if isinstance(command, str) else " ".join(map(str, command))


def test_stack_has_its_services(compose):
    assert {"redis", "s3", "create-bucket", "worker", "flower"} <= compose["services"].keys()


def test_images_are_pinned(compose):
    for name, service in compose["services"].items():
        if "image" not in service:
            assert "build" in service, f"{name}: neither image nor build"
            continue
        image = service["image"].split("@")[0]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned"


@pytest.mark.parametrize("variable", REQUIRED_SECRETS)
def test_stack_refuses_to_start_without_its_secrets(raw_compose, variable):
    env = {k: v for k, v in DUMMY_ENV.items() if k != variable}
    with pytest.raises(MissingVariable, match=variable):
        interpolate(raw_compose, env)


def test_secrets_are_marked_required_wherever_they_are_used():
    # ${VAR:?message} everywhere: no service may fall back to an empty password or key.
    for match in _VARIABLE.finditer(COMPOSE.read_text()):
        name = match.group("name") or match.group("bare")
        if name in REQUIRED_SECRETS:
            assert match.group("op") == ":?", f"{match.group(0)}: use ${{{name}:?message}}"


def test_redis_is_durable_password_protected_and_never_evicts(compose, raw_compose):
    redis = compose["services"]["redis"]
    command = command_text(redis)
    assert re.search(r"--appendonly\s+yes\b", command)
    assert re.search(r"--maxmemory-policy\s+noeviction\b", command)
    assert f"--requirepass {DUMMY_ENV['ABLATE_REDIS_PASSWORD']}" in command
    assert "${ABLATE_REDIS_PASSWORD:?" in command_text(raw_compose["services"]["redis"])
    assert any(str(v).endswith(":/data") for v in redis["volumes"])
    assert redis["healthcheck"]["test"]


def test_s3_server_keeps_its_data_and_reports_health(compose):
    s3 = compose["services"]["s3"]
    assert any(str(v).endswith(":/data") for v in s3["volumes"])
    assert s3["healthcheck"]["test"]
    # The server's admin key pair is the one the workers use.
    worker = service_env(compose["services"]["worker"])
    server = service_env(s3)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert server[key] == worker[key] == DUMMY_ENV[key]


def s3_port(compose) -> int:
    match = re.search(r"-s3\.port=(\d+)", command_text(compose["services"]["s3"]))
    return int(match.group(1)) if match else 8333


def bucket_created(compose) -> str:
    step = compose["services"]["create-bucket"]
    env = service_env(step)
    match = re.search(r"s3://(?:\$\{?(\w+)\}?|([\w.-]+))", command_text(step))
    assert match, "create-bucket makes no s3:// bucket"
    return env[match.group(1)] if match.group(1) else match.group(2)


def test_workers_wait_for_redis_and_the_bucket(compose):
    worker = compose["services"]["worker"]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert worker["depends_on"]["create-bucket"]["condition"] == "service_completed_successfully"
    step = compose["services"]["create-bucket"]
    assert step["depends_on"]["s3"]["condition"] == "service_healthy"
    endpoint = urlsplit(service_env(step)["AWS_ENDPOINT_URL_S3"])
    assert (endpoint.hostname, endpoint.port) == ("s3", s3_port(compose))


def test_worker_builds_this_dockerfile_and_reserves_a_gpu(compose):
    worker = compose["services"]["worker"]
    build = worker["build"]
    assert (
        COMPOSE.parent / build["context"] / build.get("dockerfile", "Dockerfile")
    ).resolve() == DOCKERFILE
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    gpu = next(d for d in devices if d.get("driver") == "nvidia")
    assert "gpu" in gpu["capabilities"]
    assert gpu.get("count") == 1 or gpu.get("device_ids")


def test_one_worker_replica_per_gpu_with_its_runs_per_gpu_and_a_lasting_cuda_cache(
    compose, raw_compose
):
    worker = compose["services"]["worker"]
    # compose refuses `--scale worker=N` for a service with a fixed container name.
    assert worker["container_name"] == "ablate-worker"
    assert (
        "${ABLATE_RUNS_PER_GPU:-1}"
        in raw_compose["services"]["worker"]["environment"]["ABLATE_RUNS_PER_GPU"]
    )
    assert "cuda-cache:/var/cache/ablate/cuda" in worker["volumes"]
    assert "cuda-cache" in compose["volumes"]
    assert "--scale worker=" not in COMPOSE.read_text().split("name: ablate")[0].replace(
        "`--scale worker=N`", ""
    )


def duration_seconds(value: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"bad duration {value!r}"
    return sum(float(n) * units[u] for n, u in parts)


def test_worker_gets_time_to_shut_down_warm(compose):
    assert duration_seconds(str(compose["services"]["worker"]["stop_grace_period"])) >= 60


def test_worker_ablate_variables_are_settings_that_validate(compose, clean_env):
    env = service_env(compose["services"]["worker"])
    ablate = {k: v for k, v in env.items() if k.startswith("ABLATE_")}
    for key in ablate:
        field = key.removeprefix("ABLATE_").lower()
        assert field in Settings.model_fields, f"{key} is not a field of service.settings.Settings"
    for key, value in ablate.items():
        clean_env.setenv(key, value)
    settings = Settings()
    assert settings.redis_password.get_secret_value() == DUMMY_ENV["ABLATE_REDIS_PASSWORD"]
    assert urlsplit(settings.broker_url).hostname == "redis"
    assert settings.store.startswith("s3://")
    assert urlsplit(settings.store).netloc == bucket_created(compose)


def boto3_environment_variables() -> set[str]:
    names = {
        botocore.credentials.EnvProvider.ACCESS_KEY,
        botocore.credentials.EnvProvider.SECRET_KEY,
        *botocore.credentials.EnvProvider.TOKENS,
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
    }
    for _, env_names, _, _ in botocore.configprovider.BOTOCORE_DEFAUT_SESSION_VARIABLES.values():
        if isinstance(env_names, str):
            names.add(env_names)
        elif env_names:
            names.update(env_names)
    return names


@pytest.mark.parametrize("service", ["worker", "create-bucket"])
def test_aws_variables_are_ones_boto3_reads(compose, service, clean_env):
    env = service_env(compose["services"][service])
    aws = {k: v for k, v in env.items() if k.startswith("AWS_")}
    assert aws.keys() <= boto3_environment_variables()
    # And boto3 really resolves the endpoint, the key pair and the region from them.
    for key, value in aws.items():
        clean_env.setenv(key, value)
    session = boto3.session.Session()
    client = session.client("s3")
    endpoint = urlsplit(client.meta.endpoint_url)
    assert (endpoint.hostname, endpoint.port) == ("s3", s3_port(compose))
    credentials = session.get_credentials()
    assert (credentials.access_key, credentials.secret_key) == (
        DUMMY_ENV["AWS_ACCESS_KEY_ID"],
        DUMMY_ENV["AWS_SECRET_ACCESS_KEY"],
    )
    assert client.meta.region_name == aws["AWS_DEFAULT_REGION"]


def test_flower_watches_the_same_broker(compose):
    flower = compose["services"]["flower"]
    broker = urlsplit(service_env(flower)["CELERY_BROKER_URL"])
    assert (broker.scheme, broker.hostname, broker.password) == (
        "redis",
        "redis",
        DUMMY_ENV["ABLATE_REDIS_PASSWORD"],
    )
    worker = urlsplit(service_env(compose["services"]["worker"])["ABLATE_BROKER_URL"])
    assert (broker.port, broker.path) == (worker.port, worker.path)
    assert any(str(p).endswith(":5555") for p in flower["ports"])


def test_env_example_lists_every_variable_with_fake_secrets(raw_compose, clean_env):
    example = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            example[key.strip()] = value.strip()
    assert referenced_variables(COMPOSE.read_text()) <= example.keys()
    for secret in REQUIRED_SECRETS:
        assert "EXAMPLE" in example[secret], f"{secret}: make the placeholder obviously fake"
    # The example, filled in as is, is a configuration the worker accepts.
    worker = service_env(interpolate(raw_compose, example)["services"]["worker"])
    for key, value in worker.items():
        if key.startswith("ABLATE_"):
            clean_env.setenv(key, value)
    Settings()
