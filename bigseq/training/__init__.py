"""Training: the trainers (one update core for plain and pipeline), the loop, evaluation, throughput."""
