"""Engine speed and memory beside pytorch-grad-cam: `python benchmarks/engine.py`.

Loads the checkpoint the viewer uses (`load_model()`: $XAI_MODEL_CARD, else
weights/resnet50_cxr14.json) and, on real radiographs (pydicom-data's chest CR
RG1_UNCI.dcm, plus the first NIH images in ../shared/data/nih/images when that
folder is present), at the model's input size and at twice that size, times:

  - one plain forward pass, on the input explain() builds;
  - explain(): 14 probabilities and 14 raw Grad-CAM++ maps from that one pass;
  - Explanation.maps(): the 14 normalised maps at the image's resolution, alone;
  - pytorch-grad-cam's GradCAMPlusPlus: one call per label, and one call on the
    input repeated 14 times with the 14 targets;
  - saliency() for one label;

and measures the peak memory of each. Prints one markdown table with the ratios
the issue sets targets for and the largest difference between our 14 maps and the
library's at the input size; --json OUT also writes every figure.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pydicom.data
import torch
from pytorch_grad_cam import GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xai_core.errors import XRayError  # noqa: E402
from xai_core.explanation import Explanation, explain, saliency  # noqa: E402
from xai_core.imaging import XRay, read_xray  # noqa: E402
from xai_core.model import XRayModel, default_card, load_model  # noqa: E402

SAMPLE_DICOM = "RG1_UNCI.dcm"  # pydicom-data's adult PA chest CR, the viewer's sample
NIH_IMAGES = ROOT.parent / "shared" / "data" / "nih" / "images"
NIH_IMAGE_COUNT = 3
SALIENCY_LABEL = "Cardiomegaly"
MAP_TOLERANCE = 1e-4
MEMORY_WARMUP_CALLS = 1
MIB = 2**20
CLEAR_REFS = Path("/proc/self/clear_refs")  # Linux: writing "5" resets the peak RSS (VmHWM)
# A fixed glibc mmap threshold (setting it turns the dynamic one off) maps every block above it on its own and
# unmaps it when freed, so resident memory follows what is alive and one call's peak is the same every time.
MMAP_THRESHOLD = 128 * 1024
CPU_MEMORY_METHOD = (
    "peak resident memory (VmHWM) above the resident memory just before one call, in a fresh "
    "process per row on the first image, after model load, one warm-up call, gc and malloc_trim; "
    "the kernel's peak is reset through /proc/self/clear_refs; the call's outputs count; glibc's "
    f"mmap threshold fixed at {MMAP_THRESHOLD // 1024} KiB so that freed tensors leave at once: the "
    "call's own peak, without the freed memory glibc's default settings may keep resident"
)
CUDA_MEMORY_METHOD = (
    "torch.cuda.max_memory_allocated above memory_allocated just before one call, in a fresh "
    "process per row on the first image, after model load and one warm-up call; tensors only"
)


@dataclass(frozen=True)
class Target:
    """A bound on a ratio, as the issue states it."""

    comparison: str  # "≤" or "≥"
    bound: float

    def met(self, value: float) -> bool:
        return value <= self.bound if self.comparison == "≤" else value >= self.bound

    def __str__(self) -> str:
        return f"{self.comparison} {self.bound:g}"


def _the_xray(_model: XRayModel, xray: XRay) -> XRay:
    return xray


@dataclass(frozen=True)
class Case:
    """One row of the table: the timed call, its untimed setup, and the row its ratio divides by."""

    key: str
    title: str
    run: Callable[[XRayModel, Any], Any]
    setup: Callable[[XRayModel, XRay], Any] = _the_xray
    needs_gradients: bool = False  # pytorch-grad-cam backpropagates into the (frozen) parameters
    first_image_only: bool = False  # the cost depends on the image's size: time it on the full-size DICOM alone
    gives_maps: bool = False  # returns the 14 normalised maps at the input size, to compare with ours
    baseline: str | None = None
    target: Target | None = None


def layout_of(network: nn.Module) -> torch.memory_format:
    """channels_last where load_model left the weights so (the CPU), else the default layout."""
    channels_last = network.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if channels_last else torch.contiguous_format


def forward_pass(model: XRayModel, xray: XRay) -> torch.Tensor:
    """The network alone on explain()'s input, in the network's memory layout."""
    inputs = model.input_spec.prepare(xray.pixels, model.device)
    with torch.inference_mode():
        return model.network(inputs.contiguous(memory_format=layout_of(model.network)))


def maps_at_image_resolution(_model: XRayModel, explanation: Explanation) -> np.ndarray:
    return explanation.maps()


def grad_cam_per_label(model: XRayModel, xray: XRay) -> np.ndarray:
    """pytorch-grad-cam as its README shows it: one forward and one backward pass per label."""
    inputs = model.input_spec.prepare(xray.pixels, model.device)
    network = model.network
    with GradCAMPlusPlus(model=network, target_layers=[network.layer4[-1]]) as cam:
        return np.stack(
            [cam(input_tensor=inputs, targets=[ClassifierOutputTarget(i)])[0] for i in range(len(model.labels))]
        )


def grad_cam_batched(model: XRayModel, xray: XRay) -> np.ndarray:
    """pytorch-grad-cam in one call: the input repeated once per label, each copy with its own target."""
    inputs = model.input_spec.prepare(xray.pixels, model.device)
    count = len(model.labels)
    network = model.network
    with GradCAMPlusPlus(model=network, target_layers=[network.layer4[-1]]) as cam:
        targets = [ClassifierOutputTarget(i) for i in range(count)]
        return cam(input_tensor=inputs.repeat(count, 1, 1, 1), targets=targets)


def saliency_of_one_label(model: XRayModel, xray: XRay) -> np.ndarray:
    return saliency(model, xray, SALIENCY_LABEL)


CASES = (
    Case("forward", "forward pass (inference_mode)", forward_pass),
    Case("explain", "explain(): 14 probabilities + 14 raw Grad-CAM++ maps", explain,
         baseline="forward", target=Target("≤", 1.15)),
    Case("maps", "explanation.maps(): 14 normalised maps at image resolution", maps_at_image_resolution,
         setup=explain, first_image_only=True, baseline="forward"),
    Case("grad_cam_per_label", "pytorch-grad-cam GradCAMPlusPlus, 14 calls (one per label)", grad_cam_per_label,
         needs_gradients=True, gives_maps=True, baseline="explain", target=Target("≥", 20.0)),
    Case("grad_cam_batched", "pytorch-grad-cam GradCAMPlusPlus, 1 call on a batch of 14", grad_cam_batched,
         needs_gradients=True, gives_maps=True, baseline="explain"),
    Case("saliency", f"saliency(): gradient saliency for {SALIENCY_LABEL}", saliency_of_one_label,
         baseline="forward", target=Target("≤", 3.5)),
)
CASES_BY_KEY = {case.key: case for case in CASES}


@contextmanager
def gradients_for(network: nn.Module, enabled: bool) -> Iterator[None]:
    """Let the parameters require gradients while the block is open; frozen again, .grad dropped, after."""
    network.requires_grad_(enabled)
    try:
        yield
    finally:
        network.requires_grad_(False)
        network.zero_grad(set_to_none=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_case(
    case: Case, model: XRayModel, xrays: list[XRay], runs: int, warmup: int
) -> tuple[list[float], dict[int, Any]]:
    """Wall-clock seconds of `runs` calls after `warmup`; timed call k on image k mod len(xrays).

    Returns the timed seconds and, for rows that give maps, the last result per image.
    """
    arguments = [case.setup(model, xray) for xray in xrays]
    seconds: list[float] = []
    results: dict[int, Any] = {}
    with gradients_for(model.network, case.needs_gradients):
        for call in range(warmup + runs):
            index = (call - warmup) % len(xrays)
            started = time.perf_counter()
            result = case.run(model, arguments[index])
            synchronize(model.device)
            elapsed = time.perf_counter() - started
            if call >= warmup:
                seconds.append(elapsed)
            if case.gives_maps:
                results[index] = result
    return seconds, results


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _release_free_heap() -> None:
    """Hand freed heap pages back to the kernel (glibc), so the baseline counts only memory in use."""
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is not None:
        trim(0)


def peak_of_one_call(case: Case, model: XRayModel, xray: XRay) -> float | None:
    """MiB one call needs above what is in use just before it (see *_MEMORY_METHOD); None where unmeasurable."""
    if model.device.type != "cuda" and not CLEAR_REFS.exists():
        return None
    argument = case.setup(model, xray)
    with gradients_for(model.network, case.needs_gradients):
        for _ in range(MEMORY_WARMUP_CALLS):
            case.run(model, argument)
        gc.collect()
        if model.device.type == "cuda":
            synchronize(model.device)
            torch.cuda.reset_peak_memory_stats(model.device)
            baseline = torch.cuda.memory_allocated(model.device)
            case.run(model, argument)
            synchronize(model.device)
            peak = torch.cuda.max_memory_allocated(model.device) - baseline
        else:
            _release_free_heap()
            CLEAR_REFS.write_text("5")
            baseline = _status_kib("VmRSS") * 1024
            case.run(model, argument)
            peak = _status_kib("VmHWM") * 1024 - baseline
    return peak / MIB


def peak_in_fresh_process(case: Case, size: int, device: torch.device) -> float | None:
    """Run peak_of_one_call in a new interpreter, so no earlier row's allocations are in the way."""
    command = [sys.executable, __file__, "--device", str(device), "--memory-probe", case.key, str(size)]
    environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
    finished = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True, env=environment)
    return json.loads(finished.stdout.strip().splitlines()[-1])["peak_mib"]


