"""The client side works without TensorFlow, and no Celery parent process imports it."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

# A meta path hook that makes `import tensorflow` / `import keras` fail, as on a machine
# without the `worker` extra.
BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorflow', 'keras'):
            raise ImportError(f'{name} is not installed')
sys.meta_path.insert(0, Block())
"""


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + code], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_every_service_module_imports_without_tensorflow():
    code = """
import importlib, pkgutil, service
names = [m.name for m in pkgutil.walk_packages(service.__path__, 'service.') if not m.name.endswith('__main__')]
for name in names:
    importlib.import_module(name)
assert len(names) > 20, names
print('ok')
"""
    result = python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_client_plans_and_validates_without_tensorflow():
    code = """
from click.testing import CliRunner
from service.cli import cli
result = CliRunner().invoke(cli, ['validate', 'examples/seed-study.yaml'])
assert result.exit_code == 0, result.output
assert '12 runs' in result.output
print('ok')
"""
    result = python(code)
    assert result.returncode == 0, result.stderr + result.stdout


def test_worker_app_and_task_modules_do_not_import_tensorflow():
    code = """
import sys
import workers.app, workers.tasks
assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules
print('ok')
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
