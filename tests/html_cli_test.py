#!/usr/bin/env python3
# End-to-end tests of `tapegrad html`: the page is one self-contained file whose steps are the
# forward and backward steps `tapegrad step` prints, for a program and for --mlp; bad input exits
# with 2, one message and no file. Usage: html_cli_test.py PATH/TO/tapegrad
import json
import os
import re
import sys
import unittest

import runner  # tests/runner.py: the closing "N passed, M failed" line
from cli_test import CS231N, CS231N_INPUTS, CliTest
import cli_test


def page_data(html):
    """The steps the page embeds: the JSON of its <script type="application/json">."""
    m = re.search(r'<script type="application/json" id="page-data">(.*?)</script>', html, re.S)
    assert m, "no page data"
    return json.loads(m.group(1))


def step_transcript(out):
    """`tapegrad step`'s output as (forward lines, [(heading, lines)] per backward step)."""
    forward, backward, section = [], [], None
    for line in out.splitlines():
        if not line.startswith(" "):
            section = line
        elif section == "forward":
            forward.append(line.strip())
        elif section == "backward" and line.startswith("  step "):
            backward.append((line.strip(), []))
        elif section == "backward" and line.startswith("    "):
            backward[-1][1].append(line.strip())
    return forward, backward


class Page(CliTest):
    def page(self, *args, name="page.html"):
        self.assertEqual(self.ok("html", *args, "-o", name), f"page written to {name}\n")
        with open(self.path(name), encoding="utf-8") as f:
            return f.read()

    def assertSelfContained(self, html):
        self.assertTrue(html.startswith("<!DOCTYPE html>"), html[:40])
        # Nothing is loaded from anywhere: no src or href, no stylesheet link, no CSS import.
        self.assertNotRegex(html, r"""(src|href)\s*=\s*["']?(https?:)?//""")
        self.assertNotRegex(html, r"<link\b|@import|url\(")
        self.assertEqual(html.count("<svg"), 1)
        self.assertEqual(html.count("</script>"), 2)  # the data and the script

    def assertSameSteps(self, html, step_args):
        """The page's steps are `tapegrad step`'s, line for line: one forward step for the
        leaves ("x = -2", all at once) and one per op it prints ("q = x + y = 3"), and one
        backward step per step it prints, with the same text."""
        forward, backward = step_transcript(self.ok("step", *step_args))
        leaves = [line for line in forward if line.count(" = ") == 1]
        ops = [[line] for line in forward if line.count(" = ") > 1]
        steps = page_data(html)["steps"]
        self.assertEqual(len(steps), (1 if leaves else 0) + len(ops) + len(backward))
        self.assertEqual([s["lines"] for s in steps if s["phase"] == "forward"],
                         ([leaves] if leaves else []) + ops)
        self.assertEqual([(s["heading"], s["lines"]) for s in steps if s["phase"] == "backward"],
                         backward)

    def test_cs231n(self):
        html = self.page(CS231N, *CS231N_INPUTS)
        self.assertSelfContained(html)
        self.assertSameSteps(html, [CS231N, *CS231N_INPUTS])
        data = page_data(html)
        self.assertEqual(len(data["steps"]), 1 + 2 + 2)
        self.assertEqual(data["steps"][0]["heading"], "the inputs")
        self.assertEqual(data["gradients"], ["df/dx = -4", "df/dy = -4", "df/dz = 3"])
        self.assertIn("<title>q = x + y; f = q * z \u00b7 x=-2 y=5 z=-4</title>", html)
        # Every id a step names is an element of the SVG.
        ids = set(re.findall(r'<g id="([^"]+)" class="(?:node|edge)"', html))
        for step in data["steps"]:
            self.assertLessEqual({*step["nodes"], *step["edges"], *step["shows"]}, ids)

    def test_a_fork_named_constants_and_functions(self):
        program = "c = 3\na = x * x\nb = sigmoid(a) * c\nf = max(b, x) + tanh(a) * 0.5"
        html = self.page(program, "x=0.5")
        self.assertSelfContained(html)
        self.assertSameSteps(html, [program, "x=0.5"])
        self.assertIn("+=", json.dumps(page_data(html)["steps"]))

    def test_program_from_a_file_and_from_stdin(self):
        with open(self.path("circuit.txt"), "w") as f:
            f.write("# CS231n\nq = x + y\nf = q * z\n")
        from_file = self.page("-f", "circuit.txt", *CS231N_INPUTS, name="a.html")
        self.assertIn("<title>circuit.txt \u00b7 x=-2 y=5 z=-4</title>", from_file)
        self.assertSameSteps(from_file, [CS231N, *CS231N_INPUTS])
        r = cli_test.run("html", "-f", "-", *CS231N_INPUTS, "-o", "b.html", cwd=self.dir,
                         stdin="q = x + y; f = q * z")
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(self.path("b.html"), encoding="utf-8") as f:
            self.assertEqual(len(page_data(f.read())["steps"]), 5)

    def test_nothing_a_program_says_escapes_its_place(self):
        program = 'f = x * 2  # </script><script>alert("&")</script> <!--'
        html = self.page(program, "x=1")
        self.assertSelfContained(html)
        self.assertIn("&lt;/script&gt;&lt;script&gt;alert(&quot;&amp;&quot;)", html)

    def test_mlp(self):
        html = self.page("--mlp", "2,2,1", "--act", "sigmoid", "--seed", "1")
        self.assertSelfContained(html)
        self.assertLess(len(html.encode()), 1 << 20)
        data = page_data(html)
        phases = [s["phase"] for s in data["steps"]]
        # Leaves: x1, x2, 6 weights and 3 biases, in one step; ops: per unit two products, two
        # sums and the sigmoid (3 units), then ŷ - y and its square. The target 1 is a constant:
        # no step.
        self.assertEqual(phases.count("forward"), 1 + 3 * 5 + 2)
        self.assertEqual(phases.count("backward"), 3 * 5 + 2)
        self.assertEqual(phases, sorted(phases, reverse=True))  # forward, then backward
        self.assertEqual(data["steps"][0]["lines"][:2], ["x1 = 1", "x2 = 0"])
        self.assertEqual(len(data["steps"][0]["lines"]), 11)
        # The prediction is ŷ, apart from the target y.
        forward = [line for s in data["steps"] if s["phase"] == "forward" for line in s["lines"]]
        self.assertTrue(forward[-3].startswith("ŷ = sigmoid(z2_1) = "), forward[-3])
        self.assertTrue(forward[-2].startswith("t27 = ŷ - 1 = "), forward[-2])
        self.assertEqual(data["steps"][-1]["heading"][:8], "step 17:")
        self.assertIn("MLP 2-2-1, sigmoid hidden, sigmoid out, MSE loss; x = (1, 0), y = 1; seed 1",
                      html)
        self.assertTrue(any(g.startswith("dL/dw1_11 = ") for g in data["gradients"]))
        # The same seed, the same net; another seed, other weights.
        self.assertEqual(self.page("--mlp", "2,2,1", "--act", "sigmoid", "--seed", "1",
                                   name="again.html"), html)
        self.assertNotEqual(self.page("--mlp", "2,2,1", "--seed", "2", name="other.html"), html)

    def test_mlp_options(self):
        html = self.page("--mlp", "3,2,2", "--act", "tanh", "--loss", "bce", "--x", "1,-0.5,2",
                         "--y", "0,1")
        data = page_data(html)
        self.assertIn("x = (1, -0.5, 2), y = (0, 1)", html)
        self.assertIn("x3 = 2", [line for s in data["steps"] for line in s["lines"]])
        self.assertTrue(any("log" in s["heading"] for s in data["steps"] if s["phase"] == "backward"))