def at_size(model: XRayModel, size: int) -> XRayModel:
    """The same network fed size x size inputs (a fully convolutional body with a global pool takes any size)."""
    return replace(model, input_spec=replace(model.input_spec, size=size))


def load_images() -> tuple[list[str], list[XRay]]:
    """The sample DICOM first, then the first NIH images when the data folder is present."""
    dicom = pydicom.data.get_testdata_file(SAMPLE_DICOM, download=False)
    if dicom is None:
        raise SystemExit(f"{SAMPLE_DICOM} is not installed: pip install pydicom-data")
    paths = [Path(dicom)]
    if NIH_IMAGES.is_dir():
        paths += sorted(NIH_IMAGES.glob("*.png"))[:NIH_IMAGE_COUNT]
    return [path.name for path in paths], [read_xray(path) for path in paths]


def largest_map_difference(model: XRayModel, xrays: list[XRay], reference: dict[int, np.ndarray]) -> float:
    """max |ours - library| over the images the library ran on, both at the input size, scaled as the library does."""
    size = model.input_spec.size
    return max(
        float(np.abs(explain(model, xrays[index]).maps(normalized=True, shape=(size, size)) - maps).max())
        for index, maps in reference.items()
    )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "grad_cam": version("grad-cam"),
        "python": platform.python_version(),
    }


