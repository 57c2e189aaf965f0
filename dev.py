#!/usr/bin/env python3
"""Set-up and run in one step, needing only Python 3.11+ (standard library).

    python3 dev.py start [gbc-demo options]   # the demo site + the PCE sandbox
    python3 dev.py test  [pytest options]     # the whole test suite

Creates ``.venv`` beside this file and installs the project into it (again
only when ``pyproject.toml`` changed). For the browser tests, ``test`` also
installs Debian's Chromium when it is missing and this runs as root with
apt-get (set ``GBC_NO_APT=1`` to skip that); without Chromium those tests skip.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
CHROMIUM = Path("/usr/bin/chromium")


def say(message: str) -> None:
    print(f"[dev.py] {message}", flush=True)


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, cwd=ROOT)


def ensure_venv(extras: str) -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be started by an older python3
        sys.exit("GBC Demo needs Python 3.11 or newer.")
    if not PY.exists():
        say(f"creating {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / ".gbc-demo-installed"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    if not stamp.exists() or stamp.read_text().strip() != wanted:
        say("installing the project and its dependencies into .venv")
        run(str(PY), "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        run(str(PY), "-m", "pip", "install", "--quiet", "-e", f".{extras}")
        stamp.write_text(wanted)


def ensure_chromium() -> None:
    if CHROMIUM.exists():
        return
    apt = shutil.which("apt-get")
    if os.environ.get("GBC_NO_APT") or not apt or os.geteuid() != 0:
        say("Debian's Chromium is not installed: browser tests will be skipped "
            "(sudo apt-get install chromium chromium-driver)")
        return
    say("installing Debian's chromium and chromium-driver for the browser tests")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([apt, "update", "-q"], check=True, env=env)
    subprocess.run([apt, "install", "-y", "-q", "chromium", "chromium-driver"], check=True, env=env)


def main(argv: list[str]) -> int:
    command, rest = (argv[0], argv[1:]) if argv else ("start", [])
    if command == "start":
        ensure_venv("")
        os.execv(str(BIN / "gbc-demo"), [str(BIN / "gbc-demo"), *rest])
    if command == "test":
        ensure_venv("[test]")
        ensure_chromium()
        os.chdir(ROOT)
        os.execv(str(PY), [str(PY), "-m", "pytest", *rest])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
