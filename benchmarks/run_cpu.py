"""Run every CPU benchmark in this folder (files named *_cpu.py or curate_throughput.py) one after another.

Benchmarks print ratios measured side by side in one run; they are never timed assertions in tests.
GPU benchmarks (*_gpu.py) are run on the lent GPU machine instead (see reports/perf.md).
"""

import subprocess
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
scripts = sorted(p for p in here.glob("*.py") if p.name != Path(__file__).name and not p.name.endswith("_gpu.py"))
failed = 0
for script in scripts:
    print(f"== {script.name}", flush=True)
    failed += subprocess.run([sys.executable, str(script)], check=False).returncode != 0
sys.exit(1 if failed else 0)
