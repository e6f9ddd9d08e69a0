"""Concise logging: coloured console lines on the main process, plain lines in the run's log file.

Only rank 0 logs; other ranks get a logger that drops everything below errors.
"""
from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

from termcolor import colored

LOGGER_NAME = "kdvqa"


class _ConsoleFormatter(logging.Formatter):
    COLOURS = {logging.WARNING: "yellow", logging.ERROR: "red", logging.CRITICAL: "red"}

    def __init__(self, use_colour: bool):
        super().__init__("%(message)s")
        self.use_colour = use_colour

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        colour = self.COLOURS.get(record.levelno)
        if colour and self.use_colour:
            return colored(text, colour)
        return text


class _PlainFormatter(logging.Formatter):
    """Timestamped lines without the ANSI colour codes that console messages may carry."""
    ANSI = re.compile(r"\x1b\[[0-9;]*m")

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        return self.ANSI.sub("", super().format(record))


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def setup_logging(is_main: bool = True, log_file: str | Path | None = None) -> logging.Logger:
    """Configure the project logger once per run: console on rank 0 (coloured on a TTY), plus ``log_file``."""
    logger = get_logger()
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.propagate = False
    logger.setLevel(logging.INFO if is_main else logging.ERROR)
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(_ConsoleFormatter(use_colour=sys.stdout.isatty()))
    logger.addHandler(console)
    if log_file is not None and is_main:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(_PlainFormatter())
        logger.addHandler(file_handler)
    return logger


def paint(text: str, colour: str, bold: bool = False) -> str:
    """Colour ``text`` when stdout is a TTY (the log file's formatter strips the colour codes again)."""
    if not sys.stdout.isatty():
        return text
    return colored(text, colour, attrs=["bold"] if bold else None)
