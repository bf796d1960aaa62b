"""Plain-torch re-implementation of Hugging Face's MarianMTModel, its generate() (greedy
and beam search) and the AD-DROP attention sites of its encoder and decoder.

No `transformers` dependency; written from the semantics of Hugging Face's
modeling_marian.py (the v4.5x line: eager attention, EncoderDecoderCache), the
vectorised beam search of generation/utils.py, logits_process.py, stopping_criteria.py
and trainer_pt_utils.LabelSmoother (see tests/golden/marian/README.md for the exact
version notes). Parameters live in a dict keyed by the exact Hugging Face names
(``model.shared.weight``, ``model.encoder.layers.0.self_attn.q_proj.weight``,
``lm_head.weight``, ...); Linear weights are [out, in]. The buffer ``final_logits_bias``
[1, V] is kept apart from the trainable parameters (it has no gradient).

Model semantics (MarianMTModel, eval-mode unless `training=True`):

* token embeddings times sqrt(d_model) when ``scale_embedding`` (else times 1.0), plus a
  static sinusoidal table (`sinusoidal_positions`): feature k < d/2 is
  sin(pos / 10000^(2k/d)), feature d/2 + k is cos(pos / 10000^(2k/d)), computed in double
  and rounded to float32 (as Hugging Face builds it), position ids 0..L-1 (decoder steps:
  the cache position), no padding offset, not trainable, not saved;
* post-LN layers, LayerNorm eps 1e-5: x = LN(x + Attn(x)); decoder also
  x = LN(x + CrossAttn(x, enc)); x = LN(x + fc2(act(fc1(x)))); no final LayerNorm;
* attention: S = (Q K^T) * head_dim^-0.5 + mask (+ extra), A = softmax(S),
  context = (alpha * A) V; masks are additive with the value torch.finfo(dtype).min
  (-1.7976931348623157e308 in float64) at masked keys and 0 elsewhere: encoder
  self-attention and decoder cross-attention mask source pads, decoder self-attention is
  causal (key j > query i masked);
* logits = h W_lm^T + final_logits_bias; loss = cross-entropy mean over labels != -100;
  decoder_input_ids = labels shifted right, decoder_start_token_id first, -100 -> pad.

AD-DROP attention sites (docs/algorithm.md): every attention block is a site named
``encoder.layer{l}``, ``decoder.layer{l}`` (self) or ``cross.layer{l}``:
``extra[site]`` is an additive [B, H, Lq, Lk] tensor added after the usual mask,
``alpha[site]`` scales the probabilities in the product with V, and the probabilities
A (after attention dropout, before alpha; identical to the softmax in eval mode) are
returned and kept with retain_grad() so d loss / d A can be read after backward().

generate(): `greedy` and `beam_search` follow Hugging Face's semantics for
encoder-decoder models (start token = decoder_start_token_id, `bad_words_ids`,
`forced_eos_token_id`, `min_length`, max_length counting the start token or
max_new_tokens, finished rows padded with pad); decoding uses an incremental KV cache
(`DecoderCache`) exactly like the full teacher-forced decoder.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default, which Marian's layers use
ACTIVATIONS = ("swish", "silu", "gelu", "relu", "gelu_new", "tanh")


# --------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------

@dataclass
class MarianConfig:
    vocab_size: int = 40
    decoder_vocab_size: Optional[int] = None  # None -> vocab_size
    d_model: int = 16
    encoder_layers: int = 2
    decoder_layers: int = 2
    encoder_attention_heads: int = 4
    decoder_attention_heads: int = 4
    encoder_ffn_dim: int = 32
    decoder_ffn_dim: int = 32
    max_position_embeddings: int = 32
    activation_function: str = "swish"
    scale_embedding: bool = True
    share_encoder_decoder_embeddings: bool = True
    tie_word_embeddings: bool = True
    pad_token_id: int = 39
    eos_token_id: int = 0
    decoder_start_token_id: int = 39
    forced_eos_token_id: Optional[int] = 0
    unk_token_id: int = 1  # tokenizer's; not a config field of Hugging Face's MarianConfig
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    encoder_layerdrop: float = 0.0
    decoder_layerdrop: float = 0.0
    init_std: float = 0.02
    # generation defaults (kept in config.json by OPUS-MT checkpoints)
    num_beams: int = 4
    max_length: int = 10
    min_length: int = 0
    length_penalty: float = 1.0
    early_stopping: Union[bool, str] = False
    bad_words_ids: Optional[List[List[int]]] = None  # None -> [[pad]]
    extra_json: Dict = field(default_factory=dict)

    task = "seq2seq"  # for the AD-DROP fixture machinery (never a regression task)

    def __post_init__(self):
        if self.decoder_vocab_size is None:
            self.decoder_vocab_size = self.vocab_size
        if self.bad_words_ids is None:
            self.bad_words_ids = [[self.pad_token_id]]
        if self.activation_function not in ACTIVATIONS:
            raise ValueError(f"unsupported activation_function {self.activation_function!r}")
        for heads in (self.encoder_attention_heads, self.decoder_attention_heads):
            if self.d_model % heads:
                raise ValueError("d_model must be a multiple of the number of heads")
        if self.d_model % 2:
            raise ValueError("d_model must be even")
        if self.share_encoder_decoder_embeddings and self.decoder_vocab_size != self.vocab_size:
            raise ValueError("shared embeddings need decoder_vocab_size == vocab_size")

    # Hugging Face's attribute_map / derived attributes
    @property
    def num_attention_heads(self) -> int:
        return self.encoder_attention_heads

    @property
    def num_hidden_layers(self) -> int:
        return self.encoder_layers

    @property
    def hidden_size(self) -> int:
        return self.d_model

    @property
    def target_vocab_size(self) -> int:
        """Rows of lm_head / final_logits_bias: vocab_size when shared, else decoder_vocab_size."""
        return self.vocab_size if self.share_encoder_decoder_embeddings else self.decoder_vocab_size

    @property
    def embed_scale(self) -> float:
        return math.sqrt(self.d_model) if self.scale_embedding else 1.0

    def to_hf_json(self) -> Dict:
        """config.json in Hugging Face's form: every MarianConfig field, the PretrainedConfig
        fields a Marian checkpoint carries, and the generation defaults."""
        d = {
            "_name_or_path": "",
            "activation_dropout": self.activation_dropout,
            "activation_function": self.activation_function,
            "architectures": ["MarianMTModel"],
            "attention_dropout": self.attention_dropout,
            "bad_words_ids": self.bad_words_ids,
            "bos_token_id": None,
            "classifier_dropout": 0.0,
            "d_model": self.d_model,
            "decoder_attention_heads": self.decoder_attention_heads,
            "decoder_ffn_dim": self.decoder_ffn_dim,
            "decoder_layerdrop": self.decoder_layerdrop,
            "decoder_layers": self.decoder_layers,
            "decoder_start_token_id": self.decoder_start_token_id,
            "decoder_vocab_size": self.decoder_vocab_size,
            "dropout": self.dropout,
            "early_stopping": self.early_stopping,
            "encoder_attention_heads": self.encoder_attention_heads,
            "encoder_ffn_dim": self.encoder_ffn_dim,
            "encoder_layerdrop": self.encoder_layerdrop,
            "encoder_layers": self.encoder_layers,
            "eos_token_id": self.eos_token_id,
            "forced_eos_token_id": self.forced_eos_token_id,
            "init_std": self.init_std,
            "is_encoder_decoder": True,
            "length_penalty": self.length_penalty,
            "max_length": self.max_length,
            "max_position_embeddings": self.max_position_embeddings,
            "min_length": self.min_length,
            "model_type": "marian",
            "num_beams": self.num_beams,
            "num_hidden_layers": self.encoder_layers,
            "pad_token_id": self.pad_token_id,
            "scale_embedding": self.scale_embedding,
            "share_encoder_decoder_embeddings": self.share_encoder_decoder_embeddings,
            "static_position_embeddings": True,
            "tie_word_embeddings": self.tie_word_embeddings,
            "torch_dtype": "float64",
            "use_cache": True,
            "vocab_size": self.vocab_size,
        }
        d.update(self.extra_json)
        return d

    @staticmethod
    def from_hf_json(d: Dict) -> "MarianConfig":
        if d.get("model_type") != "marian":
            raise ValueError("not a Marian config")
        return MarianConfig(
            vocab_size=d["vocab_size"],
            decoder_vocab_size=d.get("decoder_vocab_size"),
            d_model=d["d_model"],
            encoder_layers=d["encoder_layers"],
            decoder_layers=d["decoder_layers"],
            encoder_attention_heads=d["encoder_attention_heads"],
            decoder_attention_heads=d["decoder_attention_heads"],
            encoder_ffn_dim=d["encoder_ffn_dim"],
            decoder_ffn_dim=d["decoder_ffn_dim"],
            max_position_embeddings=d.get("max_position_embeddings", 1024),
            activation_function=d.get("activation_function", "gelu"),
            scale_embedding=d.get("scale_embedding", False),
            share_encoder_decoder_embeddings=d.get("share_encoder_decoder_embeddings", True),
            tie_word_embeddings=d.get("tie_word_embeddings", True),
            pad_token_id=d["pad_token_id"],
            eos_token_id=d["eos_token_id"],
            decoder_start_token_id=d.get("decoder_start_token_id", d["pad_token_id"]),
            forced_eos_token_id=d.get("forced_eos_token_id"),
            dropout=d.get("dropout", 0.1),
            attention_dropout=d.get("attention_dropout", 0.0),
            activation_dropout=d.get("activation_dropout", 0.0),
            encoder_layerdrop=d.get("encoder_layerdrop", 0.0),
            decoder_layerdrop=d.get("decoder_layerdrop", 0.0),
            init_std=d.get("init_std", 0.02),
            num_beams=d.get("num_beams", 1),
            max_length=d.get("max_length", 20),
            min_length=d.get("min_length", 0),
            length_penalty=d.get("length_penalty", 1.0),
            early_stopping=d.get("early_stopping", False),
            bad_words_ids=d.get("bad_words_ids"),
        )

    @staticmethod
    def load(path: str) -> "MarianConfig":
        with open(path) as f:
            return MarianConfig.from_hf_json(json.load(f))


# --------------------------------------------------------------------------
# parameter names, shapes, initialisation, save_pretrained
# --------------------------------------------------------------------------

def _attn_shapes(prefix: str, d: int) -> Dict[str, tuple]:
    s = {}
    for nm in ("k_proj", "v_proj", "q_proj", "out_proj"):  # Hugging Face's registration order
        s[f"{prefix}.{nm}.weight"] = (d, d)
        s[f"{prefix}.{nm}.bias"] = (d,)
    return s


def param_shapes(cfg: MarianConfig) -> Dict[str, tuple]:
    """Every trainable parameter, once, under the name Hugging Face's named_parameters()
    gives it (tied parameters appear under their first name): shared+tied ->
    ``model.shared.weight`` only (it is also the encoder/decoder embed_tokens and
    lm_head); not shared -> ``model.encoder.embed_tokens.weight``,
    ``model.decoder.embed_tokens.weight`` and ``lm_head.weight`` (unless tied to the
    decoder table). The sinusoidal embed_positions (requires_grad False) are not listed."""
    d, V = cfg.d_model, cfg.vocab_size
    s: Dict[str, tuple] = {}
    if cfg.share_encoder_decoder_embeddings:
        s["model.shared.weight"] = (V, d)
    else:
        s["model.encoder.embed_tokens.weight"] = (V, d)
    for i in range(cfg.encoder_layers):
        p = f"model.encoder.layers.{i}"
        s.update(_attn_shapes(p + ".self_attn", d))
        s[p + ".self_attn_layer_norm.weight"] = (d,)
        s[p + ".self_attn_layer_norm.bias"] = (d,)
        s[p + ".fc1.weight"] = (cfg.encoder_ffn_dim, d)
        s[p + ".fc1.bias"] = (cfg.encoder_ffn_dim,)
        s[p + ".fc2.weight"] = (d, cfg.encoder_ffn_dim)
        s[p + ".fc2.bias"] = (d,)
        s[p + ".final_layer_norm.weight"] = (d,)
        s[p + ".final_layer_norm.bias"] = (d,)
    if not cfg.share_encoder_decoder_embeddings:
        # MarianModel deep-copies the (vocab_size-row) shared table for the decoder
        s["model.decoder.embed_tokens.weight"] = (V, d)
    for i in range(cfg.decoder_layers):
        p = f"model.decoder.layers.{i}"
        s.update(_attn_shapes(p + ".self_attn", d))
        s[p + ".self_attn_layer_norm.weight"] = (d,)
        s[p + ".self_attn_layer_norm.bias"] = (d,)
        s.update(_attn_shapes(p + ".encoder_attn", d))
        s[p + ".encoder_attn_layer_norm.weight"] = (d,)
        s[p + ".encoder_attn_layer_norm.bias"] = (d,)
        s[p + ".fc1.weight"] = (cfg.decoder_ffn_dim, d)
        s[p + ".fc1.bias"] = (cfg.decoder_ffn_dim,)
        s[p + ".fc2.weight"] = (d, cfg.decoder_ffn_dim)
        s[p + ".fc2.bias"] = (d,)
        s[p + ".final_layer_norm.weight"] = (d,)
        s[p + ".final_layer_norm.bias"] = (d,)
    if not lm_head_is_tied(cfg):
        s["lm_head.weight"] = (cfg.target_vocab_size, d)
    return s


def lm_head_is_tied(cfg: MarianConfig) -> bool:
    """lm_head shares the decoder's input table when tie_word_embeddings (and then the
    decoder table is model.shared when share_encoder_decoder_embeddings)."""
    return bool(cfg.tie_word_embeddings)


def table_names(cfg: MarianConfig) -> Tuple[str, str, str]:
    """(encoder embed table, decoder embed table, lm_head matrix) parameter names."""
    if cfg.share_encoder_decoder_embeddings:
        enc = dec = "model.shared.weight"
    else:
        enc, dec = "model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight"
    lm = dec if lm_head_is_tied(cfg) else "lm_head.weight"
    return enc, dec, lm


def tied_aliases(cfg: MarianConfig) -> Dict[str, str]:
    """Module names that are the same tensor as a listed parameter: alias -> parameter."""
    enc, dec, lm = table_names(cfg)
    a = {}
    if cfg.share_encoder_decoder_embeddings:
        a["model.encoder.embed_tokens.weight"] = enc
        a["model.decoder.embed_tokens.weight"] = dec
    if lm_head_is_tied(cfg):
        a["lm_head.weight"] = lm
    return a


def init_params(cfg: MarianConfig, seed: int = 0, dtype=torch.float64, std: float = 0.3,
                bias_std: float = 0.1, ln_std: float = 0.2,
                requires_grad: bool = True) -> Dict[str, torch.Tensor]:
    """Random parameters (like hf_models.init_params): matrices and embedding tables
    N(0, std), LayerNorm weights 1 + N(0, ln_std), biases N(0, bias_std), drawn in
    float64 from torch.Generator(seed) in param_shapes order. The pad rows are random too."""
    g = torch.Generator().manual_seed(seed)
    out: Dict[str, torch.Tensor] = {}
    for name, shape in param_shapes(cfg).items():
        if name.endswith("layer_norm.weight"):
            t = 1.0 + ln_std * torch.randn(shape, generator=g, dtype=torch.float64)
        elif name.endswith(".bias"):
            t = bias_std * torch.randn(shape, generator=g, dtype=torch.float64)
        else:
            t = std * torch.randn(shape, generator=g, dtype=torch.float64)
        t = t.to(dtype).contiguous()
        if requires_grad:
            t.requires_grad_(True)
        out[name] = t
    return out


def save_pretrained_state(cfg: MarianConfig, params: Dict[str, torch.Tensor],
                          buffers: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The tensors Hugging Face's save_pretrained writes for MarianMTModel: every listed
    parameter once (tied copies dropped: with shared+tied embeddings only
    model.shared.weight remains, lm_head.weight and the two embed_tokens are not written),
    the persistent buffer final_logits_bias [1, V], and NOT the sinusoidal
    model.{encoder,decoder}.embed_positions.weight (_keys_to_ignore_on_save)."""
    sd = {k: v.detach() for k, v in params.items()}
    sd["final_logits_bias"] = buffers["final_logits_bias"].detach()
    return sd


