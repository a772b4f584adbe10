"""`S3Store`: the artifact store in an S3 bucket (AWS, MinIO, Ceph, ...), through boto3.

URL form: `s3://bucket` or `s3://bucket/prefix`; key `k` is stored as object `prefix/k`.

Where to connect and as whom comes only from boto3's own configuration: the endpoint from
`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` (or a `services` section of ~/.aws/config), which boto3
resolves itself; credentials from boto3's standard chain (environment, profile, SSO, instance role).
When an endpoint is configured (a MinIO-style server), path-style addressing is used.

Every key and the URL itself are validated before any network I/O. Errors the user can act on
(missing bucket, access denied, unknown access key, wrong secret, unreachable endpoint) become a
`StoreError` that names the bucket and suggests the fix; 4xx answers are never retried, transient
errors and connection failures are retried by botocore's "standard" retry mode.
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
import time
from pathlib import Path

import boto3
import boto3.exceptions
import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.configprovider import ConfiguredEndpointProvider

from service.errors import KeyNotFound, StoreError, StoreUnavailable
from service.logs import redact_url, redact_urls
from service.settings import Settings
from service.store.base import Store, validate_key, validate_prefix

MiB = 1024 * 1024
MULTIPART_THRESHOLD = 64 * MiB
MULTIPART_CHUNKSIZE = 16 * MiB
DEFAULT_OUTAGE_SECONDS: float = Settings.model_fields["store_outage_seconds"].default
"""ABLATE_STORE_OUTAGE_SECONDS's default; the caller passes the operator's value."""

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_ACCESS_DENIED = {"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "AccountProblem"}
_CONNECTION_ERRORS = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.ProxyConnectionError,
    botocore.exceptions.SSLError,
)


def _is_local_error(exc: Exception) -> bool:
    """An error of the local filesystem, as opposed to botocore's network errors (some of which
    also derive from OSError through requests/urllib3)."""
    return isinstance(exc, OSError | ValueError) and not isinstance(
        exc, botocore.exceptions.BotoCoreError
    )


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/prefix` -> (bucket, prefix); the prefix has no leading or trailing '/'.

    Raises `StoreError` naming the problem; touches no network."""
    text = str(url)
    if not text.startswith("s3://"):
        raise StoreError(f"invalid S3 store URL {text!r}: must start with s3://")
    bucket, _, prefix = text.removeprefix("s3://").partition("/")
    if not bucket:
        raise StoreError(f"invalid S3 store URL {text!r}: no bucket name (use s3://bucket/prefix)")
    if not _BUCKET.match(bucket) or ".." in bucket or _IPV4.match(bucket):
        raise StoreError(
            f"invalid S3 store URL {text!r}: bucket name {bucket!r} breaks S3's rules "
            "(3-63 characters: lowercase letters, digits, '.' and '-', starting and ending "
            "with a letter or digit, not an IP address)"
        )
    prefix = prefix.strip("/")
    if prefix:
        try:
            validate_key(prefix)
        except StoreError as exc:
            raise StoreError(f"invalid S3 store URL {text!r}: bad prefix: {exc}") from None
    return bucket, prefix


def _configured_endpoint(session: boto3.session.Session) -> str | None:
    """The endpoint URL boto3 will use from its configuration (env or config file), if any.

    Only consulted to decide the addressing style: the endpoint itself is resolved by boto3."""
    core = session._session  # botocore session: the same inputs boto3's client creation reads
    if core.get_config_variable("ignore_configured_endpoint_urls"):
        return None
    provider = ConfiguredEndpointProvider(
        full_config=core.full_config, scoped_config=core.get_scoped_config(), client_name="s3"
    )
    return provider.provide()


