"""Loads librunnel through cffi (ABI mode), declaring it from the very header the library was built
with: the declarations cannot drift from the C side."""

from __future__ import annotations

import os
import re
from pathlib import Path

import cffi

_HERE = Path(__file__).resolve().parent


def _header_text() -> str:
    for candidate in (_HERE / "runnel.h", _HERE.parent.parent / "include" / "runnel.h"):
        if candidate.exists():
            return candidate.read_text()
    raise ImportError("runnel.h not found next to the package: reinstall it with `pip install ./python`")


def _cdef_and_constants(header: str) -> tuple[str, dict[str, int]]:
    """The header without comments and preprocessor lines (which cffi's parser does not take), and
    its integer #define constants."""
    text = re.sub(r"/\*.*?\*/", "", header, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    constants: dict[str, int] = {}
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            m = re.match(r"#define\s+(RUNNEL_\w+)\s+(-?\d+)\s*$", stripped)
            if m:
                constants[m.group(1)] = int(m.group(2))
            continue
        if stripped == 'extern "C" {':
            continue
        lines.append(line)
    body = "\n".join(lines)
    # The C++ guard's closing brace, if cbindgen emitted one on a line of its own after the last
    # declaration, is not C: drop an unmatched trailing brace.
    if body.count("{") < body.count("}"):
        idx = body.rfind("}")
        body = body[:idx] + body[idx + 1 :]
    return body, constants


def _library_path() -> str:
    override = os.environ.get("RUNNEL_LIBRARY")
    if override:
        return override
    bundled = _HERE / "librunnel.so"
    if bundled.exists():
        return str(bundled)
    # Run from a source checkout (python/runnel): the library cargo built.
    for profile in ("release", "debug"):
        built = _HERE.parent.parent / "target" / profile / "librunnel_ffi.so"
        if built.exists():
            return str(built)
    raise ImportError("librunnel.so not found next to the package: reinstall it with `pip install ./python`")


ffi = cffi.FFI()
_cdef, CONSTANTS = _cdef_and_constants(_header_text())
ffi.cdef(_cdef)
lib = ffi.dlopen(_library_path())
