#!/usr/bin/env python3
"""Play the kubelet for one Job on the kwok test bed: run its container's command for real, here.

kwok fakes nodes, so nothing executes inside a pod. This does what a kubelet would for the Job's
(single) container, as the operator rendered it:

- the command is the console script of that name next to this Python (the exporter's
  `modelpilot-export`, installed in the same virtualenv), with the container's args and env;
- ConfigMap volumes become local directories holding the ConfigMap's keys, and args that point
  into a mount point are rewritten to the local copy;
- PersistentVolumeClaim mounts (/mnt/pvc/<claim>) live under --pvc-root (MODELPILOT_PVC_ROOT);
- the termination-message path becomes a local file (MODELPILOT_TERMINATION_LOG).

With --image, the container runs in its image instead, with podman, as the kubelet would run it
(hack/testbed/podman_run.py: the rendered securityContext, ConfigMaps, emptyDirs and claims as
host directories, the termination message file at /dev/termination-log).

It then hands the real exit code and termination message to kwok through pod annotations
(`kwok.modelpilot.io/exit-code`, `kwok.modelpilot.io/termination-message`), which the test bed's
`modelexport-pod-complete` stage (hack/testbed/kwok-stages.yaml) writes into the container status
exactly where a kubelet would. From there on everything is the real control plane.

    hack/testbed/kubelet_run.py -n NAMESPACE JOB --pvc-root DIR [--image] [--kubeconfig FILE] [--workdir DIR]

Used by tests/e2e/test_modelexport.py and hack/demo.sh. Exits with the command's exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Kubectl = Callable[..., subprocess.CompletedProcess]
ANNOTATION_EXIT_CODE = "kwok.modelpilot.io/exit-code"
ANNOTATION_MESSAGE = "kwok.modelpilot.io/termination-message"


def kubectl_for(kubeconfig: str | None, binary: str = "kubectl") -> Kubectl:
    """A `kubectl(*args, input=None, check=True)` like the tests' fixture."""
    def run(*args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [binary, *(["--kubeconfig", kubeconfig] if kubeconfig else []), *args]
        r = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
        return r
    return run


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def get_job(kubectl: Kubectl, ns: str, name: str, timeout: float = 60) -> dict[str, Any]:
    def fetch() -> dict[str, Any] | None:
        r = kubectl("-n", ns, "get", "job", name, "-o", "json", check=False)
        return json.loads(r.stdout) if r.returncode == 0 else None
    return wait_for(fetch, timeout, f"Job {ns}/{name}")


def run_job(kubectl: Kubectl, ns: str, job: dict[str, Any], pvc_root: Path, workdir: Path,
            stream: Any = sys.stderr) -> tuple[int, str]:
    """Run the Job's container command for real, with its env and volumes mapped onto local paths."""
    pod_spec = job["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
    mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
    path_map: dict[str, str] = {}
    for vol in pod_spec.get("volumes", []):
        if "configMap" in vol and vol["name"] in mounts:
            cm = json.loads(kubectl("-n", ns, "get", "configmap", vol["configMap"]["name"], "-o", "json").stdout)
            local = workdir / vol["name"]
            local.mkdir(parents=True, exist_ok=True)
            for key, value in (cm.get("data") or {}).items():
                (local / key).write_text(value)
            path_map[mounts[vol["name"]].rstrip("/")] = str(local)
    env["MODELPILOT_PVC_ROOT"] = str(pvc_root)  # the PVC mounts, /mnt/pvc/<claim>, live here
    termination_log = workdir / "termination-log"
    termination_log.unlink(missing_ok=True)
    env["MODELPILOT_TERMINATION_LOG"] = str(termination_log)
    env["HOME"] = str(workdir)

    def local(arg: str) -> str:
        for mount, there in path_map.items():
            if arg == mount or arg.startswith(mount + "/"):
                return there + arg[len(mount):]
        return arg

    args = [local(a) for a in container.get("args", [])]
    command = container["command"]
    exe = Path(sys.executable).with_name(command[0])
    proc = subprocess.run([str(exe) if exe.exists() else command[0], *command[1:], *args],
                          env=env, capture_output=True, text=True, timeout=900)
    if stream is not None:
        stream.write(proc.stderr[-3000:])
    message = termination_log.read_text() if termination_log.exists() else proc.stderr[-1024:]
    return proc.returncode, message


def run_job_in_image(kubectl: Kubectl, ns: str, job: dict[str, Any], pvc_root: Path, workdir: Path,
                     stream: Any = sys.stderr) -> tuple[int, str]:
    """Run the Job's container in its image with podman; volumes become directories under workdir
    (ConfigMaps, emptyDirs) and pvc_root/<claim> (claims, writable by the pod's user when mounted so)."""
    import podman_run

    pod_spec = job["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    uid = (pod_spec.get("securityContext") or {}).get("runAsUser", 1000)
    volumes: dict[str, Path] = {}
    for vol in pod_spec.get("volumes", []):
        name = vol["name"]
        if "configMap" in vol:
            cm = json.loads(kubectl("-n", ns, "get", "configmap", vol["configMap"]["name"], "-o", "json").stdout)
            volumes[name] = podman_run.config_map_dir(workdir / name, cm.get("data") or {})
        elif "emptyDir" in vol:
            volumes[name] = podman_run.writable(workdir / name, uid)
        elif "persistentVolumeClaim" in vol:
            claim = pvc_root / vol["persistentVolumeClaim"]["claimName"]
            read_only = vol["persistentVolumeClaim"].get("readOnly", False)
            volumes[name] = claim if read_only else podman_run.writable(claim, uid)
    termination_log = workdir / "termination-log"
    r = podman_run.engine(*podman_run.run_args(pod_spec, container, volumes, termination_log=termination_log),
                          check=False, timeout=900)
    if stream is not None:
        stream.write(r.stderr[-3000:])
    message = termination_log.read_text() if termination_log.exists() else ""
    return r.returncode, message or r.stderr[-1024:]


def hand_result_to_kwok(kubectl: Kubectl, ns: str, job_name: str, code: int, message: str, timeout: float = 60) -> str:
    """Annotate the Job's Running pod with the result; kwok then completes it. Returns the pod name."""
    def running() -> list[dict[str, Any]]:
        pods = json.loads(kubectl("-n", ns, "get", "pods", "-l", f"batch.kubernetes.io/job-name={job_name}",
                                  "-o", "json").stdout)["items"]
        return [p for p in pods if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]
    pod = wait_for(running, timeout, f"the pod of Job {ns}/{job_name} Running")[0]
    name = pod["metadata"]["name"]
    kubectl("-n", ns, "annotate", "--overwrite", "pod", name, f"{ANNOTATION_EXIT_CODE}={code}",
            f"{ANNOTATION_MESSAGE}={message}")
    return name


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kubelet_run.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job", help="the Job's name")
    p.add_argument("-n", "--namespace", required=True)
    p.add_argument("--pvc-root", required=True, type=Path, help="directory holding one subdirectory per PVC claim")
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    p.add_argument("--kubectl", default="kubectl", help="kubectl binary")
    p.add_argument("--workdir", type=Path, help="where mounted ConfigMaps and the termination log go (default: a temporary directory)")
    p.add_argument("--timeout", type=float, default=120, help="seconds to wait for the Job and its Running pod")
    p.add_argument("--image", action="store_true", help="run the container in its image with podman (hack/build-images.sh)")
    args = p.parse_args(argv)
    kubectl = kubectl_for(args.kubeconfig, args.kubectl)
    job = get_job(kubectl, args.namespace, args.job, args.timeout)
    with tempfile.TemporaryDirectory(prefix="kubelet-run-") as tmp:
        run = run_job_in_image if args.image else run_job
        code, message = run(kubectl, args.namespace, job, args.pvc_root, args.workdir or Path(tmp))
    pod = hand_result_to_kwok(kubectl, args.namespace, args.job, code, message, args.timeout)
    print(f"ran Job {args.namespace}/{args.job}: exit code {code}; handed to kwok on pod {pod}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
