#!/usr/bin/env python3
"""Dev-time generator of the small reference files tests/test_io.c reads
(tests/data/io/).  Needs numpy; the safetensors vector needs the
`safetensors` package (pip install safetensors).  The C test recomputes every
expected value from the same formulas, so only these files are committed.

    python3 tools/gen_io_vectors.py        # rewrites tests/data/io/*
"""
import gzip, io, os, struct, zlib
import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "io")
os.makedirs(OUT, exist_ok=True)


def w(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


# ---- .npy: value[i] = i * 0.25 - 3 (exact in float32), shape (2, 3, 4) ----
v = (np.arange(24) * 0.25 - 3).reshape(2, 3, 4)
for name, dt in [("f4_le", "<f4"), ("f4_be", ">f4"), ("f8_le", "<f8"), ("f8_be", ">f8")]:
    b = io.BytesIO()
    np.save(b, v.astype(dt))
    w("npy_%s.npy" % name, b.getvalue())
b = io.BytesIO()
np.lib.format.write_array(b, v.astype("<f4"), version=(2, 0))
w("npy_v2.npy", b.getvalue())
b = io.BytesIO()
np.save(b, np.asfortranarray(v.astype("<f4")))
w("npy_fortran.npy", b.getvalue())
b = io.BytesIO()
np.save(b, np.arange(6, dtype="<i4"))
w("npy_i4.npy", b.getvalue())
b = io.BytesIO()
np.save(b, np.float32(1.5))  # 0-d
w("npy_scalar.npy", b.getvalue())

# ---- IDX: 5 images 28x28, pixel = (i*7 + r*3 + c*5 + (r*c)//9) % 256 ----
n, R, C = 5, 28, 28
img = np.zeros((n, R, C), np.uint8)
for i in range(n):
    for r in range(R):
        for c in range(C):
            img[i, r, c] = (i * 7 + r * 3 + c * 5 + (r * c) // 9) % 256
raw = struct.pack(">IIII", 0x803, n, R, C) + img.tobytes()
labels = struct.pack(">II", 0x801, n) + bytes([3, 1, 4, 1, 5])
w("idx_labels.idx", labels)
w("idx_images_l9.gz", gzip.compress(raw, compresslevel=9, mtime=0))  # dynamic blocks
w("idx_images_l0.gz", gzip.compress(raw, compresslevel=0, mtime=0))  # stored blocks
co = zlib.compressobj(6, zlib.DEFLATED, 31, 8, zlib.Z_FIXED)           # fixed Huffman
w("idx_images_fixed.gz", co.compress(raw) + co.flush())
# every optional header field: FEXTRA, FNAME, FCOMMENT and FHCRC; two members
co = zlib.compressobj(9, zlib.DEFLATED, -15)
defl = co.compress(labels) + co.flush()
hdr = b"\x1f\x8b\x08" + bytes([4 | 8 | 16 | 2]) + b"\0\0\0\0\0\xff"
hdr += struct.pack("<H", 3) + b"abc" + b"name\0" + b"comment\0"
hdr += struct.pack("<H", zlib.crc32(hdr) & 0xFFFF)
member = hdr + defl + struct.pack("<II", zlib.crc32(labels), len(labels))
w("idx_labels_flags.gz", member)
half = len(labels) // 2
w("idx_labels_2members.gz", gzip.compress(labels[:half], mtime=0) + gzip.compress(labels[half:], mtime=0))

# ---- safetensors written by the reference library ----
try:
    from safetensors.numpy import save
    t = {
        "b.weight": (np.arange(12) * 0.5 - 2).reshape(3, 4).astype(np.float32),
        "a.bias": (np.arange(3) * -1.25).astype(np.float32),
        "c.scalar": np.array(7.0, np.float32),
        "d.empty": np.zeros((0, 3), np.float32),
        "e.conv": (np.arange(2 * 1 * 3 * 3) / 8.0).reshape(2, 1, 3, 3).astype(np.float32),
    }
    w("st_ref.safetensors", save(t, metadata={"bdense.version": "0.1.0"}))
except ImportError:
    print("safetensors not installed: st_ref.safetensors not regenerated")
print("wrote", sorted(os.listdir(OUT)))
