"""safezip: one member read out of a stranger's zip by its last path segment, and every refusal. (The
zoo's pulls through it, and what they leave on disk, are in test_zoo.py.)"""

from __future__ import annotations

import io
import stat
import struct
import zipfile
from pathlib import Path

import pytest

from painterly.safezip import UnsafeZip, copy_member, escapes, has_member, last_segment


def zip_with(path: Path, members: dict[str | zipfile.ZipInfo, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def copied(path: Path, name: str, *, max_size: int = 1000) -> tuple[str, bytes]:
    out = io.BytesIO()
    member = copy_member(path, name, out, max_size=max_size)
    return member, out.getvalue()


def patched(path: Path, *, flags: int | None = None, size: int | None = None) -> Path:
    """The zip's one member's flag bits or uncompressed size, set in both its local and its central header
    (as zipfile would never write them)."""
    raw = bytearray(path.read_bytes())
    local, central = raw.index(b"PK\x03\x04"), raw.index(b"PK\x01\x02")
    if flags is not None:
        struct.pack_into("<H", raw, local + 6, flags)
        struct.pack_into("<H", raw, central + 8, flags)
    if size is not None:
        struct.pack_into("<I", raw, local + 22, size)
        struct.pack_into("<I", raw, central + 24, size)
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize(("member", "outside"), [
    ("../x.pth", True), ("a/../../x.pth", True), ("/etc/x.pth", True), ("C:x.pth", True), ("c:/x.pth", True),
    ("a\\..\\x.pth", True), ("\\x.pth", True),
    ("a/b/x.pth", False), ("a/b..c/x.pth", False), ("..x.pth", False), ("x.pth", False),
])
def test_escapes_knows_every_way_out_of_the_folder(member, outside):
    assert escapes(member) is outside


def test_the_member_is_found_by_its_last_segment_wherever_the_folder_is(tmp_path):
    path = zip_with(tmp_path / "a.zip", {"saved_models/": b"", "saved_models/candy.pth": b"candy",
                                         "saved_models\\mosaic.pth": b"mosaic", "candy.pth.txt": b"no"})
    assert copied(path, "candy.pth") == ("saved_models/candy.pth", b"candy")
    assert copied(path, "mosaic.pth") == ("saved_models\\mosaic.pth", b"mosaic")
    assert last_segment("saved_models\\mosaic.pth") == "mosaic.pth"
    assert has_member(path, "candy.pth") and not has_member(path, "udnie.pth")
    assert not has_member(tmp_path / "missing.zip", "candy.pth")


def test_a_folder_entry_of_the_name_is_no_match(tmp_path):
    path = zip_with(tmp_path / "a.zip", {"candy.pth/": b"", "a/candy.pth": b"candy"})
    assert copied(path, "candy.pth") == ("a/candy.pth", b"candy")


def hostile(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    link = zipfile.ZipInfo("models/candy.pth")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    other_link = zipfile.ZipInfo("models/readme")
    other_link.external_attr = (stat.S_IFLNK | 0o777) << 16
    not_a_zip = tmp_path / "not.zip"
    not_a_zip.write_bytes(b"PK\x03\x04 and nothing after")
    cases = {
        "escape elsewhere": ({"candy.pth": b"x", "../../.bashrc": b"x"}, "holds '../../.bashrc', a path outside"),
        "a link": ({link: b"/etc/passwd"}, "holds 'models/candy.pth', a symbolic link; refusing the whole file"),
        "a link elsewhere": ({"candy.pth": b"x", other_link: b"/etc"}, "holds 'models/readme', a symbolic link"),
        "none": ({"mosaic.pth": b"x"}, "has no member named candy.pth"),
        "two": ({"a/candy.pth": b"x", "b/candy.pth": b"y"}, "has 2 members named candy.pth"),
        "too large": ({"candy.pth": bytes(1001)}, "holds 'candy.pth', which declares 1001 bytes, more than the "
                                                  "1000 allowed"),
    }
    found = {kind: (zip_with(tmp_path / f"{kind}.zip", members), message) for kind, (members, message) in cases.items()}
    encrypted = patched(zip_with(tmp_path / "encrypted.zip", {"candy.pth": b"x"}), flags=0x1)
    return {**found, "encrypted": (encrypted, "holds 'candy.pth', which is encrypted"),
            "not a zip": (not_a_zip, "is not a readable zip (")}


@pytest.mark.parametrize("kind", ["escape elsewhere", "a link", "a link elsewhere", "none", "two", "too large",
                                  "encrypted", "not a zip"])
def test_a_hostile_zip_is_refused_before_a_byte_is_written(tmp_path, kind):
    path, message = hostile(tmp_path)[kind]
    out = io.BytesIO()
    with pytest.raises(UnsafeZip) as error:
        copy_member(path, "candy.pth", out, max_size=1000)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert out.getvalue() == b""


def test_a_member_that_unpacks_to_more_than_it_declares_is_refused(tmp_path):
    """zipfile stops at the declared size and then fails the CRC; the size limit is the guard behind it."""
    path = patched(zip_with(tmp_path / "bomb.zip", {"candy.pth": bytes(5000)}), size=10)  # stored, not deflated
    out = io.BytesIO()
    with pytest.raises(UnsafeZip, match="holds 'candy.pth', which"):
        copy_member(path, "candy.pth", out, max_size=1000)
    assert len(out.getvalue()) <= 1000


def test_a_damaged_member_is_refused_as_unpackable(tmp_path):
    path = zip_with(tmp_path / "a.zip", {"candy.pth": b"candy" * 100})
    raw = bytearray(path.read_bytes())
    raw[raw.index(b"candy") + 10] ^= 0xFF  # a flipped byte: the CRC no longer matches
    path.write_bytes(bytes(raw))
    with pytest.raises(UnsafeZip, match="holds 'candy.pth', which cannot be unpacked"):
        copied(path, "candy.pth")


def test_the_writers_own_errors_pass_through(tmp_path):
    path = zip_with(tmp_path / "a.zip", {"candy.pth": b"candy"})

    class Full(io.BytesIO):
        def write(self, data) -> int:
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        copy_member(path, "candy.pth", Full(), max_size=1000)
