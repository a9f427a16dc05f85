"""Long fuzz run of the image reader: `OMP_NUM_THREADS=1 nice -n 10 python benchmarks/fuzz_reader.py`.

Feeds read_xray mutated copies of real files (the NIH PNG, a 16-bit copy of it,
a pediatric JPEG and small pydicom-data DICOMs; see tests/reader_fuzzing.py):
bit flips, byte replacements, truncation, insertion, deletion and chunk
duplication, half of them in the first kilobyte where the headers lie. Every
outcome must be an `XRay` that passes the sanity checks or an `XRayError` with a
clear message; anything else is a bug. The reader runs in a worker process so
that a hang can be stopped (--hang-seconds) and counted.

Input i depends only on (--seed, i), so any of them can be regenerated. Each
distinct failure is shrunk (mutations dropped, then the tail cut, while the same
failure remains) and saved under artifacts/fuzz_reader/ (git-ignored) as the
bytes plus a JSON note of its source, mutations and traceback.

Prints: inputs tried, XRayError count, successes, failures by kind with their
reproducer paths, the slowest call and the worker's peak resident memory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import random
import resource
import sys
import time
import traceback
import warnings
from collections import Counter
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from reader_fuzzing import (  # noqa: E402
    HEADER_BYTES,
    MUTATION_KINDS,
    Mutation,
    assert_clear_message,
    assert_sane,
    fuzz_sources,
    mutate,
)

from xai_core.errors import XRayError  # noqa: E402
from xai_core.imaging import read_xray  # noqa: E402

SHARED_DATA = ROOT.parent / "shared" / "data"
REPRODUCERS = ROOT / "artifacts" / "fuzz_reader"
_INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)
_INTERESTING_INSERTS = (b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\xff\xd8", b"\xff\xd9", b"\xfe\xff\xdd\xe0")


@dataclass(frozen=True)
class Outcome:
    """What one read_xray call did, as the worker reports it."""

    kind: str  # "image" | "refused" (XRayError) | "crash" | "bad image" | "bad message" | "hang"
    signature: str  # identifies a distinct failure: exception type and where it was raised
    detail: str  # the traceback or the failed check
    seconds: float
    peak_rss_kb: int

    @property
    def is_failure(self) -> bool:
        return self.kind not in ("image", "refused")


def draw_mutations(rng: random.Random, size: int) -> list[Mutation]:
    """One to eight edits; half of the positions fall in the first HEADER_BYTES."""
    mutations = []
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4, 8))):
        kind = rng.choice(MUTATION_KINDS)
        position = rng.randrange(min(size, HEADER_BYTES)) if rng.random() < 0.5 else rng.randrange(size)
        length = rng.choice((1, 2, 4, rng.randrange(1, 64), rng.randrange(1, 4096)))
        if kind == "flip":
            mutations.append(Mutation(kind, position, rng.randrange(8)))
        elif kind == "set":
            value = rng.choice(_INTERESTING_BYTES) if rng.random() < 0.5 else rng.randrange(256)
            mutations.append(Mutation(kind, position, value))
        elif kind == "insert":
            payload = rng.choice(_INTERESTING_INSERTS) if rng.random() < 0.5 else rng.randbytes(length % 17 + 1)
            mutations.append(Mutation(kind, position, payload=payload))
        else:
            mutations.append(Mutation(kind, position, length))
    return mutations


def draw_input(seed: int, index: int, sources: dict[str, bytes]) -> tuple[str, list[Mutation]]:
    """The source name and mutations of input `index`: a function of (seed, index) alone."""
    rng = random.Random(f"{seed}:{index}")
    name = rng.choice(sorted(sources))
    return name, draw_mutations(rng, len(sources[name]))


# --- the worker ------------------------------------------------------------------------


def _worker(connection: Connection, stderr_log: Path) -> None:
    """Read each input sent, reply with its Outcome; runs until the pipe closes.

    Native decoders write to stderr (the Rust RLE decoder prints its panics), so
    the worker's stderr goes to `stderr_log` to keep the summary readable.
    """
    warnings.simplefilter("ignore")  # pydicom and PIL warn about what they repair
    log = open(stderr_log, "ab")  # noqa: SIM115 - open for the worker's lifetime
    os.dup2(log.fileno(), 2)
    connection.send(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # ready, and the baseline
    while True:
        try:
            data = connection.recv_bytes()
        except EOFError:
            return
        start = time.perf_counter()
        try:
            xray = read_xray(data)
        except XRayError as error:
            seconds = time.perf_counter() - start
            kind, signature, detail = _checked(assert_clear_message, str(error), "refused", "bad message")
        except BaseException as error:  # noqa: BLE001 - anything else is the bug being hunted
            seconds = time.perf_counter() - start
            frame = traceback.extract_tb(error.__traceback__)[-1]
            kind = "crash"
            signature = f"{type(error).__module__}.{type(error).__qualname__} at {Path(frame.filename).name}:{frame.lineno}"
            detail = "".join(traceback.format_exception(error))
        else:
            seconds = time.perf_counter() - start
            kind, signature, detail = _checked(assert_sane, xray, "image", "bad image")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        connection.send(Outcome(kind, signature, detail, seconds, peak))


def _checked(check, value, passed: str, failed: str) -> tuple[str, str, str]:
    try:
        check(value)
    except AssertionError as error:
        frame = traceback.extract_tb(error.__traceback__)[-1]
        return failed, f"{failed} at {Path(frame.filename).name}:{frame.lineno}", f"{error}"[:2000]
    return passed, "", ""


class Reader:
    """read_xray in a worker process that is replaced when a call runs past `hang_seconds`."""

    def __init__(self, hang_seconds: float) -> None:
        self.hang_seconds = hang_seconds
        self.baseline_rss_kb = 0
        self.peak_rss_kb = 0
        self._start()

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        REPRODUCERS.mkdir(parents=True, exist_ok=True)
        self._process = context.Process(target=_worker, args=(child, REPRODUCERS / "worker-stderr.log"), daemon=True)
        self._process.start()
        child.close()
        self.baseline_rss_kb = max(self.baseline_rss_kb, self._connection.recv())

    def read(self, data: bytes) -> Outcome:
        self._connection.send_bytes(data)
        if self._connection.poll(self.hang_seconds):
            try:
                outcome = self._connection.recv()
            except EOFError:  # the worker died: a segfault, an abort, the kernel's OOM killer
                self.close()
                outcome = Outcome("crash", f"worker died (exit code {self._process.exitcode})", "", 0.0, 0)
                self._start()
                return outcome
            self.peak_rss_kb = max(self.peak_rss_kb, outcome.peak_rss_kb)
            return outcome
        self.close()
        self._start()
        return Outcome("hang", "hang", f"no answer within {self.hang_seconds:g} s", self.hang_seconds, 0)

    def close(self) -> None:
        self._connection.close()
        self._process.kill()
        self._process.join()


# --- shrinking and saving ---------------------------------------------------------------


def shrink(reader: Reader, source: bytes, mutations: list[Mutation], signature: str) -> bytes:
    """The smallest input found that fails with the same signature: drop mutations one at a
    time, then cut the tail by halves, keeping each step that still fails the same way."""
    kept = list(mutations)
    for mutation in list(kept):
        trial = [m for m in kept if m is not mutation]
        if trial and reader.read(mutate(source, trial)).signature == signature:
            kept = trial
    data = mutate(source, kept)
    step = len(data) // 2
    while step >= 1:
        if len(data) > step and reader.read(data[:-step]).signature == signature:
            data = data[:-step]
        else:
            step //= 2
    return data


def save_reproducer(data: bytes, note: dict) -> Path:
    REPRODUCERS.mkdir(parents=True, exist_ok=True)
    path = REPRODUCERS / f"{hashlib.sha256(note['signature'].encode()).hexdigest()[:12]}.bin"
    path.write_bytes(data)
    path.with_suffix(".json").write_text(json.dumps(note, indent=2, default=repr) + "\n")
    return path


# --- main ----------------------------------------------------------------------------------


def _dicom_path(name: str) -> str | None:
    from pydicom.data import get_testdata_file

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_testdata_file(name, download=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000, help="inputs to try (default 10000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hang-seconds", type=float, default=20.0, help="a call slower than this is a hang")
    parser.add_argument("--only", type=int, help="run input number ONLY alone (to reproduce it)")
    args = parser.parse_args()

    sources = fuzz_sources(SHARED_DATA if SHARED_DATA.is_dir() else None, _dicom_path)
    indices = [args.only] if args.only is not None else range(args.examples)
    reader = Reader(args.hang_seconds)
    counts: Counter[str] = Counter()
    failures: dict[str, tuple[int, Path]] = {}
    slowest = (0.0, -1, "")
    started = time.perf_counter()
    for index in indices:
        name, mutations = draw_input(args.seed, index, sources)
        outcome = reader.read(mutate(sources[name], mutations))
        counts[outcome.kind] += 1
        if outcome.seconds > slowest[0]:
            slowest = (outcome.seconds, index, name)
        if outcome.is_failure and outcome.signature not in failures:
            data = shrink(reader, sources[name], mutations, outcome.signature)
            note = {
                "signature": outcome.signature,
                "kind": outcome.kind,
                "source": name,
                "seed": args.seed,
                "index": index,
                "mutations": [asdict(m) for m in mutations],
                "detail": outcome.detail,
            }
            failures[outcome.signature] = (index, save_reproducer(data, note))
        if (index + 1) % 1000 == 0:
            print(f"  {index + 1} inputs, {time.perf_counter() - started:.0f} s", flush=True)
    reader.close()

    tried = sum(counts.values())
    print(f"sources: {len(sources)} files ({', '.join(sorted(sources))})")
    print(f"inputs tried: {tried} (seed {args.seed}) in {time.perf_counter() - started:.0f} s")
    print(f"XRayError (clear message): {counts['refused']}")
    print(f"successes (sane image): {counts['image']}")
    for kind in ("crash", "bad image", "bad message", "hang"):
        print(f"{kind}: {counts[kind]}")
    for signature, (index, path) in failures.items():
        print(f"  {signature} (first at input {index}): {path.relative_to(ROOT)}")
    print(f"slowest call: {slowest[0]:.3f} s (input {slowest[1]}, from {slowest[2]})")
    print(
        f"worker peak RSS: {reader.peak_rss_kb / 1024:.0f} MB "
        f"({reader.baseline_rss_kb / 1024:.0f} MB after imports, before the first input)"
    )
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
