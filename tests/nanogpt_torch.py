"""A PyTorch reference GPT with nanoGPT's architecture, names, init and optimizer groups.

Written for fnlearn's peer comparisons after karpathy/nanoGPT's ``model.py`` (MIT): the module names
are nanoGPT's, so ``GPT(config).state_dict()`` has exactly nanoGPT's keys
(``transformer.wte.weight``, ``transformer.h.0.attn.c_attn.weight``, ..., ``lm_head.weight``, the last
one the same tensor as ``transformer.wte.weight``). Differences from nanoGPT, all off by default:
``GPTConfig.gelu_approximate="tanh"`` selects Hugging Face GPT-2's tanh GELU; there is no
``from_pretrained``, MFU estimate or non-flash attention path, and nothing is printed.

The module is dtype-agnostic: ``GPT(config).double()`` runs in float64 (SDPA's math kernel on CPU).
Importing it without torch installed skips the importing test module.

Example:
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8))
    >>> idx = torch.randint(0, 11, (3, 5))
    >>> logits, loss = model(idx, idx)
    >>> tuple(logits.shape), loss.shape
    ((3, 5, 11), torch.Size([]))
    >>> model(idx)[0].shape  # without targets, only the last position (nanoGPT's inference shortcut)
    torch.Size([3, 1, 11])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

try:
    import torch
    from torch import nn
    from torch.nn import functional as F
except ImportError:  # pragma: no cover - depends on the environment
    import pytest

    pytest.skip("torch is not installed (pip install torch==2.13.0); the nanoGPT reference needs it",
                allow_module_level=True)


@dataclass
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = 50304
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True
    gelu_approximate: str = "none"  # "tanh" for Hugging Face GPT-2's GELU


class LayerNorm(nn.Module):
    """LayerNorm over the last axis, eps 1e-5, with the bias optional (``bias=False``: no offset)."""

    def __init__(self, ndim: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention; q, k, v are the three n_embd-wide output blocks of c_attn."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if config.n_embd % config.n_head:
            raise ValueError(f"n_embd {config.n_embd} is not divisible by n_head {config.n_head}")
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps, width = x.shape
        heads = [t.reshape(batch, steps, self.n_head, width // self.n_head).transpose(1, 2)
                 for t in self.c_attn(x).split(width, dim=2)]           # q, k, v: (B, nh, T, hs)
        y = F.scaled_dot_product_attention(*heads, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(batch, steps, width)              # heads side by side again
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate=config.gelu_approximate)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """A pre-LN transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """nanoGPT's GPT: token + learned position embedding, ``n_layer`` blocks, final LayerNorm, and an
    lm head tied to the token embedding. Init: normal(0, 0.02) for every Linear and Embedding weight,
    normal(0, 0.02/sqrt(2 n_layer)) for the residual projections (``*.c_proj.weight``), zero biases,
    LayerNorm weights one (torch's global generator; seed it with ``torch.manual_seed``)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
            ln_f=LayerNorm(config.n_embd, config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # tied: one Parameter under two names
        self.apply(self._init_weights)
        residual_std = 0.02 / math.sqrt(2 * config.n_layer)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=residual_std)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``idx`` (B, T) int64 with T <= block_size. With ``targets`` (B, T): logits (B, T, V) and the
        mean cross-entropy (``ignore_index=-1``); without: the last position's logits (B, 1, V), None."""
        steps = idx.shape[1]
        if steps > self.config.block_size:
            raise ValueError(f"sequence length {steps} exceeds block_size {self.config.block_size}")
        pos = torch.arange(steps, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        if targets is None:
            return self.lm_head(x[:, [-1], :]), None
        logits = self.lm_head(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def configure_optimizers(self, weight_decay: float, learning_rate: float,
                             betas: tuple[float, float], device_type: str = "cpu") -> torch.optim.AdamW:
        """nanoGPT's AdamW: ``weight_decay`` on the parameters with two or more dimensions (matmul weights
        and embeddings), none on biases and LayerNorm weights; the fused kernel only on CUDA."""
        params = [p for p in self.parameters() if p.requires_grad]   # the tied weight appears once
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        extra = {"fused": True} if device_type == "cuda" else {}
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, **extra)
