"""S3Store against a real S3 server (moto's server mode over HTTP on loopback), reached through
boto3's own endpoint resolution (AWS_ENDPOINT_URL_S3). No mocks of boto3 or of the server."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore.retries import standard

from service.errors import KeyNotFound, StoreError
from service.store import S3Store, open_store
from tests.conftest import use_s3_endpoint
from tests.s3server import S3Server, free_port

BAD_KEYS = [
    "",
    "../x",
    "a/../b",
    "/etc/passwd",
    "a//b",
    "a/./b",
    "a\x00b",
    "a\nb",
    "C:/x",
    "a\\b",
    "x" * 600,
]


def count_requests(store: S3Store) -> list[str]:
    """Record every HTTP request the store's client sends (retries included)."""
    sent: list[str] = []
    store._client.meta.events.register(
        "before-send.s3", lambda request, **_: sent.append(f"{request.method} {request.url}")
    )
    return sent


def raw_client():
    return boto3.client("s3")


# -- the behaviours of tests/unit/test_store.py -----------------------------------------------


def test_round_trip_list_delete(s3_env):
    store = S3Store(s3_env)
    store.put_json("runs/a/status.json", {"state": "running"})
    store.put_bytes("runs/a/checkpoints/epoch-0001.npz", b"123")
    store.put_bytes("runs/b/run.json", b"{}")
    assert store.get_json("runs/a/status.json") == {"state": "running"}
    assert store.get_bytes("runs/a/checkpoints/epoch-0001.npz") == b"123"
    assert store.list("runs/a/") == ["runs/a/checkpoints/epoch-0001.npz", "runs/a/status.json"]
    assert store.list("runs/") == [
        "runs/a/checkpoints/epoch-0001.npz",
        "runs/a/status.json",
        "runs/b/run.json",
    ]
    assert store.exists("runs/a/status.json")
    store.delete("runs/a/status.json")
    assert not store.exists("runs/a/status.json")
    with pytest.raises(KeyNotFound):
        store.get_bytes("runs/a/status.json")


def test_keys_live_under_the_prefix_and_locations_are_s3_uris(s3_env):
    store = S3Store(s3_env)
    bucket = s3_env.removeprefix("s3://").split("/")[0]
    store.put_json("runs/a/metrics.json", {"accuracy": 0.9})
    head = raw_client().head_object(Bucket=bucket, Key="prefix/runs/a/metrics.json")
    assert head["ContentType"] == "application/json"
    assert store.location() == f"s3://{bucket}/prefix"
    assert store.location("runs/a/metrics.json") == f"s3://{bucket}/prefix/runs/a/metrics.json"
    # Objects outside the store's prefix are not the store's.
    raw_client().put_object(Bucket=bucket, Key="other/x", Body=b"x")
    raw_client().put_object(Bucket=bucket, Key="prefixed/y", Body=b"y")
    assert store.list() == ["runs/a/metrics.json"]


def test_store_without_prefix_uses_the_bucket_root(s3_env):
    bucket_url = s3_env.removesuffix("/prefix")
    store = S3Store(bucket_url)
    store.put_bytes("top.txt", b"t")
    assert store.location("top.txt") == f"{bucket_url}/top.txt"
    assert S3Store(s3_env + "/").url == s3_env  # a trailing slash changes nothing
    assert store.list() == ["top.txt"]


def test_list_paginates_past_1000_keys(s3_env):
    store = S3Store(s3_env)
    keys = [f"runs/r{index:05d}/status.json" for index in range(1100)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda key: store.put_bytes(key, b"{}"), keys))
    store.put_bytes("studies/s/study.json", b"{}")
    sent = count_requests(store)
    assert store.list("runs/") == keys
    assert len(sent) == 2  # two pages of list_objects_v2
    assert len(store.list()) == 1101
    assert store.list("runs/r010") == [f"runs/r{i:05d}/status.json" for i in range(1000, 1100)]


def test_delete_of_an_absent_key_is_fine(s3_env):
    store = S3Store(s3_env)
    store.delete("never/written")
    store.put_bytes("k", b"1")
    store.delete("k")
    store.delete("k")
    assert store.list() == []


