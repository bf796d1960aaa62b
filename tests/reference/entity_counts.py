#!/usr/bin/env python3
"""Reference entity counts for tests/unit/test_entity_metrics.cpp and test_conll.cpp.

Two independent re-implementations, standard library only (seqeval / conlleval.pl are not
installable here):
  * conlleval(): a line-by-line port of conlleval.pl's counting loop (startOfChunk /
    endOfChunk, the incremental "inCorrect" state, boundary lines read as O).
  * seqeval_counts(): seqeval's default mode (get_entities on the sequence with an O after
    each sentence, then set intersection of (type, start, end)).

Usage:
  entity_counts.py                  check both against the hand counts written in
                                    test_entity_metrics.cpp (CASES below) and print them
  entity_counts.py FILE             conlleval report of a "word gold pred" file
  entity_counts.py --perturb FILE   counts for a CoNLL-2003 IOB2 file against the
                                    deterministic perturbation used in test_conll.cpp
"""
import sys

# ---------------------------------------------------------------- conlleval.pl port


def split_tag(t):
    if t == "O":
        return "O", ""
    tag, _, typ = t.partition("-")
    return tag, typ


def end_of_chunk(prev_tag, tag, prev_type, typ):
    e = False
    if prev_tag == "B" and tag == "B": e = True
    if prev_tag == "B" and tag == "O": e = True
    if prev_tag == "I" and tag == "B": e = True
    if prev_tag == "I" and tag == "O": e = True
    if prev_tag == "E" and tag == "E": e = True
    if prev_tag == "E" and tag == "I": e = True
    if prev_tag == "E" and tag == "O": e = True
    if prev_tag == "I" and tag == "O": e = True
    if prev_tag != "O" and prev_tag != "." and prev_type != typ: e = True
    if prev_tag == "]": e = True
    if prev_tag == "[": e = True
    return e


def start_of_chunk(prev_tag, tag, prev_type, typ):
    s = False
    if prev_tag == "B" and tag == "B": s = True
    if prev_tag == "I" and tag == "B": s = True
    if prev_tag == "O" and tag == "B": s = True
    if prev_tag == "O" and tag == "I": s = True
    if prev_tag == "E" and tag == "E": s = True
    if prev_tag == "E" and tag == "I": s = True
    if prev_tag == "O" and tag == "E": s = True
    if prev_tag == "O" and tag == "I": s = True
    if tag != "O" and tag != "." and prev_type != typ: s = True
    if tag == "[": s = True
    if tag == "]": s = True
    return s


def conlleval(sentences):
    """sentences: list of (gold_tags, pred_tags). Returns a dict of counts as conlleval.pl."""
    BOUNDARY = "-X-"
    lines = []
    for gold, pred in sentences:
        for g, p in zip(gold, pred):
            lines.append(("w", g, p))
        lines.append((BOUNDARY, "O", "O"))
    correct_chunk = found_correct = found_guessed = correct_tags = token_counter = 0
    c_chunk, f_correct, f_guessed = {}, {}, {}
    in_correct = False
    last_correct, last_correct_type = "O", ""
    last_guessed, last_guessed_type = "O", ""
    for word, gold, pred in lines:
        correct, correct_type = split_tag(gold)
        guessed, guessed_type = split_tag(pred)
        if in_correct:
            ec = end_of_chunk(last_correct, correct, last_correct_type, correct_type)
            eg = end_of_chunk(last_guessed, guessed, last_guessed_type, guessed_type)
            if ec and eg and last_guessed_type == last_correct_type:
                in_correct = False
                correct_chunk += 1
                c_chunk[last_correct_type] = c_chunk.get(last_correct_type, 0) + 1
            elif ec != eg or guessed_type != correct_type:
                in_correct = False
        sc = start_of_chunk(last_correct, correct, last_correct_type, correct_type)
        sg = start_of_chunk(last_guessed, guessed, last_guessed_type, guessed_type)
        if sc and sg and guessed_type == correct_type:
            in_correct = True
        if sc:
            found_correct += 1
            f_correct[correct_type] = f_correct.get(correct_type, 0) + 1
        if sg:
            found_guessed += 1
            f_guessed[guessed_type] = f_guessed.get(guessed_type, 0) + 1
        if word != BOUNDARY:
            if correct == guessed and guessed_type == correct_type:
                correct_tags += 1
            token_counter += 1
        last_guessed, last_correct = guessed, correct
        last_guessed_type, last_correct_type = guessed_type, correct_type
    if in_correct:
        correct_chunk += 1
        c_chunk[last_correct_type] = c_chunk.get(last_correct_type, 0) + 1
    types = sorted(set(f_correct) | set(f_guessed))
    per_type = {t: (f_correct.get(t, 0), f_guessed.get(t, 0), c_chunk.get(t, 0)) for t in types}
    return dict(tokens=token_counter, correct_tokens=correct_tags, gold=found_correct,
                predicted=found_guessed, correct=correct_chunk, per_type=per_type)


