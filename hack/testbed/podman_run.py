"""Run a rendered Kubernetes container with podman, as a kubelet would run it.

Used by the image tests (tests/images) and by hack/testbed/kubelet_run.py --image (hack/demo.sh).

`run_args` turns the container of a rendered pod (command, args, env, volume mounts, working
directory, and the pod's and container's securityContext) into `podman run` arguments. Volumes are
host directories chosen by the test (a ConfigMap's files, an emptyDir, a PersistentVolume); the
termination message file is bind-mounted at /dev/termination-log as the kubelet does.

A read-only root filesystem is applied without podman's convenience tmpfs mounts (/tmp, /run,
/var/tmp): a container that writes where the pod gives it no volume fails here as in a cluster.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

HACK = Path(__file__).resolve().parents[1]


def _lib(expr: str) -> str:
    """Evaluate a hack/lib.sh function, so that tests and scripts agree on names and flags."""
    return subprocess.run(["bash", "-c", f"source {HACK}/lib.sh && {expr}"], check=True, capture_output=True,
                          text=True).stdout.strip()


ENGINE = _lib("container_engine")
ENGINE_CMD = shlex.split(_lib(f"ENGINE={ENGINE} engine_cmd"))
RUN_FLAGS = shlex.split(_lib(f"ENGINE={ENGINE} engine_run_flags"))


def image_ref(name: str) -> str:
    """The reference hack/build-images.sh tags an image with."""
    return f"{_lib('image_registry')}/{name}:{_lib('image_tag')}"


def engine(*args: str, check: bool = True, timeout: float = 900, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run([*ENGINE_CMD, *args], check=check, capture_output=True, text=True, timeout=timeout, **kw)


def image_config(ref: str) -> dict[str, Any]:
    return json.loads(engine("image", "inspect", ref).stdout)[0]["Config"]


def _security(pod: Mapping[str, Any], container: Mapping[str, Any]) -> list[str]:
    psc, csc = pod.get("securityContext") or {}, container.get("securityContext") or {}
    args: list[str] = []
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    gid = csc.get("runAsGroup", psc.get("runAsGroup"))
    if uid is not None:
        args += ["--user", f"{uid}:{gid if gid is not None else uid}"]
    if psc.get("fsGroup") is not None:
        args += ["--group-add", str(psc["fsGroup"])]
    if csc.get("readOnlyRootFilesystem"):
        args += ["--read-only", "--read-only-tmpfs=false"] if ENGINE == "podman" else ["--read-only"]
    drop = (csc.get("capabilities") or {}).get("drop") or []
    args += [f"--cap-drop={c}" for c in drop]
    if csc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    return args


def _env(container: Mapping[str, Any], secrets: Mapping[str, Mapping[str, str]],
         field_refs: Mapping[str, str]) -> list[str]:
    """env and envFrom: Secrets from `secrets`, downward-API fields from `field_refs`."""
    args: list[str] = []
    for src in container.get("envFrom") or []:
        name = (src.get("secretRef") or {}).get("name")
        for k, v in secrets[name].items():
            args += ["-e", f"{src.get('prefix', '')}{k}={v}"]
    for e in container.get("env") or []:
        value = e["value"] if "value" in e else field_refs[e["valueFrom"]["fieldRef"]["fieldPath"]]
        args += ["-e", f"{e['name']}={value}"]
    return args


def run_args(pod: Mapping[str, Any], container: Mapping[str, Any], volumes: Mapping[str, Path], *,
             termination_log: Path, secrets: Mapping[str, Mapping[str, str]] | None = None,
             network: str = "host", image: str | None = None, detach: bool = False, name: str | None = None,
             field_refs: Mapping[str, str] | None = None) -> list[str]:
    """`podman run` arguments for one container of a rendered pod (see the module docstring)."""
    args = ["run", "--rm", *RUN_FLAGS, "--network", network, *_security(pod, container)]
    if detach:
        args.append("-d")
    if name:
        args += ["--name", name]
    args += _env(container, secrets or {}, field_refs or {})
    mounts = {m["mountPath"] for m in container.get("volumeMounts") or []}
    for m in container.get("volumeMounts") or []:
        if m["name"] not in volumes:
            raise KeyError(f"the test gives no host directory for volume {m['name']!r}")
        args += ["-v", f"{volumes[m['name']]}:{m['mountPath']}{':ro' if m.get('readOnly') else ''}"]
    if "/dev/termination-log" not in mounts:
        termination_log.touch()
        os.chmod(termination_log, 0o666)
        args += ["-v", f"{termination_log}:/dev/termination-log"]
    if container.get("workingDir"):
        args += ["-w", container["workingDir"]]
    if container.get("command"):
        args += ["--entrypoint", json.dumps(container["command"])]
    return [*args, image or container["image"], *(container.get("args") or [])]


def writable(path: Path, uid: int = 1000) -> Path:
    """A host directory the pod's user may write, as fsGroup makes a volume writable in a cluster."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, uid)
    return path


def config_map_dir(path: Path, data: Mapping[str, str]) -> Path:
    """A ConfigMap volume: one file per key (read-only for the pod)."""
    path.mkdir(parents=True, exist_ok=True)
    for key, body in data.items():
        (path / key).parent.mkdir(parents=True, exist_ok=True)
        (path / key).write_text(body)
    return path
