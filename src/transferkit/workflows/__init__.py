"""Workflows: many runs driven toward one answer (compare strategies, rank backbones, the quickstart).

They sit above the engine (`transferkit.training`) and below the public API, and call the engine
and the nouns directly, never `transferkit.api`. Export and tune live here too.
"""
