"""The viewer's server: `streamlit run app/server.py` serves the page (app/main.py) and starts loading the model
as the server starts, before anyone opens the page.

`GET /api/ready` answers 200 once the model is loaded, 503 while it loads or when it could not be loaded (the
reason in its JSON): the health check (Dockerfile, docs/deploy.md). Streamlit's own /_stcore/health says OK as
soon as the server is up, before the model is.
"""

from __future__ import annotations

import sys
from contextlib import asynccontextmanager
from pathlib import Path

import streamlit as st
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # from anywhere, as app/main.py

from xai_core import serving  # noqa: E402

READY_ROUTE = "/api/ready"


@asynccontextmanager
async def load_model_at_start(_app: st.App):
    serving.start_loading()  # in the background: the server answers (503 here) while the model loads
    yield


async def ready(_request: Request) -> JSONResponse:
    state = serving.readiness()
    return JSONResponse(state, status_code=200 if state["ready"] else 503)


app = st.App("main.py", lifespan=load_model_at_start, routes=[Route(READY_ROUTE, ready)])
