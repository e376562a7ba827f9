"""dvclive's Live with its metrics file written atomically.

dvclive rewrites metrics.json in place at every step, so a kill during that write leaves it
truncated, and `dvc exp show` and `dvc metrics show` then fail on it. Here it is written to a
temporary file and renamed (workflow/io.py): a kill leaves the previous summary or the new one.
Same file, same format, same keys.
"""
from __future__ import annotations

import json

from dvclive import Live
from dvclive.plots import NumpyEncoder

from workflow import io


class AtomicLive(Live):
    def make_summary(self):
        # dvclive 3.49's make_summary, with the write made atomic.
        if self._step is not None:
            self.summary["step"] = self.step
        io.write_text(self.metrics_file, json.dumps(self.summary, indent=4, cls=NumpyEncoder) + "\n")
