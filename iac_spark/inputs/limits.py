"""Bounds on hostile input: member size, zip nesting, members per archive, symlinks.

One frozen :class:`InputLimits` carries them from the options to every place that
reads input; the ``check_*`` methods raise the error whose message names the
limit's option, so a user knows which knob to turn.

========================  ==============================  ===========================
option                    field                           default
========================  ==============================  ===========================
``maxMemberBytes``        ``max_member_bytes``            2 GiB - 1 (Spark's cell cap)
``maxNestingDepth``       ``max_nesting_depth``           4
``maxMembersPerArchive``  ``max_members_per_archive``     1,000,000
``followSymlinks``        ``follow_symlinks``             false
========================  ==============================  ===========================

*Depth* counts the zips opened in memory to reach a member: members of the archive
on disk are at depth 0, members of a zip inside it at depth 1, and so on
(``a.zip!l1.zip!l2.zip!x.dcm`` is at depth 2). A nested zip is opened only if the
depth it would give its members is at most ``max_nesting_depth``; 0 opens none.

Example:
    >>> lim = InputLimits.parse({"maxMemberBytes": "64m", "followsymlinks": "TRUE", "mode": "x"})
    >>> lim.max_member_bytes, lim.max_nesting_depth, lim.follow_symlinks
    (67108864, 4, True)
    >>> InputLimits.parse({"maxNestingDepth": "-1"})
    Traceback (most recent call last):
    ...
    iac_spark.errors.OptionError: option 'maxNestingDepth' must be an integer from 0 to 64, got '-1'
    >>> lim.check_depth(5, "/d/a.zip!l1.zip!l2.zip!l3.zip!l4.zip!l5.zip")
    Traceback (most recent call last):
    ...
    iac_spark.inputs.limits.NestingTooDeepError: /d/a.zip!l1.zip!l2.zip!l3.zip!l4.zip!l5.zip: nested zip would open at depth 5, above maxNestingDepth = 4
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from ..errors import MemberError, MemberTooLargeError, OptionError
from .archives import MAX_IN_MEMORY_BYTES

__all__ = [
    "InputLimits",
    "NestingTooDeepError",
    "TooManyMembersError",
    "escapes_root",
    "parse_bool",
    "parse_bytes",
]

_MAX_DEPTH = 64
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
}


class NestingTooDeepError(MemberError):
    """A nested zip lies deeper than ``maxNestingDepth`` allows; it is not opened.

    Its members are not read (the nested zip itself is the error row). Raise
    ``maxNestingDepth`` if such archives are expected.
    """


class TooManyMembersError(MemberError):
    """An archive lists more members than ``maxMembersPerArchive``; none of them is scanned.

    A guard against crafted directories that claim millions of entries. Raise the
    option (each member costs the driver about 1 KB while planning).
    """


# parse_bool / parse_bytes: the option parsers of every source (iac_spark.sources.options
# imports them from here: the inputs layer must not import pyspark, the sources may import it).
def parse_bool(name: str, value: str) -> bool:
    """``true``/``false`` (any case, also 1/0, yes/no) or an :class:`~iac_spark.errors.OptionError`.

    >>> parse_bool("followSymlinks", "False")
    False
    """
    v = value.strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise OptionError(f"option {name!r} must be true or false, got {value!r}")


def parse_bytes(name: str, value: str) -> int:
    """A positive byte size: ``134217728``, ``128m``, ``1g`` ...

    >>> parse_bytes("maxMemberBytes", "64MB")
    67108864
    """
    m = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", value)
    if not m or m.group(2).lower() not in _UNITS or int(m.group(1)) <= 0:
        raise OptionError(
            f"option {name!r} must be a positive byte size like 134217728 or 128m, got {value!r}"
        )
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def _parse_int(name: str, value: str, low: int, high: int) -> int:
    if not re.fullmatch(r"\s*\d+\s*", value) or not low <= int(value) <= high:
        raise OptionError(f"option {name!r} must be an integer from {low} to {high}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class InputLimits:
    """Limits applied while reading input (see the module docstring for the options)."""

    max_member_bytes: int = MAX_IN_MEMORY_BYTES
    max_nesting_depth: int = 4
    max_members_per_archive: int = 1_000_000
    follow_symlinks: bool = False

    #: Spark option names, as documented (Spark matches them case-insensitively).
    OPTIONS: ClassVar[tuple[str, ...]] = (
        "maxMemberBytes",
        "maxNestingDepth",
        "maxMembersPerArchive",
        "followSymlinks",
    )
    #: The same, lower-cased: add them to a source's known options.
    KNOWN: ClassVar[tuple[str, ...]] = tuple(o.lower() for o in OPTIONS)

    def __post_init__(self) -> None:
        if not 1 <= self.max_member_bytes <= MAX_IN_MEMORY_BYTES:
            raise OptionError(
                f"option 'maxMemberBytes' must be from 1 to {MAX_IN_MEMORY_BYTES} bytes "
                f"(2 GiB - 1, the largest binary cell Spark holds), got {self.max_member_bytes}"
            )
        if not 0 <= self.max_nesting_depth <= _MAX_DEPTH:
            raise OptionError(
                f"option 'maxNestingDepth' must be from 0 to {_MAX_DEPTH}, "
                f"got {self.max_nesting_depth}"
            )
        if self.max_members_per_archive < 1:
            raise OptionError(
                "option 'maxMembersPerArchive' must be a positive integer, "
                f"got {self.max_members_per_archive}"
            )

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> InputLimits:
        """The limits among Spark's options (any case); other options are ignored.

        Raises :class:`~iac_spark.errors.OptionError` naming the option on a bad value.
        The caller checks for unknown options (add :attr:`KNOWN` to its own list).
        """
        opts = {str(k).lower(): str(v) for k, v in options.items()}
        d = cls()
        max_member = d.max_member_bytes
        if "maxmemberbytes" in opts:
            max_member = parse_bytes("maxMemberBytes", opts["maxmemberbytes"])
            if max_member > MAX_IN_MEMORY_BYTES:
                raise OptionError(
                    f"option 'maxMemberBytes' must be at most {MAX_IN_MEMORY_BYTES} bytes "
                    f"(2 GiB - 1, the largest binary cell Spark holds), got {opts['maxmemberbytes']!r}"
                )
        depth = d.max_nesting_depth
        if "maxnestingdepth" in opts:
            depth = _parse_int("maxNestingDepth", opts["maxnestingdepth"], 0, _MAX_DEPTH)
        members = d.max_members_per_archive
        if "maxmembersperarchive" in opts:
            members = _parse_int("maxMembersPerArchive", opts["maxmembersperarchive"], 1, 2**63 - 1)
        follow = d.follow_symlinks
        if "followsymlinks" in opts:
            follow = parse_bool("followSymlinks", opts["followsymlinks"])
        return cls(max_member, depth, members, follow)

    def check_member_size(self, declared: int, where: str) -> None:
        """Raise :class:`~iac_spark.errors.MemberTooLargeError` if ``declared`` is above the limit.

        >>> InputLimits(max_member_bytes=10).check_member_size(11, "/d/a.zip!x.dcm")
        Traceback (most recent call last):
        ...
        iac_spark.errors.MemberTooLargeError: /d/a.zip!x.dcm: member declares 11 bytes, above maxMemberBytes = 10
        """
        if declared > self.max_member_bytes:
            raise MemberTooLargeError(
                f"{where}: member declares {declared} bytes, above maxMemberBytes = "
                f"{self.max_member_bytes}"
            )

    def check_depth(self, depth: int, where: str) -> None:
        """Raise :class:`NestingTooDeepError` if a nested zip at ``where`` would open at ``depth``."""
        if depth > self.max_nesting_depth:
            raise NestingTooDeepError(
                f"{where}: nested zip would open at depth {depth}, above maxNestingDepth = "
                f"{self.max_nesting_depth}"
            )

    def check_member_count(self, count: int, where: str) -> None:
        """Raise :class:`TooManyMembersError` if an archive at ``where`` lists ``count`` members."""
        if count > self.max_members_per_archive:
            raise TooManyMembersError(
                f"{where}: archive lists {count} members, above maxMembersPerArchive = "
                f"{self.max_members_per_archive}"
            )

    def allows(self, path: str, root: str) -> bool:
        """Whether a file found under input ``root`` may be read: always with
        ``followSymlinks``, else only if it does not resolve outside ``root``."""
        return self.follow_symlinks or not escapes_root(path, root)


def escapes_root(path: str, root: str) -> bool:
    """True when ``path`` (found under directory ``root``) resolves outside ``root`` through
    a symlink, in the file itself or in any folder between.

    >>> import os, tempfile
    >>> d = tempfile.mkdtemp(); os.symlink("/etc", os.path.join(d, "etc"))
    >>> escapes_root(os.path.join(d, "etc", "hostname"), d), escapes_root(os.path.join(d, "x"), d)
    (True, False)
    """
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return os.path.commonpath([real_root, real]) != real_root
