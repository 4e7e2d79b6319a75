"""
The full definition of a GPT language model, all of it in this single file.
References:
1) the official GPT-2 TensorFlow implementation released by OpenAI:
   https://github.com/openai/gpt-2/blob/master/src/model.py
2) Hugging Face's PyTorch implementation (src/transformers/models/gpt2/modeling_gpt2.py):
   https://github.com/huggingface/transformers
"""

import importlib
import inspect
import math
import os
import pickle
import re
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F


@dataclass
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = 50304  # GPT-2's 50257, padded up to a multiple of 64 for speed
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # bias in Linears and LayerNorms, like GPT-2. False: a bit better and faster
    # beyond GPT-2; the defaults are GPT-2's, which from_pretrained and older checkpoints rely on
    pos_emb: str = 'learned'  # 'learned' absolute positions, or 'rope': rotary, on queries and keys
    norm: str = 'layernorm'  # 'layernorm' or 'rmsnorm'
    norm_params: bool = True  # False: norms without a learned scale (and bias)
    qk_norm: bool = False  # normalize each head's queries and keys: tame attention logits
    mlp_act: str = 'gelu'  # 'gelu' (tanh, as GPT-2), 'gelu_exact' (erf, as nanoGPT) or 'relu2'
    tie_weights: bool = True  # the output head is the token embedding
    zero_init_proj: bool = False  # residual projections start at 0: blocks start as identity

    def __post_init__(self):
        for name in ('block_size', 'vocab_size', 'n_layer', 'n_head', 'n_embd'):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        for name, choices in (('pos_emb', ('learned', 'rope')), ('norm', ('layernorm', 'rmsnorm')),
                              ('mlp_act', ('gelu', 'gelu_exact', 'relu2'))):
            if (value := getattr(self, name)) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got '{value}'")
        if self.pos_emb == 'rope' and (head_size := self.n_embd // self.n_head) % 2:
            raise ValueError(f"rope needs an even head size, got n_embd/n_head = {head_size}")


# transformers' GPT2Config.activation_function for each mlp_act that GPT2LMHeadModel can hold
HF_ACTIVATIONS = {'gelu': 'gelu_new', 'gelu_exact': 'gelu'}
HF_TRANSPOSED = ('attn.c_attn.weight', 'attn.c_proj.weight', 'mlp.c_fc.weight', 'mlp.c_proj.weight')


def hf_tensor(name, tensor):
    """The one weight mapping between GPT2LMHeadModel and GPT, either way: GPT-2's Conv1D modules
    hold the transpose of a Linear's weight."""
    return tensor.t() if name.endswith(HF_TRANSPOSED) else tensor


def normalize(x, kind, weight=None, bias=None):
    """LayerNorm or RMSNorm over the last dimension."""
    if kind == 'rmsnorm':
        return F.rms_norm(x, (x.size(-1),), weight, 1e-5)
    return F.layer_norm(x, (x.size(-1),), weight, bias, 1e-5)


class LayerNorm(nn.Module):
    """GPT-2's LayerNorm with an optional bias; or RMSNorm, or either without learned parameters."""

    def __init__(self, ndim, bias, kind='layernorm', params=True):
        super().__init__()
        self.kind = kind
        self.weight = nn.Parameter(torch.ones(ndim)) if params else None
        with_bias = params and bias and kind == 'layernorm'
        self.bias = nn.Parameter(torch.zeros(ndim)) if with_bias else None

    def forward(self, input):
        return normalize(input, self.kind, self.weight, self.bias)


def rotary_tables(block_size, head_size, base=10000.0):
    """cos and sin of the rotation angles, (block_size, head_size / 2): position times frequency."""
    freqs = 1.0 / base ** (torch.arange(0, head_size, 2, dtype=torch.float32) / head_size)
    angles = torch.outer(torch.arange(block_size, dtype=torch.float32), freqs)
    return angles.cos(), angles.sin()


def rotate(x, cos, sin):
    """RoPE: turn each pair of features (i, i + hs/2) by its position's angle, so that q.k depends
    only on the distance between positions."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


@torch.autocast('cpu', enabled=False)  # the dtype is chosen here
def attention(q, k, v, **kwargs):
    """F.scaled_dot_product_attention; in float32 for bf16 on CPUs, whose bf16 kernel is ~8x slower"""
    if q.device.type != 'cpu' or q.dtype != torch.bfloat16:
        return F.scaled_dot_product_attention(q, k, v, **kwargs)
    return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), **kwargs).to(q.dtype)


class CausalSelfAttention(nn.Module):

    def __init__(self, config):
        super().__init__()
        # key, query, value projections for all heads, in one matmul
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.block_size = config.block_size
        self.norm, self.qk_norm = config.norm, config.qk_norm
        if config.pos_emb == 'rope':  # not saved: recomputed from the config
            cos, sin = rotary_tables(config.block_size, config.n_embd // config.n_head)
            self.register_buffer('rope_cos', cos, persistent=False)
            self.register_buffer('rope_sin', sin, persistent=False)

    def forward(self, x, kv_cache=None, pos=0):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        # (B, T, C) -> (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if self.qk_norm:
            q, k = normalize(q, self.norm), normalize(k, self.norm)
        if hasattr(self, 'rope_cos'):
            cos, sin = (table[pos:pos + T].to(q.dtype) for table in (self.rope_cos, self.rope_sin))
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        mask, causal = None, True
        if kv_cache is not None:
            # generation: the keys and values of positions 0..pos-1 are kept; only new ones computed
            if kv_cache[0] is None:
                shape = (B, self.n_head, self.block_size, C // self.n_head)
                kv_cache[:] = [k.new_empty(shape), v.new_empty(shape)]
            kv_cache[0][:, :, pos:pos + T], kv_cache[1][:, :, pos:pos + T] = k, v
            k, v = kv_cache[0][:, :, :pos + T], kv_cache[1][:, :, :pos + T]
            if pos > 0:  # the new queries see every cached position, and each other causally
                causal = False
                if T > 1:
                    mask = torch.ones(T, pos + T, dtype=torch.bool, device=x.device).tril(pos)
        # flash attention where the device has it; attention dropout only while training
        dropout_p = self.dropout if self.training else 0.0
        y = attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        # exact GELU is nanoGPT's; on CPUs its oneDNN kernels are ~3x faster than the tanh one
        acts = {'gelu': nn.GELU(approximate='tanh'), 'gelu_exact': nn.GELU(),
                'relu2': lambda x: F.relu(x).square()}
        self.act = acts[config.mlp_act]
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class Block(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, config.bias, config.norm, config.norm_params)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, config.bias, config.norm, config.norm_params)
        self.mlp = MLP(config)

    def forward(self, x, kv_cache=None, pos=0):
        x = x + self.attn(self.ln_1(x), kv_cache, pos)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=LayerNorm(config.n_embd, config.bias, config.norm, config.norm_params),
        ))
        if config.pos_emb == 'learned':
            self.transformer.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:  # the output head shares the token embedding (weight tying)
            self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        # GPT-2 scales the residual projections by 1/sqrt(2 * n_layer): each block adds two
        for pn, p in self.named_parameters():
            if pn.endswith('c_proj.weight'):
                std = 0.0 if config.zero_init_proj else 0.02 / math.sqrt(2 * config.n_layer)
                torch.nn.init.normal_(p, mean=0.0, std=std)

    def get_num_params(self, non_embedding=True):
        """Number of parameters. By default the embedding lookups are subtracted: the position
        embeddings, and the token embeddings unless they are tied to (and so used as) the output head."""
        n_params = sum(p.numel() for p in self.parameters())
        if non_embedding and 'wpe' in self.transformer:
            n_params -= self.transformer.wpe.weight.numel()
        if non_embedding and not self.config.tie_weights:
            n_params -= self.transformer.wte.weight.numel()
        return n_params

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets=None, kv_cache=None, pos=0, all_logits=False):
        """kv_cache (a list of one [None, None] per layer, filled in here) and pos (the position of
        idx's first token) are for generation: see generate_tokens. Without targets, only the last
        position's logits are computed, unless all_logits."""
        b, t = idx.size()
        if pos + t > self.config.block_size:
            raise ValueError(f"cannot forward a sequence of length {pos + t}, block size is only {self.config.block_size}")
        x = self.transformer.wte(idx)
        if 'wpe' in self.transformer:
            x = x + self.transformer.wpe(torch.arange(pos, pos + t, device=idx.device))
        x = self.transformer.drop(x)
        for i, block in enumerate(self.transformer.h):
            x = block(x, kv_cache[i] if kv_cache is not None else None, pos)
        x = self.transformer.ln_f(x)
        if targets is None and not all_logits:
            # inference: only the last position is needed; the list index keeps the time dimension
            return self.lm_head(x[:, [-1], :]), None
        logits = self.lm_head(x)
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)

    def crop_block_size(self, block_size):
        """Shrink the context length, e.g. to finetune the 1024-token GPT-2 on shorter contexts."""
        if not 0 < block_size <= self.config.block_size:
            raise ValueError(f"block_size must be in 1..{self.config.block_size}, got {block_size}")
        self.config.block_size = block_size
        if 'wpe' in self.transformer:
            self.transformer.wpe.weight = nn.Parameter(self.transformer.wpe.weight[:block_size])
        for block in self.transformer.h:
            block.attn.block_size = block_size
            if hasattr(block.attn, 'rope_cos'):
                block.attn.rope_cos = block.attn.rope_cos[:block_size]
                block.attn.rope_sin = block.attn.rope_sin[:block_size]

    @classmethod
    def from_pretrained(cls, name_or_dir, override_args=None):
        """OpenAI's GPT-2 ('gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl') or a folder that transformers
        saved, loaded through GPT2LMHeadModel (checkpoint.load_export reads export.py's other kind).
        Only dropout may be overridden."""
        override_args = override_args or {}
        if any(k != 'dropout' for k in override_args):
            raise ValueError(f"only dropout can be overridden, got {sorted(override_args)}")
        from transformers import GPT2LMHeadModel
        try:
            model_hf = GPT2LMHeadModel.from_pretrained(name_or_dir)
        except pickle.UnpicklingError as e:  # torch.load(weights_only=True) refused a pytorch_model.bin
            named = re.search(r'GLOBAL (\S+)', str(e))
            names = f" (it names {named[1]})" if named else ""
            raise SystemExit(f"error: {os.path.join(name_or_dir, 'pytorch_model.bin')} holds more than "
                             f"weights{names}, and loading it could run code, so it was not loaded -- use a "
                             f"model.safetensors of it from a source you trust")
        except OSError as e:
            local = f"{name_or_dir}-local"
            raise SystemExit(
                f"error: cannot load GPT-2 weights '{name_or_dir}': {str(e).splitlines()[0]} -- offline "
                f"with no cached weights, save them on a machine with internet: python -c \"from "
                f"transformers import GPT2LMHeadModel as M; M.from_pretrained('{name_or_dir}')"
                f".save_pretrained('{local}')\", copy the folder here and pass init_from=path/to/{local}")
        hf = model_hf.config
        mlp_act = {v: k for k, v in HF_ACTIVATIONS.items()}.get(hf.activation_function)
        if mlp_act is None:
            known = ' and '.join(map(repr, HF_ACTIVATIONS.values()))
            raise SystemExit(f"error: '{name_or_dir}' has activation_function="
                             f"{hf.activation_function!r}; only {known} can be loaded")
        config = GPTConfig(block_size=hf.n_positions, vocab_size=hf.vocab_size, n_layer=hf.n_layer,
                           n_head=hf.n_head, n_embd=hf.n_embd, bias=True, mlp_act=mlp_act,
                           dropout=override_args.get('dropout', 0.0))
        print(f"loading weights from pretrained gpt: {name_or_dir} ({config.n_layer} layers of {config.n_embd})")
        model = GPT(config)
        sd = model.state_dict()
        sd_hf = {k: v for k, v in model_hf.state_dict().items()
                 if not k.endswith(('.attn.bias', '.attn.masked_bias'))}  # buffers, not weights
        if set(sd_hf) != set(sd):
            raise ValueError(f"state dicts differ: {sorted(set(sd_hf) ^ set(sd))[:6]}")
        with torch.no_grad():
            for k, v in sd_hf.items():
                sd[k].copy_(hf_tensor(k, v))
        return model

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type, optimizer='adamw',
                             muon_lr=0.02, dtype='float32', verbose=True, muon_momentum=0.95):
        """AdamW with weight decay on the 2-D tensors (matmuls, embeddings) only, not on biases and
        norms. optimizer='muon': Muon (muon.py) at muon_lr and muon_momentum for the blocks' weight matrices,
        AdamW for the rest; its Newton-Schulz iterations run in bf16 when the run's dtype is 'bfloat16', else
        in float32. verbose=False (train.py's processes but rank 0) prints nothing."""
        say = print if verbose else lambda *args: None
        params = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        hidden = [p for n, p in params if optimizer == 'muon' and p.dim() == 2 and '.h.' in n]
        decay_params = [p for n, p in params if p.dim() >= 2 and all(p is not h for h in hidden)]
        nodecay_params = [p for n, p in params if p.dim() < 2]
        # no empty groups: a checkpoint keyed by parameter names cannot place an empty group
        optim_groups = [g for g in ({'params': decay_params, 'weight_decay': weight_decay},
                                    {'params': nodecay_params, 'weight_decay': 0.0}) if g['params']]
        count = lambda ps: f"{len(ps)}, with {sum(p.numel() for p in ps):,} parameters"
        say(f"num decayed parameter tensors: {count(decay_params)}")
        say(f"num non-decayed parameter tensors: {count(nodecay_params)}")
        if optimizer == 'muon':
            # by name: transformers' import check of an exported copy would demand a 'muon' package
            MuonAdamW = importlib.import_module('muon').MuonAdamW
            say(f"Muon for {len(hidden)} hidden matrices, with {sum(p.numel() for p in hidden):,} parameters")
            # lr_scale: train.py's schedule sets a group's lr to learning_rate x schedule x lr_scale
            optim_groups.append({'params': hidden, 'use_muon': True, 'lr': muon_lr, 'momentum': muon_momentum,
                                 'weight_decay': weight_decay, 'lr_scale': muon_lr / learning_rate})
            return MuonAdamW(optim_groups, lr=learning_rate, betas=betas,
                             ns_dtype=torch.bfloat16 if dtype == 'bfloat16' else torch.float32)
        # the fused kernel is one launch per step instead of several per tensor (cpu, cuda, mps)
        use_fused = ('fused' in inspect.signature(torch.optim.AdamW).parameters
                     and device_type in ('cuda', 'cpu', 'mps'))
        extra_args = dict(fused=True) if use_fused else dict()
        optimizer = torch.optim.AdamW(optim_groups, lr=learning_rate, betas=betas, **extra_args)
        say(f"using fused AdamW: {use_fused}")
        return optimizer

    def estimate_flops_per_token(self, seq_len):
        """Forward+backward FLOPs per token, PaLM paper Appendix B (arxiv.org/abs/2204.02311)."""
        N = self.get_num_params()
        cfg = self.config
        L, H, Q = cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head
        return 6 * N + 12 * L * H * Q * seq_len

    def estimate_mfu(self, fwdbwd_per_iter, dt, peak_flops, seq_len=None):
        """Model FLOPs utilization: achieved FLOP/s over peak_flops, the device's peak in the dtype
        computed in (configurator.device_peak_flops); None without one. seq_len: the length trained on
        (block_size by default)."""
        if peak_flops is None or dt <= 0:
            return None
        T = seq_len or self.config.block_size
        return self.estimate_flops_per_token(T) * T * fwdbwd_per_iter / dt / peak_flops

    @torch.no_grad()
    def generate_tokens(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                        generator=None, use_cache=True, vocab_size=None):
        """Continue the (b, t) index sequence idx, yielding each next (b, 1) column of tokens as it is made.
        With use_cache, the prompt is encoded once and each new token costs one position; a full
        context re-encodes its last block_size tokens, as the uncached path does. vocab_size: draw
        from the first vocab_size ids only (a tokenizer's; padding rows have no text)."""
        block_size = self.config.block_size
        kv_cache, pos = None, 0
        for _ in range(max_new_tokens):
            if not use_cache:
                logits, _ = self(idx[:, -block_size:])
            elif kv_cache is not None and pos < block_size:
                logits, _ = self(idx[:, -1:], kv_cache=kv_cache, pos=pos)
                pos += 1
            else:  # the first step, or a full window: encode the last block_size tokens afresh
                kv_cache = [[None, None] for _ in self.transformer.h]
                logits, _ = self(idx[:, -block_size:], kv_cache=kv_cache)
                pos = min(idx.size(1), block_size)
            idx_next = sample_next_token(logits[:, -1, :vocab_size], temperature, top_k, top_p,
                                         generator)
            idx = torch.cat((idx, idx_next), dim=1)
            yield idx_next

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, *options, **named_options):
        """idx followed by max_new_tokens generated tokens; the options are generate_tokens'."""
        new = self.generate_tokens(idx, max_new_tokens, *options, **named_options)
        return torch.cat([idx, *new], dim=1)


def sample_next_token(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """A (b, 1) column of next tokens from (b, vocab) logits. temperature 0 (or top_k 1) picks the most
    likely token; top_k keeps the k most likely; top_p keeps the smallest set of most likely tokens
    whose probabilities add up to at least top_p (nucleus sampling)."""
    if temperature == 0 or top_k == 1:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature  # 16 bits over a small temperature overflow, sum coarsely
    if top_k is not None:
        v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
        logits[logits < v[:, [-1]]] = -float('Inf')
    probs = F.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # drop a token when the more likely ones already reach top_p; the most likely always stays
        sorted_probs[sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p] = 0.0
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, num_samples=1, generator=generator)
