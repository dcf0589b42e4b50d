"""Builds the Rust C library (cargo build --release -p runnel-ffi) and puts it, with its header,
inside the package: `pip install ./python` needs only Rust and Python."""

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

ROOT = Path(__file__).resolve().parent.parent


class BuildWithLibrary(build_py):
    def run(self):
        subprocess.check_call(["cargo", "build", "--release", "-p", "runnel-ffi"], cwd=ROOT)
        target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
        if not target.is_absolute():
            target = ROOT / target
        super().run()
        out = Path(self.build_lib) / "runnel"
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(target / "release" / "librunnel_ffi.so", out / "librunnel.so")
        shutil.copy(ROOT / "include" / "runnel.h", out / "runnel.h")


class BinaryDistribution(Distribution):
    """The wheel carries a native library: tag it for this platform."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildWithLibrary}, distclass=BinaryDistribution)
