"""The deployment files, checked offline against their published schemas:
`docker-compose.yml` against the Compose Specification's JSON schema (the
copy check-jsonschema ships: `--builtin-schema vendor.compose-spec`);
`serving/k8s/` is tests/serving/test_k8s.py.

Building and running the image is `make image-test`
(serving/container/image_test.py), not part of this suite.
"""

import subprocess
import sys

import yaml

from tests.support import ROOT


def test_the_compose_file_matches_the_compose_specification():
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(ROOT / "docker-compose.yml")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_schema_check_catches_a_mistake(tmp_path):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    compose["services"]["keras-rnn"]["stop_grace_period"] = ["30s"]  # not a string
    broken = tmp_path / "compose.yml"
    broken.write_text(yaml.safe_dump(compose))
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(broken)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
