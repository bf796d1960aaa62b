#pragma once
// The metrics module: accuracy, F1, Matthews, Pearson/Spearman, GLUE per task, HANS,
// entity-level F1 (conlleval-exact), corpus BLEU and chrF (sacreBLEU-exact).
#include "bleu.hpp"
#include "chrf.hpp"
#include "classification.hpp"
#include "correlation.hpp"
#include "entity.hpp"
#include "glue.hpp"
#include "hans.hpp"
