#!/usr/bin/python3
"""Independent reference for bdense's RNG (tests/test_core.c pastes the output).

splitmix64 seeding then xoshiro256** (Blackman & Vigna), written from the
published algorithm in Python big-int arithmetic masked to 64 bits, so it
shares no code with bdense.h.  Prints C initialisers for the first outputs of
seed 42 and seed 0, and the first uniforms of seed 42 ((u >> 11) * 2^-53).
Run:  /usr/bin/python3 tests/ref/rng_ref.py
"""
M = (1 << 64) - 1


def splitmix64_states(seed):
    z = seed & M
    out = []
    for _ in range(4):
        z = (z + 0x9E3779B97F4A7C15) & M
        x = z
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M
        out.append(x ^ (x >> 31))
    return out


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & M


def xoshiro(seed, n):
    s = splitmix64_states(seed)
    res = []
    for _ in range(n):
        r = (rotl((s[1] * 5) & M, 7) * 9) & M
        t = (s[1] << 17) & M
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        res.append(r)
    return res


if __name__ == "__main__":
    for seed in (42, 0):
        vals = xoshiro(seed, 8)
        print("/* seed %d */" % seed)
        print("{" + ", ".join("0x%016xull" % v for v in vals) + "}")
    print("/* uniforms, seed 42 (exact binary fractions, printed with 17 digits) */")
    print("{" + ", ".join("%.17g" % ((v >> 11) * 2.0 ** -53) for v in xoshiro(42, 4)) + "}")
