#!/usr/bin/env bash
echo "make bench: the benchmark suite is not written yet." >&2
exit 1
