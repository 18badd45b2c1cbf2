"""Collecting a class: safe student ids, safe zip extraction, wrappers, one notebook per student.

Plain folders and zips made in a temporary folder; nothing is graded.
"""

from __future__ import annotations

import re
import zipfile
import pytest

from grader.grading import submissions

NB = "{}"  # what is in a notebook does not matter here
UNSAFE = "was not extracted: its path is unsafe (absolute, with '..', or a link)."


def rows(found) -> list[tuple[str, str, str | None]]:
    """(student id, original name, notebook file name) for each submission."""
    return [(s.student_id, s.original_name, s.notebook.name if s.notebook else None) for s in found]


def by_id(found) -> dict:
    return {s.student_id: s for s in found}


# ---------------------------------------------------------------------------------------------
# safe_id
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("alice", "alice"),
        ("Bob_Smith-2.v1", "Bob_Smith-2.v1"),
        ("../x", "x"),
        ("../../etc/passwd", "etc_passwd"),
        ("/etc/passwd", "etc_passwd"),
        ("a b", "a_b"),
        ("a..b", "a.b"),
        ("a...b", "a.b"),
        (".hidden", "hidden"),
        ("..mallory", "mallory"),
        ("-rf --no-preserve-root", "rf_--no-preserve-root"),
        ("<img src=x onerror=alert(1)>", "img_src_x_onerror_alert_1"),
        ("Zo\u00eb \u00dcn\u00efc\u00f8d\u00e9 (1)", "Zoe_Unicde_1"),
        ("\uff41\uff4c\uff49\uff43\uff45", "alice"),  # full-width letters fold to ASCII
        ("", "student"),
        (".", "student"),
        ("..", "student"),
        ("...", "student"),
        ("___", "student"),
        ("\u540d\u524d", "student"),  # nothing ASCII is left
    ],
)
def test_safe_id(name, expected):
    assert submissions.safe_id(name) == expected


@pytest.mark.parametrize("name", ["x" * 100, "\u00e9" * 100 + "y" * 100, "a." * 60])
def test_safe_id_is_at_most_64_characters(name):
    assert 0 < len(submissions.safe_id(name)) <= 64


@pytest.mark.parametrize(
    "name", ["../..", "a/../../b", "con\x00trol\n", "tab\there", "$(rm -rf ~)", "`id`", "a;b|c&d", "\u202eevil", "~root"]
)
def test_safe_id_is_always_a_plain_file_name(name):
    cleaned = submissions.safe_id(name)
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", cleaned)
    assert cleaned not in (".", "..") and ".." not in cleaned


# ---------------------------------------------------------------------------------------------
# extract_zip
# ---------------------------------------------------------------------------------------------


def test_extract_zip_writes_plain_files(tmp_path, make_zip):
    archive = make_zip(tmp_path / "class.zip", {"alice.ipynb": "A", "bob/sub/w.ipynb": b"B", "empty_dir/": ""})
    target = tmp_path / "out"
    assert submissions.extract_zip(archive, target) == []
    assert (target / "alice.ipynb").read_text() == "A"
    assert (target / "bob" / "sub" / "w.ipynb").read_text() == "B"
    assert not (target / "empty_dir").exists()  # folders come from the files inside them only


@pytest.mark.parametrize(
    "member",
    ["../escaped.ipynb", "a/../../escaped.ipynb", "a/../b.ipynb", "..\\escaped.ipynb", "ABSOLUTE"],
    ids=["dot-dot", "nested-dot-dot", "dot-dot-inside", "backslash", "absolute"],
)
def test_extract_zip_skips_unsafe_paths(tmp_path, make_zip, member):
    member = str(tmp_path / "escaped.ipynb") if member == "ABSOLUTE" else member
    archive = make_zip(tmp_path / "class.zip", {member: "evil", "alice.ipynb": NB})
    target = tmp_path / "deep" / "out"
    assert submissions.extract_zip(archive, target) == [member]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        "class.zip", "deep/out/alice.ipynb"]


def test_extract_zip_skips_links(tmp_path, make_zip):
    (tmp_path / "secret.txt").write_text("the solutions")
    archive = make_zip(tmp_path / "class.zip", {"alice.ipynb": NB},
                       links={"lucy.ipynb": str(tmp_path / "secret.txt"), "dir/link": "../.."})
    target = tmp_path / "out"
    assert submissions.extract_zip(archive, target) == ["lucy.ipynb", "dir/link"]
    assert [p.name for p in target.rglob("*")] == ["alice.ipynb"]


