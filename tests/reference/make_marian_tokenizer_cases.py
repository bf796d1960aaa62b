#!/usr/bin/env python3
"""Golden data for tests/unit/test_marian_tokenizer.cpp (text/marian_tokenizer.hpp).

Writes tests/golden/marian_tokenizer/:

  shared/        a tokenizer folder as train_marian_tokenizer() writes it: ONE SentencePiece
                 model trained on examples/data/wmt16_en_ro/train.en + train.ro (1,000 lines)
                 saved as both source.spm and target.spm, vocab.json in OPUS-MT's layout
                 (</s> 0, <unk> 1, the model's pieces in its order, <pad> last) and
                 tokenizer_config.json. The C++ test trains with the same options and must
                 write the same four files byte for byte.
  separate_spm/  OPUS-MT's own layout: an English source.spm and a Romanian target.spm
                 trained apart, one vocab.json holding the pieces of both (what
                 Helsinki-NLP/opus-mt-en-ro ships). Here the two sides really differ, so the
                 cases show which model each side uses.
  cases.json     for both folders: texts with their pieces, ids and decodes, hand-made id
                 sequences with their decodes, and the size and FNV-1a-64 hash of a model
                 trained with the default normalisation (nmt_nfkc, 240 KB, not committed).

The models use SentencePiece's "identity" normalisation so that they stay small (nmt_nfkc
embeds a 240 KB character map); the C++ side passes the same option.

Truth: the SentencePiece Python module (Debian python3-sentencepiece 0.1.97, the same
libsentencepiece the C++ code links) trains the models and cuts the text; what
MarianTokenizer adds around it is re-implemented below from transformers'
tokenization_marian.py as of the 4.x releases (4.34 to 4.44; see the C++ header for the
points where other releases differ), because transformers is not packaged for Debian 12:
  - a text is split at the special-token strings (</s>, <unk>, <pad>) first;
  - in each other piece of text, a leading language code (the regex >>.+<< matched at the
    start) becomes one token, and every match of that regex is removed before SentencePiece;
  - a piece not in vocab.json becomes <unk>'s id; </s> is appended;
  - decoding drops the ids of </s>, <unk> and <pad> when skipping special tokens, decodes
    runs of pieces with the TARGET model's decode_pieces, writes a kept special token as
    itself plus a space, strips the ends (Python's str.strip), and applies
    clean_up_tokenization_spaces when the folder's config says so (true when it is silent).

    /usr/bin/python3 tests/reference/make_marian_tokenizer_cases.py   # needs python3-sentencepiece
"""
import io
import json
import pathlib
import re

import sentencepiece as spm

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT / "examples" / "data" / "wmt16_en_ro"
OUT = ROOT / "tests" / "golden" / "marian_tokenizer"

SPECIALS = ("</s>", "<unk>", "<pad>")


