"""The memory plan: a run's predicted peak per device, phase by phase, before any weight loads.

- plan.py      the plan: the weights, and what the data module and each callback say they add
- simulate.py  activation peaks measured by running the real code on fake tensors
- memory.py    this process's memory, what a device has free, handing freed memory back
"""
