"""Run every benchmark (bench/bench_*.py) and write their figures to a markdown table.

    make bench                    # = python bench/run.py --output bench/RESULTS.md
    python bench/run.py --only filter
    python bench/run.py --only sandbox  # code sandbox: stdin tests/s, one run per test vs one per program

Each bench module exposes ``run() -> list[dict]`` with keys benchmark, metric, value, unit, notes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import platform
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--only", action="append", default=[], help="run only bench_<name>.py (repeatable)")
    args = parser.parse_args()
    rows, failures = [], []
    for path in sorted(HERE.glob("bench_*.py")):
        if args.only and path.stem.removeprefix("bench_") not in args.only:
            continue
        print(f"== {path.stem}", flush=True)
        try:
            rows.extend(_load(path).run())
        except Exception:  # noqa: BLE001 - report and go on with the other benchmarks
            failures.append(path.stem)
            traceback.print_exc()
    import os

    lines = [
        "# Benchmarks",
        "",
        f"Measured {dt.date.today().isoformat()} on {platform.machine()} with {os.cpu_count()} cores "
        f"(`make bench`). Python {platform.python_version()}.",
        "",
        "| benchmark | metric | value | unit | notes |",
        "|---|---|---:|---|---|",
    ]
    for row in rows:
        value = row.get("value")
        value = f"{value:.3g}" if isinstance(value, float) else str(value)
        lines.append(f"| {row.get('benchmark', '')} | {row.get('metric', '')} | {value} | {row.get('unit', '')} | "
                     f"{row.get('notes', '')} |")
    if failures:
        lines += ["", f"Failed: {', '.join(failures)} (see the log)."]
    Path(args.output).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
