"""The pipeline's library, one subpackage per concern; the stage modules in ``stages/`` are thin mains over it.

Concerns are layered: a module may import from its own subpackage and from the ones listed before
it, never from one after it, and only from those its package's ``May import:`` line names
(``tests/common/test_layers.py`` checks both). Plumbing comes first and imports no concern; retrieval and
evaluation, serving and the UI never reach into training.
"""

LAYERS = ("common", "documents", "questions", "models", "retrieval", "labelling", "training", "serving", "ui")
