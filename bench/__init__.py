"""Benchmarks that print figures (run as python -m bench.<name> or python bench/<name>.py).

Every benchmark's ``main()`` ends as every CLI does (utils/cli.py): a :class:`BenchError` (a benchmark that cannot
run as asked) or another error of input is one line and exit code 2.
"""


class BenchError(Exception):
    """A benchmark cannot run as asked: a bad flag value, too little data, a command it runs failed."""
