"""agtl benchmarks: ratios against raw baselines measured side by side in one process."""