def test_extract_zip_skips_a_member_with_no_name(tmp_path):
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(zipfile.ZipInfo("."), "x")
        zf.writestr("alice.ipynb", NB)
    assert submissions.extract_zip(archive, tmp_path / "out") == ["."]


def test_extract_zip_of_a_file_that_is_not_a_zip(tmp_path):
    fake = tmp_path / "class.zip"
    fake.write_text("not a zip")
    with pytest.raises(submissions.SubmissionError, match="class.zip is not a readable zip file"):
        submissions.extract_zip(fake, tmp_path / "out")


@pytest.mark.parametrize("damage", ["bad-crc", "file-and-folder"])
def test_a_damaged_member_is_reported(tmp_path, make_zip, damage):
    archive = tmp_path / "class.zip"
    if damage == "bad-crc":
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr("alice.ipynb", "hello world " * 10)
            zf.writestr("bob.ipynb", NB)
        data = bytearray(archive.read_bytes())
        data[data.index(b"hello world")] ^= 1  # one bit of alice's bytes, as a bad download would
        archive.write_bytes(bytes(data))
    else:
        make_zip(archive, {"alice": "a file", "alice/w.ipynb": NB})
    skipped = submissions.extract(archive, tmp_path / "out")
    if damage == "bad-crc":
        assert skipped == {"alice.ipynb": "The zip entry 'alice.ipynb' was not extracted: it is damaged or cannot be "
                                          "read (Bad CRC-32 for file 'alice.ipynb')."}
        assert [p.name for p in (tmp_path / "out").iterdir()] == ["bob.ipynb"]  # no half of alice's file
    else:
        assert skipped == {"alice/w.ipynb": "The zip entry 'alice/w.ipynb' was not extracted: the zip holds a file "
                                            "and a folder of the same name."}
    assert submissions.extract_zip(archive, tmp_path / "again") == list(skipped)


@pytest.mark.parametrize("damage", ["bad-crc", "file-and-folder"])
def test_a_damaged_member_is_a_row_with_a_note_and_the_class_goes_on(tmp_path, make_zip, damage):
    archive = tmp_path / "class.zip"
    if damage == "bad-crc":
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("alice.ipynb", "hello world " * 100)
            zf.writestr("bob.ipynb", NB)
        data = bytearray(archive.read_bytes())
        start = data.index(b"alice.ipynb") + len("alice.ipynb")
        data[start + 5] ^= 0xFF  # inside alice's compressed bytes
        archive.write_bytes(bytes(data))
    else:
        make_zip(archive, {"alice": "a file", "alice/w.ipynb": NB, "bob.ipynb": NB})
    found = by_id(submissions.collect(archive, tmp_path / "scratch"))
    assert sorted(found) == ["alice", "bob"]
    assert found["alice"].notebook is None
    [note] = found["alice"].notes
    assert note.startswith("The zip entry ") and "was not extracted" in note and note.endswith(" Graded as unanswered.")
    assert found["bob"].notebook is not None and found["bob"].notes == []


def test_a_folder_extracted_before_a_file_of_its_name_is_graded(tmp_path, make_zip):
    archive = make_zip(tmp_path / "class.zip", {"alice/w.ipynb": NB, "alice": "a file", "bob.ipynb": NB})
    found = by_id(submissions.collect(archive, tmp_path / "scratch"))
    assert found["alice"].notebook.name == "w.ipynb"
    assert found["alice"].notes == ["The zip entry 'alice' was not extracted: the zip holds a file and a folder of "
                                    "the same name."]


def test_a_name_too_long_for_the_disk_is_a_note(tmp_path, make_zip):
    long_name = "a" * 300 + ".ipynb"
    archive = make_zip(tmp_path / "class.zip", {long_name: NB, "bob.ipynb": NB})
    found = submissions.collect(archive, tmp_path / "scratch")
    assert [s.student_id for s in found] == ["bob", "a" * 64]
    assert found[1].notes == [f"The zip entry {long_name!r} was not extracted: its name cannot be a file name here "
                              "(File name too long). Graded as unanswered."]


