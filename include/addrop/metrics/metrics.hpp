#pragma once
// The metrics module: accuracy, F1, Matthews, Pearson/Spearman, GLUE per task, HANS
// (and seqeval entity F1 where present).
#include "classification.hpp"
#include "correlation.hpp"
#include "glue.hpp"
#include "hans.hpp"
#if __has_include("entity.hpp")
#include "entity.hpp"
#endif
