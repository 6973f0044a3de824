"""Run infrastructure shared by the entry points: checkpoints, devices, seeding, logging."""
