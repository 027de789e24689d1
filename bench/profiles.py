"""Sampling profiles of the service during a scenario, with py-spy, and their summaries.

It owns attaching ``py-spy record`` to a running service for the length of a scenario
(``python -m bench --profile DIR``; py-spy is not a project dependency: ``pip install
py-spy`` into the venv), stopping it so it writes its raw collapsed stacks, and turning
those stacks into a short text summary: samples per thread, and the functions and files
where the samples sit, by self and by inclusive count. Profiling costs the service some
speed, so figures from a profiled run are not the ones to quote.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from bench.procs import Proc


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


class Profiler:
    """Records one raw profile per scenario run into ``outdir``."""

    def __init__(self, outdir: Path, rate: int = 200) -> None:
        exe = py_spy()
        if exe is None:
            raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
        self.exe = exe
        self.outdir = outdir
        self.rate = rate
        outdir.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def attach(self, proc: Proc, name: str) -> Iterator[None]:
        raw = self.outdir / f"{name}.txt"
        spy = subprocess.Popen(
            [
                self.exe,
                "record",
                "--pid",
                str(proc.pid),
                "--rate",
                str(self.rate),
                "--format",
                "raw",
                "--function",
                "--threads",
                "--nonblocking",
                "--output",
                str(raw),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # py-spy needs a moment to attach before the measured part starts
        try:
            yield
        finally:
            if spy.poll() is None:
                spy.send_signal(signal.SIGINT)
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(5)
            if raw.exists():
                (self.outdir / f"{name}.top.txt").write_text(summarise(raw.read_text()))


def _file_of(frame: str) -> str:
    """``claim (dlrpush/store/sqlite.py:580)`` -> ``dlrpush/store/sqlite.py``."""
    start = frame.rfind("(")
    if start < 0:
        return frame
    return frame[start + 1 :].rstrip(")").rsplit(":", 1)[0]


def summarise(raw: str, top: int = 30) -> str:
    """Samples per thread; top functions and files by self samples; top by inclusive."""
    threads: Counter[str] = Counter()
    self_fn: Counter[str] = Counter()
    self_file: Counter[str] = Counter()
    incl_fn: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if frames and frames[0].startswith(("process ", "thread ")):
            while frames and frames[0].startswith(("process ", "thread ")):
                thread = frames.pop(0)
            threads[thread] += count
        if not frames:
            continue
        total += count
        self_fn[frames[-1]] += count
        self_file[_file_of(frames[-1])] += count
        for frame in set(frames):
            incl_fn[frame] += count

    def table(title: str, counter: Counter[str]) -> list[str]:
        out = [f"\n{title}"]
        for key, n in counter.most_common(top):
            out.append(f"{100 * n / max(1, total):6.1f}%  {n:7d}  {key}")
        return out

    lines = [f"{total} samples (active threads only)"]
    lines += table("by thread", threads)
    lines += table("self, by file", self_file)
    lines += table("self, by function", self_fn)
    lines += table("inclusive, by function", incl_fn)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(f"== {path}")
        print(summarise(Path(path).read_text()))
