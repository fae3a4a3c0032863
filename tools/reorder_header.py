#!/usr/bin/env python3
"""Put bdense.h in call order (issue 13): rewrite it in place, or --check.

Dev tool.  `python3 tools/reorder_header.py [--check] [FILE]` (FILE defaults
to the repository's bdense.h).  The header has two halves, the declarations
(inside the include guard) and the implementation; each is a run of
sections under a '>>tag' banner.  This script cuts every section into
top-level items (a function, a type, a macro, a conditional block, with the
comments above it), gives each item a section by the rules below (most
items keep their section; the old >>io, >>unet and >>backend sections are
split by name), and writes the sections back in ORDER, in both halves,
items in their old relative order, one banner per section.  The TOC in the
top comment is rewritten from ORDER.  Markers (/* BACKEND-DECLARATIONS */
and the like) stay at the end of their section.

What would not compile in the new order is fixed, never left for a hand
edit: in the implementation half a static function used above its
definition gets a prototype just above its first user, and a macro, type
or table used above its definition moves up to just above its first user
(both marked with a comment, which keeps them there on later runs); in the
declaration half a struct used by pointer above its definition gets a
forward typedef, anything else is an error naming the rule to adjust.

Deterministic and idempotent (a second run changes nothing; the script
checks it).  --check exits 1 (and changes nothing) when the file is not in
this order."""
import os
import re
import sys

# (tag, one-line description) in call order: the order of both halves.
ORDER = [
    ("core", "result codes, context and allocator, rng, tensors, file plumbing"),
    ("gemm", "built-in blocked GEMM; bd_sgemm (optionally CBLAS)"),
    ("layers", "layer kernels, forward and backward"),
    ("backend", "kernel table (CPU default, CUDA override), vector ops"),
    ("denoiser", "the network interface samplers and training use; MLP denoiser"),
    ("unet", "the reference UNet (docs/spec.md sec. 6)"),
    ("schedule", "noise schedules, parametrisations, time grids"),
    ("sampler", "DDIM, DDPM, Euler, Heun, DPM-Solver++(2M)"),
    ("train", "Adam/AdamW, EMA, teacher training"),
    ("distill", "B-DENSE distillation (PD and TD)"),
    ("checkpoint", "bd_model, safetensors container and its JSON, save/load/resume"),
    ("formats", "files and pictures: .npy, IDX, gzip, PNG, plots, CSV, built-in data"),
]
TAGS = [t for t, _ in ORDER]

# Old tags that are renamed as a whole.
RENAME = {"result": "core", "context": "core", "rng": "core", "tensor": "core",
          "adam": "train", "io": "formats"}

# Items that move by name (first match wins), whatever section they are in.
# Matched against every name an item defines or declares.
MOVE = [
    # moving a model between contexts: only UNets move (bd__unet_to_context)
    (r"^bd_denoiser_to_context$", "unet"),
    # file plumbing that checkpoints and formats share: atomic writes, whole
    # file reads, byte order, a growable buffer, UTF-8 checks
    (r"^(bd__afile\w*|BD__FSYNC|bd__host_is_le|bd__bswap32_array|bd__(rd|wr)_[lb]e\d+|"
     r"bd__open_sized|bd__read_file|bd__buf|bd__buf_(put|str|i64)|bd__utf8_\w+)$", "core"),
    # a device-resident distiller (if present) belongs with the distiller
    (r"^(bd_device_distill\w*|bd__dd_\w+|BD__DD_\w+)$", "distill"),
    # checkpoints: the safetensors container with its JSON reader, then the
    # model container and its save/load/resume (items that move into a
    # section go in the order of these rules, each group in its old order)
    (r"^(bd_json_\w+|bd__json\w*|bd__j_\w+|bd__jtok|bd__jparse|BD__J\w*|bd__buf_jstr|"
     r"bd_safetensors\w*|bd__st_\w+|bd_st_\w+|BD_ST_\w+)$", "checkpoint"),
    (r"^(bd__spool\w*|bd__rng_format|bd__rng_parse|bd__meta_\w+|BD__KV)$", "checkpoint"),
    (r"^(bd__?model(_(?!predict$)\w+)?|bd__train_state\w*)$", "checkpoint"),
    # the distiller's state file is a model checkpoint of the student
    (r"^(bd_distill_(save|load)_state|bd__dstate_\w+|bd__distill_model)$", "checkpoint"),
]