class Errors(CliTest):
    def one_line(self, *args, message):
        err = self.fails(*args, message=message)
        self.assertEqual(err.count("\n"), 1, err)

    def test_program_and_output_errors(self):
        self.fails("html", "f = x *", "x=1", "-o", "p.html", message="expected an expression")
        page = [CS231N, *CS231N_INPUTS]
        cases = [
            ([CS231N, "x=1", "-o", "p.html"], "no value for the inputs y, z"),
            (page, "error: no page to write: give -o PAGE.html"),
            ([], "error: no page to write"),
            ([*page, "-o", "p.svg"],
             "error: cannot write p.svg: unknown extension '.svg'; a page is written as .html"),
            ([*page, "-o", "page"], "cannot write page: it has no extension"),
            # A missing directory is created (issue 13); one that cannot be is an error.
            ([*page, "-o", "/dev/null/p.html"], "cannot write /dev/null/p.html: /dev/null is a "
                                                "file, not a directory"),
            (["-f", "nowhere.txt", "x=1", "-o", "p.html"], "cannot read nowhere.txt"),
            (["--bogus", *page, "-o", "p.html"], "--bogus"),
            (["f = x" + " * 1.5" * 500, "x=1", "-o", "p.html"],
             "error: page: the graph has 1001 nodes; one of more than 400 is too large to follow "
             "step by step"),
        ]
        for args, message in cases:
            with self.subTest(args=args[:3]):
                self.one_line("html", *args, message=message)

    def test_a_directory_and_an_unwritable_place(self):
        os.mkdir(self.path("d.html"))
        self.one_line("html", CS231N, *CS231N_INPUTS, "-o", "d.html",
                      message="cannot write d.html: it is a directory")
        # /proc takes no new files, not even from root: the atomic writer's own error.
        self.one_line("html", CS231N, *CS231N_INPUTS, "-o", "/proc/p.html",
                      message='error: cannot write page "/proc/p.html": ')
        os.mkfifo(self.path("fifo.html"))  # replaced by a file, once
        self.one_line("html", CS231N, *CS231N_INPUTS, "-o", "fifo.html",
                      message='error: cannot write page "fifo.html": it is a FIFO, and only a '
                      "regular file is replaced")

    def test_mlp_errors(self):
        cases = [
            (["--mlp", "2"], "--mlp 2: not a list of at least two positive sizes"),
            (["--mlp", "2,x,1"], "--mlp 2,x,1: not a list"),
            (["--mlp", "2,8,8,1"], "the MLP has 88 weights; a scalar graph of more than 64"),
            # Sizes are checked before the MLP is built: this one was std::bad_alloc, exit 1.
            (["--mlp", "2,999999999,1"], "error: --mlp 2,999999999,1: more than 100000000 "
                                         "parameters, the most an MLP may have"),
            (["--mlp", "2,9999999,1"], "error: --mlp 2,9999999,1: the MLP has 29999997 weights; "
                                       "a scalar graph of more than 64 is too large to read"),
            (["--mlp", "2,2,1", "--act", "swish"], "unknown activation 'swish'"),
            (["--mlp", "2,2,1", "--act", "prelu"], "has no scalar form"),
            (["--mlp", "2,2,1", "--loss", "hinge"], "--loss hinge: the losses of a page are mse "
                                                     "and bce"),
            (["--mlp", "2,2,1", "--loss", "bce", "--out", "none"],
             "--loss bce takes probabilities: use --out sigmoid, not none"),
            (["--mlp", "2,2,1", "--loss", "bce", "--y", "2"], "a target of bce is a probability"),
            (["--mlp", "2,2,1", "--x", "1"], "--x 1: 1 value for an MLP with 2 inputs"),
            (["--mlp", "2,2,1", "--x", "1,a"], "--x 1,a: 'a' is not a number"),
            (["--mlp", "2,2,1", "--x", "1,nan"], "'nan' is not a number"),
            (["--mlp", "2,2,2", "--y", "1"], "--y 1: 1 value for an MLP with 2 outputs"),
            (["--mlp", "2,2,1", "--seed", "-1"], "--seed: '-1' is not a seed"),
            (["--mlp", "2,2,1", CS231N, *CS231N_INPUTS], "--mlp steps through an MLP: give no "
                                                          "program with it"),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                self.one_line("html", *args, "-o", "p.html", message=message)


class Help(CliTest):
    def test_help(self):
        out = self.ok("html", "--help")
        self.assertIn("tapegrad html [OPTIONS]", out)
        self.assertIn("'name = expr' binds a name", out)  # the language, as for grad and step
        for option in ["--mlp", "--act", "--out", "--loss", "--x", "--y", "--seed", "-o"]:
            self.assertIn(option, out)
        self.assertIn("tapegrad html --mlp 2,2,1 --act sigmoid --seed 1 -o mlp.html", out)
        self.assertIn("html", self.ok("--help"))


def main():
    if len(sys.argv) != 2:
        print("usage: html_cli_test.py PATH/TO/tapegrad", file=sys.stderr)
        return 2
    cli_test.TAPEGRAD = os.path.abspath(sys.argv[1])
    return runner.run(__name__)


if __name__ == "__main__":
    sys.exit(main())
