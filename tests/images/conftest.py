"""Fixtures of the image tests: the images themselves, built by hack/build-images.sh.

The session fixture runs the build script (a no-op within seconds when nothing changed; .ci/run
builds them first and reports the cost), so `hack/test.sh tests/images` works on its own.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "hack" / "testbed"))
from podman_run import image_ref  # noqa: E402  (hack/testbed/podman_run.py, shared with kubelet_run.py)
IMAGES = ("operator", "storage-init", "exporter-onnx", "exporter-pytorch", "exporter-tensorflow", "torchserve")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/images/" in str(item.fspath):
            item.add_marker(pytest.mark.images)


@pytest.fixture(scope="session")
def images() -> Iterator[dict[str, str]]:
    r = subprocess.run([str(REPO / "hack" / "build-images.sh")], capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, f"hack/build-images.sh failed:\n{r.stderr[-4000:]}"
    yield {name: image_ref(name) for name in IMAGES}
from tests.runtimes.conftest import two_heads  # noqa: F401  (the TwoHeads model files, shared)
