"""Training stage: data sets, the clipless DP-SGD loop, evaluation and run folders."""
