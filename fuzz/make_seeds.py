#!/usr/bin/env python3
"""Writes the seed corpus fuzz/corpus/<target>/: small valid inputs and malformed ones, each
named for what it is. The files are committed; run this again after changing a seed here."""

import gzip
import json
import pathlib
import shutil
import struct
import zlib

CORPUS = pathlib.Path(__file__).resolve().parent / "corpus"

PROGRAMS = {
    "cs231n": "q = x + y; f = q * z\n",
    "neuron": "w0 = 2; x0 = -1; w1 = -3; x1 = -2; w2 = -3\n"
              "f = sigmoid(w0 * x0 + w1 * x1 + w2)\n",
    "functions": "a = exp(x) + log(y) - sqrt(z) * abs(x)\nb = tanh(a) / relu(y) + softplus(z)\n"
                 "c = leaky_relu(a, 0.1) + elu(b) + elu(b, 2) + leaky_relu(b)\n"
                 "f = prelu(c, p) + max(a, b) + pow(c, 2) + pow(x, y)\n",
    "precedence": "f = -x ^ 2 + 2 ^ -1 * y ** 3 ** 0.5 / +z - (x - y)\n",
    "numbers": "f = 1.5e3 * x + .25 - 3E-2 + 0.0 * y + 12\n",
    "rebind": "x = x * 2\nx = x + 1\nx = x * x\nx = x - 1\nf = x\n",
    "alias": "y = x\nc = 3\nf = y * c\n",
    "comments": "# a comment\n\nf = (x +\n  y) # continued inside parentheses\n",
    "bare": "x * y + 1",
    "crlf": "q = x + y\r\nf = q * z\r\n",
    "tab": "f =\tx\t*\ty",
    "constant": "f = 2 * 3",
    "deep": "f = " + "(" * 40 + "x" + ")" * 40 + "\n",
    "deep_calls": "f = " + "relu(" * 30 + "x" + ")" * 30 + "\n",
    "long_name": "f = " + "v" * 200 + " * 2\n",
    "fork": "a = x * y\nb = a + a\nf = b * a + sigmoid(a)\n",
    # x feeds every op: its graph draws copies of x (Note [Long edges]); once minutes of layout.
    "sum_of_x": "f = " + "+".join(["x"] * 70) + "\n",
    "kinks": "f = relu(x - x) + abs(0 * x) + max(x, x) + leaky_relu(x - x, 0.2)\n",
    "domain": "f = log(x - x) + sqrt(-1 * y) + pow(y, 0.5) + 1 / (x - x)\n",
    # Malformed: each stops at a different error.
    "err_unclosed": "f = (x + y * ",
    "err_unmatched": "f = x + y)\n",
    "err_unknown_function": "f = foo(x)\n",
    "err_arguments": "f = max(x) + elu(x, y) + exp()\n",
    "err_exponent": "f = 1e+ * x\n",
    "err_range": "f = 1e999 * x\n",
    "err_character": "f = x $ y\n",
    "err_utf8": "f = x \u2202 y\n",
    "err_unused": "a = x * 2\nf = x\n",
    "err_assign_function": "exp = x\n",
    "err_comma": "f = x, y\n",
    "err_double_assign": "f = g = x\n",
    "err_bare_unused": "x + 1\nf = x\n",
    "err_empty": "# nothing\n",
    "err_long_name": "f = " + "v" * 201 + "\n",
}

CSVS = {
    "header": "x1,x2,label\n1.5,2,0\n-3,4e1,1\n\n5, +6 ,2.0\r\n",
    "label_first": "label,a,b\n1,0.5,0.25\n0,1,2\n",
    "species": "sl,sw,label\n5.1,3.5,setosa\n7.0,3.2,versicolor\n6.3,3.3,virginica\n",
    "numbers_as_labels": "x,y\n1,10\n2,-1\n3,2\n4,10\n",
    "tabs": "1\t2\t0\n3\t4\t1\n",
    "semicolons": "1;2;a\n3;4;b\n",
    "quoted": "\"a\",\"b,\"\"c\"\"\",label\n\"1.5\",2,1\n",
    "no_header": "0,1,1\n2,3,0\n",
    "err_ragged": "x1,x2,label\n1,2,0\n1,2\n",
    "err_text": "x1,x2,label\n1,abc,0\n",
    "err_empty_cell": "x1,x2,label\n1,,0\n",
    "err_nan": "x1,x2,label\nnan,1,1\ninf,2,0\n",
    "err_huge": "x1,label\n1e39,0\n",
    "err_quote": "x,label\n\"1,0\n",
    "err_only_label": "label\n0\n",
    "err_class_index": "x,label\n1,70000\n2,-1\n",
    "err_header_only": "x1,x2,label\n",
    "err_blank": "\n  \n",
}


