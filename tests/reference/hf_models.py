"""Plain-torch re-implementation of Hugging Face BERT, RoBERTa and ELECTRA
(discriminator) encoders with their sequence- and token-classification heads.

No `transformers` dependency: parameters live in a dict keyed by the exact
Hugging Face parameter names (``bert.encoder.layer.0.attention.self.query.weight``,
``classifier.out_proj.bias``, ...), Linear weights are [out, in] as in torch, and
the forward pass is written with torch.nn.functional ops in the same order as the
Hugging Face modules (post-LayerNorm BERT, exact erf GELU, additive -10000 mask).

The forward pass exposes AD-DROP's "attention sites" (see docs/algorithm.md):

* ``extra[l]``: optional additive [B, H, L, L] tensor added to layer l's attention
  logits (after the usual padding mask), i.e. the AD-DROP drop mask;
* ``alpha[l]``: optional scale of layer l's attention probabilities in the product
  with V (integrated gradients): context = (alpha[l] * A_l) @ V; default 1;
* ``A_l`` (the unscaled post-softmax probabilities) is kept with ``retain_grad()``
  when ``retain_attention=True`` so dLoss/dA_l can be read after ``backward()``.

Used by tests/reference/make_fixtures.py (golden fixtures, float64, eval mode) and
bench/pytorch_step.py (float32 training-step benchmark).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

MODEL_TYPES = ("bert", "roberta", "electra")
TASKS = ("seqcls", "token")

_ARCH = {
    ("bert", "seqcls"): "BertForSequenceClassification",
    ("bert", "token"): "BertForTokenClassification",
    ("roberta", "seqcls"): "RobertaForSequenceClassification",
    ("roberta", "token"): "RobertaForTokenClassification",
    ("electra", "seqcls"): "ElectraForSequenceClassification",
    ("electra", "token"): "ElectraForTokenClassification",
}


@dataclass
class Config:
    model_type: str = "bert"
    task: str = "seqcls"  # "seqcls" (sequence classification / regression) or "token"
    vocab_size: int = 60
    hidden_size: int = 16
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 32
    max_position_embeddings: int = 24
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    embedding_size: Optional[int] = None  # electra only; None -> hidden_size
    num_labels: int = 2
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    extra_json: Dict = field(default_factory=dict)

    def __post_init__(self):
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"unknown model_type {self.model_type!r}")
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")

    @property
    def prefix(self) -> str:
        return self.model_type + "."

    @property
    def emb_size(self) -> int:
        if self.model_type == "electra" and self.embedding_size is not None:
            return self.embedding_size
        return self.hidden_size

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def has_pooler(self) -> bool:
        return self.model_type == "bert" and self.task == "seqcls"

    @property
    def has_embeddings_project(self) -> bool:
        return self.model_type == "electra" and self.emb_size != self.hidden_size

    @property
    def architecture(self) -> str:
        return _ARCH[(self.model_type, self.task)]

    @property
    def problem_type(self) -> Optional[str]:
        if self.task == "token":
            return None
        return "regression" if self.num_labels == 1 else "single_label_classification"

    def to_hf_json(self) -> Dict:
        """Hugging Face style config.json contents."""
        d = {
            "architectures": [self.architecture],
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "hidden_act": "gelu",
            "hidden_dropout_prob": self.hidden_dropout_prob,
            "attention_probs_dropout_prob": self.attention_probs_dropout_prob,
            "max_position_embeddings": self.max_position_embeddings,
            "type_vocab_size": self.type_vocab_size,
            "initializer_range": 0.02,
            "layer_norm_eps": self.layer_norm_eps,
            "pad_token_id": self.pad_token_id,
            "position_embedding_type": "absolute",
            "id2label": {str(i): f"LABEL_{i}" for i in range(self.num_labels)},
            "label2id": {f"LABEL_{i}": i for i in range(self.num_labels)},
        }
        if self.model_type == "electra":
            d["embedding_size"] = self.emb_size
            d["summary_activation"] = "gelu"
            d["summary_last_dropout"] = 0.1
            d["summary_type"] = "first"
            d["summary_use_proj"] = True
        if self.model_type == "roberta":
            d["bos_token_id"] = 0
            d["eos_token_id"] = 2
        if self.problem_type is not None:
            d["problem_type"] = self.problem_type
        d.update(self.extra_json)
        return d

    @staticmethod
    def from_hf_json(d: Dict) -> "Config":
        arch = d["architectures"][0]
        task = "token" if arch.endswith("ForTokenClassification") else "seqcls"
        if "id2label" in d:
            num_labels = len(d["id2label"])
        else:
            num_labels = int(d.get("num_labels", 2))
        return Config(
            model_type=d["model_type"],
            task=task,
            vocab_size=d["vocab_size"],
            hidden_size=d["hidden_size"],
            num_hidden_layers=d["num_hidden_layers"],
            num_attention_heads=d["num_attention_heads"],
            intermediate_size=d["intermediate_size"],
            max_position_embeddings=d["max_position_embeddings"],
            type_vocab_size=d["type_vocab_size"],
            layer_norm_eps=d["layer_norm_eps"],
            pad_token_id=d["pad_token_id"],
            embedding_size=d.get("embedding_size"),
            num_labels=num_labels,
            hidden_dropout_prob=d.get("hidden_dropout_prob", 0.1),
            attention_probs_dropout_prob=d.get("attention_probs_dropout_prob", 0.1),
        )


# --------------------------------------------------------------------------
# parameter names and shapes
# --------------------------------------------------------------------------

def param_shapes(cfg: Config) -> Dict[str, tuple]:
    """Ordered dict of every parameter name (exact Hugging Face name) -> shape."""
    p = cfg.prefix
    E, Hd, I = cfg.emb_size, cfg.hidden_size, cfg.intermediate_size
    s: Dict[str, tuple] = {}
    s[p + "embeddings.word_embeddings.weight"] = (cfg.vocab_size, E)
    s[p + "embeddings.position_embeddings.weight"] = (cfg.max_position_embeddings, E)
    s[p + "embeddings.token_type_embeddings.weight"] = (cfg.type_vocab_size, E)
    s[p + "embeddings.LayerNorm.weight"] = (E,)
    s[p + "embeddings.LayerNorm.bias"] = (E,)
    if cfg.has_embeddings_project:
        s[p + "embeddings_project.weight"] = (Hd, E)
        s[p + "embeddings_project.bias"] = (Hd,)
    for i in range(cfg.num_hidden_layers):
        q = f"{p}encoder.layer.{i}."
        for nm in ("query", "key", "value"):
            s[q + f"attention.self.{nm}.weight"] = (Hd, Hd)
            s[q + f"attention.self.{nm}.bias"] = (Hd,)
        s[q + "attention.output.dense.weight"] = (Hd, Hd)
        s[q + "attention.output.dense.bias"] = (Hd,)
        s[q + "attention.output.LayerNorm.weight"] = (Hd,)
        s[q + "attention.output.LayerNorm.bias"] = (Hd,)
        s[q + "intermediate.dense.weight"] = (I, Hd)
        s[q + "intermediate.dense.bias"] = (I,)
        s[q + "output.dense.weight"] = (Hd, I)
        s[q + "output.dense.bias"] = (Hd,)
        s[q + "output.LayerNorm.weight"] = (Hd,)
        s[q + "output.LayerNorm.bias"] = (Hd,)
    if cfg.has_pooler:
        s[p + "pooler.dense.weight"] = (Hd, Hd)
        s[p + "pooler.dense.bias"] = (Hd,)
    if cfg.task == "token" or cfg.model_type == "bert":
        s["classifier.weight"] = (cfg.num_labels, Hd)
        s["classifier.bias"] = (cfg.num_labels,)
    else:  # roberta / electra sequence classification heads
        s["classifier.dense.weight"] = (Hd, Hd)
        s["classifier.dense.bias"] = (Hd,)
        s["classifier.out_proj.weight"] = (cfg.num_labels, Hd)
        s["classifier.out_proj.bias"] = (cfg.num_labels,)
    return s


def init_params(cfg: Config, seed: int = 0, dtype=torch.float64, std: float = 0.3,
                bias_std: float = 0.1, ln_std: float = 0.2,
                requires_grad: bool = True) -> Dict[str, torch.Tensor]:
    """Random parameters from a torch.Generator seeded with `seed`.

    Matrices ~ N(0, std) (larger than the usual 0.02 so tests are sensitive),
    LayerNorm weights ~ 1 + N(0, ln_std), biases ~ N(0, bias_std). Embedding rows
    at the padding index are random too (not zeroed): the forward uses them.
    Sampling is done in float64 and then cast, so the values do not depend on dtype.
    """
    g = torch.Generator().manual_seed(seed)
    out: Dict[str, torch.Tensor] = {}
    for name, shape in param_shapes(cfg).items():
        if name.endswith("LayerNorm.weight"):
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


# --------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------

def roberta_position_ids(input_ids: torch.Tensor, padding_idx: int) -> torch.Tensor:
    """HF create_position_ids_from_input_ids (past_key_values_length = 0)."""
    mask = input_ids.ne(padding_idx).int()
    incremental = torch.cumsum(mask, dim=1).type_as(mask) * mask
    return incremental.long() + padding_idx


def extended_attention_mask(attention_mask: torch.Tensor, dtype) -> torch.Tensor:
    """[B, L] 0/1 -> [B, 1, 1, L] additive, (1 - m) * -10000.0."""
    ext = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - ext) * -10000.0


def _gelu(x):
    return F.gelu(x)  # exact erf form


def forward(cfg: Config, params: Dict[str, torch.Tensor], input_ids: torch.Tensor,
            attention_mask: Optional[torch.Tensor] = None,
            token_type_ids: Optional[torch.Tensor] = None,
            labels: Optional[torch.Tensor] = None,
            extra: Optional[Dict[int, torch.Tensor]] = None,
            alpha: Optional[Dict[int, object]] = None,
            retain_attention: bool = True,
            training: bool = False,
            hidden_dropout: Optional[float] = None,
            attention_dropout: Optional[float] = None,
            probs_delta: Optional[Dict[int, torch.Tensor]] = None) -> Dict[str, object]:
    """Forward pass of the model described by `cfg`.

    Returns a dict with
      logits: [B, num_labels] (sequence) or [B, L, num_labels] (token);
      loss: scalar tensor or None (when labels is None);
      attention_probs: list of A_l [B, H, L, L] (post-softmax, before alpha scaling;
          retain_grad() is called on them when retain_attention and grad is enabled);
      hidden_states: list of layer outputs [B, L, hidden];
      embedding_output: [B, L, hidden] (after LayerNorm / embeddings_project).

    extra[l]: additive [B, H, L, L] (or broadcastable) added to layer l's logits.
    alpha[l]: scalar (python float or tensor) multiplying A_l in the product with V.
    probs_delta[l]: testing aid only, added to A_l before it is used (for finite
      differences with respect to A_l).
    Dropout: applied only when training=True, with the given probabilities (default:
      the config's); with p = 0 it is the identity like nn.Dropout.
    """
    extra = extra or {}
    alpha = alpha or {}
    probs_delta = probs_delta or {}
    p = cfg.prefix
    P = params
    B, L = input_ids.shape
    dtype = P[p + "embeddings.word_embeddings.weight"].dtype
    hp = cfg.hidden_dropout_prob if hidden_dropout is None else hidden_dropout
    ap = cfg.attention_probs_dropout_prob if attention_dropout is None else attention_dropout

    def dropout(x, prob):
        if training and prob > 0:
            return F.dropout(x, prob, True)
        return x

    if attention_mask is None:
        attention_mask = torch.ones(B, L, dtype=torch.long, device=input_ids.device)
    if token_type_ids is None:
        token_type_ids = torch.zeros(B, L, dtype=torch.long, device=input_ids.device)

    # ---- embeddings
    pad = cfg.pad_token_id
    if cfg.model_type == "roberta":
        position_ids = roberta_position_ids(input_ids, pad)
        pos_pad = pad
    else:
        position_ids = torch.arange(L, device=input_ids.device).unsqueeze(0).expand(B, L)
        pos_pad = None
    words = F.embedding(input_ids, P[p + "embeddings.word_embeddings.weight"], padding_idx=pad)
    types = F.embedding(token_type_ids, P[p + "embeddings.token_type_embeddings.weight"])
    pos = F.embedding(position_ids, P[p + "embeddings.position_embeddings.weight"],
                      padding_idx=pos_pad)
    emb = words + types + pos
    emb = F.layer_norm(emb, (cfg.emb_size,), P[p + "embeddings.LayerNorm.weight"],
                       P[p + "embeddings.LayerNorm.bias"], cfg.layer_norm_eps)
    emb = dropout(emb, hp)
    if cfg.has_embeddings_project:
        emb = F.linear(emb, P[p + "embeddings_project.weight"], P[p + "embeddings_project.bias"])
    embedding_output = emb

    # ---- encoder
    ext = extended_attention_mask(attention_mask, dtype)
    nh, hd, Hd = cfg.num_attention_heads, cfg.head_dim, cfg.hidden_size
    scale = 1.0 / math.sqrt(hd)
    h = emb
    probs_list: List[torch.Tensor] = []
    hidden_list: List[torch.Tensor] = []

    def split(x):  # [B, L, Hd] -> [B, nh, L, hd]
        return x.view(B, L, nh, hd).permute(0, 2, 1, 3)

    for i in range(cfg.num_hidden_layers):
        q = f"{p}encoder.layer.{i}."
        Q = split(F.linear(h, P[q + "attention.self.query.weight"], P[q + "attention.self.query.bias"]))
        K = split(F.linear(h, P[q + "attention.self.key.weight"], P[q + "attention.self.key.bias"]))
        V = split(F.linear(h, P[q + "attention.self.value.weight"], P[q + "attention.self.value.bias"]))
        scores = torch.matmul(Q, K.transpose(-1, -2)) * scale
        scores = scores + ext
        if i in extra and extra[i] is not None:
            scores = scores + extra[i]
        A = F.softmax(scores, dim=-1)
        if retain_attention and A.requires_grad:
            A.retain_grad()
        probs_list.append(A)
        Ause = A
        if i in probs_delta:
            Ause = Ause + probs_delta[i]
        Ause = dropout(Ause, ap)
        if i in alpha and alpha[i] is not None:
            Ause = Ause * alpha[i]
        ctx = torch.matmul(Ause, V).permute(0, 2, 1, 3).contiguous().view(B, L, Hd)
        a = F.linear(ctx, P[q + "attention.output.dense.weight"], P[q + "attention.output.dense.bias"])
        a = dropout(a, hp)
        a = F.layer_norm(a + h, (Hd,), P[q + "attention.output.LayerNorm.weight"],
                         P[q + "attention.output.LayerNorm.bias"], cfg.layer_norm_eps)
        inter = _gelu(F.linear(a, P[q + "intermediate.dense.weight"], P[q + "intermediate.dense.bias"]))
        o = F.linear(inter, P[q + "output.dense.weight"], P[q + "output.dense.bias"])
        o = dropout(o, hp)
        h = F.layer_norm(o + a, (Hd,), P[q + "output.LayerNorm.weight"],
                         P[q + "output.LayerNorm.bias"], cfg.layer_norm_eps)
        hidden_list.append(h)

    # ---- heads
    if cfg.task == "token":
        x = dropout(h, hp)
        logits = F.linear(x, P["classifier.weight"], P["classifier.bias"])
    elif cfg.model_type == "bert":
        pooled = torch.tanh(F.linear(h[:, 0], P[p + "pooler.dense.weight"], P[p + "pooler.dense.bias"]))
        pooled = dropout(pooled, hp)
        logits = F.linear(pooled, P["classifier.weight"], P["classifier.bias"])
    else:
        x = dropout(h[:, 0], hp)
        x = F.linear(x, P["classifier.dense.weight"], P["classifier.dense.bias"])
        x = torch.tanh(x) if cfg.model_type == "roberta" else _gelu(x)
        x = dropout(x, hp)
        logits = F.linear(x, P["classifier.out_proj.weight"], P["classifier.out_proj.bias"])

    loss = None
    if labels is not None:
        loss = compute_loss(cfg, logits, labels)
    return {
        "logits": logits,
        "loss": loss,
        "attention_probs": probs_list,
        "hidden_states": hidden_list,
        "embedding_output": embedding_output,
    }


def compute_loss(cfg: Config, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """CE mean (classification), MSE mean (num_labels == 1), CE mean over labels
    != -100 (token classification)."""
    if cfg.task == "token":
        return F.cross_entropy(logits.reshape(-1, cfg.num_labels), labels.reshape(-1),
                               ignore_index=-100)
    if cfg.num_labels == 1:
        return F.mse_loss(logits[:, 0], labels.to(logits.dtype))
    return F.cross_entropy(logits, labels)


def forward_flops(cfg: Config, batch: int, seq_len: int) -> int:
    """Matmul FLOPs (2*m*n*k each) of one forward pass: every Linear and both
    attention batched products (QK^T and AV); elementwise ops are ignored."""
    T = batch * seq_len
    Hd, I, E = cfg.hidden_size, cfg.intermediate_size, cfg.emb_size
    per_layer = (4 * 2 * T * Hd * Hd          # query, key, value, attention.output.dense
                 + 2 * 2 * T * Hd * I         # intermediate.dense, output.dense
                 + 2 * 2 * batch * seq_len * seq_len * Hd)  # QK^T and A V over all heads
    total = cfg.num_hidden_layers * per_layer
    if cfg.has_embeddings_project:
        total += 2 * T * E * Hd
    rows = T if cfg.task == "token" else batch
    if cfg.has_pooler:
        total += 2 * batch * Hd * Hd
    if cfg.task == "seqcls" and cfg.model_type != "bert":
        total += 2 * batch * Hd * Hd
    total += 2 * rows * Hd * cfg.num_labels
    return total


def step_flops(cfg: Config, batch: int, seq_len: int) -> int:
    """FLOPs of one training step (forward + full backward) = 3 x forward matmul FLOPs."""
    return 3 * forward_flops(cfg, batch, seq_len)
