#!/usr/bin/env python3
# End-to-end tests of `tapegrad train` and `tapegrad graph`: JSON lines, accuracy on moons,
# exact resume from a checkpoint, the module-level graph, and every error (exit code 2, one
# message on stderr, no file left behind). Usage: train_cli_test.py PATH/TO/tapegrad
import json
import math
import os
import re
import resource
import stat
import struct
import subprocess
import sys
import zlib

import runner  # tests/runner.py: the closing "N passed, M failed" line
import wrapper  # tests/wrapper.py: tapegrad inside $TAPEGRAD_WRAPPER (valgrind), if set

TAPEGRAD = None  # set from argv in main()
MOONS = ["--data", "moons", "--layers", "2,16,16,1", "--act", "relu", "--out", "none",
         "--loss", "bce_logits", "--opt", "adam", "--lr", "0.01", "--batch", "1000",
         "--seed", "1"]
SMALL = ["--data", "moons", "--layers", "2,8,1", "--loss", "bce_logits", "--batch", "50",
         "--seed", "3"]


def png_size(path):
    """(width, height) from a PNG's header; fails unless the file is a PNG."""
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise AssertionError(f"{path} is not a PNG")
    return struct.unpack(">II", head[16:24])


def run(*args, cwd=None, env=None):
    return wrapper.run(TAPEGRAD, args, cwd=cwd, env=env, timeout=120)


class TrainCliTest(wrapper.TempDirTest):
    def ok(self, *args):
        r = run(*args, cwd=self.dir)
        self.assertEqual(r.returncode, 0, f"{args}: {r.stderr}")
        self.assertEqual(r.stderr, "")
        return r.stdout

    def lines(self, *args):
        """Runs train --json: every line of stdout is a JSON object; returns them."""
        out = self.ok("train", *args, "--json")
        docs = [json.loads(line) for line in out.splitlines()]
        self.assertTrue(docs)
        return docs

    def fails(self, *args, message, env=None):
        before = sorted(os.listdir(self.dir))
        r = run(*args, cwd=self.dir, env=env)
        self.assertEqual(r.returncode, 2, f"{args}: {r.stdout}{r.stderr}")
        self.assertEqual(r.stdout, "")
        self.assertIn(message, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertEqual(sorted(os.listdir(self.dir)), before, "a file was left behind")
        return r.stderr

    def write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)
        return self.path(name)


class Train(TrainCliTest):
    def test_xor_json(self):
        docs = self.lines("--data", "xor", "--layers", "2,8,1", "--out", "sigmoid", "--loss",
                          "bce", "--lr", "0.05", "--epochs", "300", "--batch", "4")
        epochs, summary = docs[:-1], docs[-1]
        self.assertEqual([e["epoch"] for e in epochs], list(range(1, 301)))
        for e in epochs:
            self.assertIsNone(e["test_accuracy"])  # xor's four points: no test set
        self.assertEqual(summary["train_accuracy"], 1)
        self.assertIsNone(summary["test_accuracy"])
        self.assertEqual(summary["loss"], epochs[-1]["loss"])
        self.assertEqual(len(summary["grad_norms"]), 2)
        self.assertEqual(len(summary["dead_fraction"]), 1)

    def test_moons_full_batch_adam(self):
        docs = self.lines(*MOONS, "--epochs", "300")
        self.assertEqual(len(docs), 301)
        summary = docs[-1]
        self.assertEqual(set(summary), {"train_accuracy", "test_accuracy", "loss", "seconds",
                                        "epochs", "grad_norms", "dead_fraction"})
        self.assertGreaterEqual(summary["test_accuracy"], 0.9)
        self.assertGreaterEqual(summary["train_accuracy"], 0.9)
        self.assertLess(summary["loss"], docs[0]["loss"])
        self.assertEqual(len(summary["grad_norms"]), 3)
        self.assertEqual(len(summary["dead_fraction"]), 2)
        for f in summary["dead_fraction"]:
            self.assertTrue(0 <= f <= 1)

    def test_moons_hinge_sgd(self):
        summary = self.lines("--data", "moons", "--layers", "2,16,16,1", "--out", "none",
                             "--loss", "hinge", "--opt", "sgd", "--lr", "0.1", "--epochs",
                             "100", "--batch", "100", "--seed", "1")[-1]
        self.assertGreaterEqual(summary["test_accuracy"], 0.85)

    def test_same_seed_same_run(self):
        a = self.lines(*SMALL, "--epochs", "5")
        b = self.lines(*SMALL, "--epochs", "5")
        self.assertEqual([e["loss"] for e in a], [e["loss"] for e in b])

    def test_other_sets_and_inits(self):
        for data, layers, loss in [("circles", "2,8,1", "bce_logits"),
                                   ("spirals", "2,16,3", "ce"), ("blobs", "2,8,3", "ce")]:
            for init in ["xavier", "he", "zeros", "uniform"]:
                summary = self.lines("--data", data, "--layers", layers, "--loss", loss,
                                     "--init", init, "--epochs", "2")[-1]
                self.assertIn("test_accuracy", summary)

    def test_text_output(self):
        out = self.ok("train", *SMALL, "--epochs", "3")
        self.assertIn("moons: 300 training rows, 100 test rows", out)
        self.assertIn("epoch 3/3", out)
        self.assertIn("test accuracy", out)
        # Issue 13: the final accuracy is the trained model's on every row, not the last epoch's
        # running figure, and its line says so; it is the --json summary's.
        final = [line for line in out.splitlines() if line.startswith("train accuracy ")]
        self.assertEqual(len(final), 1, out)
        self.assertIn(" of the trained model on every row (an epoch's train acc averages its "
                      "batches, each before its step)", final[0])
        summary = self.lines(*SMALL, "--epochs", "3")[-1]
        self.assertTrue(final[0].startswith(f"train accuracy {summary['train_accuracy']:.4f}, "
                                            f"test accuracy {summary['test_accuracy']:.4f} "),
                        final[0])
        self.assertRegex(out, r"\nloss [0-9.e-]+ \(last epoch\), [0-9.]+ s\n")

    def test_csv(self):
        rows = ["x,y,kind"] + [f"{i % 7},{(i * 3) % 5},{'big' if i % 7 > 3 else 'small'}"
                               for i in range(40)]
        self.write("d.csv", "\n".join(rows) + "\n")
        summary = self.lines("--data", "csv:d.csv:kind", "--layers", "2,8,2", "--epochs",
                             "50", "--batch", "40")[-1]
        self.assertGreaterEqual(summary["train_accuracy"], 0.9)
        # By index, from the end.
        self.lines("--data", "csv:d.csv:-1", "--layers", "2,1", "--loss", "bce_logits",
                   "--epochs", "2")

    def test_save_then_resume_equals_uninterrupted(self):
        full = self.lines(*SMALL, "--epochs", "12", "--save", "full.safetensors")
        part = self.lines(*SMALL, "--epochs", "5", "--save", "part.safetensors")
        self.assertEqual(len(part), 6)
        resumed = self.lines(*SMALL, "--epochs", "12", "--resume", "part.safetensors",
                             "--save", "resumed.safetensors")
        self.assertEqual([e["epoch"] for e in resumed[:-1]], list(range(6, 13)))
        self.assertEqual(resumed[-1]["loss"], full[-1]["loss"])
        self.assertEqual(resumed[-1]["train_accuracy"], full[-1]["train_accuracy"])
        self.assertEqual(resumed[-1]["test_accuracy"], full[-1]["test_accuracy"])
        self.assertEqual(resumed[-1]["grad_norms"], full[-1]["grad_norms"])
        self.assertEqual(sorted(os.listdir(self.dir)),
                         ["full.safetensors", "part.safetensors", "resumed.safetensors"])
        # --resume alone continues the file in place.
        again = self.lines(*SMALL, "--epochs", "12", "--resume", "part.safetensors")
        self.assertEqual(again[-1]["loss"], full[-1]["loss"])


    def test_plot(self):
        out = self.ok("train", *SMALL, "--epochs", "6", "--plot", "plots")
        for name in ["history.dat", "loss.png", "accuracy.png"]:
            self.assertIn(f"wrote {os.path.join('plots', name)}", out)
        self.assertEqual(sorted(os.listdir(self.path("plots"))),
                         ["accuracy.png", "boundary.png", "boundary_grid.dat",
                          "boundary_points.dat", "history.dat", "loss.png"])
        self.assertEqual(png_size(self.path("plots", "loss.png")), (800, 500))
        self.assertEqual(png_size(self.path("plots", "accuracy.png")), (800, 500))
        with open(self.path("plots", "history.dat")) as f:
            rows = [line.split() for line in f if not line.startswith("#")]
        self.assertEqual([r[0] for r in rows], [str(e) for e in range(1, 7)])
        # With --json, stdout stays pure JSON lines.
        docs = self.lines(*SMALL, "--epochs", "2", "--plot", "plots2")
        self.assertEqual(len(docs), 3)
        self.assertTrue(os.path.exists(self.path("plots2", "loss.png")))


    def test_boundary_for_two_features(self):
        for data, layers, loss, classes in [("moons", "2,8,1", "hinge", 2),
                                            ("blobs", "2,8,3", "ce", 3)]:
            with self.subTest(data=data):
                out = self.ok("train", "--data", data, "--layers", layers, "--loss", loss,
                              "--epochs", "3", "--plot", data)
                self.assertIn(f"wrote {os.path.join(data, 'boundary.png')}", out)
                self.assertEqual(png_size(self.path(data, "boundary.png")), (720, 600))
                # The map covers every training point; its classes are the model's.
                with open(self.path(data, "boundary_grid.dat")) as f:
                    grid = [line.split() for line in f if line.strip() and line[0] != "#"]
                with open(self.path(data, "boundary_points.dat")) as f:
                    points = [line.split() for line in f if line[0] != "#"]
                self.assertEqual(len(grid), 200 * 200)
                self.assertEqual(len(points), 300)
                self.assertEqual({p[2] for p in points}, {str(c) for c in range(classes)})
                self.assertLessEqual({g[2] for g in grid}, {str(c) for c in range(classes)})
                for axis in (0, 1):
                    inside = [float(p[axis]) for p in points]
                    edges = [float(g[axis]) for g in grid]
                    self.assertLess(min(edges), min(inside))
                    self.assertGreater(max(edges), max(inside))

    def test_no_boundary_without_two_features(self):
        # 3 features, and 784 as Fashion-MNIST's images have: curves only, and no error.
        for name, features in [("three.csv", 3), ("pixels.csv", 784)]:
            with self.subTest(features=features):
                rows = [",".join([f"f{i}" for i in range(features)] + ["label"])]
                rows += [",".join([str((r * 7 + i) % 11) for i in range(features)] + [str(r % 2)])
                         for r in range(24)]
                self.write(name, "\n".join(rows) + "\n")
                out = self.ok("train", "--data", f"csv:{name}:label", "--layers",
                              f"{features},4,1", "--loss", "bce_logits", "--epochs", "2",
                              "--plot", name + ".plots")
                self.assertNotIn("boundary", out)
                self.assertEqual(sorted(os.listdir(self.path(name + ".plots"))),
                                 ["accuracy.png", "history.dat", "loss.png"])

    @wrapper.slow
    def test_no_boundary_for_fashion_mnist(self):
        out = self.ok("train", "--data", "fashion-mnist", "--layers", "784,4,10", "--epochs", "1",
                      "--batch", "1000", "--plot", "fm")
        self.assertNotIn("boundary", out)
        self.assertEqual(sorted(os.listdir(self.path("fm"))),
                         ["accuracy.png", "history.dat", "loss.png"])

    def test_plot_of_a_diverged_run(self):
        # A loss that is NaN from the first epoch: gnuplot cannot autoscale it, yet --plot
        # draws every picture (an empty loss curve, a blank map) rather than failing.
        docs = self.lines("--data", "moons", "--layers", "2,8,1", "--loss", "mse", "--opt",
                          "sgd", "--lr", "1e30", "--epochs", "2", "--plot", "nan")
        self.assertIsNone(docs[-1]["loss"])
        for name in ["loss.png", "accuracy.png", "boundary.png"]:
            png_size(self.path("nan", name))

    def test_help_says_which_data_get_a_boundary(self):
        out = " ".join(self.ok("train", "--help").split())
        self.assertIn("for data with 2 features also boundary.png", out)
        self.assertIn("data with more features get no boundary plot", out)


