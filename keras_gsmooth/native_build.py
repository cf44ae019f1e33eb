"""Compiling the native kernels' C++ sources into a cached shared library.

`native_tensorflow.py` and `native_torch.py` compile the sources in
`keras_gsmooth/kernels/` at first use with the C++ compiler `$CXX` (default
`g++`), once per source text, framework version and flags: the library is
cached in `$KERAS_GSMOOTH_CACHE` (default `~/.cache/keras_gsmooth`, or
`$XDG_CACHE_HOME/keras_gsmooth`).
"""

import functools
import hashlib
import os
import pathlib
import shutil
import subprocess
import tempfile
import warnings
from typing import Callable

KERNELS = pathlib.Path(__file__).parent / "kernels"
# The element loops both libraries include.
HEADER = KERNELS / "smoothed_leaky_relu.h"
OWN_FLAGS = ("-O3", "-fPIC", "-shared", "-std=c++17", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd", "-w")


class KernelBuildError(RuntimeError):
    """Native kernels could not be compiled or loaded."""


def compiler() -> str:
    """The C++ compiler: `$CXX`, default `g++`."""
    return os.environ.get("CXX", "g++")


def loads(setting, library: Callable, fallback: str, setter: str) -> bool:
    """Whether `library()` loads, under a kernel setting that is `True` or `"auto"`.

    With `True` a failure raises; with `"auto"` it warns once, saying that
    `fallback` runs instead and that `keras_gsmooth.config.<setter>(False)`
    silences the warning.

    Raises:
        KernelBuildError: with the setting `True`, when the kernels do not compile.
    """
    if setting is True:
        library()
        return True
    try:
        library()
    except KernelBuildError as error:
        _warn_once(f"{error} {fallback} Choose them with keras_gsmooth.config.{setter}(False) to silence this warning.")
        return False
    return True


@functools.cache
def _warn_once(message: str) -> None:
    warnings.warn(message, stacklevel=4)


def built_library(name: str, source: pathlib.Path, version: str, command: Callable, what: str) -> pathlib.Path:
    """The cached library's path, compiling it first where the cache does not hold it.

    Args:
        name: The library's file name stem.
        source: The C++ source file, which includes `HEADER`.
        version: The framework version the library is built for ("" for none).
        command: `command(output) -> list`, the compiler call that builds the
            library into `output`.
        what: What the library is, for error messages ("the native
            TensorFlow kernels").

    Raises:
        KernelBuildError: when no compiler is found or the compilation fails.
    """
    key_parts = [source.read_text(), HEADER.read_text(), version, *command("OUTPUT")]
    key = hashlib.sha256("\0".join(key_parts).encode()).hexdigest()[:16]
    path = _cache_directory() / f"{name}-{key}.so"
    if not path.exists():
        _compile(path, command, what)
    return path


def _cache_directory() -> pathlib.Path:
    root = os.environ.get("KERAS_GSMOOTH_CACHE")
    if root is None:
        root = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / "keras_gsmooth"
    return pathlib.Path(root)


def _compile(path: pathlib.Path, command: Callable, what: str) -> None:
    """Compiles into `path`, through a temporary file so that concurrent processes never load half a file."""
    name = compiler()
    if shutil.which(name) is None:
        raise KernelBuildError(
            f"keras_gsmooth: {what} need a C++ compiler, and {name!r} (from $CXX, default g++) "
            "was not found. Install g++ or set CXX."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        built = pathlib.Path(scratch) / path.name
        result = subprocess.run(command(built), capture_output=True, text=True)
        if result.returncode != 0:
            summary = " ".join(result.stderr.split())
            raise KernelBuildError(
                f"keras_gsmooth: compiling {what} with {name} failed "
                f"(exit status {result.returncode}): {summary[-400:]}"
            )
        os.replace(built, path)
