#!/usr/bin/env bash
# Installs the Python package from scratch into a virtual environment (target/py-venv, created
# once; cffi and pytest come from PyPI) with the one command a user runs, `pip install ./python`
# (which builds the C library with cargo), then runs its pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${CARGO_TARGET_DIR:-target}/py-venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
venv=$(cd "$venv" && pwd)
"$venv/bin/pip" install --quiet --disable-pip-version-check cffi pytest
"$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps ./python
# Run from outside the source tree, so that the installed package is the one imported.
(cd python/tests && "$venv/bin/python" -m pytest -q -p no:cacheprovider .)
