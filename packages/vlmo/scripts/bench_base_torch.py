"""The PyTorch side of packages/vlmo/scripts/bench-base.mjs: VLMo's forward in PyTorch, timed.

The official module (microsoft/unilm vlmo/) needs sacred, pytorch_lightning, timm and transformers, which
this machine does not have, so this is a minimal re-implementation of the same architecture under the
official key names (the parts the two timed calls run): patch embedding, class token, token types, BERT
text embeddings (relative path: no positions added), the relative position table and its three indices,
VLMo's Block (pre-LN shared attention with qkv bias cat(q_bias, 0, v_bias), layer scale, one FFN and norm
per expert, the VL-FFN from vlffn_start_layer_index on), the final norm and the pooler.

`--check DIR` first loads a reference fixture (fixtures/vlmo-official/vlmo-seed0: pytorch_model.pth, the
official code's expected.json) and compares its image-only and fusion outputs, so the timed module is the
official computation, not just the same shapes. Then it times, with random weights at VLMo-base's sizes:
  image: infer_image_ft (image-only route, V-FFN in all 12 layers, no VL-FFN branch), batch 1, 224 px;
  fusion: infer (40 text tokens + 197 image tokens, V/L-FFN below layer 10, VL-FFN above, pooler).
Prints one JSON line: seconds per call per thread count, the fastest of --reps after one warm-up (the call
other jobs disturbed least), and the medians.
"""

import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Mlp(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.fc1 = nn.Linear(d, hidden)
        self.fc2 = nn.Linear(hidden, d)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.scale = (d // heads) ** -0.5
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(d))
        self.v_bias = nn.Parameter(torch.zeros(d))
        self.proj = nn.Linear(d, d)

    def forward(self, x, bias, mask):
        b, n, c = x.shape
        qkv_bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, qkv_bias).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = q.float() @ k.float().transpose(-2, -1)
        if bias is not None:
            attn = attn + bias.unsqueeze(0)
        if mask is not None:
            attn = attn.masked_fill(~mask[:, None, None, :].bool(), float("-inf"))
        attn = attn.softmax(dim=-1).type_as(x)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    def __init__(self, d, heads, mlp_ratio, gamma, with_vlffn, max_text_len):
        super().__init__()
        self.max_text_len = max_text_len
        self.norm1 = nn.LayerNorm(d, eps=1e-6)
        self.attn = Attention(d, heads)
        hidden = int(d * mlp_ratio)
        self.norm2_text = nn.LayerNorm(d, eps=1e-6)
        self.norm2_imag = nn.LayerNorm(d, eps=1e-6)
        self.mlp_text = Mlp(d, hidden)
        self.mlp_imag = Mlp(d, hidden)
        self.mlp_vl = Mlp(d, hidden) if with_vlffn else None
        self.norm2_vl = nn.LayerNorm(d, eps=1e-6) if with_vlffn else None
        self.gamma_1 = nn.Parameter(gamma * torch.ones(d)) if gamma is not None else None
        self.gamma_2 = nn.Parameter(gamma * torch.ones(d)) if gamma is not None else None

    def forward(self, x, mask, bias, modality):
        a = self.attn(self.norm1(x), bias, mask)
        x = x + (self.gamma_1 * a if self.gamma_1 is not None else a)
        if modality == "image":
            m = self.mlp_imag(self.norm2_imag(x))
        elif modality == "text":
            m = self.mlp_text(self.norm2_text(x))
        elif self.mlp_vl is None:
            t = self.max_text_len
            m = torch.cat([self.mlp_text(self.norm2_text(x[:, :t])), self.mlp_imag(self.norm2_imag(x[:, t:]))], dim=1)
        else:
            m = self.mlp_vl(self.norm2_vl(x))
        return x + (self.gamma_2 * m if self.gamma_2 is not None else m)


