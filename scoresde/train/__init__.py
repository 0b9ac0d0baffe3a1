"""Training infrastructure: the loop (`loop.Trainer`), what a step minimises (`objectives`),
checkpoints (`checkpoint`) and the process group (`distributed`)."""