# ---------------------------------------------------------------------------------------------
# find_submissions: what counts as a student
# ---------------------------------------------------------------------------------------------


def test_one_row_per_notebook_in_name_order(tmp_path, make_tree):
    folder = make_tree(tmp_path / "class", {"carl.ipynb": NB, "alice.ipynb": NB, "bob.ipynb": NB})
    found = submissions.find_submissions(folder)
    assert rows(found) == [("alice", "alice", "alice.ipynb"), ("bob", "bob", "bob.ipynb"), ("carl", "carl", "carl.ipynb")]
    assert all(s.notes == [] for s in found)
    assert found[0].notebook == folder / "alice.ipynb"


def test_junk_and_other_files_are_not_students(tmp_path, make_tree):
    folder = make_tree(tmp_path / "class", {
        "alice.ipynb": NB,
        "notes.txt": "x",
        "grades.csv": "x",
        ".DS_Store": "x",
        "Thumbs.db": "x",
        "._alice.ipynb": "x",  # macOS resource fork
        "__MACOSX/._alice.ipynb": "x",
        ".ipynb_checkpoints/alice-checkpoint.ipynb": NB,
        ".git/config": "x",
    })
    assert rows(submissions.find_submissions(folder)) == [("alice", "alice", "alice.ipynb")]


def test_a_hidden_notebook_is_still_a_student(tmp_path, make_tree):
    folder = make_tree(tmp_path / "class", {".alice.ipynb": NB, "..mallory.ipynb": NB})
    found = by_id(submissions.find_submissions(folder))
    assert sorted(found) == ["alice", "mallory"]
    assert found["alice"].notes == ["The name '.alice' was recorded as student id 'alice'."]
    assert found["mallory"].notes == ["The name '..mallory' was recorded as student id 'mallory'."]


def test_changed_names_are_reported(tmp_path, make_tree):
    folder = make_tree(tmp_path / "class", {"Zo\u00eb M\u00fcller (1).ipynb": NB})
    [sub] = submissions.find_submissions(folder)
    assert (sub.student_id, sub.original_name) == ("Zoe_Muller_1", "Zo\u00eb M\u00fcller (1)")
    assert sub.notes == ["The name 'Zo\u00eb M\u00fcller (1)' was recorded as student id 'Zoe_Muller_1'."]


def test_links_at_the_top_are_not_followed(tmp_path, make_tree):
    outside = tmp_path / "solution.ipynb"
    outside.write_text(NB)
    folder = make_tree(tmp_path / "class", {"alice.ipynb": NB})
    (folder / "eve.ipynb").symlink_to(outside)
    (folder / "mallory").symlink_to(tmp_path, target_is_directory=True)
    assert rows(submissions.find_submissions(folder)) == [("alice", "alice", "alice.ipynb")]


def test_links_inside_a_student_folder_are_not_followed(tmp_path, make_tree, notebook_name):
    outside = tmp_path / "solution.ipynb"
    outside.write_text(NB)
    folder = make_tree(tmp_path / "class", {"bob.ipynb": NB, "alice/readme.txt": "x"})
    (folder / "alice" / notebook_name).symlink_to(outside)
    (folder / "alice" / "work").symlink_to(tmp_path, target_is_directory=True)  # a linked folder is not entered
    alice = by_id(submissions.find_submissions(folder))["alice"]
    assert alice.notebook is None
    assert alice.notes == [f"{notebook_name} is a link, not a file: links are not followed, so it was not graded.",
                           "No notebook was found in the submitted folder: graded as unanswered."]


def test_empty_folder_has_no_students(tmp_path):
    (tmp_path / "class").mkdir()
    assert submissions.find_submissions(tmp_path / "class") == []


def test_folder_of_other_files_has_no_students(tmp_path, make_tree):
    assert submissions.find_submissions(make_tree(tmp_path / "class", {"a.txt": "x", ".DS_Store": "x"})) == []


# ---------------------------------------------------------------------------------------------
# find_submissions: students' folders
# ---------------------------------------------------------------------------------------------


