"""The served-model parity check (pure): requests in each runtime's protocol, and the verdict that
names the recorded input, the output and the difference. The answers come from `send` callables
here; tests/runtimes/test_comparator_torchserve.py runs it against a real TorchServe."""

from __future__ import annotations

import json
import os

import pytest

from modelpilot.comparator.parity import ParityError, build_request, check_parity

pytestmark = pytest.mark.unit
RECORD = {"atol": 1e-4, "rtol": 1e-3,
          "inputs": [{"x": {"dtype": "float32", "data": [[0.5, -1.0, 2.0, 3.0, 4.0]]}},
                     {"x": {"dtype": "float32", "data": [[1.0, 1.0, 1.0, 1.0, 1.0]]}}],
          "outputs": [{"logits": [[0.1, 0.9]]}, {"logits": [[0.3, 0.7]]}]}


def test_requests_in_each_protocol() -> None:
    inputs = {"x": {"dtype": "float32", "data": [[1.0, 2.0]]}, "ids": {"dtype": "int64", "data": [[3, 4, 5]]}}
    assert build_request("v2", "m", inputs) == ("/v2/models/m/infer", {"inputs": [
        {"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [[1.0, 2.0]]},
        {"name": "ids", "datatype": "INT64", "shape": [1, 3], "data": [[3, 4, 5]]}]})
    assert build_request("torchserve", "m", inputs) == ("/predictions/m", {"inputs": {"x": [[1.0, 2.0]], "ids": [[3, 4, 5]]}})
    assert build_request("tfserving", "m", inputs) == ("/v1/models/m:predict", {"inputs": {"x": [[1.0, 2.0]], "ids": [[3, 4, 5]]}})


def _serving(answers):
    sent = []

    def send(path, body):
        sent.append((path, body))
        answer = answers[len(sent) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer
    return send, sent


def test_answers_within_tolerance_pass() -> None:
    send, sent = _serving([{"outputs": {"logits": [[0.10005, 0.9]]}}, {"outputs": {"logits": [[0.3, 0.7]]}}])
    r = check_parity(RECORD, send, "torchserve", "m")
    assert r.passed and r.samples == 2 and len(sent) == 2
    assert r.message == "2 recorded inputs answered within atol=0.0001, rtol=0.001"


def test_a_wrong_answer_names_the_input_the_output_and_the_difference() -> None:
    send, sent = _serving([{"outputs": {"logits": [[0.1, 0.9]]}}, {"outputs": {"logits": [[0.3, 0.2]]}}])
    r = check_parity(RECORD, send, "torchserve", "m")
    assert (r.passed, r.samples, r.sample, r.output) == (False, 2, 1, "logits")
    assert r.max_abs_diff == pytest.approx(0.5)
    assert r.message == ("recorded input 1 (x[1, 5]: 1, 1, 1, 1, ...): output 'logits' differs by up to 0.5 at index 1 "
                         "(served 0.2, exported 0.7); 1 of 2 values outside (tolerance atol=0.0001, rtol=0.001)")


@pytest.mark.parametrize("answer, text", [
    ({"outputs": {"scores": [[0.1, 0.9]]}}, "output 'logits' is missing (served: ['scores'])"),
    ({"outputs": {"logits": [0.1, 0.9]}}, "output 'logits' has shape [2], exported [1, 2]"),
    (ParityError("HTTP 503: no worker"), "the revision did not answer with tensors: HTTP 503: no worker"),
    ({"error": "x"}, "the revision did not answer with tensors"),
])
def test_structural_problems_and_errors_fail_on_the_first_input(answer, text) -> None:
    send, _ = _serving([answer])
    r = check_parity(RECORD, send, "torchserve", "m")
    assert not r.passed and r.sample == 0 and text in r.message
    assert r.message.startswith("recorded input 0 (x[1, 5]: 0.5, -1, 2, 3, ...): ")


def test_an_unnamed_single_output_is_matched_by_position() -> None:
    send, _ = _serving([{"predictions": [[0.1, 0.9]]}, {"predictions": [[0.3, 0.7]]}])
    assert check_parity(RECORD, send, "tfserving", "m").passed


def test_v2_answers() -> None:
    send, sent = _serving([{"outputs": [{"name": "logits", "shape": [1, 2], "datatype": "FP32", "data": [0.1, 0.9]}]},
                           {"outputs": [{"name": "logits", "shape": [1, 2], "datatype": "FP32", "data": [0.3, 0.7]}]}])
    assert check_parity(RECORD, send, "v2", "m").passed
    assert sent[0][0] == "/v2/models/m/infer"


def test_the_cli_refuses_a_file_that_is_not_a_record(tmp_path, capsys) -> None:
    from modelpilot_exporters.parity_check import main

    bad = tmp_path / "manifest.json"
    bad.write_text('{"kind": "ModelExportManifest"}')
    term = tmp_path / "term"
    os.environ["MODELPILOT_TERMINATION_LOG"] = str(term)
    try:
        assert main(["--record", str(bad), "--url", "http://127.0.0.1:9", "--protocol", "v2", "--model", "m"]) == 2
        verdict = json.loads(capsys.readouterr().out)
        assert verdict == {"passed": False, "samples": 0, "message": f"parity record file://{bad}: no atol, rtol, inputs, outputs: "
                                                                    "not a parity record (modelpilot_exporters writes parity/<target>.json)"}
        assert json.loads(term.read_text()) == verdict  # where the operator reads it
        assert main(["--record", str(tmp_path / "nope.json"), "--url", "http://x", "--protocol", "v2", "--model", "m"]) == 2
        assert f"parity record: file://{tmp_path}/nope.json: not found" in capsys.readouterr().out
    finally:
        del os.environ["MODELPILOT_TERMINATION_LOG"]


def test_a_target_the_exporter_kept_no_record_for_passes_unchecked(tmp_path, capsys) -> None:
    from modelpilot_exporters.parity_check import main

    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"name": "e", "targets": [{"name": "big", "phase": "Succeeded", "format": "onnx",
                                                             "uri": "file:///x.onnx", "parity": {"samples": 0, "skipped": "too big"}}]}))
    assert main(["--uri", "export://e/big", "--manifest", f"file://{manifest}", "--url", "http://127.0.0.1:9",
                 "--protocol", "v2", "--model", "m"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "passed": True, "samples": 0, "message": "target 'big' has no parity record (see its manifest entry): not checked"}


def test_a_malformed_record_is_a_message_not_a_traceback(tmp_path, capsys) -> None:
    from modelpilot_exporters.parity_check import main

    record = tmp_path / "parity.json"
    record.write_text(json.dumps({"atol": 1e-4, "rtol": 1e-3, "inputs": [{"x": {"data": [[1.0]]}}], "outputs": []}))
    assert main(["--record", str(record), "--url", "http://127.0.0.1:9", "--protocol", "v2", "--model", "m", "--timeout", "0.1"]) == 2
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["passed"] is False and verdict["message"].startswith(f"parity record file://{record}: malformed (ValueError: ")