def read_lines(path):
    """Lines split at \\n only; the final newline ends the last line (the C++ test reads alike)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def number(v):
    """How the C++ trainer spells a number for SentencePiece (the value parsed is what counts)."""
    return repr(v) if isinstance(v, float) else str(v)


def train(sentences, vocab_size, model_type="unigram", character_coverage=1.0, num_threads=1,
          normalization_rule_name="nmt_nfkc"):
    """The exact option map train_marian_tokenizer() hands SentencePieceTrainer::Train.

    Every key set here is recorded in the model's trainer_spec, so C++ and Python must set
    the same keys to get the same bytes; minloglevel only silences the log."""
    args = {
        "model_type": model_type,
        "vocab_size": number(vocab_size),
        "character_coverage": number(character_coverage),
        "num_threads": number(num_threads),
        "normalization_rule_name": normalization_rule_name,
        "unk_id": "0",
        "bos_id": "1",
        "eos_id": "2",
        "pad_id": "-1",
        "minloglevel": "1",
    }
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=out, **args)
    return out.getvalue()


def marian_vocab(models):
    """OPUS-MT's vocab.json layout: </s> 0, <unk> 1, the pieces of each model in model order
    (its own <unk>, <s>, </s> left out, a piece already present or named like a special token
    skipped), <pad> last."""
    vocab = {"</s>": 0, "<unk>": 1}
    for m in models:
        for i in range(m.get_piece_size()):
            if m.is_control(i) or m.is_unknown(i):
                continue
            piece = m.id_to_piece(i)
            if piece in vocab or piece in SPECIALS:
                continue
            vocab[piece] = len(vocab)
    vocab["<pad>"] = len(vocab)
    return vocab


def tokenizer_config(source_lang, target_lang, separate_vocabs=False):
    # key order as the C++ writer uses
    conf = {}
    if source_lang:
        conf["source_lang"] = source_lang
    if target_lang:
        conf["target_lang"] = target_lang
    conf.update({
        "separate_vocabs": separate_vocabs,
        "model_max_length": 512,
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "clean_up_tokenization_spaces": False,
        "tokenizer_class": "MarianTokenizer",
    })
    return conf


def dump_json(obj, path):
    # UTF-8, two-space indent, final newline: what the C++ side writes (nlohmann dump(2))
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_cases(cases, path):
    """cases.json with one case a line (pretty-printing every id on its own line would triple it)."""
    def compact(v):
        return json.dumps(v, ensure_ascii=False, separators=(", ", ": "))

    lines = ["{"]
    for i, (key, value) in enumerate(cases.items()):
        comma = "," if i + 1 < len(cases) else ""
        if isinstance(value, dict) and all(isinstance(v, list) for v in value.values()):
            lines.append(f"  {compact(key)}: {{")
            for j, (name, items) in enumerate(value.items()):
                lines.append(f"    {compact(name)}: [")
                lines += [f"      {compact(item)}" + ("," if k + 1 < len(items) else "") for k, item in enumerate(items)]
                lines.append("    ]" + ("," if j + 1 < len(value) else ""))
            lines.append("  }" + comma)
        else:
            lines.append(f"  {compact(key)}: {compact(value)}{comma}")
    lines.append("}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


class ReferenceMarian:
    """MarianTokenizer's encode/decode around two SentencePiece models (see the docstring)."""

    language_code = re.compile(">>.+<<")

    def __init__(self, folder):
        self.source = spm.SentencePieceProcessor(model_file=str(folder / "source.spm"))
        self.target = spm.SentencePieceProcessor(model_file=str(folder / "target.spm"))
        self.vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        self.decoder = {i: p for p, i in self.vocab.items()}
        conf_path = folder / "tokenizer_config.json"
        conf = json.loads(conf_path.read_text(encoding="utf-8")) if conf_path.exists() else {}
        self.clean_up = conf.get("clean_up_tokenization_spaces", True)
        self.special_ids = {self.vocab[s] for s in SPECIALS}

    @staticmethod
    def split_specials(text):
        parts, start, i = [], 0, 0
        while i < len(text):
            hit = next((s for s in SPECIALS if text.startswith(s, i)), None)
            if hit is None:
                i += 1
                continue
            if i > start:
                parts.append(text[start:i])
            parts.append(hit)
            i += len(hit)
            start = i
        if start < len(text):
            parts.append(text[start:])
        return parts

    def tokenize(self, text, side):
        model = self.source if side == "source" else self.target
        tokens = []
        for part in self.split_specials(text):
            if part in SPECIALS:
                tokens.append(part)
                continue
            m = self.language_code.match(part)
            code = [m.group(0)] if m else []
            tokens += code + model.encode(self.language_code.sub("", part), out_type=str)
        return tokens

    def encode(self, text, side):
        unk = self.vocab["<unk>"]
        return [self.vocab.get(t, unk) for t in self.tokenize(text, side)] + [self.vocab["</s>"]]

    def decode(self, ids, skip_special_tokens, clean_up=None):
        tokens = [self.decoder[i] for i in ids if not (skip_special_tokens and i in self.special_ids)]
        out, run = "", []
        for t in tokens:
            if t in SPECIALS:
                out += self.target.decode_pieces(run) + t + " "
                run = []
            else:
                run.append(t)
        out += self.target.decode_pieces(run)
        out = out.strip()
        if self.clean_up if clean_up is None else clean_up:
            for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                         (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
                out = out.replace(a, b)
        return out


# Texts beyond the news sentences: whitespace, language codes (at the start, elsewhere,
# across a newline, degenerate), special-token strings inside text, Romanian diacritics in
# both spellings, digits, Unicode punctuation, characters never seen in training, and the
# spaces that clean_up_tokenization_spaces removes.
EDGE_TEXTS = [
    "",
    " ",
    "   ",
    "multiple    spaces  and trailing   ",
    "\u00a0no-break spaces around\u00a0",
    "tab\tinside",
    "line\nbreak",
    ">>ro<< The Commission agrees.",
    ">>ro<<",
    ">>ro<<Parliament",
    " >>ro<< a code that is not at the start",
    "a >>x<< b >>y<< c",
    ">>ro<< first line >>de<<\n>>fr<< second line",
    ">><<",
    ">>a<<<<b",
    "Hello</s>world",
    "</s>",
    "<pad> <unk> text",
    "Şedinţa, şeful, ţara (cedilla) și ședința, țara (comma below): Ş Ţ Ș Ț ă â î Ă Â Î",
    "În 2016 au fost 1.234.567 de voturi (12,5%), nr. 42/2015.",
    "„Ghilimele” – «citate» — ‘simple’ … ¿qué? ¡sí!",
    "Never seen: ŧ ǅ 😀 漢字 ∑",
    "The Council ' s position , isn ' t it ? Yes !",
    "Ce faci ? Bine .",
]


def text_cases(tok, texts, side):
    cases = []
    for text in texts:
        ids = tok.encode(text, side)
        cases.append({
            "side": side,
            "text": text,
            "pieces": tok.tokenize(text, side),
            "ids": ids,
            # what decode gives for these ids (as a target sequence), in the three ways tested
            "decoded": tok.decode(ids, True),
            "decoded_with_special_tokens": tok.decode(ids, False),
            "decoded_clean_up": tok.decode(ids, True, clean_up=True),
        })
    return cases


def id_cases(tok, rng_pieces):
    """Hand-made id sequences: padding, </s> inside, <unk>, only specials, empty."""
    v = tok.vocab
    eos, unk, pad = v["</s>"], v["<unk>"], v["<pad>"]
    words = [v[p] for p in rng_pieces if p in v]
    seqs = [
        [],
        [eos],
        [pad, pad, eos],
        [pad] + words[:4] + [eos, pad, pad],
        words[:3] + [unk] + words[3:6] + [eos],
        words[:2] + [eos] + words[2:5] + [eos],
        [unk, unk],
        words[::-1][:6],
    ]
    return [{"ids": s, "decoded": tok.decode(s, True), "decoded_with_special_tokens": tok.decode(s, False),
             "decoded_clean_up": tok.decode(s, True, clean_up=True)} for s in seqs]


def write_folder(folder, source_model, target_model, vocab, conf):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "source.spm").write_bytes(source_model)
    (folder / "target.spm").write_bytes(target_model)
    dump_json(vocab, folder / "vocab.json")
    dump_json(conf, folder / "tokenizer_config.json")


