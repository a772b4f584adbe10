"""Security of the distributed path with real components: a study runs against a TLS-only
redis-server (a self-signed CA and server certificate this module generates) that requires a
password, with artifacts in a real S3 server (moto over HTTP). Then every artifact in the bucket,
every worker log line, Redis's own files and the output of the CLI are scanned for the secrets
(Redis password, AWS secret key and key id), which must appear nowhere."""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest
import redis
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from service.client import AblationClient, BrokerError
from service.control import redis_client
from service.queue import make_celery
from service.settings import Settings, get_settings
from tests.cluster import Workers
from tests.conftest import REPO, TINY, use_s3_endpoint
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow

SPEC = {
    **TINY,
    "name": "secure",
    "training": {"epochs": 2, "batch_size": 64},
    "ablation": {"seeds": 2},
}


# --- certificates -------------------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def make_certificates(directory: Path) -> dict[str, str]:
    """A self-signed CA and a server certificate it signs for 127.0.0.1 and localhost."""
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = {
        "not_valid_before": now - datetime.timedelta(minutes=5),
        "not_valid_after": now + datetime.timedelta(days=1),
    }

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder(**valid)
        .subject_name(_name("ablate test CA"))
        .issuer_name(_name("ablate test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder(**valid)
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    directory.mkdir(parents=True, exist_ok=True)
    paths = {name: directory / f"{name}.pem" for name in ("ca", "cert", "key")}
    paths["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(server_key, paths["key"])
    return {name: str(path) for name, path in paths.items()}


# --- the cluster --------------------------------------------------------------------------------


class DebugWorkers(Workers):
    """Workers whose Celery logging is at debug too (`ablate worker -l debug`), so the scan
    covers Celery's and kombu's most verbose output as well as ours (ABLATE_LOG_LEVEL=debug)."""

    def command(self, name: str) -> list[str]:
        return [*super().command(name), "-l", "debug"]


@pytest.fixture(scope="module")
def secure(s3_server, tmp_path_factory):
    """A TLS + password redis-server, S3 with known credentials, a bucket, and two workers."""
    root = tmp_path_factory.mktemp("secure")
    tls = make_certificates(root / "certs")
    secrets = {
        "redis password": f"rds-{uuid.uuid4().hex}",
        "aws secret key": f"aws-secret-{uuid.uuid4().hex}",
        "aws key id": f"AKIA{uuid.uuid4().hex[:16].upper()}",
    }
    server = RedisServer(root / "redis", password=secrets["redis password"], tls=tls).start()
    try:
        with pytest.MonkeyPatch.context() as monkeypatch:
            use_s3_endpoint(
                monkeypatch,
                s3_server,
                key_id=secrets["aws key id"],
                secret=secrets["aws secret key"],
            )
            bucket = f"ablate-sec-{uuid.uuid4().hex[:12]}"
            boto3.client("s3").create_bucket(Bucket=bucket)
            env = {
                "ABLATE_BROKER_URL": f"rediss://127.0.0.1:{server.port}/0",
                "ABLATE_REDIS_PASSWORD": secrets["redis password"],
                "ABLATE_BROKER_CA_CERTS": tls["ca"],
                "ABLATE_BROKER_CERT_REQS": "required",
                "ABLATE_STORE": f"s3://{bucket}/p",
                "ABLATE_QUEUE": f"sec-{uuid.uuid4().hex[:10]}",
                "ABLATE_LOG_LEVEL": "debug",
                "ABLATE_DATASET_CACHE": str(root / "cache"),
                "TF_CPP_MIN_LOG_LEVEL": "2",
            }
            for name, value in env.items():
                monkeypatch.setenv(name, value)
            get_settings.cache_clear()
            workers = DebugWorkers(dict(os.environ), tmp_path_factory.mktemp("logs"))
            try:
                workers.wait_ready()
                yield {
                    "server": server,
                    "secrets": secrets,
                    "bucket": bucket,
                    "env": env,
                    "workers": workers,
                    "root": root,
                }
            finally:
                workers.stop()
                get_settings.cache_clear()
    finally:
        server.stop()


def ablate(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`ablate ARGS` as a subprocess with the module's environment (os.environ, patched)."""
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        timeout=timeout,
    )


def leaks(data: bytes, secrets: dict[str, str]) -> list[str]:
    return [name for name, value in secrets.items() if value.encode() in data]


# --- tests --------------------------------------------------------------------------------------


def test_study_over_tls_with_a_password_leaks_no_secret(secure, tmp_path):
    secrets = secure["secrets"]
    port = secure["server"].port
    client = AblationClient()  # everything from the settings: rediss://, password, CA
    assert (
        client.settings.broker_url.startswith("rediss://")
        and client.settings.redis_password is not None
    )
    started = time.monotonic()
    study = client.submit(SPEC)
    assert study.submit_report.queued == 2
    final = study.wait(timeout=240, poll_seconds=0.5)
    assert final.complete and final.counts["succeeded"] == 2, final
    trained = time.monotonic() - started

    # the CLI, with the same environment
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC))
    outputs = {
        "ablate status": ablate("status", study.study_id),
        "ablate results --format json": ablate("results", study.study_id, "--format", "json"),
        "ablate results": ablate("results", study.study_id),
        "ablate submit (resubmit)": ablate("submit", str(spec_path)),
        "ablate report": ablate("report", study.study_id),
        "ablate worker --help": ablate("worker", "--help"),
    }
    for name, result in outputs.items():
        assert result.returncode == 0, f"{name}: {result.stderr.decode()[-2000:]}"
    assert b"0 runs queued" in outputs["ablate submit (resubmit)"].stdout
    assert study.study_id.encode() in outputs["ablate results --format json"].stdout

    # every object in the bucket: study and run documents, statuses, metrics, model.keras,
    # checkpoints, the report
    s3 = boto3.client("s3")
    keys = [
        obj["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=secure["bucket"])
        for obj in page.get("Contents", [])
    ]
    names = {key.rsplit("/", 1)[-1] for key in keys}
    assert {
        "study.json",
        "run.json",
        "status.json",
        "metrics.json",
        "model.keras",
        "index.html",
    } <= names, sorted(names)
    assert any("/checkpoints/" in key for key in keys), keys
    found: dict[str, list[str]] = {}
    for key in keys:
        data = s3.get_object(Bucket=secure["bucket"], Key=key)["Body"].read()
        if hit := leaks(data, secrets):
            found[f"s3://{secure['bucket']}/{key}"] = hit

    # every worker log line, the CLI's output, and Redis's own files (AOF: the queued messages)
    logs = secure["workers"].text()
    for number, line in enumerate(logs.splitlines(), start=1):
        if hit := leaks(line.encode(), secrets):
            found[f"worker log line {number}: {line[:300]}"] = hit
    for name, result in outputs.items():
        for stream in ("stdout", "stderr"):
            if hit := leaks(getattr(result, stream), secrets):
                found[f"{name} {stream}"] = hit
    for path in (secure["root"] / "redis").rglob("*"):
        if path.is_file() and (hit := leaks(path.read_bytes(), secrets)):
            found[str(path)] = hit
    assert not found, found

    # the scan saw real content: Celery's debug logs, of the parents and the pool processes, and
    # the runs' own events
    assert "DEBUG/MainProcess]" in logs and "DEBUG/ForkPoolWorker" in logs
    assert logs.count('"run started"') >= 2 and '"run finished"' in logs

    # the broker URL is printed with the password masked, by `ablate worker` and Celery's banner
    assert (
        f"worker on rediss://:***@127.0.0.1:{port}/0 queue {secure['env']['ABLATE_QUEUE']}" in logs
    ), logs[:3000]
    assert f"rediss://:**@127.0.0.1:{port}/0" in logs, logs[:3000]
    assert len(keys) > 10
    print(
        f"study trained in {trained:.1f}s; scanned {len(keys)} objects, {len(logs.splitlines())} log lines"
    )


def test_certificate_checks_are_real(secure, tmp_path):
    env = secure["env"]
    port = secure["server"].port
    trusted = Settings(**{**get_settings().model_dump()})
    assert redis_client(trusted).ping()

    # required, without the CA: the system CAs do not know the self-signed one
    untrusted = Settings(**{**trusted.model_dump(), "broker_ca_certs": None})
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError, match="certificate verify failed") as raised:
        redis_client(untrusted).ping()
    assert time.monotonic() - started < 10
    assert secure["secrets"]["redis password"] not in str(raised.value)

    # the client's submit fails the same way, quickly, before anything is queued
    client = AblationClient(settings=untrusted)
    started = time.monotonic()
    with pytest.raises(BrokerError, match="certificate verify failed"):
        client.submit(
            {**SPEC, "name": "untrusted", "ablation": {"seeds": [4242]}}
        )  # a run not stored yet
    assert time.monotonic() - started < 15

    # a fresh process (as `ablate submit` is): Celery's own connection (kombu) verifies the
    # certificate too, and sending a task fails quickly rather than retrying forever
    without_ca = {k: v for k, v in os.environ.items() if k != "ABLATE_BROKER_CA_CERTS"}
    script = (
        "from service.queue import make_celery; from service.settings import get_settings; "
        f"make_celery(get_settings()).send_task('ablate.train_run', kwargs={{}}, queue='never-{uuid.uuid4().hex[:8]}')"
    )
    started = time.monotonic()
    sent = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=without_ca,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sent.returncode != 0 and "certificate verify failed" in sent.stderr, sent.stderr[-2000:]
    assert time.monotonic() - started < 20
    assert not leaks(sent.stderr.encode() + sent.stdout.encode(), secure["secrets"])

    # `ablate submit` without the CA: an error, quickly, that names the cause and no secret
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(
        yaml.safe_dump({**SPEC, "name": "untrusted cli", "ablation": {"seeds": [4343]}})
    )
    started = time.monotonic()
    submitted = subprocess.run(
        [sys.executable, "-m", "service.cli", "submit", str(spec_path)],
        cwd=REPO,
        env=without_ca,
        capture_output=True,
        timeout=60,
    )
    assert submitted.returncode == 2 and b"certificate verify failed" in submitted.stderr, (
        submitted.stderr[-2000:]
    )
    assert b"Traceback" not in submitted.stderr
    assert time.monotonic() - started < 20
    assert not leaks(submitted.stderr + submitted.stdout, secure["secrets"])

    # a fresh kombu connection in this process too
    connection = make_celery(untrusted).connection_for_write()
    started = time.monotonic()
    try:
        with pytest.raises(Exception, match="certificate verify failed") as raised:
            connection.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0, timeout=5
            )
    finally:
        connection.release()
    assert time.monotonic() - started < 15
    assert secure["secrets"]["redis password"] not in str(raised.value)

    # "none" skips the check: shows the failure above came from the verification
    assert redis_client(Settings(**{**untrusted.model_dump(), "broker_cert_reqs": "none"})).ping()

    # the password is required and checked
    wrong = f"wrong-{uuid.uuid4().hex}"
    with pytest.raises(redis.AuthenticationError) as raised:
        redis_client(Settings(**{**trusted.model_dump(), "redis_password": wrong})).ping()
    assert wrong not in str(raised.value)
    with pytest.raises(redis.AuthenticationError):
        redis_client(Settings(**{**trusted.model_dump(), "redis_password": None})).ping()
    assert env["ABLATE_BROKER_URL"] == f"rediss://127.0.0.1:{port}/0"


def test_tls_settings_are_not_shared_between_apps_of_one_process(secure):
    """A client that does not trust the server's certificate must not send through a connection
    that a trusting client of the same process opened before."""
    trusted = Settings(**get_settings().model_dump())
    untrusted = Settings(**{**trusted.model_dump(), "broker_ca_certs": None})
    queue = f"never-{uuid.uuid4().hex[:8]}"
    make_celery(trusted).send_task("ablate.train_run", kwargs={}, queue=queue)
    try:
        with pytest.raises(Exception, match="certificate verify failed"):
            make_celery(untrusted).send_task("ablate.train_run", kwargs={}, queue=queue)
    finally:
        redis_client(trusted).delete(queue)
