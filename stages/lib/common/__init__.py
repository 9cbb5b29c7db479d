"""Plumbing every stage shares: params schema, errors, atomic files and hashes, progress bars, timers,
CPU cores, the OpenAI-compatible endpoint settings, and the argument types the commands share.

May import: nothing else of ``stages.lib``.
"""