BANNER = re.compile(r"^/\* ([=-])\1+ \*/$")
TAGLINE = re.compile(r"^/\* >>(\w+)\s+\*/$")
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def fail(msg):
    sys.exit("reorder_header: " + msg)


def code_of(line, state):
    """The line without comments, strings and char literals; state[0] is
    True inside a block comment (updated)."""
    out, i, n = [], 0, len(line)
    while i < n:
        if state[0]:
            j = line.find("*/", i)
            if j < 0:
                return "".join(out)
            state[0] = False
            i = j + 2
            out.append(" ")
            continue
        c = line[i]
        if line.startswith("/*", i):
            state[0] = True
            i += 2
        elif line.startswith("//", i):
            break
        elif c in "\"'":
            j = i + 1
            while j < n and line[j] != c:
                j += 2 if line[j] == "\\" else 1
            out.append(" \"\" " if c == '"' else " 0 ")
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


class Item:
    def __init__(self, lines, codes):
        self.lines = lines          # text lines (with leading comments)
        self.code = "\n".join(codes)  # comment/string-free code
        self.defs, self.funcs, self.protos = set(), set(), {}
        self.analyse()

    def analyse(self):
        code = self.code
        depth, buf = 0, []
        # code at brace depth 0 (signatures, typedef names, macros)
        for ch in code:
            if ch == "{":
                if depth == 0:
                    buf.append("{")
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    buf.append("}")
            elif depth == 0:
                buf.append(ch)
        top = "".join(buf)
        for m in re.finditer(r"^\s*#\s*define\s+([A-Za-z_]\w*)", code, re.M):
            self.defs.add(m.group(1))
        # strip preprocessor lines (with continuations) from the depth-0 code
        t = re.sub(r"^\s*#(?:[^\n]*\\\n)*[^\n]*", " ", top, flags=re.M)
        t = re.sub(r"__attribute__\s*\(\((?:[^()]|\([^()]*\))*\)\)", " ", t)
        self.top = t
        for m in re.finditer(r"\b(struct|union|enum)\s+([A-Za-z_]\w*)\s*\{", t):
            self.defs.add(m.group(2))
        for m in re.finditer(r"\btypedef\b([^;]*?)([A-Za-z_]\w*)\s*(\[[^;]*\])?\s*;", t):
            self.defs.add(m.group(2))
        for m in re.finditer(r"\btypedef\b[^;]*?\(\s*\*\s*([A-Za-z_]\w*)\s*\)", t):
            self.defs.add(m.group(1))
        # enum constants
        for m in re.finditer(r"\benum\b[^{;]*\{", code):
            body = code[m.end():code.find("}", m.end())]
            for e in body.split(","):
                mm = IDENT.match(e.strip())
                if mm:
                    self.defs.add(mm.group(0))
        # functions: NAME ( ... ) {  at depth 0   /  prototypes NAME ( ... ) ;
        for m in re.finditer(r"([A-Za-z_]\w*)\s*\(([^(){};]|\([^(){};]*\))*\)\s*(\{|;)", t):
            name = m.group(1)
            if name in ("if", "while", "for", "switch", "return", "sizeof", "__attribute__",
                        "defined", "BDAPI"):
                continue
            if m.group(3) == "{":
                self.funcs.add(name)
                self.defs.add(name)
            else:
                self.protos[name] = True
        # data: static/const objects with an initializer or array, at depth 0
        for m in re.finditer(r"(?:^|;|\})\s*((?:static|const|extern)[^;{}()=]*?)([A-Za-z_]\w*)\s*(\[[^;=]*\])*\s*(=|;)",
                             t):
            if "typedef" not in m.group(1):
                self.defs.add(m.group(2))

    def uses(self):
        return set(IDENT.findall(self.code))