def load_state(cfg: MarianConfig, sd: Dict[str, torch.Tensor], dtype=torch.float64,
               requires_grad: bool = True):
    """(params, buffers) from a state dict. Tied aliases, if the file has them, must equal
    their parameter; embed_positions, if present, must equal the sinusoidal table
    (Hugging Face would load them; a converted checkpoint holds the same values)."""
    shapes = param_shapes(cfg)
    params = {}
    for name, shape in shapes.items():
        if name not in sd:
            raise KeyError(f"{name} missing from the state dict")
        t = sd[name]
        if tuple(t.shape) != tuple(shape):
            raise ValueError(f"{name}: shape {tuple(t.shape)} != {shape}")
        params[name] = t.to(dtype).clone().requires_grad_(requires_grad)
    for alias, target in tied_aliases(cfg).items():
        if alias in sd and not torch.equal(sd[alias].to(dtype), params[target].detach()):
            raise ValueError(f"{alias} differs from its tied parameter {target}")
    table = sinusoidal_positions(cfg.max_position_embeddings, cfg.d_model, dtype)
    for k in ("model.encoder.embed_positions.weight", "model.decoder.embed_positions.weight"):
        if k in sd and not torch.equal(sd[k].to(dtype), table):
            raise ValueError(f"{k} is not the sinusoidal table")
    fb = sd.get("final_logits_bias")
    if fb is None:  # _keys_to_ignore_on_load_missing: zeros
        fb = torch.zeros(1, cfg.target_vocab_size, dtype=dtype)
    buffers = {"final_logits_bias": fb.to(dtype).clone()}
    known = set(shapes) | set(tied_aliases(cfg)) | {"final_logits_bias", "model.encoder.embed_positions.weight",
                                                     "model.decoder.embed_positions.weight"}
    unknown = sorted(set(sd) - known)
    if unknown:
        raise ValueError(f"unexpected tensors {unknown}")
    return params, buffers


