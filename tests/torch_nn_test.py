#!/usr/bin/env python3
# nn's losses against torch.nn.functional in float64: every reduction, class weights, pos_weight,
# label smoothing and probability targets, values and input gradients; gradient clipping against
# torch.nn.utils, five steps of each optimizer against torch.optim (float32), the warm-up and
# plateau schedules against torch.optim.lr_scheduler; Dropout, LayerNorm and BatchNorm1d (values,
# gradients, running statistics, train and eval), and a checkpoint with them loaded into torch.
# Usage: /usr/bin/python3 torch_nn_test.py PATH/TO/nn_torch_export
import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest
import warnings

import runner  # tests/runner.py: the closing "N passed, M failed" line

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:
    print(f"torch_nn_test: {sys.executable} cannot import torch ({e}); "
          "run tools/setup.sh test to install Debian's python3-torch", file=sys.stderr)
    sys.exit(1)

EXPORT = None  # set from argv in main()
EXPORTED = None  # the export's JSON, read once


TMP = tempfile.TemporaryDirectory()  # the export's checkpoint


def exported():
    global EXPORTED
    if EXPORTED is None:
        r = subprocess.run([EXPORT, TMP.name], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"nn_torch_export failed: {r.stderr}")
        EXPORTED = json.loads(r.stdout)
    return EXPORTED


def f64(values, shape=None):
    t = torch.tensor(values, dtype=torch.float64)
    return t.reshape(shape) if shape is not None else t


def weight_or_none(values):
    return f64(values) if values else None


# nn_torch_export's loss names -> torch's, called with the input, target, labels and kwargs.
LOSSES = {
    "mse": lambda x, t, y, k: F.mse_loss(x, t, reduction=k["reduction"]),
    "l1": lambda x, t, y, k: F.l1_loss(x, t, reduction=k["reduction"]),
    "huber": lambda x, t, y, k: F.huber_loss(x, t, reduction=k["reduction"], delta=k["delta"]),
    "smooth_l1": lambda x, t, y, k: F.smooth_l1_loss(x, t, reduction=k["reduction"],
                                                     beta=k["beta"]),
    "bce": lambda x, t, y, k: F.binary_cross_entropy(x, t, reduction=k["reduction"]),
    "bce_logits": lambda x, t, y, k: F.binary_cross_entropy_with_logits(
        x, t, reduction=k["reduction"], pos_weight=weight_or_none(k["pos_weight"])),
    "ce": lambda x, t, y, k: F.cross_entropy(
        x, y, weight=weight_or_none(k["weight"]), reduction=k["reduction"],
        label_smoothing=k["label_smoothing"]),
    "ce_probabilities": lambda x, t, y, k: F.cross_entropy(
        x, t, weight=weight_or_none(k["weight"]), reduction=k["reduction"],
        label_smoothing=k["label_smoothing"]),
    "nll": lambda x, t, y, k: F.nll_loss(x, y, weight=weight_or_none(k["weight"]),
                                         reduction=k["reduction"]),
}


class TorchLosses(unittest.TestCase):
    def test_every_loss_and_option_gives_torchs_value_and_gradient(self):
        cases = exported()["losses"]
        self.assertGreater(len(cases), 60)
        for case in cases:
            with self.subTest(case["fn"], **case["kwargs"]):
                x = f64(case["input"], case["shape"]).requires_grad_()
                t = f64(case["target"], case["shape"]) if case["target"] else None
                y = torch.tensor(case["labels"], dtype=torch.int64)
                value = LOSSES[case["fn"]](x, t, y, case["kwargs"])
                self.assertEqual(list(value.shape), case["value_shape"])
                value.backward(f64(case["seed"], value.shape))
                torch.testing.assert_close(f64(case["value"], value.shape), value.detach(),
                                           rtol=1e-10, atol=1e-12)
                torch.testing.assert_close(f64(case["grad"], case["shape"]), x.grad,
                                           rtol=1e-10, atol=1e-12)


class TorchClipping(unittest.TestCase):
    def test_clip_grad_norm_and_value_as_torch_nn_utils(self):
        cases = exported()["clipping"]
        self.assertEqual(len(cases), 10)
        for case in cases:
            with self.subTest(case["kind"], bound=case["bound"], norm_type=case["norm_type"]):
                params = []
                for shape, grad in zip(case["shapes"], case["grads"]):
                    p = torch.zeros(shape, requires_grad=True)
                    p.grad = torch.tensor(grad, dtype=torch.float32).reshape(shape)
                    params.append(p)
                if case["kind"] == "norm":
                    norm_type = float(case["norm_type"])
                    total = torch.nn.utils.clip_grad_norm_(params, case["bound"], norm_type)
                    self.assertAlmostEqual(case["total"], total.item(), delta=1e-6 * total.item())
                else:
                    torch.nn.utils.clip_grad_value_(params, case["bound"])
                for p, ours in zip(params, case["clipped"]):
                    torch.testing.assert_close(
                        torch.tensor(ours, dtype=torch.float32).reshape(p.shape), p.grad,
                        rtol=1e-6, atol=1e-7)