def idx(dims, data, kind=0x08):
    return bytes([0, 0, kind, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)


def gz(data):
    return gzip.compress(data, mtime=0)


def idx_seeds():
    pixels = bytes(i * 7 % 256 for i in range(3 * 2 * 2))
    good = idx([3, 2, 2], pixels)
    labels = idx([3], [2, 0, 9])
    bad_crc = bytearray(gz(labels))
    bad_crc[-8] ^= 0xFF
    return {
        "images": good,
        "labels": labels,
        "images.gz": gz(good),
        "labels.gz": gz(labels),
        "zeros_1000.gz": gz(idx([10, 10, 10], bytes(1000))),
        "concatenated.gz": gz(good[:10]) + gz(good[10:]),
        "stored_block.gz": bytes([0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 255, 1, 9, 0, 0xF6, 0xFF])
        + idx([1], [5]) + struct.pack("<II", zlib.crc32(idx([1], [5])), 9),
        "err_magic": b"PK\x03\x04\0\0\0\0",
        "err_float32": idx([1], [0, 0, 0, 0], kind=0x0D),
        "err_rank": bytes([0, 0, 8, 9]) + bytes(36),
        "err_short_dims": bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0]),
        "err_truncated": good[:-5],
        "err_truncated.gz": gz(good[:-5]),
        "err_stream_cut.gz": gz(good)[:-12],
        "err_liar": idx([1000000, 1000000], []),
        "err_liar.gz": gz(idx([1000000, 1000000], [])),
        "err_overflow": idx([0xFFFFFFFF] * 4, []),
        "err_extra": idx([2], [1, 2, 3]),
        "err_extra.gz": gz(idx([2], [1, 2, 3])),
        "err_crc.gz": bytes(bad_crc),
        "err_trailer.gz": gz(labels)[:-3],
        "err_junk.gz": gz(labels) + b"junk",
    }


def safetensors(header, data, crc=True, pad=True):
    """A safetensors file as nn::save writes one; with crc, "tapegrad.crc32" as it computes it."""
    if crc:  # over the header as written without the key, "__metadata__" included
        header.setdefault("__metadata__", {})
        text = json.dumps(header, separators=(",", ":"))
        value = zlib.crc32(data, zlib.crc32(text.encode()))
        header.setdefault("__metadata__", {})["tapegrad.crc32"] = f"{value:08x}"
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def tensor(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def safetensors_seeds():
    f32 = struct.pack("<6f", 0.5, -1, 2, 0, 1e-3, 3)
    mlp = {"__metadata__": {"format": "pt", "epoch": "3"},
           "layers.0.weight": tensor("F32", [2, 2], 0, 16),
           "layers.0.bias": tensor("F32", [2], 16, 24)}
    dtypes = {"b": tensor("BOOL", [2], 0, 2), "h": tensor("F16", [1], 2, 4),
              "i": tensor("I64", [1], 4, 12), "d": tensor("F64", [], 12, 20),
              "e": tensor("U8", [0, 3], 20, 20)}
    one = lambda **kw: {"a": {**tensor("F32", [2], 0, 8), **kw}}
    good = safetensors(dict(mlp), f32[:24])
    flipped = bytearray(good)
    flipped[-3] ^= 0x10
    return {
        "mlp": good,
        "mlp_no_crc": safetensors(dict(mlp), f32[:24], crc=False),
        "dtypes": safetensors(dtypes, bytes(range(20))),
        "empty": safetensors({}, b"", crc=False),
        "optimizer": safetensors({"__metadata__": {"tapegrad.optimizer": "SGD",
                                                   "tapegrad.optimizer.steps": "1",
                                                   "tapegrad.optimizer.lr": "0.1"},
                                  "optimizer.state.0": tensor("F32", [1], 0, 4)}, f32[:4]),
        "unpadded": safetensors(one(), f32[:8], crc=False, pad=False),
        "err_short": b"abc",
        "err_length": struct.pack("<Q", 1 << 40) + b"{}",
        "err_json": safetensors({}, b"", crc=False)[:8] + b'{"a":}  ',
        "err_not_object": struct.pack("<Q", 8) + b"[1, 2]  ",
        "err_duplicate": struct.pack("<Q", 16) + b'{"a":1,"a":2}   ',
        "err_dtype": safetensors(one(dtype="F99"), f32[:8], crc=False),
        "err_shape": safetensors(one(shape=[-2]), f32[:8], crc=False),
        "err_huge_shape": safetensors(one(shape=[1 << 32, 1 << 32]), f32[:8], crc=False),
        "err_offsets": safetensors(one(data_offsets=[8, 0]), f32[:8], crc=False),
        "err_past_end": safetensors(one(data_offsets=[0, 1 << 30]), f32[:8], crc=False),
        "err_overlap": safetensors({"a": tensor("F32", [2], 0, 8), "b": tensor("F32", [2], 4, 12)},
                                   f32[:12], crc=False),
        "err_gap": safetensors({"a": tensor("F32", [1], 0, 4), "b": tensor("F32", [1], 8, 12)},
                               f32[:12], crc=False),
        "err_field": safetensors(one(x=1), f32[:8], crc=False),
        "err_metadata": safetensors({"__metadata__": {"epoch": 3}}, b"", crc=False),
        "err_nul": struct.pack("<Q", 8) + b"{}\0     ",
        "err_checksum": bytes(flipped),
        "err_damaged_crc_key": good.replace(b"tapegrad.crc32", b"tapegrad.crc33"),
    }


def main():
    targets = {
        "program": {k: v.encode("utf-8", "surrogateescape") for k, v in PROGRAMS.items()},
        "csv": {k: v.encode() for k, v in CSVS.items()},
        "idx": idx_seeds(),
        "safetensors": safetensors_seeds(),
    }
    for target, seeds in targets.items():
        folder = CORPUS / target
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for name, data in seeds.items():
            (folder / name).write_bytes(data)


if __name__ == "__main__":
    main()