def split_items(lines):
    """Top-level items of a section body; comments and blank lines above
    an item belong to it; what trails the last item is an item too."""
    items, cur, codes = [], [], []
    state = [False]
    depth = pp = 0
    cont = False
    last = ""  # last non-preprocessor code of the current item

    def close():
        items.append(Item(cur[:], codes[:]))
        del cur[:], codes[:]

    for line in lines:
        code = code_of(line, state)
        cur.append(line)
        codes.append(code)
        s = code.strip()
        if cont or s.startswith("#"):
            if not cont:
                d = s[1:].strip()
                if re.match(r"if(n?def)?\b", d):
                    pp += 1
                elif d.startswith("endif"):
                    pp -= 1
            cont = s.endswith("\\")
            if not cont and depth == 0 and pp == 0 and (last == "" or last[-1] in ";}"):
                close()
                last = ""
            continue
        depth += s.count("{") - s.count("}")
        if depth < 0:
            fail("unbalanced braces near: " + line)
        if s:
            last = s
        if depth == 0 and pp == 0 and not state[0] and s and s[-1] in ";}":
            close()
            last = ""
    if depth or pp:
        fail("section ends inside a block (braces %d, #if %d)" % (depth, pp))
    if cur:
        it = Item(cur, codes)
        it.trailing = True
        items.append(it)
    return items


def find_sections(lines, a, b):
    """Banners between lines a and b: [(tag, banner_start, body_start, body_end)]."""
    secs = []
    i = a
    while i < b - 2:
        if BANNER.match(lines[i]) and TAGLINE.match(lines[i + 1]) and BANNER.match(lines[i + 2]):
            secs.append([TAGLINE.match(lines[i + 1]).group(1), i, i + 3, None])
            i += 3
        else:
            i += 1
    for k, s in enumerate(secs):
        s[3] = secs[k + 1][1] if k + 1 < len(secs) else b
    return secs


def halves(lines):
    """(decl_first, decl_end, impl_first, impl_end) line indices: the
    section runs end where the closing extern "C" brace begins."""
    def closing(marker):
        idx = [i for i, l in enumerate(lines) if l.startswith(marker)]
        if len(idx) != 1:
            fail("expected one line starting with %r" % marker)
        j = idx[0] - 1
        while j > 0 and lines[j].strip() == "":
            j -= 1
        if lines[j - 2:j + 1] != ["#ifdef __cplusplus", "}", "#endif"]:
            fail("no extern \"C\" close before %r" % marker)
        return j - 2
    d_end = closing("#endif /* BDENSE_H */")
    i_end = closing("#endif /* BDENSE_IMPLEMENTATION_DONE */")
    guard = lines.index("#ifndef BDENSE_H")
    impl = lines.index("#ifdef BDENSE_IMPLEMENTATION")
    return guard, d_end, impl, i_end


def tag_of(item, old):
    """The item's new section; item.rank orders the items of a section: 0
    for an item that stays in its section, 1 + the rule's index for one that
    MOVE brings from another (so a file already in order keeps its order)."""
    names = sorted(item.defs) + sorted(item.protos)
    if any(PINNED.match(l) for l in item.lines):
        item.rank = 0  # placed by an earlier run above its first user: stays
        return RENAME.get(old, old)
    for k, (pat, tag) in enumerate(MOVE):
        if any(re.match(pat, n) for n in names):
            item.rank = 0 if tag == RENAME.get(old, old) else 1 + k
            return tag
    item.rank = 0
    return RENAME.get(old, old)


def is_include(item):
    code = [c.strip() for c in item.code.split("\n") if c.strip()]
    return bool(code) and all(c.startswith("#include") for c in code)


def is_blank(item):
    return all(l.strip() == "" for l in item.lines)


def regroup(lines, a, b):
    """{new tag: [items]} for the sections between lines a and b."""
    out = dict((t, []) for t in TAGS)
    tails = dict((t, []) for t in TAGS)
    secs = find_sections(lines, a, b)
    seq = []
    if not secs:
        fail("no >>sections")
    for tag, _, s0, s1 in secs:
        if RENAME.get(tag, tag) not in out:
            fail("unknown section >>%s (add it to ORDER or RENAME)" % tag)
        items = split_items(lines[s0:s1])
        for it in items:
            it.seq = len(seq)
            seq.append(it)
        tags = [tag_of(it, tag) for it in items]
        first = min((TAGS.index(t) for t in tags), default=0)
        for it, t in zip(items, tags):
            if getattr(it, "trailing", False):
                if not is_blank(it):
                    tails[RENAME.get(tag, tag)].append(it)
            elif is_include(it):
                it.front = True
                out[TAGS[first]].append(it)
            else:
                out[t].append(it)
    for t in TAGS:
        out[t].sort(key=lambda it: (-1 if getattr(it, "front", False) else it.rank, it.seq))
    return out, tails, secs


