"""The limits on extracting a class zip: no cap on the archive's total, a cap on each member (a
member too large or a zip bomb becomes a note to its student, and everyone else is graded), a
generous cap on the number of entries, streaming, and the scratch disk.

The acceptance test (a class of honest notebooks over 2 GiB plus a member that inflates to 3 GiB)
is slow; its fast twin runs the same checks with the caps made small.
"""

from __future__ import annotations

import base64
import errno
import io
import math
import os
import shutil
import tempfile
import tracemalloc
import zipfile
from pathlib import Path

import nbformat
import pytest

from grader.grading import intake, submissions

NB = "{}"
MiB = 2**20
MARK = "s0000000"  # where a student's own id is written into their notebook (8 base64 characters)


def too_large_note(member: str, row: bool = True) -> str:
    note = (f"The zip entry {member!r} was not extracted: it is larger than {submissions.MAX_MEMBER_BYTES // MiB} "
            "MiB uncompressed, the most the grader reads of one file, so it was not read.")
    return note + " Graded as unanswered." if row else note


def notebook_with_image(notebooks, image_bytes: int) -> tuple[bytes, int]:
    """A student's notebook made from the release, with a large image output (random bytes, as a PNG
    is, base64-encoded, as Jupyter stores it); and where in it MARK is, to be replaced by an id."""
    nb = notebooks.student()
    cell = next(c for c in nb.cells if c.cell_type == "code")
    png = MARK + base64.b64encode(os.urandom(image_bytes * 3 // 4)).decode()
    cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"})]
    raw = notebooks.to_bytes(nb)
    return raw, raw.index(MARK.encode())


def zeros_member(zf: zipfile.ZipFile, name: str, size: int) -> None:
    """A deflated member of `size` zeros, written a piece at a time: it never sits in memory."""
    piece = bytes(min(size, 16 * MiB))
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with zf.open(info, "w", force_zip64=True) as out:
        for start in range(0, size, len(piece)):
            out.write(piece[: size - start])


def write_class(path: Path, template: bytes, offset: int, students: int, bomb: int) -> list[str]:
    """A class zip (wrapped in `class/`, as an LMS does): `students` honest notebooks, each the
    template with its student's id at `offset`, stored; and `class/mallory.ipynb`, `bomb` zeros,
    deflated. Returns the honest students' ids."""
    ids = [f"s{i:07d}" for i in range(1, students + 1)]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for student in ids:
            info = zipfile.ZipInfo(f"class/{student}.ipynb")
            info.compress_type = zipfile.ZIP_STORED  # images are compressed already
            zf.writestr(info, template[:offset] + student.encode() + template[offset + len(MARK):])
        zeros_member(zf, "class/mallory.ipynb", bomb)
    return ids


def check_class(found, ids: list[str], size: int, offset: int) -> None:
    """Every honest student has their own notebook, whole and read without a note; mallory has a row
    with no notebook and the note that says why."""
    by_id = {s.student_id: s for s in found}
    assert sorted(by_id) == sorted(ids + ["mallory"])
    for student in ids:
        sub = by_id[student]
        assert sub.notes == [] and sub.notebook.stat().st_size == size
        with open(sub.notebook, "rb") as f:
            f.seek(offset)
            assert f.read(len(MARK)) == student.encode()
    assert by_id["mallory"].notebook is None
    assert by_id["mallory"].notes == [too_large_note("class/mallory.ipynb")]
    assert [p.name for p in by_id[ids[0]].notebook.parent.iterdir() if p.name.startswith("mallory")] == []


def check_intake_reads(found, notebooks) -> None:
    """The first honest notebook is one the grader reads whole: no note, every answer taken."""
    read = intake.read_submission(next(s for s in found if s.notebook is not None).notebook)
    assert read.notes == [] and read.answered == notebooks.answer_ids()


@pytest.fixture
def big_dir():
    """A folder in the system's temporary folder, removed at the end whatever happens (pytest keeps
    its last few tmp_path folders, and these hold gigabytes)."""
    folder = Path(tempfile.mkdtemp(prefix="zip-limits-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# The acceptance test, and its fast twin
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow  # writes a 2.1 GiB zip and extracts it (measured: about 25 s, 4.1 GiB of disk at most)
def test_a_class_over_2_gib_with_a_3_gib_bomb(big_dir, notebooks):
    image = 19 * MiB
    template, offset = notebook_with_image(notebooks, image)
    assert len(template) <= intake.MAX_NOTEBOOK_BYTES  # the grader would grade every one of them
    students = math.ceil(2 * 2**30 / len(template)) + 2
    needed = 2 * students * len(template) + 100 * MiB  # the zip, and the class extracted from it
    if shutil.disk_usage(big_dir).free < needed + 2**30:
        pytest.skip(f"needs {needed / 2**30:.1f} GiB free in {big_dir.parent}")
    ids = write_class(big_dir / "class.zip", template, offset, students, bomb=3 * 2**30)
    with zipfile.ZipFile(big_dir / "class.zip") as zf:
        assert sum(m.file_size for m in zf.infolist() if m.filename != "class/mallory.ipynb") > 2 * 2**30
    found = submissions.collect(big_dir / "class.zip", big_dir / "scratch")
    check_class(found, ids, len(template), offset)
    check_intake_reads(found, notebooks)


def test_a_class_over_the_member_cap_with_a_bomb(tmp_path, notebooks, monkeypatch):
    """The slow test with a 1 MiB member cap: 12 notebooks of 0.3 MiB and 3 MiB of zeros."""
    monkeypatch.setattr(submissions, "MAX_MEMBER_BYTES", MiB)
    template, offset = notebook_with_image(notebooks, 300_000)
    ids = write_class(tmp_path / "class.zip", template, offset, 12, bomb=3 * MiB)
    found = submissions.collect(tmp_path / "class.zip", tmp_path / "scratch")
    check_class(found, ids, len(template), offset)
    check_intake_reads(found, notebooks)


# ---------------------------------------------------------------------------------------------
# One member too large: a note to its student
# ---------------------------------------------------------------------------------------------


def test_a_large_file_in_a_students_folder_is_a_note_to_them(tmp_path, monkeypatch, notebook_name):
    monkeypatch.setattr(submissions, "MAX_MEMBER_BYTES", MiB)
    with zipfile.ZipFile(tmp_path / "class.zip", "w") as zf:
        zf.writestr(f"dora/{notebook_name}", NB)
        zeros_member(zf, "dora/data.bin", MiB + 1)
        zeros_member(zf, "bob.ipynb", MiB)  # exactly the cap is fine
    found = {s.student_id: s for s in submissions.collect(tmp_path / "class.zip", tmp_path / "scratch")}
    assert found["dora"].notebook.name == notebook_name
    assert found["dora"].notes == [too_large_note("dora/data.bin", row=False)]
    assert not (found["dora"].folder / "data.bin").exists()
    assert found["bob"].notebook.stat().st_size == MiB and found["bob"].notes == []


def test_a_member_that_inflates_absurdly_is_a_note(tmp_path, monkeypatch):
    """Past its first RATIO_FREE_BYTES, a member may not inflate more than MAX_RATIO times; below
    that, or at an honest ratio, anything up to the cap is extracted."""
    monkeypatch.setattr(submissions, "RATIO_FREE_BYTES", MiB)
    honest = base64.b64encode(os.urandom(MiB))  # 1.3 MiB, deflates about 1.3:1
    with zipfile.ZipFile(tmp_path / "class.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zeros_member(zf, "mallory.ipynb", 2 * MiB)  # about 1,000:1
        zeros_member(zf, "zed.ipynb", MiB)  # as absurd, but small
        zf.writestr("amy.ipynb", honest)
    found = {s.student_id: s for s in submissions.collect(tmp_path / "class.zip", tmp_path / "scratch")}
    assert found["mallory"].notebook is None
    assert found["mallory"].notes == ["The zip entry 'mallory.ipynb' was not extracted: it is larger than 1 MiB "
                                      f"uncompressed and inflates to more than {submissions.MAX_RATIO} times its "
                                      "compressed size, as a zip bomb does, so it was not read. Graded as unanswered."]
    assert found["zed"].notebook.stat().st_size == MiB
    assert found["amy"].notebook.read_bytes() == honest


class Endless(io.RawIOBase):
    """A member that never ends, counting what is read of it. Past `give_up` bytes it fails the
    test instead: a grader that does not stop would otherwise fill the disk."""

    def __init__(self, give_up: int = 16 * MiB):
        self.read_bytes = 0
        self.give_up = give_up

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.read_bytes > self.give_up:
            raise AssertionError(f"read past {self.give_up} bytes of a member that never ends")
        buffer[:] = b"\0" * len(buffer)
        self.read_bytes += len(buffer)
        return len(buffer)


def test_copying_stops_one_byte_past_the_limit():
    src, dst = Endless(), io.BytesIO()
    with pytest.raises(submissions.TooLarge):
        submissions._copy_capped(src, dst, 3 * MiB + 5)
    assert src.read_bytes == 3 * MiB + 6 and len(dst.getvalue()) <= 3 * MiB + 5


def test_a_member_holding_more_than_it_declares_is_not_kept(tmp_path):
    """zipfile itself stops at the declared size; were it not to, the grader would."""

    class LyingZip:
        def open(self, member):
            return io.BufferedReader(Endless())

    member = zipfile.ZipInfo("mallory.ipynb")
    member.file_size = member.compress_size = 1000
    why = submissions._extract_member(LyingZip(), member, tmp_path / "mallory.ipynb", tmp_path / "class.zip")
    assert why == "was not extracted: it holds more than the zip declares, as a zip bomb may, so it was not read"
    assert list(tmp_path.iterdir()) == []


def test_a_member_is_never_whole_in_memory(tmp_path):
    size = 24 * MiB
    with zipfile.ZipFile(tmp_path / "class.zip", "w") as zf:
        with zf.open("alice.ipynb", "w") as out:
            for _ in range(size // MiB):
                out.write(os.urandom(MiB))
    tracemalloc.start()
    try:
        assert submissions.extract(tmp_path / "class.zip", tmp_path / "out") == {}
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (tmp_path / "out" / "alice.ipynb").stat().st_size == size
    assert peak < 4 * MiB, peak


# ---------------------------------------------------------------------------------------------
# The whole zip: how many entries, and whether the disk can hold it
# ---------------------------------------------------------------------------------------------


def test_a_zip_of_too_many_entries_is_refused_before_anything_is_written(tmp_path, make_zip, monkeypatch):
    monkeypatch.setattr(submissions, "MAX_ZIP_FILES", 3)
    archive = make_zip(tmp_path / "class.zip", {f"s{i}.ipynb": NB for i in range(4)})
    with pytest.raises(submissions.SubmissionError, match=r"class.zip holds 4 entries, more than the 3 the grader "
                                                          r"extracts from one zip; nothing was extracted. Unzip it"):
        submissions.collect(archive, tmp_path / "scratch")
    assert list((tmp_path / "scratch" / "unzipped").iterdir()) == []
    assert submissions.extract_zip(make_zip(tmp_path / "ok.zip", {f"s{i}.ipynb": NB for i in range(3)}),
                                   tmp_path / "ok") == []


def test_the_real_limits_are_generous():
    assert submissions.MAX_ZIP_FILES >= 10 * 20_000  # a class of 20,000 files is far from it
    assert not hasattr(submissions, "MAX_ZIP_BYTES")  # the archive's total is not capped
    # every notebook the grader would grade is extracted, whatever its ratio
    assert submissions.MAX_MEMBER_BYTES >= submissions.RATIO_FREE_BYTES >= intake.MAX_NOTEBOOK_BYTES
    assert submissions.MAX_MEMBER_BYTES <= 2**30 and submissions.MAX_RATIO >= 20


def test_a_zip_the_disk_cannot_hold_is_refused_before_anything_is_written(tmp_path, make_zip, monkeypatch):
    monkeypatch.setattr(submissions, "MAX_MEMBER_BYTES", MiB)
    with zipfile.ZipFile(tmp_path / "class.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("alice.ipynb", os.urandom(100_000))
        zeros_member(zf, "mallory.ipynb", 3 * MiB)  # not read, so not counted
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(submissions.shutil, "disk_usage", lambda path: usage._replace(free=50_000))
    with pytest.raises(submissions.SubmissionError, match=r"class.zip needs about 0.1 MiB in .*out, but only 0.0 MiB "
                                                          r"are free; nothing was extracted. Free some space, or set "
                                                          r"TMPDIR"):
        submissions.extract(tmp_path / "class.zip", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    monkeypatch.setattr(submissions.shutil, "disk_usage", lambda path: usage._replace(free=110_000))
    assert list(submissions.extract(tmp_path / "class.zip", tmp_path / "out")) == ["mallory.ipynb"]


def test_a_disk_that_fills_up_stops_the_run_and_leaves_no_half_file(tmp_path, make_zip, monkeypatch):
    archive = make_zip(tmp_path / "class.zip", {"alice.ipynb": "A" * 1000, "bob.ipynb": NB})

    def fill_up(src, dst, limit):
        dst.write(src.read(10))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(submissions, "_copy_capped", fill_up)
    with pytest.raises(submissions.SubmissionError, match="could not extract 'alice.ipynb' from .*No space left"):
        submissions.extract(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
