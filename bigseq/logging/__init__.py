"""Training logs: meters, progress bars (tqdm/simple/json/none), JSON-lines file, TensorBoard, Weights & Biases."""

from bigseq.logging.format import format_stat  # noqa: F401
from bigseq.logging.meters import AverageMeter, StopwatchMeter, TimeMeter  # noqa: F401
from bigseq.logging.progress_bar import BaseProgressBar, progress_bar  # noqa: F401
from bigseq.logging.sinks import close_tensorboard_writers, finish_wandb_runs  # noqa: F401
