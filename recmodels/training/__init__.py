"""Training: the one loop, its losses, optimizers, checkpoints, data windows, threads and distributed setup."""
