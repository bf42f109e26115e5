"""Evaluation of checkpoints: zero-shot classification, image-text retrieval, open-vocabulary
segmentation, region classification on MGRS shards, and suites of them.

`farslip.evaluate.suite.evaluate_suite(model, FILE, OUT)` runs a suite with a model already in
memory; `farslip eval ...` runs the same code from the command line.
"""
