"""Alert rule evaluation cost (issue 22): 1,000 rules of every kind (70 %
thresholds, 10 % rate, 10 % z-score, 10 % absence, one metric each, BY
device) over Silver-shaped rows of 2,000 and 200,000 series, one core;
prints points/s per core and the cores 1 M points/s needs.

Run by ``benches/run.sh alerts [--rules N] [--points N]`` (release build of
crates/weir-alert/examples/rule_bench.rs). Results: benches/results/alerts-*.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "examples" / "rule_bench"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", type=int, default=1000)
    ap.add_argument("--points", type=int, default=4_000_000)
    ap.add_argument("--series", type=int, nargs="*", default=[2_000, 200_000])
    args = ap.parse_args()
    runs = []
    for rules in sorted({100, args.rules}):
        for series in args.series:
            out = subprocess.run([str(BIN), "--rules", str(rules), "--series", str(series),
                                  "--points", str(args.points)], check=True, capture_output=True, text=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'rules':>6} {'series':>8} {'points/s/core':>14} {'cores for 1M pts/s':>19}")
    for r in runs:
        print(f"{r['rules']:>6} {r['series']:>8} {r['points_per_s_per_core']:>14,.0f} "
              f"{r['cores_for_1m_points_per_s']:>19.2f}")
    results = ROOT / "benches" / "results"
    results.mkdir(exist_ok=True)
    path = results / f"alerts-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(runs, indent=2))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
