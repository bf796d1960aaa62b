#pragma once
// The data module: GLUE, HANS and PAWS-X readers, batching (and CoNLL-2003 where present).
#include "batching.hpp"
#include "example.hpp"
#include "glue.hpp"
#include "hans.hpp"
#include "paws_x.hpp"
#include "tsv.hpp"
#if __has_include("conll.hpp")
#include "conll.hpp"
#endif
