"""tda-bench: a benchmark harness for training data attribution on language models."""

__version__ = "0.1.0"
