"""Plumbing every stage shares: params schema, errors, atomic files and hashes, progress bars, timers,
CPU cores, and the OpenAI-compatible endpoint settings.

May import: nothing else of ``stages.lib``.
"""