def safetensors_names(path):
    """The tensor names in a safetensors file's JSON header."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return sorted(k for k in header if k != "__metadata__")


class NormDropoutClip(TrainCliTest):
    def test_batch_norm_and_dropout_train_save_and_draw(self):
        deeper = [a if a != "2,8,1" else "2,16,16,1" for a in SMALL]
        docs = self.lines(*deeper, "--norm", "batch", "--dropout", "0.1", "--epochs", "20",
                          "--save", "m.safetensors")
        self.assertGreaterEqual(docs[-1]["test_accuracy"], 0.8)
        names = safetensors_names(os.path.join(self.dir, "m.safetensors"))
        for name in ["layers.1.running_mean", "layers.1.running_var",
                     "layers.1.num_batches_tracked", "layers.5.weight", "layers.8.bias"]:
            self.assertIn(name, names)
        self.ok("graph", "m.safetensors", "--layers", "2,16,16,1", "--norm", "batch",
                "--dropout", "0.1", "-o", "m.dot")
        # without the flags the checkpoint's metadata says them; a flag that disagrees is refused
        self.ok("graph", "m.safetensors", "-o", "m2.dot")
        with open(os.path.join(self.dir, "m.dot")) as a, open(os.path.join(self.dir, "m2.dot")) as b:
            self.assertEqual(a.read(), b.read())
        self.fails("graph", "m.safetensors", "--norm", "layer",
                   message="--norm layer: m.safetensors was trained with --norm batch")

    def test_resume_restores_the_running_statistics(self):
        args = [*SMALL, "--norm", "batch"]
        full = self.lines(*args, "--epochs", "8", "--save", "full.safetensors")
        self.lines(*args, "--epochs", "3", "--save", "part.safetensors")
        resumed = self.lines(*args, "--epochs", "8", "--resume", "part.safetensors")
        self.assertEqual(resumed[-1]["test_accuracy"], full[-1]["test_accuracy"])
        self.assertEqual(resumed[-1]["loss"], full[-1]["loss"])

    def test_layer_norm_and_clipping(self):
        # SGD: Adam's step would not notice its gradients being scaled
        args = [*SMALL, "--norm", "layer", "--epochs", "3", "--opt", "sgd", "--lr", "0.5"]
        plain = self.lines(*args)
        clipped = self.lines(*args, "--clip-grad-norm", "0.01")
        valued = self.lines(*args, "--clip-grad-value", "0.001")
        # a step bounded this tightly learns more slowly
        self.assertGreater(clipped[-1]["loss"], plain[-1]["loss"])
        self.assertGreater(valued[-1]["loss"], plain[-1]["loss"])

    def test_bad_values(self):
        self.fails("train", *SMALL, "--dropout", "1",
                   message="--dropout 1: the probability must be in [0, 1)")
        self.fails("train", *SMALL, "--norm", "group", message="--norm")
        self.fails("train", *SMALL, "--clip-grad-norm", "0",
                   message="--clip-grad-norm 0: the bound must be a positive number")
        self.fails("train", *SMALL, "--clip-grad-value", "nan",
                   message="--clip-grad-value nan: the bound must be a positive number")


class DataOptions(TrainCliTest):
    """Issue 16 item 6: --n, --noise and --features (Note [Synthetic data options])."""

    def test_the_defaults_are_each_sets_old_rows_and_noise(self):
        for data, n, noise in [("moons", "400", "0.1"), ("circles", "400", "0.1"),
                               ("spirals", "300", "0.2"), ("blobs", "400", "1")]:
            with self.subTest(data=data):
                plain = self.lines("--data", data, "--epochs", "2")
                explicit = self.lines("--data", data, "--epochs", "2", "--n", n, "--noise", noise,
                                      "--features", "none")
                self.assertEqual(plain[-1]["loss"], explicit[-1]["loss"])
                self.assertEqual(plain[-1]["test_accuracy"], explicit[-1]["test_accuracy"])
        self.assertIn("xor: 4 training rows, 2 features",
                      self.ok("train", "--data", "xor", "--epochs", "1", "--n", "4"))

    def test_rows_noise_and_features_make_the_data(self):
        out = self.ok("train", "--data", "circles", "--n", "200", "--noise", "0.05", "--features",
                      "x1^2,x2^2", "--hidden", "4", "--epochs", "60", "--batch", "16")
        self.assertIn("circles: 150 training rows, 50 test rows, 2 features, 2 classes; MLP 2,4,2",
                      out)
        # Radius squared is the class: the squares separate the circles a model of x1, x2 cannot
        # with four units in so few epochs.
        self.assertIn("test accuracy 1.0000", out)
        noisy = self.lines("--data", "moons", "--noise", "0.3", "--epochs", "2")
        plain = self.lines("--data", "moons", "--epochs", "2")
        self.assertNotEqual(noisy[-1]["loss"], plain[-1]["loss"])
        out = self.ok("train", "--data", "spirals", "--n", "30", "--features",
                      "x1,x2,x1^2,x2^2,x1*x2,sin_x1,sin_x2", "--epochs", "1")
        self.assertIn("spirals: 22 training rows, 8 test rows, 7 features, 3 classes; "
                      "MLP 7,64,64,3", out)
        # A noisy XOR of more than its four corners is split like the others; with x1*x2 beside
        # x1 and x2 (XOR is x1 + x2 - 2 x1 x2 on the corners) a model without hidden layer fits it.
        docs = self.lines("--data", "xor", "--n", "40", "--noise", "0.1", "--features",
                          "x1,x2,x1*x2", "--layers", "3,1", "--loss", "bce_logits", "--epochs",
                          "300")
        self.assertEqual(docs[-1]["test_accuracy"], 1)

    def test_the_checkpoint_keeps_them_and_a_resume_rebuilds_the_same_rows(self):
        args = ["--data", "moons", "--n", "120", "--noise", "0.25", "--features", "x1,x2,x1*x2",
                "--hidden", "8", "--batch", "20"]
        full = self.lines(*args, "--epochs", "4", "--save", "full.safetensors")
        meta = metadata(self.path("full.safetensors"))
        self.assertEqual({k: meta[k] for k in ["data.rows", "data.noise", "data.input_features",
                                                "data.features", "model.layers"]},
                         {"data.rows": "120", "data.noise": "0.25",
                          "data.input_features": "x1,x2,x1*x2", "data.features": "3",
                          "model.layers": "3,8,2"})
        self.lines(*args, "--epochs", "2", "--save", "part.safetensors")
        resumed = self.lines("--resume", "part.safetensors", "--epochs", "4")
        self.assertEqual([e["epoch"] for e in resumed[:-1]], [3, 4])
        self.assertEqual(resumed[-1]["loss"], full[-1]["loss"])
        self.assertEqual(resumed[-1]["test_accuracy"], full[-1]["test_accuracy"])
        remedy = "; leave it out to resume this model, or train a new one\n"
        for option, value, stored in [("--n", "100", "120"), ("--noise", "0.2", "0.25"),
                                      ("--features", "x1,x2", "x1,x2,x1*x2")]:
            with self.subTest(option=option):
                self.fails("train", "--resume", "part.safetensors", option, value, "--epochs", "4",
                           message=f"error: {option} {value}: part.safetensors was trained with "
                                   f"{option} {stored}{remedy}")
        # A set without the options says so too: its defaults, and no input features.
        self.lines("--data", "blobs", "--epochs", "1", "--save", "b.safetensors")
        meta = metadata(self.path("b.safetensors"))
        self.assertEqual((meta["data.rows"], meta["data.noise"], meta["data.input_features"]),
                         ("400", "1", "none"))
        self.fails("train", "--resume", "b.safetensors", "--features", "sin_x1", "--epochs", "2",
                   message="error: --features sin_x1: b.safetensors was trained with --features "
                           "none" + remedy)

    def test_bad_values_name_the_option_and_value(self):
        csv = self.write("t.csv", "a,b,c,label\n1,2,3,0\n4,5,6,1\n7,8,9,0\n")
        for args, message in [
                (["--data", "moons", "--n", "1"], "--n 1: moons needs from 2 to 10000000 rows"),
                (["--data", "xor", "--n", "3"], "--n 3: xor needs from 4 to 10000000 rows"),
                (["--data", "blobs", "--n", "99999999"],
                 "--n 99999999: blobs needs from 2 to 10000000 rows"),
                (["--data", "spirals", "--n", "100"],
                 "--n 100: spirals has 3 arms of equal size, so the rows must be a multiple of 3"),
                (["--data", "moons", "--noise", "-0.5"],
                 "--noise -0.5: the noise must be a finite number >= 0"),
                (["--data", "circles", "--noise", "inf"],
                 "--noise inf: the noise must be a finite number >= 0"),
                (["--data", "csv:" + csv, "--noise", "0.1"],
                 "--noise 0.1: only the synthetic data sets (xor, moons, circles, spirals, blobs, "
                 "gaussian, two-spirals, plane, multi-gaussian) take it, not csv:"),
                (["--data", "csv:" + csv, "--n", "10"], "--n 10: only the synthetic data sets"),
                (["--data", "moons", "--features", "x1,cos_x1"],
                 "--features x1,cos_x1: unknown input feature 'cos_x1': the features are "
                 "x1,x2,x1^2,x2^2,x1*x2,sin_x1,sin_x2 (or none)"),
                (["--data", "moons", "--features", "x1,x1"],
                 "--features x1,x1: input feature 'x1' is listed twice"),
                (["--data", "moons", "--features", ""], "--features : no input features"),
                (["--data", "csv:" + csv, "--features", "x1^2"],
                 "--features x1^2: the input features are made of two columns (x1, x2), and "),
                (["--data", "moons", "--n", "abc"], "--n: 'abc' is not an integer")]:
            with self.subTest(args=args):
                self.fails("train", *args, "--epochs", "1", message="error: " + message)

    def test_help_documents_them(self):
        out = self.ok("train", "--help")
        for text in ["--n ROWS", "--noise SIGMA", "--features LIST", "x1*x2", "sin_x2"]:
            self.assertIn(text, out)


def weights_l1(path):
    """The sum of |w| over every float32 tensor of a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    total = 0.0
    for name, entry in header.items():
        if name == "__metadata__" or entry["dtype"] != "F32":
            continue
        begin, end = entry["data_offsets"]
        data = raw[8 + n + begin:8 + n + end]
        total += sum(abs(x) for x in struct.unpack(f"<{len(data) // 4}f", data))
    return total


