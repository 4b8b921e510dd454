"""The memory plan: a run's predicted peak per device, phase by phase, before any weight loads.

- plan.py      the plan: the weights, and what the data module and each callback say they add
- simulate.py  activation peaks measured by running the real code on fake tensors
- memory.py    this process's memory, what a device has free, handing freed memory back
"""

from lit_activation.public import lazy_exports

# what a new callback or data module states (memory_needs -> Footprint) and what a plan returns
_EXPORTS = dict.fromkeys(("Footprint", "MemoryPlan", "PlanContext", "plan_memory"), "lit_activation.planning.plan")
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
