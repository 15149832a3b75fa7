# Estimators for importance-weighted samples and Markov chains (include/tradeflow/stats.h) and
# the evaluation of a flow against its physics target (include/tradeflow/evaluate.h, result.h).
set(TF_STATS_SOURCES src/stats/stats.c src/stats/evaluate.c)
