"""Every rendered pod gives its containers a writable volume wherever they write.

All containers run with a read-only root filesystem. A process writes to $HOME, $TMPDIR, its working
directory and the log or state directories its environment names; each of these must lie on a
volume mounted read-write (the images set HOME and TMPDIR to /tmp). A pod that needs a writable
path the image does not provide fails here, before it fails in a cluster.
"""

from __future__ import annotations

import re

import pytest

from modelpilot.api.modeldeployment import parse_model_deployment
from modelpilot.config import OWN_IMAGES, parse_config
from modelpilot.export.job import build_export_job
from modelpilot.render import build_revision_deployment

from podman_run import image_config

CONFIG = parse_config({"nodePools": {"cpu": {"nodeSelector": {"modelpilot.io/pool": "cpu"}}}})
WRITE_ENV = re.compile(r"^(HOME|TMPDIR|TMP|TEMP|.*_(LOCATION|DIR|LOG|CACHE|HOME))$")


def rendered_pods():
    for fmt in ("onnx", "pytorch", "tensorflow"):
        body = {"metadata": {"name": "m", "namespace": "n", "uid": "u", "generation": 1},
                "spec": {"source": {"uri": "pvc://models/m", "format": fmt}, "targets": [{"format": "onnx"}],
                         "output": {"uri": "pvc://artifacts/m"}}}
        yield f"export-{fmt}", build_export_job(body, "m-export-g1", CONFIG)["spec"]["template"]["spec"]
    for kind, fmt in (("triton", "onnx"), ("torchserve", "torchscript"), ("tfserving", "savedmodel")):
        md = parse_model_deployment({"metadata": {"name": "m", "namespace": "n", "uid": "u", "generation": 1},
                                     "spec": {"model": {"uri": "https://x/m", "format": fmt}, "runtime": {"kind": kind},
                                              "replicas": 1, "placement": {"nodePool": "cpu"}}})
        yield f"serve-{kind}", build_revision_deployment(md, 1, CONFIG, 1)["spec"]["template"]["spec"]


def writes(container: dict, image_env: dict[str, str]) -> dict[str, str]:
    """Paths the container's process writes: what it is told to use, and where it starts."""
    env = {**image_env, **{e["name"]: e["value"] for e in container.get("env") or [] if "value" in e}}
    paths = {k: v for k, v in env.items() if WRITE_ENV.match(k) and v.startswith("/") and v != "/dev/termination-log"}
    if image_env:  # one of our images: its HOME too (a vendor image's environment is its vendor's)
        paths.setdefault("HOME", image_env.get("HOME", "/"))
    if container.get("workingDir"):
        paths["workingDir"] = container["workingDir"]
    return paths


def own_image(ref: str) -> str | None:
    name = ref.rsplit("/", 1)[-1].split(":")[0]
    return name if name in OWN_IMAGES or name == "operator" else None


@pytest.mark.parametrize("name, pod", list(rendered_pods()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_write_path_is_on_a_writable_volume(images, name: str, pod: dict) -> None:
    for c in [*pod.get("initContainers", []), *pod["containers"]]:
        assert c["securityContext"]["readOnlyRootFilesystem"] is True, f"{name}/{c['name']}"
        own = own_image(c["image"])
        image_env = dict(e.split("=", 1) for e in image_config(images[own])["Env"]) if own else {}
        rw = [m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")]
        for what, path in writes(c, image_env).items():
            assert any(path == m or path.startswith(m.rstrip("/") + "/") for m in rw), (
                f"{name}/{c['name']}: {what}={path} is not on a writable volume (read-write mounts: {rw})")
