"""The Qt GUI: the only package that imports PySide6 / pyqtgraph.

pyqtgraph is imported here, first, without the CUDA bindings it probes for: its
RawImageWidget (which this app never uses) imports ``cuda.bindings.runtime`` whenever
cuda-python is installed (it comes with torch's CUDA wheels), ~55 ms and ~12 MB at every
launch (issue 18). A ``None`` entry in ``sys.modules`` makes that import fail as "not
installed"; it is removed at once, so that torch can still import CUDA later. Every GUI
module imports through this package, so no view can import pyqtgraph before this runs.
"""
import sys

if "pyqtgraph" not in sys.modules and "cuda.bindings" not in sys.modules:
    sys.modules["cuda.bindings"] = None  # type: ignore[assignment]
    try:
        import pyqtgraph  # noqa: F401
    finally:
        del sys.modules["cuda.bindings"]