class PlaygroundOptions(TrainCliTest):
    """What the playground's network lab needs of train: TensorFlow Playground's two Gaussians,
    its train/test ratio and its L1 (and L2) regularization."""

    def test_gaussian_is_two_separable_clusters(self):
        out = self.ok("train", "--data", "gaussian", "--epochs", "1")
        self.assertIn("gaussian: 300 training rows, 100 test rows, 2 features, 2 classes", out)
        docs = self.lines("--data", "gaussian", "--hidden", "none", "--epochs", "20")
        self.assertGreaterEqual(docs[-1]["test_accuracy"], 0.97)
        noisy = self.lines("--data", "gaussian", "--noise", "0.5", "--epochs", "20")
        self.assertLess(noisy[-1]["test_accuracy"], docs[-1]["test_accuracy"])  # variance 4 overlaps
        self.assertIn("gaussian", self.ok("train", "--help"))

    def test_two_spirals_is_playgrounds_spiral_and_trains_with_its_defaults(self):
        out = self.ok("train", "--data", "two-spirals", "--epochs", "1")
        self.assertIn("two-spirals: 300 training rows, 100 test rows, 2 features, 2 classes", out)
        trained = self.lines("--data", "two-spirals", "--seed", "1")
        self.assertGreaterEqual(trained[-1]["test_accuracy"], 0.9)  # 0.98 measured
        self.assertIn("two-spirals", self.ok("train", "--help"))
        # spirals stays CS231n's three arms.
        self.assertIn("3 classes", self.ok("train", "--data", "spirals", "--epochs", "1"))

    def test_noise_percent_is_playgrounds_control_made_noise(self):
        # Note [The noise in percent]: gaussian takes percent / 100, moons a sigma of that / sqrt(3).
        def summary(*args):
            last = self.lines("--epochs", "2", "--hidden", "none", *args)[-1]
            del last["seconds"]
            return last

        self.assertEqual(summary("--data", "gaussian", "--noise-percent", "30"),
                         summary("--data", "gaussian", "--noise", "0.3"))
        self.assertNotEqual(summary("--data", "gaussian", "--noise-percent", "30"),
                            summary("--data", "gaussian", "--noise-percent", "40"))
        moons = summary("--data", "moons", "--noise-percent", "17.32050807568877")
        self.assertAlmostEqual(moons["loss"], summary("--data", "moons", "--noise", "0.1")["loss"],
                               places=5)
        self.fails("train", "--data", "moons", "--noise", "0.1", "--noise-percent", "10",
                   message="error: --noise-percent 10: give it or --noise 0.1, not both")
        self.fails("train", "--data", "moons", "--noise-percent", "-1",
                   message="error: --noise-percent -1: the noise must be a finite percentage >= 0")

    def test_test_fraction_splits_the_rows_and_the_checkpoint_keeps_it(self):
        out = self.ok("train", "--data", "moons", "--test-fraction", "0.5", "--epochs", "1")
        self.assertIn("moons: 200 training rows, 200 test rows", out)
        args = ["--data", "moons", "--test-fraction", "0.1", "--hidden", "4", "--batch", "40"]
        full = self.lines(*args, "--epochs", "3")
        self.lines(*args, "--epochs", "1", "--save", "part.safetensors")
        self.assertEqual(metadata(self.path("part.safetensors"))["data.test_fraction"], "0.1")
        resumed = self.lines("--resume", "part.safetensors", "--epochs", "3")
        self.assertEqual(resumed[-1], {**full[-1], "seconds": resumed[-1]["seconds"]})
        self.fails("train", "--resume", "part.safetensors", "--test-fraction", "0.2", "--epochs",
                   "3", message="error: --test-fraction 0.2: part.safetensors was trained with "
                                "--test-fraction 0.1; leave it out")
        for args, message in [
                (["--data", "moons", "--test-fraction", "1"],
                 "--test-fraction 1: the fraction of rows held out must be between 0 and 1"),
                (["--data", "moons", "--test-fraction", "0"],
                 "--test-fraction 0: the fraction of rows held out must be between 0 and 1"),
                (["--data", "xor", "--test-fraction", "0.5"],
                 "--test-fraction 0.5: xor's 4 points are all trained on: give --n above 4 to "
                 "split them")]:
            with self.subTest(args=args):
                self.fails("train", *args, message="error: " + message)

    def test_l1_and_l2_shrink_the_weights_and_the_checkpoint_keeps_them(self):
        args = ["--data", "moons", "--hidden", "8", "--opt", "sgd", "--lr", "0.1", "--epochs", "20",
                "--seed", "2"]
        self.lines(*args, "--save", "plain.safetensors")
        self.lines(*args, "--l1", "0.01", "--save", "l1.safetensors")
        self.lines(*args, "--l2", "0.01", "--save", "l2.safetensors")
        plain = weights_l1(self.path("plain.safetensors"))
        self.assertLess(weights_l1(self.path("l1.safetensors")), 0.8 * plain)
        self.assertLess(weights_l1(self.path("l2.safetensors")), 0.9 * plain)
        meta = metadata(self.path("l1.safetensors"))
        self.assertEqual((meta["train.l1"], meta["train.l2"]), ("0.01", "0"))
        self.fails("train", "--resume", "l1.safetensors", "--l1", "0.02", "--epochs", "30",
                   message="error: --l1 0.02: l1.safetensors was trained with --l1 0.01")
        for option, value in [("--l1", "-1"), ("--l2", "nan")]:
            with self.subTest(option=option):
                self.fails("train", "--data", "moons", option, value,
                           message=f"error: {option} {value}: the regularization rate must be a "
                                   "finite number >= 0")


