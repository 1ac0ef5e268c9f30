"""``modelpilot-parity``: the served-model parity check Job's command (spec.rollout.parityCheck).

It resolves ``export://<name>/<target>`` through the ModelExport's manifest exactly as the storage
initializer does, reads the target's parity record (``parity/<target>.json``, written by the
exporter: the validation inputs and the artifact's own outputs on them), sends each input to the
new revision (``--url``, its Service) and compares the answers within the export's tolerances
(modelpilot.comparator.parity). The verdict, one JSON object, goes to stdout and to the
termination message, where the operator reads it:

    {"passed": true, "samples": 8, "message": "8 recorded inputs answered within atol=1e-4, rtol=1e-3"}
    {"passed": false, "samples": 1, "sample": 0, "output": "logits", "maxAbsDiff": 0.7, "message": "recorded input 0 (...): ..."}

A target without a record (the exporter skips one whose single sample exceeds 1 MiB) passes with
`samples: 0` and says so. Exit codes: 0 passed, 1 a mismatch, 2 bad input (manifest, record).
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelpilot.comparator.compare import PROTOCOLS
from modelpilot.comparator.parity import check_parity, http_sender
from modelpilot.uris import redact_text

from . import sources
from .errors import EXIT_BAD_INPUT, EXIT_EXPORT_FAILED, ExporterError, InputError, one_line
from .manifest import write_termination_message
from .storage_init import resolve_export

RECORD_KEYS = ("atol", "rtol", "inputs", "outputs")


def load_record(args: argparse.Namespace, work: Path) -> tuple[str, dict[str, Any] | None]:
    """(what was checked, its parity record or None when the export kept none)."""
    uri = args.record
    if uri is None:
        target = resolve_export(args.uri, args.manifest, "auto", work, args.endpoint)
        uri = (target.get("parity") or {}).get("uri")
        if not uri:
            return f"target {target['name']!r}", None
    if "://" not in uri:  # a plain path, by hand
        uri = Path(uri).absolute().as_uri()
    path = sources.fetch(uri, work / "parity", endpoint=args.endpoint, field="parity record")
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"parity record {uri}: not readable JSON: {e}") from e
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise InputError(f"parity record {uri}: no {', '.join(missing)}: not a parity record "
                         "(modelpilot_exporters writes parity/<target>.json)")
    return uri, record


def wait_reachable(url: str, seconds: float) -> None:
    """The Service may route a moment after the pod is ready (endpoints, kube-proxy): wait for a connection."""
    u = urllib.parse.urlsplit(url)
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection((u.hostname or "", u.port or 80), timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                return  # the check's first request reports the error
            time.sleep(1)


def run(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="parity-"))
    try:
        what, record = load_record(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if record is None:
        return 0, {"passed": True, "samples": 0, "message": f"{what} has no parity record (see its manifest entry): not checked"}
    wait_reachable(args.url, args.timeout)
    try:
        result = check_parity(record, http_sender(args.url, args.timeout), args.protocol, args.model)
    except (KeyError, TypeError, ValueError) as e:  # entries without dtype/data, inputs and outputs of unequal length
        raise InputError(f"parity record {what}: malformed ({type(e).__name__}: {e}); the exporter writes "
                         '{"inputs": [{"<name>": {"dtype", "data"}}], "outputs": [{"<name>": values}]}, one entry per sample') from e
    return (0 if result.passed else EXIT_EXPORT_FAILED), result.to_dict()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="modelpilot-parity", description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--uri", help="export://<ModelExport>/<target>, with --manifest")
    src.add_argument("--record", help="a parity record itself (a path or URI), for a check by hand")
    ap.add_argument("--manifest", help="the ModelExport's status.manifestUri")
    ap.add_argument("--url", required=True, help="base URL of the revision's Service")
    ap.add_argument("--protocol", required=True, choices=PROTOCOLS)
    ap.add_argument("--model", required=True, help="the model's name in the runtime (spec.model.name)")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    ap.add_argument("--endpoint", help="S3 endpoint override")
    args = ap.parse_args(argv)
    if args.uri and not args.manifest:
        ap.error("--uri needs --manifest (the ModelExport's status.manifestUri)")
    try:
        code, verdict = run(args)
    except ExporterError as e:
        code, verdict = e.exit_code, {"passed": False, "samples": 0, "message": e.message}
    except OSError as e:
        code, verdict = EXIT_BAD_INPUT, {"passed": False, "samples": 0, "message": one_line(f"{args.uri or args.record}: {e}")}
    verdict["message"] = redact_text(verdict["message"])
    text = json.dumps(verdict)
    print(text, flush=True)
    write_termination_message(text[:4000])
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
