"""lipc: a compiler for Lipschitz networks trained with clipless DP-SGD."""

from importlib import metadata

try:
    __version__ = metadata.version("lipc")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from lipc.compiler import CompiledNetwork, compile, compile_source  # noqa: E402  (after __version__)
from lipc.errors import LipcError  # noqa: E402

__all__ = ["CompiledNetwork", "LipcError", "__version__", "compile", "compile_source"]
