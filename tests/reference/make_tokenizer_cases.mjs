// Writes the expected encodings of tests/unit/test_tokenizer_wordpiece.cpp and
// tests/unit/test_tokenizer_bpe.cpp with Hugging Face's own tokenizers library (the Node
// binding of the Rust crate), replacing the text between the "BEGIN GENERATED" and
// "END GENERATED" lines of those files.
//
// Setup (node_modules must stay out of the source tree, so install it under /tmp):
//   mkdir -p /tmp/tokjs && cp tests/reference/tokenizers_js/package.json /tmp/tokjs/
//   (cd /tmp/tokjs && npm install)      # tokenizers 0.13.3 + its linux-x64-gnu binary 0.13.4-rc2
//   NODE_PATH=/tmp/tokjs/node_modules node tests/reference/make_tokenizer_cases.mjs [TOKENIZERS_DIR]
//
// TOKENIZERS_DIR defaults to $ADDROP_DATA_DIR/tokenizers, else the committed sample
// examples/data/tokenizers (the checkpoints' own files; electra-base-discriminator's
// vocab.txt is bert-base-uncased's, so where it is absent bert-base-uncased's stands in).
//
// The tokenizer.json files are built here from the plain vocab files (vocab.txt;
// vocab.json + merges.txt) with the settings of the Hugging Face checkpoints:
// BertNormalizer + BertPreTokenizer + WordPiece + BertProcessing, and
// ByteLevel + BPE + RobertaProcessing, with the special tokens as added tokens
// (normalized=false, so matched on the raw text; roberta's <mask> with lstrip=true).
// The *_special_cases put special-token strings in the text; the *_split_special_cases
// encode the same texts without the added tokens, which is what split_special_tokens=True
// does (the 0.13 binding has no such flag). Offsets are turned into UTF-8 byte offsets.
import { createRequire } from 'module';
import fs from 'fs';
import path from 'path';
import { fileURLToPath } from 'url';

const require = createRequire(import.meta.url);
const { Tokenizer } = require('tokenizers');

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const dataDir = process.argv[2] ||
  (process.env.ADDROP_DATA_DIR ? path.join(process.env.ADDROP_DATA_DIR, 'tokenizers') : path.join(root, 'examples/data/tokenizers'));

// A special token as transformers adds it (AddedToken with special=True, normalized=false).
const special = (content, id, lstrip = false) =>
  ({ id, content, single_word: false, lstrip, rstrip: false, normalized: false, special: true });

function wordpieceJson(vocabFile, lowercase) {
  const vocab = {};
  fs.readFileSync(vocabFile, 'utf8').split('\n').forEach((line, i, all) => {
    if (i === all.length - 1 && line === '') return;
    vocab[line.replace(/\r$/, '')] = i;
  });
  return {
    version: '1.0', truncation: null, padding: null,
    added_tokens: ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'].map((t) => special(t, vocab[t])),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: { type: 'BertProcessing', sep: ['[SEP]', vocab['[SEP]']], cls: ['[CLS]', vocab['[CLS]']] },
    decoder: null,
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
  };
}

function bpeJson(vocabFile, mergesFile, addPrefixSpace) {
  const vocab = JSON.parse(fs.readFileSync(vocabFile, 'utf8'));
  const merges = fs.readFileSync(mergesFile, 'utf8').split('\n').filter((l) => l !== '' && !l.startsWith('#version'));
  return {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [special('<s>', vocab['<s>']), special('<pad>', vocab['<pad>']), special('</s>', vocab['</s>']),
      special('<unk>', vocab['<unk>']), special('<mask>', vocab['<mask>'], true)],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: addPrefixSpace, trim_offsets: true },
    post_processor: { type: 'RobertaProcessing', sep: ['</s>', vocab['</s>']], cls: ['<s>', vocab['<s>']], trim_offsets: true, add_prefix_space: addPrefixSpace },
    decoder: null,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, vocab, merges },
  };
}

