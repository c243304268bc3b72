"""Thin driver: runs named statements on psycopg and translates errors. Internal; may change."""

from __future__ import annotations
