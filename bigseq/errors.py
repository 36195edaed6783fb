"""The one exception type for user mistakes.

Raised anywhere with a message that names the problem and the fix; the CLI
entry points turn it into a single ``bigseq: error: ...`` line and exit code 2,
never a traceback.
"""


class BigseqError(Exception):
    """A user mistake (bad flag, missing file, incompatible checkpoint...)."""
