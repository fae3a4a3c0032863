#!/usr/bin/env python3
"""Generate docs/api.md from the declarations in bdense.h.

Dev-time tool: run `python3 tools/gen_api.py` after changing a public
declaration.  tests/test_api_docs.c (no Python) fails when the BDAPI
functions of the header and the index of docs/api.md disagree.

The page: an index of every BDAPI function (name -> section), then each
>>section of the declaration half of the header verbatim (comments,
types and prototypes), minus the placeholder lines helpers insert above."""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def declarations(text):
    """The header's public half: from the include guard to its #endif."""
    a = text.index("#ifndef BDENSE_H")
    b = text.index("#endif /* BDENSE_H */")
    return text[a:b]


def bdapi_names(decl):
    """Names of BDAPI functions, in order (the C test uses the same rule:
    a line starting with 'BDAPI ', the identifier before the first '(')."""
    names = []
    for line in decl.splitlines():
        if not line.startswith("BDAPI "):
            continue
        m = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(", line)
        if m:
            names.append(m.group(1))
    return names


def sections(decl):
    """[(tag, text)] for every '>>tag' banner of the declaration half."""
    banner = re.compile(r"^/\* =+ \*/\n/\* >>(\w+)\s+\*/\n/\* =+ \*/\n", re.M)
    parts = []
    ms = list(banner.finditer(decl))
    for i, m in enumerate(ms):
        end = ms[i + 1].start() if i + 1 < len(ms) else len(decl)
        body = decl[m.end():end]
        body = body.split("#ifdef __cplusplus\n}")[0]
        lines = [l for l in body.splitlines() if not re.match(r"^/\* [A-Z]+-DECLARATIONS", l)]
        parts.append((m.group(1), "\n".join(lines).strip("\n")))
    return parts


def main():
    with open(os.path.join(ROOT, "bdense.h")) as f:
        text = f.read()
    decl = declarations(text)
    version = re.search(r'#define BDENSE_VERSION_STRING "([^"]+)"', text).group(1)
    secs = sections(decl)
    out = []
    out.append("# bdense API reference\n")
    out.append("Generated from `bdense.h` %s by `tools/gen_api.py`; do not edit by hand. "
               "`tests/test_api_docs.c` checks that this page lists exactly the header's "
               "functions. The numbered MANUAL at the top of `bdense.h` explains how the "
               "pieces fit; `docs/tutorial.md` walks through a whole run.\n" % version)
    out.append("Conventions: every fallible call returns `bd_result` (message: "
               "`bd_context_message(ctx)`); shapes are in PyTorch order; backward kernels "
               "accumulate (`+=`) into every gradient; nothing allocates after its "
               "`*_init`/`*_create`/`reserve`.\n")
    out.append("## Index\n")
    out.append("| function | section |\n|---|---|")
    for tag, body in secs:
        for name in bdapi_names(body):
            out.append("| `%s` | [%s](#%s) |" % (name, tag, tag))
    out.append("")
    for tag, body in secs:
        out.append("## %s\n" % tag)
        if body.strip():
            out.append("```c\n%s\n```\n" % body)
        else:
            out.append("(nothing public yet)\n")
    listed = [n for _, b in secs for n in bdapi_names(b)]
    if sorted(listed) != sorted(bdapi_names(decl)):
        sys.exit("gen_api: some BDAPI functions are outside a >>section banner")
    path = os.path.join(ROOT, "docs", "api.md")
    with open(path, "w") as f:
        f.write("\n".join(out))
    print("wrote %s: %d functions in %d sections" % (os.path.relpath(path), len(listed), len(secs)))


if __name__ == "__main__":
    main()
