"""TF Serving's models.config, checked with tensorflow-serving-api's ModelServerConfig protobuf, and
the repository the storage initializer lays out loaded by TensorFlow the way TF Serving loads it
(`<base_path>/<version>/saved_model.pb`, signature `serving_default`).

tensorflow-serving-api ships no protobuf for monitoring.config (MonitoringConfig) or batching.config
(BatchingParameters), and the model server itself is not on PyPI: those two files are checked for
their text structure only, and the SavedModel with TensorFlow's own loader.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2 as msc

from modelpilot.render import runtime_warnings
from modelpilot.runtimes import MODEL_REPOSITORY, Signature, get_runtime
from modelpilot_exporters import storage_init

from .conftest import deployment

pytestmark = pytest.mark.unit
TFS = get_runtime("tfserving")


def models_config(md) -> msc.ModelServerConfig:
    return text_format.Parse(TFS.config_files(md)["models.config"], msc.ModelServerConfig())


def test_models_config_parses_as_model_server_config() -> None:
    md = deployment(model={"uri": "s3://models/mobilenet", "format": "savedmodel", "name": "mobilenet"},
                    runtime={"kind": "tfserving"})
    cfg = models_config(md)
    assert len(cfg.model_config_list.config) == 1
    c = cfg.model_config_list.config[0]
    assert (c.name, c.base_path, c.model_platform) == ("mobilenet", f"{MODEL_REPOSITORY}/mobilenet", "tensorflow")
    assert c.model_version_policy.WhichOneof("policy_choice") == "specific"
    assert list(c.model_version_policy.specific.versions) == [1]
    assert dict(c.version_labels) == {"serving": 1}
    assert TFS.artifact_path(md) == "mobilenet/1", "the version directory models.config serves"


def test_batching_config_follows_the_spec() -> None:
    md = deployment(model={"uri": "s3://m/x", "format": "savedmodel"},
                    runtime={"kind": "tfserving", "maxBatchSize": 16, "instances": 3,
                             "dynamicBatching": {"preferredBatchSizes": [4, 8, 16], "maxQueueDelayMicroseconds": 700}})
    files = TFS.config_files(md)
    text = files["batching.config"]
    # BatchingParameters text: wrapped scalars, allowed sizes increasing and ending at max_batch_size.
    assert re.search(r"^max_batch_size \{ value: 16 \}$", text, re.M)
    assert re.search(r"^batch_timeout_micros \{ value: 700 \}$", text, re.M)
    assert re.search(r"^num_batch_threads \{ value: 3 \}$", text, re.M)
    assert re.findall(r"^allowed_batch_sizes: (\d+)$", text, re.M) == ["4", "8", "16"]
    args = TFS.container(md, "img")["args"]
    assert "--enable_batching=true" in args and f"--batching_parameters_file={MODEL_REPOSITORY}/batching.config" in args
    off = deployment(model={"uri": "s3://m/x", "format": "savedmodel"},
                     runtime={"kind": "tfserving", "dynamicBatching": {"enabled": False}})
    assert "batching.config" not in TFS.config_files(off)
    assert not any(a.startswith("--enable_batching") for a in TFS.container(off, "img")["args"])


def test_monitoring_config_serves_prometheus_on_the_rest_port() -> None:
    md = deployment(model={"uri": "s3://m/x", "format": "savedmodel"}, runtime={"kind": "tfserving"})
    text = TFS.config_files(md)["monitoring.config"]
    assert re.fullmatch(r'prometheus_config \{\n  enable: true\n  path: "/monitoring/prometheus/metrics"\n\}\n', text)


def test_fixed_batch_dimension_warns() -> None:
    md = deployment(model={"uri": "s3://m/x", "format": "savedmodel"}, runtime={"kind": "tfserving"})
    fixed = Signature.from_dict({"inputs": [{"name": "x", "dtype": "float32", "shape": [1, 4]}], "outputs": []})
    assert runtime_warnings(md, signature=fixed) and not runtime_warnings(md)


def test_storage_initializer_lays_out_a_savedmodel_tensorflow_loads(tmp_path: Path) -> None:
    import tensorflow as tf

    class Scale(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable([[1.0, 2.0], [3.0, 4.0]])

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
        def __call__(self, x):
            return {"y": tf.matmul(x, self.w)}

    src = tmp_path / "export" / "savedmodel"
    module = Scale()
    tf.saved_model.save(module, str(src), signatures={"serving_default": module.__call__})
    md = deployment(model={"uri": f"file://{src}", "format": "savedmodel", "name": "scale"}, runtime={"kind": "tfserving"})
    repo, config_dir = tmp_path / "models", tmp_path / "config"
    config_dir.mkdir()
    for rel, body in TFS.config_files(md).items():
        (config_dir / rel).write_text(body)
    rc = storage_init.main([f"--uri=file://{src}", "--format=savedmodel", "--model-name=scale",
                            f"--dest={repo}/{TFS.artifact_path(md)}", f"--config-dir={config_dir}", f"--repository={repo}"])
    assert rc == 0
    assert sorted(p.name for p in repo.iterdir()) == ["batching.config", "models.config", "monitoring.config", "scale"]
    cfg = text_format.Parse((repo / "models.config").read_text(), msc.ModelServerConfig()).model_config_list.config[0]
    # What TF Serving does with this config: <base_path>/<version>, under the repository.
    version_dir = repo / Path(cfg.base_path).relative_to(MODEL_REPOSITORY) / str(cfg.model_version_policy.specific.versions[0])
    assert (version_dir / "saved_model.pb").is_file()
    served = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    got = served(x=tf.constant([[1.0, 1.0]]))["y"].numpy()
    np.testing.assert_allclose(got, [[4.0, 6.0]])
