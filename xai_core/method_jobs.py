"""An expensive explanation method run in the background: progress a reader can watch, a run a reader can stop.

The viewer reruns its whole script on every click, so a map that takes a minute cannot be
computed inside one run. A MethodJob runs `methods.attribute` in a thread of its own and
holds what the page needs between runs: how many of the planned images the network has run
forward on, how long it has been going, and, at the end, the map, or why there is none.

Stopping works between batches: before each batch the network runs in the job's thread, the
forward-pass counter reports progress and checks the job's stop event; a set event raises there,
so the method ends within one batch (methods.BATCH images) of the reader's click, and the job
says how far it got. Other threads using the same network (other readers) are not affected.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .errors import XRayError
from .imaging import XRay
from .labels import display_name
from .methods import METHODS, Attribution, attribute, planned_forward_passes
from .model import XRayModel


class JobState(Enum):
    RUNNING = "running"
    DONE = "done"
    STOPPED = "stopped"
    FAILED = "failed"


class _StopRequested(Exception):
    """Raised inside the job's thread, before a batch, once the reader has asked to stop."""


@dataclass(eq=False)
class MethodJob:
    """One method for one pathology of one image, running or finished. Read it from any thread."""

    image_sha256: str
    label: str
    method: str
    planned: int  # images the network will run forward on
    done: int = 0  # images it has run forward on so far
    state: JobState = JobState.RUNNING
    attribution: Attribution | None = None
    error: str | None = None
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.image_sha256, self.label, self.method

    @property
    def running(self) -> bool:
        return self.state is JobState.RUNNING

    @property
    def fraction(self) -> float:
        return 1.0 if self.state is JobState.DONE else min(1.0, self.done / max(1, self.planned))

    @property
    def seconds(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    def stop(self) -> None:
        """Ask the job to stop before its next batch (no effect once it has finished)."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the job to finish; True when it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def in_words(self) -> str:
        title = f"{METHODS[self.method].title} for {display_name(self.label)}"
        progress = f"{self.done} of {self.planned} images through the network"
        if self.state is JobState.RUNNING:
            stopping = ", stopping…" if self._stop.is_set() else ""
            return f"{title}: {progress}, {self.seconds:.0f} s{stopping}"
        if self.state is JobState.STOPPED:
            return f"{title} was stopped after {progress} ({self.seconds:.1f} s): no map."
        if self.state is JobState.FAILED:
            return f"{title} could not be computed: {self.error}"
        return (f"{title} took {self.seconds:.1f} s: {self.planned} images through the network "
                "(Grad-CAM++ needs one for all 14 pathologies).")

    def _run(self, model: XRayModel, xray: XRay, options: Mapping[str, Any]) -> None:
        try:
            self.attribution = attribute(model, xray, self.label, self.method, options=options,
                                         progress=self._before_batch)
            self.done = self.attribution.forward_passes
            self._finish(JobState.DONE)
        except _StopRequested:
            self._finish(JobState.STOPPED)
        except XRayError as error:
            self.error = str(error)
            self._finish(JobState.FAILED)
        except Exception:  # noqa: BLE001 - the reader gets a plain message; the page must keep working
            self.error = "the method failed on this image (an internal error)."
            self._finish(JobState.FAILED)
        finally:
            if self.state is JobState.RUNNING:  # ended by something that is not an Exception: never "running" forever
                self.error = "the run ended unexpectedly."
                self._finish(JobState.FAILED)

    def _before_batch(self, done: int) -> None:
        self.done = done
        if self._stop.is_set():
            raise _StopRequested

    def _finish(self, state: JobState) -> None:
        self.finished = time.perf_counter()
        self.state = state


def start_method_job(
    model: XRayModel,
    xray: XRay,
    label: str,
    method: str,
    *,
    options: Mapping[str, Any] | None = None,
) -> MethodJob:
    """Start one method for one pathology in a background thread and return at once."""
    chosen = dict(options or {})
    job = MethodJob(xray.sha256, label, method, planned_forward_passes(model, xray, label, method, options=chosen))
    job._thread = threading.Thread(target=job._run, args=(model, xray, chosen), daemon=True,
                                   name=f"explanation method {method}")
    job._thread.start()
    return job