def main():
    train_en = read_lines(DATA / "train.en")
    train_ro = read_lines(DATA / "train.ro")
    dev_en = read_lines(DATA / "newsdev2016.en")
    dev_ro = read_lines(DATA / "newsdev2016.ro")

    # shared/: what train_marian_tokenizer(train.en, train.ro, {1000, unigram, 1.0, 1 thread,
    # identity}, dir) writes, with source_lang en and target_lang ro.
    shared_options = {"vocab_size": 1000, "model_type": "unigram", "character_coverage": 1.0, "num_threads": 1,
                      "normalization_rule_name": "identity"}
    joint = train(train_en + train_ro, **shared_options)
    joint_sp = spm.SentencePieceProcessor(model_proto=joint)
    write_folder(OUT / "shared", joint, joint, marian_vocab([joint_sp]), tokenizer_config("en", "ro"))

    # separate_spm/: OPUS-MT's layout (one model per language, one vocabulary for both)
    en_model = train(train_en, vocab_size=600, normalization_rule_name="identity")
    ro_model = train(train_ro, vocab_size=600, normalization_rule_name="identity")
    en_sp = spm.SentencePieceProcessor(model_proto=en_model)
    ro_sp = spm.SentencePieceProcessor(model_proto=ro_model)
    write_folder(OUT / "separate_spm", en_model, ro_model, marian_vocab([en_sp, ro_sp]),
                 tokenizer_config("en", "ro"))

    # The default normalisation (nmt_nfkc), same text and thread count: only its hash is kept.
    default_options = {"vocab_size": 1000, "model_type": "unigram", "character_coverage": 1.0, "num_threads": 1,
                       "normalization_rule_name": "nmt_nfkc"}
    default_model = train(train_en + train_ro, **default_options)

    shared = ReferenceMarian(OUT / "shared")
    separate = ReferenceMarian(OUT / "separate_spm")
    cases = {
        "sentencepiece_version": spm.__version__,
        "training_text": "examples/data/wmt16_en_ro/train.en then train.ro, one sentence a line",
        "shared_options": shared_options,
        "default_normalization_model": dict(default_options, size=len(default_model),
                                            fnv1a64=fnv1a64(default_model)),
        "shared": {
            "texts": text_cases(shared, dev_en[:30] + EDGE_TEXTS, "source")
            + text_cases(shared, dev_ro[:30] + EDGE_TEXTS[18:22], "target"),
            "id_sequences": id_cases(shared, shared.tokenize(dev_ro[0], "target")),
        },
        "separate_spm": {
            "texts": text_cases(separate, dev_en[30:40] + EDGE_TEXTS[7:8] + EDGE_TEXTS[18:22], "source")
            + text_cases(separate, dev_ro[30:40] + EDGE_TEXTS[18:22], "target"),
            # English pieces decoded with the Romanian model: unknown to it, so SentencePiece
            # returns them as they are (with their ▁)
            "id_sequences": id_cases(separate, separate.tokenize(dev_en[0], "source")),
        },
    }
    write_cases(cases, OUT / "cases.json")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({total} bytes), sentencepiece {spm.__version__}")


if __name__ == "__main__":
    main()
