"""Tasks register themselves on import."""

from bigseq.tasks import language_modeling, translation  # noqa: F401
from bigseq.tasks.base import Task, setup_task  # noqa: F401
