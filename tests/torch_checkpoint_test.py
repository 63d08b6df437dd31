#!/usr/bin/env python3
# Checkpoints load into PyTorch: the file is read by its published safetensors layout (Debian has
# no safetensors package) and the equivalent torch.nn model gives our outputs to 1e-5.
# Usage: /usr/bin/python3 torch_checkpoint_test.py PATH/TO/checkpoint_export PATH/TO/tapegrad
import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest
import zlib

import runner  # tests/runner.py: the closing "N passed, M failed" line

try:
    import torch
except ImportError as e:
    print(f"torch_checkpoint_test: {sys.executable} cannot import torch ({e}); "
          "run tools/setup.sh test to install Debian's python3-torch", file=sys.stderr)
    sys.exit(1)

EXPORT = None  # set from argv in main()
TAPEGRAD = None
DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64}


def read_safetensors(path):
    """name -> tensor, and the metadata: 8-byte little-endian header size N, N bytes of JSON,
    then the raw little-endian data that data_offsets index."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        flat = torch.frombuffer(bytearray(data[begin:end]), dtype=DTYPES[info["dtype"]])
        tensors[name] = flat.reshape(info["shape"])
    return tensors, metadata, blob, n


class Net(torch.nn.Module):
    """Our MLP's layout: its Sequential is the attribute "layers"."""

    def __init__(self, layers):
        super().__init__()
        self.layers = layers

    def forward(self, x):
        return self.layers(x)


def sequential(model):
    """The torch.nn.Sequential our MLP builds: Linear, activation, ..., Linear[, activation]."""
    act = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid}
    sizes, layers = model["sizes"], []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        kind = model["hidden"] if i + 2 < len(sizes) else model["output"]
        if kind != "none":
            layers.append(act[kind]())
    return torch.nn.Sequential(*layers)


class TorchCheckpoint(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        r = subprocess.run([EXPORT, cls._tmp.name], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"checkpoint_export failed: {r.stderr}")
        cls.models = json.loads(r.stdout)["models"]

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def model_state(self, tensors):
        # The optimizer's buffers share the file; a model's state dict leaves them out.
        return {k: v for k, v in tensors.items() if not k.startswith("optimizer.")}

    def check_outputs(self, net, model):
        x = torch.tensor(model["inputs"], dtype=torch.float32).reshape(-1, 2)
        with torch.no_grad():
            y = net(x).reshape(-1)
        ours = torch.tensor(model["outputs"], dtype=torch.float32)
        diff = (y - ours).abs().max().item()
        self.assertLessEqual(diff, 1e-5, f"{model['name']}: max |torch - tapegrad| = {diff}")

    def test_strict_load_into_a_module_with_layers(self):
        for model in self.models:
            with self.subTest(model["name"]):
                tensors, _, _, _ = read_safetensors(model["path"])
                net = Net(sequential(model))
                result = net.load_state_dict(self.model_state(tensors), strict=True)
                self.assertEqual((result.missing_keys, result.unexpected_keys), ([], []))
                self.check_outputs(net, model)

    def test_load_into_a_bare_sequential(self):
        for model in self.models:
            with self.subTest(model["name"]):
                tensors, _, _, _ = read_safetensors(model["path"])
                state = {k.removeprefix("layers."): v for k, v in self.model_state(tensors).items()}
                seq = sequential(model)
                seq.load_state_dict(state, strict=True)
                self.check_outputs(seq, model)

    def test_layout_and_metadata(self):
        for model in self.models:
            with self.subTest(model["name"]):
                tensors, metadata, blob, n = read_safetensors(model["path"])
                self.assertEqual(n % 8, 0, "the data section starts 8-byte aligned")
                self.assertTrue(blob[8:8 + n].rstrip(b" ").endswith(b"}"), "padded with spaces")
                self.assertEqual(metadata["format"], "pt")
                self.assertEqual(metadata["epoch"], "20")
                self.assertEqual(metadata["tapegrad.optimizer"], "Adam")
                self.assertEqual(metadata["tapegrad.optimizer.steps"], "20")
                params = self.model_state(tensors)
                self.assertTrue(all(v.dtype == torch.float32 for v in tensors.values()))
                # Adam keeps m and v per parameter: twice as many buffers as parameters.
                self.assertEqual(len(tensors) - len(params), 2 * len(params))
                self.assertEqual(tensors["layers.0.weight"].shape, (16, 2))

    def test_checksum_is_zlib_crc32(self):
        # "tapegrad.crc32": CRC-32 of the header as written without that key, then the data.
        for model in self.models:
            with self.subTest(model["name"]):
                _, metadata, blob, n = read_safetensors(model["path"])
                header = json.loads(blob[8:8 + n])
                del header["__metadata__"]["tapegrad.crc32"]
                text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
                crc = zlib.crc32(blob[8 + n:], zlib.crc32(text))
                self.assertEqual(metadata["tapegrad.crc32"], f"{crc:08x}")


class TrainCheckpoint(unittest.TestCase):
    """A checkpoint of `tapegrad train`: its metadata says the model (issue 13), every value a
    string as safetensors requires, and the model it describes loads the file strictly."""

    def test_the_metadata_builds_the_torch_model(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "runs", "m.safetensors")
            r = subprocess.run([TAPEGRAD, "train", "--data", "circles", "--hidden", "8,4", "--act",
                                "tanh", "--loss", "bce", "--epochs", "3", "--save", path, "--json"],
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            tensors, metadata, _, _ = read_safetensors(path)
        self.assertTrue(all(isinstance(v, str) for v in metadata.values()), metadata)
        self.assertEqual((metadata["model.layers"], metadata["model.act"], metadata["model.out"],
                          metadata["model.loss"], metadata["data.name"]),
                         ("2,8,4,1", "tanh", "sigmoid", "bce", "circles"))
        model = {"sizes": [int(n) for n in metadata["model.layers"].split(",")],
                 "hidden": metadata["model.act"], "output": metadata["model.out"]}
        net = Net(sequential(model))
        state = {k: v for k, v in tensors.items() if not k.startswith("optimizer.")}
        result = net.load_state_dict(state, strict=True)
        self.assertEqual((result.missing_keys, result.unexpected_keys), ([], []))
        with torch.no_grad():
            p = net(torch.zeros(4, 2))
        self.assertTrue(bool(((p > 0) & (p < 1)).all()), "a sigmoid output is a probability")


def main():
    global EXPORT, TAPEGRAD
    if len(sys.argv) != 3:
        print("usage: torch_checkpoint_test.py PATH/TO/checkpoint_export PATH/TO/tapegrad",
              file=sys.stderr)
        return 2
    EXPORT = os.path.abspath(sys.argv[1])
    TAPEGRAD = os.path.abspath(sys.argv[2])
    print(f"torch {torch.__version__} from {sys.executable}")
    return runner.run(__name__)


if __name__ == "__main__":
    sys.exit(main())