def summary(seconds: list[float]) -> dict[str, float]:
    milliseconds = np.asarray(seconds) * 1e3
    q1, median, q3 = np.percentile(milliseconds, [25, 50, 75])
    return {"median_ms": float(median), "q1_ms": float(q1), "q3_ms": float(q3),
            "min_ms": float(milliseconds.min()), "max_ms": float(milliseconds.max())}


def mark(met: bool) -> str:
    return "✓" if met else "✗"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| case | input | median ms | IQR ms | peak MiB | ratio (target) | max map diff vs explain (target) |",
        "|---|---|---:|---|---:|---|---|",
    ]
    for row in rows:
        peak = "n/a" if row["peak_mib"] is None else f"{row['peak_mib']:.0f}"
        ratio = ""
        if row["ratio"] is not None:
            ratio = f"{row['ratio']:.2f} × {row['baseline']}"
            if row["target"] is not None:
                ratio += f" ({row['target']} {mark(row['target_met'])})"
        difference = ""
        if row["max_map_difference"] is not None:
            difference = (f"{row['max_map_difference']:.1e} on {row['images_compared']} image(s) "
                          f"(≤ {MAP_TOLERANCE:.0e} {mark(row['max_map_difference'] <= MAP_TOLERANCE)})")
        lines.append(
            f"| {row['title']} | {row['input']} | {row['median_ms']:.1f} | "
            f"{row['q1_ms']:.1f}–{row['q3_ms']:.1f} | {peak} | {ratio} | {difference} |"
        )
    return "\n".join(lines)


