"""One model per server process: loaded once, in the background, as soon as the viewer's server starts
(app/server.py), warmed up on the bundled sample, and shared by every session, never copied. The sample's
explanation is kept (what the first "Open sample" shows, without a forward pass), and the server's own warm-up
(the page's modules, imported before anyone opens it) runs beside the loading; then everything made so far, which
lives as long as the process, is left out of later garbage collections (Streamlit runs a full one after every script
run: about 1 s on two busy cores when the model, torch and the modules are in it). Whether it is ready is what the
viewer's health check asks (`GET /api/ready`, docs/deploy.md).

The operator's log says when the model is loaded or why it could not be; never anything from an image.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable

from .errors import XRayError
from .explanation import Explanation, explain
from .imaging import XRay, read_xray
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
_sample_explanations: dict[str, Explanation] = {}  # by the sample file's sha256: read-only once ready


def start_loading(warm_up: Callable[[], None] | None = None) -> None:
    """Start loading the model (the card $XAI_MODEL_CARD names, else the shipped one) unless already started;
    warm_up (the server's, e.g. importing the page's modules) runs beside it, before readiness says ready."""
    global _loader
    with _lock:
        if _loader is None:
            _loader = threading.Thread(target=_load, args=(warm_up,), name="model-loader", daemon=True)
            _loader.start()


def _load(warm_up: Callable[[], None] | None) -> None:
    global _model, _error
    warm_up_failures: list[Exception] = []

    def warm() -> None:
        try:
            warm_up()
        except Exception as error:  # noqa: BLE001 - reported below, as the model's own failure would be
            warm_up_failures.append(error)

    warming = threading.Thread(target=warm, name="server-warm-up", daemon=True) if warm_up else None
    try:
        if warming is not None:
            warming.start()
        model = load_model()
        for path in list(sample_images().values())[:1]:  # the first pass builds the kernels: not the first reader's
            xray = read_xray(path)
            _sample_explanations[xray.sha256] = _read_only(explain(model, xray))
        if warming is not None:
            warming.join()
        if warm_up_failures:
            raise warm_up_failures[0]
        gc.collect()
        gc.freeze()
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


def _read_only(explanation: Explanation) -> Explanation:
    for values in (explanation.probabilities, explanation.logits, explanation.raw_cams):
        values.setflags(write=False)
    return explanation


def shared_model() -> XRayModel:
    """The process's model, waiting for it while it loads; XRayError when it could not be loaded."""
    start_loading()
    _done.wait()
    if _error is not None:
        raise _error
    return _model


def explained(xray: XRay) -> Explanation:
    """The shared model's explanation of `xray`: the bundled sample's as made at start, any other's computed now."""
    model = shared_model()
    kept = _sample_explanations.get(xray.sha256)
    return kept if kept is not None else explain(model, xray)


def readiness() -> dict:
    """{"ready": bool, "status": words, and the model's version and device once ready}."""
    if not _done.is_set():
        return {"ready": False, "status": "loading the model"}
    if _error is not None:
        return {"ready": False, "status": f"the model could not be loaded: {_error}"}
    return {"ready": True, "status": "ready", "model": _model.version, "device": str(_model.device)}
