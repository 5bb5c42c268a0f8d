# PyTorch CPU reference for scripts/bench.mjs: the same pre-LN transformer block (fwd and fwd+bwd)
# and ViT-B/16 forward, built from the same primitives, timed best-of-runs. Prints one JSON line.
# Usage: python3 bench_torch.py '{"hidden":768,"heads":12,"ffn":3072,"batch":8,"tokens":197,
#                                "layers":12,"image":224,"patch":16,"threads":2,"minMs":1500}'
import json
import math
import sys
import time

import torch
import torch.nn.functional as F


def params(hidden, ffn, gen):
    # BERT's init scale (std 0.02), LayerNorm at identity, like core's createBlockParams.
    def w(*shape):
        return (torch.rand(*shape, generator=gen) * 0.07 - 0.035).requires_grad_()

    return {
        "ln1w": torch.ones(hidden, requires_grad=True), "ln1b": torch.zeros(hidden, requires_grad=True),
        "wq": w(hidden, hidden), "bq": w(hidden), "wk": w(hidden, hidden), "bk": w(hidden),
        "wv": w(hidden, hidden), "bv": w(hidden), "wo": w(hidden, hidden), "bo": w(hidden),
        "ln2w": torch.ones(hidden, requires_grad=True), "ln2b": torch.zeros(hidden, requires_grad=True),
        "w1": w(ffn, hidden), "b1": w(ffn), "w2": w(hidden, ffn), "b2": w(hidden),
    }


def block(x, p, heads, eps=1e-12):
    b, t, d = x.shape
    dh = d // heads

    def to_heads(z):  # [B, H, T, Dh]
        return z.view(b, t, heads, dh).transpose(1, 2)

    ln1 = F.layer_norm(x, (d,), p["ln1w"], p["ln1b"], eps)
    q = to_heads(F.linear(ln1, p["wq"], p["bq"]))
    k = to_heads(F.linear(ln1, p["wk"], p["bk"]))
    v = to_heads(F.linear(ln1, p["wv"], p["bv"]))
    scores = torch.matmul(q, k.transpose(-1, -2)) * (1 / math.sqrt(dh))  # [B, H, T, T]
    context = torch.matmul(scores.softmax(-1), v).transpose(1, 2).reshape(b, t, d)
    h = x + F.linear(context, p["wo"], p["bo"])
    mlp = F.linear(F.gelu(F.linear(F.layer_norm(h, (d,), p["ln2w"], p["ln2b"], eps), p["w1"], p["b1"])), p["w2"], p["b2"])
    return h + mlp


def timed(fn, min_ms, min_runs=3, max_runs=30):
    fn()  # warm-up
    times = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or (time.perf_counter() - start) * 1000 < min_ms):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"bestMs": times[0], "medianMs": times[len(times) // 2], "runs": len(times)}


def main():
    cfg = json.loads(sys.argv[1])
    torch.set_num_threads(cfg["threads"])
    gen = torch.Generator().manual_seed(0)
    hidden, heads, ffn = cfg["hidden"], cfg["heads"], cfg["ffn"]
    out = {"torch": torch.__version__, "threads": torch.get_num_threads()}

    p = params(hidden, ffn, gen)
    x = torch.rand(cfg["batch"], cfg["tokens"], hidden, generator=gen) * 2 - 1
    dy = torch.rand(cfg["batch"], cfg["tokens"], hidden, generator=gen) * 2 - 1

    def forward():
        with torch.no_grad():
            block(x, p, heads)

    def forward_backward():
        xg = x.clone().requires_grad_()
        for t in p.values():
            t.grad = None
        block(xg, p, heads).backward(dy)

    out["blockForward"] = timed(forward, cfg["minMs"])
    out["blockForwardBackward"] = timed(forward_backward, cfg["minMs"])

    # ViT-B/16 on one image: patch embedding as reshape → permute → linear, cls + positions,
    # the blocks, final LayerNorm and the classification head on [CLS].
    size, patch, layers = cfg["image"], cfg["patch"], cfg["layers"]
    grid = size // patch
    with torch.no_grad():
        blocks = [params(hidden, ffn, gen) for _ in range(layers)]
        patch_w = torch.rand(hidden, 3 * patch * patch, generator=gen) * 0.07 - 0.035
        patch_b = torch.zeros(hidden)
        cls = torch.zeros(1, 1, hidden)
        pos = torch.rand(1, grid * grid + 1, hidden, generator=gen) * 0.07 - 0.035
        norm_w, norm_b = torch.ones(hidden), torch.zeros(hidden)
        head_w, head_b = torch.rand(1000, hidden, generator=gen) * 0.07 - 0.035, torch.zeros(1000)
        image = torch.rand(1, 3, size, size, generator=gen)

    def vit():
        with torch.no_grad():
            patches = image.reshape(1, 3, grid, patch, grid, patch).permute(0, 2, 4, 1, 3, 5).reshape(1, grid * grid, 3 * patch * patch)
            h = torch.cat([cls, F.linear(patches, patch_w, patch_b)], dim=1) + pos
            for bp in blocks:
                h = block(h, bp, heads, 1e-6)
            h = F.layer_norm(h, (hidden,), norm_w, norm_b, 1e-6)
            return F.linear(h[:, 0], head_w, head_b)

    out["vitForward"] = timed(vit, cfg["minMs"])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