TRACK = re.compile(r"^(bd|BD)_")
# the comment a moved helper or a prototype gets (and what keeps it there)
PINNED = re.compile(r"^/\* (defined below, in >>\w+|from >>\w+, above its first user) \*/$")


def fix_order(order, notes):
    """Implementation half: a macro, type or table used above its definition
    moves up to just above its first user; a static function used above
    its definition gets a prototype there (each noted in notes)."""
    for _ in range(1000):
        where = {}
        for i, it in enumerate(order):
            for n in it.defs:
                if TRACK.match(n) and n not in where:
                    where[n] = i
        declared = set()
        moved = False
        for i, it in enumerate(order):
            for n in it.protos:
                declared.add(n)
            for n in sorted(it.uses() - it.defs):
                j = where.get(n)
                if j is None or j <= i or n in declared:
                    continue
                d = order[j]
                if n in d.funcs:
                    if "BDAPI" in d.top.split(n)[0].split(";")[-1].split("}")[-1]:
                        continue  # public: declared in the first half
                    pr = prototype(d, n)
                    pr.hoisted = True
                    if d.tag != it.tag:
                        pr.lines.insert(0, "/* defined below, in >>%s */" % d.tag)
                    pr.tag = it.tag
                    order.insert(i, pr)
                    notes.append("prototype of " + n)
                else:
                    d.hoisted = True
                    notes.append("moved up: " + n)
                    if d.tag != it.tag and not any(PINNED.match(l) for l in d.lines):
                        k = 0
                        while k < len(d.lines) and d.lines[k].strip() == "":
                            k += 1
                        d.lines.insert(k, "/* from >>%s, above its first user */" % d.tag)
                    d.tag = it.tag
                    order.insert(i, order.pop(j))
                moved = True
                break
            if moved:
                break
        if not moved:
            return order
    fail("dependency ordering did not settle")


def prototype(item, name):
    """A prototype item for static function `name` defined in item."""
    buf, depth, conds = [], 0, []
    state = [False]
    for line in item.lines:
        code = code_of(line, state).strip()
        if depth == 0 and code.startswith("#"):
            d = code[1:].strip()
            if re.match(r"if", d):
                conds.append(line)
            elif d.startswith("endif"):
                conds.pop()
            elif d.startswith(("else", "elif")):
                fail("cannot forward-declare %s: defined under #else" % name)
            buf = []
            continue
        if depth == 0 and (code.startswith("/*") or code == ""):
            if not buf:
                continue
        if depth == 0:
            buf.append(line)
            if "{" in code and re.search(r"\b%s\s*\(" % name, " ".join(code_of(l, [False]) for l in buf)):
                sig = "\n".join(buf)
                sig = sig[:sig.rindex("{")].rstrip() + ";"
                text = conds + sig.split("\n") + ["#endif"] * len(conds)
                return Item(text, [code_of(l, [False]) for l in text])
        depth += code.count("{") - code.count("}")
        if depth == 0 and code and code[-1] in ";}":
            buf = []
    fail("no definition of %s found" % name)


def banner(style_line, tag):
    head = "/* >>" + tag
    return [style_line, head + " " * (len(style_line) - len(head) - 2) + "*/", style_line]


