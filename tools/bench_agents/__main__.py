"""``python -m tools.bench_agents``: see :mod:`tools.bench_agents`."""

from runtime.errors import run_tool
from tools.bench_agents.cli import main

run_tool(main)
