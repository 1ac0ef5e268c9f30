"""Tiny seeded models for the exporter tests (no downloads). Also the ``factory`` target of the
stateDict loader tests: ``mp_export_models:make_mlp``."""

from __future__ import annotations

import numpy as np


def make_mlp(in_features: int = 16, hidden: int = 64, classes: int = 4):
    """A small classifier MLP with confident logits (so int8 keeps top-1)."""
    import torch

    torch.manual_seed(0)
    m = torch.nn.Sequential(
        torch.nn.Linear(in_features, hidden), torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
        torch.nn.Linear(hidden, classes),
    )
    with torch.no_grad():
        m[4].weight.mul_(4.0)
    return m.eval()


def make_cnn():
    """A small CNN classifier on 1x8x8 images."""
    import torch

    class Cnn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
            self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
            self.fc = torch.nn.Linear(8 * 4 * 4, 5)

        def forward(self, x):
            x = torch.relu(self.conv(x))
            x = torch.nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
            return self.fc(x.flatten(1)) * 3.0

    torch.manual_seed(1)
    return Cnn().eval()


def make_regressor():
    """Output [batch, 1]: not classifier-shaped, so lossy targets are judged by relative L2."""
    import torch

    torch.manual_seed(2)
    return torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1)).eval()


def make_two_input():
    """Token ids + float mask -> logits; dynamic batch and sequence length."""
    import torch

    class TwoIn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(10, 16)
            self.fc = torch.nn.Linear(16, 3)

        def forward(self, ids, mask):
            h = self.emb(ids) * mask.unsqueeze(-1)
            return self.fc(h.sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)) * 4.0

    torch.manual_seed(3)
    return TwoIn().eval()


def save_pt2(model, example, path, dynamic_dims=({0: "dyn"},)):
    import torch

    ds = tuple({d: torch.export.Dim.DYNAMIC for d in spec} for spec in dynamic_dims)
    ep = torch.export.export(model, example, dynamic_shapes=ds)
    torch.export.save(ep, str(path))
    return path


def make_tf_savedmodel(path, in_features: int = 16, hidden: int = 64, classes: int = 4):
    """A dense classifier SavedModel (weights big enough for TFLite to quantize: >= 1024)."""
    import tensorflow as tf

    rng = np.random.RandomState(0)

    class M(tf.Module):
        def __init__(self):
            self.w1 = tf.Variable(rng.randn(in_features, hidden).astype("float32") * 0.4)
            self.b1 = tf.Variable(rng.randn(hidden).astype("float32") * 0.1)
            self.w2 = tf.Variable(rng.randn(hidden, hidden).astype("float32") * 0.2)
            self.w3 = tf.Variable(rng.randn(hidden, classes).astype("float32") * 0.8)

        @tf.function(input_signature=[tf.TensorSpec([None, in_features], tf.float32, name="features")])
        def serve(self, features):
            h = tf.nn.relu(tf.matmul(features, self.w1) + self.b1)
            h = tf.nn.relu(tf.matmul(h, self.w2))
            return {"logits": tf.matmul(h, self.w3)}

    m = M()
    tf.saved_model.save(m, str(path), signatures={"serving_default": m.serve})
    return path


class _WritesMarker:
    """Unpickling this runs code: it writes ``marker`` (what a hostile model file would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pwned')",)


def pickled_pt2(src, dest, marker):
    """``src`` (a .pt2 by torch.export.save) with its first weight marked ``use_pickle`` and
    replaced by a pickle that writes ``marker`` when ``torch.export.load`` unpickles it."""
    import json
    import pickle
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as zout:
        config_name = next(n for n in zin.namelist() if n.endswith("/data/weights/model_weights_config.json"))
        config = json.loads(zin.read(config_name))
        first = next(iter(config["config"].values()))
        first["use_pickle"] = True
        weight_name = config_name.rsplit("/", 1)[0] + "/" + first["path_name"]
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == config_name:
                data = json.dumps(config).encode()
            elif info.filename == weight_name:
                data = pickle.dumps(_WritesMarker(marker), protocol=2)
            zout.writestr(info, data)
    return dest


def make_tiny_transformer(vocab: int = 32, d: int = 32, heads: int = 2, layers: int = 2, classes: int = 4,
                          packed: bool = False):
    """A small encoder classifier over token ids [batch, 8]: pre-LN blocks with scaled dot-product
    attention and GELU MLPs, as Hugging Face encoders write them (separate Q, K, V projections), or
    with one packed QKV projection (``packed``), as the benchmark's transformer does."""
    import torch

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.n1, self.n2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
            if packed:
                self.qkv = torch.nn.Linear(d, 3 * d)
            else:
                self.q, self.k, self.v = (torch.nn.Linear(d, d) for _ in range(3))
            self.o = torch.nn.Linear(d, d)
            self.f1, self.f2 = torch.nn.Linear(d, 4 * d), torch.nn.Linear(4 * d, d)

        def forward(self, x):
            b, s, _ = x.shape
            h = self.n1(x)
            if packed:
                q, k, v = self.qkv(h).reshape(b, s, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
            else:
                q, k, v = (p(h).reshape(b, s, heads, d // heads).transpose(1, 2) for p in (self.q, self.k, self.v))
            a = torch.nn.functional.scaled_dot_product_attention(q, k, v)
            x = x + self.o(a.transpose(1, 2).reshape(b, s, d))
            return x + self.f2(torch.nn.functional.gelu(self.f1(self.n2(x))))

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(vocab, d)
            self.blocks = torch.nn.ModuleList([Block() for _ in range(layers)])
            self.norm = torch.nn.LayerNorm(d)
            self.head = torch.nn.Linear(d, classes)

        def forward(self, ids):
            x = self.emb(ids)
            for blk in self.blocks:
                x = blk(x)
            return self.head(self.norm(x).mean(1)) * 4.0

    torch.manual_seed(4)
    return Encoder().eval()
