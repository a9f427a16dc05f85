"""Start a real Orthanc (Debian's `orthanc` + `orthanc-dicomweb`) on a free loopback port for the tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from loopback import free_port

ORTHANC = "Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def require_tool(tool_missing: str | None) -> None:
    """Skip where a tool is missing (`orthanc_missing()`, dciodvfy ...), except in CI, where it is a failure."""
    if tool_missing:
        if os.environ.get("CI"):
            pytest.fail(f"{tool_missing}; .ci/run installs it")
        pytest.skip(tool_missing)


def orthanc_missing() -> str | None:
    """Why Orthanc cannot be started here, or None (.ci/run installs it)."""
    if shutil.which(ORTHANC) is None:
        return "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)"
    if not DICOMWEB_PLUGIN.is_file():
        return "Orthanc's DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)"
    return None


@dataclass
class OrthancServer:
    root: str  # http://127.0.0.1:PORT
    auth: tuple[str, str] | None
    process: subprocess.Popen
    log: Path

    @property
    def dicomweb_url(self) -> str:
        return f"{self.root}/dicom-web"

    def upload(self, data: bytes) -> None:
        """Store a DICOM file through Orthanc's own REST API (not the code under test)."""
        response = requests.post(f"{self.root}/instances", data=data, auth=self.auth, timeout=30)
        response.raise_for_status()

    def stop(self) -> None:
        """Kill at once: its storage is a temporary folder, and a clean shutdown takes seconds."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextmanager
def running_orthanc(folder: Path, *, users: dict[str, str] | None = None,
                    lua: str | None = None) -> Iterator[OrthancServer]:
    """Orthanc with DICOMweb at /dicom-web/, storing into `folder`, with HTTP basic auth when `users`
    is given and the Lua script `lua` (e.g. an IncomingHttpRequestFilter) when given. Stopped on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    if lua is not None:
        (folder / "filter.lua").write_text(lua, encoding="utf-8")
    config = {
        "Name": "XAI-TEST",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "storage"),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "DicomPort": free_port(),
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": bool(users),
        "RegisteredUsers": users or {},
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "LuaScripts": [str(folder / "filter.lua")] if lua is not None else [],
    }
    (folder / "orthanc.json").write_text(json.dumps(config), encoding="utf-8")
    log = folder / "orthanc.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen([ORTHANC, str(folder / "orthanc.json")], stdout=log_file, stderr=subprocess.STDOUT)
    auth = next(iter(users.items())) if users else None
    server = OrthancServer(root=f"http://127.0.0.1:{port}", auth=auth, process=process, log=log)
    try:
        _wait_until_up(server)
        yield server
    finally:
        server.stop()


def _wait_until_up(server: OrthancServer, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if requests.get(f"{server.root}/system", auth=server.auth, timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        if server.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"Orthanc did not start: {server.log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)