def test_missing_key_raises_key_not_found_naming_the_uri(s3_env, tmp_path):
    store = S3Store(s3_env)
    store.put_bytes("present", b"1")  # the bucket exists: a 404 is about the key
    with pytest.raises(KeyNotFound, match=f"{s3_env}/runs/x/metrics.json does not exist"):
        store.get_bytes("runs/x/metrics.json")
    with pytest.raises(KeyNotFound):
        store.get_json("runs/x/metrics.json")
    target = tmp_path / "model.keras"
    target.write_bytes(b"old")
    with pytest.raises(KeyNotFound, match="runs/x/model.keras"):
        store.get_file("runs/x/model.keras", target)
    assert target.read_bytes() == b"old"  # the failed download touched nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]
    assert not store.exists("runs/x/metrics.json")


def test_invalid_json_is_a_store_error(s3_env):
    store = S3Store(s3_env)
    store.put_bytes("bad.json", b"{not json")
    with pytest.raises(StoreError, match="bad.json is not valid JSON"):
        store.get_json("bad.json")


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_refused_before_any_request(key, monkeypatch):
    # Nothing listens on this port: any request would fail only after botocore's retries.
    use_s3_endpoint(monkeypatch, f"http://127.0.0.1:{free_port()}")
    store = open_store("s3://some-bucket/prefix")
    sent = count_requests(store)
    started = time.monotonic()
    operations = [
        lambda: store.get_bytes(key),
        lambda: store.put_bytes(key, b"x"),
        lambda: store.put_json(key, {}),
        lambda: store.exists(key),
        lambda: store.delete(key),
        lambda: store.get_file(key, os.devnull),
        lambda: store.put_file(key, __file__),
        lambda: store.list("../"),
    ]
    if key:  # location("") is the store itself
        operations.append(lambda: store.location(key))
    for operation in operations:
        with pytest.raises(StoreError, match="invalid store key") as caught:
            operation()
        assert not isinstance(caught.value, KeyNotFound)
    assert sent == []
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("s3://", "no bucket name"),
        ("s3:///prefix", "no bucket name"),
        ("s3://ab/x", "breaks S3's rules"),
        ("s3://My_Bucket/x", "breaks S3's rules"),
        ("s3://-bucket/x", "breaks S3's rules"),
        ("s3://192.168.0.1/x", "breaks S3's rules"),
        ("s3://" + "b" * 64, "breaks S3's rules"),
        ("s3://bucket/../x", "bad prefix"),
        ("s3://bucket/a//b", "bad prefix"),
    ],
)
def test_bad_store_urls_are_refused_without_network(url, problem, monkeypatch):
    use_s3_endpoint(monkeypatch, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StoreError, match=problem):
        open_store(url)


def test_open_store_is_cheap_and_uses_boto3_endpoint_resolution(s3_server, monkeypatch):
    use_s3_endpoint(monkeypatch, s3_server)
    store = open_store("s3://not-created-yet/p")  # no request: the bucket is not looked up
    assert isinstance(store, S3Store)
    assert store.endpoint == s3_server
    assert store._client.meta.config.s3 == {"addressing_style": "path"}
    # Without a configured endpoint boto3 picks AWS and its own addressing style.
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    aws = open_store("s3://not-created-yet/p")
    assert "amazonaws.com" in aws.endpoint
    assert aws._client.meta.config.s3 is None
    # The global variable works too.
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    assert open_store("s3://not-created-yet/p").endpoint == s3_server


# -- large files --------------------------------------------------------------------------------


def test_large_file_goes_multipart_and_round_trips(s3_env, tmp_path):
    store = S3Store(s3_env)
    bucket = s3_env.removeprefix("s3://").split("/")[0]
    source = tmp_path / "big.bin"
    data = os.urandom(70 * 1024 * 1024)
    source.write_bytes(data)
    store.put_file("runs/a/model.keras", source, "application/octet-stream")
    head = raw_client().head_object(Bucket=bucket, Key="prefix/runs/a/model.keras")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-5")  # 4 parts of 16 MiB + 6 MiB
    target_dir = tmp_path / "out"
    target_dir.mkdir()
    store.get_file("runs/a/model.keras", target_dir / "model.keras")
    assert [p.name for p in target_dir.iterdir()] == ["model.keras"]  # no temporary files left
    got = (target_dir / "model.keras").read_bytes()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