class TorchOptimizers(unittest.TestCase):
    def test_five_steps_of_each_optimizer_as_torch_optim(self):
        cases = exported()["optimizers"]
        self.assertEqual(len(cases), 9)
        for case in cases:
            with self.subTest(case["optimizer"], **case["kwargs"]):
                params = [torch.tensor(p, dtype=torch.float32).reshape(shape).requires_grad_()
                          for p, shape in zip(case["initial"], case["shapes"])]
                a = [torch.tensor(x, dtype=torch.float32).reshape(p.shape)
                     for x, p in zip(case["a"], params)]
                b = [torch.tensor(x, dtype=torch.float32).reshape(p.shape)
                     for x, p in zip(case["b"], params)]
                optimizer = getattr(torch.optim, case["optimizer"])(params, **case["kwargs"])
                for step, ours in enumerate(case["steps"]):
                    with torch.no_grad():
                        for p, ak, bk in zip(params, a, b):
                            p.grad = ak * p + bk
                    optimizer.step()
                    # atol 1e-5 is 1e-4 of a step of lr 0.1: where the gradient a p + b
                    # crosses 0, Adam's m / sqrt(v) magnifies float rounding (torch forms
                    # 1 - beta1 in double, we in float), by 3e-6 at worst here.
                    for p, mine in zip(params, ours):
                        torch.testing.assert_close(
                            torch.tensor(mine, dtype=torch.float32).reshape(p.shape), p.detach(),
                            rtol=1e-5, atol=1e-5, msg=lambda m: f"step {step + 1}: {m}")


class TorchSchedules(unittest.TestCase):
    def test_warmup_is_linear_lr_then_the_next_schedule(self):
        for case in exported()["schedules"]["warmup"]:
            with self.subTest(start_factor=case["start_factor"]):
                p = torch.zeros(1, requires_grad=True)
                optimizer = torch.optim.SGD([p], lr=0.1)
                warmup = torch.optim.lr_scheduler.LinearLR(
                    optimizer, start_factor=case["start_factor"], total_iters=case["warmup"])
                after = torch.optim.lr_scheduler.StepLR(optimizer, case["step_size"],
                                                        case["gamma"])
                both = torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, after],
                                                             milestones=[case["warmup"]])
                # SequentialLR steps its schedulers with an epoch, which torch 1.13 warns about
                warnings.simplefilter("ignore", UserWarning)
                lrs = []
                for _ in case["lrs"]:
                    lrs.append(optimizer.param_groups[0]["lr"])
                    optimizer.step()
                    both.step()
                for epoch, (mine, theirs) in enumerate(zip(case["lrs"], lrs)):
                    self.assertAlmostEqual(mine, theirs, delta=1e-12, msg=f"epoch {epoch}")

    def test_reduce_on_plateau_as_torch(self):
        cases = exported()["schedules"]["plateau"]
        self.assertEqual(len(cases), 8)
        for case in cases:
            with self.subTest(case["mode"], threshold_mode=case["threshold_mode"],
                              cooldown=case["cooldown"]):
                p = torch.zeros(1, requires_grad=True)
                optimizer = torch.optim.SGD([p], lr=1.0)
                plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                    optimizer, mode=case["mode"], factor=case["factor"],
                    patience=case["patience"], threshold=case["threshold"],
                    threshold_mode=case["threshold_mode"], cooldown=case["cooldown"],
                    min_lr=case["min_lr"])
                lrs = []
                for m in case["metrics"]:
                    plateau.step(m)
                    lrs.append(optimizer.param_groups[0]["lr"])
                self.assertEqual(case["lrs"], lrs)
                self.assertLess(min(lrs), 1.0, "the run has a plateau")


def f32(values, shape=None):
    t = torch.tensor(values, dtype=torch.float32)
    return t.reshape(shape) if shape is not None else t


def read_safetensors(path):
    """name -> tensor: an 8-byte little-endian header size N, N bytes of JSON, the data."""
    dtypes = {"F32": torch.float32, "I64": torch.int64}
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    header.pop("__metadata__", None)
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        flat = torch.frombuffer(bytearray(blob[8 + n + begin:8 + n + end]),
                                dtype=dtypes[info["dtype"]])
        tensors[name] = flat.reshape(info["shape"])
    return tensors


