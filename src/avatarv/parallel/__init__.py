"""Distribution helpers: sequence parallelism (Ulysses) for long token sequences; FSDP/DDP wrapping lives beside it."""
