"""Print the loss curve in a trainer log (its `progress` and `step` event lines on stdin) as a small text chart."""

from __future__ import annotations

import json
import sys

WIDTH = 50


def main() -> int:
    points: list[tuple[int, float]] = []
    for line in sys.stdin:
        if line.startswith(('{"event": "step"', '{"event": "progress"')):
            event = json.loads(line)
            points.append((int(event["step"]), float(event["loss"])))
    if not points:
        print("no step events in the trainer log", file=sys.stderr)
        return 1
    shown = points[:: max(1, len(points) // 20)]
    if shown[-1] != points[-1]:
        shown.append(points[-1])
    low, high = min(p[1] for p in points), max(p[1] for p in points)
    for step, loss in shown:
        bar = "█" * (1 + round((loss - low) / ((high - low) or 1.0) * (WIDTH - 1)))
        print(f"  step {step:>5}  loss {loss:8.4f}  {bar}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
