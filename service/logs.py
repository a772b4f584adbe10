"""structlog set-up: key-value lines on a terminal, JSON lines in containers.

Secrets never reach a log line: the libraries that log credentials at debug level (botocore
logs every request's headers, Authorization and X-Amz-Security-Token included) are held at info
or above, and the values of the known secrets (Redis password, AWS keys and session token)
are replaced by *** in every structlog event and every standard-library log record.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# Their debug output includes request headers and signing material (credentials, tokens).
_CREDENTIAL_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")
_SECRET_VARIABLES = (
    "ABLATE_REDIS_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ACCESS_KEY_ID",
)
_URL_VARIABLES = ("ABLATE_BROKER_URL", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")
REDACTED = "***"
# Query parameters that carry credentials in the URLs of Redis, S3 (presigned) and the rest.
_SECRET_PARAMETER = re.compile(
    r"pass|pwd|secret|token|key|signature|credential|auth|sig$|session", re.IGNORECASE
)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def url_secrets(url: str) -> set[str]:
    """The credentials a URL carries: its userinfo password (or a user-only token) and the
    values of secret-looking query parameters, as written and decoded."""
    try:
        parts = urlsplit(url)
        found = {parts.password or ""} if parts.password else {parts.username or ""}
        if "@" not in parts.netloc:
            found = set()
        found |= {value for name, value in parse_qsl(parts.query) if _SECRET_PARAMETER.search(name)}
    except ValueError:
        return set()
    return found | {unquote(value) for value in found}


def redact_url(url: str) -> str:
    """`url` with every credential replaced by ***: the userinfo's password (a user with no
    password may be a token: it goes too) and secret-looking query parameters."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        secret_query = any(_SECRET_PARAMETER.search(name) for name, _ in parse_qsl(parts.query))
        if "@" not in netloc and not secret_query:
            return url  # nothing to hide: the URL exactly as written
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user, has_password, _ = userinfo.partition(":")
            netloc = f"{user}:{REDACTED}@{host}" if has_password else f"{REDACTED}@{host}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode(
                [(name, REDACTED if _SECRET_PARAMETER.search(name) else value) for name, value in pairs],
                safe="*",
            )
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:  # not parseable as a URL: say nothing of what it held
        return f"{url.split('://', 1)[0]}://{REDACTED}"


def redact_urls(text: str) -> str:
    """Every URL in `text`, redacted (`redact_url`)."""
    if "://" not in text:
        return text
    return _URL.sub(lambda match: redact_url(match.group()), text)


def known_secrets() -> list[str]:
    """The secret values this process was given (longest first), from its environment."""
    values = {os.environ.get(name, "") for name in _SECRET_VARIABLES}
    for name in _URL_VARIABLES:
        values |= url_secrets(os.environ.get(name, ""))
    return sorted((v for v in values if len(v) >= 4), key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return redact_urls(text)


def _redact_value(value, secrets: list[str]):
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: _redact_value(v, secrets) for k, v in value.items()}
    if type(value) in (list, tuple):  # not namedtuples and other subclasses
        return type(value)(_redact_value(v, secrets) for v in value)
    return value


def _structlog_redactor(secrets: list[str]):
    def processor(_logger, _name, event_dict):
        return {key: _redact_value(value, secrets) for key, value in event_dict.items()}

    return processor


def _install_record_redaction(secrets: list[str]) -> None:
    """Redact every standard-library record (Celery's, kombu's, botocore's...) as it is made:
    a record factory applies whatever handlers Celery installs later, and in forked children."""
    previous = logging.getLogRecordFactory()
    base = getattr(previous, "_ablate_base", previous)  # configure_logging may run twice

    def factory(*args, **kwargs):
        record = base(*args, **kwargs)
        # the known secrets, and credentials in any URL
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to the handler's error path
            return record
        cleaned = redact(message, secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and record.exc_info[1] is not None:
            text = "".join(traceback.format_exception(*record.exc_info))
            if redact(text, secrets) != text:
                record.msg = f"{record.msg}\n{redact(text, secrets).rstrip()}"
                record.exc_info = None
        return record

    factory._ablate_base = base  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    secrets = known_secrets()
    json_lines = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _structlog_redactor(secrets),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    for name in _CREDENTIAL_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.level, logging.INFO))
    _install_record_redaction(secrets)
