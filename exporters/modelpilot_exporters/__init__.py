"""modelpilot exporters: the code the ModelExport Job runs (``modelpilot-export -f FILE``).

Modules: ``cli`` (entry point), ``spec`` (typed view of the manifest), ``sources`` (URIs in and
out), ``pytorch``, ``tensorflow``, ``onnx_ops`` (converters), ``pruning``, ``validate``,
``manifest`` (manifest.json and the termination message), ``pt2_archive`` (what a .pt2 would
execute when loaded), ``progress``, ``pipeline`` (the order of things), ``errors`` (exit codes).
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
