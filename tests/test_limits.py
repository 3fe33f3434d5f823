"""InputLimits options, their checks, and the folder-shaped hostile cases (pure Python)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from iac_spark.errors import MemberTooLargeError, OptionError
from iac_spark.inputs.archives import MAX_IN_MEMORY_BYTES
from iac_spark.inputs.limits import (
    InputLimits,
    NestingTooDeepError,
    TooManyMembersError,
    escapes_root,
)
from iac_spark.testing import hostile


def test_defaults() -> None:
    lim = InputLimits.parse({})
    assert lim == InputLimits()
    assert (lim.max_member_bytes, lim.max_nesting_depth, lim.follow_symlinks) == (
        MAX_IN_MEMORY_BYTES,
        4,
        False,
    )
    assert lim.max_members_per_archive == 1_000_000
    assert InputLimits.KNOWN == (
        "maxmemberbytes",
        "maxnestingdepth",
        "maxmembersperarchive",
        "followsymlinks",
    )


def test_parse_any_case_and_ignores_other_options() -> None:
    lim = InputLimits.parse(
        {
            "MAXMEMBERBYTES": "512k",
            "maxNestingDepth": " 0 ",
            "maxmembersperarchive": "70000",
            "followSymlinks": "yes",
            "content": "true",
        }
    )
    assert lim == InputLimits(512 * 1024, 0, 70_000, True)
    assert InputLimits.parse({"maxMemberBytes": str(MAX_IN_MEMORY_BYTES)}).max_member_bytes == (
        MAX_IN_MEMORY_BYTES
    )


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"maxMemberBytes": "0"}, "maxMemberBytes"),
        ({"maxMemberBytes": "lots"}, "maxMemberBytes"),
        ({"maxMemberBytes": "2g"}, "maxMemberBytes"),  # one byte past Spark's cell cap
        ({"maxMemberBytes": "-5"}, "maxMemberBytes"),
        ({"maxNestingDepth": "-1"}, "maxNestingDepth"),
        ({"maxNestingDepth": "65"}, "maxNestingDepth"),
        ({"maxNestingDepth": "2.5"}, "maxNestingDepth"),
        ({"maxMembersPerArchive": "0"}, "maxMembersPerArchive"),
        ({"followSymlinks": "sometimes"}, "followSymlinks"),
    ],
)
def test_bad_values_name_the_option(options: dict[str, str], named: str) -> None:
    with pytest.raises(OptionError, match=f"option '{named}'") as info:
        InputLimits.parse(options)
    assert isinstance(info.value, ValueError)


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(OptionError, match="maxMemberBytes"):
        InputLimits(max_member_bytes=MAX_IN_MEMORY_BYTES + 1)
    with pytest.raises(OptionError, match="maxNestingDepth"):
        InputLimits(max_nesting_depth=-1)
    with pytest.raises(OptionError, match="maxMembersPerArchive"):
        InputLimits(max_members_per_archive=0)


def test_checks() -> None:
    lim = InputLimits(max_member_bytes=100, max_nesting_depth=2, max_members_per_archive=3)
    lim.check_member_size(100, "w")
    lim.check_depth(2, "w")
    lim.check_member_count(3, "w")
    with pytest.raises(MemberTooLargeError, match=r"/d/a\.zip!x: member declares 101 bytes"):
        lim.check_member_size(101, "/d/a.zip!x")
    with pytest.raises(NestingTooDeepError, match="depth 3, above maxNestingDepth = 2"):
        lim.check_depth(3, "/d/a.zip!b.zip!c.zip!d.zip")
    with pytest.raises(TooManyMembersError, match="lists 4 members, above maxMembersPerArchive"):
        lim.check_member_count(4, "/d/a.zip")


def test_nested_case_facts_follow_the_depth_rule(tmp_path: Path) -> None:
    for depth in (0, 1, 4):
        case = hostile.write_nested(
            tmp_path / str(depth), levels=depth + 1, max_nesting_depth=depth
        )
        lim = InputLimits(max_nesting_depth=depth)
        *oks, err = case.expect
        assert [e.fate for e in oks] == ["ok"] * (depth + 1) and err.fate == "error"
        assert err.member is not None and err.member.count("!") == depth  # the zip past the limit
        with pytest.raises(NestingTooDeepError):
            lim.check_depth(err.member.count("!") + 1, err.member)
        lim.check_depth(depth, "fine")


# ---------------------------------------------------------------------------- symlinks
def test_escapes_root(tmp_path: Path) -> None:
    case = hostile.write_symlinks(tmp_path)
    root = str(case.path)
    got = {e.file: escapes_root(os.path.join(root, e.file or ""), root) for e in case.expect}
    assert got == {
        "inside.dcm": False,
        "link_in.dcm": False,
        "link_out.dcm": True,
        "dir_out": True,  # the folder link itself: its content is never listed
    }
    # the facts say the same: what escapes is skipped unless followSymlinks
    strict, follow = InputLimits(), InputLimits(follow_symlinks=True)
    for e in case.expect:
        path = os.path.join(root, e.file or "")
        assert (e.fate == "ok") == strict.allows(path, root)
        assert follow.allows(path, root)
        if e.fate == "ok":
            assert Path(path).read_bytes() == e.data
    followed = hostile.write_symlinks(tmp_path / "f", follow_symlinks=True)
    assert all(e.fate == "ok" for e in followed.expect)
    assert {e.file for e in followed.expect} >= {"link_out.dcm", "dir_out/secret.dcm"}
    for e in followed.expect:
        assert (followed.path / (e.file or "")).read_bytes() == e.data


def test_escapes_root_with_a_symlinked_root(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "x.dcm").write_bytes(b"x")
    os.symlink(real, tmp_path / "alias")
    alias = str(tmp_path / "alias")
    assert not escapes_root(os.path.join(alias, "x.dcm"), alias)  # the root itself may be a link
    assert escapes_root(str(tmp_path / "real" / "x.dcm"), str(tmp_path / "elsewhere"))


# ---------------------------------------------------------------------------- unreadable files
def test_unreadable_case_says_whether_chmod_works_here(tmp_path: Path) -> None:
    case = hostile.write_unreadable(tmp_path)
    try:
        readable = hostile.runs_as_root_reader(tmp_path)
        assert ("still readable" in case.note) == readable
        for e in case.expect:
            path = case.path / (e.file or "")
            assert (path.stat().st_mode & 0o777) == 0
            if readable:
                assert e.fate == "ok"
                path.read_bytes()
            else:
                assert e.fate == "error" and e.member is None
                with pytest.raises(PermissionError, match="Permission denied"):
                    path.read_bytes()
        if os.geteuid() == 0:
            assert readable, "root reads mode-000 files on ordinary file systems"
    finally:
        for p in case.path.iterdir():
            p.chmod(0o644)


# ---------------------------------------------------------------------------- source options
def test_zipdcm_and_ziptext_options_carry_the_limits() -> None:
    from iac_spark.sources.options import ZipDcmOptions, ZipTextOptions

    opts = {"path": "/d", "maxMemberBytes": "64m", "MAXNESTINGDEPTH": "1", "followSymlinks": "1"}
    for parse in (ZipDcmOptions.parse, ZipTextOptions.parse):
        assert parse(opts).limits == InputLimits(64 * 1024**2, 1, 1_000_000, True)
        assert parse({"path": "/d"}).limits == InputLimits()
        with pytest.raises(OptionError, match="option 'maxMembersPerArchive'"):
            parse({"path": "/d", "maxMembersPerArchive": "many"})
        with pytest.raises(OptionError, match=r"known: .*maxNestingDepth.*followSymlinks"):
            parse({"path": "/d", "maxNestingDept": "2"})