const long = 'a'.repeat(101);
const sentences = [
  '', ' ', 'Hello, world!', 'hello world', 'HELLO WORLD', "It's a test. Isn't it?",
  'The quick brown fox jumps over the lazy dog.', 'Crème brûlée à la mode', 'naïve café résumé Ångström',
  'Zürich, São Paulo, Kraków, Đà Nẵng', '我爱自然语言处理', '日本語のテキスト と English mixed', '한국어 문장입니다',
  'Emoji 😀 test 👍🏽 ok', 'Flags 🇫🇷 and ZWJ 👨‍👩‍👧', 'Visit https://example.com/path?q=1&x=2#frag now',
  'email: someone@example.org', 'Numbers 3.14159 and 1,000,000 and 42nd', 'Price: $19.99 (20% off)!!!',
  'Wait... what?!?! ---- ok ~~~', '"Quoted" and \'single\' and «guillemets» and „German“',
  'tabs\tand\nnewlines\r\nand   multiple    spaces', '   leading and trailing   ', 'control\u0000chars\u0007here\u001b[0m',
  'zero\u200bwidth\u200djoiner', 'replacement \ufffd char', 'nbsp\u00a0and\u2003em space', long, 'x' + long + ' short',
  'supercalifragilisticexpialidocious antidisestablishmentarianism', 'unaffable unbelievable tokenization',
  'C++ and C# and F#; x->y; a::b', '<html><body>tags</body></html>', 'İstanbul ΣΊΣΥΦΟΣ straße ǅ',
  'Ελληνικά κείμενο', 'Русский текст, ёлка', 'עברית וערבית العربية', 'हिन्दी पाठ', 'ﬁ ligature ①②③ ½',
  'a-b_c.d/e\\f|g', "don't won't can't I'm you're we've they'll he'd", '1234567890123456789',
  'the movie was great , but the ending was n\'t .', '\u3000ideographic space', 'mixed🙂emoji没有spaces',
];
const pairs = [
  ['How old are you?', 'I am 6 years old.'],
  ['The cat sat on the mat.', ''],
  ['', 'Only the second sentence.'],
  ['Crème brûlée', '我爱你'],
  ['A premise with several words in it.', 'A hypothesis.'],
];
const truncations = [
  ['The quick brown fox jumps over the lazy dog.', null, 8],
  ['The quick brown fox jumps over the lazy dog.', null, 2],
  ['one two three four five six', 'seven eight', 9],
  ['one two', 'three four five six seven eight', 9],
  ['one two three', 'four five six', 7],
  ['one two three', 'four five six', 8],
  ['a b c d e f g h', 'i j', 6],
];
const wordLists = [
  ['EU', 'rejects', 'German', 'call', 'to', 'boycott', 'British', 'lamb', '.'],
  ['Peter', 'Blackburn'],
  ['BRUSSELS', '1996-08-22'],
  ['Crème', 'brûlée', '😀', 'naïve'],
  ['unaffable', 'x'.repeat(120), 'ok'],
  ['', 'empty', 'first'],
];

// Special-token strings of both models inside the text: each model reads its own as its
// special tokens and the other's as text. Lower-case "[cls]" is text (normalized=false).
const specialSentences = [
  '[CLS] literal [SEP] markers [MASK]', '[cls] lower case [Sep] is text', 'a[MASK]b [PAD][UNK] [MASK][MASK]',
  'the movie was [MASK] .', 'Café[SEP]résumé', '日本[SEP]語', '[SEP]', '[[CLS]] [CLS', '[MASK]!',
  '<s> literal </s> markers <pad> and <mask>', 'Hello <mask> world', 'Hello  <mask>', '<s>hello', 'x<mask><mask> y',
  ' <mask> leading', '<mask>', '\t<mask>\n', 'nbsp\u00a0<mask>', '<unk> <s/> <maskx> <<s>>', 'The <mask> sat on the [MASK].',
];
const specialPairs = [
  ['[CLS] first [SEP]', '<s> second </s>'],
  ['Hello <mask>', '[MASK] there'],
];
const specialTruncations = [
  ['[MASK] a b c d e [SEP]', null, 5],
  ['one [SEP] two <mask>', 'three <mask> four [MASK]', 8],
];
const specialWords = [
  ['[CLS]', 'x[SEP]y', '<mask>', 'a<s>', '[mask]', 'ok'],
];

function byteOffsets(text, offs) {
  // The Node binding reports offsets in UTF-16 units? Map whatever unit via code points.
  const cps = Array.from(text);
  const cpByte = [0];
  for (const c of cps) cpByte.push(cpByte[cpByte.length - 1] + Buffer.byteLength(c, 'utf8'));
  return offs.map(([b, e]) => [cpByte[b], cpByte[e]]);
}

function cstr(s) {
  if (s === null) return 'std::nullopt';
  return `S(${lit(s)})`;
}
function lit(s) {
  let out = '"';
  for (const b of Buffer.from(s, 'utf8')) {
    if (b >= 0x20 && b < 0x7f && b !== 0x22 && b !== 0x5c && b !== 0x3f) out += String.fromCharCode(b);
    else out += '\\' + b.toString(8).padStart(3, '0');
  }
  return out + '"';
}
const list = (a) => '{' + a.join(', ') + '}';

