"""`bigseq train`: parse -> check -> build -> resume -> train."""

from __future__ import annotations

from bigseq.checkpoint.pretrained import model_of_folder
from bigseq.config.train_config import parse_train_config
from bigseq.distributed.launch_env import shutdown
from bigseq.training import setup
from bigseq.training.loop import train


def main(argv=None):
    cfg = parse_train_config(argv, pretrained_model=model_of_folder)
    task = setup.check_and_load_data(cfg)  # data mistakes: one line, before any process group
    env = setup.start_processes()
    trainer = setup.build_trainer(cfg, task, env)
    run = train(cfg, trainer, task, env, setup.resume(cfg, trainer))
    if env.is_main:
        print(f"bigseq | done: {trainer.num_updates} updates, epoch {run.itr.epoch}", flush=True)
    shutdown()
    return run


def cli_main(argv=None) -> int:
    from bigseq.cli.errors import run_main
    return run_main(main, argv, prog="bigseq train")


if __name__ == "__main__":
    from bigseq.distributed.launch_env import run_entry_point
    run_entry_point(cli_main)