class TrainErrors(TrainCliTest):
    def test_unknown_data_set(self):
        err = self.fails("train", "--data", "mnist", "--layers", "2,1",
                         message="unknown data set 'mnist'")
        for name in ["xor", "moons", "circles", "spirals", "blobs", "fashion-mnist", "csv:"]:
            self.assertIn(name, err)

    def test_first_layer_must_match_features(self):
        self.fails("train", "--data", "moons", "--layers", "3,1", "--loss", "bce",
                   "--save", "m.safetensors",
                   message="the first size must be 2, the number of features of moons")

    def test_last_layer_must_fit_loss(self):
        self.fails("train", "--data", "moons", "--layers", "2,4,2", "--loss", "bce",
                   message="the last size must be 1 for --loss bce")
        self.fails("train", "--data", "spirals", "--layers", "2,4,2", "--loss", "ce",
                   message="the last size must be 3 for --loss ce")
        self.fails("train", "--data", "spirals", "--layers", "2,4,1", "--loss", "hinge",
                   message="--loss hinge is for two classes")

    def test_bad_names(self):
        # l1 and huber are losses since --task regression; a name no loss has is still unknown.
        self.fails("train", "--data", "moons", "--layers", "2,1", "--loss", "kl",
                   message="unknown loss 'kl'")
        self.fails("train", "--data", "moons", "--layers", "2,1", "--act", "wobble",
                   message="unknown activation 'wobble'")
        self.fails("train", "--data", "moons", "--layers", "2,x,1",
                   message="--layers 2,x,1: not a list")
        self.fails("train", "--data", "moons", "--layers", "2",
                   message="--layers 2: not a list")

    def test_bad_numbers(self):
        self.fails("train", "--data", "moons", "--layers", "2,1", "--lr", "-1",
                   message="--lr -1: the learning rate must be a positive number")
        self.fails("train", "--data", "moons", "--layers", "2,1", "--lr", "nan",
                   message="the learning rate must be a positive number")
        self.fails("train", "--data", "moons", "--layers", "2,1", "--epochs", "0",
                   message="--epochs 0: must be at least 1")
        self.fails("train", "--data", "moons", "--layers", "2,1", "--batch", "0",
                   message="--batch 0: must be at least 1")
        self.fails("train", "--data", "moons", "--layers", "2,1", "--lr", "fast", message="--lr")
        self.fails("train", "--data", "moons", "--layers", "2,1", "--epochs", "1.5",
                   message="--epochs")
        self.fails("train", "--data", "moons", "--layers", "2,1", "--seed", "-1",
                   message="--seed")
        self.fails("train", "--layers", "2,1", message="train needs --data SET: one of xor, ")
        self.fails("graph", "--layers", "2,1", message="CHECKPOINT is required")

    def test_csv_with_a_non_numeric_cell(self):
        self.write("bad.csv", "a,b,label\n1,2,0\n3,x,1\n")
        self.fails("train", "--data", "csv:bad.csv", "--layers", "2,1", "--loss", "bce",
                   message="bad.csv:3, column 'b': 'x' is not a number")
        self.fails("train", "--data", "csv:missing.csv", "--layers", "2,1",
                   message="missing.csv")

    def test_huge_seeds_and_epochs_are_refused_not_clamped(self):
        self.fails("train", "--data", "xor", "--layers", "2,2", "--seed", "18446744073709551616",
                   message="--seed: 18446744073709551616 is too large for a seed (seeds are "
                           "below 2^64 = 18446744073709551616)")
        self.fails("train", "--data", "xor", "--layers", "2,2", "--epochs", "1e20",
                   message="--epochs: '1e20' is not an integer")
        self.fails("train", "--data", "xor", "--layers", "2,2", "--epochs",
                   "9223372036854775808", message="--epochs: 9223372036854775808 is out of range")
        self.fails("train", "--data", "xor", "--layers", "2,2", "--batch", "1e3",
                   message="--batch: '1e3' is not an integer")
        self.fails("html", "--mlp", "2,2,1", "--seed", "99999999999999999999", "-o", "p.html",
                   message="--seed: 99999999999999999999 is too large for a seed")
        # The largest seed still trains.
        self.lines("--data", "xor", "--layers", "2,2", "--epochs", "1", "--seed",
                   "18446744073709551615")

    def test_csv_byte_order_mark_and_numeric_labels(self):
        # Excel's BOM is not part of the label column's name; 1, 1.0 and 01 are one class.
        with open(self.path("bom.csv"), "wb") as f:
            f.write(b"\xef\xbb\xbflabel,a,b\n" +
                    b"".join(f"{l},{i},{i % 3}\n".encode()
                             for i, l in enumerate(["0", "1", "1.0", "01", "0.0", "00"] * 4)))
        out = self.ok("train", "--data", "csv:bom.csv:label", "--layers", "2,2", "--epochs", "1")
        self.assertIn("2 classes", out)

    def test_names_are_echoed_escaped(self):
        self.write("esc.csv", "\x1b[2J,label\n1,0\n2,1\n")
        err = self.fails("train", "--data", "csv:esc.csv:nosuch", "--layers", "1,2",
                         message="no column named 'nosuch' (the columns are \\x1b[2J, label)")
        self.assertNotIn("\x1b", err)

    def test_checkpoint_that_does_not_fit(self):
        self.lines(*SMALL, "--epochs", "2", "--save", "m.safetensors")
        with open(self.path("m.safetensors"), "rb") as f:
            saved = f.read()
        # Issue 13: one line naming both, not one error per tensor.
        self.fails("train", *SMALL[:2], "--layers", "2,4,1", *SMALL[4:], "--epochs", "4",
                   "--resume", "m.safetensors",
                   message="error: --layers 2,4,1: m.safetensors was trained with --layers "
                           "2,8,1; leave it out to resume this model, or train a new one\n")
        # A checkpoint that does not say its model (written before it did) is checked tensor by
        # tensor against --layers.
        self.lines(*SMALL, "--epochs", "2", "--save", "old.safetensors")
        strip_model_metadata(self.path("old.safetensors"))
        self.fails("train", *SMALL[:2], "--layers", "2,4,1", *SMALL[4:], "--epochs", "4",
                   "--resume", "old.safetensors",
                   message="old.safetensors: layers.0.weight has shape (8, 2) in the file, "
                           "(4, 2) in the model")
        self.fails("train", *SMALL, "--epochs", "4", "--resume", "m.safetensors",
                   "--save", "new.safetensors", "--opt", "sgd",
                   message="m.safetensors")
        with open(self.path("m.safetensors"), "rb") as f:
            self.assertEqual(f.read(), saved)
        self.fails("train", *SMALL, "--resume", "none.safetensors",
                   message="--resume none.safetensors: no such checkpoint file")

    def test_bad_plot_dir(self):
        self.write("taken", "a file")
        self.fails("train", *SMALL, "--plot", "taken", message="--plot taken: a file has that name")
        self.fails("train", *SMALL, "--plot", "taken/dir",
                   message="--plot taken/dir: taken is a file, not a directory")
        env = dict(os.environ, PATH=self.path("empty"))
        self.fails("train", *SMALL, "--plot", "plots", env=env,
                   message="--plot needs gnuplot, which is not on PATH")

    def test_save_into_a_missing_directory(self):
        # Issue 13: missing directories are created, as mkdir -p would; only a file in the way
        # is an error, and it says so rather than "not a directory".
        self.write("taken", "a file")
        self.fails("train", *SMALL, "--save", "taken/m.safetensors",
                   message="--save taken/m.safetensors: taken is a file, not a directory")
        self.fails("train", *SMALL, "--save", "taken/deeper/m.safetensors",
                   message="taken is a file, not a directory")
        self.lines(*SMALL, "--epochs", "1", "--save", "runs/one/m.safetensors")
        self.assertEqual(os.listdir(self.path("runs", "one")), ["m.safetensors"])
        # A run that fails before training creates no directory.
        self.fails("train", *SMALL, "--lr", "-1", "--save", "new/m.safetensors",
                   message="--lr -1")
        out = self.ok("train", *SMALL, "--epochs", "1", "--plot", "plots/moons")
        self.assertIn(f"wrote {os.path.join('plots', 'moons', 'loss.png')}", out)
        self.ok("graph", "runs/one/m.safetensors", "--layers", "2,8,1", "-o", "graphs/net.svg")
        self.assertTrue(os.path.exists(self.path("graphs", "net.svg")))


