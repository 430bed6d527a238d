"""Collect the parity tests' measured errors into a Markdown table.

KSEG_PARITY_CACHE=.ci-cache/parity python -m pytest -m parity
python tools/parity_report.py .ci-cache/parity/seed0_480x480x1_97x131x2 > benchmarks/PARITY.md
"""

import json
import sys
from pathlib import Path


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    directory = Path(argv[1])
    files = sorted(directory.glob("*.kseg_errors.json"))
    if not files:
        print(f"error: no *.kseg_errors.json in {directory}", file=sys.stderr)
        return 1
    rows = {f.name.removesuffix(".kseg_errors.json"): json.loads(f.read_text()) for f in files}
    columns = sorted({key for errors in rows.values() for key in errors})
    print(f"Relative error ||kseg - gluoncv|| / ||gluoncv||, float32, from `{directory.name}`.\n")
    print("| model | worst | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for name, errors in rows.items():
        cells = " | ".join(f"{errors[c]:.1e}" if c in errors else "–" for c in columns)
        print(f"| {name} | {max(errors.values()):.1e} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
