"""Crontab expressions and time zones for ``jobs schedule``.

APScheduler 3 numbers weekdays from Monday = 0, while cron numbers them from
Sunday = 0 (and 7). ``cron_trigger`` rewrites the day-of-week field as weekday
names, so an expression means here what it means in a crontab.
"""

from __future__ import annotations

from datetime import tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tzlocal
from apscheduler.triggers.cron import CronTrigger

# The value of [schedule] timezone that selects the machine's own zone.
LOCAL_TIMEZONE = "local"

# Cron's weekday numbers are the positions in this tuple; 7 is Sunday again.
WEEKDAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


class InvalidSchedule(ValueError):
    """A cron expression or time zone that the scheduler cannot use."""


def resolve_timezone(name: str) -> tzinfo:
    """Return the time zone that ``name`` names: an IANA key or ``local``.

    Raises:
        InvalidSchedule: no such zone is installed.
    """
    if name == LOCAL_TIMEZONE:
        return tzlocal.get_localzone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidSchedule(
            f"unknown time zone {name!r}; use an IANA name such as "
            f"'Europe/Berlin' or 'UTC', or {LOCAL_TIMEZONE!r} for the machine's zone"
        ) from exc


def cron_trigger(expression: str, timezone: tzinfo) -> CronTrigger:
    """Build a trigger from a five-field crontab expression, with cron's weekdays.

    Raises:
        InvalidSchedule: the expression is malformed, a value is out of range,
            or it restricts both the day of month and the day of week.
    """
    fields = expression.split()
    if len(fields) != 5:
        raise InvalidSchedule(
            f"expected 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(fields)}"
        )
    minute, hour, day, month, day_of_week = fields
    # Cron runs when either day field matches, APScheduler only when both do.
    if day != "*" and day_of_week != "*":
        raise InvalidSchedule(
            "restricting both day-of-month and day-of-week is not supported; "
            "set one of them to *"
        )
    try:
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=_weekday_names(day_of_week),
            timezone=timezone,
        )
    except ValueError as exc:
        raise InvalidSchedule(str(exc)) from exc


def _weekday_names(field: str) -> str:
    """Rewrite a cron day-of-week field as a list of APScheduler weekday names."""
    if field == "*":
        return field
    days: set[int] = set()
    for item in field.split(","):
        days |= _weekday_item(item)
    return ",".join(WEEKDAY_NAMES[day] for day in sorted(days))


def _weekday_item(item: str) -> set[int]:
    """Return the cron weekday numbers (0-6) of one item: N, N-M, */S or N-M/S."""
    span, _, step_text = item.partition("/")
    step = 1
    if step_text:
        if not step_text.isdigit() or int(step_text) == 0:
            raise InvalidSchedule(
                f"day-of-week step {step_text!r} is not a positive integer"
            )
        step = int(step_text)
    if span == "*":
        first, last = 0, 6
    elif "-" in span:
        start, _, end = span.partition("-")
        first, last = _weekday_number(start), _weekday_number(end)
    elif step_text:
        raise InvalidSchedule(f"day-of-week {item!r}: a step needs * or a range")
    else:
        first = last = _weekday_number(span)
    if first > last:
        raise InvalidSchedule(f"day-of-week range {span!r} runs backwards")
    return {day % 7 for day in range(first, last + 1, step)}


def _weekday_number(token: str) -> int:
    lowered = token.lower()
    if lowered in WEEKDAY_NAMES:
        return WEEKDAY_NAMES.index(lowered)
    if lowered.isdigit() and int(lowered) <= 7:
        return int(lowered)
    raise InvalidSchedule(
        f"day-of-week {token!r} is invalid; use 0-7 (0 and 7 are Sunday) or sun-sat"
    )