# --------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------

def sinusoidal_positions(n_pos: int, dim: int, dtype=torch.float64) -> torch.Tensor:
    """Marian's static table [n_pos, dim]: angle(pos, k) = pos / 10000^(2k/dim) in double
    (numpy), features [0, dim/2) = sin(angle(pos, k)), [dim/2, dim) = cos(angle(pos, k)),
    k = 0..dim/2-1 (not interleaved), then rounded to float32 (Hugging Face goes through a
    FloatTensor) and stored in `dtype`."""
    j = np.arange(dim)
    pos = np.arange(n_pos)[:, None]
    enc = pos / np.power(10000, 2 * (j // 2) / dim)  # [n_pos, dim], double
    half = dim // 2
    out = np.empty((n_pos, dim), dtype=np.float64)
    out[:, :half] = np.sin(enc[:, 0::2]).astype(np.float32)
    out[:, half:] = np.cos(enc[:, 1::2]).astype(np.float32)
    return torch.from_numpy(out).to(dtype)


def activation(name: str, x: torch.Tensor) -> torch.Tensor:
    if name in ("swish", "silu"):
        return F.silu(x)
    if name == "gelu":
        return F.gelu(x)  # exact erf form
    if name == "relu":
        return F.relu(x)
    if name == "gelu_new":
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))
    if name == "tanh":
        return torch.tanh(x)
    raise ValueError(name)


