"""Each explanation method's cost as a multiple of one forward pass: `python benchmarks/methods.py`.

Loads the checkpoint the viewer uses (`load_model()`) and, on pydicom-data's chest CR
(RG1_UNCI.dcm, the viewer's sample) at the model's input size, times one plain forward
pass and then every method in xai_core.methods.METHODS at its default settings for one
label, in the same run, so the ratios hold on whatever machine runs it. Prints a
markdown table: seconds (median of --repeats), the ratio to the forward pass, and the
number of images the network ran forward on (the method's own count). Methods over
10 s on this machine are marked: the page and the CLI show a progress bar for those.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pydicom.data
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xai_core.imaging import read_xray  # noqa: E402
from xai_core.methods import METHODS, attribute  # noqa: E402
from xai_core.model import XRayModel, load_model  # noqa: E402

SAMPLE_DICOM = "RG1_UNCI.dcm"
PROGRESS_BAR_SECONDS = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", default="Effusion")
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=list(METHODS))
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method (after one warm-up)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: the viewer's choice)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", module="captum")  # Captum's notes on hooks and requires_grad, once per call

    model = load_model(device=args.device)
    xray = read_xray(pydicom.data.get_testdata_file(SAMPLE_DICOM, download=False))
    forward = _forward_seconds(model, xray.pixels, args.repeats)
    size = model.input_spec.size
    print(f"model {model.version} on {model.device}, input {size} x {size}, {torch.get_num_threads()} threads; "
          f"one forward pass = {forward * 1000:.1f} ms (median of {args.repeats})\n")
    print("| method | seconds | x forward pass | images forward | note |")
    print("| --- | ---: | ---: | ---: | --- |")
    for name in args.methods:
        attribute(model, xray, args.label, name)  # warm-up: first-call allocations and Captum's setup
        runs = [attribute(model, xray, args.label, name) for _ in range(args.repeats)]
        seconds = statistics.median(run.seconds for run in runs)
        note = "progress bar" if seconds > PROGRESS_BAR_SECONDS else ""
        ratio = seconds / forward
        print(f"| {METHODS[name].title} | {seconds:.3f} | {ratio:.1f} | {runs[0].forward_passes} | {note} |")


def _forward_seconds(model: XRayModel, pixels: np.ndarray, repeats: int) -> float:
    inputs = model.input_spec.prepare(pixels, model.device)
    times = []
    with torch.inference_mode():
        model.network(inputs)
        for _ in range(repeats):
            start = time.perf_counter()
            model.network(inputs)
            if model.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


if __name__ == "__main__":
    main()
