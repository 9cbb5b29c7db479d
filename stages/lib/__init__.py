"""The pipeline's library, one subpackage per concern; the stage modules in ``stages/`` are thin mains over it.

Concerns are layered: a module may import from its own subpackage and from the ones listed before
it, never from one after it (``tests/common/test_layers.py`` checks this). Plumbing comes first and
imports no concern; retrieval and evaluation never reach into training.
"""

LAYERS = ("common", "documents", "questions", "models", "retrieval", "training", "serving")