def reported_test_accuracy(out):
    """The test accuracy of train's text output: "train accuracy 1.0000, test accuracy 0.9900, ..."
    """
    return float(re.search(r", test accuracy ([0-9.]+)", out).group(1))


class FirstHour(TrainCliTest):
    """Issue 13, "a newcomer's first hour": train right by default, checkpoints that know their
    model."""

    def test_the_data_sizes_the_model(self):
        out = self.ok("train", "--data", "moons")
        self.assertIn("MLP 2,16,16,2 (354 parameters)\n", out)
        self.assertIn("relu hidden, out none, loss ce; Adam lr 0.01, batch 32, 100 epochs\n", out)
        self.assertIn("epoch 100/100", out)
        self.assertGreaterEqual(reported_test_accuracy(out), 0.95)
        out = self.ok("train", "--data", "spirals", "--hidden", "8", "--epochs", "1")
        self.assertIn("MLP 2,8,3 ", out)
        self.assertIn("Adam lr 0.01, batch 32, 1 epochs", out)
        self.assertIn("MLP 2,3 ", self.ok("train", "--data", "blobs", "--hidden", "none",
                                          "--epochs", "1"))
        self.assertIn("MLP 2,8,2 ", self.ok("train", "--data", "xor", "--epochs", "1"))
        self.fails("train", "--data", "moons", "--hidden", "16,x",
                   message="--hidden 16,x: not a list of positive sizes like 16,16")
        self.fails("train", "--data", "moons", "--hidden", "8", "--layers", "2,8,1",
                   message="excludes")
        self.fails("train", "--data", "moons", "--hidden", "100000,1000",
                   message="error: --hidden 100000,1000: the MLP 2,100000,1000,2: more than "
                           "100000000 parameters, the most an MLP may have\n")

    def test_help_example_and_the_loss_picks_its_output(self):
        # train --help's --layers example: one output, so bce_logits on logits.
        out = self.ok("train", "--data", "moons", "--layers", "2,16,16,1")
        self.assertIn("relu hidden, out none, loss bce_logits;", out)
        self.assertGreaterEqual(reported_test_accuracy(out), 0.95)
        for args, says in [(["--loss", "bce"], "MLP 2,16,16,1 "),
                           (["--loss", "bce"], "out sigmoid, loss bce;"),
                           (["--out", "sigmoid"], "out sigmoid, loss bce;"),
                           (["--loss", "mse"], "out none, loss mse;"),
                           (["--loss", "mse", "--out", "sigmoid"], "out sigmoid, loss mse;"),
                           (["--loss", "hinge", "--out", "tanh"], "out tanh, loss hinge;")]:
            with self.subTest(args=args):
                self.assertIn(says, self.ok("train", "--data", "moons", *args, "--epochs", "1"))

    def test_a_loss_refuses_an_output_that_does_not_fit(self):
        # bce on a linear output once trained silently to 0.60 accuracy; html --mlp refused it.
        for args, message in [
                (["--loss", "bce", "--out", "none"],
                 "error: --loss bce takes probabilities: use --out sigmoid, not none\n"),
                (["--loss", "bce_logits", "--out", "sigmoid"],
                 "error: --loss bce_logits takes logits (it applies the sigmoid itself): use "
                 "--out none, not sigmoid\n"),
                (["--loss", "ce", "--out", "sigmoid"],
                 "--loss ce takes logits (it applies the softmax itself): use --out none, not "
                 "sigmoid"),
                (["--loss", "mse", "--out", "relu"],
                 "--loss mse takes scores near the targets 0 and 1: use --out none or --out "
                 "sigmoid, not relu"),
                (["--loss", "hinge", "--out", "sigmoid"], "use --out none or --out tanh")]:
            with self.subTest(args=args):
                self.fails("train", "--data", "moons", *args, "--save", "m.safetensors",
                           message=message)

    def test_defaults_per_data_set_are_in_the_help(self):
        out = self.ok("train", "--help")
        self.assertIn("Defaults per data set", out)
        self.assertRegex(out, r"fashion-mnist +--hidden 256,128 +--lr 0.002 +--epochs 10 +"
                              r"--batch 128 +--schedule cosine")
        self.assertRegex(out, r"moons +--hidden 16,16 +--lr 0.01 +--epochs 100 +--batch 32")

    def test_a_diverged_loss_names_lr_and_check_finite(self):
        out = self.ok("train", "--data", "moons", "--loss", "mse", "--opt", "sgd", "--lr",
                      "1e30", "--epochs", "3")
        self.assertIn("the loss is nan at epoch 1: training diverged. Try a smaller --lr (this "
                      "run's is 1e+30); --check-finite stops at the first op that makes a NaN "
                      "or infinity and names it\n", out)
        self.assertEqual(out.count("diverged"), 1)
        self.assertNotIn("diverged", self.ok("train", *SMALL, "--epochs", "2"))

    def test_the_cosine_schedule(self):
        docs = self.lines(*SMALL, "--epochs", "4", "--schedule", "cosine", "--lr", "0.02")
        self.assertEqual([round(d["lr"], 12) for d in docs[:-1]],
                         [round(0.01 * (1 + math.cos(math.pi * e / 4)), 12) for e in range(4)])

    def test_the_checkpoint_says_its_model_and_data(self):
        self.lines("--data", "circles", "--hidden", "8", "--act", "tanh", "--loss", "bce",
                   "--epochs", "2", "--batch", "50", "--seed", "4", "--save", "m.safetensors")
        meta = metadata(self.path("m.safetensors"))
        self.assertEqual({k: meta[k] for k in MODEL_KEYS},
                         {"model.layers": "2,8,1", "model.act": "tanh", "model.out": "sigmoid",
                          "model.loss": "bce", "data.name": "circles", "data.features": "2",
                          "train.seed": "4", "train.batch": "50", "train.lr": "0.01",
                          "train.schedule": "constant"})
        self.assertTrue(all(isinstance(v, str) for v in meta.values()))  # as safetensors wants

    def test_resume_needs_only_the_file(self):
        full = self.lines(*SMALL, "--epochs", "6", "--save", "full.safetensors")
        self.lines(*SMALL, "--epochs", "3", "--save", "part.safetensors")
        resumed = self.lines("--resume", "part.safetensors", "--epochs", "6")
        self.assertEqual([e["epoch"] for e in resumed[:-1]], [4, 5, 6])
        self.assertEqual(resumed[-1]["loss"], full[-1]["loss"])
        self.assertEqual(resumed[-1]["test_accuracy"], full[-1]["test_accuracy"])
        out = self.ok("train", "--resume", "part.safetensors", "--epochs", "7")
        self.assertIn("MLP 2,8,1 ", out)
        self.assertIn("out none, loss bce_logits; Adam lr 0.01, batch 50, 7 epochs", out)

    def test_resume_refuses_what_disagrees_in_one_line(self):
        self.lines(*SMALL, "--epochs", "2", "--save", "m.safetensors")
        with open(self.path("m.safetensors"), "rb") as f:
            saved = f.read()
        remedy = "; leave it out to resume this model, or train a new one\n"
        for args, message in [
                (["--data", "circles"], "--data circles: m.safetensors was trained with --data "
                                        "moons"),
                (["--hidden", "16,16"], "--hidden 16,16: m.safetensors was trained with "
                                        "--hidden 8"),
                (["--layers", "2,8,8,1"], "--layers 2,8,8,1: m.safetensors was trained with "
                                          "--layers 2,8,1"),
                (["--act", "tanh"], "--act tanh: m.safetensors was trained with --act relu"),
                (["--loss", "hinge"], "--loss hinge: m.safetensors was trained with --loss "
                                      "bce_logits"),
                (["--seed", "4"], "--seed 4: m.safetensors was trained with --seed 3"),
                (["--schedule", "cosine"], "--schedule cosine: m.safetensors was trained with "
                                           "--schedule constant")]:
            with self.subTest(args=args):
                self.fails("train", "--resume", "m.safetensors", *args, "--epochs", "4",
                           message="error: " + message + remedy)
        with open(self.path("m.safetensors"), "rb") as f:
            self.assertEqual(f.read(), saved)

    def test_resume_with_its_epochs_reached_trains_nothing_and_says_so(self):
        self.lines(*SMALL, "--epochs", "2", "--save", "m.safetensors")
        before = os.stat(self.path("m.safetensors"))
        with open(self.path("m.safetensors"), "rb") as f:
            saved = f.read()
        for epochs in ["2", "1"]:
            out = self.ok("train", "--resume", "m.safetensors", "--epochs", epochs, "--save",
                          "new.safetensors")
            self.assertEqual(out, f"m.safetensors has trained 2 epochs already, and --epochs "
                                  f"{epochs} asks for {epochs} in all: nothing to train, the file "
                                  f"is left as it is (give --epochs above 2 to train on)\n")
        self.assertEqual(os.listdir(self.dir), ["m.safetensors"])
        r = run("train", "--resume", "m.safetensors", "--epochs", "2", "--json", cwd=self.dir)
        self.assertEqual((r.returncode, r.stdout), (0, ""))
        self.assertIn("nothing to train", r.stderr)
        with open(self.path("m.safetensors"), "rb") as f:
            self.assertEqual(f.read(), saved)
        self.assertEqual(os.stat(self.path("m.safetensors")).st_mtime_ns, before.st_mtime_ns)

    def test_what_it_says_is_checked(self):
        for key, value, message in [
                ("train.batch", "0", 'metadata train.batch is "0", not an integer of at least 1'),
                ("train.seed", "-3", 'metadata train.seed is "-3", not an integer of at least 0'),
                ("train.lr", "0.01x", 'metadata train.lr is "0.01x", not a learning rate'),
                ("model.layers", "2,,1", "metadata model.layers 2,,1: not a list")]:
            with self.subTest(key=key):
                self.lines(*SMALL, "--epochs", "1", "--save", "m.safetensors")
                rewrite_metadata(self.path("m.safetensors"), {key: value})
                self.fails("train", "--resume", "m.safetensors", "--epochs", "2",
                           message=f"error: m.safetensors: {message}")

    def test_old_checkpoints_resume_with_layers(self):
        self.lines(*SMALL, "--epochs", "2", "--save", "old.safetensors")
        strip_model_metadata(self.path("old.safetensors"))
        self.fails("train", "--data", "moons", "--resume", "old.safetensors", "--epochs", "3",
                   message="error: old.safetensors: the checkpoint does not say its model (it "
                           "was written before tapegrad stored it, or by another tool): give "
                           "--layers")
        self.fails("train", "--resume", "old.safetensors", "--layers", "2,8,1", "--epochs", "3",
                   message="train needs --data SET")
        docs = self.lines(*SMALL, "--resume", "old.safetensors", "--epochs", "3")
        self.assertEqual([d["epoch"] for d in docs[:-1]], [3])
        self.assertEqual(metadata(self.path("old.safetensors"))["model.layers"], "2,8,1")