def test_student_folder_prefers_the_assignment_notebook(tmp_path, make_tree, notebook_name):
    folder = make_tree(tmp_path / "class", {
        "carol/attempts/final/" + notebook_name: NB,
        "carol/scratch/a_old.ipynb": NB,
        "carol/.ipynb_checkpoints/" + notebook_name.replace(".ipynb", "-checkpoint.ipynb"): NB,
        "dan.ipynb": NB,
    })
    carol = by_id(submissions.find_submissions(folder))["carol"]
    assert carol.notebook == folder / "carol" / "attempts" / "final" / notebook_name
    assert carol.notes == [f"The folder held 2 notebooks; attempts/final/{notebook_name} was graded."]


def test_student_folder_without_the_assignment_notebook_takes_the_first(tmp_path, make_tree):
    folder = make_tree(tmp_path / "class", {"carol/b.ipynb": NB, "carol/a.ipynb": NB, "dan.ipynb": NB})
    carol = by_id(submissions.find_submissions(folder))["carol"]
    assert carol.notebook.name == "a.ipynb"
    assert carol.notes == ["The folder held 2 notebooks; a.ipynb was graded."]


def test_student_folder_with_one_notebook_has_no_note(tmp_path, make_tree):
    folder = make_tree(tmp_path / "class", {"carol/mine.ipynb": NB, "carol/data.csv": "x", "dan.ipynb": NB})
    assert by_id(submissions.find_submissions(folder))["carol"].notes == []


def test_student_folder_without_a_notebook(tmp_path, make_tree):
    folder = make_tree(tmp_path / "class", {"nobody_home/readme.txt": "my dog ate it", "dan.ipynb": NB})
    sub = by_id(submissions.find_submissions(folder))["nobody_home"]
    assert sub.notebook is None
    assert sub.notes == ["No notebook was found in the submitted folder: graded as unanswered."]


def test_a_folder_called_like_a_notebook_is_not_one(tmp_path, make_tree):
    folder = make_tree(tmp_path / "class", {"carol/trick.ipynb/inside.txt": "x", "dan.ipynb": NB})
    assert by_id(submissions.find_submissions(folder))["carol"].notebook is None


# ---------------------------------------------------------------------------------------------
# find_submissions: wrappers (an LMS download wraps the class in one folder)
# ---------------------------------------------------------------------------------------------


def test_a_wrapper_folder_is_looked_into(tmp_path, make_tree):
    folder = make_tree(tmp_path / "download", {"class/alice.ipynb": NB, "class/bob/x.ipynb": NB})
    assert rows(submissions.find_submissions(folder)) == [("alice", "alice", "alice.ipynb"), ("bob", "bob", "x.ipynb")]


def test_nested_wrappers_are_looked_into(tmp_path, make_tree):
    folder = make_tree(tmp_path / "download", {"2024/W3D4/alice.ipynb": NB, "2024/W3D4/bob.ipynb": NB,
                                               "2024/.DS_Store": "x"})
    assert [s.student_id for s in submissions.find_submissions(folder)] == ["alice", "bob"]


def test_a_wrapper_of_student_folders_only(tmp_path, make_tree):
    folder = make_tree(tmp_path / "download", {"class/alice/a.ipynb": NB, "class/bob/b.ipynb": NB})
    assert [s.student_id for s in submissions.find_submissions(folder)] == ["alice", "bob"]


def test_a_lone_folder_with_the_assignment_notebook_is_a_student(tmp_path, make_tree, notebook_name):
    folder = make_tree(tmp_path / "class", {f"alice/{notebook_name}": NB, "alice/scratch.ipynb": NB})
    [sub] = submissions.find_submissions(folder)
    assert (sub.student_id, sub.notebook.name) == ("alice", notebook_name)


def test_a_lone_folder_with_a_single_notebook_is_a_student(tmp_path, make_tree):
    folder = make_tree(tmp_path / "class", {"alice/mine.ipynb": NB, "alice/data.csv": "x"})
    assert rows(submissions.find_submissions(folder)) == [("alice", "alice", "mine.ipynb")]


def test_a_lone_folder_with_one_notebook_and_a_folder_is_a_wrapper(tmp_path, make_tree):
    folder = make_tree(tmp_path / "class", {"wrap/alice.ipynb": NB, "wrap/bob/b.ipynb": NB})
    assert [s.student_id for s in submissions.find_submissions(folder)] == ["alice", "bob"]


