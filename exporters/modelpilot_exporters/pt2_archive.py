"""What a ``.pt2`` archive would make ``torch.export.load`` execute, found before it is loaded.

A ``.pt2`` written by ``torch.export.save`` is a zip of JSON (the graph), raw tensor bytes and
small pickles. Most of it is data. Some entries are not, and ``torch.export.load`` runs them:

* weights and constants that the archive's ``*_weights_config.json`` / ``*_constants_config.json``
  mark ``use_pickle`` (loaded with ``torch.load(weights_only=False)``), and ``custom_obj_*`` /
  ``opaque_obj_*`` constants (plain unpickling);
* ``.pt`` payloads (sample inputs, legacy weights and constants), loaded with torch's weights-only
  unpickler first but with ``weights_only=False`` when that fails;
* ``data/aotinductor/``: compiled native code.

An unpickler runs whatever callables the file names, so any of these lets the file's author run
code wherever it is loaded: in the export Job (which holds the source Secret and a writable output
volume) or in the serving pods. :func:`refusal` says why such a file must not be loaded unless the
spec opts in.

Standard library only (torch is imported lazily): the storage initializer also packs this file
into the TorchServe archives it builds, where the handler checks the model again before loading.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

AOTINDUCTOR_DIR = "data/aotinductor/"
PAYLOAD_CONFIGS = {"_weights_config.json": "data/weights/", "_constants_config.json": "data/constants/"}
PICKLED_PREFIXES = ("custom_obj_", "opaque_obj_")


def _payload_config_entries(rel: str, text: bytes) -> list[str]:
    directory = next(d for suffix, d in PAYLOAD_CONFIGS.items() if rel.endswith(suffix))
    config = json.loads(text).get("config") or {}
    return [f"{directory}{meta.get('path_name')} ({fqn}: "
            + ("marked use_pickle" if meta.get("use_pickle") else "a pickled object") + ")"
            for fqn, meta in sorted(config.items())
            if meta.get("use_pickle") or str(meta.get("path_name", "")).startswith(PICKLED_PREFIXES)]


def _needs_full_unpickler(data: bytes) -> bool:
    import torch

    try:
        torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
        return False
    except Exception:  # noqa: BLE001 - whatever the safe unpickler refuses, torch retries unsafely
        return True


def executable_entries(path: Path) -> list[str]:
    """The archive's entries that ``torch.export.load`` would unpickle or execute, with why."""
    found: list[str] = []
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            rel = name.split("/", 1)[1] if "/" in name else name  # drop the archive's root folder
            if rel.startswith(AOTINDUCTOR_DIR):
                found.append(f"{rel} (AOTInductor native code)")
            elif rel.endswith(tuple(PAYLOAD_CONFIGS)):
                found += _payload_config_entries(rel, z.read(name))
            elif rel.endswith(".pt") and _needs_full_unpickler(z.read(name)):
                found.append(f"{rel} (a pickle beyond torch's weights-only unpickler)")
    return found


def refusal(path: Path | str, allow_pickle: bool, field: str) -> str | None:
    """Why the ``.pt2`` at ``path`` must not be loaded, or None. ``field`` is the spec's
    ``allowPickle`` that would allow it."""
    try:
        found = executable_entries(Path(path))
    except (zipfile.BadZipFile, OSError, ValueError, AttributeError, TypeError, StopIteration) as e:
        return f"not a readable .pt2 archive (torch.export.save writes a zip): {type(e).__name__}: {e}"
    if not found or allow_pickle:
        return None
    more = f" and {len(found) - 3} more" if len(found) > 3 else ""
    return (f"refusing to load: the .pt2 holds entries that run code when loaded: {'; '.join(found[:3])}{more}. "
            f"Re-export it with plain tensors, or set {field}: true if you trust whoever wrote the file as you "
            "trust code you run")
