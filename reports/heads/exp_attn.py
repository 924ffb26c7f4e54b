"""Label-attention topic heads over the adapted encoder's token states, against (and averaged with) the shipped
hybrid LR heads.  Each topic k learns a query q_k; its sentence vector is the attention-weighted mean of the token
states (softmax of h_t . q_k), and its logit reads that vector plus the mean pool.

    python reports/heads/exp_attn.py [SEEDS...]      # -> exp_attn.log
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, "reports/heads")
from probe import Y, enc, hybrid_lr, report, t_cal, t_dev, t_fit, topics  # noqa: E402

MAXLEN = 96
inner = enc.inner
cache = Path("var/attn_tokens.npz")


def token_states(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(N, MAXLEN, d) float16 last hidden states (truncated) and the (N, MAXLEN) mask."""
    ids = inner.token_ids(texts)
    head, tail, pad = list(inner.specials.head), list(inner.specials.tail), inner.specials.pad
    H = np.zeros((len(texts), MAXLEN, inner.dim), np.float16)
    M = np.zeros((len(texts), MAXLEN), np.int64)
    order = np.argsort([len(i) for i in ids])
    t0 = time.time()
    for b in range(0, len(texts), 64):
        rows = order[b : b + 64]
        seqs = [head + ids[r][: MAXLEN - len(head) - len(tail)] + tail for r in rows]
        L = max(len(s) for s in seqs)
        ii = np.full((len(rows), L), pad, np.int64)
        mm = np.zeros((len(rows), L), np.int64)
        for k, s in enumerate(seqs):
            ii[k, : len(s)], mm[k, : len(s)] = s, 1
        (h,) = inner._session.run(["last_hidden_state"], {"input_ids": ii, "attention_mask": mm})
        H[rows, :L], M[rows, :L] = h.astype(np.float16), mm
        if b % 3200 == 0:
            print(f"  tokens {b}/{len(texts)} {time.time() - t0:.0f}s", flush=True)
    return H, M


texts = sorted({e.text for e in t_fit + t_cal + t_dev})
if cache.is_file():
    z = np.load(cache, allow_pickle=False)
    H, M = z["H"], z["M"]
    assert list(z["texts"]) == texts
else:
    H, M = token_states(texts)
    cache.parent.mkdir(exist_ok=True)
    np.savez(cache, H=H, M=M, texts=np.array(texts))
ix = {t: i for i, t in enumerate(texts)}


def T(exs):  # noqa: ANN001, ANN201
    r = [ix[e.text] for e in exs]
    return torch.from_numpy(H[r].astype(np.float32)), torch.from_numpy(M[r]).bool()


class LabelAttention(torch.nn.Module):
    def __init__(self, d: int, k: int) -> None:
        super().__init__()
        self.q = torch.nn.Parameter(torch.randn(k, d) * 0.02)
        self.w = torch.nn.Parameter(torch.zeros(k, d))
        self.u = torch.nn.Parameter(torch.zeros(k, d))
        self.b = torch.nn.Parameter(torch.full((k,), -2.0))
        self.drop = torch.nn.Dropout(0.1)

    def forward(self, h: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        h = self.drop(h)
        s = torch.einsum("bld,kd->bkl", h, self.q) / h.shape[-1] ** 0.5
        a = torch.softmax(s.masked_fill(~m[:, None, :], -1e4), -1)
        pooled = torch.einsum("bkl,bld->bkd", a, h)
        mean = (h * m[..., None]).sum(1) / m.sum(1, keepdim=True)
        return (pooled * self.w).sum(-1) + mean @ self.u.T + self.b


def attn_probs(seed: int, epochs: int = 25, wd: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    torch.manual_seed(seed)
    hf, mf = T(t_fit)
    yf = torch.from_numpy(Y(t_fit)).float()
    net = LabelAttention(hf.shape[-1], len(topics))
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=wd)
    n = len(t_fit)
    for ep in range(epochs):
        net.train()
        perm = torch.randperm(n)
        tot = 0.0
        for b in range(0, n, 128):
            r = perm[b : b + 128]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(hf[r], mf[r]), yf[r])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss) * len(r)
        if ep % 5 == 4:
            print(f"  seed {seed} epoch {ep + 1} loss {tot / n:.4f}", flush=True)
    net.eval()
    with torch.no_grad():
        out = []
        for exs in (t_cal, t_dev):
            h, m = T(exs)
            out.append(torch.sigmoid(net(h, m)).numpy())
    return out[0], out[1]


torch.set_num_threads(2)
lr_c, lr_d = hybrid_lr()
report("hybrid LR", lr_c, lr_d)

seeds = [int(s) for s in sys.argv[1:]] or [0]
at = []
for seed in seeds:
    at.append(attn_probs(seed))
    report(f"attention s{seed}", *at[-1])
    report(f"avg(hybrid, attention s{seed})", (lr_c + at[-1][0]) / 2, (lr_d + at[-1][1]) / 2)
