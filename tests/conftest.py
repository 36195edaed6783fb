"""Suite-wide settings, applied before any test starts a process."""

import os
import sys

# DeepSpeed JIT-compiles its CPU ops (DeepSpeedCPUAdam) into TORCH_EXTENSIONS_DIR behind a
# lock file; a build killed midway leaves the lock and every later build waits on it
# forever. The suite keeps its builds inside its own virtual environment, so a stale
# lock elsewhere on the machine cannot stall it, and a fresh checkout builds afresh.
os.environ.setdefault("TORCH_EXTENSIONS_DIR", os.path.join(sys.prefix, "torch_extensions"))
