"""Print a table: the offline CLI on each hostile file, its answer, wall time and peak memory.

    python scripts/hostile_decode.py [--checkout PATH]

The files are built by tests/hostile_images.py (a scan-repeat progressive JPEG, an
8000x6200 WebP, an 8000x6200 progressive 4:4:4 JPEG). Each is screened by
``python -m inference --json`` in a process of its own, run from ``--checkout`` (default:
this one), so another checkout's code can be measured on the same files. Peak memory is
the process's own high-water mark (VmHWM). Issue 20's bar: 5 s and 400 MB each.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.hostile_images import CLI_WITH_PEAK, all_hostile  # noqa: E402  # the repo root is on the path now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkout", type=Path, default=REPO_ROOT)
    args = parser.parse_args()
    print(f"{'file':<22}{'bytes':>10}  {'answer':<28}{'wall s':>8}{'peak MB':>9}")
    with tempfile.TemporaryDirectory() as folder:
        for name, data in all_hostile().items():
            path = Path(folder) / name
            path.write_bytes(data)
            started = time.perf_counter()
            child = subprocess.run(  # noqa: S603  # our own interpreter and code
                [sys.executable, "-c", CLI_WITH_PEAK, "--json", "--workers", "1", str(path)],
                cwd=args.checkout,
                capture_output=True,
                text=True,
                check=False,
            )
            elapsed = time.perf_counter() - started
            peak_kb = int(child.stderr.strip().splitlines()[-1].split()[1])
            lines = child.stdout.strip().splitlines()
            # Exit 1 with a record: answered, not screened (the CLI's code for a refused file).
            if child.returncode in (0, 1) and lines:
                record = json.loads(lines[-1])
                answer = f"{record['risk']} {','.join(record['quality']['issues'])}"
            else:
                answer = f"exit {child.returncode}"
            print(f"{name:<22}{len(data):>10}  {answer:<28}{elapsed:>8.2f}{peak_kb / 1024:>9.0f}")


if __name__ == "__main__":
    main()