def report(c):
    def prf(g, p, k):
        prec = 100.0 * k / p if p else 0.0
        rec = 100.0 * k / g if g else 0.0
        f = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        return prec, rec, f
    out = "processed %d tokens with %d phrases; found: %d phrases; correct: %d.\n" % (
        c["tokens"], c["gold"], c["predicted"], c["correct"])
    if c["tokens"] > 0:
        prec, rec, f = prf(c["gold"], c["predicted"], c["correct"])
        out += "accuracy: %6.2f%%; precision: %6.2f%%; recall: %6.2f%%; FB1: %6.2f\n" % (
            100.0 * c["correct_tokens"] / c["tokens"], prec, rec, f)
    for t, (g, p, k) in c["per_type"].items():
        prec, rec, f = prf(g, p, k)
        out += "%17s: precision: %6.2f%%; recall: %6.2f%%; FB1: %6.2f  %d\n" % (t, prec, rec, f, p)
    return out

# ---------------------------------------------------------------- seqeval default mode


def get_entities(seq):
    if seq and isinstance(seq[0], list):
        seq = [item for sub in seq for item in sub + ["O"]]

    def end(prev_tag, tag, prev_type, typ):
        e = False
        if prev_tag == "E": e = True
        if prev_tag == "S": e = True
        if prev_tag == "B" and tag in ("B", "S", "O"): e = True
        if prev_tag == "I" and tag in ("B", "S", "O"): e = True
        if prev_tag != "O" and prev_tag != "." and prev_type != typ: e = True
        return e

    def start(prev_tag, tag, prev_type, typ):
        s = False
        if tag in ("B", "S"): s = True
        if prev_tag in ("E", "S", "O") and tag in ("E", "I"): s = True
        if tag != "O" and tag != "." and prev_type != typ: s = True
        return s

    prev_tag, prev_type, begin, chunks = "O", "", 0, []
    for i, chunk in enumerate(seq + ["O"]):
        tag = chunk[0]
        typ = chunk[1:].split("-", maxsplit=1)[-1] or "_"
        if end(prev_tag, tag, prev_type, typ):
            chunks.append((prev_type, begin, i - 1))
        if start(prev_tag, tag, prev_type, typ):
            begin = i
        prev_tag, prev_type = tag, typ
    return chunks


def seqeval_counts(sentences):
    gold = get_entities([list(g) for g, _ in sentences]) if sentences else []
    pred = get_entities([list(p) for _, p in sentences]) if sentences else []
    gs, ps = set(gold), set(pred)
    types = sorted({t for t, _, _ in gs | ps})
    per_type = {t: (sum(1 for c in gs if c[0] == t), sum(1 for c in ps if c[0] == t),
                    sum(1 for c in gs & ps if c[0] == t)) for t in types}
    toks = [(g, p) for gg, pp in sentences for g, p in zip(gg, pp)]
    return dict(tokens=len(toks), correct_tokens=sum(g == p for g, p in toks), gold=len(gs),
                predicted=len(ps), correct=len(gs & ps), per_type=per_type)

# ---------------------------------------------------------------- the test's cases


def s(x):
    return x.split()