def benchmark(model: XRayModel, names: list[str], xrays: list[XRay], runs: int, warmup: int) -> list[dict[str, Any]]:
    """Every case at the input size and at twice it: timings, peak memory, ratios and map differences."""
    rows: list[dict[str, Any]] = []
    base = model.input_spec.size
    for size in (base, 2 * base):
        sized = at_size(model, size)
        medians: dict[str, float] = {}
        for case in CASES:
            print(f"  {size}×{size}: {case.title} ...", file=sys.stderr, flush=True)
            images = xrays[:1] if case.first_image_only else xrays
            seconds, reference = time_case(case, sized, images, runs, warmup)
            figures = summary(seconds)
            height, width = xrays[0].pixels.shape
            shown = f"{height}×{width} image, model at {size}×{size}" if case.first_image_only else f"{size}×{size}"
            medians[case.key] = figures["median_ms"]
            ratio = figures["median_ms"] / medians[case.baseline] if case.baseline else None
            rows.append({
                "case": case.key,
                "title": case.title,
                "size": size,
                "input": shown,
                **figures,
                "seconds": seconds,
                "images": [names[run % len(images)] for run in range(runs)],
                "peak_mib": peak_in_fresh_process(case, size, model.device),
                "baseline": case.baseline,
                "ratio": ratio,
                "target": None if case.target is None else str(case.target),
                "target_met": None if case.target is None else case.target.met(ratio),
                "max_map_difference": largest_map_difference(sized, images, reference) if reference else None,
                "images_compared": len(reference) if reference else None,
            })
    return rows


def memory_probe(case_key: str, size: int, device: str | None) -> None:
    """The child side of peak_in_fresh_process: print {"peak_mib": ...} as the last line."""
    model = at_size(load_model(device=device), size)
    _names, xrays = load_images()
    print(json.dumps({"peak_mib": peak_of_one_call(CASES_BY_KEY[case_key], model, xrays[0])}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="timed calls per row (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before them (default 2)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the engine's choice)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write every figure to this JSON file")
    parser.add_argument("--memory-probe", nargs=2, metavar=("CASE", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be at least 1 and --warmup at least 0")
    try:
        if args.memory_probe:
            case_key, size = args.memory_probe
            memory_probe(case_key, int(size), args.device)
            return
        model = load_model(device=args.device)
        names, xrays = load_images()
    except XRayError as error:
        raise SystemExit(str(error)) from error

    load_before = os.getloadavg()[0]
    rows = benchmark(model, names, xrays, args.runs, args.warmup)
    load_after = os.getloadavg()[0]
    about = machine(model.device)
    memory_method = CUDA_MEMORY_METHOD if model.device.type == "cuda" else CPU_MEMORY_METHOD
    shapes = [xray.pixels.shape for xray in xrays]
    images = ", ".join(f"{name} {height}×{width}" for name, (height, width) in zip(names, shapes, strict=True))

    print(f"\nEngine speed and memory beside pytorch-grad-cam (checkpoint {model.version}, {default_card()})\n")
    print(f"machine: {about['cpu']}, {about['cores']} cores ({about['usable_cores']} usable), device "
          f"{about['device']}{' (' + about['gpu'] + ')' if about['gpu'] else ''}, torch {about['torch']} with "
          f"{about['torch_threads']} threads, grad-cam {about['grad_cam']}, Python {about['python']}")
    print(f"load average (1 min): {load_before:.2f} before, {load_after:.2f} after; other work on the machine "
          f"slows every row")
    print(f"images (timed call k uses image k mod {len(xrays)}; the maps() rows use the first alone): {images}")
    print(f"timing: {args.runs} timed call(s) after {args.warmup} warm-up call(s) per row, wall clock, median and "
          f"interquartile range; every row starts from the XRay's pixels, maps() from its Explanation")
    print(f"memory: {memory_method}")
    print("maps: ours = explain(...).maps(shape=input size), the library's = its output, both min-max scaled, "
          "resized, min-max scaled again\n")
    print(table(rows))

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"machine": about, "checkpoint": {"version": model.version, "card": str(default_card())},
                  "images": [{"name": name, "shape": list(shape)} for name, shape in zip(names, shapes, strict=True)],
                  "runs": args.runs, "warmup": args.warmup, "load_average": [load_before, load_after],
                  "memory_method": memory_method, "map_tolerance": MAP_TOLERANCE, "rows": rows}
        args.json.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
