"""`lit-activation report RUN_DIR [RUN_DIR ...]`: one report of what finished runs say about the paper's claims.

- runs.py        reads the inputs: run directories, what each holds (`runs.KINDS`)
- findings.py    the statistics and verdict rules (intervals, margins), pure functions
- markdown.py    formats tables, intervals and verdicts
- finding1.py    Finding 1's section (counts)
- llmdcos.py     Findings 2-3 (LLMDcos)
- perplexity.py  Validation 1 (pruning, perplexity)
- zeroshot.py    Validation 2 (zero-shot accuracy)
- sts.py         Validation 3 (STS, all-pairs)
- command.py     parses the arguments and writes report.md and report.json
"""

from lit_activation.report.command import Report, main, write_report

__all__ = ["Report", "main", "write_report"]