async function encodeCase(tok, first, second, maxLength) {
  if (maxLength > 0) tok.setTruncation(maxLength, { strategy: 'LongestFirst' });
  else tok.disableTruncation();
  const enc = await tok.encode(first, second === null ? null : second);
  const seq = enc.getSequenceIds().map((s) => (s === null || s === undefined ? -1 : s));
  const offs = enc.getOffsets();
  const bytes = offs.map((o, i) => (seq[i] < 0 ? [0, 0] : byteOffsets(seq[i] === 0 ? first : second, [o])[0]));
  return { ids: enc.getIds(), types: enc.getTypeIds(), offs: bytes };
}

async function emitCases(tok, items) {
  const lines = [];
  for (const [first, second, maxLength] of items) {
    const r = await encodeCase(tok, first, second, maxLength);
    lines.push(`    {${cstr(first)}, ${cstr(second)}, ${maxLength},\n     ${list(r.ids)},\n     ${list(r.types)},\n     ${list(r.offs.map(([b, e]) => `{${b}, ${e}}`))}},`);
  }
  return lines.join('\n');
}

// The Node binding of 0.13 takes no pre-split input, so is_split_into_words is done as
// Hugging Face does it: every word is normalized, pre-tokenized and tokenized on its own
// (offsets inside the word), then the special tokens go around all of them.
async function emitWords(tok, cls, sep, lists = wordLists) {
  tok.disableTruncation();
  const lines = [];
  for (const words of lists) {
    const ids = [cls];
    const wid = [-1];
    const offs = [[0, 0]];
    for (let w = 0; w < words.length; ++w) {
      const enc = await tok.encode(words[w], null, { addSpecialTokens: false });
      ids.push(...enc.getIds());
      byteOffsets(words[w], enc.getOffsets()).forEach((o) => { offs.push(o); wid.push(w); });
    }
    ids.push(sep);
    wid.push(-1);
    offs.push([0, 0]);
    lines.push(`    {${list(words.map(lit))},\n     ${list(ids)},\n     ${list(wid)},\n     ${list(offs.map(([b, e]) => `{${b}, ${e}}`))}},`);
  }
  return lines.join('\n');
}

async function block(name, json) {
  const tok = Tokenizer.fromString(JSON.stringify(json));
  const items = [...sentences.map((s) => [s, null, 0]), ...pairs.map(([a, b]) => [a, b, 0]), ...truncations];
  const cls = json.post_processor.cls[1];
  const sep = json.post_processor.sep[1];
  const specialItems = [...specialSentences.map((s) => [s, null, 0]), ...specialPairs.map(([a, b]) => [a, b, 0]),
    ...specialTruncations];
  const split = Tokenizer.fromString(JSON.stringify({ ...json, added_tokens: [] }));
  return `const std::vector<Case> ${name}_cases = {\n${await emitCases(tok, items)}\n};\n` +
    `const std::vector<WordsCase> ${name}_words = {\n${await emitWords(tok, cls, sep)}\n};\n` +
    `const std::vector<Case> ${name}_special_cases = {\n${await emitCases(tok, specialItems)}\n};\n` +
    `const std::vector<Case> ${name}_split_special_cases = {\n${await emitCases(split, specialItems)}\n};\n` +
    `const std::vector<WordsCase> ${name}_special_words = {\n${await emitWords(tok, cls, sep, specialWords)}\n};\n`;
}

function splice(file, text) {
  const src = fs.readFileSync(file, 'utf8');
  const begin = src.indexOf('// BEGIN GENERATED');
  const end = src.indexOf('// END GENERATED');
  if (begin < 0 || end < 0) throw new Error(`${file}: no GENERATED markers`);
  const headEnd = src.indexOf('\n', begin) + 1;
  fs.writeFileSync(file, src.slice(0, headEnd) + text + src.slice(end));
}

const t = (n) => {
  const p = path.join(dataDir, n);
  if (fs.existsSync(p) || !n.startsWith('electra-base-discriminator/')) return p;
  return path.join(dataDir, n.replace('electra-base-discriminator', 'bert-base-uncased'));
};
let wp = '';
wp += await block('bert_uncased', wordpieceJson(t('bert-base-uncased/vocab.txt'), true));
wp += await block('bert_cased', wordpieceJson(t('bert-base-cased/vocab.txt'), false));
wp += await block('electra', wordpieceJson(t('electra-base-discriminator/vocab.txt'), true));
splice(path.join(root, 'tests/unit/test_tokenizer_wordpiece.cpp'), wp);
let bpe = '';
bpe += await block('roberta', bpeJson(t('roberta-base/vocab.json'), t('roberta-base/merges.txt'), false));
bpe += await block('roberta_prefix', bpeJson(t('roberta-base/vocab.json'), t('roberta-base/merges.txt'), true));
splice(path.join(root, 'tests/unit/test_tokenizer_bpe.cpp'), bpe);
console.log('wrote the expected encodings of', sentences.length + pairs.length + truncations.length, 'cases per tokenizer');