def test_an_empty_lone_folder_is_a_student_without_a_notebook(tmp_path):
    (tmp_path / "class" / "alice").mkdir(parents=True)
    [sub] = submissions.find_submissions(tmp_path / "class")
    assert sub.student_id == "alice" and sub.notebook is None


# ---------------------------------------------------------------------------------------------
# find_submissions: two students, one id
# ---------------------------------------------------------------------------------------------


def test_duplicate_ids_are_numbered_and_reported(tmp_path, make_tree):
    folder = make_tree(tmp_path / "class", {"same name.ipynb": NB, "same_name.ipynb": NB, "same!name.ipynb": NB})
    found = submissions.find_submissions(folder)
    assert rows(found) == [
        ("same_name", "same name", "same name.ipynb"),
        ("same_name-2", "same!name", "same!name.ipynb"),
        ("same_name-3", "same_name", "same_name.ipynb"),
    ]
    assert found[2].notes == ["The name 'same_name' was recorded as student id 'same_name-3'."]


def test_a_file_and_a_folder_of_the_same_name(tmp_path, make_tree):
    folder = make_tree(tmp_path / "class", {"alice.ipynb": NB, "alice/x.ipynb": NB})
    found = submissions.find_submissions(folder)
    assert rows(found) == [("alice", "alice", "x.ipynb"), ("alice-2", "alice", "alice.ipynb")]
    assert found[1].notes == ["The name 'alice' was recorded as student id 'alice-2'."]


def test_a_numbered_id_that_is_taken_already(tmp_path, make_tree):
    folder = make_tree(tmp_path / "class", {"a b.ipynb": NB, "a_b-2.ipynb": NB, "a_b.ipynb": NB})
    ids = [s.student_id for s in submissions.find_submissions(folder)]
    assert sorted(ids) == ["a_b", "a_b-2", "a_b-3"]


# ---------------------------------------------------------------------------------------------
# collect: folders, zips, single notebooks, and arguments that are none of these
# ---------------------------------------------------------------------------------------------


def test_collect_a_missing_path(tmp_path):
    with pytest.raises(submissions.SubmissionError, match="does not exist"):
        submissions.collect(tmp_path / "nowhere", tmp_path / "scratch")


@pytest.mark.parametrize("name", ["grades.csv", "class.zip"])
def test_collect_a_file_that_is_neither(tmp_path, name):
    (tmp_path / name).write_text("student,grade\n")
    with pytest.raises(submissions.SubmissionError, match="is neither a folder, a zip file nor a notebook"):
        submissions.collect(tmp_path / name, tmp_path / "scratch")