def test_small_file_is_a_single_put(s3_env, tmp_path):
    store = S3Store(s3_env)
    bucket = s3_env.removeprefix("s3://").split("/")[0]
    (tmp_path / "small").write_bytes(b"abc")
    store.put_file("small", tmp_path / "small")
    head = raw_client().head_object(Bucket=bucket, Key="prefix/small")
    assert "-" not in head["ETag"]
    assert head["ETag"].strip('"') == hashlib.md5(b"abc").hexdigest()
    store.get_file("small", tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == b"abc"


# -- errors a user can act on, fast -------------------------------------------------------------


def test_missing_bucket_fails_fast_with_a_clear_error(s3_env, tmp_path):
    store = S3Store("s3://ablate-no-such-bucket/prefix")
    sent = count_requests(store)
    (tmp_path / "f").write_bytes(b"x")
    operations = {
        "check": store.check,
        "get_bytes": lambda: store.get_bytes("k"),
        "put_bytes": lambda: store.put_bytes("k", b"x"),
        "exists": lambda: store.exists("k"),
        "list": store.list,
        "delete": lambda: store.delete("k"),
        "put_file": lambda: store.put_file("k", tmp_path / "f"),
        "get_file": lambda: store.get_file("k", tmp_path / "g"),
    }
    for name, operation in operations.items():
        started = time.monotonic()
        with pytest.raises(StoreError) as caught:
            operation()
        elapsed = time.monotonic() - started
        assert not isinstance(caught.value, KeyNotFound), name
        assert "s3://ablate-no-such-bucket: bucket does not exist" in str(caught.value), name
        assert "create it" in str(caught.value)
        assert elapsed < 1.0, (name, elapsed)
    # 4xx answers are not retried: one request per operation, two where a HEAD's 404 had to be
    # told apart from a missing key (exists, get_file).
    assert len(sent) <= len(operations) + 2, sent
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_check_passes_on_a_good_bucket(s3_env):
    S3Store(s3_env).check()


@pytest.fixture
def auth_server(monkeypatch):
    """A moto server of our own with IAM authentication on, an IAM user with an access key
    (and no permissions) and a bucket."""
    with S3Server() as server:
        use_s3_endpoint(monkeypatch, server.endpoint)
        boto3.client("s3").create_bucket(Bucket="guarded")
        iam = boto3.client("iam", endpoint_url=server.endpoint)
        iam.create_user(UserName="reader")
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        server.enable_auth()
        yield server, key["AccessKeyId"], key["SecretAccessKey"]


def test_wrong_credentials_and_missing_permissions_are_clear_errors(auth_server, monkeypatch):
    server, key_id, secret = auth_server
    cases = [
        ("AKIAUNKNOWNKEY000000", "whatever", "access key id is not known"),
        (key_id, "wrong-secret", "secret key is wrong"),
        (key_id, secret, "access denied"),  # a valid user without any S3 permission
    ]
    for bad_id, bad_secret, message in cases:
        use_s3_endpoint(monkeypatch, server.endpoint, bad_id, bad_secret)
        store = S3Store("s3://guarded/p")
        for operation in (store.check, lambda s=store: s.get_bytes("k"), store.list):
            started = time.monotonic()
            with pytest.raises(StoreError, match=message) as caught:
                operation()
            assert "s3://guarded" in str(caught.value)
            assert time.monotonic() - started < 1.0


def test_misconfiguration_is_a_clear_store_error(s3_server, monkeypatch):
    use_s3_endpoint(monkeypatch, "localhost:9000")  # no scheme
    with pytest.raises(StoreError, match="AWS_ENDPOINT_URL_S3"):
        open_store("s3://bucket/p")
    use_s3_endpoint(monkeypatch, s3_server)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StoreError, match="no usable AWS credentials"):
        open_store("s3://bucket/p").check()


def test_unreachable_endpoint_is_retried_then_named(monkeypatch):
    # Real connection refusals; only botocore's backoff sleeps are cut to zero to keep it quick.
    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, context: 0)
    endpoint = f"http://127.0.0.1:{free_port()}"
    use_s3_endpoint(monkeypatch, endpoint)
    store = S3Store("s3://some-bucket/p", outage_seconds=0)
    sent = count_requests(store)
    with pytest.raises(StoreError, match=f"cannot reach the S3 endpoint {endpoint}"):
        store.get_bytes("k")
    assert len(sent) == 9  # the first attempt and 8 retries (botocore counts retries)