def padding_mask(attention_mask: torch.Tensor, tgt_len: int, dtype) -> torch.Tensor:
    """[B, Lk] 0/1 -> additive [B, 1, tgt_len, Lk]: 0 where 1, finfo(dtype).min where 0."""
    B, Lk = attention_mask.shape
    inv = 1.0 - attention_mask[:, None, None, :].expand(B, 1, tgt_len, Lk).to(dtype)
    return inv.masked_fill(inv.to(torch.bool), torch.finfo(dtype).min)


def causal_mask(B: int, L: int, dtype, decoder_attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """[B, 1, L, L]: finfo(dtype).min where key j > query i, 0 elsewhere; with a decoder
    attention mask, also finfo.min at its zero keys."""
    m = torch.full((L, L), torch.finfo(dtype).min, dtype=dtype).triu(1)
    m = m[None, None].expand(B, 1, L, L).clone()
    if decoder_attention_mask is not None:
        pad = decoder_attention_mask[:, None, None, :].expand(B, 1, L, L) == 0
        m = m.masked_fill(pad, torch.finfo(dtype).min)
    return m


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    out = labels.new_zeros(labels.shape)
    out[:, 1:] = labels[:, :-1]
    out[:, 0] = decoder_start_token_id
    return out.masked_fill(out == -100, pad_token_id)


class _Sites:
    """Per-forward AD-DROP site options and the probabilities it kept."""

    def __init__(self, extra, alpha, probs_delta, retain, training, attention_dropout):
        self.extra = extra or {}
        self.alpha = alpha or {}
        self.probs_delta = probs_delta or {}
        self.retain = retain
        self.training = training
        self.p_att = attention_dropout
        self.probs: Dict[str, torch.Tensor] = {}


def _dropout(x, p, training):
    if training and p > 0:
        return F.dropout(x, p, True)
    return x


def _ln(P, name, x):
    return F.layer_norm(x, (x.shape[-1],), P[name + ".weight"], P[name + ".bias"], LAYER_NORM_EPS)


def _proj(P, name, x):
    return F.linear(x, P[name + ".weight"], P[name + ".bias"])


def _heads(x, nh):  # [B, L, D] -> [B, nh, L, hd]
    B, L, D = x.shape
    return x.view(B, L, nh, D // nh).transpose(1, 2)


def _attend(Q, K, V, mask, site: str, sites: _Sites):
    """Q [B,H,Lq,hd], K/V [B,H,Lk,hd], mask broadcastable to [B,H,Lq,Lk]."""
    hd = Q.shape[-1]
    S = torch.matmul(Q, K.transpose(-1, -2)) * (hd ** -0.5)
    if mask is not None:
        S = S + mask
    if sites.extra.get(site) is not None:
        S = S + sites.extra[site]
    A = F.softmax(S, dim=-1)
    A = _dropout(A, sites.p_att, sites.training)
    if sites.retain and A.requires_grad:
        A.retain_grad()
    sites.probs[site] = A
    Ause = A
    if site in sites.probs_delta:
        Ause = Ause + sites.probs_delta[site]
    if sites.alpha.get(site) is not None:
        Ause = Ause * sites.alpha[site]
    ctx = torch.matmul(Ause, V)
    B, H, Lq, _ = ctx.shape
    return ctx.transpose(1, 2).reshape(B, Lq, H * hd)


# --------------------------------------------------------------------------
# encoder and decoder
# --------------------------------------------------------------------------

def encode(cfg: MarianConfig, P, input_ids, attention_mask, sites: _Sites):
    """Returns (last hidden state [B, Ls, d], [embedding output, layer outputs...])."""
    B, L = input_ids.shape
    enc_name = table_names(cfg)[0]
    dtype = P[enc_name].dtype
    pos = sinusoidal_positions(cfg.max_position_embeddings, cfg.d_model, dtype)
    x = F.embedding(input_ids, P[enc_name], padding_idx=cfg.pad_token_id) * cfg.embed_scale
    x = x + pos[:L][None]
    x = _dropout(x, cfg.dropout, sites.training)
    hidden = [x]
    mask = padding_mask(attention_mask, L, dtype)
    nh = cfg.encoder_attention_heads
    for i in range(cfg.encoder_layers):
        p = f"model.encoder.layers.{i}"
        a = p + ".self_attn"
        ctx = _attend(_heads(_proj(P, a + ".q_proj", x), nh), _heads(_proj(P, a + ".k_proj", x), nh),
                      _heads(_proj(P, a + ".v_proj", x), nh), mask, f"encoder.layer{i}", sites)
        h = _dropout(_proj(P, a + ".out_proj", ctx), cfg.dropout, sites.training)
        x = _ln(P, p + ".self_attn_layer_norm", x + h)
        f = activation(cfg.activation_function, _proj(P, p + ".fc1", x))
        f = _dropout(f, cfg.activation_dropout, sites.training)
        f = _dropout(_proj(P, p + ".fc2", f), cfg.dropout, sites.training)
        x = _ln(P, p + ".final_layer_norm", x + f)
        hidden.append(x)
    return x, hidden


def decode(cfg: MarianConfig, P, decoder_input_ids, enc_out, attention_mask, sites: _Sites,
           decoder_attention_mask=None):
    """Teacher-forced decoder over the whole target. Returns (last hidden, hidden list)."""
    B, L = decoder_input_ids.shape
    dec_name = table_names(cfg)[1]
    dtype = P[dec_name].dtype
    pos = sinusoidal_positions(cfg.max_position_embeddings, cfg.d_model, dtype)
    x = F.embedding(decoder_input_ids, P[dec_name], padding_idx=cfg.pad_token_id) * cfg.embed_scale
    x = x + pos[:L][None]
    x = _dropout(x, cfg.dropout, sites.training)
    hidden = [x]
    self_mask = causal_mask(B, L, dtype, decoder_attention_mask)
    cross_mask = padding_mask(attention_mask, L, dtype)
    nh = cfg.decoder_attention_heads
    for i in range(cfg.decoder_layers):
        p = f"model.decoder.layers.{i}"
        a = p + ".self_attn"
        ctx = _attend(_heads(_proj(P, a + ".q_proj", x), nh), _heads(_proj(P, a + ".k_proj", x), nh),
                      _heads(_proj(P, a + ".v_proj", x), nh), self_mask, f"decoder.layer{i}", sites)
        h = _dropout(_proj(P, a + ".out_proj", ctx), cfg.dropout, sites.training)
        x = _ln(P, p + ".self_attn_layer_norm", x + h)
        c = p + ".encoder_attn"
        ctx = _attend(_heads(_proj(P, c + ".q_proj", x), nh), _heads(_proj(P, c + ".k_proj", enc_out), nh),
                      _heads(_proj(P, c + ".v_proj", enc_out), nh), cross_mask, f"cross.layer{i}", sites)
        h = _dropout(_proj(P, c + ".out_proj", ctx), cfg.dropout, sites.training)
        x = _ln(P, p + ".encoder_attn_layer_norm", x + h)
        f = activation(cfg.activation_function, _proj(P, p + ".fc1", x))
        f = _dropout(f, cfg.activation_dropout, sites.training)
        f = _dropout(_proj(P, p + ".fc2", f), cfg.dropout, sites.training)
        x = _ln(P, p + ".final_layer_norm", x + f)
        hidden.append(x)
    return x, hidden


def lm_logits(cfg: MarianConfig, P, buffers, h):
    W = P[table_names(cfg)[2]]
    return F.linear(h, W) + buffers["final_logits_bias"].to(W.dtype)


def forward(cfg: MarianConfig, params: Dict[str, torch.Tensor], buffers: Dict[str, torch.Tensor],
            input_ids: torch.Tensor, attention_mask: torch.Tensor,
            decoder_input_ids: Optional[torch.Tensor] = None, labels: Optional[torch.Tensor] = None,
            extra: Optional[Dict[str, torch.Tensor]] = None, alpha: Optional[Dict[str, object]] = None,
            probs_delta: Optional[Dict[str, torch.Tensor]] = None, retain_attention: bool = True,
            training: bool = False, decoder_attention_mask: Optional[torch.Tensor] = None) -> Dict[str, object]:
    """MarianMTModel.forward. decoder_input_ids default: labels shifted right.

    Returns logits [B, Lt, V], loss (CE mean over labels != -100, or None),
    attention_probs {site: A}, encoder_hidden_states / decoder_hidden_states lists
    (embedding output first), encoder_last_hidden_state.
    `extra`, `alpha`, `probs_delta` (testing aid: added to A before use) are keyed by site
    name (``encoder.layer{l}``, ``decoder.layer{l}``, ``cross.layer{l}``)."""
    if decoder_input_ids is None:
        if labels is None:
            raise ValueError("need decoder_input_ids or labels")
        decoder_input_ids = shift_tokens_right(labels, cfg.pad_token_id, cfg.decoder_start_token_id)
    sites = _Sites(extra, alpha, probs_delta, retain_attention, training, cfg.attention_dropout)
    enc, enc_hidden = encode(cfg, params, input_ids, attention_mask, sites)
    dec, dec_hidden = decode(cfg, params, decoder_input_ids, enc, attention_mask, sites, decoder_attention_mask)
    logits = lm_logits(cfg, params, buffers, dec)
    loss = None
    if labels is not None:
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
    return {"logits": logits, "loss": loss, "attention_probs": sites.probs,
            "encoder_hidden_states": enc_hidden, "decoder_hidden_states": dec_hidden,
            "encoder_last_hidden_state": enc}


def label_smoothed_loss(logits: torch.Tensor, labels: torch.Tensor, epsilon: float = 0.1) -> torch.Tensor:
    """Hugging Face Trainer's LabelSmoother (trainer_pt_utils): with n = #labels != -100,
    V = logits.shape[-1], nlp = -log_softmax(logits):
    (1 - eps) * sum_{t active} nlp[t, y_t] / n + eps * sum_{t active} sum_v nlp[t, v] / (n V).
    Computed in the logits' dtype (Hugging Face sums the second term in float32)."""
    nlp = -F.log_softmax(logits, dim=-1)
    lab = labels.unsqueeze(-1)
    pad = lab.eq(-100)
    lab = lab.clamp(min=0)
    nll = nlp.gather(-1, lab).masked_fill(pad, 0.0)
    smooth = nlp.sum(dim=-1, keepdim=True).masked_fill(pad, 0.0)
    n = pad.numel() - pad.long().sum()
    return (1 - epsilon) * (nll.sum() / n) + epsilon * (smooth.sum() / (n * nlp.shape[-1]))


# --------------------------------------------------------------------------
# incremental decoding (KV cache)
# --------------------------------------------------------------------------

class DecoderCache:
    """Self-attention keys/values per decoder layer, appended one step at a time, and the
    cross-attention keys/values, computed once from the encoder output."""

    def __init__(self, cfg: MarianConfig, P, enc_out: torch.Tensor, attention_mask: torch.Tensor):
        nh = cfg.decoder_attention_heads
        self.cross = []
        for i in range(cfg.decoder_layers):
            c = f"model.decoder.layers.{i}.encoder_attn"
            self.cross.append((_heads(_proj(P, c + ".k_proj", enc_out), nh), _heads(_proj(P, c + ".v_proj", enc_out), nh)))
        self.self_kv: List[Optional[Tuple[torch.Tensor, torch.Tensor]]] = [None] * cfg.decoder_layers
        self.cross_mask = padding_mask(attention_mask, 1, enc_out.dtype)
        self.length = 0

    def reorder(self, index: torch.Tensor):
        self.self_kv = [(k.index_select(0, index), v.index_select(0, index)) for k, v in self.self_kv]
        self.cross = [(k.index_select(0, index), v.index_select(0, index)) for k, v in self.cross]
        self.cross_mask = self.cross_mask.index_select(0, index)


def decoder_step(cfg: MarianConfig, P, buffers, tokens: torch.Tensor, cache: DecoderCache,
                 sites: Optional[_Sites] = None) -> torch.Tensor:
    """One incremental decoder step: `tokens` [N] at position cache.length. Appends the
    self-attention keys/values and returns the logits [N, V]. The single query attends to
    every cached key (causality holds by construction; Hugging Face adds a zero mask)."""
    sites = sites or _Sites(None, None, None, False, False, 0.0)
    dec_name = table_names(cfg)[1]
    dtype = P[dec_name].dtype
    t = cache.length
    pos = sinusoidal_positions(cfg.max_position_embeddings, cfg.d_model, dtype)
    x = F.embedding(tokens[:, None], P[dec_name], padding_idx=cfg.pad_token_id) * cfg.embed_scale
    x = x + pos[t:t + 1][None]
    nh = cfg.decoder_attention_heads
    for i in range(cfg.decoder_layers):
        p = f"model.decoder.layers.{i}"
        a = p + ".self_attn"
        k_new, v_new = _heads(_proj(P, a + ".k_proj", x), nh), _heads(_proj(P, a + ".v_proj", x), nh)
        if cache.self_kv[i] is None:
            K, Vv = k_new, v_new
        else:
            K, Vv = torch.cat([cache.self_kv[i][0], k_new], 2), torch.cat([cache.self_kv[i][1], v_new], 2)
        cache.self_kv[i] = (K, Vv)
        ctx = _attend(_heads(_proj(P, a + ".q_proj", x), nh), K, Vv, None, f"decoder.layer{i}", sites)
        x = _ln(P, p + ".self_attn_layer_norm", x + _proj(P, a + ".out_proj", ctx))
        c = p + ".encoder_attn"
        Kc, Vc = cache.cross[i]
        ctx = _attend(_heads(_proj(P, c + ".q_proj", x), nh), Kc, Vc, cache.cross_mask, f"cross.layer{i}", sites)
        x = _ln(P, p + ".encoder_attn_layer_norm", x + _proj(P, c + ".out_proj", ctx))
        f = _proj(P, p + ".fc2", activation(cfg.activation_function, _proj(P, p + ".fc1", x)))
        x = _ln(P, p + ".final_layer_norm", x + f)
    cache.length = t + 1
    return lm_logits(cfg, P, buffers, x)[:, 0]


def incremental_logits(cfg, P, buffers, input_ids, attention_mask, decoder_input_ids) -> torch.Tensor:
    """Teacher forcing through decoder_step, one position at a time: [B, Lt, V]."""
    with torch.no_grad():
        sites = _Sites(None, None, None, False, False, 0.0)
        enc, _ = encode(cfg, P, input_ids, attention_mask, sites)
        cache = DecoderCache(cfg, P, enc, attention_mask)
        outs = [decoder_step(cfg, P, buffers, decoder_input_ids[:, t], cache) for t in range(decoder_input_ids.shape[1])]
    return torch.stack(outs, 1)


# --------------------------------------------------------------------------
# generation
# --------------------------------------------------------------------------

@dataclass
class GenerationSettings:
    num_beams: int = 1
    max_length: Optional[int] = None      # total length, start token included
    max_new_tokens: Optional[int] = None  # if set: max_length = 1 + max_new_tokens
    min_length: int = 0
    length_penalty: float = 1.0
    early_stopping: Union[bool, str] = False  # True, False or "never"
    forced_eos: bool = True                   # use cfg.forced_eos_token_id (if not None)

    def resolved_max_length(self, cfg: MarianConfig) -> int:
        if self.max_new_tokens is not None:
            return 1 + self.max_new_tokens
        return self.max_length if self.max_length is not None else cfg.max_length


def _logits_processors(cfg: MarianConfig, settings: GenerationSettings, max_length: int):
    """Hugging Face's processors for these settings, in its order: NoBadWords (single-token
    bans: -inf), MinLength (eos -inf while the sequence, start token included, is shorter
    than min_length), ForcedEOS (when the sequence has max_length - 1 tokens: every token
    -inf except eos, which gets 0)."""
    banned = sorted({w[0] for w in cfg.bad_words_ids if len(w) == 1})
    if any(len(w) != 1 for w in cfg.bad_words_ids):
        raise NotImplementedError("multi-token bad words")
    forced = cfg.forced_eos_token_id if settings.forced_eos else None

    def apply(cur_len: int, scores: torch.Tensor) -> torch.Tensor:
        s = scores.clone()
        if banned:
            s[:, banned] = -math.inf
        if settings.min_length > 0 and cur_len < settings.min_length:
            s[:, cfg.eos_token_id] = -math.inf
        if forced is not None and cur_len == max_length - 1:
            s = torch.full_like(s, -math.inf)
            s[:, forced] = 0.0
        return s

    return apply


def _prepare(cfg, P, input_ids, attention_mask):
    sites = _Sites(None, None, None, False, False, 0.0)
    enc, _ = encode(cfg, P, input_ids, attention_mask, sites)
    return enc


def greedy(cfg: MarianConfig, P, buffers, input_ids, attention_mask,
           settings: Optional[GenerationSettings] = None, score_dtype=None, use_cache: bool = True) -> torch.Tensor:
    """Greedy search (num_beams 1, do_sample False). Starts from decoder_start_token_id;
    each step: logits of the last position (optionally cast to `score_dtype`, Hugging Face
    casts to float32), processors on the raw logits, argmax (first maximum); a row that has
    produced eos gets pad from then on; stops when every row has eos or the length reaches
    max_length. Returns sequences [B, 1 + steps] (start token included)."""
    settings = settings or GenerationSettings()
    max_length = settings.resolved_max_length(cfg)
    proc = _logits_processors(cfg, settings, max_length)
    with torch.no_grad():
        B = input_ids.shape[0]
        enc = _prepare(cfg, P, input_ids, attention_mask)
        seqs = torch.full((B, 1), cfg.decoder_start_token_id, dtype=torch.long)
        unfinished = torch.ones(B, dtype=torch.bool)
        cache = DecoderCache(cfg, P, enc, attention_mask) if use_cache else None
        while True:
            cur_len = seqs.shape[1]
            if use_cache:
                logits = decoder_step(cfg, P, buffers, seqs[:, -1], cache)
            else:
                logits = _full_last_logits(cfg, P, buffers, enc, attention_mask, seqs)
            if score_dtype is not None:
                logits = logits.to(score_dtype)
            nxt = proc(cur_len, logits).argmax(-1)
            nxt = torch.where(unfinished, nxt, torch.full_like(nxt, cfg.pad_token_id))
            seqs = torch.cat([seqs, nxt[:, None]], 1)
            unfinished &= nxt != cfg.eos_token_id
            if seqs.shape[1] >= max_length:
                unfinished[:] = False
            if not unfinished.any():
                return seqs


def _full_last_logits(cfg, P, buffers, enc, attention_mask, seqs):
    sites = _Sites(None, None, None, False, False, 0.0)
    h, _ = decode(cfg, P, seqs, enc, attention_mask, sites)
    return lm_logits(cfg, P, buffers, h)[:, -1]


NEG_SENTINEL = -1.0e9  # Hugging Face's "impossible" score offset in beam search


def beam_search(cfg: MarianConfig, P, buffers, input_ids, attention_mask,
                settings: GenerationSettings, score_dtype=None, use_cache: bool = True,
                return_details: bool = False):
    """Beam search (do_sample False, one eos id), Hugging Face's vectorised semantics:

    * per source b: running beams (scores: sum of processed log-probs; initially beam 0
      at 0 and the others at -1e9) and a list of the num_beams best finished hypotheses
      (initially empty: -1e9);
    * each step: log_softmax of the last-position logits (optionally cast to
      score_dtype), then the processors (bad words -inf, forced eos: others -inf and eos
      0), plus the running score; the top K = 2 * num_beams over (beam, token);
    * a candidate "hits" when its token is eos or its length (start included) reaches
      max_length. The next running beams are the best num_beams candidates after adding
      -1e9 to the hitting ones;
    * among the first num_beams candidates, the hitting ones are offered to the finished
      list with score sum_logprobs / g^length_penalty, g = generated tokens (eos
      included; = length - 1). An offer is refused (score -1e9 added) when the source's
      list is full and early_stopping is True, or when the early-stop heuristic said no
      improvement is possible; the list keeps the best num_beams of old and offered;
    * heuristic, after the step (length now cur_len, g_run = cur_len - 1 generated):
      best possible = best running score / g_best^lp with g_best = max_length - 1 when
      early_stopping == "never" and lp > 0, else g_run; improvement stays possible iff
      some finished slot is empty or best possible > the worst finished score (sticky);
    * stop when no source can improve, or (early_stopping True) every list is full, or
      every candidate of the step hit.
    Returns sequences [B, 1 + g_max] (best hypothesis per source, pad after its end) and
    sequences_scores [B]; with return_details also the finished lists."""
    nb = settings.num_beams
    lp = settings.length_penalty
    es = settings.early_stopping
    if nb < 2:
        raise ValueError("beam search needs num_beams >= 2")
    max_length = settings.resolved_max_length(cfg)
    proc = _logits_processors(cfg, settings, max_length)
    with torch.no_grad():
        B = input_ids.shape[0]
        enc = _prepare(cfg, P, input_ids, attention_mask)
        enc_x = enc.repeat_interleave(nb, 0)
        am_x = attention_mask.repeat_interleave(nb, 0)
        dtype = enc.dtype if score_dtype is None else score_dtype
        K = 2 * nb
        prompt = 1
        run_seq = torch.full((B, nb, max_length), cfg.pad_token_id, dtype=torch.long)
        run_seq[:, :, 0] = cfg.decoder_start_token_id
        run_score = torch.zeros(B, nb, dtype=dtype)
        run_score[:, 1:] = NEG_SENTINEL
        fin_seq = run_seq.clone()
        fin_score = torch.full((B, nb), NEG_SENTINEL, dtype=dtype)
        fin_flag = torch.zeros(B, nb, dtype=torch.bool)
        fin_len = torch.zeros(B, nb, dtype=torch.long)  # generated tokens of each finished slot
        improvable = torch.ones(B, dtype=torch.bool)
        cache = DecoderCache(cfg, P, enc_x, am_x) if use_cache else None
        cur_len = 1
        bidx = torch.arange(B)[:, None]
        while True:
            flat = run_seq[:, :, :cur_len].reshape(B * nb, cur_len)
            if use_cache:
                logits = decoder_step(cfg, P, buffers, flat[:, -1], cache)
            else:
                logits = _full_last_logits(cfg, P, buffers, enc_x, am_x, flat)
            V = logits.shape[-1]
            logp = F.log_softmax(logits.to(dtype), dim=-1)
            logp = proc(cur_len, logp)
            acc = (logp.view(B, nb, V) + run_score[:, :, None]).view(B, nb * V)
            top_val, top_idx = torch.topk(acc, K, dim=1)
            src = torch.div(top_idx, V, rounding_mode="floor")
            tok = top_idx % V
            cand_seq = run_seq[bidx, src].clone()          # [B, K, max_length]
            cand_seq[:, :, cur_len] = tok
            hits = (tok == cfg.eos_token_id) | (cur_len + 1 >= max_length)
            # next running beams
            masked = top_val + hits.to(dtype) * NEG_SENTINEL
            sel = torch.topk(masked, nb, dim=1).indices
            new_run_seq = cand_seq[bidx, sel]
            new_run_score = masked.gather(1, sel)
            new_src = src.gather(1, sel)
            # finished hypotheses
            just = hits & (torch.arange(K) < nb)[None, :]
            offer = top_val / float(cur_len + 1 - prompt) ** lp
            full = fin_flag.all(1, keepdim=True) & (es is True)
            offer = offer + full.to(dtype) * NEG_SENTINEL
            offer = offer + (~improvable[:, None]).to(dtype) * NEG_SENTINEL
            offer = offer + (~just).to(dtype) * NEG_SENTINEL
            m_seq = torch.cat([fin_seq, cand_seq], 1)
            m_score = torch.cat([fin_score, offer], 1)
            m_flag = torch.cat([fin_flag, just], 1)
            m_len = torch.cat([fin_len, torch.full((B, K), cur_len + 1 - prompt, dtype=torch.long)], 1)
            keep = torch.topk(m_score, nb, dim=1).indices
            fin_seq, fin_score = m_seq[bidx, keep], m_score.gather(1, keep)
            fin_flag, fin_len = m_flag.gather(1, keep), m_len.gather(1, keep)
            # advance the running beams and the cache
            run_seq, run_score = new_run_seq, new_run_score
            if use_cache:
                cache.reorder((torch.arange(B)[:, None] * nb + new_src).reshape(-1))
            cur_len += 1
            if es == "never" and lp > 0.0:
                g_best = max_length - prompt
            else:
                g_best = cur_len - prompt
            best_possible = run_score[:, 0] / float(g_best) ** lp
            worst = torch.where(fin_flag, fin_score.min(1, keepdim=True).values,
                                torch.full_like(fin_score, NEG_SENTINEL))
            improvable = improvable & (best_possible[:, None] > worst).any(1)
            go_on = bool(improvable.any()) and not (bool(fin_flag.all()) and es is True) and not bool(hits.all())
            if not go_on:
                break
        width = prompt + int(fin_len[:, 0].max())
        seqs = fin_seq[:, 0, :width].clone()
        scores = fin_score[:, 0].clone()
        if not bool(fin_flag[:, 0].all()):
            raise RuntimeError("a source ended without a finished hypothesis")
        if return_details:
            return seqs, scores, {"fin_seq": fin_seq, "fin_score": fin_score, "fin_flag": fin_flag,
                                  "fin_len": fin_len}
        return seqs, scores


def generate(cfg: MarianConfig, P, buffers, input_ids, attention_mask,
             settings: Optional[GenerationSettings] = None, **kw):
    """greedy when num_beams == 1, else beam_search (returns (sequences, scores))."""
    settings = settings or GenerationSettings(num_beams=cfg.num_beams)
    if settings.num_beams == 1:
        return greedy(cfg, P, buffers, input_ids, attention_mask, settings, **kw), None
    return beam_search(cfg, P, buffers, input_ids, attention_mask, settings, **kw)
