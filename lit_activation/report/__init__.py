"""`lit-activation report RUN_DIR [RUN_DIR ...]`: one report of what the runs say about the paper's claims.

    lit-activation report runs/counts/version_0 runs/llmdcos/version_0 runs/sts/version_0 runs/compare \
        [--output runs/report] [--seed 0] [--resamples 2000]

Each RUN_DIR is a versioned run directory (runs/<name>/version_N), a logger directory (runs/<name>:
its newest version with results) or a compare output directory;
what it holds is read from its files (`runs.KINDS`). The report goes to OUTPUT/version_N/ (the next free
N, so nothing is overwritten): report.md, with the runs' own figures linked inline, and report.json
with every statistic. Its path is the last line printed. The statistics and verdicts are defined
in `lit_activation.findings` and in docs/method.md, "Findings report: operational definitions".

One file per part: runs.py reads the inputs, markdown.py formats, finding1.py, llmdcos.py (Findings
2-3), perplexity.py (Validation 1), zeroshot.py (Validation 2), sts.py (Validation 3, all-pairs)
each build their section, and command.py parses the arguments and writes the report.
"""

from lit_activation.report.command import main

__all__ = ["main"]
