"""Run a CLI main so that a user mistake prints one line and exits non-zero."""

from __future__ import annotations

import sys

from bigseq.distributed import name_accelerator
from bigseq.errors import BigseqError


def run_main(main, argv=None, prog: str = "bigseq") -> int:
    name_accelerator()
    try:
        main(argv)
    except BigseqError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0
