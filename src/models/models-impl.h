/* models-impl.h — private to src/models: the built-in families of the registry (model.c). */
#ifndef TRADEFLOW_MODELS_IMPL_H
#define TRADEFLOW_MODELS_IMPL_H

#include "tradeflow/flow.h" /* tf_model_coupling (coupling/coupling.c) */
#include "tradeflow/model.h"

#endif
