#!/usr/bin/env python3
# Assembles the playground's one HTML file from its parts (playground/meson.build runs it):
# assemble.py OUT page.html page.css page.js worker.js tapegrad-module.js viz-global.js

# Note [One file]
# ~~~~~~~~~~~~~~~
# The page must open from file:// with no network and no install, so everything is inside it:
# its style and script inline, and the worker's sources (the tapegrad module, whose wasm
# emscripten already embeds with SINGLE_FILE; Graphviz's viz-global.js; worker.js) as one
# base64 string that page.js turns into a Blob and starts as a Web Worker. Base64 rather than a
# script element: those sources hold strings of arbitrary bytes (viz-global.js keeps its wasm as
# characters up to U+00FF), and "</script" or "<!--" in any of them would end or derail an
# inline script; base64 cannot contain either. The file is UTF-8 and says so first thing
# (<meta charset="utf-8">): read as windows-1252, viz's wasm would not compile.

import base64
import os
import sys


def read(path):
    with open(path, encoding='utf-8') as f:
        return f.read()


def main():
    out, page, style, script, worker, module, viz = sys.argv[1:]
    worker_source = '\n'.join([read(module), read(viz), read(worker)])
    parts = {
        '{{style}}': read(style),
        '{{script}}': read(script),
        '{{worker}}': base64.b64encode(worker_source.encode('utf-8')).decode('ascii'),
    }
    html = read(page)
    for name, text in parts.items():
        if html.count(name) != 1:
            sys.exit(f'assemble.py: {page} must hold {name} once')
        html = html.replace(name, text)
    for inline in (parts['{{style}}'], parts['{{script}}']):
        if '</' + 'script' in inline.lower() or '<!' + '--' in inline:
            sys.exit('assemble.py: the page\'s own style or script holds "</script" or "<!--"')
    # Written whole, then renamed: a failed build leaves no half page behind.
    with open(out + '.tmp', 'w', encoding='utf-8') as f:
        f.write(html)
    os.replace(out + '.tmp', out)


if __name__ == '__main__':
    main()
