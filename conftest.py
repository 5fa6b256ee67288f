"""Root pytest configuration: doctests of pidkd.distill need PyTorch, an optional dependency."""

import importlib.util

collect_ignore_glob = [] if importlib.util.find_spec("torch") is not None else ["pidkd/distill/*"]
