"""Parsing stage: `.lip` source text to a syntax tree of frozen dataclasses."""

from lipc.lang.parser import parse_file, parse_source

__all__ = ["parse_file", "parse_source"]
