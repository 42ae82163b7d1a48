"""The front-door fuzz of tests/test_fuzz.py, for longer: its 500 cases times --scale (default 20: 10,000).

    .venv/bin/python bench/fuzz_specs.py [--scale 20]

Mutated specs must compile or exit 2 naming what is wrong (never a traceback, never a plan left behind),
mutated plans must be read or refused the same way, and text that is not YAML must exit 2. Derandomized:
the same scale runs the same cases, so a failure reproduces.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=20, help="times the 500 cases CI runs")
    args = parser.parse_args()
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(REPO / "tests" / "test_fuzz.py")]
    sys.exit(subprocess.run(command, cwd=REPO, env={**os.environ, "SHEARC_FUZZ_SCALE": str(args.scale)}).returncode)


if __name__ == "__main__":
    main()
