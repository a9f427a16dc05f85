"""One model per server process: loaded once, in the background, as soon as the viewer's server starts
(app/server.py), warmed up on the bundled sample, and shared by every session, never copied. Whether it is
ready is what the viewer's health check asks (`GET /api/ready`, docs/deploy.md).

The operator's log says when the model is loaded or why it could not be; never anything from an image.
"""

from __future__ import annotations

import logging
import threading

from .errors import XRayError
from .explanation import explain
from .imaging import read_xray
from .model import XRayModel, load_model
from .samples import sample_images

log = logging.getLogger("chest_xray_viewer")
if not log.handlers:  # Streamlit keeps its own loggers at warning (.streamlit/config.toml): this one has its own
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(_handler)
    log.setLevel(logging.INFO)
    log.propagate = False

_lock = threading.Lock()
_done = threading.Event()
_loader: threading.Thread | None = None
_model: XRayModel | None = None
_error: XRayError | None = None


def start_loading() -> None:
    """Start loading the model (the card $XAI_MODEL_CARD names, else the shipped one) unless already started."""
    global _loader
    with _lock:
        if _loader is None:
            _loader = threading.Thread(target=_load, name="model-loader", daemon=True)
            _loader.start()


def _load() -> None:
    global _model, _error
    try:
        model = load_model()
        for path in list(sample_images().values())[:1]:  # the first pass builds the kernels: not the first reader's
            explain(model, read_xray(path))
        _model = model
        log.info("model %s loaded on %s", _model.version, _model.device)
    except XRayError as error:
        _error = error
        log.error("the model could not be loaded: %s", error)
    except Exception as error:  # noqa: BLE001 - the server keeps running and says so on the page and in readiness
        _error = XRayError(f"loading it failed unexpectedly ({type(error).__name__}).")
        log.exception("the model could not be loaded")
    finally:
        _done.set()


def shared_model() -> XRayModel:
    """The process's model, waiting for it while it loads; XRayError when it could not be loaded."""
    start_loading()
    _done.wait()
    if _error is not None:
        raise _error
    return _model


def readiness() -> dict:
    """{"ready": bool, "status": words, and the model's version and device once ready}."""
    if not _done.is_set():
        return {"ready": False, "status": "loading the model"}
    if _error is not None:
        return {"ready": False, "status": f"the model could not be loaded: {_error}"}
    return {"ready": True, "status": "ready", "model": _model.version, "device": str(_model.device)}
