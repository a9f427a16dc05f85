"""The viewer's server: `streamlit run app/server.py` serves the page (app/main.py) and starts loading the model
as the server starts, before anyone opens the page. Beside it, it imports the modules the page imports (the method
panel, the store, PACS: seconds on a busy machine), runs Streamlit's own first-page check, so that the first
reader's first run does not, and brings the feedback database's schema up to date (`python -m xai_core db
upgrade`). A database that cannot be reached does not keep the viewer from starting: the log says so, and the
page says that feedback is unavailable until it can be reached.

`GET /api/ready` answers 200 once the model is loaded and the page's modules imported, 503 while they load or
when the model could not be loaded (the reason in its JSON): the health check (Dockerfile, docs/deploy.md).
Streamlit's own /_stcore/health says OK as soon as the server is up, before the model is.
"""

from __future__ import annotations

import ast
import importlib
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import streamlit as st
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # from anywhere, as app/main.py

from xai_core import serving  # noqa: E402
from xai_core.errors import XRayError  # noqa: E402
from xai_core.store import open_store  # noqa: E402

READY_ROUTE = "/api/ready"
PAGE = Path(__file__).with_name("main.py")
# What Streamlit itself imports only when a first page needs it: pandas (a component's data is checked for data
# frames) and its emoji table (the page icon).
STREAMLIT_ON_FIRST_PAGE = ("pandas", "streamlit.emojis")


def page_modules(page: Path = PAGE) -> list[str]:
    """The modules the page imports at its top level, as written in it (it runs on every visit, so it cannot be
    imported itself)."""
    modules = []
    for node in ast.parse(page.read_text()).body:
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
            modules.append(node.module)
    return modules


def import_page_modules() -> None:
    for module in [*page_modules(), *STREAMLIT_ON_FIRST_PAGE]:
        importlib.import_module(module)
    # Streamlit checks once per process, on the first element any page draws, whether it runs in a REPL: a walk of
    # every loaded module's source path (0.3 s of the first reader's first page). Done here, it is done for them.
    first_element_check = getattr(importlib.import_module("streamlit.delta_generator"), "_maybe_print_use_warning",
                                  None)
    if first_element_check is not None:
        first_element_check()


def migrate_feedback_database() -> None:
    """The store's migrations, run at start rather than on the first reader's first feedback panel."""
    try:
        open_store().engine.dispose()
    except XRayError as error:  # the page retries on every run; the reason (never the password) goes to the log
        serving.log.warning("The feedback database is not ready: %s", error)
    else:
        serving.log.info("feedback database schema up to date")


def warm_up() -> None:
    import_page_modules()
    migrate_feedback_database()


@asynccontextmanager
async def load_model_at_start(_app: st.App):
    serving.start_loading(warm_up=warm_up)  # in the background: the server answers (503) meanwhile
    yield


async def ready(_request: Request) -> JSONResponse:
    state = serving.readiness()
    return JSONResponse(state, status_code=200 if state["ready"] else 503)


app = st.App("main.py", lifespan=load_model_at_start, routes=[Route(READY_ROUTE, ready)])
