"""Test collection: modules that need an optional extra are skipped when it is not installed."""

import importlib.util

collect_ignore = []
if importlib.util.find_spec("transformers") is None:
    collect_ignore.append("src/smoothflip/lm/hf.py")
if importlib.util.find_spec("ray") is None:
    collect_ignore.append("src/smoothflip/engine/ray_executor.py")
