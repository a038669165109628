"""`python -m edgeseg.ros2 ...` is `edgeseg ros2 ...` (for launch files that start a Python module)."""

from __future__ import annotations

import sys


def main() -> None:
    from edgeseg.cli import main as cli_main

    sys.argv[1:1] = ["ros2"]
    cli_main()


if __name__ == "__main__":
    main()
