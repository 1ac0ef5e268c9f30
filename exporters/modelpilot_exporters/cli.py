"""``modelpilot-export -f FILE``: run a ModelExport locally, exactly as the export Job does.

FILE is a ModelExport manifest (the YAML a user applies; ``-`` reads stdin). A multi-document file
must hold exactly one ``kind: ModelExport`` document, or pick one with ``--name``.

Exit codes: 0 success; 1 the export or its validation failed; 2 bad input (spec, source,
credentials, calibration data). The last line on stderr is the one-line error. The compact JSON
result goes to the termination-message file (env ``MODELPILOT_TERMINATION_LOG``, default
``/dev/termination-log`` when it exists); ``--json`` also prints it on stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from modelpilot.uris import redact_text

from .errors import EXIT_BAD_INPUT, InputError, SpecError
from .manifest import termination_message, write_termination_message
from .progress import Progress
from .spec import ExportSpec, parse_manifest


def load_spec(path: str, name: str | None = None, output: str | None = None) -> ExportSpec:
    import yaml

    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from e
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML: {e}") from e
    cands = [d for d in docs if isinstance(d, dict) and d.get("kind", "ModelExport") == "ModelExport"]
    if name:
        cands = [d for d in cands if (d.get("metadata") or {}).get("name") == name]
    if len(cands) != 1:
        raise InputError(f"{path}: expected exactly one ModelExport document"
                         f"{' named ' + repr(name) if name else ''}, found {len(cands)}")
    doc = cands[0]
    if output:
        doc = dict(doc)
        spec = dict(doc.get("spec") or {})
        spec["output"] = {**(spec.get("output") or {}), "uri": output}
        doc["spec"] = spec
    return parse_manifest(doc)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="modelpilot-export", description=__doc__.split("\n\n")[0])
    ap.add_argument("-f", "--filename", required=True, help="ModelExport manifest (YAML or JSON; - for stdin)")
    ap.add_argument("--name", help="pick the ModelExport with this metadata.name from a multi-document file")
    ap.add_argument("--output", help="override spec.output.uri (e.g. file:///tmp/out)")
    ap.add_argument("--json", action="store_true", help="also print the compact JSON result on stdout")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress lines, only errors")
    args = ap.parse_args(argv)
    progress = Progress(quiet=args.quiet)
    try:
        spec = load_spec(args.filename, args.name, args.output)
    except (SpecError, InputError) as e:
        _fail_early(e.message, args.json)
        return EXIT_BAD_INPUT
    progress.log(f"ModelExport {spec.name}: {spec.source.format} {spec.source.uri} -> "
                 f"{', '.join(f'{t.name}({t.format})' for t in spec.targets)} -> {spec.output_uri}")
    from .pipeline import run

    res = run(spec, progress)
    write_termination_message(res.termination)
    if args.json:
        print(res.termination)
    if res.phase == "Succeeded":
        progress.log(f"Succeeded: {res.message}; manifest {res.manifest_uri}")
    else:
        print(f"modelpilot-export: error: {redact_text(res.message)}", file=sys.stderr, flush=True)
    return res.exit_code


def _fail_early(message: str, as_json: bool) -> None:
    text = termination_message({"phase": "Failed", "message": redact_text(message), "targets": []}, None)
    write_termination_message(text)
    if as_json:
        print(text)
    print(f"modelpilot-export: error: {redact_text(message)}", file=sys.stderr, flush=True)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