def test_s3_server_helper_stops_and_starts_on_the_same_port(monkeypatch):
    # What an outage test relies on: the server goes away and comes back on the same endpoint,
    # empty (moto keeps its state in memory), and the same S3Store works again afterwards.
    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, context: 0)
    with S3Server() as server:
        use_s3_endpoint(monkeypatch, server.endpoint)
        raw_client().create_bucket(Bucket="outage")
        store = S3Store("s3://outage/p", outage_seconds=0)
        store.put_bytes("k", b"before")
        server.stop()
        assert not server.running
        with pytest.raises(StoreError, match=f"cannot reach the S3 endpoint {server.endpoint}"):
            store.get_bytes("k")
        server.start()
        with pytest.raises(StoreError, match="bucket does not exist"):
            store.get_bytes("k")
        raw_client().create_bucket(Bucket="outage")
        store.put_bytes("k", b"after")
        assert store.get_bytes("k") == b"after"
    assert not server.running


# -- LocalStore and S3Store behave the same ------------------------------------------------------


def scenario(store) -> list:
    """A small session with a store; returns what it observed, to compare across stores."""
    seen: list = []
    store.put_json("runs/r1/status.json", {"state": "queued"})
    store.put_bytes("runs/r1/checkpoints/epoch-0001.npz", b"\x00\x01")
    store.put_bytes("runs/r2/run.json", b'{"seed": 1}')
    store.put_json("studies/s-1/study.json", {"runs": ["r1", "r2"]})
    store.put_bytes("runs/r1/status.json", b'{"state": "running"}')  # overwrite
    seen.append(store.list())
    seen.append(store.list("runs/"))
    seen.append(store.list("runs/r1/"))
    seen.append(store.list("nothing/"))
    seen.append(store.get_json("runs/r1/status.json"))
    seen.append(store.get_bytes("runs/r1/checkpoints/epoch-0001.npz"))
    seen.append([store.exists("runs/r2/run.json"), store.exists("runs/r3/run.json")])
    store.delete("runs/r2/run.json")
    store.delete("runs/r2/run.json")
    seen.append(store.list("runs/"))
    for action in (
        lambda: store.get_bytes("runs/r2/run.json"),
        lambda: store.get_json("runs/r9/metrics.json"),
        lambda: store.put_bytes("runs/../escape", b"x"),
        lambda: store.get_bytes("/etc/passwd"),
        lambda: store.list("../"),
    ):
        try:
            action()
            seen.append("no error")
        except StoreError as exc:
            seen.append(type(exc).__name__)
    return seen


EXPECTED = [
    [
        "runs/r1/checkpoints/epoch-0001.npz",
        "runs/r1/status.json",
        "runs/r2/run.json",
        "studies/s-1/study.json",
    ],
    ["runs/r1/checkpoints/epoch-0001.npz", "runs/r1/status.json", "runs/r2/run.json"],
    ["runs/r1/checkpoints/epoch-0001.npz", "runs/r1/status.json"],
    [],
    {"state": "running"},
    b"\x00\x01",
    [True, False],
    ["runs/r1/checkpoints/epoch-0001.npz", "runs/r1/status.json"],
    *["KeyNotFound", "KeyNotFound", "StoreError", "StoreError", "StoreError"],
]


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_local_and_s3_stores_behave_the_same(kind, request, tmp_path):
    store = open_store(tmp_path / "store" if kind == "local" else request.getfixturevalue("s3_env"))
    assert scenario(store) == EXPECTED


def test_operations_outlast_a_ten_second_outage(s3_server, monkeypatch):
    from tests.tcp_proxy import TcpProxy

    host, port = s3_server.removeprefix("http://").split(":")
    proxy = TcpProxy(host, int(port))
    proxy.up()
    use_s3_endpoint(monkeypatch, proxy.endpoint)
    raw_client().create_bucket(Bucket="outlast")
    store = S3Store("s3://outlast/p", outage_seconds=60)
    store.put_bytes("before", b"1")
    proxy.down()
    timer = threading.Timer(10.0, proxy.up)
    timer.start()
    started = time.monotonic()
    try:
        store.put_bytes("during", b"2")  # refused for ~10 s, then goes through
    finally:
        timer.join()
    assert time.monotonic() - started >= 9.5
    assert store.get_bytes("during") == b"2"
    proxy.down()
