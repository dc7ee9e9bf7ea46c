"""Markdown leaderboard rendered from result records (reads `bench.results` only; no torch, no plugins)."""