def _outlasting_outages(method):
    """Retry an operation while the endpoint is unreachable (after botocore's own retries, which
    cover a few seconds), for up to `outage_seconds`: a store restart does not fail a run."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        deadline = time.monotonic() + self.outage_seconds
        delay = 1.0
        while True:
            try:
                return method(self, *args, **kwargs)
            except StoreUnavailable:
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    return wrapper


class S3Store(Store):
    """Objects under `s3://bucket/prefix/`. Each PUT (and each completed multipart upload) is
    atomic in S3, so readers see the old or the new object, never half of one."""

    def __init__(
        self,
        url: str,
        *,
        session: boto3.session.Session | None = None,
        outage_seconds: float = DEFAULT_OUTAGE_SECONDS,
    ) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.outage_seconds = outage_seconds
        self.url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        try:
            session = session or boto3.session.Session()
            endpoint = _configured_endpoint(session)
            options: dict = {
                "retries": {"mode": "standard", "max_attempts": 8},
                "connect_timeout": 5,
                "read_timeout": 60,
                "request_checksum_calculation": "when_required",
                "response_checksum_validation": "when_required",
            }
            if endpoint:
                options["s3"] = {"addressing_style": "path"}
            self._client = session.client("s3", config=Config(**options))
        except (botocore.exceptions.BotoCoreError, ValueError) as exc:
            # e.g. AWS_PROFILE names no profile, or AWS_ENDPOINT_URL_S3 is not a URL
            raise StoreError(
                f"{self.url}: cannot configure the S3 client: {redact_urls(str(exc))} "
                "(check AWS_PROFILE, AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, AWS_DEFAULT_REGION)"
            ) from None
        # Only for messages: an endpoint URL may carry credentials (http://user:secret@host).
        self.endpoint: str = redact_url(self._client.meta.endpoint_url)
        self._transfer = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNKSIZE
        )
        self._bucket_seen = False  # set once any call proved that the bucket exists

    # -- keys and locations -------------------------------------------------------------------

    def _object_key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _base(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    def location(self, key: str = "") -> str:
        if not key:
            return self.url
        return f"s3://{self.bucket}/{self._object_key(key)}"

    # -- health -------------------------------------------------------------------------------

    def check(self) -> None:
        """One cheap request (HeadBucket): raise a clear `StoreError` when the bucket is missing,
        access is denied, the credentials are wrong or the endpoint cannot be reached."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403:
                # A HEAD answer has no body, so a 403 does not say whether the key id is unknown,
                # the secret wrong or the permission missing: ask once more with a GET.
                self._explain_forbidden()
            raise self._error(exc, "HeadBucket", bucket_request=True) from None
        except Exception as exc:
            raise self._error(exc, "HeadBucket", bucket_request=True) from None
        self._bucket_seen = True

    def _explain_forbidden(self) -> None:
        try:
            self._client.list_objects_v2(Bucket=self.bucket, Prefix=self._base(), MaxKeys=1)
        except Exception as exc:
            raise self._error(exc, "ListObjectsV2", bucket_request=True) from None

    # -- objects ------------------------------------------------------------------------------

    @_outlasting_outages
    def get_bytes(self, key: str) -> bytes:
        name = self._object_key(key)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=name)
            data = response["Body"].read()
        except Exception as exc:
            raise self._error(exc, "GetObject", key) from None
        self._bucket_seen = True
        return data

    @_outlasting_outages
    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        name = self._object_key(key)
        extra = {"ContentType": content_type} if content_type else {}
        try:
            self._client.put_object(Bucket=self.bucket, Key=name, Body=data, **extra)
        except Exception as exc:
            raise self._error(exc, "PutObject", key) from None
        self._bucket_seen = True

    @_outlasting_outages
    def put_file(self, key: str, path: str | Path, content_type: str | None = None) -> None:
        """Upload a file; above 64 MiB it goes as a multipart upload in 16 MiB parts."""
        name = self._object_key(key)
        extra = {"ContentType": content_type} if content_type else None
        try:
            self._client.upload_file(
                os.fspath(path), self.bucket, name, ExtraArgs=extra, Config=self._transfer
            )
        except boto3.exceptions.S3UploadFailedError as exc:
            # boto3 wraps the ClientError in a string; the original is the implicit context.
            cause = exc.__context__ if isinstance(exc.__context__, Exception) else exc
            raise self._error(cause, "PutObject", key) from None
        except Exception as exc:
            if _is_local_error(exc):
                raise  # the local file is missing or unreadable: not the store's fault
            raise self._error(exc, "PutObject", key) from None
        self._bucket_seen = True

    @_outlasting_outages
    def get_file(self, key: str, path: str | Path) -> None:
        """Download to a temporary file next to `path`, then rename it into place."""
        name = self._object_key(key)
        target = Path(path)
        handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(handle)
        try:
            try:
                self._client.download_file(self.bucket, name, tmp, Config=self._transfer)
            except boto3.exceptions.RetriesExceededError as exc:
                raise self._error(exc.last_exception, "GetObject", key) from None
            except Exception as exc:
                if _is_local_error(exc):
                    raise  # e.g. the disk is full: not the store's fault
                raise self._error(exc, "GetObject", key) from None
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._bucket_seen = True

    @_outlasting_outages
    def exists(self, key: str) -> bool:
        name = self._object_key(key)
        try:
            self._client.head_object(Bucket=self.bucket, Key=name)
        except Exception as exc:
            error = self._error(exc, "HeadObject", key)
            if isinstance(error, KeyNotFound):
                return False
            raise error from None
        self._bucket_seen = True
        return True

    @_outlasting_outages
    def list(self, prefix: str = "") -> list[str]:
        """Keys starting with `prefix` (plain string prefix, as in S3), sorted, relative to the
        store's prefix. Paginates, so any number of keys is returned."""
        validate_prefix(prefix)
        base = self._base()
        keys: list[str] = []
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=base + prefix):
                keys.extend(item["Key"][len(base) :] for item in page.get("Contents", ()))
        except Exception as exc:
            raise self._error(exc, "ListObjectsV2", bucket_request=True) from None
        self._bucket_seen = True
        return sorted(keys)

    @_outlasting_outages
    def delete(self, key: str) -> None:
        name = self._object_key(key)
        try:
            self._client.delete_object(Bucket=self.bucket, Key=name)
        except Exception as exc:
            error = self._error(exc, "DeleteObject", key)
            if not isinstance(error, KeyNotFound):
                raise error from None
        self._bucket_seen = True

    @_outlasting_outages
    def head(self, key: str) -> tuple[str, int]:
        """(ETag without its quotes, size in bytes) of the object, without downloading it."""
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=self._object_key(key))
        except Exception as exc:
            raise self._error(exc, "HeadObject", key) from None
        self._bucket_seen = True
        return str(head["ETag"]).strip('"'), int(head.get("ContentLength", 0))

    # -- errors -------------------------------------------------------------------------------

    def _error(
        self, exc: Exception, operation: str, key: str | None = None, *, bucket_request=False
    ) -> StoreError:
        """Translate a boto3/botocore exception into a `StoreError` a user can act on, with
        every URL in it redacted (botocore's messages quote the endpoint URL as configured)."""
        error = self._translate(exc, operation, key, bucket_request=bucket_request)
        cleaned = redact_urls(str(error))
        if cleaned != str(error):
            error.args = (cleaned,)
        return error

    def _translate(
        self, exc: Exception, operation: str, key: str | None = None, *, bucket_request=False
    ) -> StoreError:
        where = f"s3://{self.bucket}"
        uri = self.location(key) if key else self.url
        if isinstance(exc, StoreError):
            return exc
        if isinstance(exc, botocore.exceptions.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            message = error.get("Message") or ""
            if code == "NoSuchBucket" or (bucket_request and code in _NOT_FOUND):
                return StoreError(
                    f"{where}: bucket does not exist at {self.endpoint} "
                    "(create it, or check ABLATE_STORE)"
                )
            if code in _NOT_FOUND:
                # A HEAD answers 404 with no body for a missing bucket as well as a missing key:
                # tell them apart once, with one HeadBucket, until the bucket has been seen.
                if not self._bucket_seen and code != "NoSuchKey":
                    self.check()
                return KeyNotFound(f"{uri} does not exist")
            if code == "InvalidAccessKeyId":
                return StoreError(
                    f"{where}: the AWS access key id is not known to {self.endpoint} "
                    "(check AWS_ACCESS_KEY_ID / AWS_PROFILE and the endpoint)"
                )
            if code == "SignatureDoesNotMatch":
                return StoreError(
                    f"{where}: the request signature does not match: the secret key is wrong for "
                    "this access key id (check AWS_SECRET_ACCESS_KEY / AWS_PROFILE)"
                )
            if code in ("ExpiredToken", "InvalidToken", "TokenRefreshRequired"):
                return StoreError(
                    f"{where}: the AWS session token is invalid or expired "
                    "(refresh the credentials, e.g. `aws sso login`, or check AWS_SESSION_TOKEN)"
                )
            if code in _ACCESS_DENIED or status == 403:
                return StoreError(
                    f"{where}: access denied for {operation} on {uri} "
                    "(the credentials lack permission: grant s3:GetObject, s3:PutObject, "
                    "s3:DeleteObject and s3:ListBucket on the bucket, or check AWS_PROFILE)"
                )
            if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "301"):
                return StoreError(
                    f"{where}: the bucket is in another region "
                    "(set AWS_DEFAULT_REGION to the bucket's region)"
                )
            failure = StoreUnavailable if isinstance(status, int) and status >= 500 else StoreError
            return failure(
                f"{uri}: S3 {operation} failed at {self.endpoint}: {code or status} {message}".rstrip()
            )
        if isinstance(
            exc,
            botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError,
        ):
            return StoreError(
                f"{where}: no usable AWS credentials ({exc}); set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with an instance/pod role"
            )
        if isinstance(exc, _CONNECTION_ERRORS):
            return StoreUnavailable(
                f"{where}: cannot reach the S3 endpoint {self.endpoint} for {operation} on {uri} "
                f"after retrying ({exc}); check that the server is up and AWS_ENDPOINT_URL_S3"
            )
        if isinstance(exc, botocore.exceptions.BotoCoreError):
            return StoreError(f"{uri}: S3 {operation} failed at {self.endpoint}: {exc}")
        return StoreError(f"{uri}: S3 {operation} failed at {self.endpoint}: {exc!r}")
