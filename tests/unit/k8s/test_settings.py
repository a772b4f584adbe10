"""The manifests' settings against the code: every ABLATE_ variable is a setting, the worker's
environment loads into production settings (and the Secret template's placeholder password is
refused), and every AWS_ variable is one boto3 reads."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.settings import PLACEHOLDER_SECRETS, Settings
from tests.k8s_manifests import (
    REAL_PASSWORD,
    worker_env,
)


def test_every_ablate_variable_is_a_setting(config, secret, worker):
    names = [
        *config["data"],
        *secret["stringData"],
        *(item["name"] for item in worker.get("env", [])),
    ]
    ablate = [name for name in names if name.startswith("ABLATE_")]
    assert {"ABLATE_STORE", "ABLATE_BROKER_URL", "ABLATE_QUEUE", "ABLATE_REDIS_PASSWORD"} <= set(
        ablate
    )
    for name in ablate:
        field = name.removeprefix("ABLATE_").lower()
        assert field in Settings.model_fields, f"{name} is not a field of service.settings.Settings"


def test_worker_environment_loads_into_production_settings(config, secret, worker, clean_env):
    for key, value in worker_env(config, secret, worker, REAL_PASSWORD).items():
        clean_env.setenv(key, value)
    settings = Settings()
    assert settings.environment == "production"
    assert settings.log_format == "json"
    assert settings.store.startswith("s3://")
    assert settings.queue == config["data"]["ABLATE_QUEUE"]
    assert settings.redis_password.get_secret_value() == REAL_PASSWORD


def test_production_refuses_the_secret_templates_password(config, secret, worker, clean_env):
    template_password = secret["stringData"]["ABLATE_REDIS_PASSWORD"]
    for key, value in worker_env(config, secret, worker, template_password).items():
        clean_env.setenv(key, value)
    with pytest.raises(ValidationError, match="placeholder"):
        Settings()


def test_secret_template_holds_placeholders_only(secret):
    assert secret["metadata"]["name"] == "ablate-secrets"
    assert set(secret["stringData"]) == {
        "ABLATE_REDIS_PASSWORD",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }
    for key, value in secret["stringData"].items():
        assert value.lower() in PLACEHOLDER_SECRETS, f"{key}: commit placeholders, never secrets"
    assert "data" not in secret  # base64 would hide what is committed


def boto3_environment_variables() -> set[str]:
    import botocore.configprovider
    import botocore.credentials

    names = {
        botocore.credentials.EnvProvider.ACCESS_KEY,
        botocore.credentials.EnvProvider.SECRET_KEY,
        *botocore.credentials.EnvProvider.TOKENS,
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
    }
    for _, env_names, _, _ in botocore.configprovider.BOTOCORE_DEFAUT_SESSION_VARIABLES.values():
        names.update([env_names] if isinstance(env_names, str) else env_names or [])
    return names


def test_aws_variables_are_ones_boto3_reads(config, secret, worker, clean_env):
    import boto3

    env = worker_env(config, secret, worker, REAL_PASSWORD)
    aws = {k: v for k, v in env.items() if k.startswith("AWS_")}
    assert aws.keys() <= boto3_environment_variables()
    for key, value in aws.items():
        clean_env.setenv(key, value)
    client = boto3.session.Session().client("s3")
    assert client.meta.endpoint_url == aws["AWS_ENDPOINT_URL_S3"]
    assert client.meta.region_name == aws["AWS_DEFAULT_REGION"]