class TorchLayers(unittest.TestCase):
    def run_passes(self, module, case):
        """Each recorded pass again in torch: output, gradients, buffers after it."""
        close = dict(rtol=1e-5, atol=1e-5)
        for k, ours in enumerate(case["passes"]):
            module.train(ours["training"])
            module.zero_grad()
            x = f32(ours["x"], ours["shape"]).requires_grad_()
            y = module(x)
            y.backward(f32(ours["seed"], y.shape))
            where = f"pass {k + 1}"
            torch.testing.assert_close(f32(ours["y"], y.shape), y.detach(), **close,
                                       msg=lambda m: f"{where} output: {m}")
            torch.testing.assert_close(f32(ours["x_grad"], x.shape), x.grad, **close,
                                       msg=lambda m: f"{where} input gradient: {m}")
            params = dict(module.named_parameters())
            self.assertEqual(sorted(ours["param_grads"]), sorted(params))
            for name, grad in ours["param_grads"].items():
                torch.testing.assert_close(f32(grad, params[name].shape), params[name].grad,
                                           **close, msg=lambda m: f"{where} {name}.grad: {m}")
            buffers = dict(module.named_buffers())
            self.assertEqual(sorted(ours["buffers_after"]), sorted(buffers))
            for name, value in ours["buffers_after"].items():
                if name == "num_batches_tracked":
                    self.assertEqual(value, buffers[name].item())
                else:
                    torch.testing.assert_close(f32(value), buffers[name], **close,
                                               msg=lambda m: f"{where} {name}: {m}")

    def test_layer_norm_and_batch_norm_as_torch_nn_in_training_and_eval(self):
        cases = [c for c in exported()["layers"] if c["layer"] != "Dropout"]
        self.assertEqual(len(cases), 5)
        for case in cases:
            with self.subTest(case["layer"], **case["kwargs"]):
                module = getattr(torch.nn, case["layer"])(**case["kwargs"])
                with torch.no_grad():
                    for name, value in case["parameters"].items():
                        getattr(module, name).copy_(f32(value))
                self.run_passes(module, case)

    def test_dropout_is_inverted_in_training_and_the_identity_in_eval(self):
        (case,) = [c for c in exported()["layers"] if c["layer"] == "Dropout"]
        p = case["kwargs"]["p"]
        train, evaluation = case["passes"]
        x, y = f64(train["x"]), f64(train["y"])
        kept = y != 0
        # torch's rule: survivors scaled by 1 / (1 - p); its own mask is its generator's
        torch.testing.assert_close(y[kept], x[kept] / (1 - p), rtol=1e-6, atol=0)
        dropped = 1 - kept.double().mean().item()
        self.assertLess(abs(dropped - p), 0.1, f"{dropped} of 200 dropped")
        torch.testing.assert_close(f64(train["x_grad"]), kept.double() / (1 - p) *
                                   f64(train["seed"]), rtol=1e-6, atol=0)
        module = torch.nn.Dropout(p).eval()
        torch.testing.assert_close(module(f64(evaluation["x"])), f64(evaluation["y"]))
        torch.testing.assert_close(f64(evaluation["x_grad"]), f64(evaluation["seed"]))


class TorchNormCheckpoint(unittest.TestCase):
    def test_batch_norm_buffers_load_strictly_into_torch(self):
        case = exported()["checkpoint"]
        tensors = read_safetensors(case["path"])
        self.assertEqual(tensors["1.num_batches_tracked"].dtype, torch.int64)
        self.assertEqual(tensors["1.num_batches_tracked"].item(), 5)
        model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.BatchNorm1d(8),
                                    torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(8, 4),
                                    torch.nn.LayerNorm(4))
        result = model.load_state_dict(tensors, strict=True)
        self.assertEqual((result.missing_keys, result.unexpected_keys), ([], []))
        model.eval()
        with torch.no_grad():
            y = model(f32(case["x"], (-1, 3)))
        torch.testing.assert_close(f32(case["y"], y.shape), y, rtol=1e-5, atol=1e-5)


def main():
    global EXPORT
    if len(sys.argv) != 2:
        print("usage: torch_nn_test.py PATH/TO/nn_torch_export", file=sys.stderr)
        return 2
    EXPORT = os.path.abspath(sys.argv[1])
    print(f"torch {torch.__version__} from {sys.executable}")
    return runner.run(__name__)


if __name__ == "__main__":
    sys.exit(main())
