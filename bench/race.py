"""What bench/relay.sh and bench/tls.sh share when they write BENCHMARKS.md: the medians of the
recorded runs, ratios, and replacing one marked section of the file."""
import json
import re
import statistics
from collections import defaultdict


class Results:
    """The runs recorded by bench/race.sh's run(), by server and case."""

    def __init__(self, path):
        self.runs = defaultdict(list)
        for line in open(path):
            row = json.loads(line)
            if row["result"]:
                metrics = {k: v["value"] for k, v in row["result"]["metrics"].items()}
                self.runs[(row["server"], row["case"])].append(metrics)

    def med(self, server, case, metric):
        """The median of `metric` over the runs of `server` in `case`, or None."""
        values = [r[metric] for r in self.runs.get((server, case), []) if metric in r]
        return statistics.median(values) if values else None


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "n/a"


def replace_section(name, section):
    """Puts `section` between the `<!-- NAME:begin -->` and `<!-- NAME:end -->` markers."""
    text = open("BENCHMARKS.md").read()
    pattern = rf"<!-- {name}:begin -->.*<!-- {name}:end -->\n"
    if re.search(pattern, text, flags=re.S):
        text = re.sub(pattern, lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    open("BENCHMARKS.md", "w").write(text)