def rewrite_metadata(path, changes, remove=()):
    """Rewrites a checkpoint's __metadata__ with `changes`, without the keys in `remove`, and a
    checksum that matches again (Note [Checkpoint format]: the CRC-32 of the compact header
    without its key, then the data), so that only the changed values are wrong."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    meta = header["__metadata__"]
    del meta["tapegrad.crc32"]
    meta.update(changes)
    for key in remove:
        del meta[key]
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False)
    meta["tapegrad.crc32"] = f"{zlib.crc32(text.encode() + data):08x}"
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False)
    text += " " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text.encode() + data)


# What train stores of its model and data (Note [What a checkpoint says of its model]).
MODEL_KEYS = ["model.layers", "model.act", "model.out", "model.loss", "data.name",
              "data.features", "train.seed", "train.batch", "train.lr", "train.schedule"]


def metadata(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n])["__metadata__"]


def strip_model_metadata(path):
    """Makes `path` a checkpoint as train wrote them before they said their model."""
    rewrite_metadata(path, {}, remove=MODEL_KEYS)


class Hostile(TrainCliTest):
    """Issue 12: targets that must not be replaced, checkpoints that lie, runs that fail
    halfway, output that is lost, sizes too large for memory."""

    def test_save_replaces_only_a_regular_writable_file_that_is_no_input(self):
        os.mkfifo(self.path("fifo"))
        self.fails("train", *SMALL, "--save", "fifo",
                   message='error: cannot write checkpoint "fifo": it is a FIFO, and only a '
                   "regular file is replaced")
        try:  # as root (the CI): a copy of /dev/null, which --save once replaced with a file
            os.mknod(self.path("null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
            self.fails("train", *SMALL, "--save", "null",
                       message='error: cannot write checkpoint "null": it is a character '
                       "device, and only a regular file is replaced")
        except PermissionError:
            pass
        self.write("kept.safetensors", "read-only")
        os.chmod(self.path("kept.safetensors"), 0o444)
        self.fails("train", *SMALL, "--save", "kept.safetensors",
                   message='error: cannot write checkpoint "kept.safetensors": it is '
                   "write-protected")
        self.write("d.csv", "a,b,label\n" + "".join(f"{i % 3},{i % 5},{i % 2}\n"
                                                      for i in range(20)))
        self.fails("train", "--data", "csv:d.csv", "--layers", "2,1", "--loss", "bce_logits",
                   "--save", "d.csv",
                   message="error: --save d.csv: it is an input of this run (d.csv); give "
                   "another file")
        with open(self.path("d.csv")) as f:
            self.assertTrue(f.read().startswith("a,b,label\n"))

    def test_inputs_that_never_end_are_refused(self):
        self.fails("train", "--data", "csv:/dev/zero", "--layers", "2,1",
                   message="error: /dev/zero: cannot read: it is a character device, not a "
                   "regular file")
        os.mkfifo(self.path("fifo"))  # graph once waited forever for a writer
        self.fails("graph", "fifo", "--layers", "2,8,1",
                   message='error: cannot read checkpoint "fifo": it is a FIFO, not a regular '
                   "file")

    def test_checkpoint_numbers_are_checked(self):
        self.lines(*SMALL, "--epochs", "2", "--save", "m.safetensors")
        for key, value, message in [
                ("tapegrad.optimizer.lr", "inf",
                 'metadata tapegrad.optimizer.lr is "inf", not a learning rate'),
                ("tapegrad.optimizer.steps", "18446744073709551615",
                 'metadata tapegrad.optimizer.steps is "18446744073709551615", not a step count '
                 "(at most 9007199254740992)")]:
            with self.subTest(key=key):
                self.lines(*SMALL, "--epochs", "2", "--save", "bad.safetensors")
                rewrite_metadata(self.path("bad.safetensors"), {key: value})
                self.fails("train", *SMALL, "--epochs", "4", "--resume", "bad.safetensors",
                           message=f"error: bad.safetensors: {message}")
        # A tapegrad file without its checksum key is damaged, not "from another tool".
        with open(self.path("m.safetensors"), "rb") as f:
            raw = f.read()
        n = struct.unpack("<Q", raw[:8])[0]
        text = raw[8:8 + n].decode()
        crc = json.loads(text)["__metadata__"]["tapegrad.crc32"]
        text = text.replace(f',"tapegrad.crc32":"{crc}"', "")
        text += " " * (n - len(text))
        with open(self.path("m.safetensors"), "wb") as f:
            f.write(raw[:8] + text.encode() + raw[8 + n:])
        self.fails("graph", "m.safetensors", "--layers", "2,8,1",
                   message='error: m.safetensors: it has tapegrad metadata but no '
                   '"tapegrad.crc32" checksum, which tapegrad always writes')

    def test_resume_says_which_learning_rate_wins(self):
        self.lines(*SMALL, "--epochs", "2", "--lr", "0.02", "--save", "m.safetensors")
        self.fails("train", *SMALL, "--epochs", "3", "--lr", "0.5", "--resume", "m.safetensors",
                   message="error: --lr 0.5: m.safetensors resumes with its own learning rate "
                   "0.02; leave out --lr, or give that one")
        out = self.ok("train", *SMALL, "--epochs", "3", "--resume", "m.safetensors")
        self.assertIn("resuming from m.safetensors with learning rate 0.02 (the checkpoint's)\n",
                      out)
        self.ok("train", *SMALL, "--epochs", "4", "--lr", "0.02", "--resume", "m.safetensors")

    def test_a_failed_resume_writes_nothing_and_names_its_file(self):
        self.lines(*SMALL, "--epochs", "2", "--save", "bad.safetensors")
        rewrite_metadata(self.path("bad.safetensors"), {"fit.history": "not numbers\n"})
        self.fails("train", *SMALL, "--epochs", "4", "--resume", "bad.safetensors",
                   "--save", "new.safetensors",
                   message="error: bad.safetensors: the training history in its metadata is "
                   "malformed (epoch 1)")

    def test_lost_standard_output_is_an_error(self):
        self.lines(*SMALL, "--epochs", "2", "--save", "m.safetensors")
        for args in [["train", *SMALL, "--epochs", "2", "--json"],
                     ["train", *SMALL, "--epochs", "2"],
                     ["graph", "m.safetensors", "--layers", "2,8,1"]]:
            with self.subTest(args=args):
                with open("/dev/full", "w") as full:
                    r = subprocess.run([*wrapper.WRAPPER, TAPEGRAD, *args], cwd=self.dir,
                                       stdout=full, stderr=subprocess.PIPE, text=True,
                                       timeout=120 * wrapper.TIMEOUT_SCALE)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertEqual(r.stderr, "error: cannot write to standard output: No space "
                                 "left on device\n")

    def test_a_file_size_limit_is_a_message(self):
        # Under `ulimit -f`, SIGXFSZ once killed the save silently, leaving a *.tmp-* file.
        def small_files():
            resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        r = subprocess.run([*wrapper.WRAPPER, TAPEGRAD, "train", *SMALL[:2], "--layers",
                            "2,64,64,1", *SMALL[4:], "--epochs", "2", "--save", "m.safetensors"],
                           cwd=self.dir, capture_output=True, text=True, preexec_fn=small_files,
                           timeout=120 * wrapper.TIMEOUT_SCALE)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(r.stderr, 'error: cannot write checkpoint "m.safetensors": File too '
                         "large\n")
        self.assertEqual(os.listdir(self.dir), [])

    def test_sizes_too_large_for_memory_are_refused_before_building(self):
        self.fails("train", *SMALL[:2], "--layers", "2,100000,100000,2", "--epochs", "1",
                   message="error: --layers 2,100000,100000,2: more than 100000000 parameters, "
                   "the most an MLP may have")
        self.lines(*SMALL, "--epochs", "1", "--save", "m.safetensors")
        self.fails("graph", "m.safetensors", "--layers", "999999999,8,1",
                   message="error: --layers 999999999,8,1: more than 100000000 parameters")


class CheckFinite(TrainCliTest):
    """train --check-finite on a learning rate so big that training diverges to inf."""
    DIVERGES = ["--data", "moons", "--layers", "2,16,16,1", "--loss", "bce_logits", "--opt",
                "sgd", "--lr", "1e30", "--epochs", "3", "--batch", "20", "--seed", "1"]

    def test_one_message_exit_2_and_the_checkpoint_intact(self):
        checkpoint = self.write("m.safetensors", "an earlier checkpoint")
        for extra in [[], ["--json"]]:
            with self.subTest(extra=extra):
                r = run("train", *self.DIVERGES, "--check-finite", "--save", "m.safetensors",
                        *extra, cwd=self.dir)
                self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
                self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
                self.assertRegex(r.stderr, r"^error: anomaly: forward of linear \(node \d+ in "
                                           r"layers\.\d, input 0 = .* produced inf at \[")
                self.assertNotIn("checkpoint written", r.stdout)
                with open(checkpoint) as f:
                    self.assertEqual(f.read(), "an earlier checkpoint")
                self.assertEqual(os.listdir(self.dir), ["m.safetensors"])

    def test_off_it_diverges_silently(self):
        summary = self.lines(*self.DIVERGES)[-1]
        self.assertIsNone(summary["loss"])  # NaN, written as null

    def test_a_healthy_run_is_unchanged(self):
        self.assertEqual(self.lines(*SMALL, "--epochs", "3", "--check-finite")[-1]["loss"],
                         self.lines(*SMALL, "--epochs", "3")[-1]["loss"])

    def test_help(self):
        self.assertIn("--check-finite", self.ok("train", "--help"))


class Graph(TrainCliTest):
    def setUp(self):
        super().setUp()
        self.lines(*SMALL, "--epochs", "2", "--save", "m.safetensors")

    def test_svg_at_module_level(self):
        out = self.ok("graph", "m.safetensors", "--layers", "2,8,1", "--act", "relu",
                      "-o", "net.svg")
        self.assertEqual(out, "graph written to net.svg\n")
        with open(self.path("net.svg")) as f:
            svg = f.read()
        self.assertTrue(svg.lstrip().startswith("<?xml") or "<svg" in svg[:500])
        self.assertIn("cluster", svg)
        self.assertIn("</svg>", svg)

    def test_dot_on_stdout(self):
        out = self.ok("graph", "m.safetensors", "--layers", "2,8,1")
        self.assertTrue(out.startswith("digraph"))
        self.assertIn("cluster", out)
        self.assertIn("(8, 2)", out)  # the first weight's shape

    def test_shape_mismatch(self):
        self.fails("graph", "m.safetensors", "--layers", "2,16,1", "-o", "net.svg",
                   message="error: --layers 2,16,1: m.safetensors was trained with --layers "
                           "2,8,1; leave it out to draw the model the file holds\n")
        strip_model_metadata(self.path("m.safetensors"))  # a file that does not say its model
        self.fails("graph", "m.safetensors", "--layers", "2,16,1", "-o", "net.svg",
                   message="m.safetensors: layers.0.weight has shape (8, 2) in the file, "
                           "(16, 2) in the model")

    def test_the_checkpoint_says_its_model(self):
        # Issue 13: no --layers or --act; the file says them, and a wrong one is refused.
        with_layers = self.ok("graph", "m.safetensors", "--layers", "2,8,1", "--act", "relu")
        self.assertEqual(self.ok("graph", "m.safetensors"), with_layers)
        self.fails("graph", "m.safetensors", "--act", "tanh",
                   message="error: --act tanh: m.safetensors was trained with --act relu; leave "
                           "it out to draw the model the file holds\n")
        self.fails("graph", "m.safetensors", "--out", "sigmoid",
                   message="--out sigmoid: m.safetensors was trained with --out none")
        # Without its metadata, the sizes come from the weights' shapes.
        strip_model_metadata(self.path("m.safetensors"))
        self.assertEqual(self.ok("graph", "m.safetensors"), with_layers)
        self.write("empty.safetensors", "")
        with open(self.path("w.safetensors"), "wb") as f:  # a valid file with no MLP in it
            header = b'{"bias":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
            header += b" " * (-len(header) % 8)
            f.write(struct.pack("<Q", len(header)) + header + b"\0" * 4)
        self.fails("graph", "w.safetensors",
                   message="w.safetensors: no layers.K.weight of an MLP in the file: give "
                           "--layers")

    def test_bad_output(self):
        self.fails("graph", "m.safetensors", "--layers", "2,8,1", "-o", "net.pdf",
                   message="unknown extension '.pdf'")
        self.fails("graph", "missing.safetensors", "--layers", "2,8,1", "-o", "net.svg",
                   message="missing.safetensors")


class Regression(TrainCliTest):
    """Issue 16 item 5: --task regression on plane, multi-gaussian and CSV targets (Note
    [Regression tasks] in tools/train_setup.hpp)."""

    def csv(self, name="r.csv", rows=120):
        """x, an unused column, y = sin(x) and z = x^2 / 3: two targets of one input."""
        lines = ["x,junk,y,z"]
        for i in range(rows):
            x = -3 + 6 * i / (rows - 1)
            lines.append(f"{x},{(i * 7) % 5},{math.sin(x)},{x * x / 3}")
        return self.write(name, "\n".join(lines) + "\n")

    def test_plane_json_reports_r2_and_rmse_not_accuracy(self):
        docs = self.lines("--data", "plane", "--epochs", "20")
        epochs, summary = docs[:-1], docs[-1]
        self.assertEqual([e["epoch"] for e in epochs], list(range(1, 21)))
        for e in epochs:
            self.assertNotIn("train_accuracy", e)
            self.assertNotIn("test_accuracy", e)
            self.assertGreaterEqual(e["test_rmse"], 0)
        self.assertEqual(list(summary)[:4], ["r2", "rmse", "train_r2", "train_rmse"])
        self.assertNotIn("test_accuracy", summary)
        self.assertNotIn("train_accuracy", summary)
        self.assertGreater(summary["r2"], 0.99)  # a plane is what a ReLU MLP fits best
        self.assertLess(summary["rmse"], 0.05)
        self.assertEqual(summary["r2"], epochs[-1]["test_r2"])  # the same model, the test rows
        self.assertEqual(summary["loss"], epochs[-1]["loss"])

    def test_multi_gaussian_learns_and_noise_and_n_shape_it(self):
        summary = self.lines("--data", "multi-gaussian", "--epochs", "60")[-1]
        self.assertGreater(summary["train_r2"], 0.5)
        out = self.ok("train", "--data", "multi-gaussian", "--n", "200", "--noise", "0.2",
                      "--epochs", "1")
        self.assertIn("multi-gaussian: 150 training rows, 50 test rows, 2 features, 1 target "
                      "(regression); MLP 2,32,32,1", out)
        self.assertIn("loss mse", out)
        self.assertRegex(out, r"train R² -?\d\.\d{4}, RMSE [\d.e-]+; test R²")

    def test_csv_with_two_target_columns(self):
        self.csv()
        summary = self.lines("--data", "csv:r.csv:y,z", "--task", "regression", "--hidden",
                             "16,16", "--epochs", "150", "--seed", "2")[-1]
        self.assertGreater(summary["r2"], 0.9)
        out = self.ok("train", "--data", "csv:r.csv:2,3", "--task", "regression", "--epochs", "1",
                      "--loss", "huber")
        self.assertIn("r.csv: 90 training rows, 30 test rows, 2 features, 2 targets "
                      "(regression); MLP 2,16,16,2", out)
        self.assertIn("loss huber", out)
        # By default the target is the last column, as a label is.
        out = self.ok("train", "--data", "csv:r.csv", "--task", "regression", "--epochs", "1",
                      "--loss", "l1")
        self.assertIn("3 features, 1 target (regression); MLP 3,16,16,1", out)

    def test_plots_prediction_and_a_one_feature_curve(self):
        self.csv()
        with open(self.path("one.csv"), "w") as f:
            for line in open(self.path("r.csv")):
                cells = line.strip().split(",")
                f.write(f"{cells[0]},{cells[2]}\n")
        out = self.ok("train", "--data", "csv:one.csv", "--task", "regression", "--epochs", "30",
                      "--plot", "one")
        for name in ["loss.png", "r2.png", "prediction.png", "fit.png"]:
            self.assertIn(f"wrote {os.path.join('one', name)}", out)
            self.assertGreater(png_size(self.path("one", name))[0], 100)
        with open(self.path("one", "history.dat")) as f:
            self.assertEqual(f.readline().strip(), "# epoch loss train_r2 test_r2")
        # prediction.dat: one line per test row (30) after its header.
        with open(self.path("one", "prediction.dat")) as f:
            self.assertEqual(len(f.read().splitlines()), 1 + 30)
        # Two features: no curve to draw, and no decision map of classes.
        out = self.ok("train", "--data", "plane", "--epochs", "2", "--plot", "two")
        self.assertIn("prediction.png", out)
        self.assertNotIn("fit.png", out)
        self.assertNotIn("boundary.png", out)

    def test_the_checkpoint_says_the_task_and_resumes_it(self):
        full = self.lines("--data", "plane", "--epochs", "6", "--save", "full.safetensors")
        self.lines("--data", "plane", "--epochs", "3", "--save", "part.safetensors")
        self.assertEqual(metadata(self.path("part.safetensors"))["model.task"], "regression")
        resumed = self.lines("--resume", "part.safetensors", "--epochs", "6")
        self.assertEqual([e["epoch"] for e in resumed[:-1]], [4, 5, 6])
        self.assertEqual(resumed[-1]["r2"], full[-1]["r2"])
        self.assertEqual(resumed[-1]["rmse"], full[-1]["rmse"])
        self.csv()
        self.lines("--data", "csv:r.csv:y", "--task", "regression", "--epochs", "1", "--save",
                   "c.safetensors")
        self.fails("train", "--resume", "c.safetensors", "--task", "classification",
                   "--epochs", "2",
                   message="--task classification: c.safetensors was trained with --task "
                           "regression")
        classifier = self.lines(*SMALL, "--epochs", "1", "--save", "k.safetensors")[-1]
        self.assertIn("test_accuracy", classifier)
        self.assertEqual(metadata(self.path("k.safetensors"))["model.task"], "classification")

    def test_what_does_not_make_a_regression_is_refused(self):
        self.csv()
        for args, message in [
                (["--data", "plane", "--loss", "ce"],
                 "--loss ce is for classification; --task regression trains with mse, l1 or "
                 "huber"),
                (["--data", "moons", "--loss", "l1"],
                 "--loss l1 is for regression: give --task regression"),
                (["--data", "plane", "--task", "classification"],
                 "--task classification: plane is a regression set (real-valued targets)"),
                (["--data", "moons", "--task", "regression"],
                 "--task regression: moons has classes"),
                (["--data", "csv:r.csv:y,w", "--task", "regression"],
                 "r.csv: no column named 'w' (the columns are x, junk, y, z)"),
                (["--data", "csv:r.csv:y,", "--task", "regression"],
                 "a target column is empty"),
                (["--data", "plane", "--layers", "2,8,2"],
                 "--layers 2,8,2: the last size must be 1, one output per target of plane"),
                (["--data", "plane", "--task", "sideways"], "--task: sideways not in"),
        ]:
            self.fails("train", *args, "--epochs", "1", message=message)

    def test_help_documents_the_task(self):
        out = self.ok("train", "--help")
        for text in ["--task", "plane, multi-gaussian", "l1 or huber", "prediction.png",
                     "\"r2\", \"rmse\""]:
            self.assertIn(text, out)


class Validation(TrainCliTest):
    """Issue 16 item 6: --val, --early-stop and --save-best (nn's Note [Validation and early
    stopping])."""

    def test_val_reports_a_validation_loss_each_epoch(self):
        docs = self.lines(*SMALL, "--epochs", "3", "--val", "0.2")
        for e in docs[:-1]:
            self.assertGreater(e["val_loss"], 0)
        self.assertIn(docs[-1]["best_epoch"], [1, 2, 3])
        self.assertFalse(docs[-1]["stopped_early"])
        # Without --val the lines and the summary are what they were.
        plain = self.lines(*SMALL, "--epochs", "1")
        self.assertNotIn("val_loss", plain[0])
        self.assertNotIn("best_epoch", plain[-1])
        out = self.ok("train", *SMALL, "--epochs", "2", "--val", "0.2")
        self.assertIn("val loss ", out)
        self.assertRegex(out, r"lowest validation loss [\d.e-]+ at epoch [12]")

    def test_early_stop_and_save_best(self):
        # 60 training rows, a wide MLP and a quick rate: the validation loss soon stops falling.
        docs = self.lines("--data", "multi-gaussian", "--n", "80", "--hidden", "64,64", "--lr",
                          "0.01", "--epochs", "200", "--val", "0.25", "--early-stop", "2",
                          "--save-best", "best.safetensors")
        epochs, summary = docs[:-1], docs[-1]
        self.assertTrue(summary["stopped_early"])
        self.assertLess(len(epochs), 30)
        self.assertEqual(len(epochs), summary["best_epoch"] + 2)  # the best, then 2 without
        losses = [e["val_loss"] for e in epochs]
        self.assertEqual(min(losses), losses[summary["best_epoch"] - 1])
        meta = metadata(self.path("best.safetensors"))
        self.assertEqual(len(meta["fit.history"].splitlines()), summary["best_epoch"])
        self.assertEqual(meta["train.early_stop"], "2")
        self.assertEqual(meta["train.val"], "0.25")

    def test_resume_keeps_the_validation_split(self):
        full = self.lines(*SMALL, "--epochs", "4", "--val", "0.2", "--save", "full.safetensors")
        self.lines(*SMALL, "--epochs", "2", "--val", "0.2", "--save", "part.safetensors")
        resumed = self.lines("--resume", "part.safetensors", "--epochs", "4")
        self.assertEqual([e["val_loss"] for e in resumed[:-1]],
                         [e["val_loss"] for e in full[2:-1]])
        self.fails("train", "--resume", "part.safetensors", "--epochs", "5", "--val", "0.3",
                   message="--val 0.3: part.safetensors was trained with --val 0.2")

    def test_what_does_not_validate_is_refused(self):
        for args, message in [
                (["--early-stop", "2"],
                 "--early-stop watches the validation loss: give --val FRACTION too"),
                (["--save-best", "b.safetensors"],
                 "--save-best watches the validation loss: give --val FRACTION too"),
                (["--val", "1"],
                 "--val 1: the share of the training rows held out must be in (0, 1)"),
                (["--val", "0.2", "--early-stop", "0"],
                 "--early-stop 0: the patience must be at least 1 epoch"),
                (["--val", "0.2", "--save", "m.safetensors", "--save-best", "m.safetensors"],
                 "--save-best m.safetensors: the best epoch's checkpoint needs a file of its own"),
        ]:
            self.fails("train", *SMALL, "--epochs", "1", *args, message=message)


def main():
    global TAPEGRAD
    if len(sys.argv) != 2:
        sys.exit("usage: train_cli_test.py PATH/TO/tapegrad")
    TAPEGRAD = os.path.abspath(sys.argv.pop())
    return runner.run(__name__)


if __name__ == "__main__":
    sys.exit(main())
