"""Causal, incremental Smart Money Concepts detectors: one module per concept.

Every detector is fed closed bars one at a time and only ever looks backwards, so the
state after bar t is a function of bars[:t+1] alone. ``strategies.snapshot`` composes them.
"""
