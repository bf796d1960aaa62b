#pragma once
// The data module: GLUE, HANS, PAWS-X and CoNLL-2003 readers, batching and batch sources,
// sub-token alignment for token classification.
#include "batching.hpp"
#include "conll.hpp"
#include "example.hpp"
#include "glue.hpp"
#include "hans.hpp"
#include "paws_x.hpp"
#include "token_alignment.hpp"
#include "tsv.hpp"
