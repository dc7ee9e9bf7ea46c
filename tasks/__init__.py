"""Evaluation task plugins (one module per task, registered through `bench.tasks` entry points)."""