# name: (sentences, hand counts (gold, predicted, correct, tokens, correct tokens),
#        hand per-type {type: (gold, predicted, correct)})
CASES = {
    "basic": ([(s("B-PER I-PER O B-LOC O B-ORG I-ORG I-ORG"), s("B-PER I-PER O B-LOC O B-ORG I-ORG O"))],
              (3, 3, 2, 8, 7), {"LOC": (1, 1, 1), "ORG": (1, 1, 0), "PER": (1, 1, 1)}),
    "i_after_o": ([(s("B-PER I-PER"), s("I-PER I-PER"))], (1, 1, 1, 2, 1), {"PER": (1, 1, 1)}),
    "type_change": ([(s("B-PER I-PER I-PER"), s("B-PER I-PER I-LOC"))], (1, 2, 0, 3, 2),
                    {"LOC": (0, 1, 0), "PER": (1, 1, 0)}),
    "b_after_i": ([(s("B-PER I-PER I-PER I-PER"), s("B-PER I-PER B-PER I-PER"))], (1, 2, 0, 4, 3),
                  {"PER": (1, 2, 0)}),
    "adjacent": ([(s("B-PER B-PER B-LOC I-LOC"), s("B-PER I-PER B-LOC I-LOC"))], (3, 2, 1, 4, 3),
                 {"LOC": (1, 1, 1), "PER": (2, 1, 0)}),
    "end_of_sentence": ([(s("O O B-ORG I-ORG"), s("O O B-ORG I-ORG"))], (1, 1, 1, 4, 4), {"ORG": (1, 1, 1)}),
    "all_o": ([(s("O O O"), s("O O O"))], (0, 0, 0, 3, 3), {}),
    "spurious": ([(s("O O O"), s("O I-MISC O"))], (0, 1, 0, 3, 2), {"MISC": (0, 1, 0)}),
    "empty": ([], (0, 0, 0, 0, 0), {}),
    "iob1": ([(s("I-PER I-PER B-PER O I-LOC I-LOC"), s("B-PER I-PER B-PER O B-LOC I-LOC"))],
             (3, 3, 3, 6, 4), {"LOC": (1, 1, 1), "PER": (2, 2, 2)}),
    "across_sentences": ([(s("O B-PER"), s("O B-PER")), (s("I-PER O"), s("B-PER O"))], (2, 2, 2, 4, 3),
                         {"PER": (2, 2, 2)}),
    "micro": ([(s("B-PER I-PER O B-LOC O B-ORG I-ORG I-ORG"), s("B-PER I-PER O B-LOC O B-ORG I-ORG O")),
               (s("B-PER I-PER I-PER"), s("B-PER I-PER I-LOC")),
               (s("B-PER B-PER B-LOC I-LOC"), s("B-PER I-PER B-LOC I-LOC"))],
              (7, 7, 3, 15, 12), {"LOC": (2, 3, 2), "ORG": (1, 1, 0), "PER": (4, 3, 1)}),
}


def check_cases():
    ok = True
    for name, (sentences, (g, p, k, n, nk), per_type) in CASES.items():
        hand = dict(tokens=n, correct_tokens=nk, gold=g, predicted=p, correct=k, per_type=per_type)
        for impl, fn in (("conlleval", conlleval), ("seqeval", seqeval_counts)):
            got = fn(sentences)
            if got != hand:
                ok = False
                print("MISMATCH %s (%s): hand %s, got %s" % (name, impl, hand, got))
        print("== %s: %s" % (name, hand))
    print(report(conlleval(CASES["basic"][0])), end="")
    print(report(conlleval(CASES["micro"][0])), end="")
    # seqeval's E-/S- handling (conlleval.pl does not know S-): chunks as (type, first, last).
    print("IOBES chunks:", get_entities(s("S-PER B-LOC E-LOC E-LOC I-ORG E-ORG S-ORG")))
    return ok


def read_conll(path):
    sentences, cur = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if not fields:
                if cur:
                    sentences.append(cur)
                cur = []
            elif fields[0] == "-DOCSTART-":
                continue
            else:
                cur.append(fields)
    if cur:
        sentences.append(cur)
    return sentences


LABELS = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


def perturb(gold_sentences):
    """The deterministic corruption test_conll.cpp applies: k counts tokens over the corpus."""
    k, out = 0, []
    for tags in gold_sentences:
        pred = []
        for t in tags:
            if k % 11 == 5:
                pred.append(LABELS[(LABELS.index(t) + k) % len(LABELS)])
            elif k % 13 == 0:
                pred.append("O")
            else:
                pred.append(t)
            k += 1
        out.append(pred)
    return out


def main():
    if len(sys.argv) == 1:
        sys.exit(0 if check_cases() else 1)
    if sys.argv[1] == "--perturb":
        gold = [[f[3] for f in sen] for sen in read_conll(sys.argv[2])]
        pred = perturb(gold)
        a, b = conlleval(list(zip(gold, pred))), seqeval_counts(list(zip(gold, pred)))
        assert a == b, (a, b)
        print(a)
        print(report(a), end="")
        return
    sentences = [([f[1] for f in sen], [f[2] for f in sen]) for sen in read_conll(sys.argv[1])]
    print(report(conlleval(sentences)), end="")


if __name__ == "__main__":
    main()