def emit(lines, a, b, impl, notes):
    """New text of lines[a:b] (a half's run of sections)."""
    out_items, tails, secs = regroup(lines, a, b)
    style = lines[secs[0][1]]
    pre = lines[a:secs[0][1]]
    flat = []
    for t in TAGS:
        for it in out_items[t]:
            it.tag = t
            flat.append(it)
    if impl:
        flat = fix_order(flat, notes)
        # a prototype or a moved item joins the section of its first user
        for k in range(len(flat) - 1, -1, -1):
            if getattr(flat[k], "hoisted", False):
                flat[k].tag = flat[k + 1].tag
    else:
        check_decl(flat)
    body = list(pre)
    for t in TAGS:
        its = [it for it in flat if it.tag == t] + tails[t]
        if not its:
            continue
        body += banner(style, t)
        sec = []
        prev = None
        for k, it in enumerate(its):
            ls = list(it.lines)
            if k == 0:
                while ls and ls[0].strip() == "":
                    ls.pop(0)
            elif sec and sec[-1].strip() != "" and ls and ls[0].strip() != "" and \
                    not ls[0].startswith((" ", "#")) and _needs_gap(prev, it):
                ls.insert(0, "")
            sec += ls
            prev = it
        if sec and sec[-1].strip() != "":
            sec.append("")
        body += sec
    return body


def _needs_gap(prev, it):
    """A blank line between two items that were not neighbours before."""
    if prev is None or not hasattr(prev, "seq") or not hasattr(it, "seq"):
        return False
    return it.seq != prev.seq + 1


def check_decl(flat):
    """Declarations cannot be hoisted.  A struct typedef used (by pointer)
    above its definition gets a forward typedef above its first user and its
    definition loses the typedef; any other use above a definition is an
    error in MOVE."""
    for _ in range(100):
        defined, bad = {}, []
        for i, it in enumerate(flat):
            for n in it.defs:
                defined.setdefault(n, i)
        for i, it in enumerate(flat):
            for n in sorted(it.uses() - it.defs):
                if TRACK.match(n) and defined.get(n, -1) > i:
                    bad.append((i, n))
        if not bad:
            return
        i, n = bad[0]
        d = flat[defined[n]]
        first = [k for k, l in enumerate(d.lines) if re.match(r"^typedef struct %s \{" % n, l)]
        last = [k for k, l in enumerate(d.lines) if l == "} %s;" % n]
        if not first or not last:
            fail("declarations: %s (>>%s) is used before its definition (>>%s); adjust MOVE"
                 % (n, flat[i].tag, d.tag))
        d.lines[first[0]] = d.lines[first[0]].replace("typedef struct", "struct", 1)
        d.lines[last[-1]] = "};"
        d.code = "\n".join(code_of(l, [False]) for l in d.lines)
        d.defs.discard(n)
        text = ["typedef struct %s %s; /* defined in >>%s */" % (n, n, d.tag)]
        fwd = Item(text, [code_of(l, [False]) for l in text])
        fwd.tag = flat[i].tag
        flat.insert(i, fwd)
    fail("declarations did not settle")


def toc(lines):
    """Rewrite the TABLE OF CONTENTS of the top comment from ORDER."""
    i = next((k for k, l in enumerate(lines) if "TABLE OF CONTENTS" in l), None)
    if i is None:
        fail("no TABLE OF CONTENTS in the top comment")
    j = i + 1
    while lines[j].strip().startswith(">>"):
        j += 1
    w = max(len(t) for t in TAGS) + 2
    new = ["       >>%-*s %s" % (w, t, d) for t, d in ORDER]
    return lines[:i + 1] + new + lines[j:]


def reorder(text):
    lines = text.split("\n")
    lines = toc(lines)
    g, de, im, ie = halves(lines)
    notes = []
    decl = emit(lines, g, de, False, notes)
    impl = emit(lines, im, ie, True, notes)
    new = lines[:g] + decl + lines[de:im] + impl + lines[ie:]
    return "\n".join(new), notes


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    check = "--check" in sys.argv[1:]
    path = args[0] if args else os.path.relpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                              "..", "bdense.h"))
    text = open(path).read()
    new, notes = reorder(text)
    again, _ = reorder(new)
    if again != new:
        fail("internal error: a second pass would change the result (not idempotent)")
    if check:
        if new != text:
            print("%s is not in call order: run python3 tools/reorder_header.py" % path)
            return 1
        print("%s: sections in call order" % path)
        return 0
    if new != text:
        with open(path, "w") as f:
            f.write(new)
    print("%s: %d -> %d lines; helpers placed above their first user: %s" % (
        path, text.count("\n"), new.count("\n"), ", ".join(notes) if notes else "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
