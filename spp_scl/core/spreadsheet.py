"""CSV cells that a spreadsheet shows as text, never evaluates (CSV injection, as OWASP describes it).

A cell that starts with = + - @ (or a tab or carriage return) is read by Excel, LibreOffice and Google Sheets
as a formula; ids and texts come from data files anyone may have written. Such a cell gets a leading
apostrophe, OWASP's recommendation, which spreadsheets take as "this is text" and do not display. A plain
number ("-3", "+1.5") is left as it is: it is not a formula and evaluates to itself.
"""

from __future__ import annotations

import re

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def spreadsheet_safe(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_START) and not PLAIN_NUMBER.match(value):
        return "'" + value
    return value
