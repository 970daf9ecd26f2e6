"""A memory subprocess of :func:`mmsgformer.analysis.benchmark.memory.measure_memory_cpu`: runs
one step and prints its memory as ``MEMORY {json}``."""

import json
import sys

from .memory import memory_child

if __name__ == '__main__':
    print('MEMORY ' + json.dumps(memory_child(json.loads(sys.argv[1]))), flush=True)
