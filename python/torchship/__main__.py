"""python3 -m torchship COMMAND: the export side's command line (doctor)."""

import sys

from .doctor import main as doctor_main


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("doctor",):
        print("usage: python3 -m torchship doctor path/to/file.py:ClassName", file=sys.stderr)
        return 2
    return doctor_main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
