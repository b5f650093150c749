#!/usr/bin/env python3
"""Makes sure a virtual environment with Label Studio 1.23 exists under the package's .build folder.

Usage: python3 lsenv.py PACKAGE_ROOT
Prints the venv's python path on the last line of stdout. Installs only when `label-studio==1.23.*` is not already
importable there; exits non-zero with the reason on stderr when the venv cannot be made or pip fails.
"""
import os
import subprocess
import sys

REQUIREMENT = "label-studio==1.23.*"


def main() -> int:
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".")
    venv = os.path.join(root, ".build", "label-studio-1.23")
    python = os.path.join(venv, "bin", "python")
    check = ("import importlib.metadata as m, sys; v = m.version('label-studio'); "
             "sys.exit(0 if v.startswith('1.23.') else 1)")
    if os.path.exists(python) and subprocess.run([python, "-c", check]).returncode == 0:
        print(python)
        return 0
    if not os.path.exists(python):
        made = subprocess.run([sys.executable, "-m", "venv", venv], capture_output=True, text=True)
        if made.returncode != 0:
            sys.stderr.write(f"cannot create the virtual environment {venv}: {made.stderr.strip()}\n")
            return 2
    install = subprocess.run([python, "-m", "pip", "install", "--disable-pip-version-check", "--quiet",
                              REQUIREMENT], capture_output=True, text=True)
    if install.returncode != 0:
        tail = "\n".join((install.stderr or install.stdout).strip().splitlines()[-15:])
        sys.stderr.write(f"pip install {REQUIREMENT} into {venv} failed (exit {install.returncode}):\n{tail}\n")
        return 3
    if subprocess.run([python, "-c", check]).returncode != 0:
        sys.stderr.write(f"{REQUIREMENT} is still not importable in {venv} after pip install\n")
        return 4
    print(python)
    return 0


if __name__ == "__main__":
    sys.exit(main())
