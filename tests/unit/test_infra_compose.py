"""The compose stack, checked without a Docker engine.

infra/compose.yaml wires Redis, the S3 server, the bucket step, the GPU workers and Flower with
variables the code really reads: `ABLATE_*` fields of `Settings`, and AWS variables that boto3
resolves. It refuses to start without its secrets, pins its images, and infra/.env.example lists
every variable it reads, with obviously fake secrets.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import boto3
import botocore.configprovider
import botocore.credentials
import pytest
import yaml

from service.settings import Settings
from tests.conftest import REPO

DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "infra" / "compose.yaml"
ENV_EXAMPLE = REPO / "infra" / ".env.example"

REQUIRED_SECRETS = ("ABLATE_REDIS_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# What `docker compose up` would be given: throwaway values for the variables it requires.
DUMMY_ENV = {
    "ABLATE_REDIS_PASSWORD": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "AWS_ACCESS_KEY_ID": "test-access-key-id",
    "AWS_SECRET_ACCESS_KEY": "test-secret-access-key",
}


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