def image_index(g):
    num_rel = (2 * g - 1) ** 2 + 3
    coords = torch.stack(torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (g - 1)
    idx = torch.zeros(g * g + 1, g * g + 1, dtype=torch.long)
    idx[1:, 1:] = rel[:, :, 0] * (2 * g - 1) + rel[:, :, 1]
    idx[0, :] = num_rel - 3
    idx[:, 0] = num_rel - 2
    idx[0, 0] = num_rel - 1
    return idx, num_rel


def text_index(t, num_rel, m):
    all_rel = num_rel + 2 * m + 2
    pos = torch.arange(t)
    idx = (pos[None, :] - pos[:, None]) + m + num_rel
    idx[0, :] = all_rel - 3
    idx[:, 0] = all_rel - 2
    idx[0, 0] = all_rel - 1
    return idx


class Vlmo(nn.Module):
    def __init__(self, c):
        super().__init__()
        k, s = c["transformer_kwargs"], c["vlmo_config"]
        d, depth, heads = k["embed_dim"], k["depth"], k["num_heads"]
        self.d, self.depth, self.heads = d, depth, heads
        self.patch = k["patch_size"]
        self.g = k["img_size"] // self.patch
        self.max_text_len = s["max_text_len"]
        self.m = s["max_text_len_of_initckpt"]
        self.vlffn_start = k["vlffn_start_layer_index"]
        self.transformer = nn.Module()
        self.transformer.patch_embed = nn.Module()
        self.transformer.patch_embed.proj = nn.Conv2d(3, d, self.patch, self.patch)
        self.transformer.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.transformer.blocks = nn.ModuleList(
            Block(d, heads, k["mlp_ratio"], k["layer_scale_init_values"], i >= self.vlffn_start, self.max_text_len) for i in range(depth)
        )
        self.transformer.norm = nn.LayerNorm(d, eps=1e-6)
        self.text_embeddings = nn.Module()
        self.text_embeddings.word_embeddings = nn.Embedding(s["vocab_size"], d)
        self.text_embeddings.token_type_embeddings = nn.Embedding(2, d)
        self.text_embeddings.LayerNorm = nn.LayerNorm(d, eps=1e-12)
        self.token_type_embeddings = nn.Embedding(2, d)
        self.pooler = nn.Module()
        self.pooler.dense = nn.Linear(d, d)
        self.img_idx, num_rel = image_index(self.g)
        self.txt_idx = text_index(self.max_text_len, num_rel, self.m)
        t, p = self.max_text_len, self.g * self.g + 1
        fuse = torch.empty(t + p, t + p, dtype=torch.long)
        fuse[:t, :t] = self.txt_idx
        fuse[:t, t:] = num_rel
        fuse[t:, :t] = num_rel + 1
        fuse[t:, t:] = self.img_idx
        self.fuse_idx = fuse
        self.relative_position_bias_table = nn.Parameter(torch.zeros(num_rel + 2 * self.m + 2, depth * heads))

    def biases(self, idx):
        n = idx.shape[0]
        b = F.embedding(idx.flatten(), self.relative_position_bias_table).view(n, n, -1).permute(2, 0, 1).contiguous()
        return torch.chunk(b, self.depth, dim=0)

    def visual(self, image):
        x = self.transformer.patch_embed.proj(image).flatten(2).transpose(1, 2)
        cls = self.transformer.cls_token.expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1) + self.token_type_embeddings(torch.ones(1, dtype=torch.long))

    def text(self, ids):
        e = self.text_embeddings
        x = e.LayerNorm(e.word_embeddings(ids) + e.token_type_embeddings(torch.zeros_like(ids)))
        return x + self.token_type_embeddings(torch.zeros_like(ids))

    def infer_image_ft(self, image):
        x = self.visual(image)
        bias = self.biases(self.img_idx)
        for i, blk in enumerate(self.transformer.blocks):
            x = blk(x, None, bias[i], "image")
        return self.transformer.norm(x)

    def infer(self, image, ids, masks):
        x = torch.cat([self.text(ids), self.visual(image)], dim=1)
        mask = torch.cat([masks, torch.ones(image.shape[0], x.shape[1] - ids.shape[1], dtype=masks.dtype)], dim=1)
        bias = self.biases(self.fuse_idx)
        for i, blk in enumerate(self.transformer.blocks):
            x = blk(x, mask, bias[i], "vl")
        x = self.transformer.norm(x)
        return x, torch.tanh(self.pooler.dense(x[:, 0]))


def tensor(entry):
    return torch.tensor(entry["data"], dtype=torch.float32 if entry["dtype"] == "float32" else torch.long)


def check(fixture):
    """The re-implementation against the official code's outputs on a reference fixture."""
    config = json.load(open(f"{fixture}/config.json"))
    model = Vlmo(config).eval()
    state = torch.load(f"{fixture}/pytorch_model.pth", map_location="cpu")
    ours = model.state_dict()
    model.load_state_dict({k: v for k, v in state.items() if k in ours}, strict=True)
    inputs = json.load(open(f"{fixture}/inputs.json"))
    expected = json.load(open(f"{fixture}/expected.json"))["outputs"]
    image, ids, masks = tensor(inputs["image"]), tensor(inputs["text_ids"]), tensor(inputs["text_masks"])
    with torch.no_grad():
        feats, pooled = model.infer(image, ids, masks)
        t = ids.shape[1]
        got = {
            "image_feats": model.infer_image_ft(image),
            "fusion_text_feats": feats[:, :t],
            "fusion_image_feats": feats[:, t:],
            "fusion_cls_feats": pooled,
        }
    return {k: float((v - tensor(expected[k])).abs().max()) for k, v in got.items()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--check", help="a reference fixture folder (vlmo-seed0)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", default="1,2")
    a = p.parse_args()
    out = {"torch": torch.__version__}
    if a.check:
        out["check"] = check(a.check)
    torch.manual_seed(0)
    config = {
        "vlmo_config": {"max_text_len": 40, "max_text_len_of_initckpt": 196, "vocab_size": 30522},
        "transformer_kwargs": {
            "img_size": 224,
            "patch_size": 16,
            "embed_dim": 768,
            "depth": 12,
            "num_heads": 12,
            "mlp_ratio": 4,
            "vlffn_start_layer_index": 10,
            "layer_scale_init_values": 0.1,
        },
    }
    model = Vlmo(config).eval()
    for prm in model.parameters():
        nn.init.trunc_normal_(prm, std=0.02)
    out["parameters"] = sum(prm.numel() for prm in model.parameters())
    image = torch.randn(1, 3, 224, 224)
    ids = torch.randint(1000, 30000, (1, 40))
    masks = torch.ones(1, 40, dtype=torch.long)
    calls = {"image": lambda: model.infer_image_ft(image), "fusion": lambda: model.infer(image, ids, masks)}
    out["seconds"] = {}
    out["medians"] = {}
    for threads in [int(t) for t in a.threads.split(",")]:
        torch.set_num_threads(threads)
        row, med = {}, {}
        with torch.no_grad():
            for name, fn in calls.items():
                fn()  # warm-up
                times = []
                for _ in range(a.reps):
                    t0 = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - t0)
                row[name] = min(times)
                med[name] = statistics.median(times)
        key = f"{threads} thread{'s' if threads > 1 else ''}"
        out["seconds"][key] = row
        out["medians"][key] = med
    print(json.dumps(out))


if __name__ == "__main__":
    main()