def test_collect_a_folder_that_cannot_be_read(tmp_path, make_tree, monkeypatch):
    folder = make_tree(tmp_path / "class", {"alice.ipynb": NB})

    def refuse(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(submissions.Path, "iterdir", refuse)
    with pytest.raises(submissions.SubmissionError, match=r"class could not be read \(\[Errno 13\] Permission denied"):
        submissions.collect(folder, tmp_path / "scratch")


def test_collect_a_single_notebook(tmp_path):
    path = tmp_path / "Zo\u00eb.ipynb"
    path.write_text(NB)
    [sub] = submissions.collect(path, tmp_path / "scratch")
    assert (sub.student_id, sub.original_name, sub.notebook) == ("Zoe", "Zo\u00eb", path)


def test_collect_a_folder(tmp_path, make_tree):
    folder = make_tree(tmp_path / "class", {"alice.ipynb": NB})
    assert rows(submissions.collect(folder, tmp_path / "scratch")) == [("alice", "alice", "alice.ipynb")]
    assert not (tmp_path / "scratch").exists()  # a folder is read where it is


def test_collect_an_empty_folder(tmp_path):
    (tmp_path / "class").mkdir()
    assert submissions.collect(tmp_path / "class", tmp_path / "scratch") == []


def test_collect_a_zip_extracts_into_scratch(tmp_path, make_zip):
    archive = make_zip(tmp_path / "download.zip", {"class/alice.ipynb": NB, "class/bob/w.ipynb": NB,
                                                   "__MACOSX/class/._alice.ipynb": "x"})
    found = submissions.collect(archive, tmp_path / "scratch")
    assert rows(found) == [("alice", "alice", "alice.ipynb"), ("bob", "bob", "w.ipynb")]
    assert all(s.notebook.is_relative_to(tmp_path / "scratch" / "unzipped") for s in found)


def test_collect_a_zip_with_a_notebook_suffix(tmp_path, make_zip):
    """What decides is the content: a zip named .ipynb is still extracted."""
    archive = make_zip(tmp_path / "class.ipynb", {"alice.ipynb": NB, "bob.ipynb": NB})
    assert [s.student_id for s in submissions.collect(archive, tmp_path / "scratch")] == ["alice", "bob"]


def test_collect_an_empty_zip(tmp_path, make_zip):
    assert submissions.collect(make_zip(tmp_path / "class.zip", {}), tmp_path / "scratch") == []


def test_unsafe_notebooks_in_a_zip_still_get_a_row(tmp_path, make_zip):
    archive = make_zip(tmp_path / "class.zip", {
        "class/alice.ipynb": NB,
        "class/bob.ipynb": NB,
        "../../zipslip_zed.ipynb": NB,
        "/tmp/absolute_abe.ipynb": NB,
        "../evil.sh": "rm -rf ~",
    }, links={"class/link_lucy.ipynb": "/etc/passwd"})
    found = by_id(submissions.collect(archive, tmp_path / "scratch"))
    assert sorted(found) == ["absolute_abe", "alice", "bob", "link_lucy", "zipslip_zed"]  # no row for evil.sh
    for student, member in [("zipslip_zed", "../../zipslip_zed.ipynb"), ("absolute_abe", "/tmp/absolute_abe.ipynb"),
                            ("link_lucy", "class/link_lucy.ipynb")]:
        assert found[student].notebook is None
        assert found[student].notes == [f"The zip entry {member!r} {UNSAFE} Graded as unanswered."]
    assert found["alice"].notes == [] and found["bob"].notes == []


def test_an_unsafe_copy_of_a_students_notebook_is_a_note_to_them(tmp_path, make_zip):
    archive = make_zip(tmp_path / "class.zip", {"alice.ipynb": NB, "bob.ipynb": NB, "../alice.ipynb": "evil"})
    found = by_id(submissions.collect(archive, tmp_path / "scratch"))
    assert sorted(found) == ["alice", "bob"]
    assert found["alice"].notebook is not None
    assert found["alice"].notes == [f"The zip entry '../alice.ipynb' {UNSAFE}"]


def test_an_unsafe_row_never_takes_a_students_id(tmp_path, make_zip):
    archive = make_zip(tmp_path / "class.zip", {"zed.ipynb": NB, "amy.ipynb": NB, "../zed .ipynb": NB})
    found = by_id(submissions.collect(archive, tmp_path / "scratch"))
    assert sorted(found) == ["amy", "zed", "zed-2"]
    assert found["zed-2"].notebook is None and found["zed-2"].original_name == "zed "


def test_an_unsafe_entry_in_a_students_folder_is_a_note_to_them(tmp_path, make_zip, notebook_name):
    archive = make_zip(tmp_path / "class.zip", {"class/alice/" + notebook_name: NB, "class/bob/readme.txt": "x",
                                                "class/carl.ipynb": NB},
                       links={"class/bob/" + notebook_name: "/etc/passwd"})
    found = by_id(submissions.collect(archive, tmp_path / "scratch"))
    assert sorted(found) == ["alice", "bob", "carl"]
    assert found["bob"].notes == ["No notebook was found in the submitted folder: graded as unanswered.",
                                  f"The zip entry 'class/bob/{notebook_name}' {UNSAFE}"]


def test_a_students_folder_that_held_only_an_unsafe_entry_is_their_row(tmp_path, make_zip, notebook_name):
    archive = make_zip(tmp_path / "class.zip", {"class/alice/" + notebook_name: NB, "class/carl.ipynb": NB},
                       links={"class/dora/" + notebook_name: "/etc/passwd", "class/dora/notes.ipynb": "/etc/hosts",
                              "class/__MACOSX/._x.ipynb": "x"})
    found = by_id(submissions.collect(archive, tmp_path / "scratch"))
    assert sorted(found) == ["alice", "carl", "dora"]
    assert found["dora"].notebook is None
    assert found["dora"].notes == [f"The zip entry 'class/dora/{notebook_name}' {UNSAFE} Graded as unanswered.",
                                   f"The zip entry 'class/dora/notes.ipynb' {UNSAFE}"]
